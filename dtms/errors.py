"""The one exception tree of dtms.

```
DtmsError(Exception)                                  `except dtms.DtmsError` catches everything of ours
├── ConfigError(DtmsError, ValueError)                invalid settings
├── InvalidArgumentError(DtmsError, ValueError)       a bad argument that no pydantic model checks
├── ExtraNotInstalledError(DtmsError, ImportError)    an optional extra (e.g. dtms[plot]) is not installed
├── StoreError(DtmsError)
│   ├── StoreBusyError(StoreError, TimeoutError)      busy timeout elapsed (from apsw.BusyError)
│   ├── SchemaVersionError(StoreError)                database newer than this code
│   ├── StoreNotFoundError(StoreError, FileNotFoundError)  read-only open of a missing database
│   ├── UsedAfterForkError(StoreError, RuntimeError)  a Store or Node touched in a forked child
│   ├── StoreFilesChangedError(StoreError)            the -wal/-shm files at the path are not the connection's
│   └── NotADtmsDatabaseError(StoreError)             a read-only open of a file that is not a dtms database
├── LeaseError(DtmsError)
│   ├── NotLeaderError(LeaseError)                    leader-only call on a follower
│   └── LeaseLostError(LeaseError)                    the epoch moved on: stop writing, send nothing
├── TradeError(DtmsError)
│   ├── TradeNotFoundError(TradeError, LookupError)
│   ├── TradeConflictError(TradeError, ValueError)    same ticket registered with different data
│   └── InvalidTransitionError(TradeError, ValueError)
├── BrokerError(DtmsError)
│   └── BrokerUnavailableError(BrokerError, ConnectionError)   terminal missing, login failed, algo off
├── DataError(DtmsError, ValueError)                  unreadable or inconsistent bars file
└── LockFileError(DtmsError, OSError)                 the election lock file cannot be used (e.g. a symlink)
```

Expected broker results are values (`dtms.broker.Outcome`), not exceptions. pydantic's `ValidationError`
passes through unchanged for invalid input.
"""

from __future__ import annotations


class DtmsError(Exception):
    """Root of every error dtms raises on purpose."""


class ConfigError(DtmsError, ValueError):
    """Invalid settings."""


class InvalidArgumentError(DtmsError, ValueError):
    """A bad argument to a call whose input is not a pydantic model (a ticket, a limit, a reason)."""


class ExtraNotInstalledError(DtmsError, ImportError):
    """An optional extra (e.g. `dtms[plot]`) is needed for this call and is not installed."""


class StoreError(DtmsError):
    """The trade database could not do what was asked."""


class StoreBusyError(StoreError, TimeoutError):
    """Another process held the database write lock for longer than the busy timeout."""


class SchemaVersionError(StoreError):
    """The database was written by a newer dtms than this one."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A read-only open named a database that does not exist."""


class UsedAfterForkError(StoreError, RuntimeError):
    """A Store or Node created before `fork()` was used in the child."""


class LeaseError(DtmsError):
    """Leadership problems."""


class NotLeaderError(LeaseError):
    """A leader-only operation was called on a node that does not lead."""


class LeaseLostError(LeaseError):
    """The lease epoch moved on: the caller is no longer leader and must stop writing and sending."""

    def __init__(self, epoch: int | None, current: int | None = None) -> None:
        self.epoch = epoch
        self.current = current
        super().__init__(f"lease epoch {epoch} is no longer current (current: {current})")

    def __reduce__(self) -> tuple[type[LeaseLostError], tuple[int | None, int | None]]:
        return (type(self), (self.epoch, self.current))


class TradeError(DtmsError):
    """Problems with one trade."""


class TradeNotFoundError(TradeError, LookupError):
    """No trade with that ticket is registered."""


class TradeConflictError(TradeError, ValueError):
    """The ticket is registered already with different data."""


class InvalidTransitionError(TradeError, ValueError):
    """A state change the state machine does not allow."""


class BrokerError(DtmsError):
    """The broker (MetaTrader 5 terminal) could not be used."""


class BrokerUnavailableError(BrokerError, ConnectionError):
    """Terminal missing, login failed, or algorithmic trading disabled."""


class DataError(DtmsError, ValueError):
    """An unreadable or inconsistent bars file."""


class StoreFilesChangedError(StoreError):
    """The database's `-wal` or `-shm` file at the path is no longer the one this connection uses.

    Someone deleted or replaced them while this process had the database open (another SQLite library in
    the same process closing its connection does exactly that). The write in progress was rolled back, or,
    when the change is seen just after COMMIT, may be lost; the Store reopens its connection on the next
    call. A leader must step down (issue 11, point 3).
    """


class NotADtmsDatabaseError(StoreError):
    """A read-only open found a file that is not a dtms database (another application's, or empty)."""


class NotifyError(DtmsError):
    """A notification receiver did not accept an event (HTTP error, refused connection, timeout)."""


class LockFileError(DtmsError, OSError):
    """The election lock file (`<db>.lock`) cannot be opened safely, e.g. because it is a symlink."""


__all__ = [
    "BrokerError",
    "BrokerUnavailableError",
    "ConfigError",
    "DataError",
    "DtmsError",
    "ExtraNotInstalledError",
    "InvalidArgumentError",
    "InvalidTransitionError",
    "LeaseError",
    "LeaseLostError",
    "LockFileError",
    "NotADtmsDatabaseError",
    "NotLeaderError",
    "NotifyError",
    "SchemaVersionError",
    "StoreBusyError",
    "StoreError",
    "StoreFilesChangedError",
    "StoreNotFoundError",
    "TradeConflictError",
    "TradeError",
    "TradeNotFoundError",
    "UsedAfterForkError",
]
