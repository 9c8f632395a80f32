"""Engine.tick(epoch): one monitoring cycle: fast checks, deep checks, transitions, rails and status."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from dtms.broker.base import Broker, Position, SymbolSpec, Tick
from dtms.config import Config
from dtms.engine import cadence, machine
from dtms.engine import rails as rl
from dtms.engine import signals as sg
from dtms.engine import wake as wk
from dtms.engine.execute import Context, Executor, market_closed_since
from dtms.engine.foreign import RAIL as FOREIGN_RAIL
from dtms.engine.foreign import ForeignWatch
from dtms.engine.guard import Guard
from dtms.engine.market import spread_points, symbol_key
from dtms.engine.stops import StopWatch
from dtms.engine.symbols import DEFAULT_TIMEFRAMES, SymbolData, check_timeframes
from dtms.engine.transitions import Transitions
from dtms.errors import BrokerError
from dtms.events import Event, EventKind, EventSink, Notifier
from dtms.gateway import Gateway
from dtms.models import Action, Direction, Trade, TradeState
from dtms.store import Store, TradeUpdate

log = logging.getLogger(__name__)

#: The close reason of a registered trade the broker never knew (no position seen, no deal at all).
NOT_FOUND = "not_found_at_broker"

DEAL_REASONS = {
    "sl": "sl",
    "tp": "tp",
    "so": "stop_out",
    "client": "client",
    "mobile": "client",
    "web": "client",
}


def _at(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class Engine:
    """The leader's work: every `tick` runs the checks that are due, from one trading clock `now()`.

    It is a `dtms.node.LeaderWork`: the Node calls `start(epoch)` when it begins leading, `tick(epoch)` once
    per loop interval, `stop()` when leading ends. Everything it needs to resume lives in the database.
    `timeframes` are the (fast, slow) bar timeframes, M5 and M15 by default; replay maps them onto coarser
    data.
    """

    def __init__(
        self,
        store: Store,
        broker: Broker,
        gateway: Gateway,
        config: Config,
        *,
        now: Callable[[], datetime],
        notifier: EventSink | None = None,
        wait: Callable[[float], object] = lambda s: None,
        timeframes: tuple[str, str] = DEFAULT_TIMEFRAMES,
        status: bool = True,
    ) -> None:
        """`status=False` skips the per-tick `engine.status` row (a replay, whose store no operator reads,
        takes `counters` at the end instead)."""
        self.store, self.broker, self.config, self.now = store, broker, config, now
        self._status = status
        self.timeframes = check_timeframes(timeframes)
        self.notifier: EventSink = notifier or Notifier(attempts=config.notify.hook_attempts)
        self.executor = Executor(broker, gateway, config, wait=wait)
        self.transitions = Transitions(store, self.executor, self.notifier, self._context)
        self.stops = StopWatch(store, gateway, config, self._emit)
        self.symbols: dict[str, SymbolData] = {}
        self._tick_no = 0
        self.guard = Guard(store, broker, config, self._emit)
        self.foreign = ForeignWatch(store, broker, self._emit)
        self._ticks: dict[str, Tick] = {}
        self._specs: dict[str, SymbolSpec] = {}
        self._counters = {"fast_checks": 0, "deep_checks": 0, "transitions": 0}
        self._started_at: datetime | None = None
        self._last_reconcile: datetime | None = None
        self._epoch: int | None = None  # the epoch being led: every event carries it
        self._staged: list[Event] | None = None  # a fast check's events, committed with its trade update

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self, epoch: int) -> None:
        """Connect, then finish or reconcile whatever the previous leader left in flight (spec §10)."""
        self._epoch = epoch
        self.broker.connect()
        now = self.now()
        self._started_at = now
        self.reconcile(epoch, now)
        self._emit(
            "engine_started", now, epoch=epoch, active_trades=self.store.count_trades(include_closed=False)
        )

    def stop(self) -> None:
        self._emit("engine_stopped", self.now())

    def reconcile(self, epoch: int, now: datetime) -> None:
        """Drive every pending transition and open action from the journal before any new decision."""
        self._epoch = epoch
        self._last_reconcile = now
        self._hold_if(self.foreign.scan_deals(epoch, now))  # before anything is driven, at start too
        for tr in self.store.pending_transitions():
            self.transitions.drive(epoch, tr["transition_id"], now)
        for trade in self.store.list_trades():
            self.transitions.retry_open_actions(epoch, trade, now)
        if self.config.reconcile.adopt_unknown:
            self._adopt(epoch, now)

    def _adopt(self, epoch: int, now: datetime) -> None:
        """Register broker positions dtms does not know (spec §10.3), never its own legs or known trades."""
        try:
            positions = self.broker.positions()
        except BrokerError as exc:
            log.warning("dtms: no adoption this pass, positions unavailable: %s", exc)
            return
        trades = self.store.list_trades(include_closed=True)
        known: set[int | None] = {t.identifier for t in trades}  # a reduced hedge has no leg, so None
        for t in trades:
            hedge = t.engine.get("hedge") or {}
            known |= {hedge.get("identifier")} | {r.get("identifier") for r in t.engine.get("readds") or []}
        for p in positions:
            if p.identifier in known or p.magic == self.config.execution.magic:
                continue
            d = 1 if p.direction == "BUY" else -1
            sl = p.sl if p.sl and d * (p.price_open - p.sl) > 0 else None  # a stop past entry gives no R
            tp = p.tp if p.tp and d * (p.tp - p.price_open) > 0 else None
            with self.store.fenced(epoch):  # the adoption and its event commit together
                trade = self.store.register_trade(
                    p.ticket,
                    p.symbol,
                    p.direction,
                    p.price_open,
                    p.volume,
                    sl=sl,
                    tp=tp,
                    owner=self.config.reconcile.adopt_owner,
                    magic=p.magic or None,
                    identifier=p.identifier,
                )
                self._publish(
                    self._event(
                        "external_change", now, identifier=trade.identifier, kind="adopted", symbol=p.symbol
                    )
                )

    # -- the cycle ------------------------------------------------------------------------------------

    def tick(self, epoch: int) -> None:
        self._epoch = epoch
        self._tick_no += 1
        self._ticks.clear()
        self._specs.clear()
        now = self.now()
        trades = self.store.list_trades()
        halted = bool(self.store.setting("trading.halted", False))
        if trades:
            try:
                snapshot: dict[int, Position] | None = {p.identifier: p for p in self.broker.positions()}
            except BrokerError as exc:  # unknown is not empty: nothing is closed or purged on it (B-FSM-6)
                log.warning("dtms: positions unavailable: %s", exc)
                snapshot = None
            self.guard.update(
                epoch, now, halted, None if snapshot is None else frozenset(snapshot), self.symbols
            )
            self._hold_if(self.foreign.tripped() if snapshot is None
                          else self.foreign.observe_positions(epoch, now, snapshot.values()))  # fmt: skip
            updates: dict[int, TradeUpdate] = {}
            staged: list[Event] = []
            for trade in trades:
                self._staged = []
                try:
                    update = self._trade(epoch, trade, now, snapshot)
                except BrokerError as exc:
                    log.warning("dtms: trade %d skipped this tick: %s", trade.identifier, exc)
                    continue
                finally:  # what it saw is reported even when the rest of its check could not run
                    staged += self._staged
                    self._staged = None
                if update is not None:
                    updates[trade.identifier] = update
            if updates or staged:
                with self.store.fenced(epoch):  # the fast checks' changes and their events: one commit
                    if updates:
                        self.store.update_trades(epoch, updates)
                    self._publish(*staged)
            interval = timedelta(seconds=self.config.reconcile.interval_s)
            if self._last_reconcile is None or now - self._last_reconcile >= interval:
                self.reconcile(epoch, now)
        if self._status:
            self._write_status(epoch, now, halted)

    @property
    def counters(self) -> dict[str, int]:
        """Fast checks, deep checks and transitions run since this engine was made."""
        return dict(self._counters)

    def _hold_if(self, foreign: bool) -> None:
        """The foreign-database rail on top of the guard's account rails: REDUCING, nothing risk-adding."""
        tripped = tuple(t for t in self.guard.tripped.get("account", ()) if t != FOREIGN_RAIL)
        if foreign:
            self.guard.account_state = rl.worse(self.guard.account_state, rl.TradingState.REDUCING)
            tripped = (*tripped, FOREIGN_RAIL)
        self.guard.tripped["account"] = tripped

    def next_due(self, now: datetime) -> datetime | None:
        """The earliest time from `now` at which a tick would change anything; None without open trades.

        A tick acts through a trade's fast check (deep checks, actions and retries run inside it), drives
        pending transitions on every tick, reconciles every `reconcile.interval_s` and samples the hourly
        equity baseline at the first tick of each UTC hour. Every other tick of a live loop only rewrites the
        status row, so a replay ticks at these times only and runs the very same cycle.
        """
        trades = self.store.list_trades()
        if not trades:
            return None
        dues: list[datetime | None] = []
        for trade in trades:
            sym = self.symbols.get(trade.symbol)
            last = _at(trade.engine.get("last_fast_at"))
            if trade.engine.get("pending_transition") is not None or sym is None or last is None:
                dues.append(None)
                continue
            volatility = sym.regime.volatility if sym.regime else None
            flat = bool(sym.regime and sym.regime.is_flat)
            dues.append(
                last + timedelta(seconds=cadence.fast_interval_s(trade.state, volatility, flat, self.config))
            )
        return cadence.next_due(now, dues, self._last_reconcile, self.config)

    def wake(self, now: datetime) -> wk.Wake:
        """The wake-up contract after a tick at `now` (`dtms.engine.wake`): what can make a later tick act."""
        halted = bool(self.store.setting("trading.halted", False))
        try:
            present: set[int] | None = {p.identifier for p in self.broker.positions()}
        except BrokerError:
            present = None
        trades = []
        waiting: dict[int, list[Action]] = {}
        for action in self.store.open_actions():
            waiting.setdefault(action.identifier, []).append(action)
        for trade in self.store.list_trades():
            sym = self.symbols.get(trade.symbol)
            stopped = halted or self.guard.trading_state(trade.symbol) is rl.TradingState.HALTED
            open_actions = waiting.get(trade.identifier, [])
            quote = self.executor.quote_at(trade.symbol) if open_actions else None
            closed = bool(open_actions) and all(market_closed_since(a, quote) for a in open_actions)
            trades.append(
                wk.trade_wake(
                    trade,
                    sym,
                    now,
                    self.config,
                    has_open_actions=bool(open_actions),
                    halted=stopped,
                    present=present is not None and trade.identifier in present,
                    market_closed=closed,
                )
            )
        news = [self.guard.news_change(s.key, now) for s in self.symbols.values()]
        return wk.Wake(
            now,
            tuple(trades),
            wk.earliest(news),
            self.guard.equity_band(),
            self._last_reconcile,
            halted,
            rails_clear=not self.guard.tripped.get("account"),
        )

    def fast_forward(
        self, epoch: int, last_fast_at: Mapping[int, datetime], last_reconcile: datetime | None
    ) -> None:
        """Record ticks a driver skipped because `wake` proved them idle: when each trade's fast check and the
        reconciliation last ran. Those ticks changed nothing else (that is what idle means)."""
        if last_fast_at:
            self.store.update_trades(epoch, {i: TradeUpdate({}, {"last_fast_at": at.isoformat()})
                                             for i, at in last_fast_at.items()})  # fmt: skip
        self._last_reconcile = last_reconcile

    def record_hour(self, epoch: int) -> tuple[float, float] | None:
        """What the first tick of a new UTC hour or day does when it is otherwise idle and no account rail is
        tripped: record the equity baselines (E_h, and B0 on a new day) now (`Guard.record_hour`). Returns
        the new equity band (`wake`'s); None when nothing was recorded (a driver then runs the tick)."""
        try:
            account = self.broker.account()
        except BrokerError:
            return None

        def open_ids() -> frozenset[int]:
            return frozenset(p.identifier for p in self.broker.positions())

        try:
            if not self.guard.record_hour(epoch, self.now(), account.balance, account.equity, open_ids):
                return None
        except BrokerError:
            return None
        return self.guard.equity_band()

    def _trade(
        self, epoch: int, trade: Trade, now: datetime, snapshot: dict[int, Position] | None
    ) -> TradeUpdate | None:
        eng = trade.engine
        pending = eng.get("pending_transition")
        if pending is not None:  # no new evaluation while a transition is unresolved (spec §5.1)
            if self.guard.trading_state(trade.symbol) is not rl.TradingState.HALTED:
                self.transitions.drive(epoch, int(pending), now)
            return None
        sym = self._symbol(trade.symbol)
        volatility = sym.regime.volatility if sym.regime else None
        flat = bool(sym.regime and sym.regime.is_flat)
        interval = cadence.fast_interval_s(trade.state, volatility, flat, self.config)
        if not cadence.fast_due(_at(eng.get("last_fast_at")), now, interval):
            return None
        return self._fast(epoch, trade, sym, now, snapshot)

    def _fast(
        self, epoch: int, trade: Trade, sym: SymbolData, now: datetime, snapshot: dict[int, Position] | None
    ) -> TradeUpdate | None:
        """The fast check (spec §6.3): broker truth, quote, bars, start conditions, timers, triggers."""
        self._counters["fast_checks"] += 1
        eng = trade.engine
        cols: dict[str, Any] = {}
        patch: dict[str, Any] = {"last_fast_at": now.isoformat()}
        if snapshot is None:
            return None  # positions unknown this tick: try again next tick, change nothing
        position = snapshot.get(trade.identifier)
        if position is None:
            return self._missing(epoch, trade, now, patch)
        if eng.get("missing_since"):
            patch["missing_since"] = None
        self._sync(epoch, trade, position, cols, now)
        sym.refresh(self.broker, now, self._tick_no)
        tick = self._tick(trade.symbol)
        spec = self._spec(trade.symbol)
        finished = sym.record_spread(spread_points(tick.bid, tick.ask, spec.point), now)
        if finished is not None:
            self.store.set_setting(f"spread.{trade.symbol}", sym.hourly_medians, epoch=epoch)
        direction = trade.direction
        close_price = tick.bid if direction is Direction.BUY else tick.ask
        r = trade.r
        if r is None and sym.ready:
            atr = sym.evaluate(direction, 0, False)
            if atr is not None and atr.atr_m15:
                r = atr.atr_m15 * self.config.actions.r_fallback_atr
                cols.update(r=r, r_source="atr")
        r_multiple = direction.sign * (close_price - trade.entry_price) / r if r else None
        patch["r_multiple"] = r_multiple
        patch["broker"] = {"volume": position.volume, "price_current": position.price_current,
                           "profit": position.profit, "sl": position.sl, "tp": position.tp}  # fmt: skip
        counter, flip = self._vwap_state(trade, sym, patch)
        self.transitions.retry_open_actions(epoch, trade, now)  # an SL restore runs before activation too
        just_activated = False
        if trade.armed:
            # Age on the trading clock, from the first fast check (a simulated or replayed terminal runs on
            # its own time; in production both clocks agree within one fast interval).
            first_seen = _at(eng.get("first_seen_at")) or now
            patch["first_seen_at"] = first_seen.isoformat()
            age = (now - first_seen).total_seconds()
            reason = cadence.activation(r_multiple, age, self.config)
            if reason is None:
                return TradeUpdate(cols, patch)
            cols.update(armed=0, activated_at=now, activation_reason=reason.value)
            patch["start_bars"] = [sym.m5.newest_final_time, sym.m15.newest_final_time]
            just_activated = True
            self._emit("monitoring_started", now, identifier=trade.identifier, symbol=trade.symbol,
                       direction=direction.value, reason=reason.value, r_multiple=r_multiple)  # fmt: skip
        view = self._view(trade, sym, patch.get("start_bars"))
        expired = machine.timer_forces_deep_check(view, now, self.config)
        event = None
        if sym.thresholds is not None:
            event = cadence.event_trigger(
                sym.slope(),
                sym.thresholds.vwap,
                counter,
                (tick.bid + tick.ask) / 2,
                eng.get("mid_at_last_deep"),
                self.config,
            )
        due = cadence.deep_due(_at(eng.get("last_deep_at")), now, self.config, just_activated=just_activated,
                               timer_expired=expired, event=event)  # fmt: skip
        state = self.guard.trading_state(trade.symbol)
        stale = rl.data_stale(sym.m5.newest_final_time, now, self.config, ready=sym.ready,
                              timeframe_s=sym.m5.timeframe_s)  # fmt: skip
        if due is None:
            return TradeUpdate(cols, patch)
        if state is rl.TradingState.HALTED or stale:
            patch["deep_skipped"] = "halted" if state is rl.TradingState.HALTED else "data_stale"
            return TradeUpdate(cols, patch)
        return self._deep(epoch, trade, sym, now, tick, view, counter, flip, cols, patch)

    def _deep(
        self,
        epoch: int,
        trade: Trade,
        sym: SymbolData,
        now: datetime,
        tick: Tick,
        view: machine.TradeView,
        counter: int,
        flip: bool,
        cols: dict[str, Any],
        patch: dict[str, Any],
    ) -> TradeUpdate | None:
        """The deep check: six signals, score, one state-machine step, its actions (spec §4, §5)."""
        evaluation = sym.evaluate(trade.direction, counter, flip)
        if evaluation is None:
            patch["deep_skipped"] = "data_not_ready"
            return TradeUpdate(cols, patch)
        self._counters["deep_checks"] += 1
        warnings = sg.update_warnings(self._warnings(trade), sg.warning_hits(evaluation, self.config), now,
                                      self.config)  # fmt: skip
        patch.update(
            last_deep_at=now.isoformat(), mid_at_last_deep=(tick.bid + tick.ask) / 2, deep_skipped=None,
            warnings={k: {"count": w.count, "expires_at": w.expires_at.isoformat() if w.expires_at else None}
                      for k, w in warnings.items()},
            evaluation=_summary(evaluation),
        )  # fmt: skip
        cols["score"] = round(evaluation.score, 6)
        step = machine.step(view, evaluation, now, self.config)
        if not (step.changed and (step.new_state is not step.from_state or step.actions)):
            return TradeUpdate(cols, patch)  # committed with the tick's other updates, in one transaction
        # Persist the check before acting: the transition then reads the row the deep check wrote.
        self.store.update_trades(epoch, {trade.identifier: TradeUpdate(cols, patch)})
        self._counters["transitions"] += 1
        fresh = self.store.get_trade(trade.identifier)
        if fresh is not None and fresh.is_open:
            self.transitions.begin(epoch, fresh, step, now, evaluation.score)
        return None

    # -- pieces ---------------------------------------------------------------------------------------

    def _missing(self, epoch: int, trade: Trade, now: datetime, patch: dict[str, Any]) -> TradeUpdate | None:
        """Not in the bulk list: closed only on a per-identifier answer, twice, 10 s apart, or a closing
        deal."""
        position = self.broker.position(trade.identifier)  # raises on an unknown answer: nothing changes
        if position is not None:
            return TradeUpdate({}, patch)
        try:
            history: list[Any] | None = self.broker.deals(trade.identifier)
        except BrokerError as exc:  # no history evidence this time: only the two-look confirmation can close
            log.warning("dtms: deal history of %d unavailable: %s", trade.identifier, exc)
            history = None
        deals = [d for d in history or [] if d.entry in ("out", "out_by")]
        first = _at(trade.engine.get("missing_since"))
        confirmed = (
            first is not None and (now - first).total_seconds() >= self.config.reconcile.missing_interval_s
        )
        if not deals and not confirmed:
            patch["missing_since"] = (first or now).isoformat()
            return TradeUpdate({}, patch)
        reason = DEAL_REASONS.get(deals[-1].reason, "unknown") if deals else "unknown"
        if deals and deals[-1].comment.startswith("dtms-"):
            reason = f"dtms:{deals[-1].comment}"
        # Registered, but never seen at the broker and without a single deal: a wrong ticket, another account.
        unknown = history == [] and trade.engine.get("broker") is None
        with self.store.fenced(epoch):  # the exit and its event commit together
            self.store.update_trades(epoch, {trade.identifier: TradeUpdate({}, {**patch, "exit": {
                "reason": reason, "price": deals[-1].price if deals else None,
                "profit": sum(d.profit for d in deals)}})})  # fmt: skip
            fresh = self.store.get_trade(trade.identifier)
            if fresh is None or not fresh.is_open:  # closed meanwhile (a follower unregistered it)
                return None
            self._publish(
                self._event("alert", now, identifier=trade.identifier, kind=NOT_FOUND, symbol=trade.symbol)
                if unknown
                else self._event(
                    "external_change", now, identifier=trade.identifier, kind="close", deal_reason=reason
                )
            )
        cause = NOT_FOUND if unknown else f"external_close:{reason}"
        step = replace(machine.external_close(self._view(fresh)), reason=cause)
        self.transitions.begin(epoch, fresh, step, now, fresh.score)
        return None

    def _sync(
        self, epoch: int, trade: Trade, position: Position, cols: dict[str, Any], now: datetime
    ) -> None:
        """Broker truth wins for volume, TP and ticket; an SL someone else moved is handled by `StopWatch`
        (kept, or dtms's own sent back); the initial SL and R never change (spec §8.4)."""
        eps = 1e-9
        if position.volume < trade.volume - eps:
            cols.update(
                volume=position.volume, closed_volume=max(0.0, trade.initial_volume - position.volume)
            )
            self._emit("external_change", now, identifier=trade.identifier, kind="partial_close",
                       volume=position.volume, previous=trade.volume)  # fmt: skip
        elif position.volume > trade.volume + eps:
            cols.update(
                volume=position.volume, initial_volume=trade.initial_volume + position.volume - trade.volume
            )
        if position.sl != trade.sl:
            spec = self._spec(trade.symbol)
            if self.stops.check(epoch, trade, position, (spec.tick_size or spec.point) / 2, now):
                cols["sl"] = position.sl
        if position.tp != trade.tp:
            cols["tp"] = position.tp
        if position.ticket != trade.ticket:
            cols["ticket"] = position.ticket

    def _vwap_state(self, trade: Trade, sym: SymbolData, patch: dict[str, Any]) -> tuple[int, bool]:
        eng = trade.engine
        counter = int(eng.get("vwap_cross_counter", 0))
        flip = bool(eng.get("vwap_flip_active", False))
        last = eng.get("last_cross_bar")
        if last is None:  # first sight: count the bars that close from now on, not the session's history
            patch["last_cross_bar"] = sym.m5.newest_final_time
            patch.update(vwap_cross_counter=counter, vwap_flip_active=flip)
            return counter, flip
        bars = sym.new_final_m5(last)
        for row in bars:
            counter = sg.update_cross_counter(
                counter, float(row["close"]), sym.vwap.series.get(int(row["time"])), trade.direction
            )
        if len(bars):
            patch["last_cross_bar"] = int(bars["time"][-1])
        if sym.thresholds is not None:
            flip = sg.update_flip_flag(
                flip, sym.slope(), sym.thresholds.vwap, counter, trade.direction, self.config
            )
        patch.update(vwap_cross_counter=counter, vwap_flip_active=flip)
        return counter, flip

    def _view(
        self, trade: Trade, sym: SymbolData | None = None, start_bars: list[int | None] | None = None
    ) -> machine.TradeView:
        """What the state machine reads; `start_bars` are the [fast, slow] bars newest when monitoring started
        (this check's, when it just started)."""
        eng = trade.engine
        fast_bar, slow_bar = start_bars or eng.get("start_bars") or (None, None)
        since = None
        if sym is not None and fast_bar is not None:
            since = sym.fast_bars_after(fast_bar)
        return machine.TradeView(
            state=trade.state, direction=trade.direction, state_entered_at=trade.state_at,
            flat_timer_started_at=_at(eng.get("flat_timer_started_at")),
            recovery_timer_started_at=_at(eng.get("recovery_timer_started_at")),
            last_trail_bar_time=eng.get("last_trail_bar_time"),
            slow_bar_at_start=slow_bar, fast_bars_since_start=since,
        )  # fmt: skip

    @staticmethod
    def _warnings(trade: Trade) -> dict[str, sg.WarningCounter]:
        raw = trade.engine.get("warnings") or {}
        return {k: sg.WarningCounter(int(v["count"]), _at(v.get("expires_at"))) for k, v in raw.items()}

    def _symbol(self, symbol: str) -> SymbolData:
        data = self.symbols.get(symbol)
        if data is None:
            sc = self.config.symbols
            key, matched = symbol_key(symbol, sc.vwap_base.keys(), sc.aliases, sc.suffix_pattern)
            if not matched:
                log.warning("dtms: %s has no per-symbol settings; using the defaults", symbol)
            data = self.symbols[symbol] = SymbolData(symbol, key, self.config, self.timeframes)
            data.hourly_medians = list(self.store.setting(f"spread.{symbol}", []))
        return data

    def _tick(self, symbol: str) -> Tick:
        tick = self._ticks.get(symbol)
        if tick is None:
            tick = self._ticks[symbol] = self.broker.tick(symbol)
        return tick

    def _context(self, trade: Trade, target: TradeState | None) -> Context:
        sym = self.symbols.get(trade.symbol)
        swing_low = swing_high = atr = atr_fast = None
        if sym is not None and sym.ready:
            ev = sym.evaluate(trade.direction, int(trade.engine.get("vwap_cross_counter", 0)),
                              bool(trade.engine.get("vwap_flip_active", False)))  # fmt: skip
            if ev is not None:
                atr, atr_fast = ev.atr_m15, ev.atr_m5
                levels = ev.signal(sg.SignalName.STRUCTURE).levels or {}
                swing_low, swing_high = levels.get("swl"), levels.get("sh")
        return Context(
            now=self.now(),
            trading_state=self.guard.trading_state(trade.symbol),
            hedging_account=self.guard.hedging,
            atr_m15=atr,
            atr_m5=atr_fast,
            target_state=target,
            swing_low=swing_low,
            swing_high=swing_high,
        )

    # -- status ---------------------------------------------------------------------------------------

    def _write_status(self, epoch: int, now: datetime, halted: bool) -> None:
        status = {
            "epoch": epoch,
            "started_at": self._started_at.isoformat() if self._started_at else None,
            "tick_at": now.isoformat(),
            "ticks": self._tick_no,
            "halted": halted,
            "trading_state": {
                "account": self.guard.account_state.value,
                **{s: self.guard.trading_state(s).value for s in self.symbols},
            },
            "tripped": {k: list(v) for k, v in self.guard.tripped.items()},
            "counters": dict(self._counters),
            "data_health": {s: d.health() for s, d in self.symbols.items()},
            "hedging_account": self.guard.hedging,
        }
        self.store.set_setting("engine.status", status, epoch=epoch)

    def _spec(self, symbol: str) -> SymbolSpec:
        """The symbol's specification, read once per tick."""
        return self._specs.get(symbol) or self._specs.setdefault(symbol, self.broker.symbol(symbol))

    def _event(self, kind: EventKind, now: datetime, /, **fields: Any) -> Event:
        return Event(kind, now, fields, epoch=self._epoch)

    def _publish(self, *events: Event) -> None:
        """Hand events to the sink now (an outbox writes them in the transaction open around the call)."""
        for event in events:
            self.notifier.emit(event)

    def _emit(self, kind: EventKind, now: datetime, /, **fields: Any) -> None:
        """Report an event: during a fast check it waits for the trade's update and commits with it."""
        event = self._event(kind, now, **fields)
        if self._staged is not None:
            self._staged.append(event)
        else:
            self._publish(event)


def _summary(e: sg.Evaluation) -> dict[str, Any]:
    return {
        "score": round(e.score, 4),
        "confluence": e.confluence.value,
        "confluence_ratio": round(e.confluence_ratio, 4),
        "analysis": e.analysis,
        "signals": {
            s.name.value: {"raw": s.raw, "weight": round(e.weights[s.name], 4), "reason": s.reason}
            for s in e.signals
        },
        "regime": {
            "session": e.regime.session.value,
            "volatility": e.regime.volatility.value,
            "structure": e.regime.structure.value,
        },
        "thresholds": {"vwap": e.thresholds.vwap, "rsi": e.thresholds.rsi},
        "vwap_flip_active": e.vwap_flip_active,
        "atr_m15": e.atr_m15,
        "bar_time": e.bar_time,
    }


__all__ = ["Engine"]
