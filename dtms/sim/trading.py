"""The simulated trade server's request handling: validation, retcodes, execution of DEAL, SLTP, CLOSE_BY."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from dtms.sim.book import BUY, ENTRY_IN, ENTRY_INOUT, ENTRY_OUT, ENTRY_OUT_BY, REASON_EXPERT, Book
from dtms.sim.models import Position
from dtms.sim.symbols import SymbolConfig

ACTION_DEAL, ACTION_SLTP, ACTION_CLOSE_BY = 1, 6, 10
_INT_FIELDS: Final = frozenset(
    [
        "action",
        "magic",
        "order",
        "deviation",
        "type",
        "type_filling",
        "type_time",
        "expiration",
        "position",
        "position_by",
    ]
)
_FLOAT_FIELDS: Final = frozenset(["volume", "price", "stoplimit", "sl", "tp"])
_STR_FIELDS: Final = frozenset(("symbol", "comment"))
_EPS: Final = 1e-9


class Refused(Exception):  # noqa: N818 -- internal control flow of this module, never leaves it
    """A request the server refuses with `retcode`."""

    def __init__(self, retcode: int) -> None:
        super().__init__(retcode)
        self.retcode = retcode


@dataclass(slots=True)
class Fill:
    """What an accepted request produced (the OrderSendResult's deal, order, volume, price)."""

    deal: int = 0
    order: int = 0
    volume: float = 0.0
    price: float = 0.0


def invalid_field(request: dict[str, Any], book: Book) -> str | None:
    """The first field that makes the terminal answer None with (-2, 'Invalid "<field>" argument'), if any."""
    for key, value in request.items():
        if key in _INT_FIELDS:
            ok = type(value) is int and (key != "magic" or value >= 0)
        elif key in _FLOAT_FIELDS:
            # Plain floats only: numpy scalars cannot cross mt5linux's repr() bridge (spec §1.1).
            ok = type(value) is float or (
                key == "volume" and type(value) is int and book.settings.int_volume_ok
            )
        elif key in _STR_FIELDS:
            ok = type(value) is str
            if ok and key == "comment":
                ok = len(value) <= book.settings.comment_limit
        else:
            ok = False
        if not ok:
            return key
    if "action" not in request:
        return "action"
    if request["action"] == ACTION_DEAL:
        for key in ("symbol", "volume", "type"):
            if key not in request:
                return key
        cfg = book.symbols.get(request["symbol"])
        if cfg is not None and cfg.exemode in (0, 1) and "price" not in request:
            return "price"  # Instant and Request execution need the client's price
    return None


def _valid_volume(volume: float, cfg: SymbolConfig) -> bool:
    steps = volume / cfg.volume_step
    return (cfg.volume_min - _EPS <= volume <= cfg.volume_max + _EPS) and abs(steps - round(steps)) < 1e-7


def _by_ticket(book: Book, ticket: int) -> Position | None:
    return next((p for p in book.positions.values() if p.ticket == ticket), None)


def _check_stops(cfg: SymbolConfig, type_: int, sl: float, tp: float, bid: float, ask: float) -> None:
    """Stops level: new levels at least stops_level points from Bid (buys) / Ask (sells), right side."""
    dist = max(cfg.stops_level * cfg.point - _EPS, 0.0)  # level 0 still means "on the right side"
    ref = bid if type_ == BUY else ask
    sign = 1.0 if type_ == BUY else -1.0
    if sl and sign * (ref - sl) < dist:
        raise Refused(10016)
    if tp and sign * (tp - ref) < dist:
        raise Refused(10016)


def _frozen(cfg: SymbolConfig, type_: int, sl: float, tp: float, bid: float, ask: float) -> bool:
    """Freeze level: a level within freeze_level points of the price may not change (or, by switch, close)."""
    if cfg.freeze_level <= 0:
        return False
    dist = cfg.freeze_level * cfg.point + _EPS
    ref = bid if type_ == BUY else ask
    sign = 1.0 if type_ == BUY else -1.0
    return bool((sl and sign * (ref - sl) < dist) or (tp and sign * (tp - ref) < dist))


def _check_filling(book: Book, cfg: SymbolConfig, filling: int) -> None:
    if cfg.exemode in (0, 1):
        ok = filling == 0  # Request and Instant execution fill all-or-nothing only
    elif filling == 0:
        ok = bool(cfg.filling_mode & 1)
    elif filling == 1:
        ok = bool(cfg.filling_mode & 2)
    elif filling == 2:
        rule = book.settings.return_filling
        ok = rule == "market_exchange" or (rule == "exchange" and cfg.exemode == 3)
    else:
        ok = False
    if not ok:
        raise Refused(10030)


def _market_open(book: Book, cfg: SymbolConfig) -> None:
    if cfg.market is False or (cfg.market is None and not book.market[cfg.name].is_open(book.now_ms)):
        raise Refused(10018)


def execute(book: Book, request: dict[str, Any], *, check_only: bool = False) -> tuple[int, Fill]:
    """Run one validated request against the book: (retcode, fill). With `check_only`, change nothing."""
    try:
        action = request["action"]
        if action == ACTION_DEAL:
            return 10009, _deal(book, request, check_only)
        if action == ACTION_SLTP:
            return 10009, _sltp(book, request, check_only)
        if action == ACTION_CLOSE_BY:
            return 10009, _close_by(book, request, check_only)
        return 10013, Fill()  # pending orders are not simulated
    except Refused as refused:
        return refused.retcode, Fill()


def _deal(book: Book, req: dict[str, Any], check_only: bool) -> Fill:
    cfg = book.symbols.get(req["symbol"])
    if cfg is None:
        raise Refused(10013)
    _market_open(book, cfg)
    type_, volume = req["type"], float(req["volume"])
    if type_ not in (0, 1):
        raise Refused(10035)
    bid, ask, _ = book.quote(cfg.name)
    target: Position | None = None
    if req.get("position"):
        target = _by_ticket(book, req["position"])
        if target is None:
            raise Refused(book.settings.vanished_retcode)
        if target.symbol != cfg.name or target.type == type_:
            raise Refused(10013)
    elif not book.account.is_hedging:
        target = next((p for p in book.positions.values() if p.symbol == cfg.name), None)
    closing = target is not None and target.type != type_ and volume <= target.volume + _EPS
    if cfg.trade_mode == 0:
        raise Refused(10017)
    if not closing and cfg.trade_mode == 3:
        raise Refused(10044)
    if not closing and ((cfg.trade_mode == 1 and type_ == 1) or (cfg.trade_mode == 2 and type_ == 0)):
        raise Refused(10042 if cfg.trade_mode == 1 else 10043)
    if not _valid_volume(volume, cfg):
        raise Refused(10014)
    filling = req.get("type_filling", 0)
    _check_filling(book, cfg, filling)
    price = ask if type_ == BUY else bid
    if (
        cfg.exemode in (0, 1)
        and abs(req.get("price", 0.0) - price) > req.get("deviation", 0) * cfg.point + _EPS
    ):
        raise Refused(10004)
    magic, comment = req.get("magic", 0), req.get("comment", "")
    sl, tp = req.get("sl", 0.0), req.get("tp", 0.0)
    if target is not None and req.get("position"):
        if volume > target.volume + _EPS:
            raise Refused(10038)
        remainder = target.volume - volume
        if book.settings.remainder_min and _EPS < remainder < cfg.volume_min - _EPS:
            raise Refused(10014)
        if book.settings.freeze_blocks_close and _frozen(cfg, target.type, target.sl, target.tp, bid, ask):
            raise Refused(10029)
        if book.account.fifo_close and target.identifier != min(
            p.identifier for p in book.positions.values() if p.symbol == cfg.name
        ):
            raise Refused(10045)
        if check_only:
            return Fill()
        order, deal = book.reduce(
            target, volume, price, reason=REASON_EXPERT, magic=magic, comment=comment, filling=filling
        )
        return Fill(deal.ticket, order.ticket, volume, price)
    if not closing:
        _check_stops(cfg, type_, sl, tp, bid, ask)
        _check_limits(book, cfg, type_, volume, target)
    if check_only:
        return Fill()
    if target is None:
        return _open(book, cfg, type_, volume, price, sl, tp, magic, comment, filling)
    return _net(book, target, type_, volume, price, sl, tp, magic, comment, filling)


def _check_limits(book: Book, cfg: SymbolConfig, type_: int, volume: float, target: Position | None) -> None:
    acct = book.account
    if acct.is_hedging:
        if acct.limit_positions and len(book.positions) >= acct.limit_positions:
            raise Refused(10040)
        if acct.hedge_prohibited and any(
            p.symbol == cfg.name and p.type != type_ for p in book.positions.values()
        ):
            raise Refused(10046)
    if cfg.volume_limit:
        same = sum(p.volume for p in book.positions.values() if p.symbol == cfg.name and p.type == type_)
        if same + volume > cfg.volume_limit + _EPS:
            raise Refused(10034)
    equity, _ = book.equity()
    if book.margin((cfg.name, type_, volume)) > equity:
        raise Refused(10019)


def _open(
    book: Book,
    cfg: SymbolConfig,
    type_: int,
    volume: float,
    price: float,
    sl: float,
    tp: float,
    magic: int,
    comment: str,
    filling: int,
) -> Fill:
    ticket = book.ticket()
    order, deal = book.record_fill(
        symbol=cfg.name,
        type_=type_,
        volume=volume,
        price=price,
        entry=ENTRY_IN,
        position_id=ticket,
        reason=REASON_EXPERT,
        magic=magic,
        comment=comment,
        filling=filling,
        order_ticket=ticket,
        sl=sl,
        tp=tp,
    )
    book.put(
        Position(
            ticket,
            ticket,
            cfg.name,
            type_,
            volume,
            price,
            sl,
            tp,
            magic,
            comment,
            REASON_EXPERT,
            book.now_ms,
            book.now_ms,
            book.now_ms,
        )
    )
    return Fill(deal.ticket, order.ticket, volume, price)


def _net(
    book: Book,
    pos: Position,
    type_: int,
    volume: float,
    price: float,
    sl: float,
    tp: float,
    magic: int,
    comment: str,
    filling: int,
) -> Fill:
    """Netting: a same-side order adds, an opposite one reduces, closes or reverses (spec §5.4)."""
    if type_ == pos.type:
        order, deal = book.record_fill(
            symbol=pos.symbol,
            type_=type_,
            volume=volume,
            price=price,
            entry=ENTRY_IN,
            position_id=pos.identifier,
            reason=REASON_EXPERT,
            magic=magic,
            comment=comment,
            filling=filling,
            sl=sl,
            tp=tp,
        )
        total = pos.volume + volume
        digits = book.symbols[pos.symbol].digits
        pos.price_open = round((pos.price_open * pos.volume + price * volume) / total, digits + 3)
        pos.volume = round(total, 8)
        # An increase takes SL/TP from the latest order, and zeros there delete them (spec §5.4).
        # The old levels were evaluated up to now (catch_up runs first); the new ones count from now on.
        pos.sl, pos.tp, pos.time_update_msc, pos.checked_ms = sl, tp, book.now_ms, book.now_ms
        book.put(pos)
        return Fill(deal.ticket, order.ticket, volume, price)
    if volume <= pos.volume + _EPS:
        order, deal = book.reduce(
            pos, volume, price, reason=REASON_EXPERT, magic=magic, comment=comment, filling=filling
        )
        return Fill(deal.ticket, order.ticket, volume, price)
    closed = pos.volume
    profit = book.profit(pos.symbol, pos.type, closed, pos.price_open, price)
    order, deal = book.record_fill(
        symbol=pos.symbol,
        type_=type_,
        volume=volume,
        price=price,
        entry=ENTRY_INOUT,
        position_id=pos.identifier,
        reason=REASON_EXPERT,
        magic=magic,
        comment=comment,
        profit=profit,
        filling=filling,
        sl=sl,
        tp=tp,
    )
    # A reversal keeps the identifier and takes the reversing order's ticket (spec §5.1).
    pos.ticket, pos.type, pos.volume, pos.price_open = order.ticket, type_, round(volume - closed, 8), price
    pos.sl, pos.tp, pos.time_update_msc, pos.checked_ms = sl, tp, book.now_ms, book.now_ms
    book.put(pos)
    return Fill(deal.ticket, order.ticket, volume, price)


def _sltp(book: Book, req: dict[str, Any], check_only: bool) -> Fill:
    pos = _by_ticket(book, req["position"]) if req.get("position") else None
    if pos is None and not book.account.is_hedging and "symbol" in req:
        pos = next((p for p in book.positions.values() if p.symbol == req["symbol"]), None)
    if pos is None:
        raise Refused(book.settings.vanished_retcode if req.get("position") else 10013)
    if req.get("symbol", pos.symbol) != pos.symbol:
        raise Refused(10013)
    cfg = book.symbols[pos.symbol]
    _market_open(book, cfg)
    sl, tp = req.get("sl", 0.0), req.get("tp", 0.0)
    for level in (sl, tp):
        if level and abs(level / cfg.tick - round(level / cfg.tick)) > 1e-6:
            raise Refused(10015)
    if abs(sl - pos.sl) < _EPS and abs(tp - pos.tp) < _EPS:
        raise Refused(10025)
    bid, ask, _ = book.quote(cfg.name)
    if _frozen(cfg, pos.type, pos.sl, pos.tp, bid, ask):
        raise Refused(10029)
    new_sl = sl if abs(sl - pos.sl) >= _EPS else 0.0
    new_tp = tp if abs(tp - pos.tp) >= _EPS else 0.0
    _check_stops(cfg, pos.type, new_sl, new_tp, bid, ask)
    if book.settings.freeze_checks_requested and _frozen(cfg, pos.type, new_sl, new_tp, bid, ask):
        raise Refused(10029)
    if not check_only:
        # The old levels were evaluated up to now (catch_up runs first); the new ones count from now on.
        pos.sl, pos.tp, pos.time_update_msc, pos.checked_ms = sl, tp, book.now_ms, book.now_ms
        book.put(pos)
    return Fill()


def _close_by(book: Book, req: dict[str, Any], check_only: bool) -> Fill:
    if not book.account.is_hedging:
        raise Refused(10013)
    pos, by = _by_ticket(book, req.get("position", 0)), _by_ticket(book, req.get("position_by", 0))
    if pos is None or by is None:
        raise Refused(book.settings.vanished_retcode)
    if pos.symbol != by.symbol or pos.type == by.type or req.get("symbol", pos.symbol) != pos.symbol:
        raise Refused(10013)
    _market_open(book, book.symbols[pos.symbol])
    volume = min(pos.volume, by.volume)
    if check_only:
        return Fill()
    ticket = book.ticket()
    magic, comment = req.get("magic", 0), req.get("comment", "")
    price = by.price_open  # the position is closed at the opposite one's open price; that leg books no profit
    order, deal = book.reduce(
        pos,
        volume,
        price,
        reason=REASON_EXPERT,
        magic=magic,
        comment=comment,
        entry=ENTRY_OUT_BY,
        order_ticket=ticket,
        position_by=by.identifier,
    )
    book.reduce(
        by,
        volume,
        price,
        reason=REASON_EXPERT,
        magic=magic,
        comment=comment,
        entry=ENTRY_OUT_BY,
        order_ticket=ticket,
        position_by=pos.identifier,
        with_order=False,
    )
    return Fill(deal.ticket, order.ticket, volume, price)


__all__ = ["ACTION_CLOSE_BY", "ACTION_DEAL", "ACTION_SLTP", "ENTRY_OUT", "Fill", "execute", "invalid_field"]
