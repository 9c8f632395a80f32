"""Exactly what MT5Broker hands to order_send: action, side, price, filling, deviation, magic, comment."""

from __future__ import annotations

import pytest
from sim_helpers import broker, sent, terminal

from dtms.broker import MT5Broker, OutcomeKind, action_tag, clean_comment
from dtms.broker.mt5 import DEFAULT_MAGIC
from dtms.broker.rules import deviation_points
from dtms.sim import Terminal


@pytest.fixture
def term() -> Terminal:
    return terminal()


def test_open_sends_a_complete_deal_request_with_plain_types(term: Terminal) -> None:
    b = broker(term)
    tick = b.tick("XAUUSD")
    outcome = b.open("XAUUSD", "SELL", 0.1, sl=tick.ask + 20.0, comment=action_tag("h", 42, 123456789))
    assert outcome.kind is OutcomeKind.DONE
    (req,) = sent(term)
    assert req == {
        "action": 1,
        "symbol": "XAUUSD",
        "volume": 0.1,
        "type": 1,
        "price": tick.bid,
        "sl": round(tick.ask + 20.0, 2),
        "tp": 0.0,
        "deviation": deviation_points(tick.bid, tick.ask, 0.01),
        "magic": DEFAULT_MAGIC,
        "comment": "dtms-h123456789a42",
        "type_time": 0,
        "type_filling": 1,
    }
    assert all(type(v) in (int, float, str) for v in req.values())


def test_close_sends_the_opposite_type_at_bid_with_the_current_ticket(term: Terminal) -> None:
    b = broker(term)
    ident = b.open("EURUSD", "BUY", 0.1).identifier
    assert ident is not None
    new_ticket = term.change_ticket(ident)  # a service operation re-opened the position under a new ticket
    tick = b.tick("EURUSD")
    assert b.close(ident, 0.05).kind is OutcomeKind.DONE
    req = sent(term)[-1]
    assert req["action"] == 1
    assert req["position"] == new_ticket
    assert req["type"] == 1
    assert req["price"] == tick.bid
    assert req["volume"] == 0.05
    assert req["comment"] == f"dtms-c-{ident}"


def test_close_of_a_sell_buys_at_ask(term: Terminal) -> None:
    b = broker(term)
    ident = b.open("BTCUSD", "SELL", 0.1).identifier
    tick = b.tick("BTCUSD")
    assert ident is not None
    assert b.close(ident).kind is OutcomeKind.DONE
    req = sent(term)[-1]
    assert req["type"] == 0
    assert req["price"] == tick.ask
    assert req["volume"] == 0.1


def test_modify_sends_sltp_with_position_and_both_levels(term: Terminal) -> None:
    b = broker(term)
    ident = b.open("EURUSD", "BUY", 0.1, tp=b.tick("EURUSD").bid + 0.01).identifier
    assert ident is not None
    tick = b.tick("EURUSD")
    assert b.modify_sl_tp(ident, tick.bid - 0.002, tick.bid + 0.01).kind is OutcomeKind.DONE
    req = sent(term)[-1]
    assert req == {
        "action": 6,
        "position": ident,
        "symbol": "EURUSD",
        "sl": round(tick.bid - 0.002, 5),
        "tp": round(tick.bid + 0.01, 5),
        "magic": DEFAULT_MAGIC,
    }


@pytest.mark.parametrize(("symbol", "filling"), [("EURUSD", 0), ("XAUUSD", 1), ("BTCUSD", 0)])
def test_filling_follows_the_symbol_mask_and_execution_mode(
    term: Terminal, symbol: str, filling: int
) -> None:
    """EURUSD: Instant execution → FOK; XAUUSD: Market, IOC only → IOC; BTCUSD: Market, FOK|IOC → FOK."""
    b = broker(term)
    assert b.open(symbol, "BUY", 0.01).kind is OutcomeKind.DONE
    assert sent(term)[-1]["type_filling"] == filling


def test_invalid_fill_is_retried_once_with_the_next_mode(term: Terminal) -> None:
    b = broker(term)
    term.inject("order_send", retcode=10030, count=1)
    assert b.open("XAUUSD", "BUY", 0.01).kind is OutcomeKind.DONE
    assert [r["type_filling"] for r in sent(term)] == [1, 2]


def test_invalid_fill_twice_is_rejected_without_a_third_try(term: Terminal) -> None:
    b = broker(term)
    term.inject("order_send", retcode=10030, count=5)
    outcome = b.open("BTCUSD", "BUY", 0.01)
    assert outcome.kind is OutcomeKind.REJECTED
    assert outcome.retcode == 10030
    assert [r["type_filling"] for r in sent(term)] == [0, 1]


@pytest.mark.parametrize(("spread_points", "expected"), [(0, 10), (12, 16), (25, 22), (80, 50), (1500, 50)])
def test_deviation_grows_with_the_spread_within_bounds(spread_points: int, expected: int) -> None:
    assert deviation_points(1.0, 1.0 + spread_points * 1e-5, 1e-5) == expected


def test_keyword_only_terminal_gets_the_request_again_as_keywords(term: Terminal) -> None:
    """order_send(request) → None (-2, 'Unnamed arguments not allowed') → order_send(**request), once."""
    term.configure(order_send_keywords_only=True)
    b = broker(term)
    assert b.open("EURUSD", "BUY", 0.01).kind is OutcomeKind.DONE
    log = term.sent_log()
    assert [row["error"] for row in log] == [[-2, "Unnamed arguments not allowed"], None]
    assert log[0]["request"] == log[1]["request"]


def test_comments_are_cleaned_to_26_safe_characters() -> None:
    assert clean_comment("dtms [sl 1.2345] hedge/leg #12345678901234567890") == "dtms sl 12345 hedgeleg 123"
    assert len(clean_comment("x" * 40)) == 26
    assert action_tag("h", 42, 123456789) == "dtms-h123456789a42"
    assert action_tag("c", 7) == "dtms-ca7"
    assert len(action_tag("r", 10**6, 9223372036854775807)) == 26


def test_long_comment_is_truncated_before_sending(term: Terminal) -> None:
    b = broker(term)
    assert b.open("EURUSD", "BUY", 0.01, comment="a" * 40).kind is OutcomeKind.DONE
    assert sent(term)[-1]["comment"] == "a" * 26


def test_custom_magic_is_sent(term: Terminal) -> None:
    b = MT5Broker(term, magic=77)
    b.connect()
    assert b.open("EURUSD", "BUY", 0.01).kind is OutcomeKind.DONE
    assert sent(term)[-1]["magic"] == 77
    assert b.open("EURUSD", "BUY", 0.01, magic=78).kind is OutcomeKind.DONE
    assert sent(term)[-1]["magic"] == 78


def test_netting_add_carries_the_current_sl_and_tp() -> None:
    """On netting, zeros in an adding order delete SL/TP (spec §5.4): the adapter sends the current levels."""
    term = terminal(account="netting")
    b = broker(term)
    tick = b.tick("EURUSD")
    first = b.open("EURUSD", "BUY", 0.1, sl=tick.bid - 0.003, tp=tick.bid + 0.004)
    again = b.open("EURUSD", "BUY", 0.1)
    assert first.kind is again.kind is OutcomeKind.DONE
    assert first.identifier == again.identifier
    req = sent(term)[-1]
    assert req["sl"] == round(tick.bid - 0.003, 5)
    assert req["tp"] == round(tick.bid + 0.004, 5)
    pos = b.position(first.identifier or 0)
    assert pos is not None
    assert pos.volume == pytest.approx(0.2)
    assert pos.sl == req["sl"]
