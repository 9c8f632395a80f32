"""`dtms demo`: bot processes on a temporary simulated terminal, a live table, a killed leader, a summary."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import dtms
from dtms.models import ActionStatus

NAMES: Final = ("bot", "api", "agent", "worker", "cron", "ui")
CTX: Final = mp.get_context("spawn")  # the same on Linux and Windows; no fork-inherited state
#: How long a run past its duration still waits for the takeover after the killed leader (loaded machines).
TAKEOVER_WAIT_S: Final = 30.0


def _demo_config(tick_s: float) -> dict[str, Any]:
    return {
        "broker": {"server_time": 0},
        "loop": {"tick_s": tick_s},
        # NOTE: a 2 s TTL keeps a hung leader's replacement quick in a one-minute demo; crashes need no TTL.
        "election": {
            "lease_ttl_s": 2.0,
            "renew_deadline_s": 1.5,
            "retry_interval_s": 0.2,
            "check_interval_s": 0.1,
            "send_margin_s": 0.2,
            "loop_stall_s": 10.0,
        },
    }


def _node_process(db: str, sim: str, name: str, opens: int, seed: int, events: Any, tick_s: float) -> None:
    """One bot process: a leader-capable Node; the first one also opens and registers positions as a
    follower."""
    import logging

    import dtms.sim
    from dtms.broker import MT5Broker
    from dtms.config import Config

    logging.disable(logging.INFO)  # the parent draws the table; engine events would scroll it away
    term = dtms.sim.open(sim)
    node = dtms.Node(
        db, MT5Broker(term), name=name, config=Config.from_mapping(_demo_config(tick_s)), now=term.now,
        on_started_leading=lambda epoch: events.put(("started", name, os.getpid(), epoch, time.monotonic())),
    )  # fmt: skip
    node.start()
    events.put(("ready", name, os.getpid(), None, time.monotonic()))
    rng = random.Random(seed)  # noqa: S311  # a reproducible demo market, not security
    trader = MT5Broker(term)  # the bot's own connection, as a real bot would have
    trader.connect()
    for _ in range(opens):
        time.sleep(rng.uniform(0.5, 1.5))
        symbol = rng.choice(["EURUSD", "XAUUSD", "BTCUSD"])
        side = rng.choice(["BUY", "SELL"])
        tick = trader.tick(symbol)
        spec = trader.symbol(symbol)
        price = tick.ask if side == "BUY" else tick.bid
        distance = max(price * 0.002, 30 * spec.point)
        sl = round(price - distance if side == "BUY" else price + distance, spec.digits)
        volume = max(
            spec.volume_min, spec.floor_volume(rng.choice([0.1, 0.2, 0.5]) if symbol == "EURUSD" else 0.1)
        )
        out = trader.open(symbol, side, volume, sl=sl, magic=42, comment=f"{name} entry")  # type: ignore[arg-type]
        if out.is_done and out.identifier is not None:
            node.store.register_trade(out.identifier, symbol, side, out.price, out.volume or volume, sl=sl)
    while True:
        time.sleep(3600)


@dataclass
class DemoResult:
    """What the demo observed: the numbers of its summary."""

    failovers: int = 0
    gaps_ms: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    trades_by_state: dict[str, int] = field(default_factory=dict)
    actions_by_status: dict[str, int] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    directory: str = ""
    processes: int = 0

    @property
    def ok(self) -> bool:
        """No action executed twice, a leader was elected, and (with two or more processes) one took over."""
        return not self.duplicates and bool(self.epochs) and (self.failovers > 0 or self.processes < 2)


def duplicates(store: dtms.Store, broker: Any) -> list[str]:
    """Journal vs terminal: every DONE open/close must appear in the deal history exactly once (by its
    tag)."""
    deals = broker.deals(since=None)
    by_comment = Counter(d.comment for d in deals if d.comment.startswith("dtms-"))
    found = []
    for action in store.actions(limit=100_000):
        comment = (action.request or {}).get("comment")
        if action.status is ActionStatus.DONE and comment and not (action.result or {}).get("evidence"):
            seen = by_comment.get(comment, 0)
            if seen != 1:
                found.append(f"action {action.action_id} ({action.action_type}) found {seen} times")
    return found


def _table(store: dtms.Store, notes: list[str]) -> Any:
    from rich.console import Group
    from rich.table import Table

    lease = store.lease()
    head = Table.grid(padding=(0, 2))
    if lease is not None and lease.holder is not None:
        head.add_row(
            "leader",
            f"[bold]{lease.holder.name}[/] (pid {lease.holder.pid})",
            "epoch",
            str(lease.epoch),
            "lease",
            lease.state.value,
            "transitions",
            str(lease.transitions),
        )
    else:
        head.add_row("leader", "none yet")
    trades = Table(title="trades", expand=False)
    for col in ("ticket", "symbol", "dir", "state", "score", "sl", "volume", "armed"):
        trades.add_column(col)
    for t in store.list_trades(include_closed=True)[-12:]:
        trades.add_row(str(t.identifier), t.symbol, t.direction.value, t.state.value,
                       "" if t.score is None else f"{t.score:+.2f}", "" if t.sl is None else f"{t.sl:g}",
                       f"{t.volume:g}", "yes" if t.armed else "")  # fmt: skip
    acts = Table(title="recent actions")
    for col in ("id", "ticket", "action", "leg", "status", "epoch"):
        acts.add_column(col)
    for a in store.actions(limit=6):
        acts.add_row(str(a.action_id), str(a.identifier), a.action_type, a.leg, a.status.value, str(a.epoch))
    return Group(head, trades, acts, *notes[-4:])


def run(
    duration: float = 45.0,
    *,
    speed: float = 600.0,
    processes: int = 3,
    trades: int = 6,
    keep: bool = False,
    seed: int = 7,
    live: bool = True,
) -> DemoResult:
    """Run the demo; returns what happened. Leaves no process behind, and no files unless `keep`."""
    import dtms.sim
    from dtms.broker import MT5Broker

    if not 1 <= processes <= len(NAMES):
        raise dtms.InvalidArgumentError(f"processes must be 1-{len(NAMES)}")
    if duration <= 0 or speed <= 0 or trades < 0:
        raise dtms.InvalidArgumentError("duration and speed must be positive, trades not negative")
    directory = tempfile.mkdtemp(prefix="dtms-demo-")
    db, sim = os.path.join(directory, "dtms.db"), os.path.join(directory, "terminal.db")
    term = dtms.sim.open(sim, clock="wall", speed=speed, seed=seed)
    term.advance(3 * 86_400)  # bars before "now" for the windows to backfill from
    dtms.open(db).close()
    events: Any = CTX.Queue()
    procs: dict[str, Any] = {}
    result = DemoResult(directory=directory, processes=processes)
    notes: list[str] = []
    tick_s = max(0.02, min(0.5, 30.0 / speed))  # about one fast-check interval of terminal time

    def spawn(name: str, opens: int) -> None:
        p = CTX.Process(target=_node_process, args=(db, sim, name, opens, seed, events, tick_s), name=name,
                        daemon=True)  # fmt: skip
        p.start()
        procs[name] = p

    store = dtms.open(db)
    started = time.monotonic()
    kill_at = started + duration / 3
    killed: tuple[str, float] | None = None
    ready: set[str] = set()
    try:
        for i, name in enumerate(NAMES[:processes]):
            spawn(name, trades if i == 0 else 0)
        live_cm: Any = contextlib.nullcontext()
        if live:
            from rich.live import Live

            live_cm = Live(_table(store, notes), refresh_per_second=4)
        with live_cm as view:
            # Past `duration`, a takeover under way is still awaited (processes start slowly under load).
            while time.monotonic() - started < duration or (
                killed is not None and time.monotonic() - killed[1] < TAKEOVER_WAIT_S
            ):
                with contextlib.suppress(queue.Empty):
                    kind, name, _pid, epoch, t = events.get(timeout=0.25)
                    if kind == "ready":
                        ready.add(name)
                    if kind == "started":
                        result.epochs.append(epoch)
                        if killed is not None:
                            gap = (t - killed[1]) * 1000
                            result.gaps_ms.append(gap)
                            result.failovers += 1
                            notes.append(
                                f"[green]takeover:[/] {name} leads epoch {epoch}, {gap:.1f} ms after "
                                f"{killed[0]} was killed"
                            )
                            killed = None
                if killed is None and time.monotonic() >= kill_at and not result.failovers:
                    lease = store.lease()
                    if (
                        lease is not None
                        and lease.holder is not None
                        and lease.holder.name in procs
                        and ready - {lease.holder.name}  # a follower is up to take over
                    ):
                        victim = lease.holder.name
                        killed = (victim, time.monotonic())
                        os.kill(
                            procs[victim].pid,
                            signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM,
                        )
                        procs[victim].join(5)
                        notes.append(f"[red]killed the leader[/] {victim} (SIGKILL) at epoch {lease.epoch}")
                        spawn(f"{victim}-2", 0)  # a supervisor would restart it; it comes back as a follower
                if view is not None:
                    view.update(_table(store, notes))
    finally:
        for p in procs.values():  # all at once: one by one, each survivor would take over in turn
            with contextlib.suppress(Exception):
                if p.is_alive():
                    p.kill()
        for p in procs.values():
            with contextlib.suppress(Exception):
                p.join(5)
                p.close()
    result.trades_by_state = dict(Counter(t.state.value for t in store.list_trades(include_closed=True)))
    result.actions_by_status = dict(Counter(a.status.value for a in store.actions(limit=100_000)))
    broker = MT5Broker(term)
    broker.connect()
    result.duplicates = duplicates(store, broker)
    store.close()
    term.close()
    if not keep:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def summary(result: DemoResult) -> str:
    """The closing lines of the demo, for people."""
    lines = [
        f"failovers: {result.failovers}"
        + (f" (takeover {', '.join(f'{g:.1f} ms' for g in result.gaps_ms)})" if result.gaps_ms else ""),
        f"epochs: {', '.join(map(str, result.epochs)) or 'none'}",
        f"trades by state: {dict(sorted(result.trades_by_state.items()))}",
        f"actions by status: {dict(sorted(result.actions_by_status.items()))}",
        "duplicates: none (every done action appears once in the terminal's deal history)"
        if not result.duplicates
        else "DUPLICATES: " + "; ".join(result.duplicates),
    ]
    if not result.epochs:
        lines.append("NO LEADER was elected: the bot processes did not start (see the errors above)")
    elif result.failovers == 0 and result.processes > 1:
        lines.append("NO FAILOVER was observed within the run: try a longer --duration")
    if result.directory and Path(result.directory).exists():
        lines.append(f"files kept in {result.directory}")
    return "\n".join(lines)


__all__ = ["DemoResult", "duplicates", "run", "summary"]
