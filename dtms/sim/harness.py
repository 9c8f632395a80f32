"""Harness methods of the simulated terminal (not part of MetaTrader5's API): time, faults, switches, logs."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from dtms.errors import ConfigError
from dtms.sim.book import Book
from dtms.sim.faults import make_rule
from dtms.sim.feed import Series
from dtms.sim.state import State
from dtms.sim.symbols import SymbolConfig

_STEP_MS = 60_000  # advance() walks in one-minute steps while positions are open, so stop-outs happen in time


def _replace(obj: Any, what: str, fields: dict[str, Any]) -> Any:
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(obj)})
    if unknown:
        raise ConfigError(f"{what}: unknown fields {unknown}")
    return dataclasses.replace(obj, **fields)


class Harness:
    """Test and demo controls; each is one transaction on the shared state, seen by every process."""

    _state: State
    _series: dict[str, Series]
    _tag: str
    _path: str | None

    def _tx(self) -> contextlib.AbstractContextManager[Book]:
        raise NotImplementedError

    def _utc_ms(self, book: Book) -> int:
        raise NotImplementedError

    @contextlib.contextmanager
    def _control(self) -> Iterator[Book]:
        with self._tx() as book:
            yield book

    # --- time -----------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The simulated time as an aware UTC datetime (server time minus the server offset)."""
        with self._control() as book:
            return datetime.fromtimestamp(self._utc_ms(book) / 1000, tz=UTC)

    def advance(self, seconds: float) -> None:
        """Let `seconds` of simulated time pass (either clock mode), firing SL/TP and stop-outs on the way."""
        if seconds < 0:
            raise ConfigError("advance: time only moves forward")
        remaining = round(seconds * 1000)
        with self._control() as book:
            while remaining > 0:
                end_ms = book.now_ms + remaining
                step = remaining if book.stop_out_impossible(end_ms) else min(remaining, _STEP_MS)
                book.clock["sim_ms"] += step
                book.touch("clock")
                remaining -= step
                book.now_ms = self._utc_ms(book) + book.server_offset_s * 1000
                book.catch_up()

    def advance_to(self, when: datetime) -> None:
        """Advance to an absolute UTC time (never backwards)."""
        self.advance(max(0.0, (when - self.now()).total_seconds()))

    # --- faults ---------------------------------------------------------------------------------------------
    def inject(
        self,
        function: str = "order_send",
        *,
        retcode: int | None = None,
        error: int | tuple[int, str] | None = None,
        count: int | None = 1,
        executed: bool = False,
        action: int | None = None,
        symbol: str | None = None,
        probability: float | None = None,
        seed: int = 0,
    ) -> int:
        """Make the next matching call(s) fail; returns the rule id.

        `retcode`: order_send/order_check answer with it (not executed); `error`: the call returns None/False
        with that last_error. `executed=True` makes an ambiguous fault: the request is carried out, then the
        answer is the retcode (e.g. 10012, 10031) or None + error (e.g. -10005). `count=None` keeps the rule
        until `clear_faults()`; `probability` with `seed` fires it at random, identically in every process.
        """
        with self._control() as book:
            rule = make_rule(
                book,
                function,
                retcode=retcode,
                error=error,
                count=count,
                executed=executed,
                action=action,
                symbol=symbol,
                probability=probability,
                seed=seed,
            )
            book.faults.append(rule)
            book.touch("faults")
            return int(rule["id"])

    def clear_faults(self) -> None:
        with self._control() as book:
            book.faults.clear()
            book.touch("faults")

    def faults(self) -> list[dict[str, Any]]:
        with self._control() as book:
            return [dict(rule) for rule in book.faults]

    # --- switches -------------------------------------------------------------------------------------------
    def set_connected(self, connected: bool) -> None:
        """Lose or regain the trade server: reads give None/-10004 (or stale data), trading 10031."""
        with self._control() as book:
            book.flags["connected"] = connected
            book.touch("flags")

    def set_trade_allowed(self, allowed: bool) -> None:
        """The terminal's Algo Trading button: off gives 10027 and terminal_info().trade_allowed False."""
        with self._control() as book:
            book.flags["trade_allowed"] = allowed
            book.touch("flags")

    def configure_symbol(self, symbol: str, **fields: Any) -> None:
        """Change symbol settings, e.g. stops_level, freeze_level, trade_mode, filling_mode, market=False."""
        if "digits" in fields or "name" in fields:
            raise ConfigError("configure_symbol: digits and name are fixed by the bars")
        with self._control() as book:
            cfg = book.symbols.get(symbol)
            if cfg is None:
                raise ConfigError(f"unknown symbol {symbol!r}")
            book.symbols[symbol] = _replace(cfg, "configure_symbol", fields)
            book.touch("symbols")

    def configure_account(self, **fields: Any) -> None:
        """Change account settings: fifo_close, limit_positions, hedge_prohibited, margin_so_so, leverage…"""
        with self._control() as book:
            book.account = _replace(book.account, "configure_account", fields)
            book.touch("account")

    def configure(self, **settings: Any) -> None:
        """Change terminal switches (dtms.sim.book.Settings), e.g. comment_limit, order_send_keywords_only."""
        with self._control() as book:
            book.settings = _replace(book.settings, "configure", settings)
            book.touch("settings")

    def change_ticket(self, identifier: int) -> int:
        """A service operation: give a position a new ticket, keeping its identifier (spec §5.1)."""
        with self._control() as book:
            pos = book.positions.get(identifier)
            if pos is None:
                raise ConfigError(f"no open position with identifier {identifier}")
            pos.ticket = book.ticket()
            book.put(pos)
            return pos.ticket

    def symbol_config(self, symbol: str) -> SymbolConfig:
        with self._control() as book:
            return dataclasses.replace(book.symbols[symbol])

    # --- logs -----------------------------------------------------------------------------------------------
    @property
    def tag(self) -> str:
        return self._tag

    def set_tag(self, tag: str) -> None:
        """Tag this API object's order_send log rows (e.g. a node name): "every request matches an intent"."""
        self._tag = tag

    def sent_log(self) -> list[dict[str, Any]]:
        """Every order_send any process made: seq, pid, tag, time_msc, request, retcode, error, result."""
        out = []
        for row in self._state.sent_log():
            row = dict(row)
            for key in ("request", "error", "result"):
                if row[key] is not None:
                    row[key] = json.loads(row[key])
            out.append(row)
        return out

    @property
    def path(self) -> str | None:
        return self._path

    def close(self) -> None:
        """Close this process's connection to the shared file (other processes are unaffected)."""
        self._state.close()


__all__ = ["Harness"]
