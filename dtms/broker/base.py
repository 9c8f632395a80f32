"""The Broker contract the engine uses and its values: Position, Tick, SymbolSpec, Account, Deal, Outcome."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Direction = Literal["BUY", "SELL"]
COMMENT_MAX: Final = (
    26  # stricter than every limit reported (27-31) so no terminal build refuses it (spec §5.6)
)
_COMMENT_BAD: Final = re.compile(r"[^A-Za-z0-9 _-]")


class OutcomeKind(StrEnum):
    """What the caller does next."""

    DONE = "done"  # applied (confirm by reading state where Outcome.handling is CONFIRM)
    RETRY = "retry"  # re-read the quote and resend now, a bounded number of times
    DEFER = "defer"  # transient or impossible right now: retry the same intent later, never in a loop
    REJECTED = "rejected"  # permanent for this request: record retcode and text, fall back
    UNKNOWN = "unknown"  # may or may not have happened: reconcile before any retry


class Handling(StrEnum):
    """The finer class of spec/mt5.md §3, kept on the Outcome for logs and fallbacks."""

    OK = "ok"
    CONFIRM = "confirm"  # OK*: done, confirm by reading state
    FRESH = "fresh"
    BACKOFF = "backoff"
    DEFER = "defer"
    UNKNOWN = "unknown"
    FIX = "fix"
    REJECT = "reject"
    HALT = "halt"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one broker operation; expected failures are values, not exceptions."""

    kind: OutcomeKind
    handling: Handling
    retcode: int | None = None  # TRADE_RETCODE_*, or None when order_send returned None / nothing was sent
    text: str = ""
    sent: bool = False  # False: refused before sending (pre-check), the terminal saw nothing
    identifier: int | None = None  # the position concerned; for `open`, the new (or netted) position
    order: int = 0
    deal: int = 0
    volume: float = 0.0
    price: float = 0.0
    error: tuple[int, str] | None = None  # last_error() when order_send returned None
    request: dict[str, Any] | None = field(default=None, compare=False)  # exactly what was (or would be) sent

    @property
    def is_done(self) -> bool:
        return self.kind is OutcomeKind.DONE


@dataclass(frozen=True, slots=True)
class Position:
    """An open position, keyed by `identifier`; `ticket` may change during its life (spec §5.1)."""

    identifier: int
    ticket: int
    symbol: str
    direction: Direction
    volume: float
    price_open: float
    sl: float | None
    tp: float | None
    price_current: float  # bid for buys, ask for sells
    profit: float
    swap: float
    magic: int
    comment: str
    opened_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Tick:
    symbol: str
    bid: float
    ask: float
    last: float
    at: datetime

    @property
    def spread(self) -> float:
        return self.ask - self.bid


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """Symbol constraints; distances (`stops_level`, `freeze_level`, `spread`) are in points."""

    name: str
    point: float
    digits: int
    tick_size: float
    tick_value: float
    tick_value_profit: float
    tick_value_loss: float
    contract_size: float
    volume_min: float
    volume_max: float
    volume_step: float
    volume_limit: float
    stops_level: int
    freeze_level: int
    filling_mode: int  # bitmask: 1 FOK, 2 IOC (spec §2)
    trade_mode: int  # SYMBOL_TRADE_MODE_*
    execution_mode: int  # SYMBOL_TRADE_EXECUTION_*
    spread: int
    currency_profit: str
    currency_margin: str

    def round_price(self, price: float) -> float:
        tick = self.tick_size or self.point
        return round(round(price / tick) * tick, self.digits)

    def floor_volume(self, volume: float) -> float:
        """Down to a multiple of volume_step (tolerance 1e-7 steps, spec §5.6), capped at volume_max."""
        step = self.volume_step
        decimals = max(0, -int(Decimal(str(step)).as_tuple().exponent))
        floored = round(math.floor(volume / step + 1e-7) * step, decimals)
        return min(floored, self.volume_max)

    def is_valid_volume(self, volume: float) -> bool:
        steps = volume / self.volume_step
        return self.volume_min - 1e-9 <= volume <= self.volume_max + 1e-9 and abs(steps - round(steps)) < 1e-7


@dataclass(frozen=True, slots=True)
class Account:
    login: int
    server: str
    currency: str
    balance: float
    equity: float
    profit: float
    margin: float
    margin_free: float
    margin_level: float
    leverage: int
    margin_mode: int  # ACCOUNT_MARGIN_MODE_*
    trade_allowed: bool
    fifo_close: bool

    @property
    def is_hedging(self) -> bool:
        return self.margin_mode == 2


@dataclass(frozen=True, slots=True)
class Deal:
    """One trade deal of a position (balance and other non-trade deals are not returned)."""

    ticket: int
    order: int
    identifier: int  # DEAL_POSITION_ID
    symbol: str
    direction: Direction
    entry: Literal["in", "out", "inout", "out_by"]
    reason: str  # client, mobile, web, expert, sl, tp, so, rollover, vmargin, split
    volume: float
    price: float
    profit: float
    commission: float
    swap: float
    fee: float
    magic: int
    comment: str
    executed_at: datetime


def clean_comment(comment: str) -> str:
    """A comment every terminal accepts: `[A-Za-z0-9 _-]` only, at most 26 characters."""
    return _COMMENT_BAD.sub("", comment)[:COMMENT_MAX]


_BASE36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_DATABASE_TAG: Final = re.compile(r"[0-9a-z]{4}")
_TAG: Final = re.compile(r"dtms-([0-9a-z]{4})([chr])([0-9a-z]*)-([0-9a-z]+)")
_LEGACY_TAG: Final = re.compile(r"dtms-([chr])([0-9]*)a([0-9]+)")
TagKind = Literal["c", "h", "r"]


def _base36(value: int) -> str:
    digits = ""
    while True:
        value, rest = divmod(value, 36)
        digits = _BASE36[rest] + digits
        if not value:
            return digits


@dataclass(frozen=True, slots=True)
class ActionTag:
    """What a dtms order comment says.

    Which database sent it (None in tags older than database ids), the kind (`c` close, `h` hedge, `r`
    re-add), the trade's identifier when it fitted, and the journal's action id.
    """

    database: str | None
    kind: TagKind
    identifier: int | None
    action_id: int


def action_tag(
    kind: TagKind, action_id: int, identifier: int | None = None, database: str | None = None
) -> str:
    """The comment dtms puts on a request: `c` closes, `h` hedges, `r` re-adds.

    The journal's action id in it finds the request again in the deal history after a crash; the trade's
    identifier re-links a hedge or re-add leg. With `database` (the store's `database_tag`, 4 characters of
    `[0-9a-z]`) the tag also says which database sent it — `dtms-<database><kind><identifier>-<action id>`,
    numbers in base 36 — so a leader can spot another database's requests on its account (issue 11, point 4).
    That always fits 26 characters: a 17-digit identifier takes 11, leaving 4 (1.6 million) for the action id;
    an action id that does not fit beside the identifier drops the identifier, which its journal row keeps.
    Without `database`, the older `dtms-<kind><identifier>a<action id>` (which a long identifier can cut).
    """
    if database is None:
        return clean_comment(f"dtms-{kind}{'' if identifier is None else identifier}a{action_id}")
    if not _DATABASE_TAG.fullmatch(database):
        raise ValueError(f"database must be 4 characters of [0-9a-z], got {database!r}")
    if kind not in ("c", "h", "r") or action_id < 1 or (identifier is not None and identifier < 1):
        raise ValueError(f"bad action tag parts: {kind!r}, {action_id!r}, {identifier!r}")
    act = _base36(action_id)
    tag = f"dtms-{database}{kind}{'' if identifier is None else _base36(identifier)}-{act}"
    if len(tag) > COMMENT_MAX:
        tag = f"dtms-{database}{kind}-{act}"
    if len(tag) > COMMENT_MAX:  # an action id above 36**15: never, but never a cut tag either
        raise ValueError(f"action id {action_id} does not fit an order comment")
    return tag


def parse_action_tag(comment: str) -> ActionTag | None:
    """The parts of a dtms order comment (either form `action_tag` writes), or None for any other comment.

    Case-insensitive, in case a broker changes the case of comments.
    """
    text = comment.strip().lower()
    found = _TAG.fullmatch(text)
    if found is not None:
        database, kind, ident, act = found.groups()
        return ActionTag(database, kind, int(ident, 36) if ident else None, int(act, 36))  # type: ignore[arg-type]
    legacy = _LEGACY_TAG.fullmatch(text)
    if legacy is not None:
        kind, ident, act = legacy.groups()
        return ActionTag(None, kind, int(ident) if ident else None, int(act))  # type: ignore[arg-type]
    return None


class Broker(Protocol):
    """What the engine needs from a broker. Reads raise `BrokerError` when the answer is unknown; they never
    turn a failure into "nothing there". Operations return an `Outcome`.

    Positions are keyed by `identifier`; implementations resolve the current ticket before every request.
    Times are timezone-aware UTC.
    """

    def connect(self) -> None:
        """Attach to the terminal; raises BrokerUnavailableError (no terminal, login failed, algo off)."""
        ...

    def disconnect(self) -> None: ...

    def positions(self, symbol: str | None = None) -> list[Position]: ...

    def position(self, identifier: int) -> Position | None:
        """The open position with this identifier, or None if the terminal positively has none."""
        ...

    def tick(self, symbol: str) -> Tick: ...

    def bars(self, symbol: str, timeframe: str, count: int) -> npt.NDArray[np.void]:
        """The last `count` bars, oldest first, MetaTrader's rates dtype with `time` in UTC epoch seconds;
        the last row is the bar still forming (it may be closed when the market is)."""
        ...

    def symbol(self, symbol: str) -> SymbolSpec: ...

    def account(self) -> Account: ...

    def deals(
        self, identifier: int | None = None, *, since: datetime | None = None, magic: int | None = None
    ) -> list[Deal]: ...

    def modify_sl_tp(self, identifier: int, sl: float | None, tp: float | None) -> Outcome:
        """Set both levels; None (or 0) removes a level, so pass the current TP to keep it."""
        ...

    def close(self, identifier: int, volume: float | None = None, *, comment: str = "") -> Outcome:
        """Close the position or `volume` of it (floored to the step); refuses a remainder < volume_min."""
        ...

    def open(
        self,
        symbol: str,
        direction: Direction,
        volume: float,
        *,
        sl: float | None = None,
        tp: float | None = None,
        magic: int | None = None,
        comment: str = "",
    ) -> Outcome:
        """A market position (hedge or re-add); the Outcome carries its identifier when done."""
        ...


__all__ = [
    "COMMENT_MAX",
    "Account",
    "ActionTag",
    "Broker",
    "Deal",
    "Direction",
    "Handling",
    "Outcome",
    "OutcomeKind",
    "Position",
    "SymbolSpec",
    "TagKind",
    "Tick",
    "action_tag",
    "clean_comment",
    "parse_action_tag",
]
