"""Action planning: tighten-only stops, D, freeze band, breakeven fallback, volumes, hedge and re-add."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dtms.config import Config
from dtms.engine.actions import (
    Planned,
    Quote,
    Skipped,
    SymbolSpec,
    TradeSnapshot,
    floor_volume,
    plan_breakeven,
    plan_hedge,
    plan_partial_close,
    plan_re_add,
    plan_tighten,
    plan_trail,
    round_stop,
    stop_distance,
    tighten_to,
)
from dtms.engine.machine import ActionType
from dtms.models import Direction

CFG = Config()
BUY, SELL = Direction.BUY, Direction.SELL
# EURUSD-like: 5 digits, stops level 10 points, freeze 0 → D = 12 points = 0.00012.
FX = SymbolSpec(
    point=0.00001,
    digits=5,
    tick_size=0.00001,
    volume_min=0.01,
    volume_max=50.0,
    volume_step=0.01,
    stops_level=10,
)
Q = Quote(bid=1.10000, ask=1.10010)


def trade(direction: Direction = BUY, **kw: object) -> TradeSnapshot:
    base: dict[str, object] = {
        "entry": 1.10200 if direction is BUY else 1.09800,
        "r": 0.00500,
        "sl": None,
        "tp": None,
        "volume": 1.0,
        "closed_volume": 0.0,
    }
    base.update(kw)
    return TradeSnapshot(direction, **base)  # type: ignore[arg-type]


def test_stop_distance() -> None:
    """D = (max(stops, freeze) + 2) * point."""
    assert stop_distance(FX) == pytest.approx(0.00012)
    assert stop_distance(SymbolSpec(0.01, 2, 0.01, 0.01, 10, 0.01, 5, 20)) == pytest.approx(0.22)


def test_round_stop_away_from_price() -> None:
    """BUY stops round down, SELL stops round up, to the tick size."""
    spec = SymbolSpec(0.01, 2, 0.05, 0.01, 10, 0.01)
    assert round_stop(100.07, spec, BUY) == 100.05
    assert round_stop(100.07, spec, SELL) == 100.10
    assert round_stop(100.05, spec, SELL) == 100.05


@pytest.mark.parametrize(("direction", "expected"), [(BUY, 1.09850), (SELL, 1.10160)])
def test_tighten_target_is_close_price_minus_03r(direction: Direction, expected: float) -> None:
    """target = close price - d * 0.3R (bid for a BUY, ask for a SELL); TP is sent unchanged."""
    p = plan_tighten(trade(direction, tp=1.2 if direction is BUY else 1.0), Q, FX, CFG)
    assert isinstance(p, Planned)
    assert p.action is ActionType.TIGHTEN_SL
    assert p.params["sl"] == pytest.approx(expected)
    assert p.params["tp"] == (1.2 if direction is BUY else 1.0)


@pytest.mark.parametrize(("direction", "sl"), [(BUY, 1.09900), (SELL, 1.10100)])
def test_tighten_never_loosens(direction: Direction, sl: float) -> None:
    """A current SL already tighter than the target is kept: SKIPPED "already tighter"."""
    p = plan_tighten(trade(direction, sl=sl), Q, FX, CFG)
    assert p == Skipped(ActionType.TIGHTEN_SL, "already tighter")


@pytest.mark.parametrize(("direction", "expected"), [(BUY, 1.09988), (SELL, 1.10022)])
def test_tighten_moves_target_out_to_d(direction: Direction, expected: float) -> None:
    """With a tiny R the target lies inside D; it is moved out to exactly D from the close price."""
    p = plan_tighten(trade(direction, r=0.00010), Q, FX, CFG)
    assert isinstance(p, Planned)
    assert p.params["sl"] == pytest.approx(expected)


@pytest.mark.parametrize(("direction", "expected"), [(BUY, 1.09750), (SELL, 1.10260)])
def test_tighten_never_nearer_than_the_fast_atr_floor(direction: Direction, expected: float) -> None:
    """0.3R = 15 points < 1 ATR = 25 points: the stop goes 25 points from the close price (bid/ask)."""
    p = plan_tighten(trade(direction), Q, FX, CFG, atr_fast=0.00250)
    assert isinstance(p, Planned)
    assert p.params["sl"] == pytest.approx(expected)
    small = plan_tighten(trade(direction), Q, FX, CFG, atr_fast=0.00010)  # floor below 0.3R: 0.3R wins
    assert isinstance(small, Planned)
    assert small.params["sl"] == pytest.approx(1.09850 if direction is BUY else 1.10160)
    off = Config.from_mapping({"actions": {"tighten_min_atr": 0}})
    assert plan_tighten(trade(direction), Q, FX, off, atr_fast=0.00250) == small
    fallback = plan_breakeven(trade(direction), Q, FX, CFG, atr_fast=0.00250)  # losing trade: tighten
    assert isinstance(fallback, Planned)
    assert fallback.params["sl"] == pytest.approx(expected)


def test_tighten_moved_out_then_not_tighter_is_skipped() -> None:
    """After moving out to D, the tighter test runs again."""
    p = plan_tighten(trade(BUY, r=0.00010, sl=1.09990), Q, FX, CFG)
    assert p == Skipped(ActionType.TIGHTEN_SL, "already tighter")


def test_frozen_sl_is_skipped() -> None:
    """A current SL inside the freeze band cannot be changed: SKIPPED "frozen"."""
    spec = SymbolSpec(0.00001, 5, 0.00001, 0.01, 50, 0.01, stops_level=0, freeze_level=30)
    assert plan_tighten(trade(BUY, sl=1.09980), Q, spec, CFG) == Skipped(ActionType.TIGHTEN_SL, "frozen")
    assert plan_tighten(trade(SELL, tp=1.09990), Q, spec, CFG) == Skipped(ActionType.TIGHTEN_SL, "frozen")
    assert isinstance(plan_tighten(trade(BUY, sl=1.09800), Q, spec, CFG), Planned)


def test_tighten_without_r_is_skipped() -> None:
    """No R, no target."""
    assert plan_tighten(trade(BUY, r=None), Q, FX, CFG) == Skipped(ActionType.TIGHTEN_SL, "R unknown")


@pytest.mark.parametrize(
    ("volume", "policy", "expected"),
    [
        (1.0, "skip", Planned(ActionType.PARTIAL_CLOSE, {"volume": 0.5})),
        (0.03, "skip", Planned(ActionType.PARTIAL_CLOSE, {"volume": 0.01})),
        (0.01, "skip", Skipped(ActionType.PARTIAL_CLOSE, "below_min")),
        (0.01, "close_all", Planned(ActionType.CLOSE_ALL, {}, "partial_close_below_min")),
        (0.77, "skip", Planned(ActionType.PARTIAL_CLOSE, {"volume": 0.38})),
    ],
)
def test_partial_close_volume(volume: float, policy: str, expected: object) -> None:
    """floor(0.5 * volume / step) * step; below volume_min follows partial_close.below_min."""
    cfg = Config.from_mapping({"partial_close": {"below_min": policy}})
    assert plan_partial_close(trade(volume=volume), FX, cfg) == expected


def test_partial_close_remainder_below_min_is_skipped() -> None:
    """A close that would leave less than volume_min is not sent (possible with a fraction above 0.5)."""
    spec = SymbolSpec(0.01, 2, 0.01, volume_min=0.3, volume_max=10, volume_step=0.1)
    cfg = Config.from_mapping({"partial_close": {"fraction": 0.8}})
    assert plan_partial_close(trade(volume=1.0), spec, cfg) == Skipped(ActionType.PARTIAL_CLOSE, "below_min")
    assert plan_partial_close(trade(volume=2.0), spec, cfg) == Planned(
        ActionType.PARTIAL_CLOSE, {"volume": 1.6}
    )


@pytest.mark.parametrize(("direction", "entry"), [(BUY, 1.09500), (SELL, 1.10500)])
def test_breakeven_when_valid(direction: Direction, entry: float) -> None:
    """A winning trade gets its SL at entry when that keeps D from price."""
    p = plan_breakeven(trade(direction, entry=entry), Q, FX, CFG)
    assert p == Planned(ActionType.MOVE_SL_BREAKEVEN, {"sl": entry, "tp": None})


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_breakeven_on_losing_trade_falls_back_to_tighten(direction: Direction) -> None:
    """Entry on the wrong side of price is invalid: tighten_sl instead, noted breakeven_fallback (B-FSM-3)."""
    p = plan_breakeven(trade(direction), Q, FX, CFG)
    assert isinstance(p, Planned)
    assert p.action is ActionType.TIGHTEN_SL
    assert p.note == "breakeven_fallback"
    assert direction.sign * (Q.close_price(direction) - p.params["sl"]) > 0


def test_breakeven_not_tighter_is_skipped_and_offset_applies() -> None:
    """Breakeven below a tighter SL is skipped; the offset moves the target in points."""
    assert plan_breakeven(trade(BUY, entry=1.09500, sl=1.09600), Q, FX, CFG) == Skipped(
        ActionType.MOVE_SL_BREAKEVEN, "already tighter"
    )
    cfg = Config.from_mapping({"breakeven": {"offset_points": 20}})
    p = plan_breakeven(trade(SELL, entry=1.10500), Q, FX, cfg)
    assert isinstance(p, Planned)
    assert p.params["sl"] == pytest.approx(1.10480)


def test_hedge_parameters() -> None:
    """Opposite side, half the volume, SL 0.5 ATR from the reference price (ask for a BUY hedge), no TP."""
    p = plan_hedge(trade(SELL, volume=0.35), Q, FX, 0.00200, CFG, hedging_account=True, trading_active=True)
    assert isinstance(p, Planned)
    assert p.action is ActionType.OPEN_HEDGE
    assert p.params["direction"] is BUY
    assert p.params["volume"] == 0.17
    assert p.params["sl"] == pytest.approx(1.10010 - 0.00100)
    assert p.params["tp"] is None
    p2 = plan_hedge(trade(BUY), Q, FX, 0.00200, CFG, hedging_account=True, trading_active=True)
    assert isinstance(p2, Planned)
    assert p2.params["direction"] is SELL
    assert p2.params["sl"] == pytest.approx(1.10100)


def test_hedge_sl_moved_out_to_d() -> None:
    """A tiny ATR puts the hedge SL inside D; it is moved out to D from the hedge's close price."""
    p = plan_hedge(trade(BUY), Q, FX, 0.00001, CFG, hedging_account=True, trading_active=True)
    assert isinstance(p, Planned)
    assert p.params["sl"] == pytest.approx(Q.ask + 0.00012)


@pytest.mark.parametrize(
    ("kwargs", "cfg", "reason"),
    [
        ({"hedging_account": False, "trading_active": True}, {}, "netting_account"),
        (
            {"hedging_account": True, "trading_active": True},
            {"hedge": {"enabled": False}},
            "hedging_disabled",
        ),
        ({"hedging_account": True, "trading_active": False}, {}, "gated"),
    ],
)
def test_hedge_fallback_reduces(kwargs: dict[str, Any], cfg: dict[str, Any], reason: str) -> None:
    """Netting account, hedging off or gated: a partial close of the hedge volume, noted with the reason."""
    p = plan_hedge(trade(BUY), Q, FX, 0.002, Config.from_mapping(cfg), **kwargs)
    assert p == Planned(ActionType.PARTIAL_CLOSE, {"volume": 0.5}, f"hedge_fallback: {reason}")


def test_hedge_fallback_without_atr_or_volume_and_close_all_policy() -> None:
    """No ATR or too little volume falls back; `hedge.fallback = close_all` closes everything instead."""
    p = plan_hedge(trade(BUY), Q, FX, None, CFG, hedging_account=True, trading_active=True)
    assert isinstance(p, Planned)
    assert p.note == "hedge_fallback: atr_unavailable"
    small = plan_hedge(trade(BUY, volume=0.01), Q, FX, 0.002, CFG, hedging_account=True, trading_active=True)
    assert small == Skipped(ActionType.PARTIAL_CLOSE, "below_min")
    cfg = Config.from_mapping({"hedge": {"fallback": "close_all"}})
    p3 = plan_hedge(trade(BUY), Q, FX, None, cfg, hedging_account=True, trading_active=True)
    assert p3 == Planned(ActionType.CLOSE_ALL, {}, "hedge_fallback: atr_unavailable")


def test_re_add() -> None:
    """Half the closed volume, same side, the main SL/TP; skipped below min or when gated."""
    t = trade(BUY, closed_volume=0.5, sl=1.09, tp=1.2)
    p = plan_re_add(t, FX, CFG, trading_active=True)
    assert isinstance(p, Planned)
    assert p.params["volume"] == 0.25
    assert p.params["direction"] is BUY
    assert (p.params["sl"], p.params["tp"]) == (1.09, 1.2)
    assert plan_re_add(t, FX, CFG, trading_active=False) == Skipped(ActionType.RE_ADD_POSITION, "gated")
    assert plan_re_add(trade(closed_volume=0.01), FX, CFG, trading_active=True) == Skipped(
        ActionType.RE_ADD_POSITION, "below_min"
    )


def test_trail() -> None:
    """BUY: SWL - 0.1 ATR; SELL: SH + 0.1 ATR; under the tighten rules."""
    p = plan_trail(trade(BUY, sl=1.0), Q, FX, 1.09500, 1.105, 0.001, CFG)
    assert isinstance(p, Planned)
    assert p.action is ActionType.TRAIL_SL
    assert p.params["sl"] == pytest.approx(1.09490)
    s = plan_trail(trade(SELL, sl=1.2), Q, FX, 1.095, 1.10500, 0.001, CFG)
    assert isinstance(s, Planned)
    assert s.params["sl"] == pytest.approx(1.10510)
    assert isinstance(plan_trail(trade(BUY), Q, FX, None, None, 0.001, CFG), Skipped)


# --- properties -------------------------------------------------------------------------------------

prices = st.floats(0.5, 2.0, allow_nan=False)
specs = st.builds(
    SymbolSpec,
    point=st.just(0.00001),
    digits=st.just(5),
    tick_size=st.sampled_from([0.00001, 0.00005]),
    volume_min=st.sampled_from([0.01, 0.1]),
    volume_max=st.sampled_from([1.0, 100.0]),
    volume_step=st.sampled_from([0.01, 0.1]),
    stops_level=st.integers(0, 50),
    freeze_level=st.integers(0, 20),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[TradeSnapshot, Quote, SymbolSpec]:
    spec = draw(specs)
    assume(spec.volume_min >= spec.volume_step)
    bid = draw(prices)
    ask = bid + draw(st.integers(0, 50)) * spec.point
    direction = draw(st.sampled_from([BUY, SELL]))
    sl = draw(st.one_of(st.none(), prices))
    t = TradeSnapshot(
        direction,
        draw(prices),
        draw(st.floats(0.0001, 0.05)),
        sl,
        None,
        draw(st.floats(0.0, 200.0)),
        draw(st.floats(0.0, 200.0)),
    )
    return t, Quote(bid, ask), spec


@settings(max_examples=400, deadline=None)
@given(scenarios(), st.floats(0.1, 3.0), st.sampled_from(["tighten", "breakeven", "trail", "target"]))
def test_sl_never_loosens(scenario: tuple[TradeSnapshot, Quote, SymbolSpec], level: float, kind: str) -> None:
    """Whatever the planner and target, a planned SL is tighter than the current one and D from price."""
    t, q, spec = scenario
    if kind == "tighten":
        p = plan_tighten(t, q, spec, CFG)
    elif kind == "breakeven":
        p = plan_breakeven(t, q, spec, CFG)
    elif kind == "trail":
        p = plan_trail(t, q, spec, level, level, 0.001, CFG)
    else:
        p = tighten_to(t, q, spec, level, CFG)
    if isinstance(p, Planned):
        new = p.params["sl"]
        d = t.direction.sign
        if t.sl is not None:
            assert d * (new - t.sl) > 0
        assert d * (q.close_price(t.direction) - new) >= stop_distance(spec) - 1e-9


def _whole_steps(v: float, spec: SymbolSpec) -> bool:
    return abs(v / spec.volume_step - round(v / spec.volume_step)) < 1e-7


@settings(max_examples=400, deadline=None)
@given(scenarios(), st.floats(0.0001, 0.01))
def test_volumes_are_valid(scenario: tuple[TradeSnapshot, Quote, SymbolSpec], atr: float) -> None:
    """Planned volumes are never negative, whole steps and within [volume_min, volume_max]."""
    t, q, spec = scenario
    plans = [
        plan_partial_close(t, spec, CFG),
        plan_hedge(t, q, spec, atr, CFG, hedging_account=True, trading_active=True),
        plan_hedge(t, q, spec, atr, CFG, hedging_account=False, trading_active=True),
        plan_re_add(t, spec, CFG, trading_active=True),
    ]
    for p in plans:
        if isinstance(p, Planned) and "volume" in p.params:
            v = p.params["volume"]
            assert v >= 0
            assert _whole_steps(v, spec)
            assert spec.volume_min - 1e-9 <= v <= spec.volume_max + 1e-9
            if p.action is ActionType.PARTIAL_CLOSE:
                assert t.volume - v >= spec.volume_min - 1e-9


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1e4), specs)
def test_floor_volume_is_a_whole_step_not_above_input(v: float, spec: SymbolSpec) -> None:
    """floor_volume never rounds up and always gives whole steps."""
    out = floor_volume(v, spec)
    assert 0 <= out <= min(v, spec.volume_max) + 1e-9
    assert _whole_steps(out, spec)
    assert not math.isnan(out)
