"""MT5 constants the adapter sends or reads, and the retcode → outcome table (pinned by tests/test_mt5_codes).

Classes follow spec/mt5.md §3; each maps to one OutcomeKind:

| Handling | Kind     | Meaning for the caller                                                  |
|----------|----------|-------------------------------------------------------------------------|
| OK       | done     | applied                                                                 |
| CONFIRM  | done     | accepted (10008 on a DEAL, 10010 partial): confirm by reading state     |
| FRESH    | retry    | re-read the tick and resend now, at most 2-3 times                      |
| BACKOFF  | defer    | transient: the same intent later, with back-off                         |
| DEFER    | defer    | impossible now (frozen, market closed): retry when the condition changes |
| UNKNOWN  | unknown  | may have happened: reconcile before any retry                           |
| FIX      | rejected | the request is wrong: recompute, never resend unchanged                 |
| REJECT   | rejected | refused by a rule: record and fall back                                 |
| HALT     | rejected | stop sending for the account or symbol and alert                        |
| GONE     | rejected | the target changed or vanished: reconcile, do not retry                 |
"""

from __future__ import annotations

from typing import Final

from dtms.broker.base import Handling, OutcomeKind

# spec/mt5.md §2 [pkg] values of what the adapter uses.
TRADE_ACTION_DEAL: Final = 1
TRADE_ACTION_PENDING: Final = 5
TRADE_ACTION_SLTP: Final = 6
ORDER_TYPE_BUY: Final = 0
ORDER_TYPE_SELL: Final = 1
ORDER_FILLING_FOK: Final = 0
ORDER_FILLING_IOC: Final = 1
ORDER_FILLING_RETURN: Final = 2
ORDER_TIME_GTC: Final = 0
POSITION_TYPE_BUY: Final = 0
POSITION_TYPE_SELL: Final = 1
DEAL_TYPE_BUY: Final = 0
DEAL_TYPE_SELL: Final = 1
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING: Final = 2
SYMBOL_TRADE_MODE_DISABLED: Final = 0
SYMBOL_TRADE_MODE_LONGONLY: Final = 1
SYMBOL_TRADE_MODE_SHORTONLY: Final = 2
SYMBOL_TRADE_MODE_CLOSEONLY: Final = 3
SYMBOL_TRADE_EXECUTION_REQUEST: Final = 0
SYMBOL_TRADE_EXECUTION_INSTANT: Final = 1
# symbol_info().filling_mode bits; the package does not export them (spec §2).
SYMBOL_FILLING_FOK: Final = 1
SYMBOL_FILLING_IOC: Final = 2

RES_S_OK: Final = 1
RES_E_INVALID_PARAMS: Final = -2
RES_E_AUTH_FAILED: Final = -6
RES_E_AUTO_TRADING_DISABLED: Final = -8
IPC_ERRORS: Final = frozenset({-10000, -10001, -10002, -10003, -10004, -10005})

# fmt: off
DEAL_ENTRIES: Final = {0: "in", 1: "out", 2: "inout", 3: "out_by"}
DEAL_REASONS: Final = {0: "client", 1: "mobile", 2: "web", 3: "expert", 4: "sl", 5: "tp", 6: "so",
                       7: "rollover", 8: "vmargin", 9: "split"}

TIMEFRAMES: Final = {
    "M1": 1, "M2": 2, "M3": 3, "M4": 4, "M5": 5, "M6": 6, "M10": 10, "M12": 12, "M15": 15, "M20": 20,
    "M30": 30,
    "H1": 16385, "H2": 16386, "H3": 16387, "H4": 16388, "H6": 16390, "H8": 16392, "H12": 16396, "D1": 16408,
    "W1": 32769, "MN1": 49153,
}

# fmt: on
TRADE_RETCODE_PLACED: Final = 10008
TRADE_RETCODE_DONE: Final = 10009
TRADE_RETCODE_NO_CHANGES: Final = 10025
TRADE_RETCODE_INVALID_FILL: Final = 10030

# code: (TRADE_RETCODE_ name, handling) — spec/mt5.md §3. 10008 and 10025 depend on the action (classify()).
RETCODES: Final[dict[int, tuple[str, Handling]]] = {
    10004: ("REQUOTE", Handling.FRESH),
    10006: ("REJECT", Handling.REJECT),
    10007: ("CANCEL", Handling.REJECT),
    10008: ("PLACED", Handling.CONFIRM),
    10009: ("DONE", Handling.OK),
    10010: ("DONE_PARTIAL", Handling.CONFIRM),
    10011: ("ERROR", Handling.UNKNOWN),
    10012: ("TIMEOUT", Handling.UNKNOWN),
    10013: ("INVALID", Handling.FIX),
    10014: ("INVALID_VOLUME", Handling.FIX),
    10015: ("INVALID_PRICE", Handling.FRESH),
    10016: ("INVALID_STOPS", Handling.FIX),
    10017: ("TRADE_DISABLED", Handling.HALT),
    10018: ("MARKET_CLOSED", Handling.DEFER),
    10019: ("NO_MONEY", Handling.REJECT),
    10020: ("PRICE_CHANGED", Handling.FRESH),
    10021: ("PRICE_OFF", Handling.BACKOFF),
    10022: ("INVALID_EXPIRATION", Handling.FIX),
    10023: ("ORDER_CHANGED", Handling.GONE),
    10024: ("TOO_MANY_REQUESTS", Handling.BACKOFF),
    10025: ("NO_CHANGES", Handling.OK),
    10026: ("SERVER_DISABLES_AT", Handling.HALT),
    10027: ("CLIENT_DISABLES_AT", Handling.HALT),
    10028: ("LOCKED", Handling.BACKOFF),
    10029: ("FROZEN", Handling.DEFER),
    10030: ("INVALID_FILL", Handling.FIX),
    10031: ("CONNECTION", Handling.UNKNOWN),
    10032: ("ONLY_REAL", Handling.HALT),
    10033: ("LIMIT_ORDERS", Handling.REJECT),
    10034: ("LIMIT_VOLUME", Handling.REJECT),
    10035: ("INVALID_ORDER", Handling.FIX),
    10036: ("POSITION_CLOSED", Handling.GONE),
    10038: ("INVALID_CLOSE_VOLUME", Handling.FIX),
    10039: ("CLOSE_ORDER_EXIST", Handling.GONE),
    10040: ("LIMIT_POSITIONS", Handling.REJECT),
    10041: ("REJECT_CANCEL", Handling.REJECT),
    10042: ("LONG_ONLY", Handling.REJECT),
    10043: ("SHORT_ONLY", Handling.REJECT),
    10044: ("CLOSE_ONLY", Handling.REJECT),
    10045: ("FIFO_CLOSE", Handling.REJECT),
    10046: ("HEDGE_PROHIBITED", Handling.REJECT),
}

KIND: Final[dict[Handling, OutcomeKind]] = {
    Handling.OK: OutcomeKind.DONE,
    Handling.CONFIRM: OutcomeKind.DONE,
    Handling.FRESH: OutcomeKind.RETRY,
    Handling.BACKOFF: OutcomeKind.DEFER,
    Handling.DEFER: OutcomeKind.DEFER,
    Handling.UNKNOWN: OutcomeKind.UNKNOWN,
    Handling.FIX: OutcomeKind.REJECTED,
    Handling.REJECT: OutcomeKind.REJECTED,
    Handling.HALT: OutcomeKind.REJECTED,
    Handling.GONE: OutcomeKind.REJECTED,
}


def classify(retcode: int, action: int) -> Handling:
    """The handling of a result retcode for a request of `action`; codes outside the table are UNKNOWN."""
    if retcode == TRADE_RETCODE_PLACED:
        return Handling.OK if action == TRADE_ACTION_PENDING else Handling.CONFIRM
    if retcode == TRADE_RETCODE_NO_CHANGES:
        # OK only for SL/TP changes (the adapter then checks the levels); elsewhere the request was wrong.
        return Handling.OK if action == TRADE_ACTION_SLTP else Handling.FIX
    entry = RETCODES.get(retcode)
    return entry[1] if entry else Handling.UNKNOWN


def classify_error(code: int) -> Handling:
    """The handling when order_send returned None, by last_error() code (spec §3, after the table)."""
    if code == RES_E_INVALID_PARAMS:
        return Handling.FIX  # refused locally: the request was never sent
    if code in (RES_E_AUTH_FAILED, RES_E_AUTO_TRADING_DISABLED):
        return Handling.HALT
    return Handling.UNKNOWN


__all__ = [
    "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING",
    "DEAL_ENTRIES",
    "DEAL_REASONS",
    "DEAL_TYPE_BUY",
    "DEAL_TYPE_SELL",
    "IPC_ERRORS",
    "KIND",
    "ORDER_FILLING_FOK",
    "ORDER_FILLING_IOC",
    "ORDER_FILLING_RETURN",
    "ORDER_TIME_GTC",
    "ORDER_TYPE_BUY",
    "ORDER_TYPE_SELL",
    "POSITION_TYPE_BUY",
    "POSITION_TYPE_SELL",
    "RES_E_AUTH_FAILED",
    "RES_E_AUTO_TRADING_DISABLED",
    "RES_E_INVALID_PARAMS",
    "RES_S_OK",
    "RETCODES",
    "SYMBOL_FILLING_FOK",
    "SYMBOL_FILLING_IOC",
    "SYMBOL_TRADE_EXECUTION_INSTANT",
    "SYMBOL_TRADE_EXECUTION_REQUEST",
    "SYMBOL_TRADE_MODE_CLOSEONLY",
    "SYMBOL_TRADE_MODE_DISABLED",
    "SYMBOL_TRADE_MODE_LONGONLY",
    "SYMBOL_TRADE_MODE_SHORTONLY",
    "TIMEFRAMES",
    "TRADE_ACTION_DEAL",
    "TRADE_ACTION_PENDING",
    "TRADE_ACTION_SLTP",
    "TRADE_RETCODE_DONE",
    "TRADE_RETCODE_INVALID_FILL",
    "TRADE_RETCODE_NO_CHANGES",
    "TRADE_RETCODE_PLACED",
    "classify",
    "classify_error",
]
