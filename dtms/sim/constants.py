"""The MetaTrader5 module's constants with their real values (spec/mt5.md §1.2, §2, §3)."""

from __future__ import annotations

from typing import Final

# Values per spec/mt5.md §2 [pkg]; the pin test (tests/test_mt5_codes.py) checks every one of them.
# fmt: off
_GROUPS: Final[dict[str, dict[str, int]]] = {
    "TRADE_ACTION_": {"DEAL": 1, "PENDING": 5, "SLTP": 6, "MODIFY": 7, "REMOVE": 8, "CLOSE_BY": 10},
    "ORDER_TYPE_": {
        "BUY": 0, "SELL": 1, "BUY_LIMIT": 2, "SELL_LIMIT": 3, "BUY_STOP": 4, "SELL_STOP": 5,
        "BUY_STOP_LIMIT": 6, "SELL_STOP_LIMIT": 7, "CLOSE_BY": 8,
    },
    "ORDER_FILLING_": {"FOK": 0, "IOC": 1, "RETURN": 2},
    "ORDER_TIME_": {"GTC": 0, "DAY": 1, "SPECIFIED": 2, "SPECIFIED_DAY": 3},
    "ORDER_STATE_": {
        "STARTED": 0, "PLACED": 1, "CANCELED": 2, "PARTIAL": 3, "FILLED": 4, "REJECTED": 5, "EXPIRED": 6,
        "REQUEST_ADD": 7, "REQUEST_MODIFY": 8, "REQUEST_CANCEL": 9,
    },
    "ORDER_REASON_": {"CLIENT": 0, "MOBILE": 1, "WEB": 2, "EXPERT": 3, "SL": 4, "TP": 5, "SO": 6},
    "POSITION_TYPE_": {"BUY": 0, "SELL": 1},
    "POSITION_REASON_": {"CLIENT": 0, "MOBILE": 1, "WEB": 2, "EXPERT": 3},
    "DEAL_TYPE_": {
        "BUY": 0, "SELL": 1, "BALANCE": 2, "CREDIT": 3, "CHARGE": 4, "CORRECTION": 5, "BONUS": 6,
        "COMMISSION": 7, "COMMISSION_DAILY": 8, "COMMISSION_MONTHLY": 9, "COMMISSION_AGENT_DAILY": 10,
        "COMMISSION_AGENT_MONTHLY": 11, "INTEREST": 12, "BUY_CANCELED": 13, "SELL_CANCELED": 14,
    },
    "DEAL_": {"DIVIDEND": 15, "DIVIDEND_FRANKED": 16, "TAX": 17},
    "DEAL_ENTRY_": {"IN": 0, "OUT": 1, "INOUT": 2, "OUT_BY": 3},
    "DEAL_REASON_": {
        "CLIENT": 0, "MOBILE": 1, "WEB": 2, "EXPERT": 3, "SL": 4, "TP": 5, "SO": 6, "ROLLOVER": 7,
        "VMARGIN": 8, "SPLIT": 9,
    },
    "ACCOUNT_MARGIN_MODE_": {"RETAIL_NETTING": 0, "EXCHANGE": 1, "RETAIL_HEDGING": 2},
    "ACCOUNT_TRADE_MODE_": {"DEMO": 0, "CONTEST": 1, "REAL": 2},
    "ACCOUNT_STOPOUT_MODE_": {"PERCENT": 0, "MONEY": 1},
    "SYMBOL_TRADE_MODE_": {"DISABLED": 0, "LONGONLY": 1, "SHORTONLY": 2, "CLOSEONLY": 3, "FULL": 4},
    "SYMBOL_TRADE_EXECUTION_": {"REQUEST": 0, "INSTANT": 1, "MARKET": 2, "EXCHANGE": 3},
    "SYMBOL_CHART_MODE_": {"BID": 0, "LAST": 1},
    "COPY_TICKS_": {"ALL": -1, "INFO": 1, "TRADE": 2},
    "TICK_FLAG_": {"BID": 2, "ASK": 4, "LAST": 8, "VOLUME": 16, "BUY": 32, "SELL": 64},
    "BOOK_TYPE_": {"SELL": 1, "BUY": 2, "SELL_MARKET": 3, "BUY_MARKET": 4},
    "DAY_OF_WEEK_": {
        "SUNDAY": 0, "MONDAY": 1, "TUESDAY": 2, "WEDNESDAY": 3, "THURSDAY": 4, "FRIDAY": 5, "SATURDAY": 6,
    },
    "TIMEFRAME_": {
        "M1": 1, "M2": 2, "M3": 3, "M4": 4, "M5": 5, "M6": 6, "M10": 10, "M12": 12, "M15": 15, "M20": 20,
        "M30": 30, "H1": 16385, "H2": 16386, "H3": 16387, "H4": 16388, "H6": 16390, "H8": 16392,
        "H12": 16396, "D1": 16408, "W1": 32769, "MN1": 49153,
    },
    "TRADE_RETCODE_": {
        "REQUOTE": 10004, "REJECT": 10006, "CANCEL": 10007, "PLACED": 10008, "DONE": 10009,
        "DONE_PARTIAL": 10010, "ERROR": 10011, "TIMEOUT": 10012, "INVALID": 10013, "INVALID_VOLUME": 10014,
        "INVALID_PRICE": 10015, "INVALID_STOPS": 10016, "TRADE_DISABLED": 10017, "MARKET_CLOSED": 10018,
        "NO_MONEY": 10019, "PRICE_CHANGED": 10020, "PRICE_OFF": 10021, "INVALID_EXPIRATION": 10022,
        "ORDER_CHANGED": 10023, "TOO_MANY_REQUESTS": 10024, "NO_CHANGES": 10025, "SERVER_DISABLES_AT": 10026,
        "CLIENT_DISABLES_AT": 10027, "LOCKED": 10028, "FROZEN": 10029, "INVALID_FILL": 10030,
        "CONNECTION": 10031, "ONLY_REAL": 10032, "LIMIT_ORDERS": 10033, "LIMIT_VOLUME": 10034,
        "INVALID_ORDER": 10035, "POSITION_CLOSED": 10036, "INVALID_CLOSE_VOLUME": 10038,
        "CLOSE_ORDER_EXIST": 10039, "LIMIT_POSITIONS": 10040, "REJECT_CANCEL": 10041, "LONG_ONLY": 10042,
        "SHORT_ONLY": 10043, "CLOSE_ONLY": 10044, "FIFO_CLOSE": 10045, "HEDGE_PROHIBITED": 10046,
    },
    "RES_": {
        "S_OK": 1, "E_FAIL": -1, "E_INVALID_PARAMS": -2, "E_NO_MEMORY": -3, "E_NOT_FOUND": -4,
        "E_INVALID_VERSION": -5, "E_AUTH_FAILED": -6, "E_UNSUPPORTED": -7, "E_AUTO_TRADING_DISABLED": -8,
        "E_INTERNAL_FAIL": -10000, "E_INTERNAL_FAIL_SEND": -10001, "E_INTERNAL_FAIL_RECEIVE": -10002,
        "E_INTERNAL_FAIL_INIT": -10003, "E_INTERNAL_FAIL_CONNECT": -10004, "E_INTERNAL_FAIL_TIMEOUT": -10005,
    },
}

# fmt: on
CONSTANTS: Final[dict[str, int]] = {
    prefix + name: value for prefix, group in _GROUPS.items() for name, value in group.items()
}

# Broker texts for the result `comment`: the live wording is undocumented, these follow the enum descriptions.
# fmt: off
RETCODE_TEXT: Final[dict[int, str]] = {
    10004: "Requote", 10006: "Request rejected", 10007: "Request canceled by trader", 10008: "Order placed",
    10009: "Request executed", 10010: "Request executed partially", 10011: "Request processing error",
    10012: "Request canceled by timeout", 10013: "Invalid request", 10014: "Invalid volume",
    10015: "Invalid price", 10016: "Invalid stops", 10017: "Trade disabled", 10018: "Market closed",
    10019: "No money", 10020: "Prices changed", 10021: "No prices", 10022: "Invalid expiration",
    10023: "Order state changed", 10024: "Too frequent requests", 10025: "No changes",
    10026: "Autotrading disabled by server", 10027: "Autotrading disabled by client", 10028: "Request locked",
    10029: "Order or position frozen", 10030: "Invalid fill", 10031: "No connection",
    10032: "Only real accounts allowed", 10033: "Orders limit reached", 10034: "Volume limit reached",
    10035: "Invalid order type", 10036: "Position already closed", 10038: "Invalid close volume",
    10039: "Close order already exists", 10040: "Positions limit reached", 10041: "Activation rejected",
    10042: "Long positions only", 10043: "Short positions only", 10044: "Close only",
    10045: "FIFO close only",
    10046: "Hedging prohibited",
}

# fmt: on
# last_error() descriptions as observed (spec §1.2); -6 and -10005 wordings are unverified.
# fmt: off
ERROR_TEXT: Final[dict[int, str]] = {
    1: "Success", -1: "Terminal: Call failed", -2: "Invalid arguments", -3: "No memory",
    -4: "Terminal: Not found", -5: "Invalid version", -6: "Terminal: Authorization failed",
    -7: "Unsupported method", -8: "Auto-trading disabled", -10000: "Internal IPC general error",
    -10001: "IPC send failed", -10002: "IPC recv failed", -10003: "IPC initialization failed",
    -10004: "No IPC connection", -10005: "IPC timeout",
}

# fmt: on
__all__ = ["CONSTANTS", "ERROR_TEXT", "RETCODE_TEXT"]
