"""Safety rails: ACTIVE / REDUCING / HALTED from loss limits, stop streaks, news, spread and stale data."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np

from dtms.config import Config
from dtms.engine.machine import ActionType
from dtms.errors import DataError


class TradingState(StrEnum):
    """Account or symbol trading state (spec §7.1), ordered from best to worst."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


_ORDER = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}

#: Actions that add or restore exposure; REDUCING blocks them (close_hedge restores exposure, spec §5.4).
RISK_ADDING = frozenset({ActionType.OPEN_HEDGE, ActionType.CLOSE_HEDGE, ActionType.RE_ADD_POSITION})


def worse(*states: TradingState) -> TradingState:
    """The worst of several states: a trade's effective state is the worse of account and symbol."""
    return max(states, key=_ORDER.__getitem__)


def is_allowed(action: ActionType, state: TradingState) -> bool:
    """HALTED sends nothing; REDUCING blocks risk-adding actions; protective ones always pass otherwise."""
    if state is TradingState.HALTED:
        return False
    return state is TradingState.ACTIVE or action not in RISK_ADDING


# --- account rails ------------------------------------------------------------------------------


def day_start(now: datetime) -> datetime:
    """00:00 UTC of `now`'s day: when B0 is taken and the daily rails clear."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def hour_start(now: datetime) -> datetime:
    """The start of `now`'s UTC clock hour: when E_h is taken and the hourly rail clears."""
    return now.replace(minute=0, second=0, microsecond=0)


def daily_loss_tripped(b0: float, equity: float, config: Config) -> bool:
    """B0 - equity ≥ 2 % of B0, where B0 is the balance at 00:00 UTC (spec §7.2)."""
    return b0 > 0 and b0 - equity >= config.rails.daily_loss * b0


def hourly_loss_tripped(equity_hour_start: float, equity: float, b0: float, config: Config) -> bool:
    """E_h - equity ≥ 1 % of B0, with E_h the equity at the start of the UTC hour."""
    return b0 > 0 and equity_hour_start - equity >= config.rails.hourly_loss * b0


@dataclass(frozen=True)
class ClosedPosition:
    """One position closed today (UTC): whether its closing deal was a stop loss, and its profit."""

    closed_at: datetime
    by_stop_loss: bool
    profit: float


def consecutive_stops_tripped(
    closed: Iterable[ClosedPosition], now: datetime, config: Config, reset_at: datetime | None = None
) -> bool:
    """The last 3 positions closed today (after any operator reset) all hit their stop loss at a loss."""
    since = max(day_start(now), reset_at) if reset_at is not None else day_start(now)
    today = sorted((c for c in closed if since <= c.closed_at <= now), key=lambda c: c.closed_at)
    n = config.rails.max_consecutive_stops
    last = today[-n:]
    return len(last) == n and all(c.by_stop_loss and c.profit < 0 for c in last)


# --- news blackout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewsEvent:
    """One calendar row; currency is an ISO code or ALL."""

    time: datetime
    currency: str
    impact: str
    title: str


def parse_calendar(text: str) -> tuple[NewsEvent, ...]:
    """Parse a calendar CSV with header `time_utc,currency,impact,title` (spec §7.2).

    Raises:
        DataError: wrong header, a bad time (not ISO-8601 with a UTC offset) or an unknown impact; the caller
            keeps the last good copy and reports `calendar_invalid`.
    """
    reader = csv.DictReader(io.StringIO(text))
    expected = ["time_utc", "currency", "impact", "title"]
    if [h.strip() for h in (reader.fieldnames or [])] != expected:
        raise DataError(f"calendar header must be {','.join(expected)}")
    events = []
    for line, row in enumerate(reader, start=2):
        raw_time = (row.get("time_utc") or "").strip()
        try:
            when = datetime.fromisoformat(raw_time.replace("Z", "+00:00"))
        except ValueError as exc:
            raise DataError(f"calendar line {line}: bad time {raw_time!r}") from exc
        if when.utcoffset() != timedelta(0):
            raise DataError(f"calendar line {line}: time must be UTC, got {raw_time!r}")
        impact = (row.get("impact") or "").strip().lower()
        if impact not in {"high", "medium", "low"}:
            raise DataError(f"calendar line {line}: impact must be high, medium or low")
        currency = (row.get("currency") or "").strip().upper()
        if not (len(currency) == 3 and currency.isalpha()) and currency != "ALL":
            raise DataError(f"calendar line {line}: currency must be an ISO code or ALL")
        events.append(NewsEvent(when, currency, impact, (row.get("title") or "").strip()))
    return tuple(sorted(events, key=lambda e: e.time))


def symbol_currencies(key: str, config: Config) -> frozenset[str]:
    """`symbols.currencies[key]`, else the halves of a six-letter key (XAUUSD → XAU, USD), else none."""
    given = config.symbols.currencies.get(key)
    if given is not None:
        return frozenset(given)
    if len(key) == 6 and key.isalpha():
        return frozenset({key[:3].upper(), key[3:].upper()})
    return frozenset()


def news_blackout(
    events: Iterable[NewsEvent], currencies: frozenset[str], now: datetime, config: Config
) -> NewsEvent | None:
    """The high-impact event whose window [t - 30 min, t + 15 min] contains now, for these currencies."""
    before = timedelta(minutes=config.rails.news.before_min)
    after = timedelta(minutes=config.rails.news.after_min)
    for event in events:
        if event.impact != "high" or not (event.currency == "ALL" or event.currency in currencies):
            continue
        if event.time - before <= now <= event.time + after:
            return event
    return None


# --- spread and data ----------------------------------------------------------------------------


def spread_spike(current_points: float, hourly_medians: Sequence[float], config: Config) -> bool:
    """Current spread > 2 * median of the last 720 hourly samples; inactive with fewer than 10."""
    sc = config.rails.spread
    samples = tuple(hourly_medians)[-sc.samples :]
    if len(samples) < sc.min_samples:
        return False
    return current_points > sc.spike_multiplier * _median(samples)


@functools.lru_cache(maxsize=64)
def _median(samples: tuple[float, ...]) -> float:
    """The medians change once an hour and are read every tick: computed once per set."""
    return float(np.median(samples))


def data_stale(
    newest_final_m5_time: int | None,
    now: datetime,
    config: Config,
    *,
    ready: bool = True,
    timeframe_s: int = 300,
) -> bool:
    """Symbol not ready, or now - (close of the newest final M5 bar + 5 s) > 300 s (times are UTC)."""
    if not ready or newest_final_m5_time is None:
        return True
    available = newest_final_m5_time + timeframe_s + config.data.partial_bar_delay_s
    return now.timestamp() - available > config.rails.data.max_bar_age_s


# --- verdict ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RailsVerdict:
    """Trading state of a trade's account and symbol, what tripped, and whether deep checks may run."""

    account: TradingState
    symbol: TradingState
    tripped: tuple[str, ...]
    deep_check_allowed: bool

    @property
    def effective(self) -> TradingState:
        return worse(self.account, self.symbol)


def evaluate(
    account_rails: Mapping[str, bool],
    symbol_rails: Mapping[str, bool],
    *,
    halted: bool = False,
    data_stale_now: bool = False,
) -> RailsVerdict:
    """Combine tripped rails: any account rail makes the account REDUCING, any symbol rail the symbol;
    the operator's halt wins; stale data changes no state but blocks the deep check (spec §7.2)."""
    account = (
        TradingState.HALTED
        if halted
        else (TradingState.REDUCING if any(account_rails.values()) else TradingState.ACTIVE)
    )
    symbol = TradingState.REDUCING if any(symbol_rails.values()) else TradingState.ACTIVE
    tripped = tuple(sorted(name for name, on in {**account_rails, **symbol_rails}.items() if on))
    if data_stale_now:
        tripped = (*tripped, "data_integrity")
    return RailsVerdict(account, symbol, tripped, not halted and not data_stale_now)


__all__ = [
    "RISK_ADDING",
    "ClosedPosition",
    "NewsEvent",
    "RailsVerdict",
    "TradingState",
    "consecutive_stops_tripped",
    "daily_loss_tripped",
    "data_stale",
    "day_start",
    "evaluate",
    "hour_start",
    "hourly_loss_tripped",
    "is_allowed",
    "news_blackout",
    "parse_calendar",
    "spread_spike",
    "symbol_currencies",
    "worse",
]
