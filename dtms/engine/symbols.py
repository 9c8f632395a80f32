"""Per-symbol market state shared by every trade on the symbol: bar windows, VWAP, regime, spread,
evaluations."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from dtms.broker.base import Broker
from dtms.broker.codes import TIMEFRAMES
from dtms.config import Config
from dtms.engine import regime as rg
from dtms.engine import signals as sg
from dtms.engine.market import BarWindow, SessionVwap, spread_median
from dtms.errors import BrokerError, ConfigError
from dtms.models import Direction

log = logging.getLogger(__name__)

#: The engine's (fast, slow) timeframes: M5 for VWAP, crosses and candles; M15 for structure, momentum,
#: EMAs and the regime (spec §2.1). Replay maps them onto coarser data, e.g. ("H1", "H4").
DEFAULT_TIMEFRAMES: Final = ("M5", "M15")
_UNIT_S: Final = {"M": 60, "H": 3600, "D": 86400, "W": 604800}


def timeframe_s(name: str) -> int:
    """Seconds of a fixed-length MetaTrader timeframe name (M1 … M30, H1 … H12, D1, W1).

    Raises:
        ConfigError: an unknown name, or MN1 (months have no fixed length).
    """
    text = name.strip().upper() if isinstance(name, str) else ""
    if text not in TIMEFRAMES or text == "MN1":
        known = ", ".join(t for t in TIMEFRAMES if t != "MN1")
        raise ConfigError(f"unknown timeframe {name!r}: use one of {known}")
    return _UNIT_S[text[0]] * int(text[1:])


def check_timeframes(timeframes: tuple[str, str]) -> tuple[str, str]:
    """Upper-cased (fast, slow) names; the slow one must be a whole multiple of the fast one, and longer.

    Raises:
        ConfigError: not two names, an unknown name, or a slow timeframe that is not a multiple of the fast.
    """
    if len(timeframes) != 2:
        raise ConfigError(f"timeframes: expected two names (fast, slow), got {timeframes!r}")
    fast, slow = (str(t).strip().upper() for t in timeframes)
    fast_s, slow_s = timeframe_s(fast), timeframe_s(slow)
    if slow_s <= fast_s or slow_s % fast_s:
        raise ConfigError(
            f"timeframes: {slow} must be a longer whole multiple of {fast} (e.g. M5,M15; H1,H4)"
        )
    return fast, slow


@dataclass
class SymbolData:
    """One symbol's windows (created once, never reset by a new trade: B-DATA-4) and what derives from them.

    `m5` and `m15` are the fast and slow windows; their timeframes are `timeframes` (M5 and M15 unless a
    replay maps the engine onto coarser data).
    """

    symbol: str
    key: str
    config: Config
    timeframes: tuple[str, str] = DEFAULT_TIMEFRAMES
    m5: BarWindow = field(init=False)
    m15: BarWindow = field(init=False)
    vwap: SessionVwap = field(init=False)
    ready: bool = False
    regime: rg.Regime | None = None
    thresholds: rg.Thresholds | None = None
    atr_m15: float | None = None
    refreshed_tick: int = -1
    spread_hour: int | None = None
    spread_bar: int | None = None
    spread_samples: list[float] = field(default_factory=list)
    hourly_medians: list[float] = field(default_factory=list)
    last_error: str | None = None
    _cache: dict[tuple[Any, ...], sg.Evaluation] = field(default_factory=dict)
    _median_of: list[float] | None = None
    _median: float | None = None

    def __post_init__(self) -> None:
        dc = self.config.data
        self.timeframes = check_timeframes(self.timeframes)
        fast, slow = self.timeframes
        self.m5 = BarWindow(timeframe_s(fast), dc.m5_window, dc.partial_bar_delay_s)
        self.m15 = BarWindow(timeframe_s(slow), dc.m15_window, dc.partial_bar_delay_s)
        vc = self.config.vwap
        self.vwap = SessionVwap(vc.session_timezone, vc.session_start)

    def refresh(self, broker: Broker, now: datetime, tick_no: int) -> None:
        """Fetch the newest bars once per loop tick (backfill the windows first), then update VWAP and regime.

        A failed fetch leaves the symbol as it was ("not ready" before its first backfill): the data rail
        trips.
        """
        if self.refreshed_tick == tick_no:
            return
        self.refreshed_tick = tick_no
        dc = self.config.data
        if self.ready and now.timestamp() < self._next_final():
            # No bar can have closed since the last fetch (the forming bar is never read): nothing to fetch.
            if self.regime is not None and rg.session_at(now)[0] is not self.regime.session:
                self._classify(now)
            return
        fast, slow = self.timeframes
        try:
            m5_n = dc.m5_fetch if self.ready else dc.m5_window + 1
            m15_n = dc.m15_fetch if self.ready else dc.m15_window + 1
            m5, m15 = broker.bars(self.symbol, fast, m5_n), broker.bars(self.symbol, slow, m15_n)
            if self.ready and (self.m5.missing_range(m5) or self.m15.missing_range(m15)):
                # The fetch did not overlap the windows (downtime): fetch a whole window again (spec §2.3).
                m5 = broker.bars(self.symbol, fast, dc.m5_window + 1)
                m15 = broker.bars(self.symbol, slow, dc.m15_window + 1)
        except BrokerError as exc:
            self.last_error = str(exc)
            log.warning("dtms: bars for %s unavailable: %s", self.symbol, exc)
            return
        r5 = self.m5.merge(m5, now)
        r15 = self.m15.merge(m15, now)
        self.ready = len(self.m5) > 0 and len(self.m15) > 0
        self.last_error = None
        if r5.appended or r5.revised:
            self.vwap.update(self.m5.final(), r5.revised)
            self._cache.clear()
        if (
            r15.appended
            or r15.revised
            or self.regime is None
            or rg.session_at(now)[0] is not self.regime.session  # a new session: a new regime, new thresholds
        ):
            self._classify(now)

    def _next_final(self) -> float:
        """When the next bar of either window can become final (its close + the partial-bar delay)."""
        delay = self.config.data.partial_bar_delay_s
        times = [w.newest_final_time + 2 * w.timeframe_s + delay for w in (self.m5, self.m15)
                 if w.newest_final_time is not None]  # fmt: skip
        return min(times) if len(times) == 2 else float("-inf")

    def _classify(self, now: datetime) -> None:
        bars = self.m15.final()
        self.regime = rg.classify(bars, now, self.config)
        self.thresholds = rg.thresholds(self.regime, self.key, self.config)
        self._cache.clear()

    def record_spread(self, points: float, now: datetime) -> float | None:
        """Sample the spread once per final fast bar; at a new UTC hour, persist the last hour's median
        (§2.8).

        The first fast check after a fast bar becomes final takes the sample, so how many checks ran between
        two bars (15, 30 or 60 s cadence; a replay that skips idle checks) changes neither the samples nor the
        spread rail, which compares the latest sample with the hourly medians.
        """
        bar = self.m5.newest_final_time
        if bar is not None and bar == self.spread_bar:
            return None
        self.spread_bar = bar
        hour = int(now.timestamp()) // 3600
        finished = None
        if self.spread_hour is not None and hour != self.spread_hour and self.spread_samples:
            finished = spread_median(self.spread_samples)
            if finished is not None:
                self.hourly_medians = [*self.hourly_medians, finished][-self.config.rails.spread.samples :]
            self.spread_samples = []
        self.spread_hour = hour
        self.spread_samples.append(points)
        return finished

    def vwap_values(self) -> list[float]:
        return list(self.vwap.series.values())

    def slope(self) -> float:
        return self.vwap.slope(self.config.vwap.slope_bars)

    def fast_bars_after(self, open_time: int) -> int:
        """Final fast bars opened after `open_time` (those of the window: at most its capacity)."""
        times = self.m5.final()["time"]
        return len(times) - int(np.searchsorted(times, open_time, side="right"))

    def new_final_m5(self, after: int | None) -> NDArray[np.void]:
        """Final M5 bars of the current VWAP session opened after `after` (for per-trade cross counters)."""
        bars = self.m5.final()
        if after is not None:
            newest = self.m5.newest_final_time
            if newest is None or newest <= after:  # no bar closed since: most fast checks
                return bars[:0]
            bars = bars[bars["time"] > after]
        series = self.vwap.series
        return bars[np.isin(bars["time"], np.fromiter(series.keys(), dtype=np.int64, count=len(series)))]

    def evaluate(self, direction: Direction, counter: int, flip: bool) -> sg.Evaluation | None:
        """The six signals for one trade direction and VWAP view; cached while the bars do not change."""
        if not self.ready or self.regime is None or self.thresholds is None:
            return None
        key = (direction, counter, flip, self.m5.newest_final_time, self.m15.newest_final_time, self.regime)
        hit = self._cache.get(key)
        if hit is None:
            view = sg.VwapView(self.vwap.value, self.slope(), counter, flip)
            hit = sg.evaluate(
                self.m5.final(),
                self.m15.final(),
                direction,
                self.regime,
                self.thresholds,
                view,
                None,
                self.config,
            )
            self._cache[key] = hit
        return hit

    def _spread_median(self) -> float | None:
        if not self.hourly_medians:
            return None
        if self._median_of != self.hourly_medians:  # a list compare is far cheaper than the median
            self._median_of, self._median = list(self.hourly_medians), spread_median(self.hourly_medians)
        return self._median

    def health(self) -> dict[str, Any]:
        """Data health for the status surfaces."""
        return {
            "m5_bars": len(self.m5),
            "m15_bars": len(self.m15),
            "gaps": len(self.m5.gaps(self.config.data.gap_factor)),
            "last_m5_open": self.m5.newest_final_time,
            "last_m15_open": self.m15.newest_final_time,
            "vwap": self.vwap.value,
            "spread_median": self._spread_median(),
            "ready": self.ready,
            "error": self.last_error,
        }


__all__ = ["DEFAULT_TIMEFRAMES", "SymbolData", "check_timeframes", "timeframe_s"]
