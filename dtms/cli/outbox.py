"""`dtms outbox`: notifications waiting, delivered or given up (dead letters); the operator's retry."""

from __future__ import annotations

import click

from dtms.cli import App, cli, json_option, pass_app, print_json, print_table, table, to_json
from dtms.models import OutboxStatus

#: Events listed by default: the latest few, enough to see what a receiver missed.
OUTBOX_LIMIT = 20


@cli.group("outbox", invoke_without_command=True)
@click.option(
    "--status",
    "status",
    type=click.Choice([s.value for s in OutboxStatus]),
    help="Only events in this state (dead: given up after notify.hook_attempts).",
)
@click.option("--limit", type=click.IntRange(1), default=OUTBOX_LIMIT, show_default=True, help="Newest N.")
@json_option
@click.pass_context
def outbox_group(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """Notification events, newest first, with who has them (docs/operations.md, "Notifications")."""
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    if app is None:  # the dtms group makes the App, so this is a caller's bug
        raise RuntimeError("dtms outbox was invoked without the dtms command group's context")
    with app.store() as store:
        entries = store.outbox_entries(status, limit)
        summary = store.outbox_summary()
    if as_json:
        print_json({"summary": to_json(summary), "events": [to_json(e) for e in entries]})
        return
    rows = [[e.event_id, e.kind, e.at, e.status.value, e.attempts, ", ".join(e.delivered) or "-",
             e.error or ""] for e in entries]  # fmt: skip
    caption = f"{summary.pending} pending, {summary.dead} dead, {summary.delivered} delivered"
    print_table(
        table(
            "Outbox", ["event id", "kind", "at", "status", "attempts", "delivered to", "error"], rows, caption
        )
    )


@outbox_group.command("retry")
@json_option
@pass_app
def retry_command(app: App, as_json: bool) -> None:
    """Requeue every dead letter: the leader delivers them again (same event ids) on its next pass."""
    with app.store(write=True) as store:
        count = store.requeue_dead()
    if as_json:
        print_json({"requeued": count})
    else:
        click.echo(f"requeued {count} dead notification(s)" if count else "no dead notifications")
