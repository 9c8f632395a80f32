"""The database's files change under running processes (issue 11, point 3): never two leaders.

Before: with `-wal`/`-shm` unlinked under running nodes, two leaders committed fenced writes at the same time
for about 3 s, and afterwards nobody took over (`UNIQUE constraint failed: lease_history`). A second SQLite
library in the leader's own process (stdlib `sqlite3`) closing the database did the same to that process.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time

import pytest

import dtms
from dtms.config import ElectionConfig
from tests.failover.test_foreign_clocks import TTL_S, Peer

pytestmark = [pytest.mark.failover, pytest.mark.skipif(sys.platform == "win32", reason="unlinking open files")]

READY_DEADLINE_S = 30.0
FAST = ElectionConfig(lease_ttl_s=1.0, renew_deadline_s=0.75, retry_interval_s=0.1, check_interval_s=0.05,
                      renew_interval_s=0.25, send_margin_s=0.1)  # fmt: skip


def _overlaps(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(max(s1, s2), min(e1, e2)) for s1, e1 in a for s2, e2 in b if max(s1, s2) < min(e1, e2)]


def test_unlinked_wal_and_shm_never_make_two_leaders_and_someone_leads_after(tmp_path):
    path = tmp_path / "dtms.db"
    dtms.open(path).close()
    peers = [Peer(str(path), name, [], tmp_path) for name in ("a", "b", "c")]
    try:
        for peer in peers:
            assert peer.wait(lambda x: x.get("ready"), READY_DEADLINE_S), peer.lines
        assert any(p.wait(lambda x: x.get("leader"), READY_DEADLINE_S) for p in peers)
        time.sleep(2 * TTL_S)
        for suffix in ("-wal", "-shm"):
            os.unlink(f"{path}{suffix}")
        newcomer = Peer(str(path), "d", [], tmp_path)  # opens the files at the path, as a restarted bot would
        peers.append(newcomer)
        assert newcomer.wait(lambda x: x.get("ready"), READY_DEADLINE_S), newcomer.lines
        time.sleep(6 * TTL_S)
        end = time.time()
        spans = {p.name: p.intervals(end) for p in peers}
        for i, a in enumerate(peers):
            for b in peers[i + 1 :]:
                assert not _overlaps(spans[a.name], spans[b.name]), f"{a.name} and {b.name} led at once: {spans}"
        leading_now = [p.name for p in peers if spans[p.name] and spans[p.name][-1][1] == end]
        assert len(leading_now) == 1, spans  # somebody leads again, and only one
    finally:
        for peer in peers:
            peer.close()
    store = dtms.open(path)
    assert store.integrity_check() == "ok"
    epochs = [h["epoch"] for h in store.lease_history()]
    assert epochs == sorted(set(epochs))


def test_another_sqlite_library_closing_the_database_deposes_the_leader_at_once(tmp_path):
    """`pandas.read_sql(..., sqlite3.connect(db))` in a bot process: stdlib sqlite3 does not see apsw's locks,
    checkpoints and deletes -wal/-shm on close. The leader's writes would go to the unlinked WAL: it stops
    leading at once (no write of it is acknowledged), and leads again on the files at the path."""
    path = tmp_path / "dtms.db"
    stopped: list[str] = []
    changed = threading.Event()

    def on_stopped(epoch: int, reason: str) -> None:
        stopped.append(reason)
        changed.set()

    node = dtms.Node(path, name="bot", election=FAST, on_stopped_leading=on_stopped)
    try:
        node.start()
        assert node.wait_until_leader(READY_DEADLINE_S)
        first = node.epoch
        node.store.register_trade(1, "EURUSD", "buy", 1.1, 0.1)
        other = sqlite3.connect(path)
        assert other.execute("SELECT count(*) FROM trades").fetchone() == (1,)
        with open(f"{path}-wal", "rb") as wal:  # the leader may recreate a -wal at the path at once: hold ours
            other.close()
            assert os.fstat(wal.fileno()).st_nlink == 0  # what the stdlib connection did on close
        # At once: no renewal or write had to fail first. (It may already lead again, on a new epoch.)
        assert not (node.is_leader and node.epoch == first)
        assert changed.wait(10), "the leader never stepped down"
        assert stopped == ["files_changed"]
        assert node.wait_until_leader(READY_DEADLINE_S)  # on the files at the path, with a new epoch
        assert node.epoch is not None
        assert first is not None
        assert node.epoch > first
        node.store.register_trade(2, "EURUSD", "buy", 1.1, 0.1)
    finally:
        node.close()
    with dtms.open(path) as store:
        assert [t.identifier for t in store.list_trades()] == [1, 2]
