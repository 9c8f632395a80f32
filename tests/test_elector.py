"""The election inside one process: watchdog, fencing of the gateway, and clocks (I3, I5, I7)."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest

import dtms
from dtms.clock import ManualClock
from dtms.config import Config, ElectionConfig
from dtms.elector import Elector
from dtms.models import ActionStatus

FAST = {
    "lease_ttl_s": 2.0,
    "renew_deadline_s": 1.5,
    "retry_interval_s": 0.2,
    "check_interval_s": 0.05,
    "renew_interval_s": 0.3,
    "send_margin_s": 0.2,
    "loop_interval_s": 0.02,
}
#: Generous for a loaded CI runner; the events themselves arrive within a few hundred ms.
DEADLINE_S = 10.0


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []
        self.changed = threading.Condition()

    def started(self, epoch: int) -> None:
        self._add(("started", epoch))

    def stopped(self, epoch: int, reason: str) -> None:
        self._add(("stopped", epoch, reason))

    def _add(self, event: tuple[object, ...]) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, kind: str) -> tuple[object, ...]:
        with self.changed:
            assert self.changed.wait_for(lambda: any(e[0] == kind for e in self.events), DEADLINE_S), self.events
            return next(e for e in self.events if e[0] == kind)


class BlockingWork:
    """Leader work whose tick blocks until released: a wedged loop."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.ticks = 0

    def start(self, epoch: int) -> None:
        pass

    def tick(self, epoch: int) -> None:
        self.ticks += 1
        if self.ticks > 2:
            self.release.wait()

    def stop(self) -> None:
        pass


def test_wedged_leader_loop_makes_the_leader_step_down(tmp_path):
    """A loop that stops beating lets the lease go within the stall limit, and the node knows it (I5)."""
    rec, work = Recorder(), BlockingWork()
    settings = ElectionConfig(**FAST, loop_stall_s=0.5, stop_grace_s=0.1, on_wedged="stay")
    config = Config.from_mapping({"loop": {"tick_s": 0.02}})
    node = dtms.Node(tmp_path / "d.db", name="a", election=settings, config=config, work=work,
                     on_started_leading=rec.started, on_stopped_leading=rec.stopped)
    try:
        node.start()
        assert node.wait_until_leader(DEADLINE_S)
        stopped = rec.wait_for("stopped")
        assert stopped == ("stopped", 1, "loop_stalled")
        assert not node.is_leader
        lease = node.store.lease()
        assert lease is not None and lease.state == "released"
        time.sleep(0.3)
        assert not node.is_leader, "re-elected itself while its wedged loop still runs"
    finally:
        work.release.set()
        node.close()


def test_gateway_sends_nothing_once_the_epoch_is_gone(tmp_path):
    """A leader whose epoch moved on cannot mark an action sent, so the broker is never called (I3)."""
    node = dtms.Node(tmp_path / "d.db", name="a", election=ElectionConfig(**FAST))
    calls: list[int] = []
    try:
        node.start()
        assert node.wait_until_leader(DEADLINE_S)
        epoch = node.epoch
        assert epoch is not None
        node.store.register_trade(1, "EURUSD", "BUY", 1.1, 0.1)
        action = node.gateway.intent(epoch, identifier=1, action_type="tighten_sl", idempotency_key="t1:0")
        # Another process takes the lease (here: a second connection forcing a takeover).
        other = dtms.open(tmp_path / "d.db")
        other.take_over(node.elector.holder.model_copy(update={"token": "x", "name": "b"}),
                        ttl_ms=2000, now_boot_ms=0, lock_inode=None, decide=lambda row: "expired")
        with pytest.raises((dtms.LeaseLostError, dtms.NotLeaderError)):
            node.gateway.send(epoch, action, {"action": 6}, lambda: calls.append(1))
        assert calls == []
        row = other.actions(limit=1)[0]
        assert (row.status, row.attempts) == (ActionStatus.INTENT, 0)
        other.close()
    finally:
        node.close()


def test_gateway_refuses_when_too_little_lease_is_left(tmp_path):
    """Inside the send margin the gateway refuses, before anything is marked sent."""
    clock = ManualClock()
    settings = ElectionConfig(**{**FAST, "check_interval_s": 0.02})
    node = dtms.Node(tmp_path / "d.db", name="a", election=settings, clock=clock)
    try:
        node.start()
        assert node.wait_until_leader(DEADLINE_S)
        epoch = node.epoch
        assert epoch is not None
        node.elector._next_renew_ms = 10**15  # hold renewals so the lease runs down on the manual clock
        node.store.register_trade(1, "EURUSD", "BUY", 1.1, 0.1)
        action = node.gateway.intent(epoch, identifier=1, action_type="tighten_sl", idempotency_key="k")
        clock.advance(settings.lease_ttl_s - settings.send_margin_s / 2)
        with pytest.raises(dtms.NotLeaderError):
            node.gateway.send(epoch, action, {}, lambda: pytest.fail("sent"))
    finally:
        node.close()


def _elector(path, name: str, clock: ManualClock, rec: Recorder) -> Elector:
    return Elector(dtms.open(path, clock=clock), name=name, settings=ElectionConfig(**FAST), clock=clock,
                   on_started_leading=rec.started, on_stopped_leading=rec.stopped)


def test_wall_clock_steps_neither_expire_a_live_lease_nor_extend_a_dead_one(tmp_path):
    """Stepping the wall clock by a day either way changes no verdict; the boot clock decides (I7)."""
    clock = ManualClock()
    path = tmp_path / "d.db"
    rec_a, rec_b = Recorder(), Recorder()
    a, b = _elector(path, "a", clock, rec_a), _elector(path, "b", clock, rec_b)
    try:
        a.start()
        assert a.wait_until_leader(DEADLINE_S)
        b.start()
        for step in (86_400, -3_600, -86_400):
            clock.step_wall(step)
            time.sleep(0.2)  # several check intervals of b's heart
            assert a.is_leader and not b.is_leader
        # Freeze a (its threads stop, its lock stays held): its lease is now dead but unexpired.
        a._stop.set()
        a._wake.set()
        clock.step_wall(-86_400)
        clock.advance(FAST["lease_ttl_s"] - 0.1)
        time.sleep(0.2)
        assert not b.is_leader
        clock.advance(0.1)
        assert b.wait_until_leader(DEADLINE_S)
        assert b.store.lease_history()[-1]["reason"] == "expired"
        assert not a.is_leader  # a's own validity ended at the same boot-clock instant
    finally:
        b.stop()
        a.stop()


def _ghost_lease(path, *, boot_id: str, lock_inode: str | None) -> None:
    """A lease written by a process of boot `boot_id` that is not running here."""
    old = ManualClock(boot_id=boot_id)
    store = dtms.open(path, clock=old)
    holder = dtms.models.Holder(name="ghost", host="h", pid=1, proc_start=None, boot_id=boot_id, token="g")
    store.take_over(holder, ttl_ms=60_000, now_boot_ms=old.boot_ms(), lock_inode=lock_inode, decide=lambda r: "first")
    store.close()


def test_a_lease_of_an_earlier_boot_whose_lock_is_free_is_taken_over_at_once(tmp_path):
    """After a reboot the kernel dropped the holder's OS lock: the lock file it recorded is ours now, so the
    lease is taken over without waiting for its TTL (I7), whatever the two boot clocks say."""
    path = tmp_path / "d.db"
    with dtms.open(path):
        pass
    clock = ManualClock(boot_id="new-boot")
    rec = Recorder()
    b = _elector(path, "b", clock, rec)
    _ghost_lease(path, boot_id="old-boot", lock_inode=b._lock.inode)  # the lock file the ghost held
    try:
        b.start()
        assert b.wait_until_leader(DEADLINE_S)
        assert b.store.lease_history()[-1]["reason"] == "holder_dead"
    finally:
        b.stop()


def test_a_lease_taken_before_this_boot_is_taken_over_at_once_without_lock_evidence(tmp_path):
    """After a reboot the old lease names another boot id and a takeover older than this boot: its holder is
    gone, whatever the lock file says (a robust mutex in it can still read "locked" by a thread of the earlier
    boot), so no TTL is waited for."""
    path = tmp_path / "d.db"
    _ghost_lease(path, boot_id="old-boot", lock_inode=None)  # taken at 08:00 on the manual clock
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    clock = ManualClock(start, boot_ms=1_000, boot_id="new-boot")  # this boot began at 08:59:59
    rec = Recorder()
    b = _elector(path, "b", clock, rec)
    try:
        b.start()
        assert b.wait_until_leader(DEADLINE_S)
        assert b.store.lease_history()[-1]["reason"] == "holder_dead"
        assert b.sender_stopped(1)  # and its in-flight requests need no operator
        assert b.store.lease_history()[0]["stopped_how"] == "exited"
    finally:
        b.stop()


def test_a_lease_seen_from_another_boot_id_expires_only_after_a_ttl_observed_here(tmp_path):
    """Another boot id need not mean another boot (a mount namespace shows its own): without lock evidence the
    lease is only taken over once it stayed unrenewed for a whole TTL on this process's clock (I1, I7)."""
    path = tmp_path / "d.db"
    _ghost_lease(path, boot_id="old-boot", lock_inode=None)
    clock = ManualClock(boot_id="new-boot")
    rec = Recorder()
    b = _elector(path, "b", clock, rec)
    try:
        b.start()
        assert not b.wait_until_leader(1.0)  # a whole second of real checks: no takeover yet
        clock.advance(59.0)
        assert not b.wait_until_leader(0.5)
        clock.advance(1.5)  # 60.5 s unrenewed since b first saw it (ttl 60 s)
        assert b.wait_until_leader(DEADLINE_S)
        assert b.store.lease_history()[-1]["reason"] == "expired"
    finally:
        b.stop()


def _hold_lock_until(path: str, held, release) -> None:  # type: ignore[no-untyped-def]
    """A child holding the election lock (the kind `auto` picks) until told to let it go."""
    from dtms.oslock import election_lock

    lock = election_lock(path)
    lock.acquire()
    held.set()
    release.wait(60)
    lock.release()


def test_a_leader_that_won_without_the_lock_records_it_as_soon_as_its_waiter_takes_it(tmp_path):
    """The heart may win an empty lease while another process still holds the OS lock; once the waiter gets
    the lock, the row says lock_held at once, not a renewal interval later: until it does, a crash of this
    leader could not be taken over through the lock."""
    from tests.process_helpers import CTX, SPAWN_DEADLINE_S

    path = str(tmp_path / "d.db")
    dtms.open(path).close()
    held, release = CTX.Event(), CTX.Event()
    child = CTX.Process(target=_hold_lock_until, args=(f"{os.path.realpath(path)}.lock", held, release), daemon=True)
    child.start()
    node = dtms.Node(path, name="a", election=ElectionConfig(lease_ttl_s=60.0, renew_deadline_s=50.0))
    try:
        assert held.wait(SPAWN_DEADLINE_S)
        node.start()
        assert node.wait_until_leader(5)  # the heart's "first": no lease row yet, the lock elsewhere
        assert not node.store.lease().lock_held
        release.set()
        deadline = time.monotonic() + 5  # the renewal interval is 20 s
        while not node.store.lease().lock_held:
            assert time.monotonic() < deadline, "lock_held waited for the next scheduled renewal"
            time.sleep(0.01)
    finally:
        release.set()
        node.close()
        child.join(5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork semantics tested on Linux")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # forking a process with threads, on purpose
def test_a_child_forked_from_a_leader_is_no_leader_at_once(tmp_path):
    """I8: `if node.is_leader:` in a forked worker must be false the instant it runs, not a TTL later."""
    node = dtms.Node(tmp_path / "d.db", name="parent", election=ElectionConfig(**FAST))
    try:
        node.start()
        assert node.wait_until_leader(DEADLINE_S)
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code, never return into pytest
            code = 1
            try:
                code = 0 if (not node.is_leader and node.epoch is None) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "child: 2 = it believed it leads, 1 = it raised"
        assert node.is_leader  # the parent still leads
    finally:
        node.stop()
