"""The replay rig: the effective config, the simulated terminal on the bars, entries opened on it, clocks.

Shared by the managed run (`dtms.replay.drive`) and the unmanaged baseline (`dtms.replay.results`).
"""

import copy
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

import dtms.sim
from dtms.broker import MT5Broker
from dtms.broker.base import SymbolSpec
from dtms.config import Config
from dtms.engine import indicators as ind
from dtms.engine.symbols import DEFAULT_TIMEFRAMES, timeframe_s
from dtms.errors import ConfigError
from dtms.events import Event, Notifier
from dtms.replay.inputs import REPLAY_MAGIC, Entry, Rates

#: Settings in seconds that the engine reasons about in bars of its timeframes (M5 and M15 by default): on a
#: coarser mapping (H1/H4 is 12x M5) replay scales them by the mapping, so that a path that takes three M5
#: bars on live data takes three H1 bars on H1 data instead of happening inside one bar or never.
BAR_TIMED: Final = (
    "monitoring.start_age_s",
    "monitoring.deep_s",
    "monitoring.deep_cooldown_s",
    "fsm.flat_timer_s",
    "fsm.recovery_timer_s",
    "warnings.decay_s",
    "rails.data.max_bar_age_s",
)


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def effective_config(
    config: Config | Mapping[str, Any] | None, fast: str, *, scale_time: bool = True
) -> tuple[Config, int, dict[str, Any]]:
    """The effective config, the server offset, and what replay changed (shown in the report).

    With `scale_time` and a fast timeframe coarser than M5, every `BAR_TIMED` setting left at its default is
    multiplied by (fast timeframe / M5); one set by the caller is kept as given.
    """
    data = (
        config.to_dict() if isinstance(config, Config) else copy.deepcopy(dict(config or {}))
    )  # never the caller's
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
    if scale > 1 and scale_time:
        default = Config()
        for key in BAR_TIMED:
            if _get(cfg, key) != _get(default, key):
                continue
            *path, leaf = key.split(".")
            node = data
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = adjusted[key] = _get(default, key) * scale
        cfg = Config.from_mapping(data)
    return cfg, int(broker["server_time"]), adjusted


def impossible_paths(cfg: Config, fast: str, slow: str) -> list[str]:
    """Configured paths the timeframes make impossible or degenerate (the report warns about each)."""
    fast_s, slow_s = timeframe_s(fast), timeframe_s(slow)
    mc, out = cfg.monitoring, []
    if cfg.fsm.flat_timer_s < slow_s:
        out.append(
            f"fsm.flat_timer_s {cfg.fsm.flat_timer_s:g} s is shorter than one {slow} bar ({slow_s} s): "
            f"the flat timer closes a hedge before a {slow} bar can close, so HEDGED -> RECOVERING "
            f"(a BOS on a {slow} bar closed after the hedge) cannot occur"
        )
    if mc.deep_s < fast_s:
        out.append(
            f"monitoring.deep_s {mc.deep_s:g} s is shorter than one {fast} bar ({fast_s} s): "
            "deep checks repeat on the same bars"
        )
    if cfg.warnings.decay_s < mc.deep_s:
        out.append(
            f"warnings.decay_s {cfg.warnings.decay_s:g} s is shorter than monitoring.deep_s "
            f"{mc.deep_s:g} s: a warning expires before the next scheduled deep check can repeat it"
        )
    return out


class SimClock:
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
class Plan:
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


def open_terminal(plan: Plan) -> tuple[dtms.sim.Terminal, MT5Broker]:
    term = dtms.sim.open(
        None,
        bars={plan.symbol: plan.rates},
        clock="manual",
        account="hedging",
        balance=plan.balance,
        start=utc(plan.start_ms),
        server_time_offset_s=plan.offset,
    )
    broker = MT5Broker(term, server_time_offset_s=plan.offset, magic=plan.config.execution.magic)
    broker.connect()
    return term, broker


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def slow_atr(broker: MT5Broker, plan: Plan, now: datetime) -> float | None:
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
class Opened:
    n: int
    entry: Entry  # with the SL/TP actually sent
    identifier: int
    price: float
    risk: float


def open_entry(
    broker: MT5Broker,
    plan: Plan,
    n: int,
    entry: Entry,
    spec: SymbolSpec,
    now: datetime,
    generated: tuple[float, float | None] | None,
) -> Opened | str:
    """Open one entry (SL/TP from ATR when `generated` = (sl_atr, tp_r)); the reason text when refused."""
    atr = slow_atr(broker, plan, now)
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
    return Opened(
        n,
        Entry(utc(int(now.timestamp() * 1000)), entry.direction, entry.volume, sl, tp),
        out.identifier,
        out.price,
        risk,
    )


class EventCounter(Notifier):
    """Counts events by kind instead of logging them (a replay emits thousands)."""

    def __init__(self) -> None:
        super().__init__(hooks=[], attempts=1)
        self.counts: Counter[str] = Counter()

    def emit(self, event: Event) -> None:
        self.counts[str(event.kind)] += 1


def on_grid(due_ms: int, origin_ms: int, tick_ms: int, after_ms: int) -> int:
    """The first live-loop tick (origin + k x tick) at or after `due_ms`, and after the previous tick."""
    k = -(-(due_ms - origin_ms) // tick_ms)
    return max(origin_ms + k * tick_ms, after_ms + tick_ms)
