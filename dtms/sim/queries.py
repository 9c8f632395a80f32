"""The read side of the simulated terminal's API: rates, ticks, positions, history orders and deals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, Final, TypeVar

import numpy as np

from dtms.sim.book import Book
from dtms.sim.feed import Rates, Series, timeframe_seconds
from dtms.sim.models import Deal, Order, Position
from dtms.sim.records import TradeDeal, TradeOrder, TradePosition

T = TypeVar("T")
TICKS_DTYPE: Final = np.dtype(
    [
        ("time", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("last", "<f8"),
        ("volume", "<u8"),
        ("time_msc", "<i8"),
        ("flags", "<u4"),
        ("volume_real", "<f8"),
    ]
)


def seconds(value: datetime | int | float) -> int:
    """MetaTrader dates: a datetime (aware, or naive read as UTC) or epoch seconds, both in server time."""
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())
    return int(value)


def in_group(symbol: str, group: str) -> bool:
    masks = [m.strip() for m in group.split(",") if m.strip()]
    included = any(fnmatchcase(symbol, m) for m in masks if not m.startswith("!"))
    return included and not any(fnmatchcase(symbol, m[1:]) for m in masks if m.startswith("!"))


class Queries:
    """Mixin of Terminal: each function is one `_read` (one transaction, faults and connection first)."""

    _series: dict[str, Series]

    def _read(self, name: str, body: Callable[[Book], T], *, fail: Any = None) -> T | Any:
        raise NotImplementedError

    def _missing(self, code: int, text: str | None = None) -> Any:
        raise NotImplementedError

    def _fail(self, code: int, text: str | None = None, value: Any = None) -> Any:
        raise NotImplementedError

    def _rates(
        self,
        name: str,
        symbol: str,
        timeframe: int,
        bounds: Callable[[Rates, int, int], tuple[int, int] | None],
    ) -> Any:
        def body(book: Book) -> Any:
            if symbol not in book.symbols:
                return self._missing(-1)
            if type(timeframe) is not int or timeframe_seconds(timeframe) is None:
                return self._missing(-2, 'Invalid "timeframe" argument')
            seen = self._series[symbol].visible(timeframe, book.now_ms)
            if seen is None:
                return self._missing(-1)  # finer than the data's base interval
            agg, g = seen
            span = bounds(agg.rates, g, book.settings.maxbars)
            if span is None:
                return self._missing(-1)
            return self._series[symbol].window(timeframe, book.now_ms, *span)

        return self._read(name, body)

    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> Any:
        def bounds(rates: Rates, g: int, maxbars: int) -> tuple[int, int] | None:
            if start_pos < 0 or count <= 0 or start_pos + count > maxbars or g - start_pos < 0:
                return None
            return g - start_pos - count + 1, g - start_pos

        return self._rates("copy_rates_from_pos", symbol, timeframe, bounds)

    def copy_rates_from(self, symbol: str, timeframe: int, date_from: datetime | int, count: int) -> Any:
        def bounds(rates: Rates, g: int, maxbars: int) -> tuple[int, int] | None:
            hi = min(g, int(np.searchsorted(rates["time"], seconds(date_from), side="right")) - 1)
            return (hi - count + 1, hi) if 0 < count <= maxbars else None

        return self._rates("copy_rates_from", symbol, timeframe, bounds)

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: datetime | int, date_to: datetime | int
    ) -> Any:
        def bounds(rates: Rates, g: int, maxbars: int) -> tuple[int, int] | None:
            lo = int(np.searchsorted(rates["time"], seconds(date_from), side="left"))
            hi = min(g, int(np.searchsorted(rates["time"], seconds(date_to), side="right")) - 1)
            return (lo, hi) if hi - lo < maxbars else None

        return self._rates("copy_rates_range", symbol, timeframe, bounds)

    def _ticks(self, name: str, symbol: str, lo_ms: int, hi_ms: int | None, count: int | None) -> Any:
        def body(book: Book) -> Any:
            if symbol not in book.symbols:
                return self._missing(-1)
            top = book.now_ms if hi_ms is None else min(hi_ms, book.now_ms)
            rows = self._series[symbol].ticks(lo_ms, top)[: count if count is not None else None]
            out = np.zeros(len(rows), dtype=TICKS_DTYPE)
            for i, (t, bid, ask) in enumerate(rows):
                out[i] = (t // 1000, bid, ask, 0.0, 0, t, 6, 0.0)
            return out

        return self._read(name, body)

    def copy_ticks_from(self, symbol: str, date_from: datetime | int, count: int, flags: int) -> Any:
        return self._ticks("copy_ticks_from", symbol, seconds(date_from) * 1000, None, count)

    def copy_ticks_range(
        self, symbol: str, date_from: datetime | int, date_to: datetime | int, flags: int
    ) -> Any:
        return self._ticks(
            "copy_ticks_range", symbol, seconds(date_from) * 1000, seconds(date_to) * 1000, None
        )

    # --- positions, orders, history -------------------------------------------------------------------------
    def _position_record(self, book: Book, p: Position) -> Any:
        return TradePosition(
            ticket=p.ticket,
            time=p.time_msc // 1000,
            time_msc=p.time_msc,
            time_update=p.time_update_msc // 1000,
            time_update_msc=p.time_update_msc,
            type=p.type,
            magic=p.magic,
            identifier=p.identifier,
            reason=p.reason,
            volume=p.volume,
            price_open=p.price_open,
            sl=p.sl,
            tp=p.tp,
            price_current=book.price_current(p),
            swap=p.swap,
            profit=book.position_profit(p),
            symbol=p.symbol,
            comment=p.comment,
            external_id=p.external_id,
        )

    def positions_total(self) -> int:
        return int(self._read("positions_total", lambda book: len(book.positions), fail=0))

    def positions_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> Any:
        def body(book: Book) -> Any:
            chosen = list(book.positions.values())
            if symbol is not None:
                chosen = [p for p in chosen if p.symbol == symbol]  # symbol= makes ticket= ignored
            elif group is not None:
                chosen = [p for p in chosen if in_group(p.symbol, group)]
            elif ticket is not None:
                chosen = [p for p in chosen if p.ticket == ticket]
            chosen.sort(key=lambda p: (p.time_msc, p.identifier))  # filter first: a ticket query sorts one
            return tuple(self._position_record(book, p) for p in chosen)

        return self._read("positions_get", body)

    def orders_total(self) -> int:
        return int(self._read("orders_total", lambda book: 0, fail=0))

    def orders_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> Any:
        return self._read("orders_get", lambda book: ())  # pending orders are not simulated

    def _history(
        self,
        name: str,
        rows: Callable[[Book], list[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        as_record: Callable[[Any], Any],
    ) -> Any:
        date_from = args[0] if args else kwargs.pop("date_from", None)
        date_to = args[1] if len(args) > 1 else kwargs.pop("date_to", None)
        group, ticket, position = (
            kwargs.pop("group", None),
            kwargs.pop("ticket", None),
            kwargs.pop("position", None),
        )
        if kwargs or (ticket is None and position is None and (date_from is None or date_to is None)):
            return self._fail(-2, "Invalid arguments")

        def body(book: Book) -> Any:
            chosen = rows(book)
            if position is not None:
                chosen = [r for r in chosen if r.position_id == position]
            elif ticket is not None:
                chosen = [r for r in chosen if (r.order if isinstance(r, Deal) else r.ticket) == ticket]
            else:
                lo, hi = seconds(date_from) * 1000, seconds(date_to) * 1000 + 999
                chosen = [
                    r for r in chosen if lo <= (r.time_msc if isinstance(r, Deal) else r.time_done_msc) <= hi
                ]
                if group is not None:
                    chosen = [r for r in chosen if in_group(r.symbol, group)]
            return tuple(as_record(r) for r in chosen)

        return self._read(name, body)

    def history_deals_get(self, *args: Any, **kwargs: Any) -> Any:
        return self._history("history_deals_get", lambda book: book.deals, args, kwargs, _deal_record)

    def history_orders_get(self, *args: Any, **kwargs: Any) -> Any:
        return self._history("history_orders_get", lambda book: book.orders, args, kwargs, _order_record)

    def history_deals_total(self, date_from: datetime | int, date_to: datetime | int) -> int:
        found = self.history_deals_get(date_from, date_to)
        return 0 if found is None else len(found)

    def history_orders_total(self, date_from: datetime | int, date_to: datetime | int) -> int:
        found = self.history_orders_get(date_from, date_to)
        return 0 if found is None else len(found)


def _deal_record(d: Deal) -> Any:
    return TradeDeal(
        ticket=d.ticket,
        order=d.order,
        time=d.time_msc // 1000,
        time_msc=d.time_msc,
        type=d.type,
        entry=d.entry,
        magic=d.magic,
        position_id=d.position_id,
        reason=d.reason,
        volume=d.volume,
        price=d.price,
        commission=d.commission,
        swap=d.swap,
        profit=d.profit,
        fee=d.fee,
        symbol=d.symbol,
        comment=d.comment,
        external_id=d.external_id,
    )


def _order_record(o: Order) -> Any:
    return TradeOrder(
        ticket=o.ticket,
        time_setup=o.time_setup_msc // 1000,
        time_setup_msc=o.time_setup_msc,
        time_done=o.time_done_msc // 1000,
        time_done_msc=o.time_done_msc,
        time_expiration=0,
        type=o.type,
        type_time=o.type_time,
        type_filling=o.type_filling,
        state=o.state,
        magic=o.magic,
        position_id=o.position_id,
        position_by_id=o.position_by_id,
        reason=o.reason,
        volume_current=o.volume_current,
        volume_initial=o.volume_initial,
        price_open=o.price_open,
        price_stoplimit=0.0,
        sl=o.sl,
        tp=o.tp,
        price_current=o.price_current,
        symbol=o.symbol,
        comment=o.comment,
        external_id=o.external_id,
    )


__all__ = ["TICKS_DTYPE", "Queries", "in_group", "seconds"]
