"""The simulated server's mutable records (positions, deals, orders), its account and its switches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Position:
    ticket: int
    identifier: int
    symbol: str
    type: int
    volume: float
    price_open: float
    sl: float
    tp: float
    magic: int
    comment: str
    reason: int
    time_msc: int
    time_update_msc: int
    checked_ms: int  # SL/TP have been evaluated up to here (server ms)
    swap: float = 0.0
    external_id: str = ""


@dataclass(slots=True)
class Deal:
    ticket: int
    order: int
    time_msc: int
    type: int
    entry: int
    magic: int
    position_id: int
    reason: int
    volume: float
    price: float
    commission: float
    swap: float
    profit: float
    fee: float
    symbol: str
    comment: str
    external_id: str = ""


@dataclass(slots=True)
class Order:
    ticket: int
    time_setup_msc: int
    time_done_msc: int
    type: int
    type_filling: int
    type_time: int
    state: int
    magic: int
    position_id: int
    position_by_id: int
    reason: int
    volume_initial: float
    volume_current: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    symbol: str
    comment: str
    external_id: str = ""


@dataclass(slots=True)
class Account:
    login: int = 5_000_001
    password: str = ""  # empty: any password is accepted
    server: str = "DtmsSim-Demo"
    name: str = "dtms simulated account"
    company: str = "dtms"
    currency: str = "USD"
    leverage: int = 100
    margin_mode: int = 2  # ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
    balance: float = 10_000.0
    credit: float = 0.0
    margin_so_call: float = 50.0
    margin_so_so: float = 30.0
    fifo_close: bool = False
    trade_allowed: bool = True
    trade_expert: bool = True
    limit_positions: int = 0  # 0 = no limit (10040 beyond it)
    hedge_prohibited: bool = False  # 10046 for opposite positions on a hedging account

    @property
    def is_hedging(self) -> bool:
        return self.margin_mode == 2


@dataclass(slots=True)
class Settings:
    """Switches for what spec/mt5.md lists as unverified; defaults: the strict case the adapter must meet."""

    comment_limit: int = 28
    order_send_keywords_only: bool = False  # the wheel 5.0.5735 report: a positional dict gives -2
    int_volume_ok: bool = False
    remainder_min: bool = True  # a partial close leaving less than volume_min gives 10014
    freeze_blocks_close: bool = True
    freeze_checks_requested: bool = True
    vanished_retcode: int = 10036
    both_in_bar: str = "sl_first"  # or "path": the intra-bar path decides which level is hit first
    return_filling: str = "market_exchange"  # where ORDER_FILLING_RETURN is allowed: or "exchange", "never"
    stale_reads: bool = False  # while disconnected: serve stale data instead of None/-10004
    commission_per_lot: float = 0.0
    stop_out: bool = True
    maxbars: int = 100_000


__all__ = ["Account", "Deal", "Order", "Position", "Settings"]
