"""The election's OS lock file: opened once, a blocking wait, a try, an inode check, closed at fork."""

from __future__ import annotations

import os
import sys
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Final

from dtms.store.db import FILE_MODE

if TYPE_CHECKING:
    from filelock import BaseFileLock

#: NOTE: Windows has no blocking lock the kernel wakes us from, so filelock polls; 5 ms keeps takeover
#: latency small at negligible CPU. Windows releases a dead process's lock after an unbounded time anyway.
WINDOWS_POLL_S: Final = 0.005

_OPEN_LOCKS: weakref.WeakSet[OSLock] = weakref.WeakSet()


def _close_in_child() -> None:
    for lock in list(_OPEN_LOCKS):
        lock._close_inherited()


if hasattr(os, "register_at_fork"):
    # I8: a forked child must not keep the leader's lock alive after the leader dies. flock belongs to the
    # open file description the child shares, so close the child's descriptor WITHOUT unlocking (LOCK_UN
    # would release the parent's lock too).
    os.register_at_fork(after_in_child=_close_in_child)


class OSLock:
    """An exclusive lock on `path`, held through one descriptor for the life of the process.

    The file is never written, truncated or unlinked: unlinking splits waiters across inodes and breaks
    mutual exclusion (filelock's reasoning), and it must not be the database file itself (closing any
    descriptor of a file drops all of a process's POSIX locks on it, which SQLite relies on).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._guard = threading.Lock()
        self._held = False
        self._fd = self._open()
        # Windows: filelock's LockFileEx-based lock (polled); POSIX: flock on our own descriptor.
        self._win_lock: BaseFileLock | None = None
        if sys.platform == "win32":
            from filelock import FileLock

            self._win_lock = FileLock(self.path, thread_local=False)
        _OPEN_LOCKS.add(self)

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            return os.open(self.path, flags, FILE_MODE)
        except OSError as exc:
            if self.path.is_symlink():
                raise OSError(f"{self.path} is a symlink: refusing to lock through it") from exc
            raise

    @property
    def inode(self) -> str:
        """'dev:ino' of the file this lock's descriptor refers to."""
        st = os.fstat(self._fd)
        return f"{st.st_dev}:{st.st_ino}"

    @property
    def is_held(self) -> bool:
        """True while this process holds the lock."""
        return self._held

    def is_current(self) -> bool:
        """False when the lock file was deleted or replaced since it was opened."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return f"{st.st_dev}:{st.st_ino}" == self.inode

    def reopen(self) -> None:
        """Open the file at `path` afresh (after it was replaced); only while not holding the lock."""
        with self._guard:
            if self._held:
                raise RuntimeError("cannot reopen a held lock")
            os.close(self._fd)
            self._fd = self._open()

    def acquire(self) -> None:
        """Block until the lock is ours. On Linux and macOS the kernel wakes us when the holder lets go."""
        if self._win_lock is not None:
            self._win_lock.acquire(poll_interval=WINDOWS_POLL_S)
        else:
            import fcntl

            # flock releases the GIL and retries on EINTR (PEP 475): a thread can sit here cheaply.
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._held = True

    def try_acquire(self) -> bool:
        """Take the lock if it is free right now."""
        if self._win_lock is not None:
            from filelock import Timeout

            try:
                self._win_lock.acquire(blocking=False)
            except Timeout:
                return False
        else:
            import fcntl

            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        self._held = True
        return True

    def release(self) -> None:
        """Let the lock go (the next waiter wakes)."""
        if not self._held:
            return
        self._held = False
        if self._win_lock is not None:
            self._win_lock.release()
        else:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release and close the descriptor."""
        self.release()
        try:
            os.close(self._fd)
        except OSError:
            pass
        _OPEN_LOCKS.discard(self)

    def _close_inherited(self) -> None:
        self._held = False
        try:
            os.close(self._fd)
        except OSError:
            pass
        self._fd = -1
        _OPEN_LOCKS.discard(self)


__all__ = ["OSLock"]
