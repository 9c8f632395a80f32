"""Never twice: an earlier leader paused or hung inside the send window (issue 11, point 1).

The old leader journals an action SENT, passes every check, and stops just before `order_send` reaches the
terminal; a new leader takes over. Before: it marked the row FAILED `not_applied` after `unknown_recheck_s` and
sent again, and the continued old leader's request executed too (two half-closes closed the whole position).
Now the new leader waits for proof that the old epoch can send no more, then for the in-flight horizon, and
re-reads the broker before concluding anything; nothing risk-adding goes out for the trade meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dtms.engine.cycle import Engine
from dtms.engine.machine import ActionType
from dtms.gateway import Gateway
from dtms.models import Action, ActionStatus, Holder, TradeState
from tests.engine_helpers import Recorder, Rig, check_journal, close_rigs, evaluation, make_rig

S = TradeState
DEAL = 1  # TRADE_ACTION_DEAL
HORIZON_S = 15.0


class SendPausedError(Exception):
    """The old leader stops here: after SENT was journaled, before the request reached the terminal."""


class Leadership:
    """The new leader's view of the election; the test decides when the old epoch is proven stopped."""

    def __init__(self, epoch: int) -> None:
        self._epoch = epoch
        self.proven = False
        self.asked: list[int] = []

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def remaining_ms(self) -> int:
        return 2**62

    def sender_stopped(self, epoch: int) -> bool:
        self.asked.append(epoch)
        return self.proven


@pytest.fixture(autouse=True)
def _close_rigs() -> Iterator[None]:
    yield
    close_rigs()


def _pause_in_send_window(rig: Rig) -> list[Callable[[], Any]]:
    """Make the old leader's next send stop between SENT and the broker call; returns the held calls."""
    held: list[Callable[[], Any]] = []
    gateway = rig.engine.executor.gateway

    def send(epoch: int, action: Action, request: dict[str, Any], call: Callable[[], Any]) -> Any:
        gateway.store.mark_sent(epoch, action.action_id, request)
        held.append(call)
        raise SendPausedError

    gateway.send = send  # type: ignore[method-assign]
    return held


def _new_leader(rig: Rig) -> tuple[Engine, Leadership, Recorder]:
    holder = Holder(name="b", host="h", pid=2, proc_start=None, boot_id=None, token="b")  # noqa: S106
    taken = rig.store.take_over(
        holder, ttl_ms=10**9, now_boot_ms=0, lock_inode=None, decide=lambda r: "expired"
    )
    assert taken is not None
    lead, notifier = Leadership(taken[0]), Recorder()
    engine = Engine(rig.store, rig.broker, Gateway(rig.store, lead, send_margin_s=0), rig.config,
                    now=rig.term.now, notifier=notifier, wait=rig.term.advance)  # fmt: skip
    engine.start(taken[0])
    return engine, lead, notifier


def _row(rig: Rig, action_id: int) -> Action:
    return next(a for a in rig.journal() if a.action_id == action_id)


def _sends(rig: Rig) -> list[dict[str, Any]]:
    return [r for r in rig.sends() if r["request"].get("action") == DEAL]


def _closed_volume(rig: Rig, identifier: int) -> float:
    return sum(d.volume for d in rig.broker.deals(identifier) if d.entry in ("out", "out_by"))


def _partial_close_paused(tmp_path: Path) -> tuple[Rig, int, int, list[Callable[[], Any]]]:
    rig = make_rig(tmp_path)
    trade = rig.open_main()
    rig.put_state(trade.identifier, S.WARNING_L1)
    held = _pause_in_send_window(rig)
    with pytest.raises(SendPausedError):
        rig.step(trade.identifier, evaluation(-5))  # WARNING_L1 → WARNING_L2: close 50 %
    (row,) = [a for a in rig.journal(trade.identifier) if a.action_type == ActionType.PARTIAL_CLOSE.value]
    assert row.status is ActionStatus.SENT
    assert _sends(rig) == []
    return rig, trade.identifier, row.action_id, held


def _tick(rig: Rig, engine: Engine, epoch: int, seconds: float, every: float = 5.0) -> None:
    for _ in range(round(seconds / every)):
        rig.advance(every)
        engine.tick(epoch)


def test_without_proof_the_row_stays_unknown_alerted_once_and_nothing_is_resent(tmp_path):
    rig, identifier, action_id, held = _partial_close_paused(tmp_path)
    engine, lead, notifier = _new_leader(rig)
    _tick(rig, engine, lead._epoch, 120)  # far past unknown_recheck_s (10 s) and the horizon
    row = _row(rig, action_id)
    assert row.status is ActionStatus.UNKNOWN
    assert (row.result or {}).get("awaiting_proof") is True
    assert lead.asked
    assert set(lead.asked) == {1}
    assert _sends(rig) == []
    alerts = [e for e in notifier.events if e.kind == "alert" and e.fields.get("kind") == "awaiting_proof"]
    assert len(alerts) == 1
    assert alerts[0].fields["action_id"] == action_id
    # The old leader is continued: its request executes once, and the new leader records it DONE.
    held.pop()()
    _tick(rig, engine, lead._epoch, 10)
    row = _row(rig, action_id)
    assert row.status is ActionStatus.DONE
    assert len(_sends(rig)) == 1
    assert _closed_volume(rig, identifier) == pytest.approx(0.5)
    check_journal(rig)


def test_a_request_landing_after_the_proof_within_the_horizon_is_found_not_repeated(tmp_path):
    """The exact reproduction: the old request reaches the terminal after the new leader's first looks."""
    rig, identifier, action_id, held = _partial_close_paused(tmp_path)
    engine, lead, _ = _new_leader(rig)
    lead.proven = True
    _tick(rig, engine, lead._epoch, HORIZON_S - 5)  # past unknown_recheck_s, inside the horizon
    assert _sends(rig) == []
    held.pop()()  # the request the terminal took before the kill completes now
    _tick(rig, engine, lead._epoch, 60)
    row = _row(rig, action_id)
    assert row.status is ActionStatus.DONE
    assert len(_sends(rig)) == 1
    assert _closed_volume(rig, identifier) == pytest.approx(0.5)
    assert rig.store.get_trade(identifier).volume == pytest.approx(0.5)  # type: ignore[union-attr]
    check_journal(rig)


def test_after_proof_and_horizon_with_no_trace_it_is_not_applied_and_sent_once(tmp_path):
    rig, identifier, action_id, _held = _partial_close_paused(
        tmp_path
    )  # the old leader was killed: never sent
    engine, lead, _ = _new_leader(rig)
    lead.proven = True
    _tick(rig, engine, lead._epoch, HORIZON_S - 5)
    row = _row(rig, action_id)
    assert row.status is ActionStatus.UNKNOWN  # unknown_recheck_s alone no longer concludes
    _tick(rig, engine, lead._epoch, 60)
    row = _row(rig, action_id)
    assert row.status is ActionStatus.FAILED
    assert (row.result or {}).get("reason") == "not_applied"
    assert len(_sends(rig)) == 1  # the resend, once
    assert _closed_volume(rig, identifier) == pytest.approx(0.5)
    check_journal(rig)


def test_nothing_risk_adding_is_sent_for_a_trade_with_an_undecided_request(tmp_path):
    """A hedge planned while the old epoch's close is undecided waits (INTENT, reason in_flight)."""
    rig, identifier, _action_id, _held = _partial_close_paused(tmp_path)
    engine, lead, _ = _new_leader(rig)
    engine.tick(lead._epoch)
    trade = rig.trade(identifier)
    hedge = engine.transitions.store.journal_intent(lead._epoch, identifier=identifier, action_type="open_hedge",
                                                    idempotency_key="test-hedge", leg="main")  # fmt: skip
    result = engine.executor.run(lead._epoch, hedge, trade, engine.transitions.context(trade, None))
    assert result.status is ActionStatus.INTENT
    assert result.detail.get("reason") == "in_flight"
    assert [r for r in rig.sends() if r["request"].get("comment", "").startswith("dtms-h")] == []


# -- every action type ------------------------------------------------------------------------------------

#: (action type, params, from, to): one transition whose primary is that action, on a prepared trade.
KINDS = [
    (ActionType.TIGHTEN_SL, {}, S.HEALTHY, S.WARNING_L1),
    (ActionType.PARTIAL_CLOSE, {"fraction": 0.5}, S.WARNING_L1, S.WARNING_L2),
    (ActionType.MOVE_SL_BREAKEVEN, {}, S.WARNING_L1, S.WARNING_L2),
    (ActionType.OPEN_HEDGE, {}, S.WARNING_L2, S.HEDGED),
    (ActionType.CLOSE_HEDGE, {}, S.HEDGED, S.RECOVERING),
    (ActionType.RE_ADD_POSITION, {}, S.RECOVERING, S.HEALTHY),
    (ActionType.CLOSE_ALL, {}, S.WARNING_L2, S.CLOSED),
]


def _prepared(tmp_path: Path, kind: ActionType, params: dict[str, Any], from_state: TradeState,
              to_state: TradeState) -> tuple[Rig, int, list[Callable[[], Any]]]:  # fmt: skip
    """A rig whose old leader (epoch 1) is paused inside the send window of a `kind` transition's primary."""
    from dtms.engine.machine import PlannedAction, Step
    from dtms.store import TradeUpdate

    rig = make_rig(tmp_path)
    trade = rig.open_main(sl_pips=30)
    engine_patch: dict[str, Any] = {}
    if kind is ActionType.CLOSE_HEDGE:
        out = rig.as_bot(lambda: rig.broker.open(trade.symbol, "SELL", 1.0, magic=rig.config.execution.magic,
                                                 comment="hedge"))  # fmt: skip
        assert out.is_done, out
        engine_patch["hedge"] = {"identifier": out.identifier, "volume": 1.0, "mode": "full"}
    rig.put_state(trade.identifier, from_state, **engine_patch)
    if kind is ActionType.RE_ADD_POSITION:
        rig.store.update_trades(rig.epoch, {trade.identifier: TradeUpdate({"closed_volume": 0.5})})
    trade = rig.trade(trade.identifier)
    held = _pause_in_send_window(rig)
    step = Step("test", from_state, to_state, (PlannedAction(kind, True, params),), "test", None, None)
    with pytest.raises(SendPausedError):
        rig.engine.transitions.begin(rig.epoch, trade, step, rig.now(), None)
    assert len(held) == 1, f"{kind} was not sent"
    (tr,) = rig.store.pending_transitions()
    return rig, int(tr["transition_id"]), held


@pytest.mark.parametrize(("kind", "params", "from_state", "to_state"), KINDS, ids=[k[0].value for k in KINDS])
@pytest.mark.parametrize("lands", ["before_proof", "inside_horizon", "never"])
def test_no_action_type_executes_twice_whenever_the_paused_request_lands(tmp_path, kind, params, from_state,
                                                                        to_state, lands):  # fmt: skip
    """For every action type: the paused request lands before the old epoch is proven stopped, after the proof
    but inside the in-flight horizon, or never (its sender was killed first). The transition's action executes
    exactly once at the terminal (the late request, or one resend), and what executed is journaled DONE."""
    rig, tid, held = _prepared(tmp_path, kind, params, from_state, to_state)
    engine, lead, _ = _new_leader(rig)
    if lands == "before_proof":
        _tick(rig, engine, lead._epoch, 60)
        assert rig.sends() == []
        held.pop()()
        lead.proven = True  # its loop ends after the late send and records that (quiesced)
    else:
        lead.proven = True
        _tick(rig, engine, lead._epoch, HORIZON_S - 5)
        assert rig.sends() == []
        if lands == "inside_horizon":
            held.pop()()
    _tick(rig, engine, lead._epoch, 120)
    rows = [a for a in rig.rows(tid) if a.action_type == kind.value]
    done = [a for a in rows if a.status is ActionStatus.DONE]
    assert len(done) == 1, rows
    assert rig.transition_status(tid) == "applied"
    if lands == "never":
        assert (rows[0].status, (rows[0].result or {}).get("reason")) == (ActionStatus.FAILED, "not_applied")
    else:
        assert rows[0].status is ActionStatus.DONE  # the late request itself, found, never repeated
    check_journal(rig)
