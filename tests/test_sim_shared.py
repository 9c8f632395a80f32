"""Several processes (spawned) share one simulated terminal through its SQLite file."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import stat
from pathlib import Path

import pytest
from sim_helpers import (
    CHILD_DEADLINE_S,
    broker,
    child_open_many,
    child_snapshot,
    child_wall_and_bars,
    run_child,
    terminal,
)

import dtms.sim
from dtms.sim.synth import synthetic_bars


def test_two_processes_see_the_same_positions_prices_and_deals(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    term = terminal(path)
    b = broker(term)
    ident = b.open("EURUSD", "BUY", 0.1, sl=b.tick("EURUSD").bid - 0.01).identifier
    assert ident is not None
    term.advance(600)
    tick = b.tick("EURUSD")
    deals = [(d.ticket, d.volume, d.entry) for d in b.deals(since=term.now().replace(year=2000))]

    seen = run_child(child_snapshot, str(path))

    assert seen["positions"] == [(ident, 0.1, b.position(ident).sl)]  # type: ignore[union-attr]
    assert (seen["bid"], seen["ask"]) == (tick.bid, tick.ask)
    assert seen["now"] == term.now()
    assert seen["deals"] == deals
    assert seen["close"] == ("done", 0.05)
    # ...and the parent sees what the child did.
    pos = b.position(ident)
    assert pos is not None
    assert pos.volume == pytest.approx(0.05)
    assert [d.volume for d in b.deals(ident) if d.entry == "out"] == [0.05]
    log = term.sent_log()
    assert [(row["tag"], row["pid"] == os.getpid()) for row in log] == [("", True), ("child", False)]


def test_wall_clock_and_synthetic_bars_agree_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "wall.db"
    term = dtms.sim.open(path, clock="wall", speed=60.0)
    before = term.now()
    seen = run_child(child_wall_and_bars, str(path))
    after = term.now()
    assert before <= seen["now"] <= after
    local = synthetic_bars.__wrapped__("EURUSD", 1_767_000_000, 1_767_000_000 + 86400, digits=5, seed=9)
    assert seen["bars"] == hashlib.sha256(local.tobytes()).hexdigest()  # no per-process hash salt involved


def test_concurrent_writers_get_unique_tickets(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    terminal(path).close()
    ctx = mp.get_context("spawn")
    start, queue = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=child_open_many, args=(queue, str(path), 15, start)) for _ in range(2)]
    for proc in procs:
        proc.start()
    try:
        start.set()
        tickets = [t for _ in procs for t in queue.get(timeout=CHILD_DEADLINE_S)]
        for proc in procs:
            proc.join(CHILD_DEADLINE_S)
            assert proc.exitcode == 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
            proc.close()
    assert None not in tickets
    assert len(set(tickets)) == 30
    term = dtms.sim.open(path)
    term.initialize()
    assert term.positions_total() == 30
    assert len(term.sent_log()) == 30


def test_terminal_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    terminal(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for suffix in ("-wal", "-shm"):
        extra = Path(f"{path}{suffix}")
        if extra.exists():
            assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0
