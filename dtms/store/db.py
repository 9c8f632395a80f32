"""Store: one connection per process, pragmas, the transaction lock, the fork guard and fenced writes."""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Self

import apsw

from dtms.clock import Clock, SystemClock
from dtms.errors import (
    InvalidArgumentError,
    LeaseLostError,
    SchemaVersionError,
    StoreBusyError,
    StoreError,
    StoreNotFoundError,
    UsedAfterForkError,
)
from dtms.lease import ENGINE_LEASE
from dtms.store.schema import MIGRATIONS, SCHEMA_VERSION

#: NOTE: long enough to ride out a checkpoint or a burst of writers; short enough that a wedged writer
#: (a process stopped inside a transaction, spec/election.md 4.11) surfaces as StoreBusyError, not a hang.
DEFAULT_BUSY_TIMEOUT_S: Final = 5.0
#: sqlite3_busy_timeout takes a C int of milliseconds.
MAX_BUSY_TIMEOUT_S: Final = (2**31 - 1) / 1000
#: The path of a private in-memory database (replays and tests): one connection, no WAL, no election.
MEMORY: Final = ":memory:"
#: Owner-only: trade data and the lease are nobody else's business (the WAL and SHM files inherit it).
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
#: WAL needs shared memory on one host; these file systems cannot give that (sqlite.org/wal.html).
NETWORK_FILESYSTEMS: Final = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "afs", "9p", "fuse.sshfs", "ceph", "glusterfs"}
)

# Connections inherited by a forked child are parked here so that they are never used, finalized or closed
# there (apsw: a connection must never be touched in a child; closing could checkpoint or unlink the WAL).
_FORK_ORPHANS: list[apsw.Connection] = []
_LIVE_STORES: weakref.WeakSet[StoreCore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_LIVE_STORES):
        store._orphan()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def iso(value: datetime) -> str:
    """The one text form of a time in the database: ISO-8601 UTC with microseconds (sorts as text)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: dtms stores timezone-aware UTC times only")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(value: str | None) -> datetime | None:
    """Inverse of `iso`."""
    return None if value is None else datetime.fromisoformat(value)


def dumps(value: Any) -> str:
    """JSON as stored: compact, sorted keys (so equal values are equal text), no NaN."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


def _filesystem_type(path: Path) -> str | None:
    # Linux only: the mount with the longest mount point that contains the path.
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    target = str(path)
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, fstype = mount, right.split()[0]
    return fstype


def _translate(exc: apsw.Error, path: Path) -> StoreError:
    if isinstance(exc, apsw.BusyError | apsw.LockedError):
        return StoreBusyError(f"{path}: the database stayed locked past the busy timeout ({exc})")
    if isinstance(exc, apsw.FullError):
        return StoreError(f"{path}: the database or disk is full ({exc}); nothing of this write was kept")
    if isinstance(exc, apsw.ReadOnlyError):
        return StoreError(f"{path}: the database is read-only ({exc})")
    if isinstance(exc, apsw.CorruptError | apsw.NotADBError):
        return StoreError(f"{path}: the file is not a healthy dtms database ({exc}); restore a backup")
    return StoreError(f"{path}: {type(exc).__name__}: {exc}")


def query(conn: apsw.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Rows of one statement as dicts keyed by column name."""
    cursor = conn.execute(sql, params)
    try:
        names = [d[0] for d in cursor.get_description()]
    except apsw.ExecutionCompleteError:  # the statement returned no row at all
        return []
    return [dict(zip(names, row, strict=True)) for row in cursor]


class StoreCore:
    """The connection and its transactions; the registry, lease and journal methods build on these."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        clock: Clock | None = None,
        allow_network_fs: bool = False,
    ) -> None:
        raw = os.fspath(path) if isinstance(path, os.PathLike) else path
        if not isinstance(raw, str) or not raw or "\x00" in raw:
            raise InvalidArgumentError(f"path must be a non-empty str or os.PathLike, got {path!r}")
        if (
            isinstance(busy_timeout_s, bool)
            or not isinstance(busy_timeout_s, int | float)
            or not 0 <= busy_timeout_s <= MAX_BUSY_TIMEOUT_S
        ):
            raise InvalidArgumentError(
                f"busy_timeout_s must be from 0 to {MAX_BUSY_TIMEOUT_S} s, got {busy_timeout_s!r}"
            )
        self.in_memory = raw == MEMORY
        self.clock: Clock = clock or SystemClock()
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._forked = False
        self._closed = False
        try:
            self.path = Path(MEMORY) if self.in_memory else Path(raw).expanduser().absolute()
            if self.in_memory:
                pass
            elif not self.path.exists():
                if not create:
                    raise StoreNotFoundError(f"no dtms database at {self.path}")
                self._create_file()
            fstype = None if self.in_memory else _filesystem_type(self.path.parent.resolve())
        except StoreError:  # StoreNotFoundError is an OSError too
            raise
        except (OSError, RuntimeError, UnicodeError) as exc:  # the path cannot be a file of ours
            raise StoreError(f"{raw!r} cannot be opened as a dtms database: {exc}") from exc
        if fstype in NETWORK_FILESYSTEMS and not allow_network_fs:
            raise StoreError(
                f"{self.path} is on a network file system ({fstype}): SQLite WAL and the election lock need "
                "a local disk shared by every process on one host"
            )
        try:
            self._conn = apsw.Connection(str(self.path))
        except (apsw.Error, UnicodeError) as exc:
            if isinstance(exc, apsw.Error):
                raise _translate(exc, self.path) from exc
            raise StoreError(f"{raw!r} cannot be opened as a dtms database: {exc}") from exc
        try:
            self._configure(busy_timeout_s)
            self._migrate()
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, apsw.Error):
                raise _translate(exc, self.path) from exc
            raise
        _LIVE_STORES.add(self)

    # -- setup ------------------------------------------------------------------------------------------

    def _create_file(self) -> None:
        # Every directory we create is owner-only: Path.mkdir(parents=True) gives the intermediate ones the
        # umask's mode, which a permissive umask leaves world-writable.
        missing = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
        for directory in reversed(missing):
            directory.mkdir(mode=DIR_MODE, exist_ok=True)
        # Create it owner-only before SQLite does: SQLite would use the umask, and gives the -wal and -shm
        # files the mode of the database file. O_EXCL: a racing creator is fine, we just use its file.
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, FILE_MODE)
        except FileExistsError:
            # A dangling symlink: SQLite would follow it and create the target 0644, not owner-only.
            if self.path.is_symlink():
                raise StoreError(f"{self.path} is a symlink to a missing file; not creating it") from None
            return
        os.close(fd)

    def _configure(self, busy_timeout_s: float) -> None:
        conn = self._conn
        conn.setbusytimeout(round(busy_timeout_s * 1000))
        # Writes begin IMMEDIATE (`_write`): a DEFERRED read-then-write can fail with SQLITE_BUSY_SNAPSHOT
        # without calling the busy handler (spec/election.md 4.3).
        mode = self._wal_mode(busy_timeout_s)
        if str(mode).lower() != "wal" and not self.in_memory:
            raise StoreError(f"{self.path}: could not switch to WAL mode (got {mode})")
        # FULL: an acknowledged registration survives power loss (NORMAL may roll it back in WAL mode).
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA trusted_schema=OFF")
        conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
        conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)

    def _wal_mode(self, busy_timeout_s: float) -> str:
        """Switch to WAL. On a brand-new file opened by several processes at once SQLite may answer BUSY at
        once, without its busy handler: retry for up to the busy timeout."""
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                return str(self._conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0])
            except apsw.BusyError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.002)

    def _migrate(self) -> None:
        # Read first: a current schema needs no write lock, so opening works while another process writes.
        if self._conn.execute("PRAGMA user_version").fetchall()[0][0] == SCHEMA_VERSION:
            return
        with self._write():  # BEGIN IMMEDIATE: a DEFERRED upgrade to a write can fail without waiting
            version = self._conn.execute("PRAGMA user_version").fetchall()[0][0]
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path} has schema version {version}, newer than this dtms understands "
                    f"({SCHEMA_VERSION}): upgrade dtms in every process that opens it"
                )
            for step in range(version, SCHEMA_VERSION):
                self._conn.execute(MIGRATIONS[step])
            if version != SCHEMA_VERSION:
                # PRAGMA takes no bound parameters; SCHEMA_VERSION is a code constant, not input.
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION:d}")

    # -- lifecycle --------------------------------------------------------------------------------------

    def _orphan(self) -> None:
        """In a forked child: park the inherited connection forever and refuse every later call."""
        self._forked = True
        _FORK_ORPHANS.append(self._conn)

    def _check(self) -> None:
        if self._forked or os.getpid() != self._pid:
            raise UsedAfterForkError(
                f"this Store for {self.path} was opened in process {self._pid} and cannot be used after "
                "fork(); open a new one in the child"
            )
        if self._closed:
            raise StoreError(f"the Store for {self.path} is closed")

    @property
    def closed(self) -> bool:
        """True after `close()`."""
        return self._closed

    def close(self) -> None:
        """Close the connection (idempotent). Not allowed in a forked child."""
        if self._closed:
            return
        self._check()
        with self._lock:
            self._closed = True
            self._conn.close()
        _LIVE_STORES.discard(self)

    def __enter__(self) -> Self:  # Self, so `with dtms.open(...) as store` is typed as the full Store
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[apsw.Connection]:
        """A write transaction (BEGIN IMMEDIATE); nested calls in the same thread become savepoints.

        BEGIN and COMMIT go through `execute`, which lets other threads run while SQLite's busy handler
        waits for another process's write lock. apsw's `with conn:` begins while holding the GIL, so a
        busy wait there froze every thread of the process (the bot's own included) for up to the busy
        timeout.
        """
        self._check()
        with self._lock:
            conn = self._conn
            outermost = conn.getautocommit()
            try:
                if outermost:
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    with conn:  # a savepoint: an error rolls back this block, nested blocks likewise
                        yield conn
                    if outermost:
                        conn.execute("COMMIT")
                except BaseException:
                    if outermost and not conn.getautocommit():
                        conn.execute("ROLLBACK")
                    raise
            except apsw.Error as exc:
                raise _translate(exc, self.path) from exc

    @contextmanager
    def _relaxed_sync(self) -> Iterator[None]:
        """Commit without syncing the WAL (synchronous=NORMAL) for the transactions inside.

        Only for election writes, where takeover latency matters: a lost lease commit after power loss is
        harmless (the boot id changes, so every old row is stale), and any later FULL commit makes the
        earlier WAL frames durable too (spec/election.md 4.7).
        """
        self._check()
        with self._lock:
            self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                yield
            finally:
                self._conn.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def _read(self) -> Iterator[apsw.Connection]:
        """Statements that only read: one process-wide lock, no transaction left open afterwards."""
        self._check()
        with self._lock:
            try:
                yield self._conn
            except apsw.Error as exc:
                raise _translate(exc, self.path) from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._read() as conn:
            return query(conn, sql, params)

    @contextmanager
    def fenced(self, epoch: int, name: str = ENGINE_LEASE) -> Iterator[None]:
        """A write transaction that commits only while `epoch` is still the lease's current, unreleased epoch.

        Store writes called inside the block commit atomically with the check (etcd's
        `Txn(If(IsOwner())).Then(writes)`, done locally).

        Raises:
            LeaseLostError: the epoch moved on or was released; nothing of the block is committed.
            StoreBusyError: the write lock could not be had within the busy timeout.
        """
        with self._write() as conn:
            row = conn.execute("SELECT epoch, released FROM lease WHERE name = ?", (name,)).fetchall()
            if not row or row[0][0] != epoch or row[0][1]:
                raise LeaseLostError(epoch, row[0][0] if row else None)
            yield

    # -- maintenance ------------------------------------------------------------------------------------

    def data_version(self) -> int:
        """A number that changes whenever another connection commits: a cheap 'did anything change?'."""
        with self._read() as conn:
            return int(conn.execute("PRAGMA data_version").fetchall()[0][0])

    def integrity_check(self) -> str:
        """`ok`, or SQLite's description of what is damaged."""
        with self._read() as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (keeps the WAL small; safe at any time)."""
        with self._read() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def schema_version(self) -> int:
        """The database's `PRAGMA user_version`."""
        with self._read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchall()[0][0])


__all__ = ["DEFAULT_BUSY_TIMEOUT_S", "MEMORY", "StoreCore", "dumps", "from_iso", "iso", "query"]
