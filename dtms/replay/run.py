"""replay(bars, …) → Report: the engine on the simulated terminal with a stepped clock, plus the baseline
and the comparison rules.

The managed run (`dtms.replay.drive`) is the production engine (`dtms.engine.cycle.Engine`: signals, state
machine, actions, rails) over `MT5Broker` and a simulated terminal whose clock only moves when replay
advances it, with a private in-memory store. The baseline (`dtms.replay.results`) opens the same entries on a
second terminal and holds SL and TP, nothing else; each comparison rule (`dtms.replay.rules`) opens them on
a terminal of its own and trails or closes them as a trader's one-line rule would. Same inputs, same report,
byte for byte: no wall clock reaches it, and the event-driven and exact modes agree.
"""

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import dtms
from dtms.broker.base import Direction as Side
from dtms.config import Config
from dtms.engine.symbols import timeframe_s
from dtms.errors import DataError, InvalidArgumentError
from dtms.replay.drive import managed
from dtms.replay.inputs import (
    DEFAULT_EVERY,
    Entry,
    Rates,
    _epoch,
    _name,
    _utc_bars,
    load_bars,
    read_entries,
    resolve_timeframes,
)
from dtms.replay.results import baseline
from dtms.replay.rig import Plan, effective_config, impossible_paths, utc
from dtms.replay.rules import TIME_STOP_BARS, comparisons
from dtms.replay.rules import compare as rules_compare
from dtms.report import Report, action_counts, summarize, time_in_states
from dtms.sim import loaders


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
    exact: bool = False,
    scale_time: bool = True,
    compare: str | Sequence[str] | None = None,
    time_stop_bars: int = TIME_STOP_BARS,
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
        exact: run every tick of the live grid instead of only those the engine's wake-up contract says can
            act (the default). Both give the same report byte for byte; the exact mode is the oracle.
        scale_time: on timeframes coarser than M5/M15, scale the settings the engine reasons about in bars
            (`dtms.replay.rig.BAR_TIMED`: start age, deep cadence and cooldown, flat and recovery timers,
            warning decay, data staleness) by the mapping, unless the config sets them; listed in
            `meta.config_adjusted`. Paths the timeframes still make impossible are listed in `meta.warnings`.
        compare: the comparison rules to run on the same entries beside the baseline (`dtms.replay.rules`):
            None (the default) for all of `COMPARISONS`, names (or one comma-separated string), `()` or
            `"none"` for none. `time_stop_bars`: the `time_stop` rule's bars of the data (default 20).

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
        ("time_stop_bars", time_stop_bars, isinstance(time_stop_bars, int) and time_stop_bars >= 1),
    ):
        if not ok:
            raise InvalidArgumentError(f"{name} must be positive, not {value!r}")
    chosen = comparisons(compare)
    rates, source, fmt = load_bars(bars)
    base_s = loaders.base_interval(rates)
    fast, slow = resolve_timeframes(base_s, timeframes, source)
    cfg, offset, adjusted = effective_config(config, fast, scale_time=scale_time)
    times = rates["time"].astype(np.int64)
    slow_open = slow_bar_opens(times, slow)
    n_slow = len(slow_open)
    if warmup is None:
        warmup = default_warmup(cfg, n_slow)
    if warmup < 30 or warmup >= n_slow - 1:
        raise DataError(
            f"{source}: {n_slow} {slow} bars are too few for a warm-up of {warmup} {slow} bars "
            "(at least 30) and a replay after it"
        )
    first = int(np.searchsorted(times, slow_open[warmup]))
    plan = Plan(
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
    run = managed(plan, todo, generated, progress, first, exact=exact)
    opened, engine_info = run.opened, run.engine
    wall1 = time.perf_counter()
    m_results = tuple(run.results)
    b_results = tuple(baseline(plan, opened))
    wall2 = time.perf_counter()
    compared, compare_timing = rules_compare(
        plan, opened, chosen, time_stop_bars=time_stop_bars, timeframe=_name(base_s)
    )
    wall3 = time.perf_counter()
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
        "start": utc(plan.start_ms).isoformat(),
        "end": utc(plan.end_ms).isoformat(),
        "server_time_offset_s": offset,
        "balance": balance,
        "account": "hedging",
        "config_adjusted": adjusted,
        "warnings": impossible_paths(cfg, fast, slow),
        "dtms_version": dtms.__version__,
        "entries": {
            **_describe(entries, every, seed, sl_atr, tp_r, volume, fast, slow),
            "given": len(todo),
            "opened": len(opened),
            "rejected": run.rejected,
        },
    }
    if progress is not None:
        progress(len(times) - first, len(times) - first)
    wall4 = time.perf_counter()
    return Report(
        meta=meta,
        managed=summarize(m_results),
        baseline=summarize(b_results),
        states=time_in_states(m_results),
        actions=action_counts(m_results),
        vwap_slope=run.vwap,
        engine=engine_info,
        trades=tuple(zip(m_results, b_results, strict=True)),
        comparisons=compared,
        bars=_utc_bars(rates, offset),
        timing={
            "wall_s": wall4 - wall0,
            "managed_s": wall1 - wall0,
            "baseline_s": wall2 - wall1,
            "compare_s": wall3 - wall2,
            **compare_timing,
            "bar_trade_steps_per_s": steps / (wall1 - wall0) if wall1 > wall0 else 0.0,
            **{k: float(v) for k, v in run.work.items()},
        },
    )


def slow_bar_opens(times: npt.NDArray[np.int64], slow: str) -> npt.NDArray[np.int64]:
    """The open times of the slow-timeframe bars the bars at `times` (epoch seconds) fall into, ascending.

    W1 bars open on Sunday 00:00, as MetaTrader's do (the epoch was a Thursday), the others on multiples of
    their length.
    """
    if slow == "W1":
        return np.unique((times - 3 * 86400) // 604800 * 604800 + 3 * 86400)
    return np.unique(times // timeframe_s(slow) * timeframe_s(slow))


def default_warmup(cfg: Config, n_slow: int) -> int:
    """The default warm-up in slow bars: `data.m15_window`, or a third of the data when it has fewer than
    twice that."""
    return cfg.data.m15_window if n_slow >= 2 * cfg.data.m15_window else n_slow // 3


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
    plan: Plan,
    first: int,
    times: npt.NDArray[np.int64],
) -> list[Entry]:
    """The entries to open, each moved to the first bar at or after its time (UTC)."""
    start, end = utc(plan.start_ms), utc(plan.end_ms)
    if entries is None:
        fast_s = timeframe_s(plan.fast)
        buckets = times[first:] // fast_s
        opens = times[first:][np.r_[True, buckets[1:] != buckets[:-1]]]
        picks = opens[:: every or DEFAULT_EVERY]
        rng = np.random.default_rng(seed)
        sides = rng.integers(0, 2, size=len(picks))
        names: tuple[Side, Side] = ("BUY", "SELL")
        return [
            Entry(utc((int(t) - plan.offset) * 1000), names[int(s)], volume)
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
        out.append(Entry(utc((int(times[k]) - plan.offset) * 1000), e.direction, e.volume, e.sl, e.tp))
    return out
