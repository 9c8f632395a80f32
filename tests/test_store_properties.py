"""Hypothesis round-trips: whatever valid trade goes in through register_trade comes back out unchanged."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import dtms
from dtms.models import MAX_COMMENT, MAX_INT64, OWNER_PATTERN, SYMBOL_PATTERN, Direction

ids = st.integers(min_value=1, max_value=MAX_INT64)
prices = st.floats(min_value=1e-5, max_value=1e6, allow_nan=False, allow_infinity=False)
comments = st.text(st.characters(codec="utf-8"), max_size=MAX_COMMENT).filter(str.isprintable)


@st.composite
def trade_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments for a valid `register_trade` call, with SL/TP on the correct side of the entry."""
    direction = draw(st.sampled_from(["BUY", "buy", "Buy", "SELL", "sell", "Sell"]))
    sign = 1 if direction.upper() == "BUY" else -1
    entry = draw(prices)
    # Factors well away from 1 so that rounding can never put a level on the entry price.
    below, above = st.floats(0.01, 0.99), st.floats(1.01, 100.0)
    sl_factor = draw(st.none() | (below if sign > 0 else above))
    tp_factor = draw(st.none() | (above if sign > 0 else below))
    return {
        "ticket": draw(ids),
        "symbol": draw(st.from_regex(SYMBOL_PATTERN, fullmatch=True)),
        "direction": direction,
        "entry_price": entry,
        "volume": draw(prices),
        "sl": None if sl_factor is None else entry * sl_factor,
        "tp": None if tp_factor is None else entry * tp_factor,
        "owner": draw(st.from_regex(OWNER_PATTERN, fullmatch=True)),
        "magic": draw(st.none() | st.integers(0, MAX_INT64)),
        "comment": draw(st.none() | comments),
        "identifier": draw(st.none() | ids),
    }


@given(trade_inputs())
def test_register_then_get_returns_the_same_values(inputs: dict[str, Any]) -> None:
    """Every field read back equals what was registered (prices bit-for-bit), by ticket and by identifier."""
    with tempfile.TemporaryDirectory() as tmp, dtms.open(Path(tmp) / "dtms.db") as store:
        registered = store.register_trade(**inputs)
        trade = store.get_trade(inputs["ticket"])
        assert trade == registered
        assert trade is not None
        identifier = inputs["identifier"] or inputs["ticket"]
        assert (trade.ticket, trade.identifier) == (inputs["ticket"], identifier)
        assert trade.symbol == inputs["symbol"]
        assert trade.direction is Direction(inputs["direction"].upper())
        assert (trade.entry_price, trade.volume, trade.initial_volume) == (
            inputs["entry_price"],
            inputs["volume"],
            inputs["volume"],
        )
        assert (trade.sl, trade.initial_sl, trade.tp) == (inputs["sl"], inputs["sl"], inputs["tp"])
        assert (trade.owner, trade.magic, trade.comment) == (
            inputs["owner"],
            inputs["magic"],
            inputs["comment"],
        )
        assert store.get_trade(identifier) == trade
        assert store.list_trades() == [trade]
        assert store.register_trade(**inputs) == trade
