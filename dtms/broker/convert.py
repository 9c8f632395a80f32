"""MetaTrader records → dtms value types, with broker server time turned into aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dtms.broker import codes
from dtms.broker.base import Account, Deal, Direction, Position, SymbolSpec, Tick


def utc(server_ms: int, offset_s: int) -> datetime:
    """Server wall-clock milliseconds (written as if UTC, spec §1.3) → aware UTC."""
    return datetime.fromtimestamp((server_ms - offset_s * 1000) / 1000, tz=UTC)


def direction(type_: int) -> Direction:
    return "BUY" if type_ == codes.POSITION_TYPE_BUY else "SELL"


def position(p: Any, offset_s: int) -> Position:
    return Position(
        identifier=int(p.identifier),
        ticket=int(p.ticket),
        symbol=str(p.symbol),
        direction=direction(p.type),
        volume=float(p.volume),
        price_open=float(p.price_open),
        sl=float(p.sl) or None,
        tp=float(p.tp) or None,
        price_current=float(p.price_current),
        profit=float(p.profit),
        swap=float(p.swap),
        magic=int(p.magic),
        comment=str(p.comment),
        opened_at=utc(int(p.time_msc), offset_s),
        updated_at=utc(int(p.time_update_msc), offset_s),
    )


def tick(symbol: str, t: Any, offset_s: int) -> Tick:
    return Tick(
        symbol=symbol,
        bid=float(t.bid),
        ask=float(t.ask),
        last=float(t.last),
        at=utc(int(t.time_msc), offset_s),
    )


def symbol(s: Any) -> SymbolSpec:
    return SymbolSpec(
        name=str(s.name),
        point=float(s.point),
        digits=int(s.digits),
        tick_size=float(s.trade_tick_size),
        tick_value=float(s.trade_tick_value),
        tick_value_profit=float(s.trade_tick_value_profit),
        tick_value_loss=float(s.trade_tick_value_loss),
        contract_size=float(s.trade_contract_size),
        volume_min=float(s.volume_min),
        volume_max=float(s.volume_max),
        volume_step=float(s.volume_step),
        volume_limit=float(s.volume_limit),
        stops_level=int(s.trade_stops_level),
        freeze_level=int(s.trade_freeze_level),
        filling_mode=int(s.filling_mode),
        trade_mode=int(s.trade_mode),
        execution_mode=int(s.trade_exemode),
        spread=int(s.spread),
        currency_profit=str(s.currency_profit),
        currency_margin=str(s.currency_margin),
    )


def account(a: Any) -> Account:
    return Account(
        login=int(a.login),
        server=str(a.server),
        currency=str(a.currency),
        balance=float(a.balance),
        equity=float(a.equity),
        profit=float(a.profit),
        margin=float(a.margin),
        margin_free=float(a.margin_free),
        margin_level=float(a.margin_level),
        leverage=int(a.leverage),
        margin_mode=int(a.margin_mode),
        trade_allowed=bool(a.trade_allowed),
        fifo_close=bool(a.fifo_close),
    )


def deal(d: Any, offset_s: int) -> Deal | None:
    """A trade deal, or None for balance, credit, commission and other non-trade deals."""
    if d.type not in (codes.DEAL_TYPE_BUY, codes.DEAL_TYPE_SELL):
        return None
    return Deal(
        ticket=int(d.ticket),
        order=int(d.order),
        identifier=int(d.position_id),
        symbol=str(d.symbol),
        direction=direction(d.type),
        entry=codes.DEAL_ENTRIES.get(int(d.entry), "in"),  # type: ignore[arg-type]
        reason=codes.DEAL_REASONS.get(int(d.reason), str(d.reason)),
        volume=float(d.volume),
        price=float(d.price),
        profit=float(d.profit),
        commission=float(d.commission),
        swap=float(d.swap),
        fee=float(d.fee),
        magic=int(d.magic),
        comment=str(d.comment),
        executed_at=utc(int(d.time_msc), offset_s),
    )


__all__ = ["account", "deal", "direction", "position", "symbol", "tick", "utc"]
