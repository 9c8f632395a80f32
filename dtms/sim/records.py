"""Records shaped like MetaTrader5's C named tuples: attributes, `_asdict()` and iteration, nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Final, NoReturn


class Record:
    """Base of every record type: the real package has no `_fields`, indexing or pickling (spec §1.1)."""

    __slots__ = ()
    _names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **values: Any) -> None:
        for name in self._names:
            object.__setattr__(self, name, values[name])

    def _asdict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._names}

    def __iter__(self) -> Iterator[Any]:
        return (getattr(self, name) for name in self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and type(other) is type(self) and self._asdict() == other._asdict()

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._names)
        return f"{type(self).__name__}({inner})"

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(f"cannot pickle '{type(self).__name__}' object")


def _record(name: str, fields: str) -> type[Record]:
    names = tuple(fields.split())
    return type(name, (Record,), {"__slots__": names, "_names": names})


# Field orders from spec/mt5.md §4 (TradePosition 19, TradeOrder 24, TradeDeal 18, Tick 8, AccountInfo 28,
# TerminalInfo 22, TradeRequest 17, OrderSendResult 11, OrderCheckResult 9, BookInfo 4).
TradePosition: Final = _record(
    "TradePosition",
    "ticket time time_msc time_update time_update_msc type magic identifier reason volume price_open sl tp "
    "price_current swap profit symbol comment external_id",
)
TradeOrder: Final = _record(
    "TradeOrder",
    "ticket time_setup time_setup_msc time_done time_done_msc time_expiration type type_time type_filling "
    "state  "
    "magic position_id position_by_id reason volume_current volume_initial price_open price_stoplimit sl tp "
    "price_current symbol comment external_id",
)
TradeDeal: Final = _record(
    "TradeDeal",
    "ticket order time time_msc type entry magic position_id reason volume price commission swap profit fee "
    "symbol comment external_id",
)
Tick: Final = _record("Tick", "time bid ask last volume time_msc flags volume_real")
AccountInfo: Final = _record(
    "AccountInfo",
    "login trade_mode leverage limit_orders margin_so_mode trade_allowed trade_expert margin_mode "
    "currency_digits fifo_close balance credit profit equity margin margin_free margin_level margin_so_call "
    "margin_so_so margin_initial margin_maintenance assets liabilities commission_blocked name server "
    "currency  "
    "company",
)
TerminalInfo: Final = _record(
    "TerminalInfo",
    "community_account community_connection connected dlls_allowed trade_allowed tradeapi_disabled "
    "email_enabled ftp_enabled notifications_enabled mqid build maxbars codepage ping_last community_balance "
    "retransmission company name language path data_path commondata_path",
)
TradeRequest: Final = _record(
    "TradeRequest",
    "action magic order symbol volume price stoplimit sl tp deviation type type_filling type_time expiration "
    "comment position position_by",
)
OrderSendResult: Final = _record(
    "OrderSendResult", "retcode deal order volume price bid ask comment request_id retcode_external request"
)
OrderCheckResult: Final = _record(
    "OrderCheckResult", "retcode balance equity profit margin margin_free margin_level comment request"
)
BookInfo: Final = _record("BookInfo", "type price volume volume_dbl")
# The live doc printout of symbol_info()._asdict() (MetaTrader5 5.0.29; spec §4.4 counts 94 in newer builds,
# the adapter reads fields by name only).
SymbolInfo: Final = _record(
    "SymbolInfo",
    "custom chart_mode select visible session_deals session_buy_orders session_sell_orders volume volumehigh "
    "volumelow time digits spread spread_float ticks_bookdepth trade_calc_mode trade_mode start_time "
    "expiration_time trade_stops_level trade_freeze_level trade_exemode swap_mode swap_rollover3days "
    "margin_hedged_use_leg expiration_mode filling_mode order_mode order_gtc_mode option_mode "
    "option_right bid  "
    "bidhigh bidlow ask askhigh asklow last lasthigh lastlow volume_real volumehigh_real volumelow_real "
    "option_strike point trade_tick_value trade_tick_value_profit trade_tick_value_loss trade_tick_size "
    "trade_contract_size trade_accrued_interest trade_face_value trade_liquidity_rate volume_min volume_max "
    "volume_step volume_limit swap_long swap_short margin_initial margin_maintenance session_volume "
    "session_turnover session_interest session_buy_orders_volume session_sell_orders_volume session_open "
    "session_close session_aw session_price_settlement session_price_limit_min session_price_limit_max "
    "margin_hedged price_change price_volatility price_theoretical price_greeks_delta price_greeks_theta "
    "price_greeks_gamma price_greeks_vega price_greeks_rho price_greeks_omega price_sensitivity basis "
    "category  "
    "currency_base currency_profit currency_margin bank description exchange formula isin name page path",
)

REQUEST_FIELDS: Final = TradeRequest._names


def fields_of(record_type: type[Record]) -> tuple[str, ...]:
    """The ordered field names of a record type (for tests and tools; the records themselves hide them)."""
    return record_type._names


__all__ = [
    "REQUEST_FIELDS",
    "AccountInfo",
    "BookInfo",
    "OrderCheckResult",
    "OrderSendResult",
    "Record",
    "SymbolInfo",
    "TerminalInfo",
    "Tick",
    "TradeDeal",
    "TradeOrder",
    "TradePosition",
    "TradeRequest",
    "fields_of",
]
