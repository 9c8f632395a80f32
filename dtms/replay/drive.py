"""The managed run: the production engine over the simulated terminal, on the live loop's tick grid.

Both modes walk the same ticks a live loop would run (`loop.tick_s` from the start, where `Engine.next_due`
says a tick can change anything). The exact mode runs every one of them. The event mode (the default) runs
only the ticks at which something can happen, from the engine's wake-up contract (`Engine.wake`) and the
data: a bar becoming final, a time the engine named, a price band left, an SL or TP filled. Every tick in
between is idle by that contract, so it is only recorded (`Engine.fast_forward`): the two modes give the
same report byte for byte, and the equivalence tests hold the event mode to it.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

import dtms
from dtms.broker import MT5Broker
from dtms.broker.base import Position, SymbolSpec
from dtms.engine.cycle import Engine
from dtms.engine.symbols import timeframe_s
from dtms.engine.wake import MARGIN, Band, Side, Wake
from dtms.gateway import Gateway, SoleLeadership
from dtms.models import Holder
from dtms.replay.inputs import _LEG_ACTIONS, _PROGRESS_STEPS, REPLAY_MAGIC, Entry
from dtms.replay.results import trade_result, vwap_slopes
from dtms.replay.rig import EventCounter, Opened, Plan, SimClock, on_grid, open_entry, open_terminal, utc
from dtms.report import TradeResult
from dtms.sim.feed import Series

_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000


def _ms(at: datetime | None) -> int | None:
    return None if at is None else round(at.timestamp() * 1000)


def bar_finals(plan: Plan) -> npt.NDArray[np.float64]:
    """UTC ms at which each fast and slow bar of the data becomes final for the engine (close + delay)."""
    times = plan.rates["time"].astype(np.int64)
    delay = plan.config.data.partial_bar_delay_s
    out = []
    for name in (plan.fast, plan.slow):
        tf = timeframe_s(name)
        opens = (
            np.unique((times - 3 * 86400) // tf * tf + 3 * 86400)
            if name == "W1"
            else np.unique(times // tf * tf)
        )
        out.append((opens - plan.offset + tf + delay) * 1000.0)
    return np.unique(np.concatenate(out))


class _Idle:
    """After a real tick: until when the ticks of the live grid are idle, and the lattice they walk.

    Times here are engine (terminal) ms; a replay tick at driver time `c` runs at engine time `c + drift`
    (an action that waited for the terminal moved its clock on). `until` is the earliest moment anything can
    act: a time the engine named, a bar becoming final, an SL or TP fill, or the price path leaving a band
    (each band edge moved one point inwards: quotes are the path rounded to the symbol's digits). Every tick
    before it is idle; the first tick at or after it runs, whether or not it then finds work.
    """

    def __init__(
        self,
        wake: Wake,
        drift: int,
        plan: Plan,
        series: Series,
        finals: npt.NDArray[np.float64],
        positions: Sequence[Position],
        balance: float,
        tick: tuple[float, float],
        point: float,
        baseline: tuple[int | None, float | None, float] = (None, None, 0.0),
    ) -> None:
        self.drift, self.plan, self.series = drift, plan, series
        # The UTC day (ms) whose B0 the engine holds, that B0, and the account balance (a new day's B0).
        self.baseline = baseline
        self.off = plan.offset * 1000
        self.last = {t.identifier: _ms(t.last_fast_at) for t in wake.trades}
        self.interval = {t.identifier: round(t.interval_s * 1000) for t in wake.trades}
        self.changed: dict[int, int] = {}
        self.dirty = False
        # A pending transition makes every grid tick a tick (`Engine.next_due`); while it waits for a closed
        # market those ticks only find it waiting, and that trade runs no fast check.
        self.pending = {t.identifier for t in wake.trades if t.forced}
        self.reconcile = _ms(wake.last_reconcile)
        self.reconcile_ms = round(plan.config.reconcile.interval_s * 1000)
        now = _ms(wake.now) or 0
        self.prev = now
        times = [_ms(t.at) for t in wake.trades] + [_ms(wake.at)]
        # The first bar to become final after each trade's last fast check: that check finds new bars.
        for t in wake.trades:  # (a pending trade runs no fast check: its bars wait for the transition)
            last = self.last[t.identifier]
            seen = now if last is None or t.forced else last
            k = int(np.searchsorted(finals, seen, side="right"))
            if k < len(finals):
                times.append(int(np.floor(finals[k])))
        if any(t.market_closed for t in wake.trades):  # the market quotes again at the next bar's open
            k = series.index(now + self.off) + 1
            times.append(int(series.t_ms[k]) - self.off if k < series.n else plan.end_ms + 1)
        self.until = min([x for x in times if x is not None], default=plan.end_ms + 1)
        for p in positions:  # the terminal fills SL and TP on its own: the next tick sees the position gone
            buy = p.direction == "BUY"
            for level, below in ((p.sl, buy), (p.tp, not buy)):
                if level:
                    self._exit(now, level, below=below, ask=not buy)
        bands = [b for t in wake.trades for b in t.bands]
        k0, k1 = max(0, series.index(now + self.off)), max(0, series.index(self.until + self.off))
        spreads = series.spread[k0 : max(k0, k1) + 1]
        self.spreads = s_min, s_max = float(spreads.min()), float(spreads.max())
        self.point = point
        for b in bands:
            self._band(b, now)
        # The equity band last: a new hour's baseline replaces it (`rebase`), the rest of `until` stays.
        self.until_trades = self.until
        self.account = (positions, balance, tick)
        self.clear = wake.rails_clear and bool(positions)
        if positions:
            self._band(_equity_band(wake.equity, positions, balance, tick, s_min, s_max), now)
        self.equity_left = self.until < self.until_trades  # the price leaves this hour's equity band first
        self.tick = grid = round(plan.config.loop.tick_s * 1000)
        origin = plan.start_ms
        points = [
            *(x for x in self.last.values() if x is not None),
            self.reconcile or origin,
            origin - origin % _HOUR_MS,
        ]
        # Every tick on the grid and every cadence a whole number of grid steps: the ticks up to a time can
        # be skipped in one step (`jump`), not one by one.
        self.regular = (
            drift == 0
            and all((x - origin) % grid == 0 for x in points)
            and all(v % grid == 0 for v in (*self.interval.values(), self.reconcile_ms, _HOUR_MS))
        )

    def _band(self, b: Band, now: int) -> None:
        """Bring `until` forward to when the price first leaves band `b` (from `now` or the band's start)."""
        start = max(now, _ms(b.since) or now)
        if b.until is not None and start >= (_ms(b.until) or 0):
            return
        lo, hi, ask = b.lo, b.hi, b.side is Side.ASK
        if start > now and start < self.until:
            # The band starts later (a cooldown ends): the price may have left it before then, and while the
            # market is closed no path crosses anything. The first check from `start` acts on the quote then.
            bid, ask_price, _ = self.series.quote(start + self.off)
            price = bid if b.side is Side.BID else ask_price if ask else (bid + ask_price) / 2
            if not lo + self.point < price < hi - self.point:
                self.until = start
                return
        if b.side is Side.MID:  # mid = bid + spread / 2, for every spread of the bars in between
            lo, hi = lo - self.spreads[0] / 2, hi - self.spreads[1] / 2
        if not lo + self.point < hi - self.point:
            self.until = min(self.until, start)
            return
        if lo > float("-inf"):
            self._exit(start, lo + self.point, below=True, ask=ask)
        if hi < float("inf"):
            self._exit(start, hi - self.point, below=False, ask=ask)

    def new_hour(self, c: int) -> bool:
        """The idle tick at driver time `c` is the first of a new UTC hour (it records the baseline)."""
        return (c + self.drift) // _HOUR_MS != self.prev // _HOUR_MS

    def rebase(self, c: int, equity: tuple[float, float], day: tuple[int | None, float | None]) -> None:
        """The hourly baseline was recorded at driver time `c`: the loss rails' band is new from there on."""
        at = c + self.drift
        positions, balance, tick = self.account
        self.until = self.until_trades
        s_min, s_max = self.spreads
        self._band(_equity_band(equity, positions, balance, tick, s_min, s_max), at)
        self.equity_left = self.until < self.until_trades
        self.baseline = (*day, self.baseline[2])

    def _exit(self, start: int, level: float, *, below: bool, ask: bool) -> None:
        """Bring `until` forward to when the path (from `start`) first reaches `level`."""
        if start >= self.until:
            return
        hit = self.series.first_cross(start + self.off, self.until + self.off, level, below=below, ask=ask)
        if hit is not None:
            self.until = min(self.until, hit[0] - self.off)

    def idle(self, c: int) -> bool:
        """Whether the tick at driver time `c` is idle: before `until`, and in the hour of the previous tick,
        or the first of a new UTC hour or day while no account rail is tripped (that tick only records the
        baselines: the driver has the engine do it, `Engine.record_hour`, then `rebase`s; when the new
        baselines would trip a rail the engine refuses and the tick runs)."""
        at = c + self.drift
        if at >= self.until:
            return False
        return at // _HOUR_MS == self.prev // _HOUR_MS or self.clear

    def jump(self, c: int, limit: int | None) -> int | None:
        """Skip in one step every idle tick from driver time `c` (the next tick) to the first that may act,
        stopping before `limit` (an entry); returns the next tick's due time, or None when `c` itself must be
        taken on its own (not idle, or an irregular grid)."""
        at = c + self.drift
        if not self.regular or not self.idle(c):
            return None
        hour = (self.prev // _HOUR_MS + 1) * _HOUR_MS
        end = min(self.until, hour)
        if self.clear and hour < self.until_trades and not (self.equity_left and self.until <= hour):
            # The band of this hour holds to its end: the hours after it whose records change nothing are
            # skipped too, up to the one that must be recorded (`_hours_clear`).
            cap = None if limit is None else (limit + self.drift) // _HOUR_MS * _HOUR_MS
            end = max(end, self._hours_clear(hour, cap))
            if end > hour:
                self.until = self.until_trades  # the new hour's band replaces this one's
        if limit is not None:
            end = min(end, limit + self.drift)
        if end <= at:
            return None
        for i, last in self.last.items():  # every point of each cadence before `end` was a skipped tick
            iv = self.interval[i]
            if last is not None and last + iv < end and i not in self.pending:
                self.last[i] = self.changed[i] = last + (end - 1 - last) // iv * iv
        if self.reconcile is not None and self.reconcile + self.reconcile_ms < end:
            self.reconcile += (end - 1 - self.reconcile) // self.reconcile_ms * self.reconcile_ms
        self.prev = max(at, self.reconcile or at, *(x for x in self.last.values() if x is not None))
        if self.pending:  # every grid tick ran: the last one before `end`
            self.prev = max(self.prev, end - 1 - (end - 1 - self.plan.start_ms) % self.tick)
        self.dirty = True
        return self.next_due(self.prev - self.drift)

    def _hours_clear(self, first: int, cap: int | None) -> int:
        """The first whole hour from `first` (at most `cap`: the hour of an entry, whose tick records the
        baseline of its own hour) whose baseline the driver must record: before it, each hour's
        record would only store its baselines (no rail trips at its first tick) and the price path would not
        leave the band those baselines give, to the hour's end. Conservative: E_h comes from the linear equity
        model (`_equity_band`), widened by its rounding, and the band narrowed by a point; any doubt stops
        the scan there, and that hour is recorded and banded exactly as before."""
        positions, balance, tick = self.account
        a, b, c = _linear(positions, balance, tick)
        pad = 0.01 * (len(positions) + 1)
        s_max = self.spreads[1]
        rails = self.plan.config.rails
        day, b0, new_b0 = self.baseline
        g = first
        while g + _HOUR_MS < self.until_trades and (cap is None or g < cap):
            if g // _DAY_MS * _DAY_MS != day:
                day, b0 = g // _DAY_MS * _DAY_MS, new_b0
            if b0 is None:
                return g
            bid, ask, _ = self.series.quote(g + self.off)
            equity = a + b * bid + c * (ask - bid)
            if b0 > 0:
                if rails.hourly_loss * b0 <= 0 or equity - pad - 0.01 <= b0 - rails.daily_loss * b0:
                    return g  # the record refuses, or the rail trips at once: the tick runs
                floor = max(b0 - rails.daily_loss * b0, equity + pad - rails.hourly_loss * b0)
                e_lo = floor + 0.01 + abs(b0) * MARGIN + pad - a - c * s_max
                if abs(b) < 1e-12:
                    if e_lo >= 0:
                        return g
                else:
                    lo, hi = self.series.bid_range(g + self.off, g + _HOUR_MS + self.off)
                    level = e_lo / b
                    if (lo <= level + 2 * self.point) if b > 0 else (hi >= level - 2 * self.point):
                        return g
            g += _HOUR_MS
        return g

    def skip(self, c: int) -> None:
        """Record an idle tick at driver time `c`: the fast checks and reconciliation it would have run."""
        at = c + self.drift
        for i, last in self.last.items():
            if i not in self.pending and (last is None or at - last >= self.interval[i]):
                self.last[i] = self.changed[i] = at
        if self.reconcile is None or at - self.reconcile >= self.reconcile_ms:
            self.reconcile = at
        self.prev = at
        self.dirty = True

    def next_due(self, c: int) -> int:
        """`Engine.next_due` at driver time `c` over the recorded state (in driver ms, before the grid)."""
        if self.pending:
            return c
        hour = (c // _HOUR_MS + 1) * _HOUR_MS
        due = [hour, *(last + self.interval[i] for i, last in self.last.items() if last is not None)]
        if self.reconcile is not None:
            due.append(self.reconcile + self.reconcile_ms)
        return max(c, min(due))

    def record(self, engine: Engine, epoch: int) -> None:
        """Tell the engine what the skipped ticks did, before the next real tick."""
        if self.dirty:
            engine.fast_forward(
                epoch,
                {i: utc(at) for i, at in self.changed.items()},
                None if self.reconcile is None else utc(self.reconcile),
            )
        self.changed, self.dirty = {}, False


def _linear(
    positions: Sequence[Position], balance: float, tick: tuple[float, float]
) -> tuple[float, float, float]:
    """Equity as a + b bid + c spread over these positions (before the terminal rounds it to cents)."""
    size, value = tick
    k = value / size if size else 0.0
    signs = [(1.0 if p.direction == "BUY" else -1.0, p) for p in positions]
    a = balance - sum(sign * p.volume * k * p.price_open for sign, p in signs)
    b = k * sum(sign * p.volume for sign, p in signs)
    c = -k * sum(p.volume for sign, p in signs if sign < 0)
    return a, b, c


def _equity_band(
    equity: tuple[float, float],
    positions: Sequence[Position],
    balance: float,
    tick: tuple[float, float],
    s_min: float,
    s_max: float,
) -> Band:
    """The loss rails' equity band as a band on the bid: equity = a + b bid + c spread, with c ≤ 0."""
    a, b, c = _linear(positions, balance, tick)
    pad = 0.01 * (len(positions) + 1)  # the terminal rounds each profit and their sum to cents
    e_lo, e_hi = equity[0] + pad - a - c * s_max, equity[1] - pad - a - c * s_min
    symbol = positions[0].symbol
    if abs(b) < 1e-12:  # fully hedged: equity moves with the spread only
        inside = e_lo < 0 < e_hi
        return Band(symbol, Side.BID, float("-inf") if inside else 0.0, float("inf") if inside else 0.0)
    lo, hi = (e_lo / b, e_hi / b) if b > 0 else (e_hi / b, e_lo / b)
    return Band(symbol, Side.BID, lo, hi)


@dataclass
class Managed:
    """What the managed run leaves for the report."""

    results: list[TradeResult]
    opened: list[Opened]
    rejected: list[dict[str, Any]]
    engine: dict[str, Any]
    work: dict[str, int]
    vwap: dict[str, Any]


def managed(
    plan: Plan,
    todo: list[Entry],
    generated: tuple[float, float | None] | None,
    progress: Callable[[int, int], object] | None,
    first: int,
    *,
    exact: bool = False,
) -> Managed:
    """The production engine over a simulated terminal, ticking on the live loop's grid where one is due."""
    term, broker = open_terminal(plan)
    store = dtms.open(":memory:", clock=SimClock(term))
    holder = Holder(name="replay", host="replay", pid=1, proc_start=None, boot_id=None, token="replay")  # noqa: S106  # a lease token
    taken = store.take_over(holder, ttl_ms=2**40, now_boot_ms=0, lock_inode=None, decide=lambda row: "first")
    assert taken is not None  # noqa: S101  # a private in-memory store has no other candidate
    epoch = taken[0]
    events = EventCounter()
    gateway = Gateway(store, SoleLeadership(epoch), send_margin_s=0)
    engine = Engine(
        store,
        broker,
        gateway,
        plan.config,
        now=term.now,
        notifier=events,
        wait=term.advance,
        timeframes=(plan.fast, plan.slow),
        status=False,
    )
    engine.start(epoch)
    spec = broker.symbol(plan.symbol)
    series = term.series(plan.symbol)
    finals = bar_finals(plan)
    tick_ms = round(plan.config.loop.tick_s * 1000)
    origin = now_ms = plan.start_ms
    last_tick, next_tick = origin - tick_ms, None
    opened: list[Opened] = []
    rejected: list[dict[str, Any]] = []
    queue = [(n, e, round(e.at.timestamp() * 1000)) for n, e in enumerate(todo, 1)][::-1]  # pop() = oldest
    observed: list[tuple[float, float]] = []
    seen_bar: int | None = None
    bar_ms = (plan.rates["time"][first:].astype(np.int64) - plan.offset) * 1000
    total, shown = len(bar_ms), 0
    idle: _Idle | None = None
    real = hours = 0
    while True:
        t = min([x for x in (queue[-1][2] if queue else None, next_tick) if x is not None], default=None)
        if t is None or t >= plan.end_ms:
            break
        if queue and queue[-1][2] <= t:
            term.advance((t - now_ms) / 1000)
            now_ms = t
            if idle is not None:
                idle.record(engine, epoch)
                idle = None  # a new trade: the next tick runs
        while queue and queue[-1][2] <= t:
            n, entry, _ = queue.pop()
            got = open_entry(broker, plan, n, entry, spec, utc(t), generated)
            if isinstance(got, str):
                rejected.append({"n": n, "at": utc(t).isoformat(), "reason": got})
                continue
            store.register_trade(
                got.identifier,
                plan.symbol,
                entry.direction,
                got.price,
                entry.volume,
                sl=got.entry.sl,
                tp=got.entry.tp,
                magic=REPLAY_MAGIC,
                comment="replay",
            )
            opened.append(got)
            due = on_grid(t, origin, tick_ms, last_tick)
            next_tick = due if next_tick is None else min(next_tick, due)
        if next_tick is not None and t >= next_tick and idle is not None:
            jumped = idle.jump(t, queue[-1][2] if queue else None)
            if jumped is not None:
                last_tick = idle.prev - idle.drift
                next_tick = on_grid(jumped, origin, tick_ms, last_tick)
                continue
        if next_tick is not None and t >= next_tick:
            if idle is not None and idle.idle(t) and idle.new_hour(t):
                term.advance((t - now_ms) / 1000)  # the baseline is the account's equity at this tick
                now_ms = t
                band = engine.record_hour(epoch)
                hours += 1
                if band is None:  # not recorded: the tick runs
                    idle.until = t + idle.drift
                else:
                    idle.rebase(t, band, _day(engine))
            if idle is not None and idle.idle(t):
                idle.skip(t)
                last_tick = t
                next_tick = on_grid(idle.next_due(t), origin, tick_ms, t)
                continue
            real += 1
            if idle is not None:
                idle.record(engine, epoch)
            term.advance((t - now_ms) / 1000)
            now_ms = t
            engine.tick(epoch)
            last_tick = t
            sym = engine.symbols.get(plan.symbol)
            if sym is not None and sym.thresholds is not None and sym.m5.newest_final_time != seen_bar:
                seen_bar = sym.m5.newest_final_time
                if len(sym.vwap.series) >= plan.config.vwap.slope_bars:
                    observed.append((sym.slope(), sym.thresholds.vwap))
            if exact:
                due_at = engine.next_due(utc(t))
                next_tick = (
                    None if due_at is None else on_grid(round(due_at.timestamp() * 1000), origin, tick_ms, t)
                )
            else:  # the same answer from the wake-up contract, which reads the same state
                idle = _idle(engine, broker, plan, series, finals, spec, now_ms)
                next_tick = None if idle is None else on_grid(idle.next_due(t), origin, tick_ms, t)
        if progress is not None:
            done = int(np.searchsorted(bar_ms, t, side="right"))
            if done - shown >= max(1, total // _PROGRESS_STEPS):
                shown = done
                progress(done, total)
    if idle is not None:
        idle.record(engine, epoch)
    term.advance(max(0, plan.end_ms - now_ms) / 1000)
    end = utc(plan.end_ms)
    positions = {p.identifier: p for p in broker.positions()}
    results = []
    for o in opened:
        trade = store.get_trade(o.identifier)
        assert trade is not None  # noqa: S101  # registered above, never unregistered
        actions = list(reversed(store.actions(o.identifier, limit=2**31)))
        legs = {o.identifier: "main"}
        for a in actions:
            leg_id = (a.result or {}).get("identifier")
            if (
                a.action_type in _LEG_ACTIONS
                and a.status.value == "DONE"
                and leg_id
                and leg_id != o.identifier
            ):
                legs[int(leg_id)] = "hedge" if a.action_type == "open_hedge" else "readd"
        results.append(
            trade_result(o, broker, positions, end, legs, trade, actions, store.transitions(o.identifier))
        )
    counters = engine.counters
    info = {
        "deep_checks": counters.get("deep_checks", 0),
        "transitions": counters.get("transitions", 0),
        "events": dict(sorted(events.counts.items())),
    }
    work = {
        "ticks_run": real,
        "hour_records": hours,
        "fast_checks": counters.get("fast_checks", 0),
    }
    vwap = vwap_slopes(broker, plan, observed)
    store.close()
    return Managed(results, opened, rejected, info, work, vwap)


def _day(engine: Engine) -> tuple[int | None, float | None]:
    """The UTC day (ms) whose B0 the engine holds, and that B0."""
    day, b0 = engine.guard.day_baseline()
    return (None if day is None else round(day.timestamp() * 1000)), b0


def _idle(
    engine: Engine,
    broker: MT5Broker,
    plan: Plan,
    series: Series,
    finals: npt.NDArray[np.float64],
    spec: SymbolSpec,
    now_ms: int,
) -> _Idle | None:
    """The idle-tick test after a real tick, from the engine's contract and the terminal's state (None: no
    open trade, so no tick is due)."""
    now = engine.now()
    wake = engine.wake(now)
    if not wake.trades:
        return None
    drift = round(now.timestamp() * 1000) - now_ms
    account = broker.account()
    day, b0 = _day(engine)
    positions = [p for p in broker.positions() if p.symbol == plan.symbol]
    return _Idle(
        wake,
        drift,
        plan,
        series,
        finals,
        positions,
        account.equity - account.profit,
        (spec.tick_size, spec.tick_value),
        spec.point,
        (day, b0, account.balance),
    )


__all__ = ["Managed", "bar_finals", "managed"]
