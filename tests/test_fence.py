"""Proof that an earlier epoch can send no more (dtms.fence): exit, verified kill, own term, operator."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import dtms
from dtms.clock import SystemClock, process_start_time
from dtms.fence import Fence, holder_alive, kill_verified, same_start_time
from dtms.lease import StopProof
from dtms.models import Holder

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process proofs use pidfd and /proc (Linux)")

HOST = socket.gethostname()
MINE = "mine"  # this fence's own per-Node token
BOOT = SystemClock().boot_id()
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _start_of(proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the /proc entry is visible once the child exists
        start = process_start_time(proc.pid)
        if start is not None:
            return start
    raise AssertionError("no /proc entry for the child")


@pytest.fixture
def sleeper():
    child = subprocess.Popen(SLEEPER)
    yield child, _start_of(child)
    child.kill()
    child.wait()


def test_kill_verified_signals_only_the_recorded_process_and_reports_its_exit(sleeper):
    """A reused pid (another start time) or this very process is never signalled; the recorded one is, and
    True means it has exited."""
    child, start = sleeper
    assert not kill_verified(child.pid, start + 1)
    assert not kill_verified(os.getpid(), process_start_time() or 0)
    assert child.poll() is None
    assert kill_verified(child.pid, start)
    assert child.poll() is not None or child.wait(1) == -signal.SIGKILL
    assert not kill_verified(child.pid, start)  # gone: nothing to kill, nothing proven by this call


def test_holder_alive_needs_this_host_this_boot_and_the_start_time(sleeper):
    child, start = sleeper
    mine = {"my_host": HOST, "my_boot_id": BOOT}
    assert holder_alive(child.pid, start, HOST, BOOT, **mine) is True
    assert holder_alive(child.pid, start + 1, HOST, BOOT, **mine) is False  # the pid was reused
    assert holder_alive(child.pid, start, "elsewhere", BOOT, **mine) is None
    assert holder_alive(child.pid, start, HOST, "another-boot", **mine) is None
    assert holder_alive(child.pid, None, HOST, BOOT, **mine) is None  # a bare pid proves nothing
    child.kill()
    child.wait()
    assert holder_alive(child.pid, start, HOST, BOOT, **mine) is False


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_holder_in_another_time_namespace_is_recognised_by_its_own_start_time():
    """/proc shifts start times by the reader's time namespace: a holder in another one recorded another number,
    and without the correction a live holder would look dead (a false proof)."""
    child = subprocess.Popen(["unshare", "--time", "--boottime", "100000", sys.executable, "-c",
                              "from dtms.clock import process_start_time; import time; "
                              "print(process_start_time(), flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.strip():
            pytest.skip(f"cannot enter a time namespace here: {child.stderr.read() if child.stderr else ''}")
        recorded = int(line)
        assert process_start_time(child.pid) != recorded  # the raw number differs ...
        assert same_start_time(child.pid, recorded)  # ... the holder's own view matches
        assert holder_alive(child.pid, recorded, HOST, BOOT, my_host=HOST, my_boot_id=BOOT) is True
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def _epoch_of(store: dtms.Store, pid: int, proc_start: int | None, *, boot_id: str | None = BOOT,
              token: str = "theirs") -> int:  # noqa: S107  # fmt: skip
    holder = Holder(name=f"p{pid}", host=HOST, pid=pid, proc_start=proc_start, boot_id=boot_id, token=token)
    won = store.take_over(holder, ttl_ms=1000, now_boot_ms=0, lock_inode=None, decide=lambda r: "expired")
    assert won is not None
    return won[0]


def _how(store: dtms.Store, epoch: int) -> str | None:
    return next(r["stopped_how"] for r in store.lease_history() if r["epoch"] == epoch)


def test_fence_proves_what_it_can_records_it_and_never_concludes_without_proof(tmp_path, sleeper):
    child, start = sleeper
    store = dtms.open(tmp_path / "d.db")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone_start = _start_of(gone)
    gone.wait()
    own = _epoch_of(store, os.getpid(), process_start_time(), token=MINE)
    exited = _epoch_of(store, gone.pid, gone_start)
    live = _epoch_of(store, child.pid, start)
    foreign = _epoch_of(store, child.pid, start, boot_id="another-boot")
    gentle = Fence(store, token=MINE, host=HOST, boot_id=lambda: BOOT, kill=False)
    assert gentle.stopped(own)
    assert _how(store, own) == StopProof.QUIESCED
    assert gentle.stopped(exited)
    assert _how(store, exited) == StopProof.EXITED
    assert not gentle.stopped(live)  # alive, and this fence may not kill
    assert child.poll() is None
    assert _how(store, live) is None
    assert not gentle.stopped(10_000)  # never granted: no record, no proof
    killer = Fence(store, token=MINE, host=HOST, boot_id=lambda: BOOT, kill=True)
    assert not killer.stopped(foreign)  # another boot id: it cannot be checked, so it is not killed
    assert killer.stopped(live)
    assert child.wait(5) == -signal.SIGKILL
    assert _how(store, live) == StopProof.KILLED
    store.record_stopped(foreign, StopProof.OPERATOR)
    assert killer.stopped(foreign)
    store.record_stopped(live, StopProof.OPERATOR)  # the first proof stays
    assert _how(store, live) == StopProof.KILLED


def test_start_times_across_time_namespaces_allow_one_tick_of_rounding(monkeypatch):
    """The kernel rounds start + offset as one sum: a holder whose namespace offset is not a whole tick records
    a number one tick from ours plus its offset. Outside namespaces the numbers must match exactly."""
    import dtms.fence as fence

    monkeypatch.setattr(fence, "process_start_time", lambda pid: 1000)
    monkeypatch.setattr(fence, "_boottime_offset_ticks", lambda pid: 500 if pid == 42 else 0)
    assert same_start_time(42, 1500)
    assert same_start_time(42, 1501)
    assert not same_start_time(42, 1502)
    assert same_start_time(7, 1000)
    assert not same_start_time(7, 1001)  # same namespace: exact, or it is another process
    monkeypatch.setattr(fence, "_boottime_offset_ticks", lambda pid: None)
    assert same_start_time(42, 1500) is None  # unreadable offsets: nothing is concluded
    assert holder_alive(42, 1500, HOST, BOOT, my_host=HOST, my_boot_id=BOOT) in (None, False)
