"""Transitions: journal a step with its intents, drive its primary action to an outcome, then apply or
abandon.

Everything here is restartable from the database alone: `drive(transition_id)` looks at the journal rows of
the transition and does the next thing, so a new leader after a crash calls the very same code (spec §8).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from dtms.engine.execute import Context, Executor, Result
from dtms.engine.machine import ActionType, Step
from dtms.errors import BrokerError
from dtms.events import Event, EventKind, EventSink
from dtms.models import Action, ActionStatus, Trade, TradeState
from dtms.store import Store, TradeUpdate

log = logging.getLogger(__name__)

FINAL: Final = frozenset({ActionStatus.DONE, ActionStatus.SKIPPED, ActionStatus.FAILED})
#: Skips that still let the state change: the defensive intent is met or cannot apply (spec §8.3).
VALID_SKIPS: Final = frozenset(
    {
        "already tighter",
        "frozen",
        "below_min",
        "not_owner",
        "position_gone",
        "hedge_mode_reduced",
        "R unknown",
        "no_leg",
        "gated",
    }
)
#: close_all legs are retried on every check (never abandoned); an alert is raised at this failure count.
CLOSE_ALERT_AFTER: Final = 3


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class Transitions:
    """Begins and drives transitions for the engine; the state changes only with the primary outcome."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        notifier: EventSink,
        context: Callable[[Trade, TradeState | None], Context],
    ) -> None:
        self.store = store
        self.executor = executor
        self.notifier = notifier
        self.context = context
        self.config = executor.config

    # -- begin --------------------------------------------------------------------------------------

    def legs_to_close(self, trade: Trade, *, include_main: bool = True) -> list[str]:
        """Every open leg of the trade: main, the hedge (unless it was a reduction) and each re-add."""
        legs = ["main"] if include_main else []
        hedge = trade.engine.get("hedge") or {}
        if hedge.get("identifier") and hedge.get("mode") == "hedge":
            legs.append("hedge")
        legs += [f"readd:{r['identifier']}" for r in trade.engine.get("readds") or [] if r.get("identifier")]
        return legs

    def begin(self, epoch: int, trade: Trade, step: Step, now: datetime, score: float | None) -> int | None:
        """Journal the transition and its intents in one fenced transaction, then drive it."""
        intents: list[tuple[str, str, dict[str, Any]]] = []
        for planned in step.actions:
            params = {**dict(planned.params), "primary": planned.primary}
            if planned.type is ActionType.CLOSE_ALL:
                legs = self.legs_to_close(trade, include_main=not planned.params.get("legs_only"))
                intents += [(leg, ActionType.CLOSE_ALL.value, params) for leg in legs]
            elif planned.type is ActionType.CLOSE_HEDGE:
                intents.append(("hedge", planned.type.value, params))
            else:
                intents.append(("main", planned.type.value, params))
        detail = {
            "rule": step.rule,
            "flat_timer_started_at": _iso(step.flat_timer_started_at),
            "recovery_timer_started_at": _iso(step.recovery_timer_started_at),
            "last_trail_bar_time": step.last_trail_bar_time,
        }
        with self.store.fenced(epoch):  # the transition, its intents and its event: one commit
            begun = self.store.begin_transition(
                epoch, identifier=trade.identifier, from_state=step.from_state, to_state=step.new_state,
                reason=step.reason, score=score, actions=intents, detail=detail,
                engine={"closing": True} if step.new_state is TradeState.CLOSED else None,
            )  # fmt: skip
            if begun is None:
                return None
            transition_id, _ = begun
            self._emit(
                epoch,
                "state_transition",
                now,
                trade,
                **{
                    "from": step.from_state.value,
                    "to": step.new_state.value,
                    "reason": step.reason,
                    "score": score,
                    "transition_id": transition_id,
                    "status": "pending",
                },
            )
        self.drive(epoch, transition_id, now)
        return transition_id

    # -- drive --------------------------------------------------------------------------------------

    def drive(self, epoch: int, transition_id: int, now: datetime) -> str:
        """Take a pending transition one step further; returns its status (pending, applied, abandoned)."""
        tr = self.store.transition(transition_id)
        if tr is None or tr["status"] != "pending":
            return "gone" if tr is None else str(tr["status"])
        trade = self.store.get_trade(tr["identifier"])
        if trade is None:
            return "gone"
        target = TradeState(tr["to_state"])
        ctx = self.context(trade, target)
        primaries = [a for a in self.store.transition_actions(transition_id) if a.params.get("primary")]
        # A single primary (every rule but close_all) applies the state change in its outcome's transaction.
        settle = None if target is TradeState.CLOSED else self._settler(epoch, tr, trade, now)
        for action in primaries:
            if action.status not in FINAL:
                self._run(epoch, action, trade, ctx, settle)
        current = self.store.transition(transition_id)
        if current is not None and current["status"] == "applied":  # by the settler, with its event
            self._run_secondaries(epoch, transition_id, now)
            return "applied"
        primaries = [a for a in self.store.transition_actions(transition_id) if a.params.get("primary")]
        if any(a.status not in FINAL for a in primaries):
            return "pending"
        if target is TradeState.CLOSED:
            return self._drive_close(epoch, tr, trade, primaries, now)
        primary = primaries[-1] if primaries else None  # the latest attempt (resend or fallback) decides
        if primary is None or primary.status is ActionStatus.DONE or self._valid_skip(primary):
            self._apply(epoch, tr, trade, primary, now)
            self._run_secondaries(epoch, transition_id, now)
            return "applied"
        if (primary.result or {}).get("reason") == "not_applied":
            # Confirmed never executed (e.g. the leader died between SENT and the send): send it afresh.
            tries = sum(1 for a in primaries if a.action_type == primary.action_type)
            if tries <= self.config.execution.secondary_attempts:
                self.store.journal_intent(
                    epoch, identifier=trade.identifier, idempotency_key=f"{transition_id}:resend{tries}",
                    leg=primary.leg, action_type=primary.action_type, params=primary.params,
                    transition_id=transition_id,
                )  # fmt: skip
                return self.drive(epoch, transition_id, now)
        if primary.action_type == ActionType.OPEN_HEDGE.value and not primary.params.get("fallback"):
            # A refused hedge (10019 no money, 10040, 10044, 10046 ...) takes its fallback (spec §5.4).
            self.store.journal_intent(
                epoch, identifier=trade.identifier, idempotency_key=f"{transition_id}:fallback", leg="main",
                action_type=ActionType.OPEN_HEDGE.value,
                params={**primary.params, "fallback": True, "fallback_reason": f"rejected {primary.retcode}"},
                transition_id=transition_id,
            )  # fmt: skip
            return self.drive(epoch, transition_id, now)
        with self.store.fenced(epoch):
            self.store.finish_transition(epoch, transition_id, applied=False)
            self._emit(epoch, "state_transition", now, trade, **{"from": tr["from_state"],
                       "to": tr["to_state"], "reason": tr["reason"], "transition_id": transition_id,
                       "status": "abandoned", "error": primary.error})  # fmt: skip
        return "abandoned"

    def _settler(self, epoch: int, tr: dict[str, Any], trade: Trade, now: datetime) -> Any:
        def settle(action: Action, result: Result) -> Any:
            if not (result.status is ActionStatus.DONE or self._is_valid_skip(result.status, result.detail)):
                return None
            update = self._update(tr, trade, action.action_type, result.status, result.detail, now)

            def apply() -> None:
                self.store.finish_transition(epoch, tr["transition_id"], applied=True, update=update)
                self._applied(epoch, tr, trade, now)

            return apply

        return settle

    def _run(self, epoch: int, action: Action, trade: Trade, ctx: Context, settle: Any = None) -> Result:
        def resolved(done: Action, result: Result) -> Callable[[], None]:
            """The outcome's event, and what `settle` writes with it, commit with the outcome itself."""
            writes = settle(done, result) if settle is not None else None

            def commit() -> None:
                if writes is not None:
                    writes()
                self._emit(
                    epoch,
                    "action",
                    ctx.now,
                    trade,
                    action_type=done.action_type,
                    leg=done.leg,
                    status=result.status.value,
                    detail=result.detail.get("reason") or result.detail.get("text"),
                )

            return commit

        result = self.executor.run(epoch, action, trade, ctx, resolved)
        if result.alert:
            self._emit(epoch, "alert", ctx.now, trade, kind="awaiting_proof", action_id=action.action_id,
                       action_type=action.action_type, sender_epoch=action.epoch)  # fmt: skip
        return result

    @staticmethod
    def _is_valid_skip(status: ActionStatus, detail: dict[str, Any] | None) -> bool:
        return status is ActionStatus.SKIPPED and (detail or {}).get("reason") in VALID_SKIPS

    def _valid_skip(self, action: Action) -> bool:
        return self._is_valid_skip(action.status, action.result)

    def _drive_close(
        self, epoch: int, tr: dict[str, Any], trade: Trade, legs: list[Action], now: datetime
    ) -> str:
        """close_all is never abandoned: a failed leg gets a fresh intent on every drive until it closes."""
        by_leg: dict[str, list[Action]] = {}
        for a in legs:
            by_leg.setdefault(a.leg, []).append(a)
        retrying = False
        for leg, rows in by_leg.items():
            if any(a.status in (ActionStatus.DONE, ActionStatus.SKIPPED) for a in rows):
                continue
            failures = len(rows)
            if failures == CLOSE_ALERT_AFTER:
                self._emit(epoch, "alert", now, trade, kind="leg_close_failed", leg=leg, error=rows[-1].error)
            self.store.journal_intent(
                epoch,
                identifier=trade.identifier,
                idempotency_key=f"{tr['transition_id']}:{leg}:retry{failures}",
                leg=leg,
                action_type=ActionType.CLOSE_ALL.value,
                params={"primary": True},
                transition_id=tr["transition_id"],
            )
            retrying = True
        if retrying:
            return "pending"
        if self._settle_strays(epoch, tr, trade, now):
            return "pending"
        fresh = self.store.get_trade(trade.identifier) or trade
        late = [leg for leg in self.legs_to_close(fresh, include_main=False) if leg not in by_leg]
        for leg in late:  # a re-add decided DONE only now: it is closed with the rest
            self.store.journal_intent(
                epoch, identifier=trade.identifier, idempotency_key=f"{tr['transition_id']}:{leg}:late",
                leg=leg, action_type=ActionType.CLOSE_ALL.value, params={"primary": True},
                transition_id=tr["transition_id"],
            )  # fmt: skip
        if late:
            return self.drive(epoch, tr["transition_id"], now)
        # A main position owned by another manager was left alone (not_owner): released to its owner (§9).
        released = any(a.leg == "main" and a.status is ActionStatus.SKIPPED
                       and (a.result or {}).get("reason") == "not_owner" for a in legs)  # fmt: skip
        self._apply(epoch, tr, trade, None, now, close_reason="released_to_owner" if released else None)
        return "applied"

    def _apply(self, epoch: int, tr: dict[str, Any], trade: Trade, primary: Action | None, now: datetime,
               close_reason: str | None = None) -> None:  # fmt: skip
        """Apply a transition whose primary was resolved earlier (or that has none), in its own
        transaction."""
        if primary is None:
            update = self._update(tr, trade, None, None, {}, now, close_reason)
        else:
            update = self._update(tr, trade, primary.action_type, primary.status, primary.result or {}, now)
        with self.store.fenced(epoch):
            self.store.finish_transition(epoch, tr["transition_id"], applied=True, update=update)
            self._applied(epoch, tr, trade, now)

    def _applied(self, epoch: int, tr: dict[str, Any], trade: Trade, now: datetime) -> None:
        """The applied transition's event (inside the transaction that applied it)."""
        applied = self.store.get_trade(trade.identifier)
        state = applied.state.value if applied is not None else tr["to_state"]
        self._emit(epoch, "state_transition", now, trade, **{"from": tr["from_state"], "to": state,
                   "reason": tr["reason"], "score": tr["score"], "transition_id": tr["transition_id"],
                   "status": "applied"})  # fmt: skip

    def _update(
        self,
        tr: dict[str, Any],
        trade: Trade,
        primary_type: str | None,
        status: ActionStatus | None,
        result: dict[str, Any],
        now: datetime,
        close_reason: str | None = None,
    ) -> TradeUpdate:
        """The trade's new state, timers, legs and volumes once the primary action is resolved (reads the
        broker)."""
        target = TradeState(tr["to_state"])
        detail = tr["detail"]
        columns: dict[str, Any] = {"state": target, "state_at": now}
        engine: dict[str, Any] = {
            "closing": None,
            "flat_timer_started_at": detail.get("flat_timer_started_at"),
            "recovery_timer_started_at": detail.get("recovery_timer_started_at"),
            "last_trail_bar_time": detail.get("last_trail_bar_time"),
        }
        done = result if status is ActionStatus.DONE else {}
        planned = result.get("planned")
        if primary_type == ActionType.OPEN_HEDGE.value:
            if planned == ActionType.OPEN_HEDGE.value:
                engine["hedge"] = {"mode": "hedge", "identifier": done.get("identifier"),
                                   "ticket": done.get("identifier"),  # a new position's ticket is its id
                                   "volume": done.get("volume"), "sl": result.get("sl"),
                                   "open_price": done.get("price")}  # fmt: skip
            elif planned == ActionType.CLOSE_ALL.value:  # hedge.fallback = close_all
                target = TradeState.CLOSED
                columns["state"] = target
            else:
                engine["hedge"] = {
                    "mode": "reduced",
                    "volume": done.get("volume"),
                    "reason": result.get("note"),
                }
        if primary_type == ActionType.CLOSE_HEDGE.value:
            engine["hedge"] = None
        if target is TradeState.CLOSED:
            columns.update(closed_at=now, close_reason=close_reason or tr["reason"], armed=0)
        position = (
            self.executor.broker.position(trade.identifier) if target is not TradeState.CLOSED else None
        )
        if position is not None:
            columns.update(volume=position.volume, sl=position.sl, tp=position.tp,
                           closed_volume=max(0.0, trade.initial_volume - position.volume))  # fmt: skip
        return TradeUpdate(columns, engine)

    # -- secondaries --------------------------------------------------------------------------------

    def _run_secondaries(self, epoch: int, transition_id: int, now: datetime) -> None:
        trade = None
        for action in self.store.transition_actions(transition_id):
            if action.params.get("primary") or action.status in FINAL:
                continue
            trade = self.store.get_trade(action.identifier)
            if trade is None or not trade.is_open:
                return
            self._run(epoch, action, trade, self.context(trade, None), self._secondary_settler(epoch, trade))

    def retry_open_actions(self, epoch: int, trade: Trade, now: datetime) -> None:
        """Secondary actions of applied transitions still open (INTENT/SENT/UNKNOWN): run or reconcile
        them."""
        for action in self.store.open_actions(trade.identifier):
            if action.params.get("primary"):
                continue
            self._run(epoch, action, trade, self.context(trade, None), self._secondary_settler(epoch, trade))

    def _settle_strays(self, epoch: int, tr: dict[str, Any], trade: Trade, now: datetime) -> bool:
        """The trade's other actions still open once its close_all legs are done. One never sent is dropped
        (SKIPPED `trade_closing`: a closing trade adds nothing); one sent whose answer is not known (a re-add
        sent just before the close began) is reconciled first, since its position, if it exists, must be
        closed too before the trade may be CLOSED. True while any is undecided."""
        strays = [
            a for a in self.store.open_actions(trade.identifier) if a.transition_id != tr["transition_id"]
        ]
        for action in strays:
            if action.status is ActionStatus.INTENT:
                self.executor.gateway.outcome(
                    epoch, action, ActionStatus.SKIPPED, result={"reason": "trade_closing"}
                )
            else:
                self._run(
                    epoch, action, trade, self.context(trade, None), self._secondary_settler(epoch, trade)
                )
        return any(a.transition_id != tr["transition_id"] for a in self.store.open_actions(trade.identifier))

    def _secondary_settler(self, epoch: int, trade: Trade) -> Any:
        """What a resolved secondary writes in the same fenced transaction as its outcome: a re-add's new leg
        (or, netting, the main position's volumes), a failed action's retry intent. Written apart, a leader
        killed between the two would leave a re-added position that no trade knows (an orphan)."""

        def settle(action: Action, result: Result) -> Any:
            if result.status is ActionStatus.DONE and action.action_type == ActionType.RE_ADD_POSITION.value:
                if result.detail.get("identifier") == trade.identifier:
                    return self._netted_re_add(epoch, trade, float(result.detail.get("volume") or 0.0))
                leg = {"identifier": result.detail.get("identifier"), "volume": result.detail.get("volume")}
                return lambda: self._add_leg(epoch, trade.identifier, leg)
            if result.status is ActionStatus.FAILED and action.transition_id is not None:
                return lambda: self._retry_secondary(epoch, action, trade)
            return None

        return settle

    def _add_leg(self, epoch: int, identifier: int, leg: dict[str, Any]) -> None:
        current = self.store.get_trade(identifier)  # inside the outcome's transaction: the legs as they are
        readds = [*((current.engine.get("readds") if current is not None else None) or []), leg]
        self.store.update_trades(epoch, {identifier: TradeUpdate(engine={"readds": readds})})

    def _retry_secondary(self, epoch: int, action: Action, trade: Trade) -> None:
        tries = [a for a in self.store.transition_actions(action.transition_id or 0)
                 if a.action_type == action.action_type and a.leg == action.leg]  # fmt: skip
        if len(tries) < self.config.execution.secondary_attempts:
            self.store.journal_intent(
                epoch, identifier=trade.identifier,
                idempotency_key=f"{action.transition_id}:{action.action_type}:{action.leg}:retry{len(tries)}",
                leg=action.leg, action_type=action.action_type,
                params={k: v for k, v in action.params.items() if k != "fallback"},
                transition_id=action.transition_id,
            )  # fmt: skip

    def _netted_re_add(self, epoch: int, trade: Trade, added: float) -> Callable[[], object]:
        """Netting: the re-add enlarged the main position itself (spec §5.4). It is no leg of its own: the
        current volume is re-read (before the transaction) and the closed volume reduced by the re-added
        volume."""
        try:
            position = self.executor.broker.position(trade.identifier)
        except BrokerError:
            position = None
        volume = position.volume if position is not None else trade.volume + added
        closed = max(0.0, round(trade.closed_volume - added, 8))
        update = TradeUpdate({"volume": volume, "closed_volume": closed})
        return lambda: self.store.update_trades(epoch, {trade.identifier: update})

    def _emit(self, epoch: int, kind: EventKind, now: datetime, trade: Trade, /, **fields: Any) -> None:
        self.notifier.emit(
            Event(kind, now, {"identifier": trade.identifier, "symbol": trade.symbol, **fields}, epoch=epoch)
        )


__all__ = ["Transitions"]
