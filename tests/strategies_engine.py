"""Builders and hypothesis strategies for engine tests: bars, quotes, symbols and trade views."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from dtms.config import Session, Structure, Volatility
from dtms.engine.market import BAR_DTYPE, RATES_DTYPE
from dtms.engine.regime import Regime, Thresholds
from dtms.engine.signals import Confluence, Evaluation, SignalName, SignalResult

#: Monday 2024-01-08 00:00 UTC: a session start, far from DST changes.
T0 = int(datetime(2024, 1, 8, tzinfo=UTC).timestamp())


def at(ts: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(ts, UTC)


def rates(
    times: Sequence[int],
    close: Sequence[float],
    *,
    open_: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    low: Sequence[float] | None = None,
    volume: Sequence[float] | float = 100,
) -> np.ndarray:
    """A copy_rates-shaped array; open defaults to the previous close, high/low to the body ± 0.1."""
    n = len(times)
    c = np.asarray(close, dtype=float)
    o = np.asarray(open_, dtype=float) if open_ is not None else np.r_[c[:1], c[:-1]]
    out = np.zeros(n, dtype=RATES_DTYPE)
    out["time"] = times
    out["open"] = o
    out["close"] = c
    out["high"] = np.asarray(high, dtype=float) if high is not None else np.maximum(o, c) + 0.1
    out["low"] = np.asarray(low, dtype=float) if low is not None else np.minimum(o, c) - 0.1
    out["tick_volume"] = volume
    return out


def bars(
    close: Sequence[float],
    *,
    step: int = 900,
    start: int = T0,
    open_: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    low: Sequence[float] | None = None,
    volume: Sequence[float] | float = 100,
) -> np.ndarray:
    """Final bars (BAR_DTYPE) with regular open times."""
    r = rates(
        [start + i * step for i in range(len(close))], close, open_=open_, high=high, low=low, volume=volume
    )
    out = np.zeros(len(r), dtype=BAR_DTYPE)
    for name in ("time", "open", "high", "low", "close", "tick_volume"):
        out[name] = r[name]
    out["final"] = True
    return out


def evaluation(
    score: float = 0.0,
    *,
    choch: bool = False,
    bos: bool = False,
    flip: bool = False,
    confluence: str = "NEUTRAL",
    bar_time: int | None = None,
    choch_bar: int | None = None,
) -> Evaluation:
    """An Evaluation with the given score and S1 flags (the other signals empty); `choch_bar`: the open time
    of the slow bar that made the CHOCH (with `choch`)."""
    s1 = SignalResult(
        SignalName.STRUCTURE,
        0.0,
        "",
        {"bos": 3.0 if bos else 0.0, "choch": -3.0 if choch else 0.0},
        {} if choch_bar is None else {"choch_bar": float(choch_bar)},
    )
    return Evaluation(
        signals=(s1,),
        weights={name: 1.0 for name in SignalName},
        score=score,
        confluence=Confluence(confluence),
        confluence_ratio=0.0,
        analysis="",
        regime=Regime(Session.NY, Volatility.NORMAL, Structure.TREND),
        thresholds=Thresholds(0.001, 45, 0.65),
        vwap_flip_active=flip,
        bar_time=bar_time,
    )
