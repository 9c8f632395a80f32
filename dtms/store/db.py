"""Store: one connection per process, pragmas, the transaction lock, the fork guard and fenced writes."""

from __future__ import annotations

import contextlib
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
    NotADtmsDatabaseError,
    SchemaVersionError,
    StoreBusyError,
    StoreError,
    StoreFilesChangedError,
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

#: The first bytes of every SQLite database file, and where its header keeps the file format versions
#: (2 and 2 once in WAL mode, which every dtms database is) (sqlite.org/fileformat.html, section 1.3).
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_SIZE: Final = 100
_WAL_FORMAT: Final = (2, 2)
#: The tables without which a file is not a dtms database.
DTMS_TABLES: Final = frozenset({"trades", "lease"})
#: Statements `Store.query` may contain: reading tables and calling functions, nothing else (the SQLite
#: authorizer's action codes; everything else, PRAGMA included, is denied).
_QUERY_ACTIONS: Final = frozenset(
    {apsw.SQLITE_SELECT, apsw.SQLITE_READ, apsw.SQLITE_FUNCTION, apsw.SQLITE_RECURSIVE}
)
#: What a bad statement given to `Store.query` raises (turned into InvalidArgumentError).
_QUERY_ERRORS: Final = (
    apsw.AuthError, apsw.SQLError, apsw.BindingsError, apsw.RangeError, apsw.MismatchError,
)  # fmt: skip
#: Pragmas that only report, whatever their argument; `Store.query` allows them (e.g. table_info(trades)).
_QUERY_PRAGMAS: Final = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list",
     "user_version", "schema_version", "data_version", "page_count", "page_size", "freelist_count",
     "journal_mode", "quick_check", "integrity_check", "foreign_key_check", "database_list",
     "compile_options", "function_list", "pragma_list", "collation_list", "module_list"}
)  # fmt: skip
#: Of those, the ones that set something when given a value (PRAGMA user_version = 5): only without one.
_QUERY_PRAGMAS_NO_VALUE: Final = frozenset({"user_version", "schema_version", "page_size", "journal_mode"})

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


def _int(value: object) -> int:
    """An INTEGER column or PRAGMA value as read: apsw types every cell as any SQLite value, NULL included."""
    if not isinstance(value, int):
        raise StoreError(f"expected an integer from the database, read {value!r}")
    return value


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
    return _dict_rows(conn.execute(sql, params))


def _dict_rows(cursor: apsw.Cursor) -> list[dict[str, Any]]:
    try:
        names = [d[0] for d in cursor.get_description()]
    except apsw.ExecutionCompleteError:  # the statement returned no row at all
        return []
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _query_authorizer(
    action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None
) -> int:
    if action in _QUERY_ACTIONS:
        return apsw.SQLITE_OK
    if action == apsw.SQLITE_PRAGMA and arg1 is not None:
        name = arg1.lower()
        if name in _QUERY_PRAGMAS and (arg2 is None or name not in _QUERY_PRAGMAS_NO_VALUE):
            return apsw.SQLITE_OK
    return apsw.SQLITE_DENY


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _read_header(path: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        return os.read(fd, _HEADER_SIZE)
    finally:
        os.close(fd)


def _check_header(path: Path) -> None:
    """Refuse, before SQLite touches it, a file that cannot be a dtms database: dtms databases are SQLite
    files in WAL mode, so an empty file, another format or a rollback-journal database is someone else's."""
    header = _read_header(path)
    if not header:
        raise NotADtmsDatabaseError(f"{path} is not a dtms database (an empty file); left unchanged")
    if not header.startswith(SQLITE_MAGIC) or len(header) < _HEADER_SIZE:
        raise NotADtmsDatabaseError(f"{path} is not a dtms database (not an SQLite file); left unchanged")
    if (header[18], header[19]) != _WAL_FORMAT:
        raise NotADtmsDatabaseError(
            f"{path} is not a dtms database (an SQLite database not in WAL mode: another application's?); "
            "left unchanged"
        )


def _on_read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # no statvfs on Windows
        return False


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
        readonly: bool = False,
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
        self.readonly = bool(readonly)
        self._busy_timeout_s = busy_timeout_s
        # The identity (st_dev, st_ino) of the -wal and -shm files this connection uses, by path; None
        # while a file was not there to see. `_stale`: they changed, reopen before the next statement.
        self._files: dict[str, tuple[int, int] | None] = {}
        self._stale = False
        #: How many times this Store found its files changed; an elector that took its lease before a change
        #: must not lead on after it (the rows it led by may be gone, its epoch number reissued).
        self.files_generation = 0
        #: When set (by the Elector of this Store), fenced writes also require the lease's holder token, so a
        #: reissued epoch number (rows lost with a deleted WAL) never fences another holder's lease open.
        self.fence_token: str | None = None
        self._immutable = False
        try:
            self.path = Path(MEMORY) if self.in_memory else Path(raw).expanduser().absolute()
            if self.in_memory:
                pass
            elif not self.path.exists():
                if not create or self.readonly:
                    raise StoreNotFoundError(f"no dtms database at {self.path}")
                self._create_file()
            if self.readonly and not self.in_memory:
                _check_header(self.path)
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
        self._conn = self._connect()
        _LIVE_STORES.add(self)

    def _connect(self) -> apsw.Connection:
        """A configured connection: migrated (or, read-only, validated), its -wal/-shm identity remembered."""
        try:
            conn = self._open_connection()
        except (apsw.Error, UnicodeError) as exc:
            if isinstance(exc, apsw.Error):
                raise _translate(exc, self.path) from exc
            raise StoreError(f"{str(self.path)!r} cannot be opened as a dtms database: {exc}") from exc
        self._conn = conn
        try:
            self._configure(self._busy_timeout_s)
            if self.readonly:
                self._validate()
            else:
                self._migrate()
            self._remember_files()
        except BaseException as exc:
            conn.close()
            if isinstance(exc, apsw.Error):
                raise _translate(exc, self.path) from exc
            raise
        return conn

    def _open_connection(self) -> apsw.Connection:
        if not self.readonly or self.in_memory:
            return apsw.Connection(str(self.path))
        flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        if not os.path.exists(f"{self.path}-wal"):
            # Check what the file is before a WAL reader creates -wal and -shm beside it: immutable reads only
            # the file (nobody has it open: there is no -wal), so a foreign database is refused untouched.
            probe = apsw.Connection(self.path.as_uri() + "?immutable=1", flags=flags)
            try:
                self._validate(probe)
            finally:
                probe.close()
        conn = apsw.Connection(self.path.as_uri(), flags=flags)
        try:
            conn.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()  # SQLite opens -wal/-shm lazily
            return conn
        except apsw.CantOpenError:
            conn.close()
            # A WAL reader needs a -shm it can create or map; a read-only file system has none. With no -wal
            # nothing is pending, and nobody on this mount can write, so the file alone is the database.
            if not _on_read_only_mount(self.path) or os.path.exists(f"{self.path}-wal"):
                raise
            self._immutable = True
            return apsw.Connection(self.path.as_uri() + "?immutable=1", flags=flags)

    def _validate(self, conn: apsw.Connection | None = None) -> None:
        """Read-only opens: refuse a file that is not a dtms database of this schema version."""
        conn = conn or self._conn
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        found = conn.execute("PRAGMA user_version").fetchall()[0][0]
        version = found if isinstance(found, int) else 0
        if not tables >= DTMS_TABLES or version == 0:
            raise NotADtmsDatabaseError(
                f"{self.path} is not a dtms database (an SQLite database without dtms's tables: another "
                "application's?); left unchanged"
            )
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} has schema version {version}, newer than this dtms understands "
                f"({SCHEMA_VERSION}): upgrade dtms"
            )
        if version < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} has schema version {version}, older than this dtms ({SCHEMA_VERSION}); a "
                "read-only open does not upgrade it: open it once with a writing dtms (e.g. a node) first"
            )

    # -- setup ------------------------------------------------------------------------------------------

    def _create_file(self) -> None:
        # Every directory we create is owner-only: Path.mkdir(parents=True) gives the intermediate ones the
        # umask's mode, which a permissive umask leaves world-writable.
        missing = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
        for directory in reversed(missing):
            directory.mkdir(mode=DIR_MODE, exist_ok=True)
        # Create it owner-only before SQLite does: SQLite would use the umask, and gives the -wal and -shm
        # files the mode of the database file. O_EXCL: a racing creator is fine, we just use its file.
        flags = (
            os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        )
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
        if not self.readonly:  # a read-only open never changes the file, its journal mode included
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
            version = _int(self._conn.execute("PRAGMA user_version").fetchall()[0][0])
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

    # -- the files under the connection (issue 11, point 3) ---------------------------------------------

    def _file_paths(self) -> tuple[str, str]:
        # SQLite names them after the database's full (symlink-resolved) name: ask it rather than guess.
        wal = self._conn.db_filename("main", 2) or f"{self.path}-wal"
        return wal, self._conn.db_filename("main") + "-shm"

    def _remember_files(self) -> None:
        self._files = {}
        self._stale = False
        if self.in_memory or self._immutable:
            return
        for path in self._file_paths():
            self._files[path] = _identity(path)

    def _files_changed(self) -> str | None:
        """What changed about the -wal/-shm files since the connection opened them, or None."""
        for path, known in self._files.items():
            now = _identity(path)
            if known is None:  # not there when we looked (a read-only open before any writer): adopt it
                self._files[path] = now
            elif now is None:
                return f"{path} was deleted"
            elif now != known:
                return f"{path} was replaced (inode {known[1]} is now {now[1]})"
        return None

    def _verify_files(self, when: str) -> None:
        change = self._files_changed()
        if change is None:
            return
        self._stale = True
        self.files_generation += 1
        raise StoreFilesChangedError(
            f"{self.path}: the database's files changed under this process ({change}; {when}). Another "
            "SQLite library closing the database in this process, or someone deleting -wal/-shm, does this. "
            "The connection is reopened on the next call; a leader must step down."
        )

    def files_unchanged(self) -> bool:
        """False once the `-wal`/`-shm` at the path are not the files this connection uses (cheap: two stats,
        no lock, never raises): `Elector.is_leader` asks it, so a leader whose writes would be lost stops
        believing it leads at once, not at its next write."""
        if self._stale:
            return False
        return all(known is None or _identity(path) == known for path, known in list(self._files.items()))

    def check_files(self) -> None:
        """Raise if the `-wal` or `-shm` file at the database's path is not the one this connection uses.

        Two stats; meant for every lease renewal (the Store also checks before and after every COMMIT).
        After it raised, the next call of this Store reopens its connection.

        Raises:
            StoreFilesChangedError: a file was deleted or replaced; writes of this connection would be lost.
        """
        self._check()
        with self._lock:
            try:
                if not self._stale:
                    self._verify_files("seen by check_files")
                    return
                error = StoreFilesChangedError(
                    f"{self.path}: the database's files changed under this process (seen by an earlier "
                    "call); the connection is reopened"
                )
            except StoreFilesChangedError as exc:
                error = exc
            # Reopen now, so that the caller's next write (a lease renewal) uses the files at the path.
            try:
                self._fresh()
            except StoreError as exc:
                raise error from exc
            raise error

    def _fresh(self) -> apsw.Connection:
        """The connection, reopened first if the files changed under it (call with `_lock` held)."""
        if not self._stale:
            return self._conn
        old = self._conn
        try:
            if not old.getautocommit():  # the transaction that saw the change is still unwinding
                return old
            # Never checkpoint or delete on this close: the -wal/-shm at the path now belong to others, and a
            # checkpoint from the orphaned WAL would write stale pages into the shared database file.
            old.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
            old.close()
        except apsw.ConnectionClosedError:  # an earlier reopen failed half-way: just try again
            pass
        return self._connect()

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
            with contextlib.suppress(apsw.ConnectionClosedError):
                if self._stale or self._files_changed() is not None:
                    # As in `_fresh`: closing must not checkpoint or delete files that are others' now.
                    self._conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
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
            conn = self._fresh()
            outermost = conn.getautocommit()
            try:
                if outermost:
                    self._verify_files("before BEGIN; nothing was written")
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    with conn:  # a savepoint: an error rolls back this block, nested blocks likewise
                        yield conn
                    if outermost:
                        # Frames committed to a WAL that is no longer at the path are seen by this connection
                        # only: check before COMMIT (then nothing is written) and again after it (the files
                        # may change in between), so a write that returns is in the files everyone opens.
                        self._verify_files("before COMMIT; the write was rolled back")
                        conn.execute("COMMIT")
                        self._verify_files("just after COMMIT; the write may be lost: check and redo it")
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
            self._fresh().execute("PRAGMA synchronous=NORMAL")
            try:
                yield
            finally:
                self._conn.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def _read(self) -> Iterator[apsw.Connection]:
        """Statements that only read: one process-wide lock, no transaction left open afterwards."""
        self._check()
        with self._lock:
            conn = self._fresh()
            if conn.getautocommit():  # inside a write transaction the COMMIT checks
                self._verify_files("before a read; nothing was read")
            try:
                yield conn
            except apsw.Error as exc:
                raise _translate(exc, self.path) from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._read() as conn:
            return query(conn, sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Run one read-only SQL statement and return its rows as dicts (`pandas.DataFrame(rows)` takes them).

        The supported way to query the database from your own code: never open it with another SQLite
        library (stdlib sqlite3, pandas with sqlite3, SQLAlchemy) in a process that has dtms open, see
        docs/operations.md. Only SELECT (and WITH) statements and reporting pragmas such as
        `table_info(trades)` are allowed; anything that writes, attaches or changes a setting is refused
        before it runs.

        Raises:
            InvalidArgumentError: the statement would write, is not one statement, or is not valid SQL.
            StoreBusyError: the database stayed locked past the busy timeout.
        """
        if not isinstance(sql, str):
            raise InvalidArgumentError(f"sql must be a str, got {type(sql).__name__}")
        statements = 0

        def one_read(cursor: apsw.Cursor, _sql: str, _bindings: Any) -> bool:
            nonlocal statements
            statements += 1
            return statements == 1 and cursor.is_readonly

        with self._read() as conn:
            previous = conn.authorizer
            conn.authorizer = _query_authorizer
            try:
                cursor = conn.cursor()
                cursor.exec_trace = one_read
                # can_cache=False: a cached statement prepared before the authorizer was set would skip it.
                return _dict_rows(cursor.execute(sql, params, can_cache=False))
            except apsw.ExecTraceAbort:
                raise InvalidArgumentError(
                    f"Store.query runs one read-only statement; refused: {sql[:200]!r}"
                ) from None
            except _QUERY_ERRORS as e:
                if isinstance(e, apsw.AuthError) or "not authorized" in str(e):
                    raise InvalidArgumentError(f"Store.query runs reads only; refused: {e}") from None
                raise InvalidArgumentError(f"Store.query: {e}") from None
            finally:
                conn.authorizer = previous

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
            rows = conn.execute("SELECT epoch, released, token FROM lease WHERE name = ?", (name,)).fetchall()
            current = _int(rows[0][0]) if rows else None
            if current != epoch or rows[0][1]:
                raise LeaseLostError(epoch, current)
            if self.fence_token is not None and rows[0][2] != self.fence_token:
                raise LeaseLostError(epoch, current)  # the same number, another holder's lease
            yield

    # -- maintenance ------------------------------------------------------------------------------------

    def data_version(self) -> int:
        """A number that changes whenever another connection commits: a cheap 'did anything change?'."""
        with self._read() as conn:
            return _int(conn.execute("PRAGMA data_version").fetchall()[0][0])

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
            return _int(conn.execute("PRAGMA user_version").fetchall()[0][0])


__all__ = ["DEFAULT_BUSY_TIMEOUT_S", "MEMORY", "StoreCore", "dumps", "from_iso", "iso", "query"]
