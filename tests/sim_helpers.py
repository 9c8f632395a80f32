"""Helpers for the broker and simulator tests: terminals, brokers and spawn-safe child entry points."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dtms.sim
from dtms.broker import MT5Broker

START = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)  # a Tuesday: the FX market is open for days either side
CHILD_DEADLINE_S = 30.0  # a spawned child imports numpy and builds bars: generous on a loaded 2-core runner


def terminal(path: Path | str | None = None, **kwargs: Any) -> dtms.sim.Terminal:
    """A manual-clock terminal at START, initialized."""
    kwargs.setdefault("clock", "manual")
    kwargs.setdefault("start", START)
    term = dtms.sim.open(path, **kwargs)
    assert term.initialize()
    return term


def broker(term: dtms.sim.Terminal, **kwargs: Any) -> MT5Broker:
    b = MT5Broker(term, **kwargs)
    b.connect()
    return b


def sent(term: dtms.sim.Terminal) -> list[dict[str, Any]]:
    """The requests order_send received, in order."""
    return [row["request"] for row in term.sent_log()]


def run_child(target: Any, *args: Any) -> Any:
    """Run `target(queue, *args)` in a spawned process; return what it put on the queue, reaping it always."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(queue, *args))
    proc.start()
    try:
        result = queue.get(timeout=CHILD_DEADLINE_S)
        proc.join(CHILD_DEADLINE_S)
        assert proc.exitcode == 0, f"child exited with {proc.exitcode}"
        return result
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        proc.close()
        queue.close()


# --- child entry points (module-level so spawn can import them) ---------------------------------------------
def child_snapshot(queue: Any, path: str) -> None:
    """Attach to the terminal at `path` and report what it sees, then trade once."""
    term = dtms.sim.open(path)
    term.initialize()
    term.set_tag("child")
    b = MT5Broker(term)
    b.connect()
    positions = [(p.identifier, p.volume, p.sl) for p in b.positions()]
    tick = b.tick("EURUSD")
    deals = [(d.ticket, d.volume, d.entry) for d in b.deals(since=datetime(2000, 1, 1, tzinfo=UTC))]
    now = term.now()
    outcome = b.close(positions[0][0], 0.05) if positions else None
    queue.put(
        {
            "positions": positions,
            "bid": tick.bid,
            "ask": tick.ask,
            "deals": deals,
            "now": now,
            "close": None if outcome is None else (outcome.kind.value, outcome.volume),
        }
    )
    term.close()


def child_wall_now(queue: Any, path: str) -> None:
    term = dtms.sim.open(path)
    queue.put(term.now())
    term.close()


def child_wall_and_bars(queue: Any, path: str) -> None:
    """Report the shared wall clock's simulated time and a checksum of freshly generated synthetic bars."""
    import hashlib

    from dtms.sim.synth import synthetic_bars

    term = dtms.sim.open(path)
    now = term.now()
    bars = synthetic_bars("EURUSD", 1_767_000_000, 1_767_000_000 + 86400, digits=5, seed=9)
    queue.put({"now": now, "bars": hashlib.sha256(bars.tobytes()).hexdigest()})
    term.close()


def child_open_many(queue: Any, path: str, count: int, start: Any) -> None:
    """Open `count` positions once `start` (an Event) is set: races another child for the write lock."""
    term = dtms.sim.open(path)
    term.initialize()
    start.wait(CHILD_DEADLINE_S)
    tickets = []
    for _ in range(count):
        result = term.order_send({"action": 1, "symbol": "BTCUSD", "volume": 0.01, "type": 0})
        tickets.append(result.order if result is not None and result.retcode == 10009 else None)
    queue.put(tickets)
    term.close()
