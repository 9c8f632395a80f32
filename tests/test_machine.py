"""The state machine: each rule of the table, timers, and hypothesis properties."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtms.config import Config
from dtms.engine.machine import (
    ActionType,
    Step,
    TradeView,
    external_close,
    step,
    timer_expired,
    timer_forces_deep_check,
    timer_remaining,
)
from dtms.engine.signals import Evaluation
from dtms.models import Direction, TradeState
from tests.strategies_engine import T0, at, evaluation

CFG = Config()
NOW = at(T0 + 10 * 86400)
S = TradeState


def view(
    state: TradeState,
    *,
    direction: Direction = Direction.BUY,
    entered: datetime | None = None,
    flat_timer_started_at: datetime | None = None,
    recovery_timer_started_at: datetime | None = None,
    last_trail_bar_time: int | None = None,
    slow_bar_at_start: int | None = None,
    fast_bars_since_start: int | None = None,
) -> TradeView:
    return TradeView(
        state,
        direction,
        entered or NOW - timedelta(hours=1),
        flat_timer_started_at,
        recovery_timer_started_at,
        last_trail_bar_time,
        slow_bar_at_start,
        fast_bars_since_start,
    )


def types(result: Step) -> list[tuple[ActionType, bool]]:
    return [(a.type, a.primary) for a in result.actions]


# --- the table, rule by rule -----------------------------------------------------------------------


@pytest.mark.parametrize("state", [s for s in TradeState if s is not TradeState.CLOSED])
def test_t0_choch_against_closes_from_every_open_state(state: TradeState) -> None:
    """T0: CHOCH-against closes the trade from any configured state, before any other rule (P-1)."""
    r = step(view(state), evaluation(5.0, choch=True, bos=True), NOW, CFG)
    assert (r.rule, r.new_state, types(r)) == ("T0", S.CLOSED, [(ActionType.CLOSE_ALL, True)])


@pytest.mark.parametrize("direction", [Direction.BUY, Direction.SELL])
def test_t0_closes_on_a_new_choch_not_on_one_already_there_when_monitoring_started(
    direction: Direction,
) -> None:
    """T0 is an event: the break must come from a slow bar opened after the newest final one at the start."""
    start_bar = T0 + 3600
    for state in (S.HEALTHY, S.WARNING_L1, S.HEDGED):
        old = view(state, direction=direction, slow_bar_at_start=start_bar)
        for before in (start_bar, start_bar - 900):
            kept = step(old, evaluation(0.0, choch=True, choch_bar=before), NOW, CFG)
            assert kept.rule != "T0"
            assert kept.new_state is not S.CLOSED
        new = step(old, evaluation(0.0, choch=True, choch_bar=start_bar + 900), NOW, CFG)
        assert (new.rule, new.new_state) == ("T0", S.CLOSED)
    # a trade monitored before the start bar was recorded keeps the level rule
    assert step(view(S.HEALTHY, direction=direction), evaluation(0.0, choch=True), NOW, CFG).rule == "T0"


@pytest.mark.parametrize("direction", [Direction.BUY, Direction.SELL])
def test_t1_waits_for_fast_bars_after_monitoring_started(direction: Direction) -> None:
    """Score ≤ -2 in the first `tighten_min_bars` fast bars: HEALTHY, and the reason says T1 waits."""
    early = step(view(S.HEALTHY, direction=direction, fast_bars_since_start=2), evaluation(-5.0), NOW, CFG)
    assert (early.rule, early.new_state) == (None, S.HEALTHY)
    assert "T1 waits for 3 fast bars, 2 so far" in early.reason
    late = step(view(S.HEALTHY, direction=direction, fast_bars_since_start=3), evaluation(-5.0), NOW, CFG)
    assert (late.rule, late.new_state) == ("T1", S.WARNING_L1)
    off = Config.from_mapping({"actions": {"tighten_min_bars": 0}})
    assert (
        step(view(S.HEALTHY, direction=direction, fast_bars_since_start=0), evaluation(-5.0), NOW, off).rule
        == "T1"
    )


def test_t0_respects_configured_scope() -> None:
    """States outside fsm.choch_terminal_from ignore CHOCH."""
    cfg = Config.from_mapping({"fsm": {"choch_terminal_from": ["HEDGED"]}})
    assert step(view(S.HEALTHY), evaluation(0.0, choch=True), NOW, cfg).rule is None
    assert step(view(S.HEDGED), evaluation(0.0, choch=True), NOW, cfg).rule == "T0"


def test_t1_tightens_and_starts_flat_timer() -> None:
    """T1 at score ≤ -2: WARNING_L1, tighten_sl primary, flat timer started now."""
    r = step(view(S.HEALTHY), evaluation(-2.0), NOW, CFG)
    assert (r.rule, r.new_state, types(r)) == ("T1", S.WARNING_L1, [(ActionType.TIGHTEN_SL, True)])
    assert r.flat_timer_started_at == NOW
    assert r.actions[0].params == {"r": 0.3}
    assert step(view(S.HEALTHY), evaluation(-1.99), NOW, CFG).rule is None


def test_t2_back_to_healthy_stops_flat_timer() -> None:
    """T2 at score ≥ 0: HEALTHY, no action, flat timer stopped."""
    r = step(view(S.WARNING_L1, flat_timer_started_at=NOW - timedelta(minutes=5)), evaluation(0.0), NOW, CFG)
    assert (r.rule, r.new_state, r.actions, r.flat_timer_started_at) == ("T2", S.HEALTHY, (), None)


def test_t3_partial_close_then_breakeven() -> None:
    """T3 at score ≤ -4: partial_close primary then move_sl_breakeven secondary; flat timer keeps running."""
    started = NOW - timedelta(minutes=5)
    r = step(view(S.WARNING_L1, flat_timer_started_at=started), evaluation(-4.0), NOW, CFG)
    assert (r.rule, r.new_state) == ("T3", S.WARNING_L2)
    assert types(r) == [(ActionType.PARTIAL_CLOSE, True), (ActionType.MOVE_SL_BREAKEVEN, False)]
    assert r.flat_timer_started_at == started


def test_t4_back_to_l1_without_action() -> None:
    """T4 at score ≥ -2: WARNING_L1, nothing to do."""
    r = step(view(S.WARNING_L2), evaluation(-2.0), NOW, CFG)
    assert (r.rule, r.new_state, r.actions) == ("T4", S.WARNING_L1, ())


@pytest.mark.parametrize(
    ("score", "flip", "conf", "rule"),
    [
        (-6.0, False, "NEUTRAL", "T5"),
        (-3.0, True, "UNFAVOURABLE", "T5"),
        (-3.0, True, "MIXED", None),
        (-3.0, False, "UNFAVOURABLE", None),
    ],
)
def test_t5_hedge_on_score_or_hedge_confluence(score: float, flip: bool, conf: str, rule: str | None) -> None:
    """T5: score ≤ -6, or the flip flag with UNFAVOURABLE confluence (same rule for BUY and SELL, B-FSM-5)."""
    for direction in Direction:
        r = step(
            view(S.WARNING_L2, direction=direction), evaluation(score, flip=flip, confluence=conf), NOW, CFG
        )
        assert r.rule == rule
        if rule:
            assert types(r) == [(ActionType.OPEN_HEDGE, True)]
            assert r.flat_timer_started_at == NOW


def test_t6_flat_timer_expiry_closes_hedged_trade_exactly_at_deadline() -> None:
    """T6 fires when now - start ≥ 4500 s, not a second earlier, whatever the score."""
    start = NOW - timedelta(seconds=4500)
    trade = view(S.HEDGED, flat_timer_started_at=start, entered=start)
    assert step(trade, evaluation(10.0), NOW, CFG).rule == "T6"
    assert step(trade, evaluation(10.0), NOW - timedelta(seconds=1), CFG).rule is None


def test_t7_needs_bos_on_a_bar_closed_after_hedging() -> None:
    """T7: BOS-resume on a bar closed after entering HEDGED → RECOVERING, close_hedge, recovery timer."""
    entered = NOW - timedelta(minutes=20)
    trade = view(S.HEDGED, flat_timer_started_at=entered, entered=entered)
    old_bar = int(entered.timestamp()) - 900  # closed exactly when the trade entered HEDGED
    new_bar = int(entered.timestamp())
    assert step(trade, evaluation(0.0, bos=True, bar_time=old_bar), NOW, CFG).rule is None
    r = step(trade, evaluation(0.0, bos=True, bar_time=new_bar), NOW, CFG)
    assert (r.rule, r.new_state, types(r)) == ("T7", S.RECOVERING, [(ActionType.CLOSE_HEDGE, True)])
    assert r.recovery_timer_started_at == NOW


def test_hedged_ignores_the_score() -> None:
    """HEDGED does not move on score alone (P-2 was the dead end; the exits are T6, T7, T0)."""
    trade = view(S.HEDGED, flat_timer_started_at=NOW)
    assert step(trade, evaluation(-30.0), NOW, CFG).rule is None
    assert step(trade, evaluation(30.0), NOW, CFG).rule is None


@pytest.mark.parametrize(("score", "rule", "to"), [(1.0, "T8", S.HEALTHY), (0.99, "T9", S.CLOSED)])
def test_recovering_after_timer(score: float, rule: str, to: TradeState) -> None:
    """T8 re-adds (secondary) with score ≥ +1; T9 closes otherwise; both clear timers."""
    start = NOW - timedelta(seconds=1800)
    trade = view(S.RECOVERING, recovery_timer_started_at=start, flat_timer_started_at=start)
    r = step(trade, evaluation(score), NOW, CFG)
    assert (r.rule, r.new_state, r.flat_timer_started_at, r.recovery_timer_started_at) == (
        rule,
        to,
        None,
        None,
    )
    expected = (ActionType.RE_ADD_POSITION, False) if rule == "T8" else (ActionType.CLOSE_ALL, True)
    assert types(r) == [expected]
    assert step(trade, evaluation(score), NOW - timedelta(seconds=1), CFG).rule is None


def test_t10_trails_once_per_new_bar_when_enabled() -> None:
    """Optional T10: trail_sl on BOS-resume, once per new final M15 bar, only when trail.enabled."""
    ev = evaluation(1.0, bos=True, bar_time=T0)
    assert step(view(S.HEALTHY), ev, NOW, CFG).rule is None
    cfg = Config.from_mapping({"trail": {"enabled": True}})
    r = step(view(S.HEALTHY), ev, NOW, cfg)
    assert (r.rule, r.new_state, types(r), r.last_trail_bar_time) == (
        "T10",
        S.HEALTHY,
        [(ActionType.TRAIL_SL, False)],
        T0,
    )
    assert step(view(S.HEALTHY, last_trail_bar_time=T0), ev, NOW, cfg).rule is None


def test_external_close() -> None:
    """A position closed outside DTMS moves any open state to CLOSED; CLOSED stays."""
    r = external_close(view(S.HEDGED))
    assert (r.rule, r.new_state, r.from_state) == ("external_close", S.CLOSED, S.HEDGED)
    assert external_close(view(S.CLOSED)).rule is None


def test_timer_helpers() -> None:
    """remaining = max(0, duration - elapsed); expired at exactly start + duration."""
    start = NOW - timedelta(seconds=100)
    assert timer_remaining(start, 150, NOW) == 50
    assert timer_remaining(start, 50, NOW) == 0
    assert timer_remaining(None, 50, NOW) is None
    assert timer_expired(start, 100, NOW)
    assert not timer_expired(start, 100.001, NOW)
    assert not timer_expired(None, 0, NOW)
    hedged = view(S.HEDGED, flat_timer_started_at=NOW - timedelta(seconds=4500))
    assert timer_forces_deep_check(hedged, NOW, CFG)
    assert not timer_forces_deep_check(
        view(S.WARNING_L1, flat_timer_started_at=NOW - timedelta(days=1)), NOW, CFG
    )


# --- properties -------------------------------------------------------------------------------------

states = st.sampled_from(list(TradeState))
scores = st.floats(-40, 25, allow_nan=False)
offsets = st.one_of(st.none(), st.integers(0, 10000).map(lambda s: NOW - timedelta(seconds=s)))
evaluations = st.builds(
    evaluation,
    scores,
    choch=st.booleans(),
    bos=st.booleans(),
    flip=st.booleans(),
    confluence=st.sampled_from(["FAVOURABLE", "UNFAVOURABLE", "MIXED", "NEUTRAL"]),
    bar_time=st.one_of(st.none(), st.integers(T0, T0 + 20 * 86400)),
)
views = st.builds(
    TradeView,
    states,
    st.sampled_from(list(Direction)),
    st.integers(0, 10000).map(lambda s: NOW - timedelta(seconds=s)),
    offsets,
    offsets,
    st.one_of(st.none(), st.integers(T0, T0 + 20 * 86400)),
)
ORDER = [S.HEALTHY, S.WARNING_L1, S.WARNING_L2, S.HEDGED]
ALLOWED = {
    S.HEALTHY: {S.HEALTHY, S.WARNING_L1, S.CLOSED},
    S.WARNING_L1: {S.WARNING_L1, S.HEALTHY, S.WARNING_L2, S.CLOSED},
    S.WARNING_L2: {S.WARNING_L2, S.WARNING_L1, S.HEDGED, S.CLOSED},
    S.HEDGED: {S.HEDGED, S.RECOVERING, S.CLOSED},
    S.RECOVERING: {S.RECOVERING, S.HEALTHY, S.CLOSED},
    S.CLOSED: {S.CLOSED},
}


@settings(max_examples=400, deadline=None)
@given(views, evaluations)
def test_at_most_one_step_per_evaluation(trade: TradeView, ev: Evaluation) -> None:
    """Every result is one edge of the table (or no move), never two steps at once."""
    r = step(trade, ev, NOW, CFG)
    assert r.new_state in ALLOWED[trade.state]
    assert r.from_state is trade.state
    assert sum(a.primary for a in r.actions) <= 1
    if r.actions:
        assert r.actions[0].primary or r.rule in {"T8", "T10"}


@settings(max_examples=200, deadline=None)
@given(views, evaluations)
def test_closed_is_terminal(trade: TradeView, ev: Evaluation) -> None:
    """From CLOSED nothing happens, whatever the evaluation."""
    closed = TradeView(S.CLOSED, trade.direction, trade.state_entered_at)
    r = step(closed, ev, NOW, CFG)
    assert (r.rule, r.new_state, r.actions) == (None, S.CLOSED, ())


@settings(max_examples=200, deadline=None)
@given(st.floats(-3.99, -0.01), st.floats(-5.99, -2.01))
def test_hysteresis_holds(l1_score: float, l2_score: float) -> None:
    """Between the down and up thresholds the warning states stay put."""
    assert step(view(S.WARNING_L1), evaluation(l1_score), NOW, CFG).rule is None
    assert step(view(S.WARNING_L2), evaluation(l2_score), NOW, CFG).rule is None


@settings(max_examples=200, deadline=None)
@given(views, evaluations)
def test_same_inputs_same_outputs(trade: TradeView, ev: Evaluation) -> None:
    """step is a pure function."""
    assert step(trade, ev, NOW, CFG) == step(trade, ev, NOW, CFG)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20000), st.integers(-5, 5), st.sampled_from([S.HEDGED, S.RECOVERING]))
def test_timers_persist_and_expire_exactly(started_ago: int, jitter: int, state: TradeState) -> None:
    """A stored start time expires at start + duration exactly; before that the state holds."""
    duration = CFG.fsm.flat_timer_s if state is S.HEDGED else CFG.fsm.recovery_timer_s
    start = NOW - timedelta(seconds=started_ago)
    trade = TradeView(state, Direction.SELL, start, start, start)
    now = start + timedelta(seconds=duration + jitter)
    r = step(trade, evaluation(0.0), now, CFG)
    assert (r.rule is not None) == (jitter >= 0)
    assert timer_forces_deep_check(trade, now, CFG) == (jitter >= 0)


@settings(max_examples=100, deadline=None)
@given(views, evaluations)
def test_unchanged_state_keeps_timers(trade: TradeView, ev: Evaluation) -> None:
    """Without a rule the timers are returned as they came in, so the caller persists them unchanged."""
    r = step(trade, ev, NOW, CFG)
    if r.rule is None:
        assert (r.flat_timer_started_at, r.recovery_timer_started_at) == (
            trade.flat_timer_started_at,
            trade.recovery_timer_started_at,
        )
