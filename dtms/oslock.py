"""The election's OS lock: a lock file held by one process, a blocking wait the kernel ends, closed at fork.

Two kinds behind one interface (`election_lock` picks): `OSLock`, an flock on the file (filelock on
Windows), and on Linux `RobustLock`, a process-shared robust pthread mutex kept in the same file. The kernel
frees a dead holder's robust mutex as its exit begins, before it tears down the process's memory; it drops
an flock only after that teardown, which takes milliseconds for a large process (spec/election.md §2).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import platform
import struct
import sys
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from dtms.errors import LockFileError
from dtms.store.db import FILE_MODE

if TYPE_CHECKING:
    from filelock import BaseFileLock

#: NOTE: Windows has no blocking lock the kernel wakes us from, so filelock polls; 5 ms keeps takeover
#: latency small at negligible CPU. Windows releases a dead process's lock after an unbounded time anyway.
WINDOWS_POLL_S: Final = 0.005

_OPEN_LOCKS: weakref.WeakSet[_LockFile] = weakref.WeakSet()


def _close_in_child() -> None:
    for lock in list(_OPEN_LOCKS):
        lock._close_inherited()


if hasattr(os, "register_at_fork"):
    # I8: a forked child must not keep the leader's lock alive after the leader dies. flock belongs to the
    # open file description the child shares, so close the child's descriptor WITHOUT unlocking (LOCK_UN
    # would release the parent's lock too).
    os.register_at_fork(after_in_child=_close_in_child)


def _open_lock_file(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, FILE_MODE)
    except OSError as exc:
        if path.is_symlink():
            # A DtmsError (issue 11, point 5) that is still the OSError callers caught before.
            raise LockFileError(
                exc.errno,
                f"the election lock file {path} is a symlink: refusing to lock through it",
                str(path),
            ) from exc
        raise


class _LockFile:
    """What both kinds share: the lock file opened once (never through a symlink), its identity, whether
    this process holds the lock, and forgetting it all in a forked child."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._guard = threading.Lock()
        self._held = False
        self._fd = _open_lock_file(self.path)

    @property
    def inode(self) -> str:
        """'dev:ino' of the file this lock's descriptor refers to: the identity a leader records."""
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
        fd = os.fstat(self._fd)
        return (st.st_dev, st.st_ino) == (fd.st_dev, fd.st_ino)

    def _close_fd(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _close_inherited(self) -> None:
        # In a forked child: forget the lock and close the descriptor, never unlocking (see the at-fork hook).
        self._held = False
        self._close_fd()
        self._fd = -1
        _OPEN_LOCKS.discard(self)


class OSLock(_LockFile):
    """An exclusive lock on `path`, held through one descriptor for the life of the process.

    The file is never written, truncated or unlinked: unlinking splits waiters across inodes and breaks
    mutual exclusion (filelock's reasoning), and it must not be the database file itself (closing any
    descriptor of a file drops all of a process's POSIX locks on it, which SQLite relies on).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        # Windows: filelock's LockFileEx-based lock (polled); POSIX: flock on our own descriptor.
        self._win_lock: BaseFileLock | None = None
        if sys.platform == "win32":
            from filelock import FileLock

            self._win_lock = FileLock(self.path, thread_local=False)
        _OPEN_LOCKS.add(self)

    def reopen(self) -> None:
        """Open the file at `path` afresh (after it was replaced); only while not holding the lock."""
        with self._guard:
            if self._held:
                raise RuntimeError("cannot reopen a held lock")
            self._close_fd()
            self._fd = _open_lock_file(self.path)

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
        self._close_fd()
        _OPEN_LOCKS.discard(self)


# --- the robust mutex (Linux) ---------------------------------------------------------------------------

#: The file's first bytes once its mutex is initialised. The machine and pointer size are part of it: a
#: process whose pthread layout may differ (a 32-bit Python beside a 64-bit one) must not use the mutex.
_MAGIC: Final = f"dtms robust mutex v1 {platform.machine()} {struct.calcsize('P') * 8}-bit\n".encode()
_MUTEX_OFFSET: Final = 64  # aligned; glibc's pthread_mutex_t is 40 bytes on x86-64, 48 on arm64
_MUTEX_SPACE: Final = 256
#: After the mutex: the boot that initialised it (`<boot id> <kernel boot time, s>`). The mutex lives in a
#: file, so it outlives a reboot; a thread that held it then died with the kernel, which never marked it dead,
#: and it would read "locked" forever. A mutex stamped by an earlier boot is initialised afresh.
_STAMP_OFFSET: Final = _MUTEX_OFFSET + _MUTEX_SPACE
_STAMP_SPACE: Final = 64
_MAP_SIZE: Final = 4096
_PTHREAD_PROCESS_SHARED: Final = 1
_PTHREAD_MUTEX_ROBUST: Final = 1
_PTHREAD_MUTEX_ERRORCHECK: Final = 2  # locking twice or unlocking from another thread is an error, not a hang


def _boot_stamp() -> bytes:
    """This boot's stamp: the kernel's boot id and its boot time (whole seconds of wall time), or b''."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        btime = next(line.split()[1] for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))  # fmt: skip
    except (OSError, StopIteration):
        return b""
    return f"{boot_id} {btime}".encode()[:_STAMP_SPACE]


def _from_earlier_boot(recorded: bytes, current: bytes) -> bool:
    """Whether the stamp in the file names an earlier boot than `current`: another boot id **and** an earlier
    boot time. Either alone proves nothing: a mount namespace can show another boot id, a time namespace
    another boot time; a reboot changes both."""
    try:
        old_id, old_btime = recorded.rstrip(b"\0").decode().split()
        new_id, new_btime = current.decode().split()
    except (UnicodeDecodeError, ValueError):
        return False  # no stamp (a file of an older dtms, or no /proc): keep the mutex as it is
    return old_id != new_id and int(old_btime) + 2 < int(new_btime)


class LockUnavailableError(OSError):
    """This platform or lock file cannot hold a robust mutex (the caller falls back to flock)."""


def _pthread() -> ctypes.CDLL:
    """The process's pthread functions (libc since glibc 2.34, libpthread before; musl has them in libc)."""
    if sys.platform != "linux":
        raise LockUnavailableError("robust process-shared mutexes are used on Linux only")
    lib = ctypes.CDLL(None, use_errno=True)
    for name in ("pthread_mutexattr_setrobust", "pthread_mutexattr_setpshared", "pthread_mutex_consistent"):
        if not hasattr(lib, name):
            raise LockUnavailableError(f"the C library has no {name}")
    voidp = [ctypes.c_void_p]
    for verb in ("lock", "trylock", "unlock", "consistent"):
        getattr(lib, f"pthread_mutex_{verb}").argtypes = voidp
    lib.pthread_mutexattr_init.argtypes = lib.pthread_mutexattr_destroy.argtypes = voidp
    for name in ("pthread_mutexattr_setpshared", "pthread_mutexattr_setrobust", "pthread_mutexattr_settype"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.pthread_mutex_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.mmap.restype = ctypes.c_void_p
    int_ = ctypes.c_int
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, int_, int_, int_, ctypes.c_long]
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return lib


class RobustLock(_LockFile):
    """The election lock as a robust, process-shared pthread mutex in the lock file (Linux).

    Same interface as `OSLock`, one rule more: only the thread that acquired it may release it (the
    elector's waiter thread does both). A holder that dies with it, however it dies, hands it to the next
    waiter with EOWNERDEAD as soon as its exit starts; that waiter marks it consistent and holds it. Its
    identity (`inode`) carries a ':robust' tag, so a process using flock on the same file can never mistake
    a robust holder's lease for its own kind of proof (and the other way round).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._lib = _pthread()
        super().__init__(path)
        self._owner: int | None = None
        self.previous_owner_died = False
        try:
            self._base = self._attach()
        except BaseException:
            self._close_fd()
            raise
        self._mutex = ctypes.c_void_p(self._base + _MUTEX_OFFSET)
        _OPEN_LOCKS.add(self)

    def _attach(self) -> int:
        """Map the file and initialise its mutex once; the address of the mutex.

        The mapping is made with the C library, never by a Python object: a robust mutex's memory must stay
        mapped until the process is gone, because the kernel walks the owner's robust list at exit. Python
        unmaps an `mmap` object when it is collected, even during interpreter shutdown, and a mutex whose
        memory was unmapped before its holder exited stays locked forever.
        """
        import fcntl

        # A record lock on byte 0 serialises initialisation (flock is the other kind's business).
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, 0)
        try:
            if os.fstat(self._fd).st_size < _MAP_SIZE:
                os.ftruncate(self._fd, _MAP_SIZE)
            prot = mmap.PROT_READ | mmap.PROT_WRITE
            base = self._lib.mmap(None, _MAP_SIZE, prot, mmap.MAP_SHARED, self._fd, 0)
            if base in (None, ctypes.c_void_p(-1).value):
                raise LockUnavailableError(f"cannot map {self.path}: {os.strerror(ctypes.get_errno())}")
            header = ctypes.string_at(base, len(_MAGIC))
            stamp = _boot_stamp()
            if header != _MAGIC:
                if any(ctypes.string_at(base, _MUTEX_OFFSET + _MUTEX_SPACE)):
                    self._lib.munmap(base, _MAP_SIZE)
                    raise LockUnavailableError(f"{self.path} holds a mutex of another layout: {header!r}")
                self._init_mutex(ctypes.c_void_p(base + _MUTEX_OFFSET))
                ctypes.memmove(base, _MAGIC, len(_MAGIC))
            elif _from_earlier_boot(ctypes.string_at(base + _STAMP_OFFSET, _STAMP_SPACE), stamp):
                self._init_mutex(ctypes.c_void_p(base + _MUTEX_OFFSET))  # nobody of that boot can hold it
            ctypes.memmove(base + _STAMP_OFFSET, stamp.ljust(_STAMP_SPACE, b"\0"), _STAMP_SPACE)
            return int(base)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0)

    def _init_mutex(self, mutex: ctypes.c_void_p) -> None:
        lib = self._lib
        attr = ctypes.create_string_buffer(64)
        checks = (
            lib.pthread_mutexattr_init(attr),
            lib.pthread_mutexattr_setpshared(attr, _PTHREAD_PROCESS_SHARED),
            lib.pthread_mutexattr_setrobust(attr, _PTHREAD_MUTEX_ROBUST),
            lib.pthread_mutexattr_settype(attr, _PTHREAD_MUTEX_ERRORCHECK),
            lib.pthread_mutex_init(mutex, attr),
        )
        lib.pthread_mutexattr_destroy(attr)
        if any(checks):
            failed = [os.strerror(c) for c in checks if c]
            raise LockUnavailableError(f"cannot initialise a robust mutex: {failed}")

    @property
    def inode(self) -> str:
        """'dev:ino:robust' of the lock file: the identity a leader records."""
        return f"{super().inode}:robust"

    def reopen(self) -> None:
        with self._guard:
            if self._held:
                raise RuntimeError("cannot reopen a held lock")
            self._detach()
            self._fd = _open_lock_file(self.path)
            self._base = self._attach()
            self._mutex = ctypes.c_void_p(self._base + _MUTEX_OFFSET)

    def acquire(self) -> None:
        """Block (GIL released) until the mutex is this thread's; a dead holder's passes at once."""
        self._take(self._lib.pthread_mutex_lock(self._mutex))

    def try_acquire(self) -> bool:
        code = self._lib.pthread_mutex_trylock(self._mutex)
        if code == errno.EBUSY:
            return False
        self._take(code)
        return True

    def _take(self, code: int) -> None:
        self.previous_owner_died = code == errno.EOWNERDEAD
        if code == errno.EOWNERDEAD:  # the holder died holding it: ours now, once marked consistent
            code = self._lib.pthread_mutex_consistent(self._mutex)
        if code:
            raise OSError(code, f"election mutex in {self.path}: {os.strerror(code)}")
        self._owner = threading.get_ident()
        self._held = True

    def release(self) -> None:
        """Let the mutex go; only from the thread that acquired it."""
        if not self._held:
            return
        if self._owner != threading.get_ident():
            raise RuntimeError("the election mutex must be released by the thread that acquired it")
        self._held = False
        self._owner = None
        code = self._lib.pthread_mutex_unlock(self._mutex)
        if code:
            raise OSError(code, f"election mutex in {self.path}: {os.strerror(code)}")

    def close(self) -> None:
        self.release()
        self._detach()
        _OPEN_LOCKS.discard(self)

    def _detach(self) -> None:
        # Only while not held (reopen, close): no robust list of ours points into this memory.
        self._lib.munmap(self._base, _MAP_SIZE)
        self._mutex = ctypes.c_void_p(0)
        self._close_fd()


def election_lock(
    path: str | os.PathLike[str], kind: Literal["auto", "flock"] = "auto"
) -> OSLock | RobustLock:
    """The robust mutex where the platform has one (`auto` on Linux), else the flock (or filelock) lock."""
    if kind == "auto" and sys.platform == "linux":
        try:
            return RobustLock(path)
        except LockUnavailableError:
            pass
    return OSLock(path)


__all__ = ["LockUnavailableError", "OSLock", "RobustLock", "election_lock"]
