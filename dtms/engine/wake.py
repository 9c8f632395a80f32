"""The engine's wake-up contract: until when, and inside which price bands, its ticks can change nothing.

A tick between two bar closes acts only through time (deep checks due, timers, start age, cooldowns, the
hour and session boundaries) or through prices (start conditions in R, the 0.2 % price-move trigger, the loss
rails on equity, SL and TP fills). `Engine.wake(now)` states both, so a driver that controls the clock (the
replay) can skip every tick that would only have repeated the last one and run the engine exactly where a
live loop would have found work. Bar closes and SL/TP fills are the driver's to find: they come from the data.

Every bound here is conservative: a band is the open interval strictly inside which the condition cannot
hold, narrowed by a margin for rounding, and a time is never later than the engine's own test. Waking
early is harmless: the engine then runs a tick that would have happened anyway and finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from dtms.config import Config
from dtms.engine import cadence, machine
from dtms.engine import rails as rl
from dtms.engine import regime as rg
from dtms.engine.regime import Session, session_at
from dtms.engine.signals import update_flip_flag
from dtms.engine.symbols import SymbolData
from dtms.models import Direction, Trade, TradeState

#: Relative margin by which bands are narrowed: rounding in the engine's own arithmetic is far smaller.
MARGIN: Final = 1e-9
_HOUR: Final = timedelta(hours=1)


class Side(StrEnum):
    """The quote a band watches: the bid, the ask, or their mean (the price-move trigger)."""

    BID = "bid"
    ASK = "ask"
    MID = "mid"


@dataclass(frozen=True)
class Band:
    """While `lo < price < hi` (on `side` of `symbol`'s quote) between `since` and `until`, nothing fires."""

    symbol: str
    side: Side
    lo: float
    hi: float
    since: datetime | None = None  # the band only matters from here (before: the condition cannot act)
    until: datetime | None = None  # and until here (after: the deep check it would trigger is skipped)

    def holds(self, bid: float, ask: float) -> bool:
        price = bid if self.side is Side.BID else ask if self.side is Side.ASK else (bid + ask) / 2
        return self.lo < price < self.hi


@dataclass(frozen=True)
class TradeWake:
    """One open trade: its fast-check cadence and what can make a fast check act.

    `at` is the earliest time its fast check could act whatever the prices (None: only prices or a bar
    close can); `now` is set when it must run at its next fast check (a pending transition or action, no
    check yet, a position missing, data not ready).
    """

    identifier: int
    symbol: str
    last_fast_at: datetime | None
    interval_s: float
    at: datetime | None
    bands: tuple[Band, ...] = ()
    forced: bool = (
        False  # the next tick comes at once (`Engine.next_due`): a pending transition, no check yet
    )
    market_closed: bool = False  # every open action waits for the closed market to quote again


@dataclass(frozen=True)
class Wake:
    """The whole contract at one tick: per-trade wakes, account-level times, the equity band of the rails."""

    now: datetime
    trades: tuple[TradeWake, ...]
    at: datetime | None  # account-level: news windows opening or closing
    equity: tuple[float, float]  # the loss rails keep their verdict while lo < equity < hi
    last_reconcile: datetime | None
    halted: bool
    # No account rail tripped: a new UTC hour or day then only records the equity baselines
    # (`Engine.record_hour`, which refuses when the new baselines would trip a rail).
    rails_clear: bool = False


def _narrow(lo: float, hi: float) -> tuple[float, float]:
    return lo + abs(lo) * MARGIN, hi - abs(hi) * MARGIN


def next_session_change(now: datetime) -> datetime:
    """The next whole UTC hour at which the trading session (regime input) differs from now's.

    The session alone: the off-hours part of ASIAN (21:00-24:00) changes no threshold, and the engine
    classifies the regime again only when the session changes (`SymbolData.refresh`).
    """
    current = session_at(now)[0]
    at = rl.hour_start(now) + _HOUR
    while session_at(at)[0] is current:
        at += _HOUR
    return at


def session_wake(trade: Trade, sym: SymbolData, now: datetime, config: Config) -> datetime | None:
    """The first session change at which this trade's fast check would decide otherwise; None if none can.

    The session sets the VWAP threshold (`regime.thresholds`) and, through it, the flip latch and the VWAP
    event trigger of the fast check; nothing else a fast check reads depends on the session (the deep check
    reclassifies when it runs). The slope and the cross counter change only when a bar becomes final, which
    wakes a driver anyway, so every session of the day is tried once with today's slope, counter and latch.
    """
    regime = sym.regime
    if regime is None or session_at(now)[0] is not regime.session:
        return now  # the next fast check classifies again
    eng = trade.engine
    counter = int(eng.get("vwap_cross_counter", 0))
    flip = bool(eng.get("vwap_flip_active", False))
    slope = sym.slope()
    at = now
    for _ in Session:
        at = next_session_change(at)
        vwap = rg.thresholds(replace(regime, session=session_at(at)[0]), sym.key, config).vwap
        if (
            cadence.event_trigger(slope, vwap, counter, None, None, config) is not None
            or update_flip_flag(flip, slope, vwap, counter, trade.direction, config) != flip
        ):
            return at
    return None


def earliest(times: Iterable[datetime | None]) -> datetime | None:
    found = [t for t in times if t is not None]
    return min(found) if found else None


def trade_wake(
    trade: Trade,
    sym: SymbolData | None,
    now: datetime,
    config: Config,
    *,
    has_open_actions: bool,
    halted: bool,
    present: bool = True,
    market_closed: bool = False,
) -> TradeWake:
    """What can make this trade's next fast checks act, after a tick at `now` (see the module docstring).

    `market_closed`: every open action of the trade last met a closed market that has not quoted since; the
    checks (and a pending transition's drives) change nothing until it does.
    """
    eng = trade.engine
    last = eng.get("last_fast_at")
    last_fast = datetime.fromisoformat(last) if isinstance(last, str) else None
    regime = sym.regime if sym is not None else None
    interval = cadence.fast_interval_s(
        trade.state, regime.volatility if regime else None, bool(regime and regime.is_flat), config
    )
    must = (
        eng.get("pending_transition") is not None
        or sym is None
        or not sym.ready
        or sym.thresholds is None
        or last_fast is None
        or trade.r is None
        or bool(eng.get("missing_since"))
        or has_open_actions
        or halted
        or not present  # its next fast check finds the position gone
        or _unseen_bar(sym, last_fast)
    )
    forced = eng.get("pending_transition") is not None or sym is None or last_fast is None
    if market_closed and sym is not None and last_fast is not None and present and not halted:
        return TradeWake(
            trade.identifier, trade.symbol, last_fast, interval, None, forced=forced, market_closed=True
        )
    if must or sym is None or sym.thresholds is None or trade.r is None:
        return TradeWake(trade.identifier, trade.symbol, last_fast, interval, now, forced=forced)
    thresholds = sym.thresholds
    mc = config.monitoring
    times: list[datetime | None] = [session_wake(trade, sym, now, config)]
    bands: list[Band] = []
    d = trade.direction.sign
    side = Side.BID if trade.direction is Direction.BUY else Side.ASK
    if trade.armed:
        seen = eng.get("first_seen_at")
        first_seen = datetime.fromisoformat(seen) if isinstance(seen, str) else now
        times.append(first_seen + timedelta(seconds=mc.start_age_s))
        # r_multiple = d (price - entry) / r starts monitoring at ≥ start_profit_r or ≤ start_emergency_r.
        up, down = (
            trade.entry_price + d * mc.start_profit_r * trade.r,
            trade.entry_price + d * mc.start_emergency_r * trade.r,
        )
        bands.append(Band(trade.symbol, side, *_narrow(min(up, down), max(up, down))))
        return TradeWake(trade.identifier, trade.symbol, last_fast, interval, earliest(times), tuple(bands))
    view = machine.TradeView(
        state=trade.state,
        direction=trade.direction,
        state_entered_at=trade.state_at,
        flat_timer_started_at=_at(eng.get("flat_timer_started_at")),
        recovery_timer_started_at=_at(eng.get("recovery_timer_started_at")),
        last_trail_bar_time=eng.get("last_trail_bar_time"),
    )
    fresh_until = _stale_from(sym, config)
    deep: list[datetime | None] = []
    if view.state is TradeState.HEDGED:
        deep.append(machine.timer_deadline(view.flat_timer_started_at, config.fsm.flat_timer_s))
    elif view.state is TradeState.RECOVERING:
        deep.append(machine.timer_deadline(view.recovery_timer_started_at, config.fsm.recovery_timer_s))
    last_deep = _at(eng.get("last_deep_at"))
    if last_deep is None:
        deep.append(now)
    else:
        deep.append(last_deep + timedelta(seconds=mc.deep_s))
        cooldown_end = last_deep + timedelta(seconds=mc.deep_cooldown_s)
        counter = int(eng.get("vwap_cross_counter", 0))
        if cadence.event_trigger(sym.slope(), thresholds.vwap, counter, None, None, config) is not None:
            deep.append(cooldown_end)
        mid = eng.get("mid_at_last_deep")
        if mid:
            step = float(mid) * mc.price_move_trigger
            bands.append(
                Band(
                    trade.symbol,
                    Side.MID,
                    *_narrow(mid - step, mid + step),
                    since=cooldown_end,
                    until=fresh_until,
                )
            )
    # A deep check that falls due while the data is stale is skipped and stays due: the next bar wakes it.
    times += [t for t in deep if t is not None and (fresh_until is None or t < fresh_until)]
    return TradeWake(trade.identifier, trade.symbol, last_fast, interval, earliest(times), tuple(bands))


def _at(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _stale_from(sym: SymbolData, config: Config) -> datetime | None:
    """From when the data rail calls the symbol's bars stale if no new bar closes (None: already stale)."""
    newest = sym.m5.newest_final_time
    if newest is None:
        return None
    available = newest + sym.m5.timeframe_s + config.data.partial_bar_delay_s
    return datetime.fromtimestamp(available + config.rails.data.max_bar_age_s, tz=UTC) + timedelta(
        microseconds=1
    )


def _unseen_bar(sym: SymbolData, last_fast: datetime) -> bool:
    """A fast or slow bar became final after this trade's last fast check (its next check processes it)."""
    delay = sym.config.data.partial_bar_delay_s
    stamp = last_fast.timestamp()
    return any(
        w.newest_final_time is not None and stamp < w.newest_final_time + w.timeframe_s + delay
        for w in (sym.m5, sym.m15)
    )


def equity_band(
    b0: float | None, equity_hour: float | None, equity: float, config: Config
) -> tuple[float, float]:
    """The open equity interval around `equity` inside which the daily and hourly loss rails hold."""
    lo, hi = float("-inf"), float("inf")
    if b0 is None or b0 <= 0:
        return lo, hi
    levels = [b0 - config.rails.daily_loss * b0]
    if equity_hour is not None:
        levels.append(equity_hour - config.rails.hourly_loss * b0)
    for level in levels:  # tripped at equity ≤ level
        if equity > level:
            lo = max(lo, level)
        else:
            hi = min(hi, level)
    pad = 0.01 + abs(b0) * MARGIN  # the terminal rounds equity to cents
    return lo + pad, hi - pad


def news_times(
    events: Iterable[rl.NewsEvent], currencies: frozenset[str], now: datetime, config: Config
) -> datetime | None:
    """The next time a news blackout window for these currencies opens or closes."""
    before = timedelta(minutes=config.rails.news.before_min)
    after = timedelta(minutes=config.rails.news.after_min)
    out = []
    for event in events:
        if event.impact != "high" or not (event.currency == "ALL" or event.currency in currencies):
            continue
        out += [t for t in (event.time - before, event.time + after + timedelta(microseconds=1)) if t > now]
    return min(out) if out else None


__all__ = [
    "MARGIN",
    "Band",
    "Side",
    "TradeWake",
    "Wake",
    "earliest",
    "equity_band",
    "news_times",
    "next_session_change",
    "session_wake",
    "trade_wake",
]
