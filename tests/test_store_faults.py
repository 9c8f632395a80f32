"""Database faults: a full disk, a corrupted or read-only file, a lock held past the busy timeout.

Each one must end in a clear dtms error (or a safe step-down), and nothing already committed may be lost.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from click.testing import CliRunner

import dtms
from dtms.cli import cli

CTX = mp.get_context("spawn")
#: A spawned child must start and take the lock; generous for a loaded CI runner.
SPAWN_DEADLINE_S = 30.0


def _fill(store: dtms.Store, start: int) -> int:
    """Register trades until the database is full; returns the first ticket that did not fit."""
    ticket = start
    while True:
        try:
            store.register_trade(ticket, "EURUSD", "buy", 1.1, 0.1, comment="x" * 31)
        except dtms.StoreError as exc:
            assert "full" in str(exc)
            return ticket
        ticket += 1


def test_a_full_database_refuses_the_write_clearly_and_keeps_what_it_had(tmp_path):
    """`max_page_count` as a full disk: StoreError naming it, earlier rows intact, reads and later writes work."""
    store = dtms.open(tmp_path / "d.db")
    store.register_trade(1, "EURUSD", "buy", 1.1, 0.1)
    pages = store._conn.execute("PRAGMA page_count").fetchall()[0][0]
    store._conn.execute(f"PRAGMA max_page_count={pages + 2}")
    first_refused = _fill(store, 2)
    assert store.get_trade(first_refused) is None  # the refused write left nothing behind
    assert store.count_trades() == first_refused - 1
    assert store.get_trade(1) is not None
    store._conn.execute("PRAGMA max_page_count=1073741823")
    store.register_trade(first_refused, "EURUSD", "buy", 1.1, 0.1)
    assert store.integrity_check() == "ok"


@pytest.mark.parametrize("damage", ["header", "truncated"])
def test_a_corrupted_file_is_a_clear_store_error_and_health_says_so(tmp_path, damage):
    """Garbage in the header or a cut-off file: `dtms.open` raises StoreError (no raw apsw error); CLI exit 1."""
    path = tmp_path / "d.db"
    store = dtms.open(path)
    for t in range(1, 200):
        store.register_trade(t, "EURUSD", "buy", 1.1, 0.1)
    store.checkpoint()
    store.close()
    data = path.read_bytes()
    path.write_bytes(b"this is not a database at all!!!" * 4 + data[128:] if damage == "header" else data[:1500])
    for sidecar in ("-wal", "-shm"):
        Path(f"{path}{sidecar}").unlink(missing_ok=True)
    with pytest.raises(dtms.StoreError) as caught:
        dtms.open(path).health()
    assert not isinstance(caught.value, apsw.Error)
    result = CliRunner().invoke(cli, ["--db", str(path), "health"])
    assert result.exit_code == 1 and "Traceback" not in result.output


@pytest.mark.skipif(shutil.which("chattr") is None or sys.platform != "linux", reason="needs chattr (Linux)")
def test_a_read_only_database_refuses_writes_and_keeps_its_rows(tmp_path):
    """An immutable file (even root cannot write it): a clear StoreError, and the rows are all still there."""
    path = tmp_path / "d.db"
    store = dtms.open(path)
    store.register_trade(1, "EURUSD", "buy", 1.1, 0.1)
    store.checkpoint()
    store.close()
    for sidecar in ("-wal", "-shm"):
        Path(f"{path}{sidecar}").unlink(missing_ok=True)
    if subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True).returncode != 0:
        pytest.skip("this file system does not support the immutable attribute")
    try:
        with pytest.raises(dtms.StoreError):
            dtms.open(path).register_trade(2, "EURUSD", "buy", 1.1, 0.1)
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert [t.identifier for t in dtms.open(path).list_trades()] == [1]


def _hold_write_lock(path: str, held: Any, release: Any) -> None:
    conn = apsw.Connection(path)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    release.wait(60)
    conn.execute("ROLLBACK")
    conn.close()


@contextlib.contextmanager
def _write_lock_held_elsewhere(path: str) -> Iterator[Any]:
    """Another process holds the database's write lock inside the block; set the yielded event to let go."""
    held, release = CTX.Event(), CTX.Event()
    child = CTX.Process(target=_hold_write_lock, args=(path, held, release), daemon=True)
    child.start()
    try:
        assert held.wait(SPAWN_DEADLINE_S)
        yield release
    finally:
        release.set()
        child.join(5)
        if child.is_alive():
            child.kill()


def test_a_lock_held_past_the_busy_timeout_is_store_busy_and_writes_nothing(tmp_path):
    """Another process holds the write lock: StoreBusyError after the timeout, then the write works."""
    path = str(tmp_path / "d.db")
    dtms.open(path).close()
    store = dtms.open(path, busy_timeout_s=0.3)
    with _write_lock_held_elsewhere(path) as release:
        with pytest.raises(dtms.StoreBusyError):
            store.register_trade(1, "EURUSD", "buy", 1.1, 0.1)
        release.set()
    assert store.count_trades() == 0
    store.register_trade(1, "EURUSD", "buy", 1.1, 0.1)
    assert store.count_trades() == 1


def test_a_write_waiting_for_the_lock_lets_the_other_threads_run(tmp_path):
    """While one thread waits out the busy timeout, the process's other threads keep running: the wait
    happens with the GIL released (apsw's own `with conn:` held it and froze the whole process)."""
    import threading
    import time

    path = str(tmp_path / "d.db")
    dtms.open(path).close()
    with _write_lock_held_elsewhere(path):
        store = dtms.open(path, busy_timeout_s=1.0)
        outcome: list[BaseException] = []

        def write() -> None:
            try:
                store.register_trade(1, "EURUSD", "buy", 1.1, 0.1)
            except BaseException as exc:
                outcome.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        beats = 0
        while writer.is_alive():
            time.sleep(0.01)
            beats += 1
        assert len(outcome) == 1 and isinstance(outcome[0], dtms.StoreBusyError)
        assert beats >= 30  # about 100 in the 1 s wait; 1 when the wait held the GIL


def test_a_leader_that_cannot_renew_steps_down_and_leads_again_later(tmp_path):
    """The write lock held past the renew deadline: the leader steps down (no zombie); once free, it leads."""
    from dtms.config import ElectionConfig

    path = str(tmp_path / "d.db")
    stopped: list[str] = []
    timings = ElectionConfig(lease_ttl_s=6.0, renew_deadline_s=1.5, retry_interval_s=0.2, check_interval_s=0.1,
                             renew_interval_s=0.5, send_margin_s=0.2)  # fmt: skip
    node = dtms.Node(path, name="a", election=timings, on_stopped_leading=lambda e, reason: stopped.append(reason))
    held, release = CTX.Event(), CTX.Event()
    child = CTX.Process(target=_hold_write_lock, args=(path, held, release), daemon=True)
    try:
        node.start()
        assert node.wait_until_leader(SPAWN_DEADLINE_S)
        child.start()
        assert held.wait(SPAWN_DEADLINE_S)
        deadline = __import__("time").monotonic() + 20
        while not stopped:
            assert __import__("time").monotonic() < deadline, "the leader never stepped down"
            __import__("time").sleep(0.05)
        assert stopped[0] == "renew_deadline"
        assert not node.is_leader
        release.set()
        assert node.wait_until_leader(SPAWN_DEADLINE_S)
    finally:
        release.set()
        node.close()
        if child.pid is not None:
            child.join(5)
