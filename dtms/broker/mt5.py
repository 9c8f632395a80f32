"""MT5Broker: the Broker contract over any object with the MetaTrader5 API (package, mt5linux, simulator)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from dtms.broker import codes, convert, requests
from dtms.broker.base import (
    Account,
    Deal,
    Direction,
    Handling,
    Outcome,
    OutcomeKind,
    Position,
    SymbolSpec,
    Tick,
)
from dtms.broker.rules import filling_candidates, in_freeze_band, level_violation, translate
from dtms.errors import BrokerError, BrokerUnavailableError, ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DEFAULT_MAGIC: Final = 1146375507  # "DTMS" as a big-endian 32-bit integer
# history_deals_get needs an upper date; before 2038 so no 32-bit time_t on the terminal side can overflow.
_HISTORY_END: Final = datetime(2037, 12, 31, tzinfo=UTC)
_HISTORY_PAD: Final = timedelta(days=1)  # server-time encodings differ by hours: pad, then filter (spec §1.3)
_EPS: Final = 1e-9


def _not_sent(
    retcode: int | None,
    handling: Handling,
    text: str,
    identifier: int | None,
    request: dict[str, Any] | None = None,
) -> Outcome:
    return Outcome(
        codes.KIND[handling], handling, retcode, f"not sent: {text}", False, identifier, request=request
    )


class MT5Broker:
    """The Broker contract over a MetaTrader5-like `mt5` object; `MT5Broker()` imports the real package.

    Args:
        mt5: the API object: the `MetaTrader5` module,
        an `mt5linux.MetaTrader5()` client or `dtms.sim.open(…)`.
        login, password, server, path: passed to `initialize()` when given.
        server_time_offset_s: broker server clock minus UTC, in seconds (spec/dtms-behaviour.md §2.5).
        magic: the magic number of every dtms order.

    Raises:
        BrokerUnavailableError: `mt5` is None and the MetaTrader5 package cannot be imported.
    """

    def __init__(
        self,
        mt5: Any = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        path: str | None = None,
        server_time_offset_s: int = 0,
        magic: int = DEFAULT_MAGIC,
    ) -> None:
        if mt5 is None:
            try:
                mt5 = importlib.import_module("MetaTrader5")
            except ImportError as exc:
                raise BrokerUnavailableError(
                    "the MetaTrader5 package is not installed (Windows only: pip install 'dtms[mt5]'); "
                    "on Linux pass an mt5linux client, in tests a dtms.sim terminal"
                ) from exc
        self._api = mt5
        self._login, self._password, self._server, self._path = login, password, server, path
        self.server_time_offset_s = server_time_offset_s
        self.magic = magic
        self._connected = False
        self._selected: set[str] = set()

    # --- connection and calls -------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """initialize() (and log in), then require Algo Trading on. Raises BrokerUnavailableError."""
        kwargs = {
            k: v
            for k, v in (("login", self._login), ("password", self._password), ("server", self._server))
            if v is not None
        }
        args = (self._path,) if self._path else ()
        if not self._call("initialize", *args, **kwargs):
            code, text = self._last_error()
            if code == codes.RES_E_AUTH_FAILED:
                raise BrokerUnavailableError(
                    f"login {self._login} on {self._server} failed: ({code}, {text})"
                )
            raise BrokerUnavailableError(f"cannot attach to the MetaTrader 5 terminal: ({code}, {text})")
        info = self._call("terminal_info")
        if info is None:
            raise BrokerUnavailableError(f"terminal_info() failed: {self._last_error()}")
        if not info.trade_allowed:
            self._call("shutdown")
            raise BrokerUnavailableError(
                "Algo Trading is disabled in the terminal: enable the AutoTrading button"
            )
        self._connected = True

    def disconnect(self) -> None:
        if self._connected:
            self._connected = False
            self._call("shutdown")

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            function = getattr(self._api, name)
            # Never hand an empty **kwargs to the C functions: order_send(request, **{}) fails with -2 (§1.1).
            return function(*args, **kwargs) if kwargs else function(*args)
        except Exception as exc:  # translated, never swallowed: see translate()
            raise translate(exc, f"{name}()") from exc

    def _last_error(self) -> tuple[int, str]:
        code, text = self._call("last_error")
        return int(code), str(text)

    def _read(self, name: str, *args: Any, empty_ok: bool = False, **kwargs: Any) -> Any:
        """A read that raises on failure; None with RES_S_OK is empty only where `empty_ok` (spec §1.2)."""
        if not self._connected:
            self.connect()
        result = self._call(name, *args, **kwargs)
        if result is None:
            code, text = self._last_error()
            if empty_ok and code == codes.RES_S_OK:
                return ()
            if code in codes.IPC_ERRORS:
                self._connected = False  # re-attach on the next call, never every cycle
                raise BrokerUnavailableError(f"{name}() failed: ({code}, {text})")
            raise BrokerError(f"{name}() failed: ({code}, {text})")
        return result

    def _select(self, symbol: str) -> None:
        if symbol not in self._selected:
            if not self._read("symbol_select", symbol, True):
                code, text = self._last_error()
                if code in codes.IPC_ERRORS:
                    self._connected = False
                    raise BrokerUnavailableError(f"symbol_select({symbol!r}) failed: ({code}, {text})")
                raise BrokerError(f"symbol {symbol!r} unknown to the terminal: ({code}, {text})")
            self._selected.add(symbol)

    # --- reads ----------------------------------------------------------------------------------------------
    def positions(self, symbol: str | None = None) -> list[Position]:
        raw = (
            self._read("positions_get", symbol=symbol, empty_ok=True)
            if symbol
            else self._read("positions_get", empty_ok=True)
        )
        return [convert.position(p, self.server_time_offset_s) for p in raw]

    def _find(self, identifier: int) -> Any:
        """The raw position with this identifier, or None; its ticket is resolved afresh (spec §5.1)."""
        for p in self._read("positions_get", ticket=identifier, empty_ok=True):
            if p.identifier == identifier:
                return p
        return next(
            (p for p in self._read("positions_get", empty_ok=True) if p.identifier == identifier), None
        )

    def position(self, identifier: int) -> Position | None:
        raw = self._find(identifier)
        return None if raw is None else convert.position(raw, self.server_time_offset_s)

    def tick(self, symbol: str) -> Tick:
        self._select(symbol)
        return convert.tick(symbol, self._read("symbol_info_tick", symbol), self.server_time_offset_s)

    def bars(self, symbol: str, timeframe: str, count: int) -> npt.NDArray[np.void]:
        code = codes.TIMEFRAMES.get(timeframe.upper())
        if code is None:
            raise ConfigError(f"unknown timeframe {timeframe!r}; use one of {', '.join(codes.TIMEFRAMES)}")
        self._select(symbol)
        rates: npt.NDArray[np.void] = self._read("copy_rates_from_pos", symbol, code, 0, count).copy()
        rates["time"] -= self.server_time_offset_s
        return rates

    def symbol(self, symbol: str) -> SymbolSpec:
        self._select(symbol)
        return convert.symbol(self._read("symbol_info", symbol))

    def account(self) -> Account:
        return convert.account(self._read("account_info"))

    def deals(
        self, identifier: int | None = None, *, since: datetime | None = None, magic: int | None = None
    ) -> list[Deal]:
        if identifier is not None:
            raw = self._read("history_deals_get", position=identifier, empty_ok=True)
        else:
            start = (since or datetime(2000, 1, 1, tzinfo=UTC)) + timedelta(seconds=self.server_time_offset_s)
            raw = self._read("history_deals_get", start - _HISTORY_PAD, _HISTORY_END, empty_ok=True)
        out = [d for d in (convert.deal(r, self.server_time_offset_s) for r in raw) if d is not None]
        return [
            d
            for d in out
            if (since is None or d.executed_at >= since) and (magic is None or d.magic == magic)
        ]

    # --- operations -----------------------------------------------------------------------------------------
    def modify_sl_tp(self, identifier: int, sl: float | None, tp: float | None) -> Outcome:
        return self._guard(identifier, lambda: self._modify(identifier, sl, tp))

    def close(self, identifier: int, volume: float | None = None, *, comment: str = "") -> Outcome:
        return self._guard(identifier, lambda: self._close(identifier, volume, comment))

    def open(
        self,
        symbol: str,
        direction: Direction,
        volume: float,
        *,
        sl: float | None = None,
        tp: float | None = None,
        magic: int | None = None,
        comment: str = "",
    ) -> Outcome:
        return self._guard(None, lambda: self._open(symbol, direction, volume, sl, tp, magic, comment))

    def _guard(self, identifier: int | None, operation: Callable[[], Outcome]) -> Outcome:
        """Operations return values: a read failing before anything was sent is a BACKOFF, not a raise."""
        try:
            return operation()
        except BrokerError as exc:
            return Outcome(OutcomeKind.DEFER, Handling.BACKOFF, None, f"not sent: {exc}", False, identifier)

    def _modify(self, identifier: int, sl: float | None, tp: float | None) -> Outcome:
        pos = self._find(identifier)
        if pos is None:
            return _not_sent(None, Handling.GONE, "position not found", identifier)
        spec, tk = self.symbol(pos.symbol), self.tick(pos.symbol)
        half = (spec.tick_size or spec.point) / 2
        new_sl = spec.round_price(sl) if sl else 0.0
        new_tp = spec.round_price(tp) if tp else 0.0
        request = requests.sltp(pos, new_sl, new_tp, self.magic)
        sl_changed, tp_changed = abs(new_sl - pos.sl) > half, abs(new_tp - pos.tp) > half
        if not sl_changed and not tp_changed:
            # Resending unchanged levels gives 10025 (spec §5.2): it is done already.
            return Outcome(
                OutcomeKind.DONE,
                Handling.OK,
                None,
                "not sent: no changes",
                False,
                identifier,
                request=request,
            )
        buy = pos.type == codes.POSITION_TYPE_BUY
        if in_freeze_band(spec, buy, float(pos.sl), float(pos.tp), tk.bid, tk.ask):
            return _not_sent(
                10029, Handling.DEFER, "current SL/TP inside the freeze level", identifier, request
            )
        violation = level_violation(
            spec, buy, new_sl if sl_changed else 0.0, new_tp if tp_changed else 0.0, tk.bid, tk.ask
        )
        if violation == 10029:
            return _not_sent(
                10029, Handling.DEFER, "requested level inside the freeze level", identifier, request
            )
        if violation == 10016:
            return _not_sent(
                10016, Handling.FIX, "level inside the stops level or on the wrong side", identifier, request
            )
        outcome = self._send(request, identifier)
        if outcome.retcode == codes.TRADE_RETCODE_NO_CHANGES:
            now = self._find(identifier)
            same = now is not None and abs(now.sl - new_sl) <= half and abs(now.tp - new_tp) <= half
            if not same:
                return _with(outcome, Handling.FIX, "10025 but the levels differ from the target")
        return self._gone_check(outcome, identifier)

    def _close(self, identifier: int, volume: float | None, comment: str) -> Outcome:
        pos = self._find(identifier)
        if pos is None:
            return _not_sent(None, Handling.GONE, "position not found", identifier)
        spec, tk = self.symbol(pos.symbol), self.tick(pos.symbol)
        vol = float(pos.volume) if volume is None else spec.floor_volume(volume)
        if vol > pos.volume + _EPS:
            return _not_sent(
                10038, Handling.FIX, f"volume {vol} exceeds the position's {pos.volume}", identifier
            )
        remainder = round(pos.volume - vol, 8)
        if vol < spec.volume_min - _EPS or _EPS < remainder < spec.volume_min - _EPS:
            return _not_sent(
                10014,
                Handling.FIX,
                f"close {vol} of {pos.volume} breaks volume_min {spec.volume_min}",
                identifier,
            )
        request = requests.close(pos, vol, spec, tk, self.magic, comment or f"dtms-c-{identifier}")
        return self._gone_check(self._send_filled(request, spec, identifier), identifier)

    def _open(
        self,
        symbol: str,
        direction: Direction,
        volume: float,
        sl: float | None,
        tp: float | None,
        magic: int | None,
        comment: str,
    ) -> Outcome:
        spec, tk, acct = self.symbol(symbol), self.tick(symbol), self.account()
        vol = spec.floor_volume(volume)
        if vol < spec.volume_min - _EPS:
            return _not_sent(10014, Handling.FIX, f"volume {volume} below volume_min {spec.volume_min}", None)
        buy = direction == "BUY"
        refused = {
            codes.SYMBOL_TRADE_MODE_DISABLED: (10017, Handling.HALT),
            codes.SYMBOL_TRADE_MODE_CLOSEONLY: (10044, Handling.REJECT),
            codes.SYMBOL_TRADE_MODE_LONGONLY: (None if buy else 10042, Handling.REJECT),
            codes.SYMBOL_TRADE_MODE_SHORTONLY: (10043 if buy else None, Handling.REJECT),
        }.get(spec.trade_mode)
        if refused and refused[0]:
            return _not_sent(refused[0], refused[1], f"symbol trade mode {spec.trade_mode}", None)
        netted = None
        if not acct.is_hedging:
            netted = next(iter(self._read("positions_get", symbol=symbol, empty_ok=True)), None)
            if netted is not None and (netted.type == codes.POSITION_TYPE_BUY) == buy:
                # A netting add takes SL/TP from the order and zeros delete them: carry the current (§5.4).
                sl = float(netted.sl) or None if sl is None else sl
                tp = float(netted.tp) or None if tp is None else tp
        new_sl = spec.round_price(sl) if sl else 0.0
        new_tp = spec.round_price(tp) if tp else 0.0
        request = requests.open_(
            symbol, buy, vol, new_sl, new_tp, spec, tk, self.magic if magic is None else magic, comment
        )
        if level_violation(spec, buy, new_sl, new_tp, tk.bid, tk.ask) == 10016:
            return _not_sent(
                10016, Handling.FIX, "SL/TP inside the stops level or on the wrong side", None, request
            )
        outcome = self._send_filled(request, spec, None)
        if outcome.kind is OutcomeKind.DONE:
            ident = int(netted.identifier) if netted is not None else outcome.order
            return _with(outcome, outcome.handling, outcome.text, identifier=ident)
        return outcome

    # --- sending --------------------------------------------------------------------------------------------
    def _send_filled(self, request: dict[str, Any], spec: SymbolSpec, identifier: int | None) -> Outcome:
        """Send with the best filling mode; after 10030 (invalid fill) try the next one once (spec §2)."""
        outcome = Outcome(OutcomeKind.REJECTED, Handling.FIX)
        for filling in filling_candidates(spec)[:2]:
            request["type_filling"] = filling
            outcome = self._send(dict(request), identifier)
            if outcome.retcode != codes.TRADE_RETCODE_INVALID_FILL:
                break
        return outcome

    def _send(self, request: dict[str, Any], identifier: int | None) -> Outcome:
        """order_send(request); once more as order_send(**request) after 'Unnamed arguments…' (§1.1)."""
        if not self._connected:
            self.connect()
        try:
            result = self._call("order_send", request)
            if result is None:
                error = self._last_error()
                if error[0] == codes.RES_E_INVALID_PARAMS and "unnamed" in error[1].lower():
                    result = self._call("order_send", **request)
            if result is None:
                error = self._last_error()
        except BrokerError as exc:
            # The request may have reached the server before the link broke: reconcile, never assume.
            self._connected = False
            return Outcome(
                OutcomeKind.UNKNOWN, Handling.UNKNOWN, None, str(exc), True, identifier, request=request
            )
        if result is None:
            handling = codes.classify_error(error[0])
            if error[0] in codes.IPC_ERRORS:
                self._connected = False
            sent = error[0] != codes.RES_E_INVALID_PARAMS
            return Outcome(
                codes.KIND[handling], handling, None, error[1], sent, identifier, error=error, request=request
            )
        handling = codes.classify(int(result.retcode), request["action"])
        return Outcome(
            codes.KIND[handling],
            handling,
            int(result.retcode),
            str(result.comment),
            True,
            identifier,
            int(result.order),
            int(result.deal),
            float(result.volume),
            float(result.price),
            request=request,
        )

    def _gone_check(self, outcome: Outcome, identifier: int) -> Outcome:
        """10013 on a position request means GONE when the position has vanished (spec §3)."""
        if outcome.retcode == 10013 and self._find(identifier) is None:
            return _with(outcome, Handling.GONE, outcome.text)
        return outcome


def _with(outcome: Outcome, handling: Handling, text: str, **changes: Any) -> Outcome:
    return replace(outcome, kind=codes.KIND[handling], handling=handling, text=text, **changes)


__all__ = ["DEFAULT_MAGIC", "MT5Broker"]
