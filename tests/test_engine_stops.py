"""SL ownership (issue 14 §1): an SL moved at the broker by someone else is restored, alerted or adopted by
policy (`ownership.foreign_sl`), a tighter one adopted; every case an event and a journal row. On the
simulated terminal, BUY and SELL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dtms.models import ActionStatus, TradeState
from tests.engine_helpers import Rig, check_journal, close_rigs, evaluation, make_rig

PIP = 0.0001


@pytest.fixture(autouse=True)
def _close_rigs() -> Iterator[None]:
    yield
    close_rigs()


def _rig(tmp_path: Path, **ownership: Any) -> Rig:
    return make_rig(tmp_path, config={"ownership": ownership} if ownership else None)


def _bot_moves_sl(rig: Rig, ident: int, pips: float) -> float:
    """The bot (not dtms) moves the SL `pips` away from price (negative: towards it); returns the new SL."""
    position = rig.position(ident)
    d = 1 if position.direction == "BUY" else -1
    sl = round(position.sl - d * pips * PIP, 5)
    out = rig.as_bot(lambda: rig.broker.modify_sl_tp(ident, sl, position.tp))
    assert out.is_done, out
    return sl


def _check(rig: Rig) -> None:
    rig.advance(30)
    rig.tick()


def _rows(rig: Rig, ident: int, action_type: str) -> list[Any]:
    return [a for a in rig.journal(ident) if a.action_type == action_type]


def _events(rig: Rig, kind: str, sub: str) -> list[dict[str, Any]]:
    return [e.fields for e in rig.notifier.events if e.kind == kind and e.fields.get("kind") == sub]


@pytest.mark.parametrize("direction", ["BUY", "SELL"])
def test_a_loosened_sl_is_restored_and_alerted_by_default(tmp_path: Path, direction: str) -> None:
    rig = _rig(tmp_path)
    trade = rig.open_main(direction)
    ident, original = trade.identifier, trade.sl
    loose = _bot_moves_sl(rig, ident, 20)
    _check(rig)
    assert rig.position(ident).sl == pytest.approx(original)
    assert rig.trade(ident).sl == pytest.approx(original)
    [row] = _rows(rig, ident, "restore_sl")
    assert row.status is ActionStatus.DONE
    assert (row.params["sl"], row.params["loosened_to"]) == (pytest.approx(original), pytest.approx(loose))
    [event] = _events(rig, "external_change", "sl_loosened")
    assert (event["policy"], event["sl"], event["previous"]) == ("restore", loose, original)
    assert _events(rig, "alert", "sl_loosened")
    _check(rig)  # the restored SL is dtms's own: nothing more happens
    assert len(_rows(rig, ident, "restore_sl")) == 1
    assert _rows(rig, ident, "adopt_sl") == []
    check_journal(rig)


@pytest.mark.parametrize("direction", ["BUY", "SELL"])
def test_a_tighter_sl_is_adopted_with_an_event_and_a_journal_row(tmp_path: Path, direction: str) -> None:
    rig = _rig(tmp_path)
    ident = rig.open_main(direction).identifier
    tight = _bot_moves_sl(rig, ident, -10)
    _check(rig)
    assert rig.position(ident).sl == pytest.approx(tight)
    assert rig.trade(ident).sl == pytest.approx(tight)
    [row] = _rows(rig, ident, "adopt_sl")
    assert (row.status, row.result["reason"], row.result["sl"]) == (ActionStatus.DONE, "tightened", tight)
    assert _events(rig, "external_change", "sl_tightened")
    assert not [e for e in rig.notifier.events if e.kind == "alert"]
    assert _rows(rig, ident, "restore_sl") == []


@pytest.mark.parametrize(("policy", "alerted"), [("alert", True), ("adopt", False)])
@pytest.mark.parametrize("direction", ["BUY", "SELL"])
def test_the_policy_can_keep_a_loosened_sl(tmp_path: Path, direction: str, policy: str, alerted: bool) -> None:
    rig = _rig(tmp_path, foreign_sl=policy)
    ident = rig.open_main(direction).identifier
    loose = _bot_moves_sl(rig, ident, 20)
    _check(rig)
    assert rig.position(ident).sl == pytest.approx(loose)
    assert rig.trade(ident).sl == pytest.approx(loose)
    [row] = _rows(rig, ident, "adopt_sl")
    assert row.result["reason"] == policy
    assert bool(_events(rig, "alert", "sl_loosened")) is alerted
    assert _rows(rig, ident, "restore_sl") == []


@pytest.mark.parametrize("direction", ["BUY", "SELL"])
def test_a_removed_sl_is_restored(tmp_path: Path, direction: str) -> None:
    rig = _rig(tmp_path)
    trade = rig.open_main(direction)
    ident = trade.identifier
    assert rig.as_bot(lambda: rig.broker.modify_sl_tp(ident, None, trade.tp)).is_done
    assert rig.position(ident).sl is None
    _check(rig)
    assert rig.position(ident).sl == pytest.approx(trade.sl)


def test_another_managers_trade_keeps_its_sl_unless_dtms_defends_it(tmp_path: Path) -> None:
    """owner=universal: in HEALTHY its manager may loosen (adopted, event); in WARNING_L2 dtms restores."""
    rig = _rig(tmp_path)
    ident = rig.open_main(owner="universal").identifier
    loose = _bot_moves_sl(rig, ident, 20)
    _check(rig)
    assert rig.position(ident).sl == pytest.approx(loose)
    [row] = _rows(rig, ident, "adopt_sl")
    assert row.result["reason"] == "owner"
    assert _events(rig, "external_change", "sl_loosened")[0]["policy"] == "owner"
    rig.put_state(ident, TradeState.WARNING_L2)
    _bot_moves_sl(rig, ident, 20)
    _check(rig)
    assert rig.position(ident).sl == pytest.approx(loose)  # dtms's record: the SL adopted before
    assert len(_rows(rig, ident, "restore_sl")) == 1


def test_restores_stop_after_the_limit_and_the_sl_is_kept_with_an_alert(tmp_path: Path) -> None:
    """Two managers fighting over one stop: after `max_sl_restores` restores dtms keeps the bot's SL."""
    rig = _rig(tmp_path, max_sl_restores=2)
    trade = rig.open_main()
    ident = trade.identifier
    for _ in range(2):
        _bot_moves_sl(rig, ident, 20)
        _check(rig)
        assert rig.position(ident).sl == pytest.approx(trade.sl)
    loose = _bot_moves_sl(rig, ident, 20)
    _check(rig)
    assert rig.position(ident).sl == pytest.approx(loose)
    assert len(_rows(rig, ident, "restore_sl")) == 2
    [row] = _rows(rig, ident, "adopt_sl")
    assert row.result["reason"] == "restore_limit"
    assert _events(rig, "alert", "sl_loosened")[-1]["policy"] == "restore_limit"


def test_dtms_own_stop_moves_are_not_someone_elses(tmp_path: Path) -> None:
    """T3's breakeven (a secondary: the trade's SL is not rewritten with it) and T1's tighten change the SL
    at the broker: the journal shows them as dtms's, so no adopt row and no external-change event."""
    rig = make_rig(tmp_path, config={"hedge": {"sl_atr": 20}})
    ident = rig.open_main(sl_pips=100).identifier
    rig.put_state(ident, TradeState.WARNING_L1)
    rig.step(ident, evaluation(-5))  # T3: partial close, then breakeven
    assert "move_sl_breakeven" in [a.action_type for a in rig.journal(ident)]
    _check(rig)
    _check(rig)
    assert _rows(rig, ident, "adopt_sl") == [] and _rows(rig, ident, "restore_sl") == []
    assert not [e for e in rig.notifier.events if e.kind == "external_change" and "sl" in e.fields["kind"]]
    check_journal(rig)
