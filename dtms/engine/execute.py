"""Executor: one journaled action through the pre-send check, the gateway and the broker; and
reconciliation."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from dtms.broker.base import Broker, Outcome, OutcomeKind, Position, action_tag
from dtms.broker.base import Direction as BrokerDirection
from dtms.broker.base import SymbolSpec as BrokerSymbol
from dtms.config import Config
from dtms.engine import actions as plan
from dtms.engine.machine import ActionType
from dtms.engine.rails import RISK_ADDING, TradingState, is_allowed
from dtms.errors import BrokerError
from dtms.gateway import Gateway
from dtms.models import Action, ActionStatus, Direction, Trade, TradeState

log = logging.getLogger(__name__)

#: A request answered "later" (market closed, frozen, too many requests) is retried on later checks, but not
#: forever: after this many sends the action is FAILED, and its transition abandoned or its leg alerted.
MAX_DEFERRED_SENDS: Final = 20
MARKET_CLOSED: Final = 10018  # TRADE_RETCODE_MARKET_CLOSED


def market_closed_since(action: Action, quote_at: datetime | None) -> bool:
    """The action's last send met a closed market and the symbol has not quoted since (it is still closed)."""
    return (
        action.status is ActionStatus.INTENT
        and action.retcode == MARKET_CLOSED
        and action.sent_at is not None
        and quote_at is not None
        and quote_at <= action.sent_at
    )


DEFENSIVE: Final = frozenset({TradeState.WARNING_L2, TradeState.HEDGED})
SL_ACTIONS: Final = frozenset({ActionType.TIGHTEN_SL, ActionType.MOVE_SL_BREAKEVEN, ActionType.TRAIL_SL})


@dataclass(frozen=True)
class Context:
    """What the executor needs besides the trade: the account and symbol situation right now."""

    now: datetime
    trading_state: TradingState = TradingState.ACTIVE
    hedging_account: bool = True
    atr_m15: float | None = None
    atr_m5: float | None = None
    target_state: TradeState | None = None
    swing_low: float | None = None
    swing_high: float | None = None


@dataclass(frozen=True)
class Result:
    """Where an action stands after a run or a reconciliation."""

    status: ActionStatus
    detail: dict[str, Any] = field(default_factory=dict)
    rejected: bool = False  # a permanent broker refusal (REJECTED), for the hedge fallback
    alert: bool = False  # newly waiting for proof that an earlier epoch can send no more: tell the operator

    @property
    def resolved(self) -> bool:
        return self.status in (ActionStatus.DONE, ActionStatus.SKIPPED, ActionStatus.FAILED)


def leg_identifier(trade: Trade, leg: str) -> int | None:
    """The broker position identifier of a leg: `main`, `hedge` or `readd:<identifier>`."""
    if leg == "main":
        return trade.identifier
    if leg == "hedge":
        hedge = trade.engine.get("hedge") or {}
        return hedge.get("identifier")
    if leg.startswith("readd:"):
        return int(leg.split(":", 1)[1])
    return None


def planning_spec(spec: BrokerSymbol) -> plan.SymbolSpec:
    """The planner's view of a broker symbol."""
    return plan.SymbolSpec(
        point=spec.point,
        digits=spec.digits,
        tick_size=spec.tick_size or spec.point,
        volume_min=spec.volume_min,
        volume_max=spec.volume_max,
        volume_step=spec.volume_step,
        stops_level=spec.stops_level,
        freeze_level=spec.freeze_level,
    )


#: See `Executor.run`: given the action and its resolved result, the writes to commit with its outcome.
Settle = Callable[[Action, "Result"], Callable[[], object] | None]


class Executor:
    """Runs journal rows. Every send goes through the gateway, so none leaves without a fenced SENT row."""

    def __init__(
        self,
        broker: Broker,
        gateway: Gateway,
        config: Config,
        *,
        wait: Callable[[float], object] = lambda s: None,
    ) -> None:
        self.broker = broker
        self.gateway = gateway
        self.store = gateway.store
        self.config = config
        self.wait = wait
        self._settle: Settle | None = None

    # -- run ----------------------------------------------------------------------------------------

    def run(
        self, epoch: int, action: Action, trade: Trade, ctx: Context, settle: Settle | None = None
    ) -> Result:
        """Pre-send check, plan from the fresh broker state, send (with bounded FRESH resends), record.

        `settle(result)`, when given, is asked once the action is resolved (DONE, SKIPPED, FAILED) and may
        return writes that then commit in the same fenced transaction as the outcome (spec §8.3: the state
        changes with the primary's outcome). It runs before that transaction opens, so it may read the broker.
        """
        self._settle = settle
        if action.status is not ActionStatus.INTENT:
            return self.reconcile(epoch, action, trade, ctx)
        if market_closed_since(action, self.quote_at(trade.symbol)):
            # MARKET_CLOSED last time and no quote since: sending again cannot succeed (spec: retry when the
            # condition changes). Nothing is sent or counted until the market quotes again.
            return Result(ActionStatus.INTENT, {"reason": "market_closed"})
        attempts = 0
        while True:
            try:
                prepared = self._prepare(action, trade, ctx)
            except BrokerError as exc:  # the broker could not be read: nothing sent, try on a later check
                return Result(ActionStatus.INTENT, {"error": str(exc)})
            if isinstance(prepared, Result):
                self._commit(epoch, action, prepared, prepared.status)
                return prepared
            request, call = prepared
            if action.attempts + attempts >= MAX_DEFERRED_SENDS:
                failed = Result(ActionStatus.FAILED, {"error": "deferred too often", **request})
                self._commit(epoch, action, failed, ActionStatus.FAILED, error="deferred too often")
                return failed
            outcome = self.gateway.send(epoch, action, request, call)
            attempts += 1
            result = self._record(
                epoch, action, request, outcome, retries_left=attempts <= len(self._waits())
            )
            if result is not None:
                return result
            self.wait(self._waits()[attempts - 1])

    def quote_at(self, symbol: str) -> datetime | None:
        """The time of the symbol's latest quote (None: unknown)."""
        try:
            return self.broker.tick(symbol).at
        except BrokerError:
            return None

    def _waits(self) -> list[float]:
        return list(self.config.execution.fresh_waits_s)[: self.config.execution.fresh_attempts]

    def _record(
        self, epoch: int, action: Action, request: dict[str, Any], outcome: Outcome, *, retries_left: bool
    ) -> Result | None:
        detail = {"retcode": outcome.retcode, "text": outcome.text, "volume": outcome.volume,
                  "price": outcome.price, "identifier": outcome.identifier, "order": outcome.order,
                  "deal": outcome.deal,
                  **{k: v for k, v in request.items() if k in ("sl", "tp", "note", "planned")}}  # fmt: skip
        kind = outcome.kind
        if kind is OutcomeKind.DONE:
            return self._commit(epoch, action, Result(ActionStatus.DONE, detail), ActionStatus.DONE,
                                retcode=outcome.retcode)  # fmt: skip
        if kind is OutcomeKind.RETRY and retries_left:
            return None  # resend with a fresh quote
        if kind is OutcomeKind.UNKNOWN:
            self.gateway.outcome(epoch, action, ActionStatus.UNKNOWN, result=detail, retcode=outcome.retcode,
                                 error=outcome.text)  # fmt: skip
            return Result(ActionStatus.UNKNOWN, detail)
        if kind is OutcomeKind.DEFER:
            self.store.requeue_action(epoch, action.action_id, retcode=outcome.retcode, error=outcome.text)
            return Result(ActionStatus.INTENT, detail)
        failed = Result(ActionStatus.FAILED, detail, rejected=kind is OutcomeKind.REJECTED)
        return self._commit(epoch, action, failed, ActionStatus.FAILED, retcode=outcome.retcode,
                            error=outcome.text or kind.value)  # fmt: skip

    def _commit(
        self, epoch: int, action: Action, result: Result, status: ActionStatus, **fields: Any
    ) -> Result:
        """Record the outcome, together with what `settle` wants written for a resolved action (one fenced
        tx)."""
        writes = self._settle(action, result) if self._settle is not None and result.resolved else None
        with self.store.fenced(epoch):
            self.gateway.outcome(epoch, action, status, result=result.detail, **fields)
            if writes is not None:
                writes()
        return result

    def _prepare(
        self, action: Action, trade: Trade, ctx: Context
    ) -> Result | tuple[dict[str, Any], Callable[[], Outcome]]:
        """The pre-send check (spec §8.2): resolve the leg, read it, recompute, check ownership and rails."""
        kind = ActionType(action.action_type)
        if ctx.trading_state is TradingState.HALTED:  # the operator's halt: nothing is sent, it stays pending
            return Result(ActionStatus.INTENT, {"reason": "halted"})
        identifier = leg_identifier(trade, action.leg)
        if kind is ActionType.CLOSE_HEDGE and (trade.engine.get("hedge") or {}).get("mode") == "reduced":
            return Result(ActionStatus.SKIPPED, {"reason": "hedge_mode_reduced"})
        if identifier is None:
            return Result(ActionStatus.SKIPPED, {"reason": "no_leg"})
        position = self.broker.position(identifier)
        if position is None:
            return Result(ActionStatus.SKIPPED, {"reason": "position_gone"})
        if kind in RISK_ADDING and self._in_flight(action):
            # An earlier request of this trade may still execute: add no exposure until it is decided.
            return Result(ActionStatus.INTENT, {"reason": "in_flight"})
        if not is_allowed(kind, ctx.trading_state):
            if kind is ActionType.OPEN_HEDGE:
                return self._plan_and_request(action, trade, position, ctx, forced_fallback="gated")
            reason = "gated" if kind is ActionType.RE_ADD_POSITION else None
            if reason:
                return Result(ActionStatus.SKIPPED, {"reason": reason})
            return Result(ActionStatus.FAILED, {"reason": "gated"})
        if action.leg == "main" and not self._may_act(trade, ctx):
            return Result(ActionStatus.SKIPPED, {"reason": "not_owner"})
        if kind is ActionType.OPEN_HEDGE and action.params.get("fallback"):
            # The hedge itself was refused (10019, 10040, ...): plan its fallback, recording the real reason.
            reason = str(action.params.get("fallback_reason") or "rejected")
            return self._plan_and_request(action, trade, position, ctx, forced_fallback=reason)
        return self._plan_and_request(action, trade, position, ctx)

    def _in_flight(self, action: Action) -> bool:
        """Whether another action of the same trade was sent and is not decided yet (SENT or UNKNOWN)."""
        return any(a.action_id != action.action_id and a.status in (ActionStatus.SENT, ActionStatus.UNKNOWN)
                   for a in self.store.open_actions(action.identifier))  # fmt: skip

    def _may_act(self, trade: Trade, ctx: Context) -> bool:
        if trade.owner in ("dtms", "none"):
            return True
        defensive = set(self.config.ownership.defensive_states)
        return trade.state in defensive or (ctx.target_state is not None and ctx.target_state in defensive)

    def _plan_and_request(
        self,
        action: Action,
        trade: Trade,
        position: Position,
        ctx: Context,
        forced_fallback: str | None = None,
    ) -> Result | tuple[dict[str, Any], Callable[[], Outcome]]:
        kind = ActionType(action.action_type)
        spec_b = self.broker.symbol(position.symbol)
        spec = planning_spec(spec_b)
        tick = self.broker.tick(position.symbol)
        quote = plan.Quote(tick.bid, tick.ask)
        direction = Direction(position.direction)
        snap = plan.TradeSnapshot(
            direction=direction, entry=trade.entry_price, r=trade.r, sl=position.sl, tp=position.tp,
            volume=position.volume, closed_volume=trade.closed_volume,
        )  # fmt: skip
        cfg = self.config
        params = action.params
        if kind in (ActionType.CLOSE_ALL, ActionType.CLOSE_HEDGE):
            decision: plan.Plan = plan.Planned(ActionType.CLOSE_ALL, {})
        elif kind is ActionType.TIGHTEN_SL:
            decision = plan.plan_tighten(snap, quote, spec, cfg, ctx.atr_m5)
        elif kind is ActionType.MOVE_SL_BREAKEVEN:
            decision = plan.plan_breakeven(snap, quote, spec, cfg, ctx.atr_m5)
        elif kind is ActionType.RESTORE_SL:
            decision = plan.tighten_to(
                snap, quote, spec, float(params["sl"]), cfg, action=kind, note="restore"
            )
        elif kind is ActionType.TRAIL_SL:
            decision = plan.plan_trail(snap, quote, spec, ctx.swing_low, ctx.swing_high, ctx.atr_m15, cfg)
        elif kind is ActionType.PARTIAL_CLOSE:
            decision = plan.plan_partial_close(snap, spec, cfg, params.get("fraction"))
        elif kind is ActionType.OPEN_HEDGE:
            if forced_fallback is not None:
                decision = plan.hedge_fallback(snap, spec, cfg, forced_fallback)
            else:
                decision = plan.plan_hedge(
                    snap,
                    quote,
                    spec,
                    ctx.atr_m15,
                    cfg,
                    hedging_account=ctx.hedging_account,
                    trading_active=ctx.trading_state is TradingState.ACTIVE,
                )
        elif kind is ActionType.RE_ADD_POSITION:
            decision = plan.plan_re_add(
                snap, spec, cfg, trading_active=ctx.trading_state is TradingState.ACTIVE
            )
        else:
            return Result(ActionStatus.FAILED, {"reason": f"unknown action {kind}"})
        if isinstance(decision, plan.Skipped):
            return Result(ActionStatus.SKIPPED, {"reason": decision.reason})
        return self._request(action, position, decision, ctx)

    def _request(
        self, action: Action, position: Position, decision: plan.Planned, ctx: Context
    ) -> tuple[dict[str, Any], Callable[[], Outcome]]:
        broker, identifier, p = self.broker, position.identifier, dict(decision.params)
        base: dict[str, Any] = {
            "at": ctx.now.isoformat(),
            "identifier": identifier,
            "planned": decision.action.value,
        }
        if decision.note:
            base["note"] = decision.note
        if decision.action in (ActionType.TIGHTEN_SL, ActionType.MOVE_SL_BREAKEVEN, ActionType.TRAIL_SL,
                               ActionType.RESTORE_SL):  # fmt: skip
            sl, tp = float(p["sl"]), p.get("tp")
            request = {**base, "op": "modify", "sl": sl, "tp": tp}
            return request, lambda: broker.modify_sl_tp(identifier, sl, tp)
        if decision.action in (ActionType.PARTIAL_CLOSE, ActionType.CLOSE_ALL):
            volume = p.get("volume")
            comment = action_tag("c", action.action_id, database=self.store.database_tag)
            request = {**base, "op": "close", "volume": volume if volume is not None else position.volume,
                       "position_volume": position.volume, "comment": comment}  # fmt: skip
            return request, lambda: broker.close(identifier, volume, comment=comment)
        # open_hedge / re_add_position: a new market position, tagged so a restart finds it again
        kind: Literal["h", "r"] = "h" if decision.action is ActionType.OPEN_HEDGE else "r"
        tag = action_tag(kind, action.action_id, identifier, database=self.store.database_tag)
        side: BrokerDirection = "BUY" if Direction(p["direction"]) is Direction.BUY else "SELL"
        new_volume, new_sl, new_tp = float(p["volume"]), p.get("sl"), p.get("tp")
        magic = int(p.get("magic", self.config.execution.magic))
        request = {**base, "op": "open", "symbol": position.symbol, "direction": side, "volume": new_volume,
                   "sl": new_sl, "tp": new_tp, "magic": magic, "comment": tag}  # fmt: skip
        return request, lambda: broker.open(
            position.symbol, side, new_volume, sl=new_sl, tp=new_tp, magic=magic, comment=tag
        )

    # -- reconcile ----------------------------------------------------------------------------------

    def reconcile(self, epoch: int, action: Action, trade: Trade, ctx: Context) -> Result:
        """Decide a SENT or UNKNOWN row from the broker's truth before anything is sent again (spec §8.1).

        Evidence of the request in the broker's positions or deals makes it DONE. Without evidence, a row sent
        by an earlier epoch stays UNKNOWN until that epoch is proven unable to send (`Gateway.sender_stopped`:
        its holder may be paused or hung just before `order_send`). Then, as for a row of this epoch, one more
        look after max(`unknown_recheck_s`, `inflight_horizon_s`) (a request the terminal had already taken
        may still complete) decides: evidence makes it DONE, none FAILED `not_applied`.
        """
        request = action.request or {}
        try:
            found = self._evidence(action, request, trade)
        except BrokerError as exc:  # broker unreachable: the row stays, the trade takes no new action
            return Result(action.status, {"error": str(exc)})
        if found is not None:
            done = Result(ActionStatus.DONE, {**(action.result or {}), **found, "reconciled": True})
            return self._commit(epoch, action, done, ActionStatus.DONE)
        detail = dict(action.result or {})
        # A request the terminal took may still complete this long after (a timed-out send, a reconnecting
        # terminal, a sender killed mid-request): only a look after it may conclude "not applied".
        wait = max(self.config.execution.unknown_recheck_s, self.config.execution.inflight_horizon_s)
        if action.epoch != epoch and detail.get("sender_stopped_at") is None:
            if not self.gateway.sender_stopped(action.epoch):
                first = not detail.get("awaiting_proof")
                if first:
                    detail["awaiting_proof"] = True
                    self.gateway.outcome(epoch, action, ActionStatus.UNKNOWN, result=detail)
                return Result(ActionStatus.UNKNOWN, detail, alert=first)
            detail.update(awaiting_proof=False, sender_stopped_at=ctx.now.isoformat(),
                          recheck_from=ctx.now.isoformat())  # fmt: skip
            self.gateway.outcome(epoch, action, ActionStatus.UNKNOWN, result=detail)
            return Result(ActionStatus.UNKNOWN, detail)
        # Nothing found: look once more after the wait, then it was not applied.
        first_look = detail.get("recheck_from")
        if first_look is None:
            detail["recheck_from"] = ctx.now.isoformat()
            self.gateway.outcome(epoch, action, ActionStatus.UNKNOWN, result=detail)
            return Result(ActionStatus.UNKNOWN, detail)
        if ctx.now < datetime.fromisoformat(first_look) + timedelta(seconds=wait):
            return Result(ActionStatus.UNKNOWN, detail)
        failed = Result(ActionStatus.FAILED, {**detail, "reason": "not_applied"})
        return self._commit(epoch, action, failed, ActionStatus.FAILED, error="not applied")

    def _evidence(self, action: Action, request: dict[str, Any], trade: Trade) -> dict[str, Any] | None:
        op = request.get("op")
        identifier = request.get("identifier")
        if op is None or identifier is None:
            return None  # marked SENT but the request never left (crash between the two): not applied
        since = datetime.fromisoformat(request["at"]) - timedelta(minutes=5)
        if op == "modify":
            position = self.broker.position(identifier)
            if position is None:
                return None
            spec = self.broker.symbol(position.symbol)
            half_tick = (spec.tick_size or spec.point) / 2
            if position.sl is not None and math.isclose(position.sl, request["sl"], abs_tol=half_tick):
                return {"sl": position.sl}
            return None
        if op == "close":
            deals = [d for d in self.broker.deals(identifier, since=since)
                     if d.entry in ("out", "out_by") and d.comment == request["comment"]]  # fmt: skip
            if deals:
                return {
                    "volume": sum(d.volume for d in deals),
                    "price": deals[-1].price,
                    "deal": deals[-1].ticket,
                }
            # Brokers may overwrite comments: the volume is evidence too.
            position = self.broker.position(identifier)
            before, wanted = float(request["position_volume"]), float(request["volume"])
            if position is None and wanted >= before - 1e-9:
                return {"volume": wanted, "evidence": "position_gone"}
            if position is not None and position.volume <= before - wanted + 1e-9:
                return {"volume": before - position.volume, "evidence": "volume"}
            return None
        if op == "open":
            deals = [d for d in self.broker.deals(since=since, magic=request["magic"])
                     if d.entry == "in" and d.comment == request["comment"]]  # fmt: skip
            if deals:
                d = deals[-1]
                return {"identifier": d.identifier, "volume": d.volume, "price": d.price, "deal": d.ticket}
            return None
        return None


__all__ = ["DEFENSIVE", "Context", "Executor", "Result", "leg_identifier", "planning_spec"]
