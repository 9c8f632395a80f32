"""`open(path, …)` → Terminal: a simulated MetaTrader 5 terminal exposing the MetaTrader5 module API."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

from dtms.clock import Clock, SystemClock
from dtms.sim import create
from dtms.sim.book import Book
from dtms.sim.constants import CONSTANTS, ERROR_TEXT
from dtms.sim.faults import take
from dtms.sim.feed import Series, series_for
from dtms.sim.harness import Harness
from dtms.sim.orders import Orders
from dtms.sim.queries import Queries, in_group
from dtms.sim.records import (
    AccountInfo,
    SymbolInfo,
    TerminalInfo,
    Tick,
)
from dtms.sim.state import MemoryState, SqliteState, State
from dtms.sim.symbols import symbol_info_values

T = TypeVar("T")
_REQUEST_DEFAULTS: Final = {
    "symbol": "",
    "comment": "",
    "volume": 0.0,
    "price": 0.0,
    "stoplimit": 0.0,
    "sl": 0.0,
    "tp": 0.0,
}


class Terminal(Queries, Orders, Harness):
    """One API object (like the MetaTrader5 module): its own `last_error`, the terminal state shared."""

    __version__: Final = "5.0.45"
    __author__: Final = "MetaQuotes Ltd."

    def __init__(self, state: State, path: str | None, clock: Clock, tag: str = "") -> None:
        self._state, self._path, self._clock, self._tag = state, path, clock, tag
        self._initialized = False
        self._last_error: tuple[int, str] = (1, "Success")
        self._request_id = 0
        with state.transaction() as book:
            self._series = {
                name: series_for(rates, interval, book.symbols[name].point, book.symbols[name].digits)
                for name, (rates, interval) in state.bars.items()
            }

    def __getattr__(self, name: str) -> int:
        try:
            return CONSTANTS[name]
        except KeyError:
            raise AttributeError(f"module 'MetaTrader5' has no attribute {name!r}") from None

    def series(self, symbol: str) -> Series:
        """The symbol's price path (read-only; server-time ms): what quotes and SL/TP fills are computed from.

        A driver that owns the clock (the replay) reads it to find when prices reach a level without
        stepping the terminal through every moment in between.
        """
        return self._series[symbol]

    # --- plumbing -------------------------------------------------------------------------------------------
    def _utc_ms(self, book: Book) -> int:
        clk = book.clock
        if clk["mode"] == "manual":
            return int(clk["sim_ms"])
        wall = int(self._clock.utc_now().timestamp() * 1000)
        return int(clk["sim_ms"] + max(0, wall - clk["wall_ms"]) * clk["speed"])

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Book]:
        with self._state.transaction() as book:
            book.market = self._series
            book.now_ms = self._utc_ms(book) + book.server_offset_s * 1000
            book.catch_up()
            yield book

    def _fail(self, code: int, text: str | None = None, value: Any = None) -> Any:
        self._last_error = (code, text or ERROR_TEXT.get(code, "Terminal: Call failed"))
        return value

    def _read(self, name: str, body: Callable[[Book], T], *, fail: Any = None) -> T | Any:
        """Run one API call in one transaction: faults first, then the connection, then the body."""
        if not self._initialized:
            return self._fail(-10004, value=fail)
        with self._tx() as book:
            rule = take(book, name)
            if rule is not None:
                code, text = rule["error"]
                return self._fail(code, text, value=fail)
            if not book.flags["connected"] and not book.settings.stale_reads and name != "terminal_info":
                return self._fail(-10004, value=fail)
            result = body(book)
        if result is None:
            return fail
        self._last_error = (1, "Success")
        return result

    def _missing(self, code: int, text: str | None = None) -> Any:
        """Set last_error and answer None (for use inside a `_read` body)."""
        self._last_error = (code, text or ERROR_TEXT[code])
        return None

    # --- connection ----------------------------------------------------------------------------------------
    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int = 60_000,
        portable: bool = False,
    ) -> bool:
        self._initialized = True
        if login is not None and not self.login(login, password=password or "", server=server or ""):
            self._initialized = False
            return False
        self._last_error = (1, "Success")
        return True

    def login(self, login: int, *, password: str = "", server: str = "", timeout: int = 60_000) -> bool:
        def body(book: Book) -> Any:
            acct = book.account
            if (
                login != acct.login
                or (acct.password and password != acct.password)
                or (server and server != acct.server)
            ):
                return self._missing(-6)
            return True

        return bool(self._read("login", body, fail=False))

    def shutdown(self) -> None:
        self._initialized = False

    def version(self) -> tuple[int, int, str] | None:
        if not self._initialized:
            self._fail(-10004)
            return None
        self._last_error = (1, "Success")
        return (500, 4755, "20 Nov 2025")

    def last_error(self) -> tuple[int, str]:
        return self._last_error

    def terminal_info(self) -> Any:
        def body(book: Book) -> Any:
            return TerminalInfo(
                community_account=False,
                community_connection=False,
                connected=book.flags["connected"],
                dlls_allowed=False,
                trade_allowed=book.flags["trade_allowed"],
                tradeapi_disabled=False,
                email_enabled=False,
                ftp_enabled=False,
                notifications_enabled=False,
                mqid=False,
                build=4755,
                maxbars=book.settings.maxbars,
                codepage=0,
                ping_last=30_000,
                community_balance=0.0,
                retransmission=0.0,
                company="dtms",
                name="dtms simulated terminal",
                language="English",
                path=str(self._path or ":memory:"),
                data_path="",
                commondata_path="",
            )

        return self._read("terminal_info", body)

    def account_info(self) -> Any:
        def body(book: Book) -> Any:
            a = book.account
            equity, profit = book.equity()
            margin = book.margin()
            return AccountInfo(
                login=a.login,
                trade_mode=0,
                leverage=a.leverage,
                limit_orders=200,
                margin_so_mode=0,
                trade_allowed=a.trade_allowed,
                trade_expert=a.trade_expert,
                margin_mode=a.margin_mode,
                currency_digits=2,
                fifo_close=a.fifo_close,
                balance=a.balance,
                credit=a.credit,
                profit=profit,
                equity=equity,
                margin=margin,
                margin_free=round(equity - margin, 2),
                margin_level=round(equity / margin * 100, 2) if margin else 0.0,
                margin_so_call=a.margin_so_call,
                margin_so_so=a.margin_so_so,
                margin_initial=0.0,
                margin_maintenance=0.0,
                assets=0.0,
                liabilities=0.0,
                commission_blocked=0.0,
                name=a.name,
                server=a.server,
                currency=a.currency,
                company=a.company,
            )

        return self._read("account_info", body)

    # --- symbols and prices ---------------------------------------------------------------------------------
    def symbols_total(self) -> int:
        return int(self._read("symbols_total", lambda book: len(book.symbols), fail=0))

    def symbols_get(self, group: str = "*") -> Any:
        return self._read(
            "symbols_get",
            lambda book: tuple(
                self._symbol_info(book, name) for name in book.symbols if in_group(name, group)
            ),
        )

    def _symbol_info(self, book: Book, name: str) -> Any:
        bid, ask, t_ms = book.quote(name)
        return SymbolInfo(**symbol_info_values(book.symbols[name], bid, ask, t_ms // 1000))

    def symbol_info(self, symbol: str) -> Any:
        return self._read(
            "symbol_info",
            lambda book: self._symbol_info(book, symbol) if symbol in book.symbols else self._missing(-4),
        )

    def symbol_info_tick(self, symbol: str) -> Any:
        def body(book: Book) -> Any:
            if symbol not in book.symbols:
                return self._missing(-4)
            bid, ask, t_ms = book.quote(symbol)
            return Tick(
                time=t_ms // 1000,
                bid=bid,
                ask=ask,
                last=0.0,
                volume=0,
                time_msc=t_ms,
                flags=6,
                volume_real=0.0,
            )

        return self._read("symbol_info_tick", body)

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        def body(book: Book) -> Any:
            cfg = book.symbols.get(symbol)
            if cfg is None:
                return self._missing(-4)
            if not enable and any(p.symbol == symbol for p in book.positions.values()):
                return self._missing(-1)  # a symbol with open positions cannot be hidden
            cfg.selected = enable
            book.touch("symbols")
            return True

        return bool(self._read("symbol_select", body, fail=False))

    def market_book_add(self, symbol: str) -> bool:
        return bool(self._read("market_book_add", lambda book: symbol in book.symbols or None, fail=False))

    def market_book_get(self, symbol: str) -> Any:
        return self._read("market_book_get", lambda book: () if symbol in book.symbols else None)

    def market_book_release(self, symbol: str) -> bool:
        return bool(
            self._read("market_book_release", lambda book: symbol in book.symbols or None, fail=False)
        )


def open(
    path: str | os.PathLike[str] | None,
    *,
    bars: create.BarsSource = None,
    account: str | None = None,
    balance: float | None = None,
    clock: str | None = None,
    speed: float | None = None,
    start: datetime | None = None,
    seed: int | None = None,
    symbols: Mapping[str, Mapping[str, Any]] | None = None,
    server_time_offset_s: int | None = None,
    tag: str = "",
    wall_clock: Clock | None = None,
) -> Terminal:
    """Open the simulated terminal in `path`, creating it if needed; `None` or ":memory:" gives a private one.

    A second `open(path)` (any process) attaches to the same terminal: state, clock and faults are shared.
    Defaults when creating: synthetic EURUSD/XAUUSD/BTCUSD bars, a hedging account of 10,000 USD,
    a wall-driven
    clock at 60x from 2026-01-05 08:00 UTC. On attach, arguments that contradict the file raise ConfigError.

    Raises:
        ConfigError: invalid or conflicting creation arguments.
        DataError: unreadable or inconsistent bars.
    """
    opts = create.Options(bars, account, balance, clock, speed, start, seed, symbols, server_time_offset_s)
    opts.validate()
    wall = wall_clock or SystemClock()
    wall_ms = int(wall.utc_now().timestamp() * 1000)
    state: State
    if path is None or str(path) == ":memory:":
        book, bars_ = create.new_terminal(opts, wall_ms)
        book.clear_changes()
        state = MemoryState(book, bars_)
        path = None
    else:
        sqlite = SqliteState(path, lambda: create.new_terminal(opts, wall_ms))
        state = sqlite
        if not sqlite.created:
            with sqlite.transaction() as existing:
                create.check_attach(opts, existing)
    return Terminal(state, None if path is None else str(path), wall, tag)


__all__ = ["Terminal", "open"]
