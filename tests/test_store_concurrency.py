"""Many processes registering at once: every registration lands once, nobody sees `database is locked`."""

from __future__ import annotations

import traceback
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, Final

import pytest

import dtms
from tests.process_helpers import (
    CTX,
    SPAWN_DEADLINE_S,
    WORK_DEADLINE_S,
    drain,
    join_all,
    reaped,
    spawn,
    start_all,
    wait_for,
)

WRITERS: Final = 8
PER_WRITER: Final = 500


def writer(db: str, index: int, events: Queue[Any], go: Event) -> None:
    """Open the store, report ready, wait for the start signal, then register PER_WRITER distinct trades."""
    try:
        with dtms.open(db) as store:
            events.put(("ready", index))
            if not go.wait(SPAWN_DEADLINE_S):
                raise TimeoutError("the start signal never came")
            for i in range(PER_WRITER):
                ticket = index * 100_000 + i + 1
                store.register_trade(
                    ticket, "EURUSD", "buy" if i % 2 else "SELL", 1.1, 0.01, comment=f"w{index}"
                )
        events.put(("done", index, PER_WRITER))
    except BaseException:
        events.put(("error", index, traceback.format_exc()))
        raise


def reader(db: str, events: Queue[Any], go: Event, stop: Event) -> None:
    """List trades in a loop while the writers run; counts must never go down."""
    try:
        with dtms.open(db, create=False) as store:
            events.put(("ready", "reader"))
            go.wait(SPAWN_DEADLINE_S)
            loops, last = 0, 0
            while not stop.is_set():
                seen = len(store.list_trades())
                if seen < last:
                    raise AssertionError(f"the reader saw {seen} trades after {last}")
                last, loops = seen, loops + 1
        events.put(("read", loops, last))
    except BaseException:
        events.put(("error", "reader", traceback.format_exc()))
        raise


@pytest.mark.slow
def test_eight_processes_register_4000_trades_at_once(db_path: Path) -> None:
    """8 spawn processes x 500 registrations started together, plus a reader: 4000 trades, no errors."""
    dtms.open(db_path).close()  # created once up front, as a deployment would
    events: Queue[Any] = CTX.Queue()
    go, stop = CTX.Event(), CTX.Event()
    writers = [spawn(writer, str(db_path), i, events, go, name=f"writer-{i}") for i in range(WRITERS)]
    read = spawn(reader, str(db_path), events, go, stop, name="reader")
    with reaped(*writers, read):
        start_all([*writers, read])
        for _ in range(WRITERS + 1):
            wait_for(events, lambda e: e[0] in ("ready", "error"), SPAWN_DEADLINE_S, "every process ready")
        go.set()
        writer_codes = join_all(writers, WORK_DEADLINE_S, "the writers to finish")
        stop.set()
        reader_codes = join_all([read], SPAWN_DEADLINE_S, "the reader to stop")
        reports = drain(events)
    errors = [e for e in reports if e[0] == "error"]
    assert not errors, "\n".join(str(e[2]) for e in errors)
    assert {**writer_codes, **reader_codes} == {p.name: 0 for p in [*writers, read]}
    assert sorted(e[1] for e in reports if e[0] == "done") == list(range(WRITERS))
    [(_, loops, _)] = [e for e in reports if e[0] == "read"]
    assert loops > 0
    with dtms.open(db_path, create=False) as store:
        trades = store.list_trades()
        assert store.integrity_check() == "ok"
    tickets = [t.ticket for t in trades]
    assert len(tickets) == WRITERS * PER_WRITER
    assert len(set(tickets)) == len(tickets)
    assert set(tickets) == {w * 100_000 + i + 1 for w in range(WRITERS) for i in range(PER_WRITER)}


def _open_fresh(folder: str, go: Any, done: Any) -> None:
    """Wait at the start line, then open (and so create and migrate) the same new databases, one by one."""
    go.wait(SPAWN_DEADLINE_S)
    for k in range(FRESH_DATABASES):
        with dtms.open(f"{folder}/new{k}.db") as store:
            store.register_trade(1, "EURUSD", "buy", 1.1, 0.01)  # idempotent: the same trade from everyone
    done.put("ok")


FRESH_DATABASES: Final = 40


def test_processes_creating_one_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    """Six processes open databases that do not exist yet at the same instants: one creates each schema,
    the others wait for its write lock (BEGIN IMMEDIATE) instead of failing 'database is locked'."""
    go, done = CTX.Event(), CTX.Queue()
    procs = [spawn(_open_fresh, str(tmp_path), go, done, name=f"opener-{i}") for i in range(6)]
    with reaped(*procs):
        start_all(procs)
        go.set()
        codes = join_all(procs, WORK_DEADLINE_S, "openers")
        assert list(codes.values()) == [0] * 6, codes
    assert all(dtms.open(tmp_path / f"new{k}.db").count_trades() == 1 for k in range(FRESH_DATABASES))
