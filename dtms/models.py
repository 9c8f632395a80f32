"""Pydantic models and enums shared by the store, the engine and the CLI; no I/O."""

from __future__ import annotations

import math
import numbers
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

#: Largest ticket, identifier or magic number SQLite can store as an INTEGER.
MAX_INT64: Final = 2**63 - 1
#: MetaTrader accepts comments of 27-31 characters depending on the build (spec/mt5.md §5.6).
MAX_COMMENT: Final = 31
#: Broker symbols: letters and digits plus the suffix punctuation brokers use (EURUSD.pro, XAUUSDc, BTCUSD#).
SYMBOL_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._#+\-]{0,31}$")
#: Manager names: the owner column's vocabulary (`dtms`, `none`, `universal`, ...).
OWNER_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_\-]{0,31}$")


class Direction(StrEnum):
    """The side of a position; input is case-insensitive (the original read "buy" as SELL, B-SIG-7)."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for BUY, -1 for SELL."""
        return 1 if self is Direction.BUY else -1


class TradeState(StrEnum):
    """States of the defensive state machine; CLOSED is terminal."""

    HEALTHY = "HEALTHY"
    WARNING_L1 = "WARNING_L1"
    WARNING_L2 = "WARNING_L2"
    HEDGED = "HEDGED"
    RECOVERING = "RECOVERING"
    CLOSED = "CLOSED"


class LeaseState(StrEnum):
    """What the lease row says, seen from now."""

    HELD = "held"
    EXPIRED = "expired"
    RELEASED = "released"
    NONE = "none"


class ActionStatus(StrEnum):
    """Journal statuses: INTENT, then SKIPPED or SENT; SENT ends DONE, FAILED or UNKNOWN."""

    INTENT = "INTENT"
    SENT = "SENT"
    DONE = "DONE"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    SKIPPED = "SKIPPED"


PositiveId = Annotated[StrictInt, Field(gt=0, le=MAX_INT64)]
#: NOTE: the largest price or volume a registration may carry. No instrument a MetaTrader 5 broker lists is
#: quoted near 1e9 (BTCUSD ~1e5, USDIDR ~2e4, indices ~1e5) and no symbol's SYMBOL_VOLUME_MAX comes near 1e6
#: lots (typically 100-10 000); a value beyond these is a caller bug, and 1e308 overflows every R and P/L
#: computation to inf (issue 11, point 5).
MAX_PRICE: Final = 1e9
MAX_VOLUME: Final = 1e6
Price = Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)]
Volume = Annotated[float, Field(gt=0, le=MAX_VOLUME, allow_inf_nan=False)]


def _finite_number(value: Any) -> Any:
    # bool is an int subclass; a True price is a caller bug, not 1.0.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a bool")
    # pydantic's lax float would parse "1.1": a price read from text is a caller bug too. numbers.Real
    # keeps numpy's float32/int64 (MetaTrader5 rate arrays) acceptable.
    if value is not None and not isinstance(value, numbers.Real):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    if isinstance(value, numbers.Real) and not math.isfinite(float(value)):
        raise ValueError("must be finite")
    return value


class TradeRequest(BaseModel):
    """What a caller gives to register a trade: validated before anything is written."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket: PositiveId
    symbol: str
    direction: Direction
    entry_price: Price
    volume: Volume
    sl: Price | None = None
    tp: Price | None = None
    owner: str = "dtms"
    magic: Annotated[StrictInt, Field(ge=0, le=MAX_INT64)] | None = None
    comment: Annotated[str, Field(max_length=MAX_COMMENT)] | None = None
    identifier: PositiveId | None = None

    @field_validator("direction", mode="before")
    @classmethod
    def _direction_upper(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().upper()
        return value

    @field_validator("symbol")
    @classmethod
    def _symbol_shape(cls, value: str) -> str:
        if not SYMBOL_PATTERN.fullmatch(value):
            raise ValueError(
                "must be 1-32 characters: letters, digits and . _ # + - (e.g. EURUSD, XAUUSD.pro)"
            )
        return value

    @field_validator("owner")
    @classmethod
    def _owner_shape(cls, value: str) -> str:
        if not OWNER_PATTERN.fullmatch(value):
            raise ValueError("must be a lower-case manager name such as 'dtms', 'none' or 'universal'")
        return value

    @field_validator("comment")
    @classmethod
    def _comment_printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must contain printable characters only")
        return value

    @field_validator("entry_price", "volume", "sl", "tp", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return _finite_number(value)

    @model_validator(mode="after")
    def _levels_on_the_right_side(self) -> TradeRequest:
        d = self.direction.sign
        if self.sl is not None and d * (self.entry_price - self.sl) <= 0:
            side = "below" if d > 0 else "above"
            raise ValueError(f"sl must be {side} entry_price for a {self.direction} trade")
        if self.tp is not None and d * (self.tp - self.entry_price) <= 0:
            side = "above" if d > 0 else "below"
            raise ValueError(f"tp must be {side} entry_price for a {self.direction} trade")
        return self

    @property
    def position_id(self) -> int:
        """The broker position identifier: given, or the ticket (equal at open, spec/mt5.md §5.1)."""
        return self.identifier if self.identifier is not None else self.ticket


class Trade(BaseModel):
    """One registered trade as stored: the main position plus what the engine knows about it."""

    model_config = ConfigDict(frozen=True)

    identifier: int
    ticket: int
    symbol: str
    direction: Direction
    entry_price: float
    initial_volume: float
    volume: float
    closed_volume: float
    initial_sl: float | None
    sl: float | None
    tp: float | None
    r: float | None
    r_source: str | None
    owner: str
    magic: int | None
    comment: str | None
    state: TradeState
    state_at: AwareDatetime
    score: float | None
    armed: bool
    activated_at: AwareDatetime | None
    activation_reason: str | None
    registered_at: AwareDatetime
    updated_at: AwareDatetime
    closed_at: AwareDatetime | None
    close_reason: str | None
    engine: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        """True until the trade is CLOSED."""
        return self.state is not TradeState.CLOSED


class Transition(BaseModel):
    """One row of the transition log."""

    model_config = ConfigDict(frozen=True)

    transition_id: int
    identifier: int
    at: AwareDatetime
    from_state: TradeState
    to_state: TradeState
    reason: str
    score: float | None
    epoch: int | None
    status: Literal["pending", "applied", "abandoned"]
    rule: str | None = None  # the state machine's rule (T0 … T10, external_close); None if the row has none


class Action(BaseModel):
    """One row of the action journal."""

    model_config = ConfigDict(frozen=True)

    action_id: int
    idempotency_key: str
    transition_id: int | None
    identifier: int
    leg: str
    action_type: str
    params: dict[str, Any]
    status: ActionStatus
    attempts: int
    epoch: int
    request: dict[str, Any] | None
    result: dict[str, Any] | None
    retcode: int | None
    error: str | None
    created_at: AwareDatetime
    sent_at: AwareDatetime | None
    completed_at: AwareDatetime | None


class Holder(BaseModel):
    """Who holds (or last held) the lease."""

    model_config = ConfigDict(frozen=True)

    name: str
    host: str
    pid: int
    proc_start: int | None
    boot_id: str | None
    token: str


class LeaseInfo(BaseModel):
    """The lease row as the CLI and followers see it, with ages computed at `observed_at`."""

    model_config = ConfigDict(frozen=True)

    name: str
    epoch: int
    state: LeaseState
    holder: Holder | None
    lock_held: bool
    acquired_at: AwareDatetime | None
    renewed_at: AwareDatetime | None
    expires_at: AwareDatetime | None
    renewed_ago_s: float | None
    expires_in_s: float | None
    loop_beat_age_s: float | None
    transitions: int
    lease_ttl_s: float
    observed_at: AwareDatetime


class OutboxStatus(StrEnum):
    """Where an outbox event is: waiting (or retrying), delivered to every hook, or given up (dead letter)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class OutboxEntry(BaseModel):
    """One event of the outbox with its delivery state (spec/dtms-behaviour.md section 12)."""

    model_config = ConfigDict(frozen=True)

    #: Stable and unique across databases (`<database id>-<seq>`): what receivers de-duplicate on.
    event_id: str
    seq: int
    kind: str
    at: AwareDatetime
    epoch: int
    fields: dict[str, Any]
    status: OutboxStatus
    attempts: int
    next_at: AwareDatetime | None
    #: The names of the hooks that have it; a retry calls only the others.
    delivered: tuple[str, ...]
    error: str | None
    created_at: AwareDatetime
    finished_at: AwareDatetime | None


class OutboxSummary(BaseModel):
    """How the outbox stands: what `dtms status` shows."""

    model_config = ConfigDict(frozen=True)

    pending: int
    dead: int
    delivered: int
    oldest_pending_at: AwareDatetime | None
    last_error: str | None


class Health(BaseModel):
    """A typed health verdict (the original returned a tuple that always read as healthy, B-API-1)."""

    model_config = ConfigDict(frozen=True)

    status: Literal["healthy", "degraded", "unhealthy"]
    reasons: tuple[str, ...]
    checks: dict[str, Any]
    checked_at: datetime

    @property
    def ok(self) -> bool:
        """True only when healthy."""
        return self.status == "healthy"


__all__ = [
    "Action",
    "ActionStatus",
    "Direction",
    "Health",
    "Holder",
    "LeaseInfo",
    "LeaseState",
    "OutboxEntry",
    "OutboxStatus",
    "OutboxSummary",
    "Trade",
    "TradeRequest",
    "TradeState",
    "Transition",
]
