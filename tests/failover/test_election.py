"""Leader election across real processes: invariants I1-I8 of the election spec."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time

import apsw
import pytest
from nodeproc import (
    AUDIT_DDL,
    CRASH_DEADLINE_S,
    LONG_TTL,
    NEGATIVE_WAIT_S,
    SHORT_TTL,
    SPAWN_DEADLINE_S,
    cluster,
)

import dtms
from dtms.config import ElectionConfig
from dtms.oslock import election_lock
from tests.failover.test_foreign_clocks import TTL_S, Peer

pytestmark = [
    pytest.mark.failover,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL/SIGSTOP and fork are POSIX"),
]


@pytest.fixture(params=["auto", "flock"])
def db(request, tmp_path, monkeypatch):
    """A fresh database; every test runs with each kind of election lock (auto: the robust mutex on Linux)."""
    monkeypatch.setenv("DTMS_TEST_LOCK", request.param)  # spawned children inherit it
    return _fresh_db(tmp_path)


def _fresh_db(tmp_path):
    path = str(tmp_path / "dtms.db")
    dtms.open(path).close()
    conn = apsw.Connection(path)
    conn.execute(AUDIT_DDL)
    conn.close()
    return path


def test_exactly_one_leader_among_racing_processes(db):
    """Eight processes started together yield exactly one epoch-1 leader and no second one."""
    with cluster(db) as c:
        for i in range(8):
            c.spawn(f"n{i}")
        for i in range(8):
            c.wait("ready", SPAWN_DEADLINE_S, name=f"n{i}")
        first = c.wait("started", CRASH_DEADLINE_S)
        assert first["epoch"] == 1
        c.none_within("started", NEGATIVE_WAIT_S)
        store = dtms.open(db)
        # The leader may have won the empty lease before its waiter got the lock, which another racer's
        # waiter holds: that one passes it on and the leader's next renewal records it. Under load this
        # takes longer than the negative wait; without the pass-on it never happens.
        deadline = time.monotonic() + CRASH_DEADLINE_S
        while not (lease := store.lease()) or not lease.lock_held:
            assert time.monotonic() < deadline, f"the leader never got the OS lock: {lease}"
            time.sleep(0.05)
        assert lease.holder is not None
        assert (lease.epoch, lease.holder.name) == (1, first["name"])
        assert [h["epoch"] for h in store.lease_history()] == [1]


def test_killed_leader_is_replaced_by_one_follower_with_the_next_epoch(db):
    """SIGKILL of the leader: one follower leads with epoch + 1 long before the 60 s TTL (I1, I4)."""
    with cluster(db) as c:
        for name in ("a", "b", "c"):
            c.spawn(name)
            c.wait("ready", SPAWN_DEADLINE_S, name=name)
        leader = c.wait("started", CRASH_DEADLINE_S)
        c.kill(leader["name"])
        nxt = c.wait("started", CRASH_DEADLINE_S)
        assert nxt["epoch"] == leader["epoch"] + 1
        assert nxt["name"] != leader["name"]
        c.none_within("started", NEGATIVE_WAIT_S)
        history = dtms.open(db).lease_history()
        assert [(h["epoch"], h["reason"]) for h in history] == [(1, "first"), (2, "holder_dead")]


def test_graceful_stop_hands_over_without_waiting_for_the_ttl(db):
    """node.stop() on the leader: a follower leads at once although the TTL is 60 s (I6)."""
    with cluster(db) as c:
        for name in ("a", "b"):
            c.spawn(name)
            c.wait("ready", SPAWN_DEADLINE_S, name=name)
        leader = c.wait("started", CRASH_DEADLINE_S)
        c.send(leader["name"], "stop")
        stopped = c.wait("stopped", CRASH_DEADLINE_S, name=leader["name"])
        assert stopped["reason"] == "stopped"
        nxt = c.wait("started", CRASH_DEADLINE_S)
        assert (nxt["epoch"], nxt["name"] != leader["name"]) == (2, True)
        history = dtms.open(db).lease_history()
        assert history[-1]["reason"] == "released"
        # The proof that epoch 1 sends no more committed with its release: nobody needs to kill that process.
        assert history[0]["stopped_how"] == "quiesced"


def test_stopped_leader_is_replaced_and_fenced_when_it_resumes(db):
    """SIGSTOP past the TTL: a follower leads; after SIGCONT the old leader is fenced and knows it (I2, I5).

    With `election.stonith = false` (the opt-out; by default the follower kills it): the resumed leader's loop
    ends on the lost lease and records that its epoch sends no more (`quiesced`), the proof a new leader needs
    before it may conclude the old epoch's in-flight requests not applied."""
    timings = {**SHORT_TTL, "stonith": False}
    with cluster(db) as c:
        c.spawn("a", timings, audit=True)
        c.wait("ready", SPAWN_DEADLINE_S, name="a")
        old = c.wait("started", CRASH_DEADLINE_S, name="a")
        c.spawn("b", timings, audit=True)
        c.wait("ready", SPAWN_DEADLINE_S, name="b")
        c.kill("a", signal.SIGSTOP)
        ttl = SHORT_TTL["lease_ttl_s"]
        new = c.wait("started", ttl + SHORT_TTL["check_interval_s"] + 5, name="b")
        assert new["epoch"] == old["epoch"] + 1
        os.kill(c.procs["a"].pid, signal.SIGCONT)
        stopped = c.wait("stopped", CRASH_DEADLINE_S, name="a")
        assert stopped["epoch"] == old["epoch"]
        assert stopped["reason"] in {"lease_lost", "loop_failed"}
        c.send("a", "write", old["epoch"])
        write = c.wait("write", CRASH_DEADLINE_S, name="a")
        assert (write["ok"], write["error"], write["is_leader"]) == (False, "LeaseLostError", False)
        store = dtms.open(db)
        after_resume = [r[0] for r in store._conn.execute("SELECT epoch FROM audit WHERE pid = ? AND seq > "
                        "(SELECT min(seq) FROM audit WHERE epoch = ?)", (c.procs["a"].pid, new["epoch"]))]
        assert after_resume == []  # the resumed process committed nothing once epoch 2 had begun
        history = store.lease_history()
        assert history[-1]["reason"] == "expired"
        assert history[old["epoch"] - 1]["stopped_how"] == "quiesced"


def test_child_forked_by_the_leader_neither_leads_nor_keeps_the_lock(db, tmp_path):
    """A sleeping child forked by the leader does not delay takeover, and refuses dtms calls (I8)."""
    verdict = tmp_path / "child.txt"
    with cluster(db) as c:
        for name in ("a", "b"):
            c.spawn(name)
            c.wait("ready", SPAWN_DEADLINE_S, name=name)
        leader = c.wait("started", CRASH_DEADLINE_S)
        c.send(leader["name"], "fork", 30, str(verdict))
        forked = c.wait("forked", CRASH_DEADLINE_S)
        try:
            deadline = time.monotonic() + CRASH_DEADLINE_S
            while not verdict.exists() or not verdict.read_text():
                assert time.monotonic() < deadline, "the forked child never reported"
                time.sleep(0.01)
            assert verdict.read_text() == "0"  # both dtms calls in the child raised UsedAfterForkError
            c.kill(leader["name"])
            nxt = c.wait("started", CRASH_DEADLINE_S)  # not 30 s later, when the child would exit
            assert nxt["epoch"] == leader["epoch"] + 1
        finally:
            os.kill(forked["child"], signal.SIGKILL)


def test_chaos_kills_keep_epochs_contiguous_and_never_commit_stale(db):
    """Random SIGKILLs among four processes: epochs contiguous, audit epochs never go back (I1, I2)."""
    kills = int(os.environ.get("DTMS_CHAOS_KILLS", "12"))
    rng = random.Random(int(os.environ.get("DTMS_CHAOS_SEED", "7")))
    settings = {**LONG_TTL, "loop_interval_s": 0.005}
    with cluster(db) as c:
        serial = 0
        for _ in range(4):
            c.spawn(f"n{serial}", settings, audit=True)
            c.wait("ready", SPAWN_DEADLINE_S, name=f"n{serial}")
            serial += 1
        leader = c.wait("started", CRASH_DEADLINE_S)
        for _ in range(kills):
            time.sleep(rng.uniform(0.0, 0.05))
            c.kill(leader["name"])
            c.procs[leader["name"]].join(5)
            nxt = c.wait("started", CRASH_DEADLINE_S)
            assert nxt["epoch"] == leader["epoch"] + 1
            leader = nxt
            c.spawn(f"n{serial}", settings, audit=True)
            c.wait("ready", SPAWN_DEADLINE_S, name=f"n{serial}")
            serial += 1
        store = dtms.open(db)
        epochs = [h["epoch"] for h in store.lease_history()]
        assert epochs == list(range(1, kills + 2))
        audit = [r[0] for r in store._conn.execute("SELECT epoch FROM audit ORDER BY seq")]
        assert audit, "the leaders wrote nothing"
        assert audit == sorted(audit)
        assert store.integrity_check() == "ok"


def test_lock_file_replaced_under_a_running_leader_never_makes_two_leaders(db):
    """Delete the lock file under a leader: a newcomer locks a new file but does not lead while the leader
    lives (another inode proves nothing); when the leader dies, the newcomer leads once the lease expires."""
    with cluster(db) as c:
        c.spawn("a", SHORT_TTL)
        c.wait("ready", SPAWN_DEADLINE_S, name="a")
        first = c.wait("started", CRASH_DEADLINE_S, name="a")
        os.unlink(f"{db}.lock")
        c.spawn("b", SHORT_TTL)
        c.wait("ready", SPAWN_DEADLINE_S, name="b")
        c.none_within("started", 2 * SHORT_TTL["lease_ttl_s"], name="b")  # a renews: its lease never lapses
        lease = dtms.open(db).lease()
        assert lease is not None and lease.holder is not None and lease.holder.name == "a"
        c.kill("a")
        nxt = c.wait("started", SHORT_TTL["lease_ttl_s"] + SHORT_TTL["check_interval_s"] + 5, name="b")
        assert nxt["epoch"] == first["epoch"] + 1
        assert dtms.open(db).lease_history()[-1]["reason"] == "expired"


@pytest.mark.skipif(sys.platform != "linux", reason="the robust mutex is the Linux lock")
@pytest.mark.parametrize(("first", "second"), [("auto", "flock"), ("flock", "auto")])
def test_processes_on_different_lock_kinds_never_fast_track_each_other(tmp_path, monkeypatch, first, second):
    """A robust-mutex leader and an flock follower (or the reverse) share the lock file but not the lock: the
    follower holds its own kind at once, yet the identities differ, so it leads only once the lease expires."""
    db = _fresh_db(tmp_path)
    with cluster(db) as c:
        monkeypatch.setenv("DTMS_TEST_LOCK", first)
        c.spawn("a", SHORT_TTL)
        c.wait("ready", SPAWN_DEADLINE_S, name="a")
        leader = c.wait("started", CRASH_DEADLINE_S, name="a")
        monkeypatch.setenv("DTMS_TEST_LOCK", second)
        c.spawn("b", SHORT_TTL)
        c.wait("ready", SPAWN_DEADLINE_S, name="b")
        c.none_within("started", 2 * SHORT_TTL["lease_ttl_s"], name="b")  # a renews: b never leads beside it
        c.kill("a")
        nxt = c.wait("started", SHORT_TTL["lease_ttl_s"] + SHORT_TTL["check_interval_s"] + 5, name="b")
        assert nxt["epoch"] == leader["epoch"] + 1
        assert dtms.open(db).lease_history()[-1]["reason"] == "expired"  # not holder_dead: by expiry only


STONITH_TTL = {**SHORT_TTL, "stonith": True}


def _leader_then_follower(c, settings):  # type: ignore[no-untyped-def]
    """Node "a" leads (its started event is returned), then node "b" joins as a follower."""
    c.spawn("a", settings)
    c.wait("ready", SPAWN_DEADLINE_S, name="a")
    leader = c.wait("started", CRASH_DEADLINE_S, name="a")
    c.spawn("b", settings)
    c.wait("ready", SPAWN_DEADLINE_S, name="b")
    return leader


@pytest.mark.skipif(sys.platform != "linux", reason="STONITH uses pidfd (Linux)")
def test_stonith_kills_a_stopped_leader_after_taking_its_expired_lease(db):
    """With election.stonith, the follower that takes a stopped leader's expired lease kills that leader, so
    the OS lock frees and the new leader holds it again (normal state, not degraded)."""
    with cluster(db) as c:
        old = _leader_then_follower(c, STONITH_TTL)
        c.kill("a", signal.SIGSTOP)
        new = c.wait("started", STONITH_TTL["lease_ttl_s"] + STONITH_TTL["check_interval_s"] + 5, name="b")
        assert new["epoch"] == old["epoch"] + 1
        c.procs["a"].join(CRASH_DEADLINE_S)
        assert c.procs["a"].exitcode == -signal.SIGKILL
        store = dtms.open(db)
        deadline = time.monotonic() + CRASH_DEADLINE_S
        while not store.lease().lock_held:  # the next renewal records the lock the waiter took
            assert time.monotonic() < deadline, "the new leader never took the freed OS lock"
            time.sleep(0.05)
        assert store.lease().holder.name == "b"


@pytest.mark.skipif(sys.platform != "linux", reason="STONITH uses pidfd (Linux)")
@pytest.mark.parametrize("stonith", [False, True])
def test_leader_stopped_inside_a_write_transaction(tmp_path, stonith):
    """A leader stopped while holding SQLite's write lock blocks every takeover (the documented stall); with
    election.stonith the follower kills it once its lease has expired, and leads (spec/election.md §4.11)."""
    db = _fresh_db(tmp_path)
    # A longer TTL than SHORT_TTL's 2 s: a loaded runner once starved "a" of renewals for 2 s before the
    # test stopped it, so "b" took over by expiry before the scenario began.
    settings = {**SHORT_TTL, "lease_ttl_s": 4.0, "renew_deadline_s": 3.0, "stonith": stonith}
    with cluster(db) as c:
        old = _leader_then_follower(c, settings)
        c.send("a", "hold_write")
        held = c.wait("holding_write", CRASH_DEADLINE_S, name="a")
        assert (held["is_leader"], held["epoch"]) == (True, old["epoch"]), "a lost its lease before the test"
        c.kill("a", signal.SIGSTOP)
        busy_s = 5.0  # the store's default busy timeout: one failed takeover attempt
        bound = settings["lease_ttl_s"] + busy_s + 2 * settings["check_interval_s"] + 5
        if not stonith:
            c.none_within("started", bound, name="b")
            assert c.procs["a"].is_alive()
            return
        new = c.wait("started", bound, name="b")
        assert new["epoch"] == old["epoch"] + 1
        c.procs["a"].join(CRASH_DEADLINE_S)
        assert c.procs["a"].exitcode == -signal.SIGKILL
        # Killed, it frees the OS lock as well: the waiter usually wins on the dead holder first.
        assert dtms.open(db).lease_history()[-1]["reason"] in {"holder_dead", "expired"}


@pytest.mark.parametrize("kind", ["auto", "flock"])
def test_a_follower_that_gets_the_lock_passes_it_to_a_leader_running_without_it(tmp_path, monkeypatch, kind):
    """Racing starts: one process leads by winning the empty lease on its heart while another's waiter got
    the lock. Before: that follower kept the lock for good, the row said `lock_held` false, and the
    leader's death would have been noticed by polling /proc, not by the kernel (seen once in eight racing
    processes)."""
    monkeypatch.setenv("DTMS_TEST_LOCK", kind)
    path = _fresh_db(tmp_path)
    election = ElectionConfig(lock=kind, lease_ttl_s=TTL_S, renew_deadline_s=TTL_S * 0.75,
                              retry_interval_s=0.1, check_interval_s=0.05, renew_interval_s=TTL_S / 4,
                              send_margin_s=0.1)  # fmt: skip
    probe = election_lock(f"{os.path.realpath(path)}.lock", kind)
    probe.acquire()  # the lock is taken as the leader starts, as in a race
    leader = dtms.Node(path, name="leader", election=election)
    gate = threading.Event()
    acquire = leader.elector._lock.acquire

    def acquire_late() -> None:  # the leader's waiter reaches the lock only after the follower's has it
        gate.wait()
        acquire()

    monkeypatch.setattr(leader.elector._lock, "acquire", acquire_late)
    store = dtms.open(path)
    follower: Peer | None = None
    try:
        leader.start()
        assert leader.wait_until_leader(SPAWN_DEADLINE_S)  # by its heart: "first", without the lock
        follower = Peer(path, "follower", [], tmp_path)
        assert follower.wait(lambda x: x.get("ready"), SPAWN_DEADLINE_S), follower.lines
        probe.release()  # the follower's waiter, blocked in acquire since it started, takes it at once
        time.sleep(0.5)
        gate.set()  # only now does the leader's waiter ask for the lock
        deadline = time.monotonic() + SPAWN_DEADLINE_S
        while not ((lease := store.lease()) and lease.lock_held):
            assert time.monotonic() < deadline, f"the leader never got the lock: {lease}"
            time.sleep(0.01)
        assert lease.holder is not None
        assert (lease.holder.name, lease.epoch) == ("leader", 1)
        assert leader.elector._lock.is_held
        assert leader.is_leader
        assert follower.led() == []
    finally:
        gate.set()
        if follower is not None:
            follower.close()
        leader.close()
        store.close()
