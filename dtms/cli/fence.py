"""`dtms fence`: which epochs are proven unable to send, what waits for such a proof, and the operator's
confirm."""

from __future__ import annotations

from typing import Any

import click

import dtms
from dtms.cli import App, cli, json_option, pass_app, print_json, print_table, table
from dtms.lease import StopProof
from dtms.models import Action

#: Epochs listed by default: the recent ones are those an in-flight request can belong to.
RECENT_EPOCHS = 20


def _awaiting(action: Action) -> dict[str, Any]:
    return {"action_id": action.action_id, "identifier": action.identifier, "action_type": action.action_type,
            "leg": action.leg, "epoch": action.epoch, "sent_at": action.sent_at}  # fmt: skip


@cli.group("fence", invoke_without_command=True)
@click.option(
    "--limit", type=click.IntRange(1), default=RECENT_EPOCHS, show_default=True, help="Epochs to list."
)
@json_option
@click.pass_context
def fence_group(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Epochs and their stop proofs (newest first), and the actions waiting for one.

    A request an earlier leader sent is concluded "not applied" only once that leader is proven unable to send
    (exited, killed, its loop ended, or confirmed here) and an in-flight horizon has passed
    (docs/election.md).
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    if app is None:  # what @pass_app raises too: the dtms group makes the App, so this is a caller's bug
        raise RuntimeError("dtms fence was invoked without the dtms command group's context")
    with app.store() as store:
        epochs = store.lease_history()[-limit:][::-1]
        waiting = store.awaiting_proof()
    if as_json:
        print_json(
            {
                "epochs": [
                    {
                        **e,
                        "acquired_at": e["acquired_at"] and e["acquired_at"].isoformat(),
                        "stopped_at": e["stopped_at"] and e["stopped_at"].isoformat(),
                    }
                    for e in epochs
                ],
                "awaiting_proof": [
                    {**_awaiting(a), "sent_at": a.sent_at and a.sent_at.isoformat()} for a in waiting
                ],
            }
        )
        return
    rows = [[e["epoch"], e["holder_name"], e["host"], e["pid"], e["reason"], e["stopped_how"] or "-",
             e["stopped_at"]] for e in epochs]  # fmt: skip
    tables = [table("Epochs", ["epoch", "holder", "host", "pid", "granted", "stopped", "proven at"], rows)]
    if waiting:
        tables.append(
            table(
                "Awaiting proof that the sender stopped",
                ["action", "trade", "type", "leg", "epoch", "sent at"],
                [list(_awaiting(a).values()) for a in waiting],
            )
        )
    print_table(*tables)


@fence_group.command("confirm")
@click.argument("epoch", type=click.IntRange(1))
@click.option("--yes", is_flag=True, help="Do not ask; you have checked that the process is gone.")
@pass_app
def confirm_command(app: App, epoch: int, yes: bool) -> None:
    """Confirm that the holder of EPOCH can send nothing more (its process is gone or its terminal closed).

    Use it only for a holder dtms cannot check itself (another boot id or host): its waiting requests are then
    concluded after the in-flight horizon, from the broker's state. Confirming a live sender can make an
    action execute twice.
    """
    with app.store(write=True) as store:
        record = store.epoch_record(epoch)
        lease = store.lease()
        if record is None:
            raise dtms.InvalidArgumentError(f"epoch {epoch} was never granted")
        if lease is not None and lease.epoch == epoch:
            raise dtms.InvalidArgumentError(f"epoch {epoch} is the current lease: stop that node instead")
        if record.stopped_how is not None:
            click.echo(f"epoch {epoch} is already proven stopped ({record.stopped_how.value})")
            return
        if not yes:
            click.confirm(f"Has {record.holder_name} (pid {record.pid} on {record.host}) stopped for good?",
                          abort=True)  # fmt: skip
        store.record_stopped(epoch, StopProof.OPERATOR)
    click.echo(f"epoch {epoch}: recorded as stopped (operator)")
