"""dtms: a Defensive Trade Management System for MetaTrader 5 bots, embedded in every bot process."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from dtms.elector import LeaderSeen
from dtms.errors import (
    BrokerError,
    BrokerUnavailableError,
    ConfigError,
    DataError,
    DtmsError,
    ExtraNotInstalledError,
    InvalidArgumentError,
    InvalidTransitionError,
    LeaseError,
    LeaseLostError,
    LockFileError,
    NotADtmsDatabaseError,
    NotLeaderError,
    SchemaVersionError,
    StoreBusyError,
    StoreError,
    StoreFilesChangedError,
    StoreNotFoundError,
    TradeConflictError,
    TradeError,
    TradeNotFoundError,
    UsedAfterForkError,
)
from dtms.models import (
    Action,
    ActionStatus,
    Direction,
    Health,
    LeaseInfo,
    LeaseState,
    Trade,
    TradeState,
    Transition,
)
from dtms.node import Node
from dtms.paths import default_db_path
from dtms.store import Store, open

try:
    __version__ = version("dtms")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Action",
    "ActionStatus",
    "BrokerError",
    "BrokerUnavailableError",
    "ConfigError",
    "DataError",
    "Direction",
    "DtmsError",
    "ExtraNotInstalledError",
    "Health",
    "InvalidArgumentError",
    "InvalidTransitionError",
    "LeaderSeen",
    "LeaseError",
    "LeaseInfo",
    "LeaseLostError",
    "LeaseState",
    "LockFileError",
    "Node",
    "NotADtmsDatabaseError",
    "NotLeaderError",
    "SchemaVersionError",
    "Store",
    "StoreBusyError",
    "StoreError",
    "StoreFilesChangedError",
    "StoreNotFoundError",
    "Trade",
    "TradeConflictError",
    "TradeError",
    "TradeNotFoundError",
    "TradeState",
    "Transition",
    "UsedAfterForkError",
    "__version__",
    "default_db_path",
    "open",
]
