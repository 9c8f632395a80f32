"""The trading side of the simulated terminal's API: order_send / order_check, margin and profit helpers."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from dtms.sim.book import Book
from dtms.sim.constants import RETCODE_TEXT
from dtms.sim.faults import take
from dtms.sim.records import REQUEST_FIELDS, OrderCheckResult, OrderSendResult, TradeRequest
from dtms.sim.trading import Fill, execute, invalid_field

T = TypeVar("T")
_REQUEST_DEFAULTS: Final = {
    "symbol": "", "comment": "", "volume": 0.0, "price": 0.0, "stoplimit": 0.0, "sl": 0.0, "tp": 0.0,
}  # fmt: skip


class Orders:
    """Mixin of Terminal: trade requests, each one transaction, logged with pid and tag in the sent log."""

    _initialized: bool
    _last_error: tuple[int, str]
    _request_id: int
    _tag: str

    def _tx(self) -> contextlib.AbstractContextManager[Book]:
        raise NotImplementedError

    def _read(self, name: str, body: Callable[[Book], T], *, fail: Any = None) -> T | Any:
        raise NotImplementedError

    def _missing(self, code: int, text: str | None = None) -> Any:
        raise NotImplementedError

    def _fail(self, code: int, text: str | None = None, value: Any = None) -> Any:
        raise NotImplementedError

    # --- trading --------------------------------------------------------------------------------------------
    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> Any:
        def body(book: Book) -> Any:
            cfg = book.symbols.get(symbol)
            if cfg is None:
                return self._missing(-4)
            rate = 1.0 if cfg.currency_margin == book.account.currency else price
            return round(cfg.contract_size * volume * rate / book.account.leverage, 2)

        return self._read("order_calc_margin", body)

    def order_calc_profit(
        self, action: int, symbol: str, volume: float, price_open: float, price_close: float
    ) -> Any:
        return self._read(
            "order_calc_profit",
            lambda book: (
                book.profit(symbol, action, volume, price_open, price_close)
                if symbol in book.symbols
                else self._missing(-4)
            ),
        )

    def order_check(self, request: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        return self._trade("order_check", request, kwargs)

    def order_send(self, request: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        return self._trade("order_send", request, kwargs)

    def _trade(self, name: str, request: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> Any:
        if not self._initialized:
            return self._fail(-10004)
        if (request is None) == (not kwargs) or (request is not None and not isinstance(request, Mapping)):
            return self._fail(-2, "Invalid arguments")
        req = dict(request if request is not None else kwargs)
        with self._tx() as book:
            log: dict[str, Any] = {
                "pid": os.getpid(),
                "tag": self._tag,
                "time_msc": book.now_ms,
                "request": json.dumps(req, default=repr),
                "retcode": None,
                "error": None,
                "result": None,
            }
            if name == "order_send":
                book.new_sent.append(log)
            if request is not None and book.settings.order_send_keywords_only:
                return self._logged_fail(log, -2, "Unnamed arguments not allowed")
            bad = invalid_field(req, book)
            if bad is not None:
                return self._logged_fail(log, -2, f'Invalid "{bad}" argument')
            rule = take(book, name, req)
            result = self._answer(book, name, req, rule)
            if result is None:  # only a rule answering None + last_error gets here
                code, text = rule["error"] if rule else (-1, "Terminal: Call failed")
                return self._logged_fail(log, code, text)
            log["retcode"] = result.retcode
            log["result"] = json.dumps({k: v for k, v in result._asdict().items() if k != "request"})
        self._last_error = (1, "Success")
        return result

    def _logged_fail(self, log: dict[str, Any], code: int, text: str) -> None:
        log["error"] = json.dumps([code, text])
        self._fail(code, text)

    def _answer(self, book: Book, name: str, req: dict[str, Any], rule: dict[str, Any] | None) -> Any:
        check = name == "order_check"
        fill = Fill()
        if rule is not None and not rule["executed"]:
            if rule["error"] is not None:
                return None
            retcode = rule["retcode"]
        elif not book.flags["connected"]:
            retcode = 10031
        elif not book.flags["trade_allowed"]:
            retcode = 10027
        elif not book.account.trade_allowed or not book.account.trade_expert:
            retcode = 10026
        else:
            retcode, fill = execute(book, req, check_only=check)
            if rule is not None:  # executed, but the answer is lost or ambiguous
                if rule["error"] is not None:
                    return None
                retcode, fill = rule["retcode"], Fill()
        symbol = req.get("symbol", "")
        bid, ask = book.quote(symbol)[:2] if symbol in book.symbols else (0.0, 0.0)
        echoed = TradeRequest(**{f: req.get(f, _REQUEST_DEFAULTS.get(f, 0)) for f in REQUEST_FIELDS})
        if check:
            equity, profit = book.equity()
            margin = book.margin()
            return OrderCheckResult(
                retcode=0 if retcode == 10009 else retcode,
                balance=book.account.balance,
                equity=equity,
                profit=profit,
                margin=margin,
                margin_free=round(equity - margin, 2),
                margin_level=round(equity / margin * 100, 2) if margin else 0.0,
                comment="Done" if retcode == 10009 else RETCODE_TEXT.get(retcode, "Rejected"),
                request=echoed,
            )
        self._request_id += 1
        return OrderSendResult(
            retcode=retcode,
            deal=fill.deal,
            order=fill.order,
            volume=fill.volume,
            price=fill.price,
            bid=bid,
            ask=ask,
            comment=RETCODE_TEXT.get(retcode, "Rejected"),
            request_id=self._request_id,
            retcode_external=0,
            request=echoed,
        )


__all__ = ["Orders"]
