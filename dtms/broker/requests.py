"""The exact request dicts MT5Broker sends (spec/mt5.md §5.2-5.4): all fields, plain int/float/str."""

from __future__ import annotations

from typing import Any

from dtms.broker import codes
from dtms.broker.base import SymbolSpec, Tick, clean_comment
from dtms.broker.rules import deviation_points

# Values go through int()/float()/str(): numpy scalars cannot cross mt5linux's repr() bridge (spec §1.1), and
# an omitted numeric field means 0 to the terminal, so every field the adapter relies on is sent.


def sltp(pos: Any, sl: float, tp: float, magic: int) -> dict[str, Any]:
    """TRADE_ACTION_SLTP for the position's current ticket; both levels, 0.0 meaning none."""
    return {
        "action": codes.TRADE_ACTION_SLTP,
        "position": int(pos.ticket),
        "symbol": str(pos.symbol),
        "sl": float(sl),
        "tp": float(tp),
        "magic": int(magic),
    }


def close(pos: Any, volume: float, spec: SymbolSpec, tick: Tick, magic: int, comment: str) -> dict[str, Any]:
    """A closing DEAL: the opposite type at Bid (closing a buy) or Ask (closing a sell), with `position`."""
    buy = pos.type == codes.POSITION_TYPE_BUY
    return {
        "action": codes.TRADE_ACTION_DEAL,
        "position": int(pos.ticket),
        "symbol": str(pos.symbol),
        "volume": float(volume),
        "type": codes.ORDER_TYPE_SELL if buy else codes.ORDER_TYPE_BUY,
        "price": float(tick.bid if buy else tick.ask),
        "deviation": deviation_points(tick.bid, tick.ask, spec.point),
        "magic": int(magic),
        "comment": clean_comment(comment),
        "type_time": codes.ORDER_TIME_GTC,
    }


def open_(
    symbol: str,
    buy: bool,
    volume: float,
    sl: float,
    tp: float,
    spec: SymbolSpec,
    tick: Tick,
    magic: int,
    comment: str,
) -> dict[str, Any]:
    """An opening DEAL without `position` (a new position on hedging, a netted change on netting)."""
    return {
        "action": codes.TRADE_ACTION_DEAL,
        "symbol": str(symbol),
        "volume": float(volume),
        "type": codes.ORDER_TYPE_BUY if buy else codes.ORDER_TYPE_SELL,
        "price": float(tick.ask if buy else tick.bid),
        "sl": float(sl),
        "tp": float(tp),
        "deviation": deviation_points(tick.bid, tick.ask, spec.point),
        "magic": int(magic),
        "comment": clean_comment(comment),
        "type_time": codes.ORDER_TIME_GTC,
    }


__all__ = ["close", "open_", "sltp"]
