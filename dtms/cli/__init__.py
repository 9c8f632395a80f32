"""The `dtms` command line: a thin click layer over the public API; the only importer of click and rich.

Exit codes: 0 success; 1 a dtms error (`DtmsError`: missing database or trade, busy store, unhealthy);
2 bad usage (click's own, plus invalid input such as a pydantic `ValidationError` from `register`).

Adding a command: decorate a function with `@cli.command()` (or make a sub-group with `@cli.group()`), take
`app: App` with `@pass_app`, open the store with `app.store()` (read-only unless it must create the
database), give read commands `@json_option`, and print through `print_json` / `print_table`. Raise
`DtmsError`s freely: `Cli.invoke` turns them into clean messages and exit codes.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import click
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.live import Live
from rich.table import Table

import dtms
from dtms.models import MAX_INT64, Action, LeaseInfo, Trade, TradeState, Transition

#: Where the database is when neither --db nor DTMS_DB says otherwise: shown in --help; resolved by
#: `dtms.default_db_path()` (the per-user data directory, never the working directory: issue 11, point 4).
DEFAULT_DB: Final = "<user data dir>/dtms.db"
DB_ENV: Final = "DTMS_DB"
#: NOTE: a lease renews every few seconds; one refresh a second shows every renewal without load.
WATCH_INTERVAL_S: Final = 1.0
#: Trades `dtms trades` shows unless --limit says otherwise: a screenful, and fast on any database.
TRADES_LIMIT: Final = 50
#: Actions shown under `dtms trade`: enough to see the last few decisions, short enough to read.
TRADE_ACTIONS: Final = 10

F = TypeVar("F", bound=Callable[..., Any])

# -- the group, its context and the error mapping ---------------------------------------------------------


@dataclass(frozen=True)
class App:
    """What every command gets: the database path from --db / DTMS_DB, else the per-user default."""

    db: Path
    #: True when --db or DTMS_DB named the database; False for the default location.
    explicit: bool = True

    def account_db(self, login: int | None, server: str | None) -> Path:
        """The database of this broker account: --db / DTMS_DB when given, else the account's own default
        (`dtms.default_db_path(login, server)`), so every bot on one account shares one database."""
        if self.explicit or login is None or server is None:
            return self.db
        return dtms.default_db_path(login, server)

    def store(self, *, create: bool = False, write: bool = False) -> dtms.Store:
        """Open the database: read-only unless the command writes (`write=True`) or may create it
        (`create=True`).

        A read-only open changes nothing, refuses a file that is not a dtms database (another application's
        SQLite file, an empty file) with exit 1, and works on a read-only file system (issue 11, point 5).
        """
        return dtms.open(self.db, create=create, readonly=not (create or write))


pass_app = click.make_pass_decorator(App)


class Cli(click.Group):
    """The root group: `DtmsError` → exit 1 with its message, invalid arguments → exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (dtms.InvalidArgumentError, ValidationError) as exc:
            raise click.UsageError(describe(exc), ctx) from exc
        except dtms.StoreNotFoundError as exc:
            raise click.ClickException(f"{exc} (pass --db PATH or set {DB_ENV})") from exc
        except dtms.DtmsError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # a file the user named cannot be opened or created
            raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from exc


def describe(exc: Exception) -> str:
    """One line per pydantic error, each starting with the field it is about."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{field}: {msg}" if field else msg)
    return "; ".join(lines)


class FilePath(click.Path):
    """click.Path for files that turns a name the OS cannot spell (a NUL byte, a lone surrogate) into a usage
    error; click's own lets the UnicodeEncodeError or ValueError of `os.stat` escape as a traceback."""

    def __init__(self, *, exists: bool = False) -> None:
        super().__init__(dir_okay=False, exists=exists, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except ValueError as exc:  # UnicodeEncodeError included
            self.fail(f"{value!r} is not a usable file name ({exc})", param, ctx)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    type=FilePath(),
    envvar=DB_ENV,
    show_default=DEFAULT_DB,
    show_envvar=True,
    help="The dtms database shared by every bot process.",
)
@click.version_option(dtms.__version__, prog_name="dtms")
@click.pass_context
def cli(ctx: click.Context, db: Path | None) -> None:
    """dtms: inspect and manage the trades of a Defensive Trade Management System database."""
    ctx.obj = App(db, explicit=True) if db is not None else App(dtms.default_db_path(), explicit=False)


def main() -> None:
    """Entry point of the `dtms` script and `python -m dtms`."""
    cli()


# -- output -----------------------------------------------------------------------------------------------


def json_option(func: F) -> F:
    """`--json`: machine-readable output with the model field names as keys and ISO-8601 UTC times."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def console() -> Console:
    """A console on stdout; wide when not a terminal, so piped tables are not squeezed to 80 columns."""
    term = Console(highlight=False)
    return term if term.is_terminal else Console(highlight=False, width=200, color_system=None)


def to_json(value: BaseModel) -> dict[str, Any]:
    """A model as JSON-ready data: field names as keys, times as ISO-8601 UTC."""
    return value.model_dump(mode="json")


def print_json(data: Any, *, compact: bool = False) -> None:
    """Print JSON: indented, or one line per document for streams (`--watch`)."""
    text = json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2)
    click.echo(text)


def cell(value: Any) -> str:
    """How one value reads in a table."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":")) if value else "-"
    return str(value)


def table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None
) -> Table:
    """An aligned table of `rows` under `columns` (numbers right-aligned)."""
    rows = [[cell(v) for v in row] for row in rows]
    out = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for i, name in enumerate(columns):
        numeric = bool(rows) and all(_is_number(row[i]) for row in rows)
        out.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        out.add_row(*row)
    return out


def fields_table(title: str, pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column field/value table for one record."""
    out = Table(title=title, title_justify="left", show_header=False)
    out.add_column("field", style="bold")
    out.add_column("value")
    for name, value in pairs:
        out.add_row(name, cell(value))
    return out


def print_table(*tables: Table) -> None:
    """Print tables to stdout."""
    out = console()
    for item in tables:
        out.print(item)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _seconds(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.1f} s{suffix}"


# -- trades -----------------------------------------------------------------------------------------------

TRADE_COLUMNS: Final = (
    "ticket", "identifier", "symbol", "direction", "volume", "entry_price", "sl", "tp", "state", "owner",
    "registered_at",
)  # fmt: skip
TRANSITION_COLUMNS: Final = (
    "transition_id",
    "at",
    "from_state",
    "to_state",
    "reason",
    "score",
    "epoch",
    "status",
)
ACTION_COLUMNS: Final = (
    "action_id", "created_at", "identifier", "leg", "action_type", "status", "attempts", "epoch", "retcode",
    "error",
)  # fmt: skip

ticket_type = click.IntRange(1, MAX_INT64)


def _rows(items: Iterable[BaseModel], columns: Sequence[str]) -> list[list[Any]]:
    return [[getattr(item, c) for c in columns] for item in items]


def trades_table(trades: Sequence[Trade], title: str | None = None, caption: str | None = None) -> Table:
    """The trade list as a table."""
    rows = _rows(trades, TRADE_COLUMNS)
    return table(title, TRADE_COLUMNS, rows, caption=caption or f"{len(trades)} trade(s)")


def transitions_table(rows: Sequence[Transition]) -> Table:
    """A transition log as a table."""
    return table(
        "Transitions", TRANSITION_COLUMNS, _rows(rows, TRANSITION_COLUMNS), caption=f"{len(rows)} row(s)"
    )


def actions_table(rows: Sequence[Action], title: str | None = None) -> Table:
    """Journal rows as a table."""
    return table(title, ACTION_COLUMNS, _rows(rows, ACTION_COLUMNS), caption=f"{len(rows)} action(s)")


def require_trade(store: dtms.Store, ticket: int) -> Trade:
    """The trade, or exit 1 saying it is not there."""
    trade = store.get_trade(ticket)
    if trade is None:
        raise click.ClickException(f"no trade with ticket {ticket} in {store.path}")
    return trade


def iso_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO-8601 date or time (`2026-01-05`, `2026-01-05T08:00`, `…Z`, `…+02:00`); no offset is UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 date or time, e.g. 2026-01-05 or "
                                 "2026-01-05T08:00Z") from None  # fmt: skip
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def print_json_stream(items: Iterable[str]) -> int:
    """Print JSON texts as one JSON array, one item a line, each written as it comes (constant memory)."""
    out = sys.stdout  # CliRunner swaps it too
    count = 0
    for item in items:
        out.write(("[\n" if count == 0 else ",\n") + item)
        count += 1
    out.write("\n]\n" if count else "[]\n")
    out.flush()
    return count


def _more(shown: int, total: int, limit: int | None) -> str | None:
    """The note under a limited listing: how many more match, and how to see them."""
    if limit is None or total <= shown:
        return None
    return f"{total - shown:,} more not shown: --limit N for more, --limit 0 for all"


@cli.command("trades")
@click.option(
    "--state",
    type=click.Choice([s.value for s in TradeState], case_sensitive=False),
    help="Only trades in this state.",
)
@click.option("--all", "include_closed", is_flag=True, help="Include CLOSED trades.")
@click.option("--since", callback=iso_time, metavar="ISO-TIME",
              help="Only trades registered at or after this time (UTC unless it has an offset).")  # fmt: skip
@click.option(
    "--limit",
    type=click.IntRange(0, MAX_INT64),
    default=TRADES_LIMIT,
    show_default=True,
    help="The newest N trades; 0 for all.",
)
@json_option
@pass_app
def trades_command(
    app: App, state: str | None, include_closed: bool, since: datetime | None, limit: int, as_json: bool
) -> None:
    """List registered trades, newest first (open ones unless --all or --state)."""
    cap = limit or None
    with app.store() as store:
        total = store.count_trades(include_closed, state=state, since=since)
        if as_json:
            shown = print_json_stream(
                store.iter_trades_json(state, include_closed=include_closed, since=since, limit=cap)
            )
            more = _more(shown, total, cap)
            if more is not None:
                click.echo(f"dtms: {shown:,} of {total:,} trades; {more}", err=True)
            return
        trades = list(store.iter_trades(state, include_closed=include_closed, since=since, limit=cap))
    kind = f"{state.upper()} " if state else ("" if include_closed else "open ")
    caption = f"{len(trades):,} of {total:,} {kind}trade(s), newest first"
    more = _more(len(trades), total, cap)
    print_table(trades_table(trades, caption=caption if more is None else f"{caption}; {more}"))


@cli.command("trade")
@click.argument("ticket", type=ticket_type)
@click.option(
    "--limit", type=click.IntRange(1), default=TRADE_ACTIONS, show_default=True, help="Actions shown."
)
@json_option
@pass_app
def trade_command(app: App, ticket: int, limit: int, as_json: bool) -> None:
    """Show one trade with its transitions and last actions.

    TICKET is the position ticket or the broker position identifier.
    """
    with app.store() as store:
        trade = require_trade(store, ticket)
        transitions = store.transitions(trade.identifier)
        actions = store.actions(ticket=trade.identifier, limit=limit)
    if as_json:
        print_json(
            {
                "trade": to_json(trade),
                "transitions": [to_json(t) for t in transitions],
                "actions": [to_json(a) for a in actions],
            }
        )
        return
    engine = trade.engine
    fields = {k: v for k, v in trade.model_dump().items() if k != "engine"}
    print_table(fields_table(f"Trade {trade.ticket}", fields.items()), *engine_tables(trade, engine))
    print_table(transitions_table(transitions), actions_table(actions, title=f"Last {limit} actions"))


def engine_tables(trade: Trade, engine: dict[str, Any]) -> list[Table]:
    """What the leader last wrote about a trade: score breakdown, timers, warnings, legs, broker view."""
    out: list[Table] = []
    evaluation = engine.get("evaluation") or {}
    signals = evaluation.get("signals") or {}
    if signals:
        rows = [[name, s.get("raw"), s.get("weight"), s.get("reason")] for name, s in signals.items()]
        caption = (f"score {evaluation.get('score')} · {evaluation.get('confluence')} "
                   f"({evaluation.get('confluence_ratio')}) · {evaluation.get('analysis')}")  # fmt: skip
        out.append(
            table("Score breakdown (last deep check)", ["signal", "raw", "weight", "reason"], rows, caption)
        )
    timers = [
        ("flat timer started", engine.get("flat_timer_started_at")),
        ("recovery timer started", engine.get("recovery_timer_started_at")),
        ("last fast check", engine.get("last_fast_at")),
        ("last deep check", engine.get("last_deep_at")),
        ("R multiple", engine.get("r_multiple")),
        ("VWAP cross counter", engine.get("vwap_cross_counter")),
        ("VWAP flip active", engine.get("vwap_flip_active")),
        ("regime", evaluation.get("regime")),
        (
            "warnings",
            {k: v.get("count") for k, v in (engine.get("warnings") or {}).items() if v.get("count")},
        ),
        ("hedge", engine.get("hedge")),
        ("re-add legs", engine.get("readds")),
        ("pending transition", engine.get("pending_transition")),
        ("closing (legs still open)", engine.get("closing")),
        ("broker view", engine.get("broker")),
        ("exit", engine.get("exit")),
    ]
    present = [(k, v) for k, v in timers if v not in (None, {}, [])]
    if present:
        out.append(fields_table("Engine state", present))
    return out


@cli.command("actions")
@click.option("--ticket", type=ticket_type, help="Only this trade's actions.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Newest N rows.")
@json_option
@pass_app
def actions_command(app: App, ticket: int | None, limit: int, as_json: bool) -> None:
    """List the action journal, newest first."""
    with app.store() as store:
        if ticket is not None:
            require_trade(store, ticket)
        rows = store.actions(ticket=ticket, limit=limit)
    if as_json:
        print_json([to_json(a) for a in rows])
    else:
        print_table(actions_table(rows))


#: Where each `register_trade` field comes from on the command line, for error messages.
REGISTER_PARAMS: Final = {
    "ticket": "TICKET",
    "symbol": "SYMBOL",
    "direction": "DIRECTION",
    "entry_price": "ENTRY",
    "volume": "VOLUME",
    "sl": "--sl",
    "tp": "--tp",
    "owner": "--owner",
    "magic": "--magic",
    "comment": "--comment",
    "identifier": "--identifier",
}


@cli.command("register")
@click.argument("ticket", type=int)
@click.argument("symbol")
@click.argument("direction")
@click.argument("entry", type=float)
@click.argument("volume", type=float)
@click.option("--sl", type=float, help="Stop loss price.")
@click.option("--tp", type=float, help="Take profit price.")
@click.option("--owner", default="dtms", show_default=True, help="The manager responsible for the trade.")
@click.option("--magic", type=int, help="The EA magic number.")
@click.option("--comment", help="Order comment (at most 31 characters).")
@click.option("--identifier", type=int, help="Broker position identifier, if it differs from the ticket.")
@json_option
@pass_app
def register_command(
    app: App,
    /,
    ticket: int,
    symbol: str,
    direction: str,
    entry: float,
    volume: float,
    as_json: bool,
    **options: Any,
) -> None:
    """Register a position for management.

    Idempotent: the same ticket with the same symbol, direction and entry returns the stored trade; other
    data for a registered ticket is a conflict (exit 1). Creates the database if it does not exist.
    DIRECTION is BUY or SELL in any case; ENTRY is the entry price.
    """
    with app.store(create=True) as store:
        try:
            trade = store.register_trade(ticket, symbol, direction, entry, volume, **options)
        except ValidationError as exc:
            raise bad_register_input(exc) from exc
    if as_json:
        print_json(to_json(trade))
    else:
        print_table(trades_table([trade], title="Registered"))


def bad_register_input(exc: ValidationError) -> click.UsageError:
    """A ValidationError as click's exit-2 error, naming the argument or option the user typed."""
    located = [e for e in exc.errors() if e["loc"]]
    if len(located) == len(exc.errors()) == 1:
        field = str(located[0]["loc"][0])
        msg = str(located[0]["msg"]).removeprefix("Value error, ")
        return click.BadParameter(f"{field}: {msg}", param_hint=REGISTER_PARAMS.get(field, field))
    return click.UsageError(describe(exc))


@cli.command("unregister")
@click.argument("ticket", type=ticket_type)
@click.option(
    "--reason", default="unregistered by the CLI", show_default=True, help="Kept in the trade's history."
)
@json_option
@pass_app
def unregister_command(app: App, ticket: int, reason: str, as_json: bool) -> None:
    """Stop managing a trade; its history stays.

    The trade becomes CLOSED with the reason; the broker position is not touched. Unregistering a closed
    trade changes nothing and exits 0; an unknown ticket exits 1.
    """
    with app.store(write=True) as store:
        require_trade(store, ticket)
        changed = store.unregister_trade(ticket, reason=reason)
        trade = require_trade(store, ticket)
    if as_json:
        print_json({"ticket": ticket, "unregistered": changed, "state": trade.state.value})
    elif changed:
        click.echo(f"ticket {ticket}: unregistered ({reason})")
    else:
        click.echo(f"ticket {ticket}: already closed ({trade.close_reason}); nothing changed")


# -- the lease and health ---------------------------------------------------------------------------------


def database_json(store: dtms.Store) -> dict[str, Any]:
    """Which database this is: its absolute path and its id (null until a leader or a writer made one)."""
    return {"path": str(store.path), "id": store.database_id}


def lease_json(info: LeaseInfo | None, store: dtms.Store) -> dict[str, Any]:
    """The lease as JSON with the same keys whether or not there has ever been a leader."""
    if info is not None:
        return {**to_json(info), "database": database_json(store)}
    empty: dict[str, Any] = dict.fromkeys(LeaseInfo.model_fields)
    empty.update(name="engine", state="none", lock_held=False, transitions=0)
    empty["observed_at"] = store.clock.utc_now().isoformat().replace("+00:00", "Z")
    empty["database"] = database_json(store)
    return empty


def lease_table(info: LeaseInfo | None, store: dtms.Store) -> Table:
    """The lease as a field/value table."""
    database = [("database", str(store.path)), ("database id", store.database_id)]
    if info is None:
        return fields_table("Lease", [*database, ("state", "none"), ("holder", "no leader was ever elected")])
    holder = info.holder
    return fields_table(
        f"Lease {info.name}",
        [
            *database,
            ("holder", None if holder is None else holder.name),
            ("host", None if holder is None else holder.host),
            ("pid", None if holder is None else holder.pid),
            ("epoch", info.epoch),
            ("state", info.state.value),
            ("lock_held", info.lock_held),
            ("acquired_at", info.acquired_at),
            ("renewed", _seconds(info.renewed_ago_s, " ago")),
            ("expires in", _seconds(info.expires_in_s)),
            ("loop heartbeat age", _seconds(info.loop_beat_age_s)),
            ("transitions", info.transitions),
            ("lease_ttl_s", info.lease_ttl_s),
            ("observed_at", info.observed_at),
        ],
    )


@cli.command("lease")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C (with --json: one JSON line per refresh).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=WATCH_INTERVAL_S,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@click.option("--count", type=click.IntRange(1), help="Stop after this many refreshes with --watch.")
@json_option
@pass_app
def lease_command(app: App, watch: bool, interval: float, count: int | None, as_json: bool) -> None:
    """Show who leads, with the epoch and lease ages.

    Holder name, host and pid; epoch; state (held, expired, released or none); whether the holder has the
    OS lock; when it was acquired, renewed and expires; the leader loop's heartbeat age; transitions.
    """
    with app.store() as store:
        if not watch:
            info = store.lease()
            if as_json:
                print_json(lease_json(info, store))
            else:
                print_table(lease_table(info, store))
            return
        watch_lease(store, interval, count, as_json)


def watch_lease(store: dtms.Store, interval: float, count: int | None, as_json: bool) -> None:
    """Print the lease every `interval` seconds, `count` times or until Ctrl-C."""
    stop = threading.Event()  # waited on rather than slept on, so Ctrl-C returns at once
    out = console()
    live = Live(console=out, auto_refresh=False) if out.is_terminal and not as_json else None
    shown = 0
    try:
        if live is not None:
            live.start()
        while count is None or shown < count:
            if shown:
                stop.wait(interval)
            info = store.lease()
            shown += 1
            if as_json:
                print_json(lease_json(info, store), compact=True)
            elif live is not None:
                live.update(lease_table(info, store), refresh=True)
            else:
                out.print(lease_table(info, store))
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()


@cli.command("health")
@json_option
@pass_app
def health_command(app: App, as_json: bool) -> None:
    """Check the database and the leader: exit 0 healthy, 1 not.

    Healthy means the database passes a quick integrity check and a leader holds a live lease whose loop
    has beaten recently.
    """
    with app.store() as store:
        health = store.health()
    if as_json:
        print_json({**to_json(health), "ok": health.ok})
    else:
        print_table(
            fields_table(
                f"Health: {health.status}",
                [
                    *(("reason", r) for r in health.reasons),
                    *health.checks.items(),
                    ("checked_at", health.checked_at),
                ],
            )
        )
    if not health.ok:
        click.get_current_context().exit(1)


# -- another database on this account -----------------------------------------------------------------


@cli.group("foreign")
def foreign_group() -> None:
    """Another dtms database's requests on this account (the foreign-database rail)."""


@foreign_group.command("ack")
@click.option("--by", default="operator", show_default=True, help="Who acknowledges (kept with it).")
@json_option
@pass_app
def foreign_ack_command(app: App, by: str, as_json: bool) -> None:
    """Acknowledge the other databases seen on this account: the leader sends risk-adding requests again.

    First make sure only one database manages the account (stop the bots of the other, or point them at
    this one with --db / DTMS_DB). A database seen only after this trips the rail again.
    """
    from dtms.engine import foreign

    with app.store(write=True) as store:
        tags = foreign.acknowledge(store, by=by)
    if as_json:
        print_json({"acknowledged": tags, "database": str(app.db)})
    elif tags:
        click.echo(f"acknowledged {', '.join(tags)}: the rail clears at the leader's next tick")
    else:
        click.echo("no other database has been seen on this account; nothing to acknowledge")


# The other command modules register themselves on `cli` when imported.
from dtms.cli import fence, operate, outbox, tune  # noqa: E402, F401  # imported for their commands

__all__ = ["DEFAULT_DB", "App", "Cli", "cli", "main"]
