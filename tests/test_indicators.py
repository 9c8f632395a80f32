"""Indicators against hand-computed values and independent loop implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dtms.engine import indicators as ind

# --- independent loop-based references -------------------------------------------------------------


def ref_ema(x: list[float], p: int) -> list[float]:
    out = [math.nan] * len(x)
    if len(x) < p:
        return out
    alpha = 2 / (p + 1)
    prev = sum(x[:p]) / p
    out[p - 1] = prev
    for i in range(p, len(x)):
        prev = alpha * x[i] + (1 - alpha) * prev
        out[i] = prev
    return out


def ref_wilder(x: list[float], p: int) -> list[float]:
    out = [math.nan] * len(x)
    if len(x) < p:
        return out
    prev = sum(x[:p]) / p
    out[p - 1] = prev
    for i in range(p, len(x)):
        prev = ((p - 1) * prev + x[i]) / p
        out[i] = prev
    return out


def ref_rsi(c: list[float], p: int, wilder: bool) -> list[float]:
    out = [math.nan] * len(c)
    gains = [max(c[i] - c[i - 1], 0.0) for i in range(1, len(c))]
    losses = [max(c[i - 1] - c[i], 0.0) for i in range(1, len(c))]
    for i in range(p, len(c)):
        if wilder:
            ag = ref_wilder(gains[:i], p)[i - 1]
            al = ref_wilder(losses[:i], p)[i - 1]
        else:
            ag = sum(gains[i - p : i]) / p
            al = sum(losses[i - p : i]) / p
        if al == 0:
            out[i] = 50.0 if ag == 0 else 100.0
        else:
            out[i] = 100 - 100 / (1 + ag / al)
    return out


def ref_atr(h: list[float], lo: list[float], c: list[float], p: int, wilder: bool) -> list[float]:
    tr = [max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])) for i in range(1, len(h))]
    out = [math.nan] * len(h)
    for i in range(p, len(h)):
        out[i] = ref_wilder(tr[:i], p)[i - 1] if wilder else sum(tr[i - p : i]) / p
    return out


def ref_swings(h: list[float], lo: list[float], n: int) -> tuple[list[int], list[int]]:
    highs, lows = [], []
    for i in range(n, len(h) - n):
        if all(h[i] > h[j] for j in range(i - n, i)) and all(h[i] >= h[j] for j in range(i + 1, i + n + 1)):
            highs.append(i)
        if all(lo[i] < lo[j] for j in range(i - n, i)) and all(
            lo[i] <= lo[j] for j in range(i + 1, i + n + 1)
        ):
            lows.append(i)
    return highs, lows


def random_walk(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 0.5, n))
    high = close + rng.uniform(0, 0.6, n)
    low = close - rng.uniform(0, 0.6, n)
    return high, low, close


# --- hand-computed cases ---------------------------------------------------------------------------


def test_ema_hand_computed() -> None:
    """EMA(3) of 1..5: seed SMA(1,2,3) = 2, alpha = 0.5, then 3 and 4."""
    out = ind.ema([1, 2, 3, 4, 5], 3)
    assert np.isnan(out[:2]).all()
    np.testing.assert_allclose(out[2:], [2.0, 3.0, 4.0])


def test_wilder_hand_computed() -> None:
    """Wilder(2) of 2, 4, 6: seed 3, then (3 + 6)/2 = 4.5."""
    np.testing.assert_allclose(ind.wilder([2, 4, 6], 2)[1:], [3.0, 4.5])


def test_rsi_hand_computed_and_edge_values() -> None:
    """RSI(2) of 1, 2, 1: gains 1, 0; losses 0, 1 → 50; only rises → 100; flat → 50."""
    assert ind.rsi([1, 2, 1], 2)[2] == pytest.approx(50.0)
    assert ind.rsi([1, 2, 3, 4], 2)[-1] == 100.0
    assert ind.rsi([5, 5, 5, 5], 2)[-1] == 50.0
    assert np.isnan(ind.rsi([1, 2], 2)).all()


def test_true_range_uses_previous_close() -> None:
    """A gap up makes |high - previous close| the true range; the first bar has no TR."""
    tr = ind.true_range([10, 15], [9, 14], [9.5, 14.5])
    assert np.isnan(tr[0])
    assert tr[1] == pytest.approx(5.5)


def test_atr_wilder_seed_is_mean_of_first_trs() -> None:
    """ATR(2) with TRs 2, 4, 6: seed 3 at bar 2, then (3 + 6)/2 = 4.5."""
    h = [10, 12, 14, 16]
    lo = [10, 10, 10, 10]
    c = [10, 10, 10, 10]
    out = ind.atr(h, lo, c, 2)
    assert np.isnan(out[:2]).all()
    np.testing.assert_allclose(out[2:], [3.0, 4.5])
    np.testing.assert_allclose(ind.atr(h, lo, c, 2, "sma")[2:], [3.0, 5.0])


def test_bollinger_width_uses_population_sigma() -> None:
    """Closes 1, 3: sd = 1 (population), SMA 2 → width = 4sd/SMA = 2."""
    assert ind.bollinger_width([1, 3], 2, 2.0)[-1] == pytest.approx(2.0)


def test_macd_histogram_starts_at_bar_33() -> None:
    """MACD(12, 26, 9): the first histogram value is at index 33, so 36 bars give three values."""
    _, _, close = random_walk(1, 36)
    _, _, hist = ind.macd(close)
    assert np.isnan(hist[:33]).all()
    assert np.isfinite(hist[33:]).all()


def test_swing_high_equal_highs_first_is_the_swing() -> None:
    """Of two equal highs the first is the swing (strict before, ≥ after)."""
    h = [1, 2, 5, 5, 2, 1, 1]
    lo = [0, 1, 4, 4, 1, 0, 0]
    highs, _ = ind.swing_points(h, lo, 2)
    assert list(np.flatnonzero(highs)) == [2]


def test_confirmed_swings_exclude_the_newest_bar() -> None:
    """A peak two bars before t is not confirmed: its right neighbours must both lie before t (B-SIG-1)."""
    h = [1, 2, 3, 2, 1, 2, 6, 2, 1]
    lo = [x - 0.5 for x in h]
    sh, _ = ind.confirmed_swings(h, lo, 2, 50)
    assert list(sh) == [2]  # bar 6 needs bars 7 and 8 before t = 8
    sh2, _ = ind.confirmed_swings([*h, 0.5], [*lo, 0.0], 2, 50)
    assert list(sh2) == [2, 6]


def test_confirmed_swings_respect_lookback() -> None:
    """Swings older than t - lookback are not searched."""
    h = [1, 2, 3, 2, 1] + [1.0] * 10
    lo = [x - 0.5 for x in h]
    assert list(ind.confirmed_swings(h, lo, 2, 50)[0]) == [2]
    assert list(ind.confirmed_swings(h, lo, 2, 5)[0]) == []


# --- against the loop references -------------------------------------------------------------------


@pytest.mark.parametrize("period", [3, 12, 50, 200])
def test_ema_matches_loop_reference(period: int) -> None:
    """Vectorized EMA equals the recursive loop, including the SMA seed."""
    _, _, close = random_walk(2)
    np.testing.assert_allclose(ind.ema(close, period), ref_ema(list(close), period), rtol=1e-10)


def test_ema_long_series_does_not_overflow() -> None:
    """The closed form is computed in blocks, so long fast EMAs stay finite and exact."""
    x = np.sin(np.arange(5000) / 7.0) * 3 + 10
    np.testing.assert_allclose(ind.ema(x, 2), ref_ema(list(x), 2), rtol=1e-9)


@pytest.mark.parametrize("wilder", [True, False])
def test_rsi_matches_loop_reference(wilder: bool) -> None:
    """RSI(14) equals the loop implementation for both smoothings."""
    _, _, close = random_walk(3, 80)
    got = ind.rsi(close, 14, "wilder" if wilder else "sma")
    np.testing.assert_allclose(got, ref_rsi(list(close), 14, wilder), rtol=1e-9)


@pytest.mark.parametrize("wilder", [True, False])
def test_atr_matches_loop_reference(wilder: bool) -> None:
    """ATR(14) equals the loop implementation for both smoothings."""
    h, lo, c = random_walk(4, 80)
    got = ind.atr(h, lo, c, 14, "wilder" if wilder else "sma")
    np.testing.assert_allclose(got, ref_atr(list(h), list(lo), list(c), 14, wilder), rtol=1e-9)


def test_macd_matches_loop_reference() -> None:
    """MACD histogram = (EMA12 - EMA26) - EMA9 of the MACD line, by loops."""
    _, _, close = random_walk(5, 120)
    line = [a - b for a, b in zip(ref_ema(list(close), 12), ref_ema(list(close), 26), strict=True)]
    sig = [math.nan] * 25 + ref_ema(line[25:], 9)
    hist = [a - b for a, b in zip(line, sig, strict=True)]
    np.testing.assert_allclose(ind.macd(close)[2], hist, rtol=1e-9, atol=1e-12)


def test_bollinger_matches_loop_reference() -> None:
    """Width equals 4 * population sd / mean over each 20-bar window."""
    _, _, close = random_walk(6, 60)
    for i in range(19, 60):
        w = close[i - 19 : i + 1]
        mean = sum(w) / 20
        sd = math.sqrt(sum((v - mean) ** 2 for v in w) / 20)
        assert ind.bollinger_width(close)[i] == pytest.approx(4 * sd / mean, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.integers(0, 40), elements=st.integers(1, 6).map(float)),
    st.integers(1, 3),
)
def test_swing_points_match_loop_reference(h: np.ndarray, n: int) -> None:
    """Swing detection equals the loop definition on small integer-valued series (many ties)."""
    lo = h - 0.5
    highs, lows = ind.swing_points(h, lo, n)
    ref_h, ref_l = ref_swings(list(h), list(lo), n)
    assert list(np.flatnonzero(highs)) == ref_h
    assert list(np.flatnonzero(lows)) == ref_l
