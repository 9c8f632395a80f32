"""Guard: the safety rails as state — account and symbol trading states, what tripped, the rail baselines."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from dtms.broker.base import Broker
from dtms.config import Config
from dtms.engine import rails as rl
from dtms.engine import wake as wk
from dtms.engine.symbols import SymbolData
from dtms.errors import BrokerError, DataError
from dtms.store import Store

log = logging.getLogger(__name__)


def _at(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class Guard:
    """Evaluates the rails once per tick (spec §7) and answers the trading state of any symbol."""

    def __init__(self, store: Store, broker: Broker, config: Config, emit: Callable[..., None]) -> None:
        self.store, self.broker, self.config, self._emit = store, broker, config, emit
        self.hedging = True
        self.account_state = rl.TradingState.ACTIVE
        self._symbol_states: dict[str, rl.TradingState] = {}
        self.tripped: dict[str, tuple[str, ...]] = {}
        self._baseline: dict[str, Any] | None = None
        self._stops_cache: tuple[tuple[Any, ...], bool] | None = None
        self._calendar: tuple[float, tuple[rl.NewsEvent, ...]] | None = None
        self._equity: float | None = None
        self._unsaved = False  # the baseline changed since it was last written (`record_hour`)

    def trading_state(self, symbol: str) -> rl.TradingState:
        """The worse of the account's and the symbol's trading state."""
        return rl.worse(self.account_state, self._symbol_states.get(symbol, rl.TradingState.ACTIVE))

    def update(
        self,
        epoch: int,
        now: datetime,
        halted: bool,
        open_ids: frozenset[int] | None,
        symbols: Mapping[str, SymbolData],
    ) -> None:
        """Daily and hourly loss, consecutive stops (account); news and spread (per symbol) (spec §7)."""
        rails: dict[str, bool] = {}
        try:
            account = self.broker.account()
        except BrokerError:
            account = None
        if account is not None:
            hedging = self.config.broker.hedging
            self.hedging = account.is_hedging if hedging == "auto" else bool(hedging)
            day, hour = rl.day_start(now).isoformat(), rl.hour_start(now).isoformat()
            if self._baseline is None:  # B0 and E_h survive a failover: the new leader reads them back
                self._baseline = dict(self.store.setting("rails.baseline") or {})
            base = self._baseline
            if base.get("day") != day or base.get("hour") != hour:
                if base.get("day") != day:
                    base.update(day=day, b0=account.balance)
                base.update(hour=hour, equity_hour=account.equity)
                self._unsaved = True
            if self._unsaved:
                self.store.set_setting("rails.baseline", base, epoch=epoch)
                self._unsaved = False
            self._equity = account.equity
            rails["daily_loss"] = rl.daily_loss_tripped(base["b0"], account.equity, self.config)
            rails["hourly_loss"] = rl.hourly_loss_tripped(
                base["equity_hour"], account.equity, base["b0"], self.config
            )
            rails["consecutive_stops"] = self._consecutive_stops(now, open_ids)
        previous = self.account_state
        self.account_state = rl.evaluate(rails, {}, halted=halted).account
        if self.account_state is not previous:
            self._emit("rail_changed", now, scope="account", state=self.account_state.value,
                       tripped=[k for k, v in rails.items() if v])  # fmt: skip
        events = self._news()
        for symbol, data in symbols.items():
            sym_rails = {"spread_spike": bool(data.spread_samples) and rl.spread_spike(
                data.spread_samples[-1], data.hourly_medians, self.config)}  # fmt: skip
            if events:
                currencies = rl.symbol_currencies(data.key, self.config)
                sym_rails["news"] = rl.news_blackout(events, currencies, now, self.config) is not None
            verdict = rl.evaluate({}, sym_rails)
            self._symbol_states[symbol] = verdict.symbol
            self.tripped[symbol] = verdict.tripped
        self.tripped["account"] = tuple(k for k, v in rails.items() if v)

    def record_hour(
        self, epoch: int, now: datetime, balance: float, equity: float, open_ids: Callable[[], frozenset[int]]
    ) -> bool:
        """The baselines `update` records at the first tick of a UTC hour or day, for a tick that does
        nothing else: no account rail was tripped (see `Wake.rails_clear`) and the new baselines trip none.
        A new day's B0 is the balance, so a floating loss can trip the daily rail; its stops count from
        none, which the deal history confirms (`open_ids`: the open positions' identifiers, asked for on a
        new day only). False, and nothing recorded, otherwise (the driver then runs the tick).

        A driver that skips idle ticks (the replay) calls it once per hour: the baseline is kept here and
        written to the store with the next tick's `update`, since only the last of them is ever read back.
        """
        base = self._baseline
        if base is None or self.tripped.get("account"):
            return False
        day, hour = rl.day_start(now).isoformat(), rl.hour_start(now).isoformat()
        b0 = base.get("b0") if base.get("day") == day else balance
        if b0 is None or rl.daily_loss_tripped(b0, equity, self.config):
            return False
        if rl.hourly_loss_tripped(equity, equity, b0, self.config):
            return False
        if base.get("day") != day:
            if self._consecutive_stops(now, open_ids()):
                return False
            base.update(day=day, b0=balance)
        if base.get("hour") != hour:
            base.update(hour=hour, equity_hour=equity)
            self._unsaved = True
        self._equity = equity
        return True

    def day_baseline(self) -> tuple[datetime | None, float | None]:
        """The UTC day whose B0 is held, and that B0 (None, None before the first baseline)."""
        base = self._baseline or {}
        day, b0 = base.get("day"), base.get("b0")
        return (None if day is None else datetime.fromisoformat(day)), (None if b0 is None else float(b0))

    def equity_band(self) -> tuple[float, float]:
        """Equity strictly inside which the loss rails keep the verdict of the last tick (the wake
        contract)."""
        if self._equity is None or self._baseline is None:
            return float("-inf"), float("inf")
        return wk.equity_band(
            self._baseline.get("b0"), self._baseline.get("equity_hour"), self._equity, self.config
        )

    def news_change(self, key: str, now: datetime) -> datetime | None:
        """The next time a news blackout for symbol key `key` starts or ends."""
        events = self._news()
        if not events:
            return None
        return wk.news_times(events, rl.symbol_currencies(key, self.config), now, self.config)

    def _consecutive_stops(self, now: datetime, open_ids: frozenset[int] | None) -> bool:
        """Recomputed from today's deal history only when a position closed (the open set changed), the UTC
        day turned or the operator reset the rail: reading the day's deals on every tick costs the most."""
        reset_at = self.store.setting("rails.reset_at")
        key = (rl.day_start(now), open_ids, reset_at)
        if open_ids is not None and self._stops_cache is not None and self._stops_cache[0] == key:
            return self._stops_cache[1]
        try:
            deals = self.broker.deals(since=rl.day_start(now))
        except BrokerError:
            return False
        closed = [rl.ClosedPosition(d.executed_at, d.reason == "sl", d.profit)
                  for d in deals if d.entry in ("out", "out_by")]  # fmt: skip
        tripped = rl.consecutive_stops_tripped(closed, now, self.config, _at(reset_at))
        self._stops_cache = (key, tripped)
        return tripped

    def _news(self) -> tuple[rl.NewsEvent, ...]:
        path = self.config.rails.news.calendar_path
        if path is None:
            return ()
        try:
            mtime = Path(path).stat().st_mtime
        except OSError:
            return ()
        if self._calendar is None or self._calendar[0] != mtime:
            try:
                self._calendar = (mtime, rl.parse_calendar(Path(path).read_text()))
            except (OSError, DataError) as exc:
                log.warning("dtms: news calendar %s unusable, keeping the last good copy: %s", path, exc)
                return self._calendar[1] if self._calendar else ()
        return self._calendar[1]


__all__ = ["Guard"]
