"""Deterministic synthetic M1 bars (seeded) with trends, ranges, volatility bursts, reversals and gaps."""

from __future__ import annotations

import functools
import zlib
from typing import Final

import numpy as np
import numpy.typing as npt

from dtms.broker.rates import RATES_DTYPE

# Per symbol: start price, per-minute log volatility, base spread in points, closed at weekends.
# The volatilities give daily ranges near the real ones (EURUSD ~0.5 %, gold ~1 %, bitcoin ~3 %).
_PARAMS: Final[dict[str, tuple[float, float, int, bool]]] = {
    "EURUSD": (1.08500, 0.00012, 12, True),
    "GBPUSD": (1.27000, 0.00014, 15, True),
    "USDJPY": (151.500, 0.00013, 14, True),
    "XAUUSD": (2650.00, 0.00025, 25, True),
    "BTCUSD": (95000.0, 0.00060, 1500, False),
}
_DEFAULT_PARAMS: Final = (100.0, 0.0002, 10, True)

# Regimes: (name, weight, drift in units of volatility per minute, volatility multiplier).
_REGIMES: Final = (
    ("trend_up", 0.2, 0.07, 1.0),
    ("trend_down", 0.2, -0.07, 1.0),
    ("range", 0.3, 0.0, 0.7),
    ("burst", 0.1, 0.0, 4.0),
    ("reversal", 0.1, 0.25, 1.8),
    ("quiet", 0.1, 0.0, 0.4),
)
_GAPS_PER_DAY: Final = 0.5  # intraday jumps (news gaps, structure breaks)


@functools.lru_cache(maxsize=16)  # tests and replays build the same terminal many times per process
def synthetic_bars(
    symbol: str, start_s: int, end_s: int, *, digits: int, seed: int = 0
) -> npt.NDArray[np.void]:
    """M1 rates from `start_s` to `end_s` (server epoch seconds), the same for the same arguments everywhere.

    FX and metals skip Friday 22:00 to Sunday 22:00, so Monday opens with a gap. The array is read-only.
    """
    p0, vol, spread_pts, weekends = _PARAMS.get(symbol.upper()[:6], _DEFAULT_PARAMS)
    # crc32, not hash(): str hashes are salted per process, and every process must build the same bars.
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])
    start_s -= start_s % 60
    n = max(1, (end_s - start_s) // 60)
    drift = np.empty(n)
    scale = np.empty(n)
    burst = np.zeros(n)
    ranges: list[slice] = []
    names = [r[0] for r in _REGIMES]
    weights = np.array([r[1] for r in _REGIMES])
    i = 0
    while i < n:
        length = int(rng.integers(45, 600))
        k = int(rng.choice(len(_REGIMES), p=weights / weights.sum()))
        _, _, mu, mult = _REGIMES[k]
        seg = slice(i, min(n, i + length))
        m = seg.stop - seg.start
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if names[k] == "reversal":
            # A strong move one way, then back: the adverse-then-recover shape the engine must survive.
            drift[seg] = np.where(np.arange(m) < m // 2, sign * mu, -sign * mu) * vol
        elif names[k] in ("trend_up", "trend_down"):
            drift[seg] = mu * vol
        else:
            drift[seg] = sign * 0.05 * vol if names[k] == "burst" else 0.0
        scale[seg] = mult * vol
        burst[seg] = 1.0 if names[k] == "burst" else 0.0
        if names[k] in ("range", "quiet"):
            ranges.append(seg)
        i = seg.stop
    returns = drift + scale * rng.standard_normal(n)
    for seg in ranges:
        # Pull each range back to its start level (a Brownian bridge), so ranges stay ranges.
        returns[seg] -= returns[seg].mean()
    gaps = np.zeros(n)
    n_gaps = rng.poisson(_GAPS_PER_DAY * n / 1440)
    where = rng.integers(1, n, size=n_gaps) if n > 1 else np.array([], dtype=np.int64)
    gaps[where] = rng.choice([-1.0, 1.0], size=n_gaps) * rng.uniform(15, 45, size=n_gaps) * vol
    times = start_s + 60 * np.arange(n, dtype=np.int64)
    if weekends:
        weekday = ((times // 86400) + 4) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        minute_of_day = (times % 86400) // 60
        closed = (
            ((weekday == 4) & (minute_of_day >= 22 * 60))
            | (weekday == 5)
            | ((weekday == 6) & (minute_of_day < 22 * 60))
        )
        reopen = np.flatnonzero(~closed[1:] & closed[:-1]) + 1
        gaps[reopen] += (
            rng.choice([-1.0, 1.0], size=reopen.size) * rng.uniform(10, 60, size=reopen.size) * vol
        )
    else:
        closed = np.zeros(n, dtype=bool)
    log_close = np.log(p0) + np.cumsum(gaps + returns)
    log_open = log_close - returns
    close = np.exp(log_close)
    open_ = np.exp(log_open)
    wick = np.abs(rng.standard_normal((2, n))) * scale * 0.6
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    out = np.zeros(int((~closed).sum()), dtype=RATES_DTYPE)
    keep = ~closed
    out["time"] = times[keep]
    o, c = np.round(open_[keep], digits), np.round(close[keep], digits)
    out["open"], out["close"] = o, c
    out["high"] = np.maximum(np.round(high[keep], digits), np.maximum(o, c))
    out["low"] = np.minimum(np.round(low[keep], digits), np.minimum(o, c))
    activity = 1.0 + np.abs(returns[keep]) / vol + 2.0 * burst[keep]
    out["tick_volume"] = np.maximum(1, (20 * activity + rng.integers(0, 20, size=keep.sum()))).astype(
        np.uint64
    )
    out["spread"] = (spread_pts * (1.0 + 1.5 * burst[keep]) + rng.integers(0, 3, size=keep.sum())).astype(
        np.int32
    )
    out.flags.writeable = False
    return out


__all__ = ["RATES_DTYPE", "synthetic_bars"]
