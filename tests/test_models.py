"""The models' validation: every TradeRequest field rejects bad input and names itself in the error."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from dtms.models import MAX_COMMENT, MAX_INT64, Direction, Health, TradeRequest

VALID: dict[str, Any] = {
    "ticket": 1001,
    "symbol": "EURUSD",
    "direction": "BUY",
    "entry_price": 1.1,
    "volume": 0.1,
    "sl": 1.09,
    "tp": 1.12,
}

#: (field, bad value, overrides to keep every other field valid). Shared with test_store.py.
BAD_INPUTS: list[tuple[str, Any, dict[str, Any]]] = [
    *[("ticket", v, {}) for v in (0, -1, True, "1001", 1001.0, MAX_INT64 + 1, None)],
    *[
        ("symbol", v, {})
        for v in (
            "",
            "   ",
            "A" * 33,
            "EURUSD'; DROP TABLE trades;--",
            "EUR USD",
            " EURUSD",
            "EURUSD\n",
            5,
            None,
        )
    ],
    *[("direction", v, {}) for v in ("LONG", "buy now", "", "B", "SELLL", 1, None)],
    *[
        (field, v, {"sl": None, "tp": None})
        for field in ("entry_price", "volume")
        for v in (0, 0.0, -1.5, math.nan, math.inf, -math.inf, True, "1.1", None)
    ],
    *[("sl", v, {}) for v in (1.1, 1.2, 0.0, -1.0, math.nan, math.inf, True, "1.09")],
    *[("tp", v, {}) for v in (1.1, 1.0, 0.0, math.nan, math.inf, True)],
    ("sl", 1.05, {"direction": "SELL", "tp": None}),
    ("tp", 1.15, {"direction": "SELL", "sl": None}),
    *[("owner", v, {}) for v in ("", "DTMS", "my bot", "x" * 33, "1bot", "bot;", None, 3)],
    *[("magic", v, {}) for v in (-1, True, 1.5, "7", MAX_INT64 + 1)],
    *[("comment", v, {}) for v in ("x" * (MAX_COMMENT + 1), "two\nlines", "nul\x00", "tab\t", 42)],
    *[("identifier", v, {}) for v in (0, -5, True, "9", 9.0, MAX_INT64 + 1)],
]


def names_field(exc: ValidationError, field: str) -> bool:
    """True when one of the errors is located at `field`, or is a model-level error whose message names it."""
    for err in exc.errors():
        if err["loc"][:1] == (field,):
            return True
        if not err["loc"] and str(err["msg"]).removeprefix("Value error, ").startswith(f"{field} "):
            return True
    return False


def bad_case_id(case: tuple[str, Any, dict[str, Any]]) -> str:
    field, value, overrides = case
    return f"{field}={value!r}{'+' + ','.join(overrides) if overrides else ''}"[:60]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=bad_case_id)
def test_trade_request_rejects_bad_input_and_names_the_field(case: tuple[str, Any, dict[str, Any]]) -> None:
    """Each bad value fails validation with an error located at (or naming) its field."""
    field, value, overrides = case
    with pytest.raises(ValidationError) as caught:
        TradeRequest(**{**VALID, **overrides, field: value})
    assert names_field(caught.value, field), caught.value.errors()


def test_valid_request_passes_unchanged() -> None:
    """The baseline used by the bad-input cases is itself valid."""
    req = TradeRequest(**VALID)
    assert (req.ticket, req.symbol, req.direction, req.entry_price, req.volume) == (
        1001,
        "EURUSD",
        Direction.BUY,
        1.1,
        0.1,
    )


@pytest.mark.parametrize("spelling", ["buy", "Buy", "BUY", " buy ", "bUy"])
def test_direction_is_case_insensitive(spelling: str) -> None:
    """Any capitalisation of buy is BUY (the original read 'buy' as SELL)."""
    assert TradeRequest(**{**VALID, "direction": spelling}).direction is Direction.BUY


@pytest.mark.parametrize("spelling", ["sell", "Sell", "SELL"])
def test_sell_is_case_insensitive(spelling: str) -> None:
    """Any capitalisation of sell is SELL."""
    req = TradeRequest(**{**VALID, "direction": spelling, "sl": 1.11, "tp": 1.05})
    assert req.direction is Direction.SELL


def test_direction_sign() -> None:
    """BUY is +1, SELL is -1."""
    assert (Direction.BUY.sign, Direction.SELL.sign) == (1, -1)


@pytest.mark.parametrize(
    "symbol", ["EURUSD", "XAUUSD.pro", "XAUUSDc", "BTCUSD#", "US30+", "GER40-cash", "A", "A" * 32]
)
def test_broker_symbol_suffixes_are_accepted(symbol: str) -> None:
    """Symbols with the punctuation brokers use validate."""
    assert TradeRequest(**{**VALID, "symbol": symbol}).symbol == symbol


def test_numpy_numbers_are_accepted_as_prices() -> None:
    """Prices straight from MetaTrader5's numpy rate arrays are numbers too."""
    np = pytest.importorskip("numpy")
    req = TradeRequest(**{**VALID, "entry_price": np.float64(1.1), "volume": np.float32(0.5)})
    assert req.entry_price == pytest.approx(1.1)
    assert req.volume == pytest.approx(0.5)


def test_integer_prices_are_accepted() -> None:
    """An index quoted in whole points is a valid price."""
    req = TradeRequest(**{**VALID, "entry_price": 40000, "sl": 39000, "tp": 41000, "volume": 1})
    assert req.entry_price == 40000.0


def test_largest_ids_are_accepted() -> None:
    """2**63 - 1 is the largest ticket, identifier and magic SQLite can store, and it validates."""
    req = TradeRequest(**{**VALID, "ticket": MAX_INT64, "identifier": MAX_INT64, "magic": MAX_INT64})
    assert req.position_id == MAX_INT64


def test_magic_zero_and_longest_comment_are_accepted() -> None:
    """Magic 0 (manual trades) and a comment of exactly the maximum length validate."""
    req = TradeRequest(**{**VALID, "magic": 0, "comment": "c" * MAX_COMMENT})
    assert (req.magic, req.comment) == (0, "c" * MAX_COMMENT)


def test_position_id_defaults_to_the_ticket() -> None:
    """Without an identifier the position is identified by its ticket."""
    assert TradeRequest(**VALID).position_id == 1001
    assert TradeRequest(**{**VALID, "identifier": 7}).position_id == 7


def test_unknown_fields_are_rejected() -> None:
    """A misspelt keyword is an error, not silently ignored."""
    with pytest.raises(ValidationError) as caught:
        TradeRequest(**{**VALID, "stoploss": 1.0})
    assert names_field(caught.value, "stoploss")


def test_trade_request_is_frozen() -> None:
    """A validated request cannot be changed afterwards."""
    req = TradeRequest(**VALID)
    with pytest.raises(ValidationError):
        req.volume = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(("status", "ok"), [("healthy", True), ("degraded", False), ("unhealthy", False)])
def test_health_is_ok_only_when_healthy(status: str, ok: bool) -> None:
    """A degraded or unhealthy verdict never reads as healthy (the original's tuple always did)."""
    health = Health(status=status, reasons=(), checks={}, checked_at=datetime(2026, 1, 5, tzinfo=UTC))
    assert health.ok is ok
