"""The defensive state machine: one pure step per deep check, rules in table order, persisted timers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from dtms.config import Config
from dtms.engine.signals import Confluence, Evaluation
from dtms.models import Direction, TradeState


class ActionType(StrEnum):
    """Broker operations a transition may emit (spec §1)."""

    TIGHTEN_SL = "tighten_sl"
    PARTIAL_CLOSE = "partial_close"
    MOVE_SL_BREAKEVEN = "move_sl_breakeven"
    OPEN_HEDGE = "open_hedge"
    CLOSE_HEDGE = "close_hedge"
    RE_ADD_POSITION = "re_add_position"
    CLOSE_ALL = "close_all"
    TRAIL_SL = "trail_sl"
    RESTORE_SL = "restore_sl"  # someone else loosened the SL: dtms's SL is sent back (ownership.foreign_sl)
    ADOPT_SL = "adopt_sl"  # journal only: an SL someone else set, kept as the trade's SL (nothing is sent)


@dataclass(frozen=True)
class PlannedAction:
    """An action a transition asks for; `primary` decides whether the state change applies (spec §8.3)."""

    type: ActionType
    primary: bool
    params: Mapping[str, Any] = field(default_factory=dict)


def timer_remaining(started_at: datetime | None, duration_s: float, now: datetime) -> float | None:
    """max(0, duration - (now - start)); None when the timer is not running."""
    if started_at is None:
        return None
    return max(0.0, duration_s - (now - started_at).total_seconds())


def timer_expired(started_at: datetime | None, duration_s: float, now: datetime) -> bool:
    """A running timer has expired when now - start ≥ duration (spec §5.3)."""
    return started_at is not None and (now - started_at).total_seconds() >= duration_s


@dataclass(frozen=True)
class TradeView:
    """What the state machine reads about a trade; the caller persists the timer start times it returns."""

    state: TradeState
    direction: Direction
    state_entered_at: datetime
    flat_timer_started_at: datetime | None = None
    recovery_timer_started_at: datetime | None = None
    last_trail_bar_time: int | None = None
    # When monitoring started: the newest final slow bar then (open time), and fast bars closed since. None
    # for a trade monitored before these were recorded: T0 then acts on the level, T1 does not wait.
    slow_bar_at_start: int | None = None
    fast_bars_since_start: int | None = None

    def new_choch(self, evaluation: Evaluation) -> bool:
        """CHOCH-against made by a slow bar that was not yet final when monitoring started (an event)."""
        if not evaluation.choch_against:
            return False
        broke = evaluation.choch_bar
        return self.slow_bar_at_start is None or (broke is not None and broke > self.slow_bar_at_start)


@dataclass(frozen=True)
class Step:
    """One evaluation's outcome: at most one transition, its actions (primary first) and the new timers."""

    rule: str | None
    from_state: TradeState
    new_state: TradeState
    actions: tuple[PlannedAction, ...]
    reason: str
    flat_timer_started_at: datetime | None
    recovery_timer_started_at: datetime | None
    last_trail_bar_time: int | None = None

    @property
    def changed(self) -> bool:
        """True when a rule matched (T10 keeps the state but still acts)."""
        return self.rule is not None

    @property
    def primary(self) -> PlannedAction | None:
        return next((a for a in self.actions if a.primary), None)


def _stay(trade: TradeView, reason: str) -> Step:
    return Step(
        None,
        trade.state,
        trade.state,
        (),
        reason,
        trade.flat_timer_started_at,
        trade.recovery_timer_started_at,
        trade.last_trail_bar_time,
    )


def _go(
    trade: TradeView, rule: str, to: TradeState, reason: str, *actions: PlannedAction, **timers: Any
) -> Step:
    base = Step(
        rule,
        trade.state,
        to,
        tuple(actions),
        reason,
        trade.flat_timer_started_at,
        trade.recovery_timer_started_at,
        trade.last_trail_bar_time,
    )
    return replace(base, **timers)


def hedge_confluence(evaluation: Evaluation) -> bool:
    """Adverse VWAP flip flag and UNFAVOURABLE confluence: the same trade-relative rule for BUY and SELL."""
    return evaluation.vwap_flip_active and evaluation.confluence is Confluence.UNFAVOURABLE


def step(trade: TradeView, evaluation: Evaluation, now: datetime, config: Config) -> Step:
    """One state-machine step (spec §5.2): rules tested in table order, the first match wins.

    Pure: same inputs, same outputs. CLOSED is terminal. The caller applies the new state together with the
    primary action's outcome and persists the returned timer start times.
    """
    fc = config.fsm
    state, score = trade.state, evaluation.score
    close_all = PlannedAction(ActionType.CLOSE_ALL, primary=True)
    if state is TradeState.CLOSED:
        return _stay(trade, "closed is terminal")

    # T0: a new change of character against the trade ends it from every configured state (P-1); a break
    # already there when monitoring started is a level the entry accepted, not an event.
    if state in fc.choch_terminal_from and trade.new_choch(evaluation):
        return _go(
            trade,
            "T0",
            TradeState.CLOSED,
            "CHOCH against trade",
            close_all,
            flat_timer_started_at=None,
            recovery_timer_started_at=None,
        )

    if state is TradeState.HEALTHY:
        bars = trade.fast_bars_since_start
        settled = bars is None or bars >= config.actions.tighten_min_bars  # no stop move inside entry noise
        if score <= fc.down.l1 and settled:
            tighten = PlannedAction(ActionType.TIGHTEN_SL, True, {"r": config.actions.tighten_r})
            return _go(
                trade,
                "T1",
                TradeState.WARNING_L1,
                f"score {score:.2f} ≤ {fc.down.l1:g}",
                tighten,
                flat_timer_started_at=now,
            )
        if score <= fc.down.l1:
            need = config.actions.tighten_min_bars
            why = f"score {score:.2f} ≤ {fc.down.l1:g}: T1 waits for {need} fast bars, {bars} so far"
            return _stay(trade, why)
        if (
            config.trail.enabled
            and evaluation.bos_resume
            and evaluation.bar_time is not None
            and (trade.last_trail_bar_time is None or evaluation.bar_time > trade.last_trail_bar_time)
        ):
            trail = PlannedAction(ActionType.TRAIL_SL, False, {"buffer_atr": config.trail.buffer_atr})
            return _go(
                trade,
                "T10",
                TradeState.HEALTHY,
                "BOS resume on a new M15 bar",
                trail,
                last_trail_bar_time=evaluation.bar_time,
            )
        return _stay(trade, "healthy")

    if state is TradeState.WARNING_L1:
        if score >= fc.up.l1_to_healthy:
            return _go(
                trade,
                "T2",
                TradeState.HEALTHY,
                f"score {score:.2f} ≥ {fc.up.l1_to_healthy:g}",
                flat_timer_started_at=None,
            )
        if score <= fc.down.l2:
            return _go(
                trade,
                "T3",
                TradeState.WARNING_L2,
                f"score {score:.2f} ≤ {fc.down.l2:g}",
                PlannedAction(ActionType.PARTIAL_CLOSE, True, {"fraction": config.partial_close.fraction}),
                PlannedAction(
                    ActionType.MOVE_SL_BREAKEVEN, False, {"offset_points": config.breakeven.offset_points}
                ),
            )
        return _stay(trade, "warning level 1 holds (hysteresis)")

    if state is TradeState.WARNING_L2:
        if score >= fc.up.l2_to_l1:
            return _go(trade, "T4", TradeState.WARNING_L1, f"score {score:.2f} ≥ {fc.up.l2_to_l1:g}")
        confluent = hedge_confluence(evaluation)
        if score <= fc.down.hedged or confluent:
            why = f"score {score:.2f} ≤ {fc.down.hedged:g}" if score <= fc.down.hedged else "hedge confluence"
            hedge = PlannedAction(ActionType.OPEN_HEDGE, True, {"fraction": config.hedge.fraction})
            return _go(trade, "T5", TradeState.HEDGED, why, hedge, flat_timer_started_at=now)
        return _stay(trade, "warning level 2 holds (hysteresis)")

    if state is TradeState.HEDGED:
        if timer_expired(trade.flat_timer_started_at, fc.flat_timer_s, now):
            return _go(
                trade,
                "T6",
                TradeState.CLOSED,
                "flat timer expired while hedged",
                close_all,
                flat_timer_started_at=None,
            )
        closed_at = evaluation.bar_closed_at
        if evaluation.bos_resume and closed_at is not None and closed_at > trade.state_entered_at:
            return _go(
                trade,
                "T7",
                TradeState.RECOVERING,
                "BOS resume after hedging",
                PlannedAction(ActionType.CLOSE_HEDGE, True),
                recovery_timer_started_at=now,
            )
        return _stay(trade, "hedged: waiting for BOS resume or the flat timer")

    # RECOVERING
    if timer_expired(trade.recovery_timer_started_at, fc.recovery_timer_s, now):
        if score >= fc.recovery_min_score:
            re_add = PlannedAction(ActionType.RE_ADD_POSITION, False, {"fraction": config.re_add.fraction})
            return _go(
                trade,
                "T8",
                TradeState.HEALTHY,
                f"recovered, score {score:.2f}",
                re_add,
                flat_timer_started_at=None,
                recovery_timer_started_at=None,
            )
        return _go(
            trade,
            "T9",
            TradeState.CLOSED,
            f"recovery failed, score {score:.2f}",
            close_all,
            flat_timer_started_at=None,
            recovery_timer_started_at=None,
        )
    return _stay(trade, "recovering: waiting for the recovery timer")


def external_close(trade: TradeView) -> Step:
    """The main position was closed outside DTMS (spec §5.2): any open state → CLOSED, legs to be closed."""
    if trade.state is TradeState.CLOSED:
        return _stay(trade, "closed is terminal")
    return _go(
        trade,
        "external_close",
        TradeState.CLOSED,
        "external_close",
        PlannedAction(ActionType.CLOSE_ALL, True, {"legs_only": True}),
        flat_timer_started_at=None,
        recovery_timer_started_at=None,
    )


def timer_forces_deep_check(trade: TradeView, now: datetime, config: Config) -> bool:
    """An expired timer in HEDGED (flat) or RECOVERING (recovery) forces a deep check at once (spec §5.3)."""
    if trade.state is TradeState.HEDGED:
        return timer_expired(trade.flat_timer_started_at, config.fsm.flat_timer_s, now)
    if trade.state is TradeState.RECOVERING:
        return timer_expired(trade.recovery_timer_started_at, config.fsm.recovery_timer_s, now)
    return False


def timer_deadline(started_at: datetime | None, duration_s: float) -> datetime | None:
    """When a running timer expires."""
    return None if started_at is None else started_at + timedelta(seconds=duration_s)


__all__ = [
    "ActionType",
    "PlannedAction",
    "Step",
    "TradeView",
    "external_close",
    "hedge_confluence",
    "step",
    "timer_deadline",
    "timer_expired",
    "timer_forces_deep_check",
    "timer_remaining",
]
