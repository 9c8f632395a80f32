"""replay(bars, …) → Report: the engine on the simulated terminal with a stepped clock, plus the baseline.

The managed run is the production engine (`dtms.engine.cycle.Engine`: signals, state machine, actions, rails)
over `MT5Broker` and a simulated terminal whose clock only moves when replay advances it, with a private
in-memory store. It ticks on the grid of a live loop (`loop.tick_s` from the start) but only where a tick can
change anything (`Engine.next_due`). The baseline opens the same entries on a second terminal and holds SL
and TP, nothing else. Same inputs, same report, byte for byte: no wall clock reaches it.
"""


import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import dtms
import dtms.sim
from dtms.broker import MT5Broker
from dtms.broker.base import Deal, SymbolSpec
from dtms.broker.base import Direction as Side
from dtms.config import Config
from dtms.engine import indicators as ind
from dtms.engine.cycle import Engine
from dtms.engine.market import session_starts, vwap_series
from dtms.engine.symbols import DEFAULT_TIMEFRAMES, timeframe_s
from dtms.errors import ConfigError, DataError, InvalidArgumentError
from dtms.events import Event, Notifier
from dtms.gateway import Gateway, SoleLeadership
from dtms.models import Holder, Trade
from dtms.replay.inputs import (
    _LEG_ACTIONS,
    _PROGRESS_STEPS,
    _SL_ACTIONS,
    DEFAULT_EVERY,
    REPLAY_MAGIC,
    Entry,
    Rates,
    _epoch,
    _name,
    _utc_bars,
    load_bars,
    read_entries,
    resolve_timeframes,
)
from dtms.report import Report, TradeResult, action_counts, percentiles, summarize, time_in_states
from dtms.sim import loaders


def _config(config: Config | Mapping[str, Any] | None, fast: str) -> tuple[Config, int, dict[str, Any]]:
    """The effective config, the server offset, and what replay changed (shown in the report)."""
    data = config.to_dict() if isinstance(config, Config) else dict(config or {})
    broker = dict(data.get("broker") or {})
    broker.setdefault("server_time", 0)
    if broker["server_time"] is None:
        broker["server_time"] = 0
    if not isinstance(broker["server_time"], int):
        raise ConfigError(
            "replay needs broker.server_time as a fixed offset in seconds (bar files carry no zone)"
        )
    data["broker"] = broker
    cfg = Config.from_mapping(data)
    adjusted: dict[str, Any] = {}
    scale = timeframe_s(fast) / timeframe_s(DEFAULT_TIMEFRAMES[0])
    if scale > 1:
        # The data rail allows one fast bar of delay (300 s on M5): on mapped timeframes, one of those bars.
        age = cfg.rails.data.max_bar_age_s * scale
        data.setdefault("rails", {}).setdefault("data", {})["max_bar_age_s"] = age
        adjusted["rails.data.max_bar_age_s"] = age
        cfg = Config.from_mapping(data)
    return cfg, int(broker["server_time"]), adjusted


# --- the managed run ---------------------------------------------------------------------------------------


class _SimClock:
    """The store's clock follows the terminal's simulated time, so every stored time is replay time."""

    def __init__(self, term: dtms.sim.Terminal) -> None:
        self.term = term

    def utc_now(self) -> datetime:
        return self.term.now()

    def boot_ms(self) -> int:
        return int(self.term.now().timestamp() * 1000)

    def boot_id(self) -> str | None:
        return "replay"


@dataclass
class _Plan:
    """The run's fixed inputs, shared by the managed and baseline runs."""

    symbol: str
    rates: Rates
    offset: int
    start_ms: int  # UTC
    end_ms: int  # UTC: close of the last bar
    fast: str
    slow: str
    config: Config
    volume: float
    balance: float


def _terminal(plan: _Plan) -> tuple[dtms.sim.Terminal, MT5Broker]:
    term = dtms.sim.open(
        None,
        bars={plan.symbol: plan.rates},
        clock="manual",
        account="hedging",
        balance=plan.balance,
        start=_dt(plan.start_ms),
        server_time_offset_s=plan.offset,
    )
    broker = MT5Broker(term, server_time_offset_s=plan.offset, magic=plan.config.execution.magic)
    broker.connect()
    return term, broker


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _atr(broker: MT5Broker, plan: _Plan, now: datetime) -> float | None:
    """ATR14 of the closed slow-timeframe bars at `now`, as the engine computes it (its whole window)."""
    bars = broker.bars(plan.symbol, plan.slow, plan.config.data.m15_window + 1)
    bars = bars[bars["time"] + timeframe_s(plan.slow) <= now.timestamp()]
    if len(bars) <= plan.config.regime.atr_period:
        return None
    value = ind.atr(
        bars["high"],
        bars["low"],
        bars["close"],
        plan.config.regime.atr_period,
        plan.config.indicators.smoothing,
    )[-1]
    return float(value) if np.isfinite(value) else None


@dataclass
class _Opened:
    n: int
    entry: Entry  # with the SL/TP actually sent
    identifier: int
    price: float
    risk: float


def _open(
    broker: MT5Broker,
    plan: _Plan,
    n: int,
    entry: Entry,
    spec: SymbolSpec,
    now: datetime,
    generated: tuple[float, float | None] | None,
) -> _Opened | str:
    """Open one entry (SL/TP from ATR when `generated` = (sl_atr, tp_r)); the reason text when refused."""
    atr = _atr(broker, plan, now)
    tick = broker.tick(plan.symbol)
    price = tick.ask if entry.direction == "BUY" else tick.bid
    d = 1 if entry.direction == "BUY" else -1
    sl, tp = entry.sl, entry.tp
    if generated is not None:
        if atr is None:
            return "no ATR yet"
        sl_atr, tp_r = generated
        sl = spec.round_price(price - d * sl_atr * atr)
        tp = spec.round_price(price + d * tp_r * sl_atr * atr) if tp_r else None
    out = broker.open(
        plan.symbol,
        entry.direction,
        entry.volume,
        sl=sl,
        tp=tp,
        magic=REPLAY_MAGIC,
        comment="replay",
    )
    if not out.is_done or out.identifier is None:
        return f"{out.retcode} {out.text}".strip()
    distance = abs(out.price - sl) if sl else (atr or 0.0) * plan.config.actions.r_fallback_atr
    risk = distance / spec.tick_size * spec.tick_value * entry.volume
    return _Opened(
        n,
        Entry(_dt(int(now.timestamp() * 1000)), entry.direction, entry.volume, sl, tp),
        out.identifier,
        out.price,
        risk,
    )


class _Events(Notifier):
    """Counts events by kind instead of logging them (a replay emits thousands)."""

    def __init__(self) -> None:
        super().__init__(hooks=[], attempts=1)
        self.counts: Counter[str] = Counter()

    def emit(self, event: Event) -> None:
        self.counts[str(event.kind)] += 1


def _on_grid(due_ms: int, origin_ms: int, tick_ms: int, after_ms: int) -> int:
    """The first live-loop tick (origin + k x tick) at or after `due_ms`, and after the previous tick."""
    k = -(-(due_ms - origin_ms) // tick_ms)
    return max(origin_ms + k * tick_ms, after_ms + tick_ms)


def replay(
    bars: str | os.PathLike[str] | Rates,
    *,
    symbol: str,
    entries: str | os.PathLike[str] | Sequence[Entry] | None = None,
    every: int | None = None,
    seed: int = 0,
    config: Config | Mapping[str, Any] | None = None,
    timeframes: Sequence[str] | None = None,
    sl_atr: float = 1.5,
    tp_r: float | None = 2.0,
    volume: float = 0.1,
    balance: float = 10_000.0,
    warmup: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> Report:
    """Replay `bars` of `symbol` through the engine, and the same entries unmanaged; compare them.

    Args:
        bars: a CSV path (MetaTrader's export or plain OHLCV, detected) or a rates array, any timeframe
            from M1 to D1; times are broker server time (`broker.server_time` of `config`, default 0).
        entries: a CSV path (`read_entries`) or a list of `Entry`; without it, entries are generated.
        every, seed: generated entries: one every `every` bars of the fast timeframe (default 24) after the
            warm-up, direction from a generator seeded with `seed`; SL `sl_atr` x ATR14 of the slow timeframe
            from the fill, TP `tp_r` x R (None: no TP), `volume` lots.
        timeframes: the engine's (fast, slow) timeframes, default M5/M15; for coarser data e.g. ("H1", "H4").
        warmup: slow-timeframe bars before the first entry (default `data.m15_window`, or a third of the
            data when it is shorter than twice that).
        progress: called as `progress(done_bars, total_bars)` during the run.

    Raises:
        DataError: unreadable or inconsistent bars or entries, data too short, or timeframes the data cannot
            give (the message names the `timeframes` to use).
        ConfigError: invalid config or timeframes. InvalidArgumentError: invalid arguments.
    """
    wall0 = time.perf_counter()
    if entries is not None and every is not None:
        raise InvalidArgumentError("give entries or every, not both")
    for name, value, ok in (
        ("every", every, every is None or (isinstance(every, int) and every >= 1)),
        ("sl_atr", sl_atr, sl_atr > 0),
        ("tp_r", tp_r, tp_r is None or tp_r > 0),
        ("volume", volume, volume > 0),
        ("balance", balance, balance > 0),
        ("warmup", warmup, warmup is None or (isinstance(warmup, int) and warmup >= 1)),
    ):
        if not ok:
            raise InvalidArgumentError(f"{name} must be positive, not {value!r}")
    rates, source, fmt = load_bars(bars)
    base_s = loaders.base_interval(rates)
    fast, slow = resolve_timeframes(base_s, timeframes, source)
    cfg, offset, adjusted = _config(config, fast)
    times = rates["time"].astype(np.int64)
    slow_open = (
        np.unique(times // timeframe_s(slow) * timeframe_s(slow))
        if slow != "W1"
        else np.unique((times - 3 * 86400) // 604800 * 604800 + 3 * 86400)
    )
    n_slow = len(slow_open)
    if warmup is None:
        warmup = cfg.data.m15_window if n_slow >= 2 * cfg.data.m15_window else n_slow // 3
    if warmup < 30 or warmup >= n_slow - 1:
        raise DataError(
            f"{source}: {n_slow} {slow} bars are too few for a warm-up of {warmup} {slow} bars "
            "(at least 30) and a replay after it"
        )
    first = int(np.searchsorted(times, slow_open[warmup]))
    plan = _Plan(
        symbol,
        rates,
        offset,
        (int(times[first]) - offset) * 1000,
        (int(times[-1]) + base_s - offset) * 1000,
        fast,
        slow,
        cfg,
        volume,
        balance,
    )
    generated = (sl_atr, tp_r) if entries is None else None
    todo = _entries(entries, every, seed, volume, plan, first, times)
    managed, opened, rejected, engine_info, observed = _managed(plan, todo, generated, progress, first)
    wall1 = time.perf_counter()
    baseline = _baseline(plan, opened)
    m_results = tuple(managed)
    b_results = tuple(baseline)
    steps = sum(
        int(
            np.searchsorted(times, _epoch(m.exit_at) + offset)
            - np.searchsorted(times, _epoch(m.entry_at) + offset)
        )
        for m in m_results
    )
    engine_info["bar_trade_steps"] = steps
    meta = {
        "symbol": symbol,
        "source": source,
        "format": fmt,
        "base_timeframe": _name(base_s),
        "bars": len(times) - first,
        "timeframes": [fast, slow],
        "warmup": warmup,
        "start": _dt(plan.start_ms).isoformat(),
        "end": _dt(plan.end_ms).isoformat(),
        "server_time_offset_s": offset,
        "balance": balance,
        "account": "hedging",
        "config_adjusted": adjusted,
        "dtms_version": dtms.__version__,
        "entries": {
            **_describe(entries, every, seed, sl_atr, tp_r, volume, fast, slow),
            "given": len(todo),
            "opened": len(opened),
            "rejected": rejected,
        },
    }
    if progress is not None:
        progress(len(times) - first, len(times) - first)
    wall2 = time.perf_counter()
    return Report(
        meta=meta,
        managed=summarize(m_results),
        baseline=summarize(b_results),
        states=time_in_states(m_results),
        actions=action_counts(m_results),
        vwap_slope=observed,
        engine=engine_info,
        trades=tuple(zip(m_results, b_results, strict=True)),
        bars=_utc_bars(rates, offset),
        timing={
            "wall_s": wall2 - wall0,
            "managed_s": wall1 - wall0,
            "baseline_s": wall2 - wall1,
            "bar_trade_steps_per_s": steps / (wall1 - wall0) if wall1 > wall0 else 0.0,
        },
    )


def _describe(
    entries: Any,
    every: int | None,
    seed: int,
    sl_atr: float,
    tp_r: float | None,
    volume: float,
    fast: str,
    slow: str,
) -> dict[str, Any]:
    if entries is None:
        n = every or DEFAULT_EVERY
        tp = f"TP {tp_r:g} R" if tp_r else "no TP"
        sl = f"SL {sl_atr:g} x ATR14({slow})"
        text = f"generated every {n} {fast} bars, seed {seed}, {sl}, {tp}, {volume:g} lots"
        return {
            "mode": "generated",
            "every": n,
            "seed": seed,
            "sl_atr": sl_atr,
            "tp_r": tp_r,
            "volume": volume,
            "text": text,
        }
    if isinstance(entries, str | os.PathLike):
        return {"mode": "csv", "text": f"from {Path(entries).name}"}
    return {"mode": "list", "text": "given as a list"}


def _entries(
    entries: Any,
    every: int | None,
    seed: int,
    volume: float,
    plan: _Plan,
    first: int,
    times: npt.NDArray[np.int64],
) -> list[Entry]:
    """The entries to open, each moved to the first bar at or after its time (UTC)."""
    start, end = _dt(plan.start_ms), _dt(plan.end_ms)
    if entries is None:
        fast_s = timeframe_s(plan.fast)
        buckets = times[first:] // fast_s
        opens = times[first:][np.r_[True, buckets[1:] != buckets[:-1]]]
        picks = opens[:: every or DEFAULT_EVERY]
        rng = np.random.default_rng(seed)
        sides = rng.integers(0, 2, size=len(picks))
        names: tuple[Side, Side] = ("BUY", "SELL")
        return [
            Entry(_dt((int(t) - plan.offset) * 1000), names[int(s)], volume)
            for t, s in zip(picks, sides, strict=True)
        ]
    listed = (
        read_entries(entries)
        if isinstance(entries, str | os.PathLike)
        else sorted(entries, key=lambda e: e.at)
    )
    out = []
    for e in listed:
        if e.at.tzinfo is None:
            raise InvalidArgumentError(f"entry time {e.at} must be timezone-aware (UTC)")
        if not start <= e.at < end:
            raise DataError(
                f"entry at {e.at.isoformat()} lies outside the replay, {start.isoformat()} (after a "
                f"warm-up of the engine's {plan.slow} window) to {end.isoformat()}"
            )
        k = int(np.searchsorted(times, int(e.at.timestamp()) + plan.offset, side="left"))
        if k >= len(times):
            raise DataError(f"entry at {e.at.isoformat()} has no bar at or after it")
        out.append(Entry(_dt((int(times[k]) - plan.offset) * 1000), e.direction, e.volume, e.sl, e.tp))
    return out


def _managed(
    plan: _Plan,
    todo: list[Entry],
    generated: tuple[float, float | None] | None,
    progress: Callable[[int, int], object] | None,
    first: int,
) -> tuple[list[TradeResult], list[_Opened], list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The production engine over a simulated terminal, ticking on the live loop's grid where one is due."""
    term, broker = _terminal(plan)
    store = dtms.open(":memory:", clock=_SimClock(term))
    holder = Holder(name="replay", host="replay", pid=1, proc_start=None, boot_id=None, token="replay")  # noqa: S106  # a lease token
    taken = store.take_over(holder, ttl_ms=2**40, now_boot_ms=0, lock_inode=None, decide=lambda row: "first")
    assert taken is not None  # noqa: S101  # a private in-memory store has no other candidate
    epoch = taken[0]
    events = _Events()
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
    )
    engine.start(epoch)
    spec = broker.symbol(plan.symbol)
    tick_ms = round(plan.config.loop.tick_s * 1000)
    origin = now_ms = plan.start_ms
    last_tick, next_tick = origin - tick_ms, None
    opened: list[_Opened] = []
    rejected: list[dict[str, Any]] = []
    queue = [(n, e, round(e.at.timestamp() * 1000)) for n, e in enumerate(todo, 1)][::-1]  # pop() = oldest
    observed: list[tuple[float, float]] = []
    seen_bar: int | None = None
    bar_ms = (plan.rates["time"][first:].astype(np.int64) - plan.offset) * 1000
    total, shown = len(bar_ms), 0
    while True:
        t = min([x for x in (queue[-1][2] if queue else None, next_tick) if x is not None], default=None)
        if t is None or t >= plan.end_ms:
            break
        term.advance((t - now_ms) / 1000)
        now_ms = t
        while queue and queue[-1][2] <= t:
            n, entry, _ = queue.pop()
            got = _open(broker, plan, n, entry, spec, _dt(t), generated)
            if isinstance(got, str):
                rejected.append({"n": n, "at": _dt(t).isoformat(), "reason": got})
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
            due = _on_grid(t, origin, tick_ms, last_tick)
            next_tick = due if next_tick is None else min(next_tick, due)
        if next_tick is not None and t >= next_tick:
            engine.tick(epoch)
            last_tick = t
            sym = engine.symbols.get(plan.symbol)
            if sym is not None and sym.thresholds is not None and sym.m5.newest_final_time != seen_bar:
                seen_bar = sym.m5.newest_final_time
                if len(sym.vwap.series) >= plan.config.vwap.slope_bars:
                    observed.append((sym.slope(), sym.thresholds.vwap))
            due_at = engine.next_due(_dt(t))
            next_tick = (
                None if due_at is None else _on_grid(round(due_at.timestamp() * 1000), origin, tick_ms, t)
            )
        if progress is not None:
            done = int(np.searchsorted(bar_ms, t, side="right"))
            if done - shown >= max(1, total // _PROGRESS_STEPS):
                shown = done
                progress(done, total)
    term.advance(max(0, plan.end_ms - now_ms) / 1000)
    end = _dt(plan.end_ms)
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
            _result(o, broker, positions, end, legs, trade, actions, store.transitions(o.identifier))
        )
    status = store.setting("engine.status") or {}
    counters = status.get("counters", {})
    info = {
        "ticks": int(status.get("ticks", 0)),
        "fast_checks": counters.get("fast_checks", 0),
        "deep_checks": counters.get("deep_checks", 0),
        "transitions": counters.get("transitions", 0),
        "events": dict(sorted(events.counts.items())),
    }
    vwap = _slopes(broker, plan, observed)
    store.close()
    return results, opened, rejected, info, vwap


def _reason(deal: Deal) -> str:
    return "dtms" if deal.comment.startswith("dtms-") else deal.reason


def _result(
    o: _Opened,
    broker: MT5Broker,
    positions: Mapping[int, Any],
    end: datetime,
    legs: Mapping[int, str],
    trade: Trade | None = None,
    actions: Sequence[Any] = (),
    transitions: Sequence[Any] = (),
) -> TradeResult:
    """One entry's money, exit and (managed) timelines, from the terminal's deals and the store's journal."""
    profit, exits = 0.0, []
    main_exit: tuple[datetime, float, str] | None = None
    last = o.entry.at
    for pid, leg in legs.items():
        for d in broker.deals(pid):
            profit += d.profit + d.commission + d.swap + d.fee
            if d.entry in ("out", "out_by"):
                exits.append((d.executed_at.isoformat(), d.price, d.volume, leg, _reason(d)))
                last = max(last, d.executed_at)
                if leg == "main":
                    main_exit = (d.executed_at, d.price, _reason(d))
        p = positions.get(pid)
        if p is not None:
            profit += p.profit + p.swap
            exits.append((end.isoformat(), p.price_current, p.volume, leg, "end"))
            last = end
            if leg == "main":
                main_exit = (end, p.price_current, "end")
    exit_at, exit_price, reason = main_exit or (last, o.price, "unknown")
    exit_at = max(exit_at, last)
    entry_at = o.entry.at.isoformat()
    states: list[tuple[str, str]] = []
    sl_path: list[tuple[str, float]] = [(entry_at, o.entry.sl)] if o.entry.sl else []
    if trade is not None:
        marks = [(o.entry.at, "HEALTHY (armed)")]
        if trade.activated_at is not None:
            marks.append((trade.activated_at, "HEALTHY"))
        marks += [(t.at, t.to_state.value) for t in transitions if t.status == "applied"]
        states = [(at.isoformat(), s) for at, s in sorted(marks, key=lambda m: m[0]) if at < exit_at]
        for a in actions:
            sl = (a.result or {}).get("sl")
            if a.action_type in _SL_ACTIONS and a.leg == "main" and a.status.value == "DONE" and sl:
                sl_path.append(((a.completed_at or a.created_at).isoformat(), float(sl)))
    return TradeResult(
        n=o.n,
        direction=o.entry.direction,
        volume=o.entry.volume,
        entry_at=entry_at,
        entry_price=o.price,
        sl=o.entry.sl,
        tp=o.entry.tp,
        risk=round(o.risk, 2),
        exit_at=exit_at.isoformat(),
        exit_price=exit_price,
        exit_reason=reason,
        profit=round(profit, 2) + 0.0,
        r=round(profit / o.risk, 4) + 0.0 if o.risk else 0.0,
        final_state=trade.state.value if trade is not None else None,
        states=tuple(states),
        sl_path=tuple(sl_path),
        exits=tuple(sorted(exits)),
        actions=tuple((a.created_at.isoformat(), a.action_type, a.status.value) for a in actions),
    )


def _baseline(plan: _Plan, opened: list[_Opened]) -> list[TradeResult]:
    """The same entries, same fills, SL and TP held and nothing else: no engine, no store."""
    term, broker = _terminal(plan)
    now_ms, ids = plan.start_ms, []
    for o in opened:
        at = round(o.entry.at.timestamp() * 1000)
        term.advance((at - now_ms) / 1000)
        now_ms = at
        out = broker.open(
            plan.symbol,
            o.entry.direction,
            o.entry.volume,
            sl=o.entry.sl,
            tp=o.entry.tp,
            magic=REPLAY_MAGIC,
            comment="replay",
        )
        ids.append(out.identifier if out.is_done else None)
    term.advance(max(0, plan.end_ms - now_ms) / 1000)
    end = _dt(plan.end_ms)
    positions = {p.identifier: p for p in broker.positions()}
    results = []
    for o, pid in zip(opened, ids, strict=True):
        if pid is None:  # refused here though the managed run filled it: shown, never silently dropped
            results.append(
                TradeResult(
                    o.n,
                    o.entry.direction,
                    o.entry.volume,
                    o.entry.at.isoformat(),
                    o.price,
                    o.entry.sl,
                    o.entry.tp,
                    round(o.risk, 2),
                    o.entry.at.isoformat(),
                    o.price,
                    "rejected",
                    0.0,
                    0.0,
                )
            )
            continue
        results.append(
            _result(_Opened(o.n, o.entry, pid, o.price, o.risk), broker, positions, end, {pid: "main"})
        )
    return results


def _slopes(broker: MT5Broker, plan: _Plan, observed: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """The VWAP slope distribution (spec §3.5): every final fast bar of the replay; what the engine saw."""
    from dtms.engine.market import symbol_key

    fast_s, vc, sc = timeframe_s(plan.fast), plan.config.vwap, plan.config.symbols
    bars = broker.bars(plan.symbol, plan.fast, min(len(plan.rates), 100_000))  # the terminal's maxbars
    bars = bars[bars["time"] + fast_s <= plan.end_ms // 1000]
    values = vwap_series(bars, vc.session_timezone, vc.session_start)
    sessions = session_starts(bars["time"], vc.session_timezone, vc.session_start)
    lag = vc.slope_bars - 1
    old, new = values[:-lag], values[lag:]
    ok = (
        (sessions[lag:] == sessions[:-lag])
        & np.isfinite(old)
        & np.isfinite(new)
        & (old != 0)
        & (bars["time"][lag:] >= plan.start_ms // 1000)
    )
    slopes = np.abs((new[ok] - old[ok]) / old[ok]).tolist()
    key, _ = symbol_key(plan.symbol, sc.vwap_base.keys(), sc.aliases, sc.suffix_pattern)
    base = sc.vwap_base.get(key, sc.vwap_base.get("default", 0.0))
    seen = [abs(s) for s, _ in observed]
    return {
        "timeframe": plan.fast,
        "base": base,
        "bars": len(slopes),
        "abs": percentiles(slopes),
        "share_at_or_above": {
            f"{m:g}x base": round(float(np.mean(np.asarray(slopes) >= m * base)), 4) if slopes else 0.0
            for m in (plan.config.regime.clamp.min, 1.0, plan.config.regime.clamp.max)
        },
        "engine": {
            "bars": len(seen),
            "abs": percentiles(seen),
            "thresholds": percentiles([t for _, t in observed]),
            "share_at_or_above": round(sum(abs(s) >= t for s, t in observed) / len(observed), 4)
            if observed
            else None,
        },
    }
