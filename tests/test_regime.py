"""Regime classifier: sessions, volatility, structure and adaptive thresholds."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from dtms.config import Config, Session, Structure, Volatility
from dtms.engine.regime import (
    Regime,
    classify,
    classify_structure,
    classify_volatility,
    session_at,
    thresholds,
)
from tests.strategies_engine import bars

CFG = Config()


@pytest.mark.parametrize(
    ("hhmmss", "session", "off"),
    [
        ((0, 0, 0), Session.ASIAN, False),
        ((7, 59, 59), Session.ASIAN, False),
        ((8, 0, 0), Session.LONDON, False),
        ((12, 59, 59), Session.LONDON, False),
        ((13, 0, 0), Session.OVERLAP, False),
        ((16, 0, 0), Session.NY, False),
        ((20, 59, 59), Session.NY, False),
        ((21, 0, 0), Session.ASIAN, True),
        ((23, 59, 59), Session.ASIAN, True),
    ],
)
def test_sessions_are_half_open(hhmmss: tuple[int, int, int], session: Session, off: bool) -> None:
    """08:00 is LONDON, 16:00 NY, 21:00 off-hours ASIAN."""
    assert session_at(datetime(2024, 1, 8, *hhmmss, tzinfo=UTC)) == (session, off)


def _ohlc(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    close = np.full(len(ranges), 100.0)
    return close + ranges / 2, close - ranges / 2, close


def test_volatility_ratio_labels() -> None:
    """A last bar range far above the baseline is HIGH, far below LOW, else NORMAL."""
    base = np.ones(300)
    h, lo, c = _ohlc(np.r_[base[:-1], 20.0])
    assert classify_volatility(h, lo, c, CFG)[0] is Volatility.HIGH
    h, lo, c = _ohlc(np.r_[base[:-60], np.full(60, 0.01)])
    vol, ratio = classify_volatility(h, lo, c, CFG)
    assert vol is Volatility.LOW
    assert ratio is not None
    assert ratio < 0.7
    h, lo, c = _ohlc(base)
    assert classify_volatility(h, lo, c, CFG) == (Volatility.NORMAL, pytest.approx(1.0))


def test_volatility_baseline_is_the_last_280_atr_values() -> None:
    """ratio = ATR_t / mean(last 280 ATR values), independent of older bars."""
    from dtms.engine.indicators import atr

    rng = np.random.default_rng(7)
    r = rng.uniform(0.5, 2.0, 400)
    h, lo, c = _ohlc(r)
    values = atr(h, lo, c, 14)
    expected = values[-1] / np.mean(values[-280:])
    assert classify_volatility(h, lo, c, CFG)[1] == pytest.approx(expected)


def test_volatility_is_normal_with_few_bars() -> None:
    """Fewer than 30 bars: NORMAL without a ratio."""
    h, lo, c = _ohlc(np.r_[np.ones(28), 50.0])
    assert classify_volatility(h, lo, c, CFG) == (Volatility.NORMAL, None)


def test_structure_range_below_width_threshold() -> None:
    """Flat closes give RANGE; a steady climb gives TREND; under 20 bars TREND."""
    assert classify_structure(np.full(25, 100.0), CFG)[0] is Structure.RANGE
    assert classify_structure(np.linspace(100, 110, 25), CFG)[0] is Structure.TREND
    assert classify_structure(np.full(19, 100.0), CFG) == (Structure.TREND, None)


def test_structure_width_uses_population_sigma() -> None:
    """width = 4sd/mean over the last 20 closes."""
    close = np.r_[np.full(10, 99.9), np.full(10, 100.1)]
    assert classify_structure(close, CFG)[1] == pytest.approx(4 * 0.1 / 100)


def test_classify_combines_the_dimensions() -> None:
    """classify returns upper-case labels for all three dimensions."""
    regime = classify(bars(np.full(40, 100.0)), datetime(2024, 1, 8, 22, tzinfo=UTC), CFG)
    assert (regime.session, regime.off_hours, regime.structure) == (Session.ASIAN, True, Structure.RANGE)


def test_vwap_threshold_is_clamped() -> None:
    """ASIAN * LOW * RANGE = 2.73 * base, clamped to 1.8 * base; OVERLAP * HIGH = 0.56 stays."""
    hot = Regime(Session.ASIAN, Volatility.LOW, Structure.RANGE)
    assert thresholds(hot, "XAUUSD", CFG).vwap == pytest.approx(1.8 * 0.001)
    calm = Regime(Session.OVERLAP, Volatility.HIGH, Structure.TREND)
    assert thresholds(calm, "EURUSD", CFG).vwap == pytest.approx(0.56 * 0.0005)
    very_calm = Regime(Session.OVERLAP, Volatility.HIGH, Structure.TREND)
    cfg = Config.from_mapping({"regime": {"session_mult": {"overlap": 0.1}}})
    assert thresholds(very_calm, "unknown", cfg).vwap == pytest.approx(0.5 * 0.001)


def test_rsi_and_volume_thresholds_follow_volatility() -> None:
    """45 / 0.65 normally, 40 / 0.72 when LOW."""
    normal = thresholds(Regime(Session.NY, Volatility.NORMAL, Structure.TREND), "XAUUSD", CFG)
    low = thresholds(Regime(Session.NY, Volatility.LOW, Structure.TREND), "XAUUSD", CFG)
    assert (normal.rsi, normal.volume_flip, low.rsi, low.volume_flip) == (45, 0.65, 40, 0.72)


def test_flat_market_is_low_volatility_range() -> None:
    """Flat = LOW and RANGE only."""
    assert Regime(Session.NY, Volatility.LOW, Structure.RANGE).is_flat
    assert not Regime(Session.NY, Volatility.NORMAL, Structure.RANGE).is_flat
