"""The six signals on constructed bars for BUY and SELL, weights, score, confluence and warning counters."""

from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np
import pytest

from dtms.config import Config, Session, Structure, Volatility
from dtms.engine import indicators as ind
from dtms.engine.regime import Regime, Thresholds
from dtms.engine.signals import (
    Confluence,
    Evaluation,
    OrderFlowReading,
    SignalName,
    VwapView,
    WarningCounter,
    analysis_text,
    candle_signal,
    confluence,
    delta_signal,
    ema_signal,
    evaluate,
    fresh_flow,
    momentum_signal,
    signal_weights,
    structure_signal,
    update_cross_counter,
    update_flip_flag,
    update_warnings,
    vwap_signal,
    warning_hits,
)
from dtms.models import Direction
from tests.strategies_engine import T0, at, bars

CFG = Config()
BUY, SELL = Direction.BUY, Direction.SELL
THR = Thresholds(vwap=0.001, rsi=45, volume_flip=0.65)
NOW = at(T0 + 86400)

# Confirmed swing lows 95 (bar 2) and a higher low 97 (bar 6); confirmed swing highs 101 (bar 4), 102 (bar 8).
LOWS = [98, 97, 95, 97, 99, 98, 97, 98, 100, 99, 98.5, 98.5]
HIGHS = [x + 2 for x in LOWS]


def m15(
    last_close: float, lows: list[float] = LOWS, highs: list[float] = HIGHS, prefix: int = 0
) -> np.ndarray:
    """The swing bars, then a bar closing at `last_close`; `prefix` flat bars first (no swing among them)
    give the window enough bars for an ATR."""
    lows, highs = [99.0] * prefix + lows, [101.0] * prefix + highs
    close = [(h + lo) / 2 for h, lo in zip(highs, lows, strict=True)] + [last_close]
    return bars(close, high=[*highs, last_close + 0.1], low=[*lows, last_close - 0.1])


def mirror(b: np.ndarray) -> np.ndarray:
    out = b.copy()
    out["open"], out["close"] = 200 - b["open"], 200 - b["close"]
    out["high"], out["low"] = 200 - b["low"], 200 - b["high"]
    return out


# --- S1 structure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("close", "bos", "choch"),
    [(102.1, 3, 0), (96.9, -3, 0), (96.0, -3, -3), (99.0, 0, 0)],
)
def test_structure_buy(close: float, bos: float, choch: float) -> None:
    """BUY: above SH * 1.0003 is BOS +3; below SWL is -3; below HL - 0.5 ATR (here 96.5) adds CHOCH -3."""
    s = structure_signal(m15(close), BUY, CFG, atr=1.0)
    assert (s.parts["bos"], s.parts["choch"], s.raw) == (bos, choch, bos + choch)
    assert s.levels["sh"] == 102
    assert s.levels["swl"] == 97
    assert s.levels["hl"] == 97


@pytest.mark.parametrize("close", [102.1, 96.9, 96.0, 99.0])
def test_structure_sell_mirrors_buy(close: float) -> None:
    """SELL on mirrored prices scores what BUY scores on the originals (LH mirrors HL)."""
    buy = structure_signal(m15(close), BUY, CFG, atr=1.0)
    sell = structure_signal(mirror(m15(close)), SELL, CFG, atr=1.0)
    assert (sell.parts, sell.raw) == (buy.parts, buy.raw)
    assert sell.levels.get("choch_bar") == buy.levels.get("choch_bar")


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_choch_buffer_is_in_atr_of_the_slow_timeframe(direction: Direction) -> None:
    """The same close is a CHOCH with a small ATR and none with a large one; no ATR, no CHOCH part."""
    b = m15(96.0) if direction is BUY else mirror(m15(96.0))
    assert structure_signal(b, direction, CFG, atr=1.0).parts["choch"] == -3  # 1.0 beyond HL: > 0.5 ATR
    assert structure_signal(b, direction, CFG, atr=2.5).parts["choch"] == 0  # < 0.5 of 2.5
    assert structure_signal(b, direction, CFG).parts["choch"] == 0
    wide = Config.from_mapping({"structure": {"choch_buffer_atr": 1.5}})
    assert structure_signal(b, direction, wide, atr=1.0).parts["choch"] == 0


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_choch_bar_is_where_the_run_of_closes_beyond_the_level_began(direction: Direction) -> None:
    """Bars 12 and 13 close beyond HL - 0.5 ATR: bar 12 made the break; a close back inside resets it."""
    lows, highs = [*LOWS, 95.0], [*HIGHS, 97.0]  # bar 12 closes at 96.0, beyond 96.5
    b = m15(95.5, lows, highs)
    if direction is SELL:
        b = mirror(b)
    s = structure_signal(b, direction, CFG, atr=1.0)
    assert s.parts["choch"] == -3
    assert s.levels["choch_bar"] == b["time"][12]
    back = m15(95.5, [*LOWS, 96.9], [*HIGHS, 98.9])  # bar 12 closes at 97.9, inside: bar 13 breaks
    back = back if direction is BUY else mirror(back)
    assert structure_signal(back, direction, CFG, atr=1.0).levels["choch_bar"] == back["time"][13]
    assert "choch_bar" not in structure_signal(m15(99.0), direction, CFG, atr=1.0).levels


def test_structure_current_bar_is_not_a_swing() -> None:
    """The newest bar t makes a new high yet BOS fires: t never enters swing detection (B-SIG-1)."""
    s = structure_signal(m15(103.0), BUY, CFG)
    assert s.raw == 3
    assert s.levels["sh"] == 102


def test_structure_unconfirmed_swing_is_ignored() -> None:
    """A peak only one bar before t cannot be SH: its right neighbours are not both final before t."""
    highs = [*HIGHS[:-1], 110.0]  # bar 11 spikes; bar 12 = t
    lows = [*LOWS[:-1], 100.0]
    s = structure_signal(m15(104.0, lows, highs), BUY, CFG)
    assert s.levels["sh"] == 102
    assert s.parts["bos"] == 3


def test_structure_flags_and_insufficient_data() -> None:
    """CHOCH-against and BOS-resume come from the parts; too few bars score 0 and say so."""
    ev = _evaluation(m15(95.0, prefix=20))  # ATR ~2: 95 is beyond 97 - 0.5 ATR
    assert ev.atr_m15 is not None
    assert ev.choch_against
    assert ev.choch_bar == int(m15(95.0, prefix=20)["time"][-1])
    assert not _evaluation(m15(96.5, prefix=20)).choch_against
    assert not ev.bos_resume
    assert _evaluation(m15(102.1)).bos_resume
    short = structure_signal(bars([1, 2, 3]), BUY, CFG)
    assert short.raw == 0
    assert short.insufficient_data


# --- S2 VWAP flip and volume ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "slope", "counter", "flip"),
    [
        (BUY, -0.002, 2, -2),
        (BUY, 0.002, 2, 1),
        (SELL, 0.002, 2, -2),
        (SELL, -0.002, 3, 1),
        (BUY, -0.002, 1, 0),
        (BUY, -0.0009, 5, 0),
    ],
)
def test_vwap_flip_part(direction: Direction, slope: float, counter: int, flip: float) -> None:
    """|slope| ≥ threshold and counter ≥ 2: adverse -2, favourable +1; otherwise 0."""
    s = vwap_signal(VwapView(100.0, slope, counter), None, direction, THR, CFG)
    assert s.parts["flip"] == flip
    assert s.raw == flip


def test_vwap_undefined_scores_zero() -> None:
    """No VWAP yet this session: 0 and insufficient data."""
    s = vwap_signal(VwapView(None, -0.01, 5), None, BUY, THR, CFG)
    assert s.raw == 0
    assert s.insufficient_data


@pytest.mark.parametrize(
    ("buy", "sell", "thr", "part"),
    [(30, 70, 0.65, -1), (40, 60, 0.65, -0.5), (70, 30, 0.65, 1), (50, 50, 0.65, 0), (30, 70, 0.72, -0.5)],
)
def test_volume_part_buy_and_sell(buy: float, sell: float, thr: float, part: float) -> None:
    """Opposing share > threshold -1, > 0.55 -0.5, < 0.35 +1; SELL reads the buy share."""
    flow = OrderFlowReading(buy, sell, 0.0, NOW)
    t = Thresholds(0.001, 45, thr)
    assert vwap_signal(VwapView(100.0), flow, BUY, t, CFG).parts["volume"] == part
    swapped = OrderFlowReading(sell, buy, 0.0, NOW)
    assert vwap_signal(VwapView(100.0), swapped, SELL, t, CFG).parts["volume"] == part


def test_cross_counter_counts_adverse_closes_per_bar() -> None:
    """BUY closes below VWAP count up, others count down to 0; SELL mirrors; undefined VWAP leaves it."""
    assert update_cross_counter(0, 99, 100, BUY) == 1
    assert update_cross_counter(1, 101, 100, BUY) == 0
    assert update_cross_counter(0, 101, 100, BUY) == 0
    assert update_cross_counter(2, 101, 100, SELL) == 3
    assert update_cross_counter(2, 101, None, SELL) == 2


def test_flip_flag_sets_and_clears_with_hysteresis() -> None:
    """Set at ≥ threshold with counter ≥ 2; kept down to 0.7 * threshold; cleared below or when favourable."""
    assert update_flip_flag(False, -0.001, 0.001, 2, BUY, CFG)
    assert not update_flip_flag(False, -0.001, 0.001, 1, BUY, CFG)
    assert update_flip_flag(True, -0.0008, 0.001, 0, BUY, CFG)
    assert not update_flip_flag(True, -0.0006, 0.001, 5, BUY, CFG)
    assert not update_flip_flag(True, 0.002, 0.001, 5, BUY, CFG)
    assert update_flip_flag(False, 0.001, 0.001, 2, SELL, CFG)


# --- S3 momentum ---------------------------------------------------------------------------------


def _ref_momentum(close: np.ndarray, d: Direction) -> tuple[float, float]:
    from tests.test_indicators import ref_ema, ref_rsi

    r = ref_rsi(list(close), 14, True)
    rsi, trend = r[-1], r[-1] - r[-3]
    if d is BUY:
        part = (
            -2
            if rsi < 45 and trend < 0
            else -1
            if rsi > 70 and trend > 0
            else 1
            if rsi > 50 and trend > 0
            else 0
        )
    else:
        part = (
            -2
            if rsi > 55 and trend > 0
            else -1
            if rsi < 30 and trend < 0
            else 1
            if rsi < 50 and trend < 0
            else 0
        )
    line = [a - b for a, b in zip(ref_ema(list(close), 12), ref_ema(list(close), 26), strict=True)]
    sig = [np.nan] * 25 + ref_ema(line[25:], 9)
    h = [a - b for a, b in zip(line[-3:], sig[-3:], strict=True)]
    falling, rising = h[2] < h[1] < h[0], h[2] > h[1] > h[0]
    macd = (-1 if falling else 1 if rising else 0) * d.sign
    return part, macd


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("direction", [BUY, SELL])
def test_momentum_matches_reference_rules(seed: int, direction: Direction) -> None:
    """RSI and MACD parts equal an independent loop implementation of the rules."""
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, 60))
    s = momentum_signal(close, direction, THR, CFG)
    assert (s.parts["rsi"], s.parts["macd"]) == _ref_momentum(close, direction)


def test_momentum_hand_cases() -> None:
    """A deepening slide: BUY -2 (RSI) and -1 (MACD); SELL -1 (RSI < 30 still falling: exhaustion) and +1."""
    close = np.r_[100 + np.sin(np.arange(40)), 100 - np.arange(1, 21) ** 1.5 / 5]
    assert ind.rsi(close)[-1] < 45
    buy = momentum_signal(close, BUY, THR, CFG)
    sell = momentum_signal(close, SELL, THR, CFG)
    assert (buy.parts["rsi"], buy.parts["macd"]) == (-2, -1)
    assert (sell.parts["rsi"], sell.parts["macd"]) == (-1, 1)


def test_momentum_needs_36_bars_for_macd() -> None:
    """With 35 bars the MACD part is 0 and the signal says data is short."""
    close = 100 + np.arange(35.0)
    s = momentum_signal(close, BUY, THR, CFG)
    assert s.parts["macd"] == 0
    assert s.insufficient_data


# --- S4 EMA alignment ------------------------------------------------------------------------------


def test_ema_both_with_and_both_against() -> None:
    """A steady rise: BUY +1, SELL -1."""
    close = np.linspace(100, 130, 260)
    assert ema_signal(close, BUY, CFG).raw == 1
    assert ema_signal(close, SELL, CFG).raw == -1


def test_ema_divergence_is_direction_aware() -> None:
    """Fast EMA turning down in an established rise: BUY -1.5; the same bars for a SELL score 0 (B-SIG-4)."""
    close = np.r_[np.linspace(100, 140, 240), np.linspace(140, 120, 20)]
    fast, slow = ind.ema(close, 50), ind.ema(close, 200)
    assert fast[-1] < fast[-11]
    assert slow[-1] > slow[-11]
    assert ema_signal(close, BUY, CFG).raw == -1.5
    assert ema_signal(close, SELL, CFG).raw == 0


def _ema_path_closes() -> np.ndarray:
    """Closes whose EMA50 is 100 at t-10, 101 at t-9 and 100.5 at t."""
    alpha = 2 / 51
    path = [100.0, 101.0, *np.linspace(101.0, 100.5, 10)[1:]]
    closes = [100.0] * 220
    for prev, new in itertools.pairwise(path):
        closes.append(prev + (new - prev) / alpha)
    return np.asarray(closes)


def test_ema_slope_spans_ten_intervals() -> None:
    """EMA50 rose over 10 intervals but fell over 9: the 10-interval slope decides (B-SIG-6)."""
    close = _ema_path_closes()
    fast = ind.ema(close, 50)
    assert fast[-1] > fast[-11]
    assert fast[-1] < fast[-10]
    assert ema_signal(close, BUY, CFG).raw == 1
    nine = Config.from_mapping({"ema": {"slope_lookback": 9}})
    assert ema_signal(close, BUY, nine).raw < 0


def test_ema_needs_210_bars() -> None:
    """With 209 bars the signal is 0 and marked insufficient."""
    s = ema_signal(np.linspace(100, 120, 209), BUY, CFG)
    assert s.raw == 0
    assert s.insufficient_data


# --- S5 delta pressure -----------------------------------------------------------------------------


@pytest.mark.parametrize(("z", "buy", "sell"), [(0.8, 1, -1), (-0.8, -1, 1), (0.5, 0, 0), (0.3, 0, 0)])
def test_delta_pressure(z: float, buy: float, sell: float) -> None:
    """|delta_z| > 0.5 scores ±1 signed by direction; at or below, 0."""
    flow = OrderFlowReading(1, 1, z, NOW)
    assert delta_signal(flow, BUY, CFG).raw == buy
    assert delta_signal(flow, SELL, CFG).raw == sell


def test_delta_without_source_is_zero() -> None:
    """No source: 0, marked as missing data."""
    s = delta_signal(None, BUY, CFG)
    assert s.raw == 0
    assert s.insufficient_data


class _Source:
    def __init__(self, reading: OrderFlowReading | None) -> None:
        self.reading = reading
        self.asked: list[str] = []

    def read(self, exchange_symbol: str) -> OrderFlowReading | None:
        self.asked.append(exchange_symbol)
        return self.reading


def test_fresh_flow_needs_explicit_mapping_and_fresh_data() -> None:
    """Only mapped symbols are read; readings older than 60 s count as absent."""
    cfg = Config.from_mapping({"order_flow": {"symbol_map": {"BTCUSD": "BTCUSDT"}}})
    src = _Source(OrderFlowReading(1, 2, 0.9, NOW - timedelta(seconds=60)))
    assert fresh_flow(src, "XAUUSD", cfg, NOW) is None
    assert src.asked == []
    assert fresh_flow(src, "BTCUSD", cfg, NOW) is src.reading
    assert src.asked == ["BTCUSDT"]
    assert fresh_flow(src, "BTCUSD", cfg, NOW + timedelta(seconds=1)) is None
    assert fresh_flow(None, "BTCUSD", cfg, NOW) is None


# --- S6 candle conviction ---------------------------------------------------------------------------


def m5(o: float, h: float, lo: float, c: float) -> np.ndarray:
    """20 bars of range 1.0 around 101, then the bar under test."""
    n = 20
    return bars(
        [101.0] * n + [c], step=300, open_=[101.0] * n + [o], high=[101.5] * n + [h], low=[100.5] * n + [lo]
    )


BEAR = (101.0, 101.05, 100.05, 100.1)  # body 0.9 of range 1.0


@pytest.mark.parametrize(
    ("bar", "vwap", "direction", "raw"),
    [
        (BEAR, 100.5, BUY, -2),  # opposes and closes through VWAP
        (BEAR, 99.9, BUY, -1),  # VWAP 0.15 below the low: near enough, not crossed
        (BEAR, 99.0, BUY, 0),  # VWAP too far
        (BEAR, 100.5, SELL, 0),  # in the SELL's favour (B-SIG-3)
        ((101.0, 101.2, 100.1, 100.7), 100.5, BUY, 0),  # body 0.3 of 1.1: not a conviction bar
        ((101.0, 101.05, 100.75, 100.8), 100.9, BUY, 0),  # range 0.3 < 0.8 ATR
        ((100.1, 101.05, 100.05, 101.0), 100.5, SELL, -2),
        ((100.1, 101.05, 100.05, 101.0), 101.1, SELL, -1),
        ((100.5, 101.0, 100.0, 100.5), 100.5, BUY, 0),  # doji
    ],
)
def test_candle_conviction(
    bar: tuple[float, float, float, float], vwap: float, direction: Direction, raw: float
) -> None:
    """Three qualifiers, then -2 through VWAP or -1, only against the trade (B-SIG-3)."""
    assert candle_signal(m5(*bar), vwap, direction, CFG).raw == raw


def test_candle_without_vwap_is_zero() -> None:
    """VWAP undefined: 0."""
    s = candle_signal(m5(*BEAR), None, BUY, CFG)
    assert s.raw == 0
    assert s.insufficient_data


# --- weights, score, confluence, analysis ----------------------------------------------------------


def test_adaptive_weights_apply_together() -> None:
    """Structure in an Asian high-volatility range: 3.0 * 0.7 * 1.2 * 0.8 = 2.016 (B-REG-1)."""
    w = signal_weights(Regime(Session.ASIAN, Volatility.HIGH, Structure.RANGE), CFG)
    assert w[SignalName.STRUCTURE] == pytest.approx(2.016)
    assert w[SignalName.VWAP_VOLUME] == pytest.approx(2.0 * 1.3 * 0.9 * 0.8)


@pytest.mark.parametrize(
    ("regime", "structure_weight"),
    [
        (Regime(Session.LONDON, Volatility.NORMAL, Structure.RANGE), 2.1),
        (Regime(Session.LONDON, Volatility.HIGH, Structure.TREND), 3.6),
        (Regime(Session.ASIAN, Volatility.NORMAL, Structure.TREND, off_hours=True), 2.4),
        (Regime(Session.NY, Volatility.LOW, Structure.TREND), 3.0),
    ],
)
def test_each_adaptive_row_applies_alone(regime: Regime, structure_weight: float) -> None:
    """RANGE, HIGH_VOLATILITY and ASIAN (off-hours included) each change the weight; LOW does not."""
    assert signal_weights(regime, CFG)[SignalName.STRUCTURE] == pytest.approx(structure_weight)


def test_lower_case_config_rows_still_apply() -> None:
    """Rows written in lower case in the config reach the weights (the original's casing bug, B-REG-1)."""
    cfg = Config.from_mapping({"signals": {"adaptive_weights": {"range": {"structure": 0.5}}}})
    w = signal_weights(Regime(Session.NY, Volatility.NORMAL, Structure.RANGE), cfg)
    assert w[SignalName.STRUCTURE] == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("weighted", "label", "ratio"),
    [
        ([3, -1], Confluence.FAVOURABLE, 0.75),
        ([1, -1], Confluence.MIXED, 0.5),
        ([], Confluence.NEUTRAL, 0.0),
        ([0, 0], Confluence.NEUTRAL, 0.0),
        ([-3, 1], Confluence.UNFAVOURABLE, 0.75),
        ([-7, 3], Confluence.UNFAVOURABLE, 0.7),
    ],
)
def test_confluence(weighted: list[float], label: Confluence, ratio: float) -> None:
    """ratio = max(pos, neg)/(pos + neg); ≥ 0.7 picks the side, else MIXED; nothing is NEUTRAL."""
    assert confluence(weighted) == (label, pytest.approx(ratio))


def test_analysis_text() -> None:
    """Score band, confluence band and key signals joined by ' | '."""
    ev = _evaluation(m15(95.0, prefix=20))
    text = analysis_text(-9.0, 0.9, [-9.0], ev.signals)
    assert text == (
        "Strong unfavourable | High confluence (UNFAVOURABLE) | "
        "Key signals: structure=-6, vwap_volume=-2, momentum=-2, candle_conviction=-2"
    )
    assert analysis_text(0.5, 0.6, [1.0, -0.5], ()) == "Neutral | Moderate confluence (FAVOURABLE)"
    assert analysis_text(0.0, 0.0, [], ()) == "Neutral | Mixed signals"


def _evaluation(m15_bars: np.ndarray, regime: Regime | None = None) -> Evaluation:
    regime = regime or Regime(Session.NY, Volatility.NORMAL, Structure.TREND)
    return evaluate(m5(*BEAR), m15_bars, BUY, regime, THR, VwapView(100.5, -0.002, 2, True), None, CFG)


def test_evaluate_sums_weighted_raw_scores() -> None:
    """score = Σ raw * weight; the extremes with base weights are -35.25 and +19.5."""
    ev = _evaluation(m15(96.0))
    assert ev.score == pytest.approx(sum(s.raw * ev.weights[s.name] for s in ev.signals))
    w = CFG.signals.weights
    assert -6 * w.structure - 3 * w.vwap_volume - 3 * w.momentum - 1.5 * w.ema_alignment - 1 - 2 == -35.25
    assert 3 * w.structure + 2 * w.vwap_volume + 2 * w.momentum + 1 * w.ema_alignment + 1 + 0 == 19.5


def test_evaluate_is_deterministic() -> None:
    """Same inputs, same outputs."""
    assert _evaluation(m15(96.0)) == _evaluation(m15(96.0))


# --- warning counters -------------------------------------------------------------------------------


def test_warning_hits_count_sub_parts() -> None:
    """BOS -3 and CHOCH -3 give 2 structural warnings; a -2 flip and a -1 volume part 2 vwap (B-SIG-5)."""
    ev = _evaluation(m15(95.0, prefix=20))
    hits = warning_hits(ev, CFG)
    assert hits["structural"] == 2
    assert hits["vwap"] == 1
    flow = OrderFlowReading(30, 70, 0.0, NOW)
    ev2 = evaluate(
        m5(*BEAR),
        m15(99.0),
        BUY,
        Regime(Session.NY, Volatility.NORMAL, Structure.TREND),
        THR,
        VwapView(100.5, -0.002, 2),
        flow,
        CFG,
    )
    assert ev2.part(SignalName.VWAP_VOLUME, "volume") == -1
    assert warning_hits(ev2, CFG)["vwap"] == 2


def test_warnings_decay_one_per_expiry() -> None:
    """A warned type holds its count for 1800 s, then drops by one per expired check until 0."""
    w = update_warnings({}, {"vwap": 2, "momentum": 0}, NOW, CFG)
    assert w["vwap"] == WarningCounter(2, NOW + timedelta(seconds=1800))
    assert w["momentum"] == WarningCounter()
    later = NOW + timedelta(seconds=1799)
    assert update_warnings(w, {}, later, CFG)["vwap"].count == 2
    t1 = NOW + timedelta(seconds=1800)
    w1 = update_warnings(w, {}, t1, CFG)
    assert w1["vwap"] == WarningCounter(1, t1 + timedelta(seconds=1800))
    w2 = update_warnings(w1, {}, t1 + timedelta(seconds=1800), CFG)
    assert w2["vwap"] == WarningCounter(0, None)
    renewed = update_warnings(w1, {"vwap": 1}, t1 + timedelta(seconds=5), CFG)
    assert renewed["vwap"] == WarningCounter(1, t1 + timedelta(seconds=1805))
