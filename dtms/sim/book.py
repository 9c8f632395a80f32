"""The simulated trade server's book: positions, history orders and deals, P&L, SL/TP triggers, stop-out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dtms.sim.feed import Series
from dtms.sim.models import Account, Deal, Order, Position, Settings
from dtms.sim.symbols import SymbolConfig

BUY, SELL = 0, 1
ENTRY_IN, ENTRY_OUT, ENTRY_INOUT, ENTRY_OUT_BY = 0, 1, 2, 3
REASON_EXPERT, REASON_SL, REASON_TP, REASON_SO = 3, 4, 5, 6
_FILLED = 4  # ORDER_STATE_FILLED


@dataclass
class Book:
    """All mutable terminal state, with the set of changes since the last save (what state.py writes)."""

    account: Account = field(default_factory=Account)
    settings: Settings = field(default_factory=Settings)
    symbols: dict[str, SymbolConfig] = field(default_factory=dict)
    positions: dict[int, Position] = field(default_factory=dict)  # by identifier: tickets may change
    deals: list[Deal] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=lambda: {"connected": True, "trade_allowed": True})
    clock: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    next_ticket: int = 1_000_001
    server_offset_s: int = 0
    market: dict[str, Series] = field(default_factory=dict, repr=False)  # process cache, never saved
    now_ms: int = 0  # server time of the call in progress
    # How far a position's SL/TP scan cursor may lag before it is saved: 0 in memory; the shared file uses an
    # hour, so read-only calls stay read-only (rescanning an unsaved stretch finds the same nothing).
    checkpoint_ms: int = field(default=0, repr=False)
    # change tracking
    dirty_meta: set[str] = field(default_factory=set, repr=False)
    dirty_positions: set[int] = field(default_factory=set, repr=False)
    removed_positions: set[int] = field(default_factory=set, repr=False)
    new_deals: list[Deal] = field(default_factory=list, repr=False)
    new_orders: list[Order] = field(default_factory=list, repr=False)
    new_sent: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def touch(self, *keys: str) -> None:
        self.dirty_meta.update(keys)

    def ticket(self) -> int:
        self.next_ticket += 1
        self.touch("next_ticket")
        return self.next_ticket - 1

    # --- prices and money ---------------------------------------------------------------------------------
    def quote(self, symbol: str, at_ms: int | None = None) -> tuple[float, float, int]:
        return self.market[symbol].quote(self.now_ms if at_ms is None else at_ms)

    def price_current(self, pos: Position) -> float:
        bid, ask, _ = self.quote(pos.symbol)
        return bid if pos.type == BUY else ask

    def profit(self, symbol: str, type_: int, volume: float, price_open: float, price_close: float) -> float:
        cfg = self.symbols[symbol]
        sign = 1.0 if type_ == BUY else -1.0
        return round(sign * (price_close - price_open) / cfg.tick * cfg.value_per_tick * volume, 2)

    def position_profit(self, pos: Position) -> float:
        return self.profit(pos.symbol, pos.type, pos.volume, pos.price_open, self.price_current(pos))

    def margin_per_lot(self, symbol: str) -> float:
        cfg = self.symbols[symbol]
        bid, ask, _ = self.quote(symbol)
        rate = 1.0 if cfg.currency_margin == self.account.currency else (bid + ask) / 2
        return cfg.contract_size * rate / self.account.leverage

    def margin(self, extra: tuple[str, int, float] | None = None) -> float:
        """Used margin; on hedging accounts opposite legs of a symbol count once (the larger side)."""
        sides: dict[str, list[float]] = {}
        for pos in self.positions.values():
            sides.setdefault(pos.symbol, [0.0, 0.0])[pos.type] += pos.volume
        if extra:
            sides.setdefault(extra[0], [0.0, 0.0])[extra[1]] += extra[2]
        return round(float(sum(max(v) * self.margin_per_lot(s) for s, v in sides.items())), 2)

    def equity(self) -> tuple[float, float]:
        profit = round(float(sum(self.position_profit(p) for p in self.positions.values())), 2)
        return round(self.account.balance + self.account.credit + profit, 2), profit

    # --- fills ----------------------------------------------------------------------------------------------
    def record_fill(
        self,
        *,
        symbol: str,
        type_: int,
        volume: float,
        price: float,
        entry: int,
        position_id: int,
        reason: int,
        magic: int,
        comment: str,
        profit: float = 0.0,
        filling: int = 0,
        order_ticket: int | None = None,
        position_by: int = 0,
        sl: float = 0.0,
        tp: float = 0.0,
        at_ms: int | None = None,
        with_order: bool = True,
    ) -> tuple[Order, Deal]:
        """Write the filled history order and its deal, and book the deal's money on the balance."""
        at = self.now_ms if at_ms is None else at_ms
        order_ticket = self.ticket() if order_ticket is None else order_ticket
        order_type = 8 if entry == ENTRY_OUT_BY else type_
        order = Order(
            order_ticket,
            at,
            at,
            order_type,
            filling,
            0,
            _FILLED,
            magic,
            position_id or order_ticket,
            position_by,
            min(reason, 6),
            volume,
            0.0,
            price,
            sl,
            tp,
            price,
            symbol,
            comment,
        )
        commission = round(-abs(self.settings.commission_per_lot) * volume, 2) + 0.0  # + 0.0: no -0.0
        deal = Deal(
            self.ticket(),
            order_ticket,
            at,
            type_,
            entry,
            magic,
            position_id or order_ticket,
            reason,
            volume,
            price,
            commission,
            0.0,
            profit,
            0.0,
            symbol,
            comment,
        )
        if with_order:
            self.orders.append(order)
            self.new_orders.append(order)
        self.deals.append(deal)
        self.new_deals.append(deal)
        self.account.balance = round(self.account.balance + profit + commission, 2)
        self.touch("account")
        return order, deal

    def balance_deal(self, amount: float, comment: str) -> None:
        deal = Deal(
            self.ticket(), 0, self.now_ms, 2, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, amount, 0.0, "", comment
        )
        self.deals.append(deal)
        self.new_deals.append(deal)
        self.account.balance = round(self.account.balance + amount, 2)
        self.touch("account")

    def put(self, pos: Position) -> None:
        self.positions[pos.identifier] = pos
        self.dirty_positions.add(pos.identifier)
        self.removed_positions.discard(pos.identifier)

    def drop(self, pos: Position) -> None:
        del self.positions[pos.identifier]
        self.dirty_positions.discard(pos.identifier)
        self.removed_positions.add(pos.identifier)

    def reduce(
        self,
        pos: Position,
        volume: float,
        price: float,
        *,
        reason: int,
        magic: int,
        comment: str,
        filling: int = 0,
        entry: int = ENTRY_OUT,
        at_ms: int | None = None,
        order_ticket: int | None = None,
        position_by: int = 0,
        with_order: bool = True,
    ) -> tuple[Order, Deal]:
        """Close `volume` of `pos` at `price`; the position goes when nothing is left."""
        volume = min(volume, pos.volume)
        profit = self.profit(pos.symbol, pos.type, volume, pos.price_open, price)
        result = self.record_fill(
            symbol=pos.symbol,
            type_=1 - pos.type,
            volume=volume,
            price=price,
            entry=entry,
            position_id=pos.identifier,
            reason=reason,
            magic=magic,
            comment=comment,
            profit=profit,
            filling=filling,
            at_ms=at_ms,
            order_ticket=order_ticket,
            position_by=position_by,
            with_order=with_order,
        )
        pos.volume = round(pos.volume - volume, 8)
        if pos.volume <= 1e-9:
            self.drop(pos)
        else:
            pos.time_update_msc = self.now_ms if at_ms is None else at_ms
            self.put(pos)
        return result

    # --- time passing -------------------------------------------------------------------------------------
    def catch_up(self) -> None:
        """Fire every SL/TP the prices crossed since each position was last checked, in time order."""
        if getattr(self, "_caught_up", None) == (self.now_ms, len(self.positions)):
            return  # nothing moved since the last call: skip the scan over every position
        hits: list[tuple[int, int, Position, float, int]] = []
        for pos in self.positions.values():
            if pos.checked_ms >= self.now_ms:
                continue
            hit = self._trigger(pos)
            if hit is None:
                if self.now_ms - pos.checked_ms >= self.checkpoint_ms:
                    pos.checked_ms = self.now_ms
                    self.dirty_positions.add(pos.identifier)
            else:
                hits.append((hit[0], pos.identifier, pos, hit[1], hit[2]))
        for at, _, pos, price, reason in sorted(hits, key=lambda h: (h[0], h[1])):
            tag = "sl" if reason == REASON_SL else "tp"
            level = pos.sl if reason == REASON_SL else pos.tp
            digits = self.symbols[pos.symbol].digits
            self.reduce(
                pos,
                pos.volume,
                price,
                reason=reason,
                magic=pos.magic,
                comment=f"[{tag} {level:.{digits}f}]",
                at_ms=at,
            )
        # Equity is a sum over every position: check the stop-out level once per clock step (or after a fill),
        # not on every API call, or a terminal with many positions spends its time here.
        if self.settings.stop_out and (hits or getattr(self, "_stop_out_ms", None) != self.now_ms):
            self._stop_out()
            self._stop_out_ms = self.now_ms
        self._caught_up = (self.now_ms, len(self.positions))

    def _trigger(self, pos: Position) -> tuple[int, float, int] | None:
        series = self.market[pos.symbol]
        buy = pos.type == BUY
        sl = tp = None
        if pos.sl:
            sl = series.first_cross(pos.checked_ms, self.now_ms, pos.sl, below=buy, ask=not buy)
        if pos.tp:
            tp = series.first_cross(pos.checked_ms, self.now_ms, pos.tp, below=not buy, ask=not buy)
        if sl and tp:
            same_bar = series.index(sl[0]) == series.index(tp[0])
            if (same_bar and self.settings.both_in_bar == "sl_first") or sl[0] <= tp[0]:
                return sl[0], sl[1], REASON_SL
            return tp[0], tp[1], REASON_TP
        if sl:
            return sl[0], sl[1], REASON_SL
        if tp:
            return tp[0], tp[1], REASON_TP
        return None

    def stop_out_impossible(self, until_ms: int) -> bool:
        """Whether no price the path reaches before `until_ms` can bring the margin level to the stop-out.

        A bound: every position at its worst price of the bars in between, the margin at the highest rate.
        `advance` then moves in one step instead of checking the stop-out once a minute; fills in between
        come out the same, since SL/TP crossings do not depend on how the clock is stepped.
        """
        if not self.settings.stop_out or not self.positions:
            return True
        equity, margin = self.account.balance + self.account.credit, 0.0
        sides: dict[str, list[float]] = {}
        top: dict[str, float] = {}
        for pos in self.positions.values():
            series, cfg = self.market[pos.symbol], self.symbols[pos.symbol]
            k0, k1 = max(0, series.index(self.now_ms)), max(0, series.index(until_ms))
            low, high = float(series.l[k0 : k1 + 1].min()), float(series.h[k0 : k1 + 1].max())
            spread = float(series.spread[k0 : k1 + 1].max())
            worst = low if pos.type == BUY else high + spread
            equity += self.profit(pos.symbol, pos.type, pos.volume, pos.price_open, worst) - 0.01
            sides.setdefault(pos.symbol, [0.0, 0.0])[pos.type] += pos.volume
            top[pos.symbol] = 1.0 if cfg.currency_margin == self.account.currency else high + spread
        for symbol, volumes in sides.items():
            cfg = self.symbols[symbol]
            margin += max(volumes) * cfg.contract_size * top[symbol] / self.account.leverage
        return margin <= 0 or (
            equity > 0 and equity / margin * 100 > self.account.margin_so_so * (1 + 1e-9) + 1e-9
        )

    def _stop_out(self) -> None:
        while self.positions:
            margin = self.margin()
            equity, _ = self.equity()
            level = equity / margin * 100 if margin else 0.0
            if not margin or level > self.account.margin_so_so:
                return
            worst = min(self.positions.values(), key=lambda p: (self.position_profit(p), p.identifier))
            self.reduce(
                worst,
                worst.volume,
                self.price_current(worst),
                reason=REASON_SO,
                magic=worst.magic,
                comment=f"[so {level:.2f}%]",
            )

    # --- persistence helpers --------------------------------------------------------------------------------
    def clear_changes(self) -> None:
        self.dirty_meta.clear()
        self.dirty_positions.clear()
        self.removed_positions.clear()
        self.new_deals.clear()
        self.new_orders.clear()
        self.new_sent.clear()

    def meta(self, key: str) -> Any:
        """The JSON-ready value of one meta key (what state.py stores)."""
        value = getattr(self, key)
        if key == "symbols":
            return {name: cfg.to_dict() for name, cfg in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return value

    def set_meta(self, key: str, value: Any) -> None:
        if key == "symbols":
            self.symbols = {name: SymbolConfig.from_dict(cfg) for name, cfg in value.items()}
        elif key == "account":
            self.account = Account(**value)
        elif key == "settings":
            self.settings = Settings(**value)
        else:
            setattr(self, key, value)


META_KEYS = ("account", "settings", "symbols", "flags", "clock", "faults", "next_ticket", "server_offset_s")

__all__ = ["BUY", "META_KEYS", "SELL", "Book"]
