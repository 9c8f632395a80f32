"""Prices from bars: the deterministic intra-bar path, quotes, forming bars, aggregation and SL/TP crossings.

Intra-bar path (documented convention, as in MetaTrader's own tester): a bullish bar (close >= open) runs
O → L → H → C, a bearish one O → H → L → C, the four points at 0, 1/3, 2/3 and 3/3 of the bar with straight
lines between them. Between two bars the price jumps from the close to the next open (a gap), and while no
bar covers the time the price stays at the last close. Bars are bid prices; ask = bid + spread x point.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from dtms.sim.synth import RATES_DTYPE

Rates = npt.NDArray[np.void]

_W1: Final = 32769
_MN1: Final = 49153
_SUNDAY_OFFSET_S: Final = 3 * 86400  # 1970-01-04 was the first Sunday: MetaTrader's weeks open on Sunday


def timeframe_seconds(code: int) -> int | None:
    """Seconds of a fixed-length TIMEFRAME_* code; 0 for W1/MN1 (calendar buckets); None if unknown."""
    if 1 <= code <= 30:
        return code * 60
    if 0x4000 < code <= 0x4000 + 24:
        return (code - 0x4000) * 3600
    if code in (_W1, _MN1):
        return 0
    return None


def _bucket(times: npt.NDArray[np.int64], code: int) -> npt.NDArray[np.int64]:
    if code == _W1:
        return (times - _SUNDAY_OFFSET_S) // 604800 * 604800 + _SUNDAY_OFFSET_S
    if code == _MN1:
        months = times.astype("datetime64[s]").astype("datetime64[M]")
        return months.astype("datetime64[s]").astype(np.int64)
    seconds = timeframe_seconds(code) or 60
    return times // seconds * seconds


@dataclass
class _Agg:
    rates: Rates  # full buckets
    first: npt.NDArray[np.int64]  # index of each bucket's first base bar
    group_of: npt.NDArray[np.int64]  # bucket index of each base bar


@dataclass
class Series:
    """One symbol's base bars (server-time seconds, bid prices), in memory per process: they never change."""

    rates: Rates
    interval_s: int
    point: float
    digits: int
    closed_gap_s: int = 0
    _aggs: dict[int, _Agg] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        r = self.rates
        self.t_ms = r["time"].astype(np.int64) * 1000
        self.o, self.h, self.l, self.c = (r[k].astype(np.float64) for k in ("open", "high", "low", "close"))
        self.spread = r["spread"].astype(np.float64) * self.point
        self.i_ms = self.interval_s * 1000
        self.n = len(r)
        # Python lists for the scalar lookups of every call: cheaper than indexing numpy arrays one by one.
        self._t = self.t_ms.tolist()
        self._ohlc = list(
            zip(self.o.tolist(), self.h.tolist(), self.l.tolist(), self.c.tolist(), strict=True)
        )
        self._spread = self.spread.tolist()
        self._last_quote: tuple[int, tuple[float, float, int]] = (-1, (0.0, 0.0, 0))
        if not self.closed_gap_s:
            # Quiet M1 data skips minutes; only a real pause (session break, weekend) closes the market.
            self.closed_gap_s = max(1800, 3 * self.interval_s)

    # --- position in the data -------------------------------------------------------------------------
    def index(self, t_ms: int) -> int:
        """The last bar opened at or before `t_ms`, or -1."""
        return bisect.bisect_right(self._t, t_ms) - 1

    def is_open(self, t_ms: int) -> bool:
        k = self.index(t_ms)
        if k < 0:
            return False
        if t_ms < self._t[k] + self.i_ms:
            return True
        if k + 1 >= self.n:
            return False
        return bool(self._t[k + 1] - self._t[k] - self.i_ms <= self.closed_gap_s * 1000)

    def _points(self, k: int) -> tuple[list[int], list[float]]:
        t0 = self._t[k]
        o, h, lo, c = self._ohlc[k]
        mid = [lo, h] if c >= o else [h, lo]
        i = self.i_ms
        return [t0, t0 + i // 3, t0 + 2 * i // 3, t0 + i], [o, *mid, c]

    def _line(self, k: int, t_ms: int) -> float:
        """The path's price at `t_ms` inside bar `k`, unrounded."""
        times, prices = self._points(k)
        if t_ms >= times[3]:
            return prices[3]
        j = min(2, (t_ms - times[0]) * 3 // self.i_ms)
        ta, tb, pa, pb = times[j], times[j + 1], prices[j], prices[j + 1]
        return pa + (pb - pa) * (t_ms - ta) / (tb - ta)

    def _interp(self, k: int, t_ms: int) -> float:
        return round(self._line(k, t_ms), self.digits)

    def quote(self, t_ms: int) -> tuple[float, float, int]:
        """(bid, ask, time of the quote in ms) at `t_ms`; before the data, the first open."""
        if self._last_quote[0] == t_ms:
            return self._last_quote[1]
        k = self.index(t_ms)
        if k < 0:
            first = self._ohlc[0][0]
            out = first, round(first + self._spread[0], self.digits), self._t[0]
        else:
            end = self._t[k] + self.i_ms
            bid = self._interp(k, t_ms) if t_ms < end else self._ohlc[k][3]
            out = bid, round(bid + self._spread[k], self.digits), min(t_ms, end - 1)
        self._last_quote = (t_ms, out)
        return out

    def bid_range(self, t0_ms: int, t1_ms: int) -> tuple[float, float]:
        """The lowest and highest bid of the unrounded path over [t0, t1] (the line `first_cross` tests)."""
        k0, k1 = self.index(t0_ms), self.index(t1_ms)
        if k1 < 0:  # before the data the quote is the first open
            first = self._ohlc[0][0]
            return first, first
        values = [self._line(k1, t1_ms), self._line(k0, t0_ms) if k0 >= 0 else self._ohlc[0][0]]
        for k in {max(k0, 0), k1}:  # the vertices of the end bars inside the interval
            times, prices = self._points(k)
            values += [p for t, p in zip(times, prices, strict=True) if t0_ms <= t <= t1_ms]
        lo, hi = min(values), max(values)
        if k1 - k0 > 1:  # whole bars between: the path reaches each one's high and low
            lo = min(lo, float(self.l[k0 + 1 : k1].min()))
            hi = max(hi, float(self.h[k0 + 1 : k1].max()))
        return lo, hi

    # --- bars ---------------------------------------------------------------------------------------------
    def resampled(self, code: int) -> Rates:
        """Every complete bar of TIMEFRAME_* `code` built from the base bars (what copy_rates_* serves).

        Raises:
            ValueError: a timeframe the base bars cannot build (finer, or not a whole multiple).
        """
        agg = self._agg(code)
        if agg is None:
            raise ValueError(f"timeframe code {code} cannot be built from {self.interval_s} s bars")
        return agg.rates.copy()

    def _agg(self, code: int) -> _Agg | None:
        seconds = timeframe_seconds(code)
        if seconds is None or (seconds and (seconds < self.interval_s or seconds % self.interval_s)):
            return None
        if code not in self._aggs:
            if seconds == self.interval_s:
                idx = np.arange(self.n, dtype=np.int64)
                self._aggs[code] = _Agg(self.rates, idx, idx)
            else:
                buckets = _bucket(self.rates["time"].astype(np.int64), code)
                first = np.concatenate([[0], np.flatnonzero(np.diff(buckets)) + 1]).astype(np.int64)
                self._aggs[code] = _Agg(
                    self._combine(buckets, first),
                    first,
                    np.repeat(np.arange(len(first)), np.diff(np.append(first, self.n))),
                )
        return self._aggs[code]

    def _combine(self, buckets: npt.NDArray[np.int64], first: npt.NDArray[np.int64]) -> Rates:
        r = self.rates
        out = np.zeros(len(first), dtype=RATES_DTYPE)
        last = np.append(first[1:], self.n) - 1
        out["time"] = buckets[first]
        out["open"], out["close"] = r["open"][first], r["close"][last]
        out["high"] = np.maximum.reduceat(r["high"], first)
        out["low"] = np.minimum.reduceat(r["low"], first)
        out["tick_volume"] = np.add.reduceat(r["tick_volume"], first)
        out["spread"] = np.minimum.reduceat(r["spread"], first)
        out["real_volume"] = np.add.reduceat(r["real_volume"], first)
        return out

    def _forming(self, k: int, t_ms: int) -> np.void:
        """Bar `k` as seen at `t_ms`: built from the part of its path already travelled."""
        row: np.void = self.rates[k].copy()
        times, prices = self._points(k)
        if t_ms >= times[3]:
            return row
        now = self._interp(k, t_ms)
        seen = [p for tt, p in zip(times, prices, strict=True) if tt <= t_ms] + [now]
        row["high"], row["low"], row["close"] = max(seen), min(seen), now
        frac = (t_ms - times[0]) / self.i_ms
        row["tick_volume"] = max(1, int(int(row["tick_volume"]) * frac))
        row["real_volume"] = int(int(row["real_volume"]) * frac)
        return row

    def visible(self, code: int, t_ms: int) -> tuple[_Agg, int] | None:
        """The aggregation for `code` and the index of the newest bucket visible at `t_ms` (-1: none)."""
        agg = self._agg(code)
        if agg is None:
            return None
        k = self.index(t_ms)
        return agg, (int(agg.group_of[k]) if k >= 0 else -1)

    def window(self, code: int, t_ms: int, lo: int, hi: int) -> Rates:
        """Buckets lo..hi (inclusive) of `code` as seen at `t_ms`; the newest visible one may be forming."""
        agg, g = self.visible(code, t_ms) or (None, -1)
        if agg is None or hi < lo or hi < 0:
            return np.zeros(0, dtype=RATES_DTYPE)
        lo = max(lo, 0)
        out = agg.rates[lo : hi + 1].copy()
        if hi == g:
            k = self.index(t_ms)
            start = int(agg.first[g])
            part = self.rates[start : k + 1].copy()
            part[-1] = self._forming(k, t_ms)
            bar = out[-1]
            bar["open"], bar["close"] = part["open"][0], part["close"][-1]
            bar["high"], bar["low"] = part["high"].max(), part["low"].min()
            bar["tick_volume"] = part["tick_volume"].sum()
            bar["spread"] = part["spread"].min()
            bar["real_volume"] = part["real_volume"].sum()
            out[-1] = bar
        return out

    # --- SL/TP crossings ----------------------------------------------------------------------------------
    def first_cross(
        self, t0_ms: int, t1_ms: int, level: float, *, below: bool, ask: bool
    ) -> tuple[int, float] | None:
        """When in (t0, t1] the bid (or ask) first reaches `level` from above (`below`) or below; the fill.

        A touch inside a bar fills at the level; a bar that opens beyond it fills at that open (gap).
        """
        if t1_ms <= t0_ms or self.n == 0:
            return None
        k0 = self.index(t0_ms)
        if k0 >= 0 and t0_ms < self._t[k0] + self.i_ms:
            hit = self._walk(k0, t0_ms, min(t1_ms, self._t[k0] + self.i_ms), level, below, ask)
            if hit:
                return hit
        k1 = self.index(t1_ms)
        if k1 <= k0:
            return None
        lo, hi = k0 + 1, k1 + 1
        if hi - lo <= 4:
            # A step of a few bars (replay, wall-clock polling): plain Python beats numpy's call overhead.
            k = next((j for j in range(lo, hi) if self._reaches(j, level, below, ask)), -1)
            if k < 0:
                return None
        else:
            off = self.spread[lo:hi] if ask else 0.0
            cand = (self.l[lo:hi] + off <= level) if below else (self.h[lo:hi] + off >= level)
            idx = np.flatnonzero(cand)
            if idx.size == 0:
                return None
            k = lo + int(idx[0])
        opening = round(self._ohlc[k][0] + (self._spread[k] if ask else 0.0), self.digits)
        if (opening <= level) if below else (opening >= level):
            return self._t[k], opening
        return self._walk(k, self._t[k], min(t1_ms, self._t[k] + self.i_ms), level, below, ask)

    def _reaches(self, k: int, level: float, below: bool, ask: bool) -> bool:
        off = self._spread[k] if ask else 0.0
        return bool(self._ohlc[k][2] + off <= level if below else self._ohlc[k][1] + off >= level)

    def _walk(
        self, k: int, ta: int, tb: int, level: float, below: bool, ask: bool
    ) -> tuple[int, float] | None:
        """The first millisecond in [ta, tb] of bar `k` at which the path has reached `level`.

        One test decides everywhere: the unrounded line at a millisecond. The answer is then the same however
        the clock was stepped (a scan that stopped at t found nothing at t, so the next one from t agrees).
        """
        off = self._spread[k] if ask else 0.0

        def crossed(t: int) -> bool:
            p = self._line(k, t) + off
            return p <= level if below else p >= level

        if crossed(ta):
            return ta, round(self._line(k, ta) + off, self.digits)
        times, prices = self._points(k)
        for j in range(3):
            seg_a, seg_b = max(times[j], ta), min(times[j + 1], tb)
            if seg_b <= seg_a or not crossed(seg_b):
                continue  # a straight segment: neither end reached, nothing between did
            p0, p1 = prices[j] + off, prices[j + 1] + off
            frac = 1.0 if p1 == p0 else (level - p0) / (p1 - p0)
            at = min(seg_b, max(seg_a + 1, times[j] + int(np.ceil(frac * (times[j + 1] - times[j])))))
            while at - 1 > seg_a and crossed(at - 1):
                at -= 1
            while not crossed(at):
                at += 1
            return at, level
        return None

    def ticks(self, from_ms: int, to_ms: int) -> list[tuple[int, float, float]]:
        """The path points between two times as (time_ms, bid, ask): the simulator's tick history."""
        out: list[tuple[int, float, float]] = []
        k = max(0, self.index(from_ms))
        while k < self.n and self._t[k] <= to_ms:
            times, prices = self._points(k)
            for tt, p in zip(times[:3], prices[:3], strict=True):
                if from_ms <= tt <= to_ms:
                    out.append((tt, p, round(p + self._spread[k], self.digits)))
            k += 1
        return out


_CACHE_SIZE: Final = 32
_cache: OrderedDict[tuple[int, int, float, int], Series] = OrderedDict()


def series_for(rates: Rates, interval_s: int, point: float, digits: int) -> Series:
    """A Series for these bars, shared by every terminal of this process built on the same array object.

    Bars never change, so tests and replays that open many terminals on the same data pay the set-up once.
    The cache holds the array, so its id() cannot be reused while the entry lives.
    """
    key = (id(rates), interval_s, point, digits)
    found = _cache.get(key)
    if found is not None and found.rates is rates:
        _cache.move_to_end(key)
        return found
    series = Series(rates, interval_s, point, digits)
    _cache[key] = series
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return series


__all__ = ["Rates", "Series", "series_for", "timeframe_seconds"]
