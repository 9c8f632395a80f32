"""Operating commands: run a node, engine status, the operator's switches, the config and the demo."""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console

import dtms
from dtms.cli import (
    App,
    FilePath,
    cli,
    database_json,
    fields_table,
    json_option,
    pass_app,
    print_json,
    print_table,
    table,
    to_json,
)
from dtms.config import Config
from dtms.engine import foreign
from dtms.store import summary
from dtms.store.db import DIR_MODE

config_option = click.option(
    "--config", "config_path", type=FilePath(exists=True), envvar="DTMS_CONFIG",
    show_envvar=True, help="A TOML configuration file (environment overrides: DTMS__SECTION__KEY=value).",
)  # fmt: skip


def load_config(path: Path | None, *, server_time_default: int | None = None) -> Config:
    """The effective config; `server_time_default` fills broker.server_time when nothing sets it (the sim).

    A file that is not UTF-8 TOML is a usage error (exit 2) naming it, not a traceback (issue 11, point 5).
    """
    if path is not None:
        read_toml(path)
    env = dict(os.environ)
    if server_time_default is not None and "DTMS__BROKER__SERVER_TIME" not in env:
        probe = (
            Config.load(path, env={k: v for k, v in env.items() if k != "DTMS__BROKER__SERVER_TIME"})
            if path is not None and _file_sets_server_time(path)
            else None
        )
        if probe is None:
            env["DTMS__BROKER__SERVER_TIME"] = str(server_time_default)
    return Config.load(path, env=env)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file's data; `click.BadParameter` (exit 2) when it cannot be read, is not UTF-8 or not
    TOML."""
    import tomllib

    hint = "'--config' / DTMS_CONFIG"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        why = f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise click.BadParameter(why, param_hint=hint) from exc
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint=hint) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}", param_hint=hint) from exc


def _file_sets_server_time(path: Path) -> bool:
    broker = read_toml(path).get("broker")
    return isinstance(broker, dict) and "server_time" in broker


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and every missing parent owner-only (0o700), as the store does for its own.

    `Path.mkdir(mode, parents=True)` gives only the last one `mode`; the parents get the umask's.
    """
    directory = directory.expanduser().absolute()
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for path in reversed(missing):
        path.mkdir(mode=DIR_MODE, exist_ok=True)
        # mkdir's mode is filtered by the umask: a 0o077 umask is fine, a 0o277 one would leave it unusable.
        os.chmod(path, DIR_MODE)


@cli.command("run")
@click.option("--broker", "broker_kind", type=click.Choice(["sim", "mt5"]), required=True,
              help="sim: a simulated terminal file; mt5: the MetaTrader5 package (Windows).")  # fmt: skip
@click.option("--sim", "sim_path", type=FilePath(),
              help="The simulated terminal file (created if missing) for --broker sim.")  # fmt: skip
@click.option("--name", default=None, help="This process's name in the lease (default: host and pid).")
@click.option("--login", type=int, help="MetaTrader 5 account (--broker mt5).")
@click.option(
    "--password", envvar="DTMS_MT5_PASSWORD", show_envvar=True, help="Account password (--broker mt5)."
)
@click.option("--server", help="Broker server name (--broker mt5).")
@click.option("--terminal", "terminal_path", help="Path of terminal64.exe (--broker mt5).")
@config_option
@pass_app
def run_command(
    app: App,
    broker_kind: str,
    sim_path: Path | None,
    name: str | None,
    login: int | None,
    password: str | None,
    server: str | None,
    terminal_path: str | None,
    config_path: Path | None,
) -> None:
    """Run a leader-capable node until interrupted (Ctrl-C or SIGTERM hand over at once).

    Every bot process can run this (or create a dtms.Node itself); one of them leads and manages the trades
    through the broker, the others stand by and take over if it dies.
    """
    from dtms.broker import MT5Broker

    now = None
    if broker_kind == "sim":
        import dtms.sim

        if sim_path is None:
            raise click.UsageError("--broker sim needs --sim PATH")
        config = load_config(config_path, server_time_default=0)  # first: a bad config creates nothing
        make_private_dirs(sim_path.parent)
        term = dtms.sim.open(sim_path)
        broker = MT5Broker(term)
        now = term.now
    else:
        config = load_config(config_path)
        offset = config.broker.server_time
        if not isinstance(offset, int):
            raise click.UsageError("--broker mt5 needs broker.server_time as an offset in seconds")
        broker = MT5Broker(login=login, password=password, server=server, path=terminal_path,
                           server_time_offset_s=offset, magic=config.execution.magic)  # fmt: skip
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    db = app.account_db(login, server) if broker_kind == "mt5" else app.db  # one database per account
    node = dtms.Node(
        db, broker, name=name, config=config, now=now,
        on_started_leading=lambda epoch: click.echo(f"leading with epoch {epoch}"),
        on_stopped_leading=lambda epoch, reason: click.echo(f"stopped leading epoch {epoch} ({reason})"),
        on_new_leader=lambda seen: click.echo(
            f"leader: {seen.holder.name if seen.holder else '-'} epoch {seen.epoch}"),
    )  # fmt: skip
    with node:
        click.echo(f"{node.name}: joined the election on {db}; Ctrl-C to stop")
        stopping.wait()
    click.echo("stopped")


def status_data(store: dtms.Store) -> dict[str, Any]:
    """Everything `dtms status` shows, read from the database (any process can ask)."""
    lease = store.lease()
    engine = store.setting("engine.status") or {}
    now = store.clock.utc_now()
    # Aggregates in SQL: loading every open trade and 10 000 actions made status O(n) (issue 11, point 6).
    by_state = summary.open_trades_by_state(store)
    health = store.health()
    leader = None
    if lease is not None and lease.holder is not None:
        leader = {"name": lease.holder.name, "host": lease.holder.host, "pid": lease.holder.pid,
                  "epoch": lease.epoch, "since": lease.acquired_at.isoformat() if lease.acquired_at else None,
                  "heartbeat_age_s": lease.loop_beat_age_s, "state": lease.state.value}  # fmt: skip
    return {
        "database": database_json(store),
        "monitoring_active": health.ok,
        "leader": leader,
        "halted": bool(store.setting("trading.halted", False)),
        "foreign_databases": foreign.pending(store),
        # Requests an earlier leader sent that wait for proof it can send no more (`dtms fence`).
        "awaiting_proof": [
            {
                "action_id": a.action_id,
                "identifier": a.identifier,
                "action_type": a.action_type,
                "epoch": a.epoch,
            }
            for a in store.awaiting_proof()
        ],
        "active_trades": sum(by_state.values()),
        "armed_trades": summary.armed_trades(store),
        "trades_by_state": by_state,
        "actions_last_hour": summary.recent_actions(store, now - timedelta(hours=1)),
        "engine": engine,
        # Notifications waiting for delivery and given up (dead letters: `dtms outbox --status dead`).
        "notifications": to_json(store.outbox_summary()),
        "health": {"status": health.status, "reasons": list(health.reasons)},
    }


@cli.command("status")
@json_option
@pass_app
def status_command(app: App, as_json: bool) -> None:
    """Engine summary: leader, trades by state, actions in the last hour, rails and data health."""
    with app.store() as store:
        data = status_data(store)
    if as_json:
        print_json(data)
        return
    engine = data["engine"]
    leader = data["leader"] or {}
    print_table(
        fields_table(
            "Status",
            [
                ("database", data["database"]["path"]),
                ("database id", data["database"]["id"]),
                ("monitoring", "active" if data["monitoring_active"] else "NOT ACTIVE"),
                (
                    "leader",
                    f"{leader.get('name', '-')} (pid {leader.get('pid', '-')}, "
                    f"epoch {leader.get('epoch', '-')})",
                ),
                ("heartbeat age", leader.get("heartbeat_age_s")),
                ("halted", data["halted"]),
                *(
                    (
                        (
                            "AWAITING PROOF",
                            f"{len(data['awaiting_proof'])} request(s) of an earlier leader (epochs "
                            f"{sorted({a['epoch'] for a in data['awaiting_proof']})}) may still execute: "
                            "nothing risk-adding is sent for their trades; see `dtms fence`",
                        ),
                    )
                    if data["awaiting_proof"]
                    else ()
                ),
                *(
                    (
                        (
                            "FOREIGN DATABASE",
                            f"{', '.join(data['foreign_databases'])}: nothing risk-adding is sent; "
                            "check, then `dtms foreign ack`",
                        ),
                    )
                    if data["foreign_databases"]
                    else ()
                ),
                *(
                    (
                        (
                            "DEAD NOTIFICATIONS",
                            f"{data['notifications']['dead']} never delivered "
                            f"({data['notifications']['last_error']}); `dtms outbox --status dead`, "
                            "then `dtms outbox retry`",
                        ),
                    )
                    if data["notifications"]["dead"]
                    else ()
                ),
                ("notifications pending", data["notifications"]["pending"]),
                ("active trades", data["active_trades"]),
                ("armed trades", data["armed_trades"]),
                ("trades by state", data["trades_by_state"]),
                ("actions last hour", data["actions_last_hour"]),
                ("trading state", engine.get("trading_state")),
                ("rails tripped", {k: v for k, v in (engine.get("tripped") or {}).items() if v}),
                ("checks", engine.get("counters")),
                ("last tick (trading clock)", engine.get("tick_at")),
                *(("health", r) for r in data["health"]["reasons"]),
            ],
        )
    )
    health = engine.get("data_health") or {}
    if health:
        cols = ["symbol", "ready", "m5_bars", "m15_bars", "gaps", "vwap", "spread_median", "error"]
        print_table(
            table("Data health", cols, [[s, *(h.get(c) for c in cols[1:])] for s, h in health.items()])
        )


@cli.command("halt")
@click.option("--reason", default="operator", show_default=True, help="Kept with the switch.")
@pass_app
def halt_command(app: App, reason: str) -> None:
    """Stop all broker requests and deep checks (fast checks keep observing) until `dtms resume`."""
    with app.store(write=True) as store:
        store.set_setting("trading.halted", True)
        store.set_setting("trading.halted_reason", reason)
    click.echo("halted: no broker requests until `dtms resume`")


@cli.command("resume")
@pass_app
def resume_command(app: App) -> None:
    """Lift `dtms halt`: pending actions are reconciled and sent again."""
    with app.store(write=True) as store:
        store.set_setting("trading.halted", False)
    click.echo("resumed")


@cli.group("rails")
def rails_group() -> None:
    """The safety rails."""


@rails_group.command("reset")
@pass_app
def rails_reset_command(app: App) -> None:
    """Clear the consecutive-stops rail for today (the loss rails clear by themselves)."""
    with app.store(write=True) as store:
        store.set_setting("rails.reset_at", store.clock.utc_now().isoformat())
    click.echo("consecutive-stops rail reset")


@cli.command("may-modify")
@click.argument("ticket", type=click.IntRange(1))
@click.argument("manager")
@click.option(
    "--action",
    type=click.Choice(["sl", "trail", "breakeven", "partial_close", "close"]),
    default="sl",
    show_default=True,
    help="What the other manager wants to do.",
)
@json_option
@pass_app
def may_modify_command(app: App, ticket: int, manager: str, action: str, as_json: bool) -> None:
    """Ask whether another manager may change a position now (exit 0 yes, 1 no)."""
    with app.store() as store:
        allowed = store.may_modify(ticket, manager, action)  # type: ignore[arg-type]
        state = store.dtms_state(ticket)
    if as_json:
        print_json(
            {"ticket": ticket, "manager": manager, "action": action, "allowed": allowed, "dtms_state": state}
        )
    else:
        click.echo(f"{'yes' if allowed else 'no'} (dtms_state: {state or 'not managed'})")
    if not allowed:
        click.get_current_context().exit(1)


@cli.group("config")
def config_group() -> None:
    """The configuration."""


@config_group.command("show")
@config_option
@json_option
def config_show_command(config_path: Path | None, as_json: bool) -> None:
    """Print the effective configuration (defaults, then --config, then DTMS__ environment overrides)."""
    if config_path is not None:
        read_toml(config_path)
    try:
        config = Config.load(config_path)
    except dtms.ConfigError as exc:
        if config_path is not None or "server_time" not in str(exc):
            raise
        click.echo("# broker.server_time is not set: required before `dtms run --broker mt5`", err=True)
        config = Config()
    if as_json:
        print_json(config.to_dict())
    else:
        click.echo(config.to_toml(), nl=False)


@cli.command("demo")
@click.option("--duration", type=click.FloatRange(5, 3600), default=45.0, show_default=True, help="Seconds.")
@click.option("--speed", type=click.FloatRange(1, 10_000), default=600.0, show_default=True,
              help="Simulated seconds per real second.")  # fmt: skip
@click.option("--processes", type=click.IntRange(1, 6), default=3, show_default=True, help="Bot processes.")
@click.option("--trades", type=click.IntRange(0, 100), default=6, show_default=True, help="Positions opened.")
@click.option("--keep", is_flag=True, help="Keep the temporary database and terminal files.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the synthetic market.")
def demo_command(duration: float, speed: float, processes: int, trades: int, keep: bool, seed: int) -> None:
    """Watch a failover: bot processes on a simulated terminal; the leader is killed, another takes over."""
    from dtms import demo

    result = demo.run(duration, speed=speed, processes=processes, trades=trades, keep=keep, seed=seed,
                      live=sys.stdout.isatty())  # fmt: skip
    click.echo(demo.summary(result))
    if not result.ok:
        click.get_current_context().exit(1)


def replay_options(f: Any) -> Any:
    """The options `dtms replay` and `dtms tune` share: timeframes, and the generated entries and account."""
    options = [
        click.option("--timeframes",
                     help="The engine's fast,slow timeframes for coarse data, e.g. H1,H4 (default M5,M15)."),
        click.option("--sl-atr", type=click.FloatRange(0, min_open=True), default=1.5, show_default=True,
                     help="Generated entries: SL at this many ATR14 of the slow timeframe."),
        click.option("--tp-r", type=click.FloatRange(0, min_open=True), default=2.0, show_default=True,
                     help="Generated entries: TP at this many R."),
        click.option("--no-tp", is_flag=True, help="Generated entries get no TP."),
        click.option("--volume", type=click.FloatRange(0, min_open=True), default=0.1, show_default=True,
                     help="Generated entries' volume in lots."),
        click.option("--balance", type=click.FloatRange(0, min_open=True), default=10_000.0,
                     show_default=True, help="Starting balance of the simulated account."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


class IntList(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic from click 8.2
    """Integers as `3`, `1,3,7` and, with `ranges`, `1-5` (inclusive; mixed: `1-3,7`), each >= `minimum`."""

    name = "list"

    def __init__(self, *, ranges: bool, minimum: int) -> None:
        self.ranges, self.minimum = ranges, minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        shape = (
            ", a range A-B or a comma list of them (1-3,7)" if self.ranges else " or a comma list (12,24,48)"
        )
        out: list[int] = []
        for part in str(value).split(","):
            first, dash, last = part.strip().partition("-") if self.ranges else (part.strip(), "", "")
            try:
                low, high = int(first), int(last) if dash else int(first)
            except ValueError:
                self.fail(f"{value!r} is not an integer{shape}", param, ctx)
            if high < low:
                self.fail(f"the range {part.strip()} runs backwards (write {high}-{low})", param, ctx)
            if low < self.minimum:
                self.fail(f"{low} is below {self.minimum} (in {value!r})", param, ctx)
            out.extend(range(low, high + 1))
        if len(set(out)) != len(out):
            twice = sorted({n for n in out if out.count(n) > 1})
            self.fail(f"{', '.join(map(str, twice))} listed twice (in {value!r})", param, ctx)
        return out


class Comparisons(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic from click 8.2
    """Comparison rules as a comma list of names, `all` or `none` (`dtms.replay.rules.comparisons`)."""

    name = "rules"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        from dtms.replay.rules import comparisons

        try:
            return comparisons(str(value))
        except dtms.InvalidArgumentError as exc:
            self.fail(str(exc), param, ctx)


@cli.command("replay")
@click.argument("bars", type=FilePath(exists=True))
@click.option(
    "--symbol", help="The symbol (default: the file name's first part, as MetaTrader names exports)."
)
@click.option("--entries", "entries_path", type=FilePath(exists=True),
              help="A CSV of entries: time,direction,volume,sl,tp (ISO-8601 UTC times).")  # fmt: skip
@click.option(
    "--every",
    type=IntList(ranges=False, minimum=1),
    help="An entry every N fast-timeframe bars (default 24); a comma list (12,24,48) sweeps.",
)
@click.option(
    "--seed",
    "--seeds",
    "seeds",
    type=IntList(ranges=True, minimum=0),
    default="0",
    show_default=True,
    help="Seed of the entries' directions; several (1-5, 1,3,7) sweep.",
)
@replay_options
@click.option("--warmup", type=click.IntRange(0), help="Slow-timeframe bars before the first entry.")
@config_option
@json_option
@click.option("--out", "out_path", type=FilePath(), help="Also write the JSON here.")
@click.option(
    "--plot",
    "plot_path",
    type=FilePath(),
    help="Draw price, entries/exits, SL path and states to this PNG (needs dtms[plot]).",
)
@click.option("--plot-trade", type=click.IntRange(1), help="Plot only this entry (1-based).")
@click.option(
    "--exact",
    is_flag=True,
    help="Run every tick of the live grid (slow; the oracle the default event-driven run matches).",
)
@click.option(
    "--seconds",
    "keep_seconds",
    is_flag=True,
    help="On coarse timeframes keep time settings in seconds instead of scaling them to the bars.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1),
    help="Worker processes for a sweep (several seeds or --every values; default: every core).",
)
@click.option(
    "--compare",
    "compare",
    type=Comparisons(),
    default="all",
    show_default=True,
    help="Comparison rules run on the same entries: a comma list of breakeven_1r, chandelier_2atr, "
    "chandelier_3atr, time_stop; all; or none.",
)
@click.option(
    "--time-stop-bars",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="The time_stop comparison closes a trade after this many bars of the data.",
)
def replay_command(bars: Path, symbol: str | None, entries_path: Path | None, every: list[int] | None,
                   seeds: list[int], timeframes: str | None, sl_atr: float, tp_r: float, no_tp: bool,
                   volume: float, balance: float, warmup: int | None, config_path: Path | None, as_json: bool,
                   out_path: Path | None, plot_path: Path | None, plot_trade: int | None, exact: bool,
                   keep_seconds: bool, jobs: int | None, compare: tuple[str, ...],
                   time_stop_bars: int) -> None:  # fmt: skip
    """Replay BARS (a MetaTrader CSV export or a plain OHLCV CSV) through the engine, beside the unmanaged
    baseline and one-line comparison rules (breakeven at +1 R, chandelier stops, a time stop) on the same
    entries, and report them side by side. Deterministic: the same inputs give the same report. Several
    seeds or densities (--seeds 1-5 --every 12,24,48) run as a sweep across the cores, with a combined
    report."""
    from rich.progress import Progress

    from dtms import replay as rp
    from dtms import report as rep
    from dtms.sim.loaders import symbol_from_path

    config = load_config(config_path, server_time_default=0)
    pair = tuple(t.strip().upper() for t in timeframes.split(",")) if timeframes else None
    if pair is not None and len(pair) != 2:
        raise click.BadParameter("give two timeframes, e.g. H1,H4", param_hint="--timeframes")
    kwargs: dict[str, Any] = dict(
        symbol=symbol or symbol_from_path(bars), entries=entries_path, config=config, timeframes=pair,
        sl_atr=sl_atr, tp_r=None if no_tp else tp_r, volume=volume, balance=balance, warmup=warmup,
        exact=exact, scale_time=not keep_seconds, compare=compare, time_stop_bars=time_stop_bars,
    )  # fmt: skip
    if len(seeds) * len(every or [None]) > 1:
        if plot_path is not None or plot_trade is not None:
            raise click.UsageError("--plot draws one run: give one seed and one --every value")
        _replay_sweep(bars, seeds, every, jobs, kwargs, as_json, out_path)
        return
    seed, every_n = seeds[0], every[0] if every else None
    with Progress(console=Console(file=sys.stderr), transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("replaying", total=None)
        report = rp.replay(
            bars, every=every_n, seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total), **kwargs,
        )  # fmt: skip
    text = report.to_json()
    if out_path is not None:
        out_path.write_text(text)
    click.echo(text if as_json else rep.render(report), nl=not as_json or not text.endswith("\n"))
    if report.timing:
        click.echo(", ".join(f"{k} {v:,.1f}" for k, v in report.timing.items()), err=True)
    if plot_path is not None:
        rep.plot(report, plot_path, trade=plot_trade)
        click.echo(f"plot written to {plot_path}", err=True)


def _replay_sweep(bars: Path, seeds: list[int], every: list[int] | None, jobs: int | None,
                  kwargs: dict[str, Any], as_json: bool, out_path: Path | None) -> None:  # fmt: skip
    """Several replays across `jobs` processes, one progress bar over the runs, the combined report."""
    from rich.progress import MofNCompleteColumn, Progress

    from dtms import replay as rp

    total = len(seeds) * len(every or [None])
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())
    failed: rp.SweepError | None = None
    console = Console(file=sys.stderr)
    with Progress(*columns, console=console, transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"replaying {total} runs", total=total)
        try:
            report = rp.sweep(bars, seeds=seeds, every=every, jobs=jobs,
                              progress=lambda done, n: bar.update(task, completed=done, total=n),
                              **kwargs)  # fmt: skip
        except rp.SweepError as exc:
            if exc.report is None:
                raise
            failed, report = exc, exc.report
    text = report.to_json()
    if out_path is not None:
        out_path.write_text(text)
    click.echo(text if as_json else report.render(), nl=not as_json)
    if report.timing:
        w = report.timing
        click.echo(f"{len(report.runs)} runs on {int(w['jobs'])} processes: wall {w['wall_s']:,.1f} s, "
                   f"runs {w['runs_s']:,.1f} s", err=True)  # fmt: skip
    if failed is not None:
        raise click.ClickException(str(failed))


__all__ = ["load_config", "make_private_dirs", "read_toml", "status_data"]
