"""The election locks themselves: the robust mutex (Linux) and the flock fallback, across real processes."""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import signal
import stat
import sys
import threading

import pytest

from dtms.oslock import LockUnavailableError, OSLock, RobustLock, election_lock

CTX = mp.get_context("spawn")

linux = pytest.mark.skipif(sys.platform != "linux", reason="the robust mutex is the Linux lock")


def _hold(path: str, ready, kind: str) -> None:  # type: ignore[no-untyped-def]
    """A child that takes the lock and sleeps until it is killed."""
    lock = RobustLock(path) if kind == "robust" else OSLock(path)
    lock.acquire()
    ready.set()
    threading.Event().wait(3600)


def _take_and_exit(path: str, ready) -> None:  # type: ignore[no-untyped-def]
    """A child that takes the mutex, drops every reference to it, and exits normally still holding it."""
    import gc

    lock = RobustLock(path)
    lock.acquire()
    del lock
    gc.collect()
    ready.set()


def _holder(path: str, kind: str = "robust"):  # type: ignore[no-untyped-def]
    ready = CTX.Event()
    proc = CTX.Process(target=_hold, args=(path, ready, kind), daemon=True)
    proc.start()
    assert ready.wait(30), "the holder never took the lock"
    return proc


@linux
def test_robust_lock_passes_to_the_next_process_when_its_holder_is_killed(tmp_path):
    path = str(tmp_path / "dtms.db.lock")
    proc = _holder(path)
    try:
        lock = RobustLock(path)
        assert not lock.try_acquire()  # held by the child
        os.kill(proc.pid, signal.SIGKILL)
        lock.acquire()  # returns once the kernel hands over the dead holder's mutex (EOWNERDEAD)
        assert lock.is_held and lock.previous_owner_died
        lock.release()
        assert lock.try_acquire() and not lock.previous_owner_died  # consistent again: a plain lock now
        lock.release()
    finally:
        proc.kill()
        proc.join(5)


@linux
def test_robust_lock_passes_on_when_its_holder_exits_normally_after_dropping_it(tmp_path):
    """The kernel frees a dead holder's mutex from the holder's robust list, which points into the mapping:
    the mapping must outlive every Python object (a collected mmap would leave the mutex locked forever)."""
    path = str(tmp_path / "dtms.db.lock")
    ready = CTX.Event()
    proc = CTX.Process(target=_take_and_exit, args=(path, ready))
    proc.start()
    proc.join(30)
    assert ready.is_set() and proc.exitcode == 0
    lock = RobustLock(path)
    assert lock.try_acquire() and lock.previous_owner_died
    lock.release()


@linux
def test_robust_lock_is_released_only_by_the_thread_that_took_it(tmp_path):
    lock = RobustLock(tmp_path / "x.lock")
    lock.acquire()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            lock.release()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert lock.is_held
    with pytest.raises(OSError) as info:  # error-checking: taking it twice is an error, not a hang
        lock._take(lock._lib.pthread_mutex_lock(lock._mutex))
    assert info.value.errno == errno.EDEADLK
    lock.release()
    assert not lock.is_held


@linux
def test_robust_lock_identity_differs_from_the_flock_identity_of_the_same_file(tmp_path):
    path = tmp_path / "dtms.db.lock"
    robust, flock = RobustLock(path), OSLock(path)
    assert robust.inode == f"{flock.inode}:robust"
    assert robust.is_current()
    os.unlink(path)
    assert not robust.is_current()
    robust.reopen()
    assert robust.is_current() and robust.try_acquire()
    robust.release()


@linux
def test_robust_lock_file_is_owner_only_and_never_followed_through_a_symlink(tmp_path):
    old = os.umask(0)
    try:
        RobustLock(tmp_path / "a.lock")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.lock").st_mode) == 0o600
    target = tmp_path / "elsewhere"
    (tmp_path / "b.lock").symlink_to(target)
    with pytest.raises(OSError, match="symlink"):
        RobustLock(tmp_path / "b.lock")
    assert not target.exists()


@linux
def test_a_lock_file_of_another_layout_falls_back_to_flock(tmp_path):
    path = tmp_path / "dtms.db.lock"
    path.write_bytes(b"dtms robust mutex v1 sparc 32-bit\n" + bytes(4000))
    with pytest.raises(LockUnavailableError):
        RobustLock(path)
    assert isinstance(election_lock(path), OSLock)
    assert path.read_bytes().startswith(b"dtms robust mutex v1 sparc")  # left as it was


def test_election_lock_kinds(tmp_path):
    assert isinstance(election_lock(tmp_path / "f.lock", "flock"), OSLock)
    expected = RobustLock if sys.platform == "linux" else OSLock
    assert isinstance(election_lock(tmp_path / "a.lock", "auto"), expected)


@linux
def test_an_flock_holder_does_not_block_the_robust_mutex_of_the_same_file(tmp_path):
    """The two kinds are independent locks: which is why their identities must differ (see test_election)."""
    path = str(tmp_path / "dtms.db.lock")
    proc = _holder(path, "flock")
    try:
        lock = RobustLock(path)
        assert lock.try_acquire()
        lock.release()
    finally:
        proc.kill()
        proc.join(5)


@pytest.mark.skipif(sys.platform != "linux", reason="robust mutexes are used on Linux")
@pytest.mark.parametrize(
    ("boot_id_changed", "boot_time_earlier", "freed"),
    [(True, True, True), (True, False, False), (False, True, False)],
    ids=["rebooted", "other_boot_id_only", "earlier_boot_time_only"],
)
def test_a_mutex_left_locked_by_an_earlier_boot_is_initialised_afresh(tmp_path, boot_id_changed,
                                                                      boot_time_earlier, freed):  # fmt: skip
    """The mutex lives in a file: after a reboot it still reads "locked" by a thread that died with the kernel,
    which never marked it dead, and no waiter would ever get it. Stamped by an earlier boot (another boot id
    and an earlier boot time), it is initialised afresh; either sign alone (a mount or time namespace) is not
    enough."""
    import subprocess

    from dtms.oslock import _STAMP_OFFSET, _STAMP_SPACE, _boot_stamp

    held, copy = tmp_path / "held.lock", tmp_path / "after-reboot.lock"
    code = ("import shutil, sys, time; from dtms.oslock import RobustLock; lock = RobustLock(sys.argv[1]); "
            "lock.acquire(); shutil.copy(sys.argv[1], sys.argv[2]); print('copied', flush=True); time.sleep(60)")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", code, str(held), str(copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "copied"  # the copy reads "locked by the child's thread"
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    boot_id, btime = _boot_stamp().decode().split()
    stamp = f"{'0' * 8 + boot_id[8:] if boot_id_changed else boot_id} {int(btime) - (600 if boot_time_earlier else 0)}"
    with open(copy, "r+b") as fh:
        fh.seek(_STAMP_OFFSET)
        fh.write(stamp.encode().ljust(_STAMP_SPACE, b"\0"))
    lock = RobustLock(copy)
    try:
        assert lock.try_acquire() is freed
    finally:
        if lock.is_held:
            lock.release()
        lock.close()
