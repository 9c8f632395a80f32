"""Volume step, stops and freeze levels, vanished positions: refused before sending, right outcome."""

from __future__ import annotations

import pytest
from sim_helpers import broker, sent, terminal

from dtms.broker import Handling, MT5Broker, OutcomeKind
from dtms.sim import Terminal


@pytest.fixture
def term() -> Terminal:
    return terminal()


@pytest.fixture
def b(term: Terminal) -> MT5Broker:
    return broker(term)


def _open(b: MT5Broker, symbol: str = "EURUSD", volume: float = 0.1, direction: str = "BUY") -> int:
    outcome = b.open(symbol, direction, volume)  # type: ignore[arg-type]
    assert outcome.kind is OutcomeKind.DONE
    assert outcome.identifier is not None
    return outcome.identifier


def test_half_of_the_minimum_volume_is_refused_without_sending(term: Terminal, b: MT5Broker) -> None:
    """A 50 % close of 0.01 lots floors to 0.00: nothing is sent (the original closed it in full)."""
    ident = _open(b, volume=0.01)
    before = len(sent(term))
    outcome = b.close(ident, 0.005)
    assert (outcome.kind, outcome.handling, outcome.retcode, outcome.sent) == (
        OutcomeKind.REJECTED,
        Handling.FIX,
        10014,
        False,
    )
    assert len(sent(term)) == before
    pos = b.position(ident)
    assert pos is not None
    assert pos.volume == 0.01


def test_close_leaving_less_than_the_minimum_is_refused(term: Terminal, b: MT5Broker) -> None:
    ident = _open(b, volume=0.015 + 0.005)  # 0.02
    outcome = b.close(ident, 0.015)  # floors to 0.01, leaves 0.01: fine
    assert outcome.kind is OutcomeKind.DONE
    assert outcome.volume == 0.01
    term.configure_symbol("EURUSD", volume_min=0.02)
    ident2 = _open(b, volume=0.03)
    refused = b.close(ident2, 0.02)  # would leave 0.01 < 0.02
    assert refused.kind is OutcomeKind.REJECTED
    assert refused.retcode == 10014
    assert not refused.sent


def test_volume_is_floored_to_the_step(term: Terminal, b: MT5Broker) -> None:
    ident = _open(b, volume=0.037)
    assert sent(term)[-1]["volume"] == 0.03
    assert b.close(ident, 0.0199).volume == 0.01


def test_volume_is_capped_at_the_maximum(term: Terminal, b: MT5Broker) -> None:
    term.configure_symbol("BTCUSD", volume_max=0.05)
    _open(b, "BTCUSD", volume=0.5)
    assert sent(term)[-1]["volume"] == 0.05


def test_open_below_the_minimum_is_refused(term: Terminal, b: MT5Broker) -> None:
    outcome = b.open("EURUSD", "BUY", 0.004)
    assert outcome.kind is OutcomeKind.REJECTED
    assert outcome.retcode == 10014
    assert sent(term) == []


def test_close_of_more_than_the_position_is_refused(term: Terminal, b: MT5Broker) -> None:
    ident = _open(b, volume=0.02)
    outcome = b.close(ident, 0.05)
    assert outcome.kind is OutcomeKind.REJECTED
    assert outcome.retcode == 10038
    assert not outcome.sent


def test_sl_inside_the_stops_level_is_refused_without_sending(term: Terminal, b: MT5Broker) -> None:
    ident = _open(b)  # EURUSD: stops level 10 points, freeze level 5
    before = len(sent(term))
    bid = b.tick("EURUSD").bid
    outcome = b.modify_sl_tp(ident, bid - 0.00008, None)  # 8 points below Bid
    assert (outcome.kind, outcome.handling, outcome.retcode, outcome.sent) == (
        OutcomeKind.REJECTED,
        Handling.FIX,
        10016,
        False,
    )
    assert len(sent(term)) == before
    assert b.modify_sl_tp(ident, bid - 0.00010, None).kind is OutcomeKind.DONE  # exactly 10 points is allowed


def test_sl_on_the_wrong_side_is_refused(b: MT5Broker) -> None:
    ident = _open(b, direction="SELL")
    ask = b.tick("EURUSD").ask
    outcome = b.modify_sl_tp(ident, ask - 0.001, None)  # a sell's SL must be above Ask
    assert outcome.kind is OutcomeKind.REJECTED
    assert outcome.retcode == 10016


def test_sell_levels_are_measured_from_ask(b: MT5Broker) -> None:
    ident = _open(b, direction="SELL")
    ask = b.tick("EURUSD").ask
    assert b.modify_sl_tp(ident, ask + 0.00009, None).retcode == 10016
    assert b.modify_sl_tp(ident, ask + 0.00011, None).kind is OutcomeKind.DONE


def test_modify_inside_the_freeze_level_is_deferred_without_sending(term: Terminal, b: MT5Broker) -> None:
    """A stop about to trigger is frozen: the change waits (DEFER), it is never looped (spec §5.5)."""
    ident = _open(b)
    term.configure_symbol("EURUSD", stops_level=0, freeze_level=20)
    bid = b.tick("EURUSD").bid
    assert b.modify_sl_tp(ident, bid - 0.00050, None).kind is OutcomeKind.DONE
    before = len(sent(term))
    term.configure_symbol("EURUSD", freeze_level=60)  # now the current SL sits inside the freeze band
    outcome = b.modify_sl_tp(ident, bid - 0.00040, None)
    assert (outcome.kind, outcome.handling, outcome.retcode, outcome.sent) == (
        OutcomeKind.DEFER,
        Handling.DEFER,
        10029,
        False,
    )
    assert len(sent(term)) == before


def test_terminal_freeze_answer_is_a_defer(term: Terminal, b: MT5Broker) -> None:
    """If the terminal itself answers 10029 (its stricter check), the outcome is DEFER too."""
    ident = _open(b)
    term.configure_symbol("EURUSD", stops_level=0, freeze_level=0)
    bid = b.tick("EURUSD").bid
    b.modify_sl_tp(ident, bid - 0.0005, None)
    term.configure_symbol("EURUSD", freeze_level=60)
    outcome = b.close(ident)  # the simulator refuses closes inside the freeze band by default
    assert outcome.kind is OutcomeKind.DEFER
    assert outcome.retcode == 10029
    assert outcome.sent


def test_unchanged_levels_are_done_without_sending(term: Terminal, b: MT5Broker) -> None:
    ident = _open(b)
    bid = b.tick("EURUSD").bid
    assert b.modify_sl_tp(ident, bid - 0.001, None).kind is OutcomeKind.DONE
    before = len(sent(term))
    outcome = b.modify_sl_tp(ident, bid - 0.001 + 0.000001, None)  # within half a tick
    assert outcome.kind is OutcomeKind.DONE
    assert not outcome.sent
    assert len(sent(term)) == before


def test_operations_on_a_vanished_position_are_gone(term: Terminal, b: MT5Broker) -> None:
    ident = _open(b)
    assert b.close(ident).kind is OutcomeKind.DONE
    for outcome in (b.close(ident), b.modify_sl_tp(ident, 1.0, None)):
        assert outcome.kind is OutcomeKind.REJECTED
        assert outcome.handling is Handling.GONE
        assert not outcome.sent


@pytest.mark.parametrize(
    ("mode", "direction", "retcode", "handling"),
    [
        (0, "BUY", 10017, Handling.HALT),
        (3, "BUY", 10044, Handling.REJECT),
        (1, "SELL", 10042, Handling.REJECT),
        (2, "BUY", 10043, Handling.REJECT),
    ],
)
def test_symbol_trade_mode_refuses_new_positions(
    term: Terminal, b: MT5Broker, mode: int, direction: str, retcode: int, handling: Handling
) -> None:
    term.configure_symbol("EURUSD", trade_mode=mode)
    outcome = b.open("EURUSD", direction, 0.01)  # type: ignore[arg-type]
    assert (outcome.kind, outcome.retcode, outcome.handling, outcome.sent) == (
        OutcomeKind.REJECTED,
        retcode,
        handling,
        False,
    )


def test_close_only_symbol_still_closes(term: Terminal, b: MT5Broker) -> None:
    ident = _open(b)
    term.configure_symbol("EURUSD", trade_mode=3)
    assert b.close(ident).kind is OutcomeKind.DONE
