"""Pure, vectorized numpy indicators: EMA, RSI, MACD, TR/ATR, Bollinger width and swing points."""

from __future__ import annotations

import math
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
Smoothing = Literal["wilder", "sma"]

#: Largest exponent used by the closed-form recursion per block; e**600 is far below float64's limit (e**709).
_MAX_EXPONENT: Final = 600.0


def _as_float(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _recursion(x: FloatArray, decay: float, seed: float) -> FloatArray:
    """y_0 = seed, y_k = decay * y_{k-1} + (1 - decay) * x_k for k ≥ 1, in closed form per block.

    y_k = decay^k * (seed + (1 - decay) * Σ_{j=1..k} x_j * decay^-j); blocks keep decay^-j from overflowing.
    """
    out = np.empty(len(x), dtype=np.float64)
    if len(x) == 0:
        return out
    out[0] = seed
    if decay == 0.0:
        out[1:] = x[1:]
        return out
    block = max(1, int(_MAX_EXPONENT / -math.log(decay))) if decay < 1.0 else len(x)
    start, prev = 1, seed
    while start < len(x):
        stop = min(len(x), start + block)
        k = np.arange(1, stop - start + 1, dtype=np.float64)
        powers = decay**k
        acc = np.cumsum(x[start:stop] / powers)
        out[start:stop] = powers * (prev + (1.0 - decay) * acc)
        prev = out[stop - 1]
        start = stop
    return out


def smooth(values: ArrayLike, period: int, alpha: float) -> FloatArray:
    """Exponential smoothing with factor `alpha`, seeded by the mean of the first `period` values.

    The result is aligned with the input: NaN before index period - 1.
    """
    x = _as_float(values)
    out = np.full(len(x), np.nan)
    if period < 1 or len(x) < period:
        return out
    seed = float(np.mean(x[:period]))
    out[period - 1 :] = _recursion(x[period - 1 :], 1.0 - alpha, seed)
    return out


def ema(values: ArrayLike, period: int) -> FloatArray:
    """EMA with alpha = 2/(p + 1), seeded with the SMA of the first p values (spec §4.3); NaN before p - 1."""
    return smooth(values, period, 2.0 / (period + 1))


def wilder(values: ArrayLike, period: int) -> FloatArray:
    """Wilder's average: seed = mean of the first p values, then (p - 1) * prev/p + x/p."""
    return smooth(values, period, 1.0 / period)


def sma(values: ArrayLike, period: int) -> FloatArray:
    """Simple moving average of the last `period` values; NaN before index period - 1."""
    x = _as_float(values)
    out = np.full(len(x), np.nan)
    if period < 1 or len(x) < period:
        return out
    out[period - 1 :] = np.lib.stride_tricks.sliding_window_view(x, period).mean(axis=1)
    return out


def _average(values: ArrayLike, period: int, smoothing: Smoothing) -> FloatArray:
    return wilder(values, period) if smoothing == "wilder" else sma(values, period)


def rsi(close: ArrayLike, period: int = 14, smoothing: Smoothing = "wilder") -> FloatArray:
    """RSI aligned with `close`: NaN before index `period` (it needs `period` price changes).

    avg_loss = 0 gives 100, or 50 when avg_gain is 0 too (spec §4.3).
    """
    c = _as_float(close)
    out = np.full(len(c), np.nan)
    if len(c) <= period:
        return out
    change = np.diff(c)
    gain = _average(np.clip(change, 0.0, None), period, smoothing)
    loss = _average(np.clip(-change, 0.0, None), period, smoothing)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + gain / loss)
    value = np.where(loss == 0.0, np.where(gain == 0.0, 50.0, 100.0), value)
    value = np.where(np.isnan(gain), np.nan, value)
    out[1:] = value
    return out


def macd(
    close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line, signal line and histogram aligned with `close`.

    The signal EMA starts at the first defined MACD value, so the histogram starts at index slow + signal - 2
    (33 for 12/26/9): three histogram values need 36 bars (spec §4.3).
    """
    c = _as_float(close)
    line = ema(c, fast) - ema(c, slow)
    sig = np.full(len(c), np.nan)
    first = slow - 1
    if len(c) > first:
        sig[first:] = ema(line[first:], signal)
    return line, sig, line - sig


def true_range(high: ArrayLike, low: ArrayLike, close: ArrayLike) -> FloatArray:
    """TR_i = max(high - low, |high - close_{i-1}|, |low - close_{i-1}|); TR_0 is NaN (no previous close)."""
    h, lo, c = _as_float(high), _as_float(low), _as_float(close)
    out = np.full(len(h), np.nan)
    if len(h) > 1:
        prev = c[:-1]
        out[1:] = np.maximum.reduce([h[1:] - lo[1:], np.abs(h[1:] - prev), np.abs(lo[1:] - prev)])
    return out


def atr(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14, smoothing: Smoothing = "wilder"
) -> FloatArray:
    """ATR aligned with the bars: NaN before index `period` (TR starts at index 1).

    Wilder (default): seed = mean of the first `period` TRs, then (13 * prev + TR)/14; "sma": mean of the last
    `period` TRs, the original's variant.
    """
    tr = true_range(high, low, close)
    out = np.full(len(tr), np.nan)
    if len(tr) > period:
        out[1:] = _average(tr[1:], period, smoothing)
    return out


def bollinger_width(close: ArrayLike, period: int = 20, num_std: float = 2.0) -> FloatArray:
    """(upper - lower)/middle = 2 * num_std * sd/SMA with the population sd; NaN before index period - 1."""
    c = _as_float(close)
    out = np.full(len(c), np.nan)
    if len(c) < period:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(c, period)
    mean = windows.mean(axis=1)
    std = windows.std(axis=1, ddof=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[period - 1 :] = 2.0 * num_std * std / mean
    return out


def swing_points(high: ArrayLike, low: ArrayLike, n: int = 2) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Fractal swing highs and lows of width `n`.

    Bar i is a swing high if its high is strictly greater than the `n` highs before it and greater than or
    equal to the `n` highs after it, so of equal highs the first is the swing; swing lows mirror this. Bars
    without `n` neighbours on both sides are never swings.
    """
    h, lo = _as_float(high), _as_float(low)
    size = len(h)
    is_high = np.zeros(size, dtype=bool)
    is_low = np.zeros(size, dtype=bool)
    if size < 2 * n + 1:
        return is_high, is_low
    wh = np.lib.stride_tricks.sliding_window_view(h, 2 * n + 1)
    wl = np.lib.stride_tricks.sliding_window_view(lo, 2 * n + 1)
    mid_h, mid_l = wh[:, n], wl[:, n]
    is_high[n : size - n] = (mid_h > wh[:, :n].max(axis=1)) & (mid_h >= wh[:, n + 1 :].max(axis=1))
    is_low[n : size - n] = (mid_l < wl[:, :n].min(axis=1)) & (mid_l <= wl[:, n + 1 :].min(axis=1))
    return is_high, is_low


def confirmed_swings(
    high: ArrayLike, low: ArrayLike, n: int = 2, lookback: int = 50
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Indices of confirmed swing highs and lows, oldest first, as seen from the newest bar t = len - 1.

    Bar t is never part of detection (the original included it and never found a structure break, B-SIG-1): a
    swing at i is confirmed when bars i+1 … i+n are final and before t, i.e. i ≤ t - 1 - n; only
    i ≥ t - lookback is searched.
    """
    h, lo = _as_float(high), _as_float(low)
    t = len(h) - 1
    if t < 1:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    is_high, is_low = swing_points(h[:t], lo[:t], n)
    first = max(0, t - lookback)
    highs = np.flatnonzero(is_high)
    lows = np.flatnonzero(is_low)
    return highs[highs >= first], lows[lows >= first]


__all__ = [
    "atr",
    "bollinger_width",
    "confirmed_swings",
    "ema",
    "macd",
    "rsi",
    "sma",
    "smooth",
    "swing_points",
    "true_range",
    "wilder",
]
