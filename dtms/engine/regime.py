"""Regime classification (session, volatility, structure) and the adaptive thresholds derived from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from dtms.config import Config, Session, Structure, Volatility
from dtms.engine import indicators as ind


@dataclass(frozen=True)
class Regime:
    """Upper-case labels plus the numbers behind them (spec §3)."""

    session: Session
    volatility: Volatility
    structure: Structure
    atr_ratio: float | None = None
    bb_width: float | None = None
    off_hours: bool = False

    @property
    def is_flat(self) -> bool:
        """LOW volatility in a RANGE: the flat market of the 60 s cadence override (spec §3.3)."""
        return self.volatility is Volatility.LOW and self.structure is Structure.RANGE


@dataclass(frozen=True)
class Thresholds:
    """Adaptive thresholds for one symbol under one regime (spec §3.5)."""

    vwap: float
    rsi: float
    volume_flip: float


def session_at(now: datetime) -> tuple[Session, bool]:
    """The session of a UTC time and whether it is the 21:00-24:00 off-hours part of ASIAN (half-open)."""
    minute = now.hour * 60 + now.minute
    if minute < 8 * 60:
        return Session.ASIAN, False
    if minute < 13 * 60:
        return Session.LONDON, False
    if minute < 16 * 60:
        return Session.OVERLAP, False
    if minute < 21 * 60:
        return Session.NY, False
    return Session.ASIAN, True


def classify_volatility(
    high: NDArray[np.float64], low: NDArray[np.float64], close: NDArray[np.float64], config: Config
) -> tuple[Volatility, float | None]:
    """ATR ratio = current ATR14 / mean of the last 280 ATR values; NORMAL when data is short (spec §3.2)."""
    rc = config.regime
    if len(close) < rc.atr_min_bars:
        return Volatility.NORMAL, None
    values = ind.atr(high, low, close, rc.atr_period, config.indicators.smoothing)
    values = values[np.isfinite(values)]
    if len(values) < rc.atr_min_values:
        return Volatility.NORMAL, None
    baseline = float(np.mean(values[-rc.atr_baseline_values :]))
    if baseline <= 0:
        return Volatility.NORMAL, None
    ratio = float(values[-1]) / baseline
    if ratio < rc.atr_low:
        return Volatility.LOW, ratio
    if ratio > rc.atr_high:
        return Volatility.HIGH, ratio
    return Volatility.NORMAL, ratio


def classify_structure(close: NDArray[np.float64], config: Config) -> tuple[Structure, float | None]:
    """Bollinger(20, 2) width, population sd: below 0.004 RANGE, else TREND; TREND with < 20 bars (§3.3)."""
    rc = config.regime
    if len(close) < rc.bb_period:
        return Structure.TREND, None
    width = float(ind.bollinger_width(close[-rc.bb_period :], rc.bb_period, rc.bb_std)[-1])
    if not np.isfinite(width):
        return Structure.TREND, None
    return (Structure.RANGE if width < rc.bb_range_width else Structure.TREND), width


def classify(bars_m15: NDArray[np.void], now: datetime, config: Config) -> Regime:
    """The regime from final M15 bars (oldest first) and the UTC time of the check."""
    session, off_hours = session_at(now)
    volatility, ratio = classify_volatility(bars_m15["high"], bars_m15["low"], bars_m15["close"], config)
    structure, width = classify_structure(bars_m15["close"], config)
    return Regime(session, volatility, structure, ratio, width, off_hours)


def thresholds(regime: Regime, key: str, config: Config) -> Thresholds:
    """vwap = clamp(base * S * V * T, 0.5 base, 1.8 base); RSI and volume-flip thresholds by volatility."""
    rc = config.regime
    bases = config.symbols.vwap_base
    base = bases.get(key, bases["default"])
    raw = (
        base
        * rc.session_mult[regime.session]
        * rc.volatility_mult[regime.volatility]
        * rc.structure_mult[regime.structure]
    )
    vwap = min(max(raw, rc.clamp.min * base), rc.clamp.max * base)
    low = regime.volatility is Volatility.LOW
    return Thresholds(
        vwap=vwap,
        rsi=rc.rsi_threshold.low_vol if low else rc.rsi_threshold.normal,
        volume_flip=rc.volume_flip_threshold.low_vol if low else rc.volume_flip_threshold.normal,
    )


__all__ = [
    "Regime",
    "Session",
    "Structure",
    "Thresholds",
    "Volatility",
    "classify",
    "classify_structure",
    "classify_volatility",
    "session_at",
    "thresholds",
]
