"""Pin every MetaTrader5 constant and retcode the code uses against spec/mt5.md (§1.2, §2, §3)."""

from __future__ import annotations

import pytest

import dtms.broker.codes as codes
from dtms.broker import Handling, OutcomeKind
from dtms.sim.constants import CONSTANTS

# Transcribed by hand from spec/mt5.md; public fakes disagree with some of these values (research §4.6).
# fmt: off
SPEC = {
    "TRADE_ACTION_DEAL": 1, "TRADE_ACTION_PENDING": 5, "TRADE_ACTION_SLTP": 6, "TRADE_ACTION_MODIFY": 7,
    "TRADE_ACTION_REMOVE": 8, "TRADE_ACTION_CLOSE_BY": 10,
    "ORDER_TYPE_BUY": 0, "ORDER_TYPE_SELL": 1, "ORDER_TYPE_BUY_LIMIT": 2, "ORDER_TYPE_SELL_LIMIT": 3,
    "ORDER_TYPE_BUY_STOP": 4, "ORDER_TYPE_SELL_STOP": 5, "ORDER_TYPE_BUY_STOP_LIMIT": 6,
    "ORDER_TYPE_SELL_STOP_LIMIT": 7, "ORDER_TYPE_CLOSE_BY": 8,
    "ORDER_FILLING_FOK": 0, "ORDER_FILLING_IOC": 1, "ORDER_FILLING_RETURN": 2,
    "ORDER_TIME_GTC": 0, "ORDER_TIME_DAY": 1, "ORDER_TIME_SPECIFIED": 2, "ORDER_TIME_SPECIFIED_DAY": 3,
    "ORDER_STATE_STARTED": 0, "ORDER_STATE_PLACED": 1, "ORDER_STATE_CANCELED": 2, "ORDER_STATE_PARTIAL": 3,
    "ORDER_STATE_FILLED": 4, "ORDER_STATE_REJECTED": 5, "ORDER_STATE_EXPIRED": 6,
    "ORDER_STATE_REQUEST_ADD": 7,
    "ORDER_STATE_REQUEST_MODIFY": 8, "ORDER_STATE_REQUEST_CANCEL": 9,
    "ORDER_REASON_CLIENT": 0, "ORDER_REASON_MOBILE": 1, "ORDER_REASON_WEB": 2, "ORDER_REASON_EXPERT": 3,
    "ORDER_REASON_SL": 4, "ORDER_REASON_TP": 5, "ORDER_REASON_SO": 6,
    "POSITION_TYPE_BUY": 0, "POSITION_TYPE_SELL": 1,
    "POSITION_REASON_CLIENT": 0, "POSITION_REASON_MOBILE": 1, "POSITION_REASON_WEB": 2,
    "POSITION_REASON_EXPERT": 3,
    "DEAL_TYPE_BUY": 0, "DEAL_TYPE_SELL": 1, "DEAL_TYPE_BALANCE": 2, "DEAL_TYPE_CREDIT": 3,
    "DEAL_TYPE_CHARGE": 4,
    "DEAL_TYPE_CORRECTION": 5, "DEAL_TYPE_BONUS": 6, "DEAL_TYPE_COMMISSION": 7,
    "DEAL_TYPE_COMMISSION_DAILY": 8,
    "DEAL_TYPE_COMMISSION_MONTHLY": 9, "DEAL_TYPE_COMMISSION_AGENT_DAILY": 10,
    "DEAL_TYPE_COMMISSION_AGENT_MONTHLY": 11, "DEAL_TYPE_INTEREST": 12, "DEAL_TYPE_BUY_CANCELED": 13,
    "DEAL_TYPE_SELL_CANCELED": 14, "DEAL_DIVIDEND": 15, "DEAL_DIVIDEND_FRANKED": 16, "DEAL_TAX": 17,
    "DEAL_ENTRY_IN": 0, "DEAL_ENTRY_OUT": 1, "DEAL_ENTRY_INOUT": 2, "DEAL_ENTRY_OUT_BY": 3,
    "DEAL_REASON_CLIENT": 0, "DEAL_REASON_MOBILE": 1, "DEAL_REASON_WEB": 2, "DEAL_REASON_EXPERT": 3,
    "DEAL_REASON_SL": 4, "DEAL_REASON_TP": 5, "DEAL_REASON_SO": 6, "DEAL_REASON_ROLLOVER": 7,
    "DEAL_REASON_VMARGIN": 8, "DEAL_REASON_SPLIT": 9,
    "ACCOUNT_MARGIN_MODE_RETAIL_NETTING": 0, "ACCOUNT_MARGIN_MODE_EXCHANGE": 1,
    "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING": 2,
    "ACCOUNT_TRADE_MODE_DEMO": 0, "ACCOUNT_TRADE_MODE_CONTEST": 1, "ACCOUNT_TRADE_MODE_REAL": 2,
    "ACCOUNT_STOPOUT_MODE_PERCENT": 0, "ACCOUNT_STOPOUT_MODE_MONEY": 1,
    "SYMBOL_TRADE_MODE_DISABLED": 0, "SYMBOL_TRADE_MODE_LONGONLY": 1, "SYMBOL_TRADE_MODE_SHORTONLY": 2,
    "SYMBOL_TRADE_MODE_CLOSEONLY": 3, "SYMBOL_TRADE_MODE_FULL": 4,
    "SYMBOL_TRADE_EXECUTION_REQUEST": 0, "SYMBOL_TRADE_EXECUTION_INSTANT": 1,
    "SYMBOL_TRADE_EXECUTION_MARKET": 2,
    "SYMBOL_TRADE_EXECUTION_EXCHANGE": 3,
    "SYMBOL_CHART_MODE_BID": 0, "SYMBOL_CHART_MODE_LAST": 1,
    "COPY_TICKS_ALL": -1, "COPY_TICKS_INFO": 1, "COPY_TICKS_TRADE": 2,
    "TICK_FLAG_BID": 2, "TICK_FLAG_ASK": 4, "TICK_FLAG_LAST": 8, "TICK_FLAG_VOLUME": 16, "TICK_FLAG_BUY": 32,
    "TICK_FLAG_SELL": 64,
    "BOOK_TYPE_SELL": 1, "BOOK_TYPE_BUY": 2, "BOOK_TYPE_SELL_MARKET": 3, "BOOK_TYPE_BUY_MARKET": 4,
    "DAY_OF_WEEK_SUNDAY": 0, "DAY_OF_WEEK_MONDAY": 1, "DAY_OF_WEEK_TUESDAY": 2, "DAY_OF_WEEK_WEDNESDAY": 3,
    "DAY_OF_WEEK_THURSDAY": 4, "DAY_OF_WEEK_FRIDAY": 5, "DAY_OF_WEEK_SATURDAY": 6,
    "TIMEFRAME_M1": 1, "TIMEFRAME_M2": 2, "TIMEFRAME_M3": 3, "TIMEFRAME_M4": 4, "TIMEFRAME_M5": 5,
    "TIMEFRAME_M6": 6, "TIMEFRAME_M10": 10, "TIMEFRAME_M12": 12, "TIMEFRAME_M15": 15, "TIMEFRAME_M20": 20,
    "TIMEFRAME_M30": 30, "TIMEFRAME_H1": 16385, "TIMEFRAME_H2": 16386, "TIMEFRAME_H3": 16387,
    "TIMEFRAME_H4": 16388, "TIMEFRAME_H6": 16390, "TIMEFRAME_H8": 16392, "TIMEFRAME_H12": 16396,
    "TIMEFRAME_D1": 16408, "TIMEFRAME_W1": 32769, "TIMEFRAME_MN1": 49153,
    "RES_S_OK": 1, "RES_E_FAIL": -1, "RES_E_INVALID_PARAMS": -2, "RES_E_NO_MEMORY": -3, "RES_E_NOT_FOUND": -4,
    "RES_E_INVALID_VERSION": -5, "RES_E_AUTH_FAILED": -6, "RES_E_UNSUPPORTED": -7,
    "RES_E_AUTO_TRADING_DISABLED": -8, "RES_E_INTERNAL_FAIL": -10000, "RES_E_INTERNAL_FAIL_SEND": -10001,
    "RES_E_INTERNAL_FAIL_RECEIVE": -10002, "RES_E_INTERNAL_FAIL_INIT": -10003,
    "RES_E_INTERNAL_FAIL_CONNECT": -10004, "RES_E_INTERNAL_FAIL_TIMEOUT": -10005,
}

# fmt: on
# spec §3: code -> (name, handling class).
# fmt: off
SPEC_RETCODES = {
    10004: ("REQUOTE", "FRESH"), 10006: ("REJECT", "REJECT"), 10007: ("CANCEL", "REJECT"),
    10008: ("PLACED", "CONFIRM"), 10009: ("DONE", "OK"), 10010: ("DONE_PARTIAL", "CONFIRM"),
    10011: ("ERROR", "UNKNOWN"), 10012: ("TIMEOUT", "UNKNOWN"), 10013: ("INVALID", "FIX"),
    10014: ("INVALID_VOLUME", "FIX"), 10015: ("INVALID_PRICE", "FRESH"), 10016: ("INVALID_STOPS", "FIX"),
    10017: ("TRADE_DISABLED", "HALT"), 10018: ("MARKET_CLOSED", "DEFER"), 10019: ("NO_MONEY", "REJECT"),
    10020: ("PRICE_CHANGED", "FRESH"), 10021: ("PRICE_OFF", "BACKOFF"), 10022: ("INVALID_EXPIRATION", "FIX"),
    10023: ("ORDER_CHANGED", "GONE"), 10024: ("TOO_MANY_REQUESTS", "BACKOFF"), 10025: ("NO_CHANGES", "OK"),
    10026: ("SERVER_DISABLES_AT", "HALT"), 10027: ("CLIENT_DISABLES_AT", "HALT"),
    10028: ("LOCKED", "BACKOFF"),
    10029: ("FROZEN", "DEFER"), 10030: ("INVALID_FILL", "FIX"), 10031: ("CONNECTION", "UNKNOWN"),
    10032: ("ONLY_REAL", "HALT"), 10033: ("LIMIT_ORDERS", "REJECT"), 10034: ("LIMIT_VOLUME", "REJECT"),
    10035: ("INVALID_ORDER", "FIX"), 10036: ("POSITION_CLOSED", "GONE"),
    10038: ("INVALID_CLOSE_VOLUME", "FIX"),
    10039: ("CLOSE_ORDER_EXIST", "GONE"), 10040: ("LIMIT_POSITIONS", "REJECT"),
    10041: ("REJECT_CANCEL", "REJECT"),
    10042: ("LONG_ONLY", "REJECT"), 10043: ("SHORT_ONLY", "REJECT"), 10044: ("CLOSE_ONLY", "REJECT"),
    10045: ("FIFO_CLOSE", "REJECT"), 10046: ("HEDGE_PROHIBITED", "REJECT"),
}

# fmt: on


def test_simulator_exposes_exactly_the_spec_constants() -> None:
    """Every §1.2/§2/§3 name with its value, and nothing the real package lacks."""
    expected = dict(SPEC) | {f"TRADE_RETCODE_{name}": code for code, (name, _) in SPEC_RETCODES.items()}
    assert expected == CONSTANTS


@pytest.mark.parametrize("name", sorted(n for n in dir(codes) if n.isupper() and n in SPEC))
def test_adapter_constant_matches_spec(name: str) -> None:
    """The adapter's own copies of the constants it sends agree with the spec."""
    assert getattr(codes, name) == SPEC[name]


def test_adapter_retcode_constants_match_spec() -> None:
    assert codes.TRADE_RETCODE_PLACED == 10008
    assert codes.TRADE_RETCODE_DONE == 10009
    assert codes.TRADE_RETCODE_NO_CHANGES == 10025
    assert codes.TRADE_RETCODE_INVALID_FILL == 10030


def test_adapter_timeframes_match_spec() -> None:
    assert {f"TIMEFRAME_{k}": v for k, v in codes.TIMEFRAMES.items()} == {
        k: v for k, v in SPEC.items() if k.startswith("TIMEFRAME_")
    }


def test_symbol_filling_bits_are_the_symbol_mask_values() -> None:
    """The mask bits differ from ORDER_FILLING_* (spec §2); the package does not export them."""
    assert (codes.SYMBOL_FILLING_FOK, codes.SYMBOL_FILLING_IOC) == (1, 2)
    assert "SYMBOL_FILLING_FOK" not in CONSTANTS
    assert "ORDER_FILLING_BOC" not in CONSTANTS


def test_retcode_table_matches_spec_names_and_classes() -> None:
    assert {code: (name, handling.name) for code, (name, handling) in codes.RETCODES.items()} == SPEC_RETCODES


@pytest.mark.parametrize(
    ("retcode", "action", "kind"),
    [
        (10009, 1, OutcomeKind.DONE),
        (10008, 1, OutcomeKind.DONE),
        (10008, 5, OutcomeKind.DONE),
        (10010, 1, OutcomeKind.DONE),
        (10025, 6, OutcomeKind.DONE),
        (10025, 1, OutcomeKind.REJECTED),
        (10004, 1, OutcomeKind.RETRY),
        (10020, 1, OutcomeKind.RETRY),
        (10015, 1, OutcomeKind.RETRY),
        (10021, 1, OutcomeKind.DEFER),
        (10024, 1, OutcomeKind.DEFER),
        (10028, 1, OutcomeKind.DEFER),
        (10018, 1, OutcomeKind.DEFER),
        (10029, 6, OutcomeKind.DEFER),
        (10011, 1, OutcomeKind.UNKNOWN),
        (10012, 1, OutcomeKind.UNKNOWN),
        (10031, 1, OutcomeKind.UNKNOWN),
        (10006, 1, OutcomeKind.REJECTED),
        (10016, 6, OutcomeKind.REJECTED),
        (10019, 1, OutcomeKind.REJECTED),
        (10027, 1, OutcomeKind.REJECTED),
        (10036, 1, OutcomeKind.REJECTED),
        (10046, 1, OutcomeKind.REJECTED),
        (10037, 1, OutcomeKind.UNKNOWN),
        (99999, 1, OutcomeKind.UNKNOWN),
    ],
)
def test_retcode_maps_to_outcome_kind(retcode: int, action: int, kind: OutcomeKind) -> None:
    assert codes.KIND[codes.classify(retcode, action)] is kind


@pytest.mark.parametrize(
    ("code", "handling"),
    [
        (-2, Handling.FIX),
        (-6, Handling.HALT),
        (-8, Handling.HALT),
        (-1, Handling.UNKNOWN),
        (1, Handling.UNKNOWN),
        (-10004, Handling.UNKNOWN),
        (-10005, Handling.UNKNOWN),
    ],
)
def test_none_result_maps_by_last_error(code: int, handling: Handling) -> None:
    """order_send returning None: -2 never left the terminal, -6/-8 halt, anything else is unknown."""
    assert codes.classify_error(code) is handling


def test_every_handling_has_a_kind() -> None:
    assert set(codes.KIND) == set(Handling)
