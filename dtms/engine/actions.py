"""Pure action planning: tighten-only stops, D and freeze checks, volume steps, hedge and re-add."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from dtms.config import Config
from dtms.engine.machine import ActionType
from dtms.models import Direction

#: Float tolerance in steps and ticks: volumes like 0.3/0.1 must count as whole steps (spec/mt5.md §5.6).
_EPS = 1e-7


@dataclass(frozen=True)
class SymbolSpec:
    """The broker constraints planning needs (spec/mt5.md §5.5-5.6); levels are in points."""

    point: float
    digits: int
    tick_size: float
    volume_min: float
    volume_max: float
    volume_step: float
    stops_level: int = 0
    freeze_level: int = 0


@dataclass(frozen=True)
class Quote:
    bid: float
    ask: float

    def close_price(self, direction: Direction) -> float:
        """The price a position closes at: bid for a BUY, ask for a SELL."""
        return self.bid if direction is Direction.BUY else self.ask


@dataclass(frozen=True)
class TradeSnapshot:
    """The trade row plus a fresh broker read, as the planner needs it (B-ENG-1)."""

    direction: Direction
    entry: float
    r: float | None
    sl: float | None
    tp: float | None
    volume: float
    closed_volume: float = 0.0


@dataclass(frozen=True)
class Planned:
    """Parameters for one request; `note` records substitutions such as `breakeven_fallback`."""

    action: ActionType
    params: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class Skipped:
    """Nothing to send, with the reason (a valid skip applies the transition, spec §8.3)."""

    action: ActionType
    reason: str


Plan = Planned | Skipped


def stop_distance(spec: SymbolSpec, extra_points: int = 2) -> float:
    """D = (max(stops_level, freeze_level) + 2) * point: the least gap between a new SL and price."""
    return (max(spec.stops_level, spec.freeze_level) + extra_points) * spec.point


def round_stop(price: float, spec: SymbolSpec, direction: Direction) -> float:
    """Round a stop to the tick size away from the close price (down for a BUY's SL, up for a SELL's)."""
    ticks = price / spec.tick_size
    n = math.floor(ticks + _EPS) if direction is Direction.BUY else math.ceil(ticks - _EPS)
    return round(n * spec.tick_size, spec.digits)


def _step_decimals(step: float) -> int:
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 8


def floor_volume(volume: float, spec: SymbolSpec) -> float:
    """Floor to a whole number of `volume_step`, capped at `volume_max`; never negative."""
    steps = math.floor(max(volume, 0.0) / spec.volume_step + _EPS)
    capped = min(steps * spec.volume_step, spec.volume_max)
    steps = math.floor(capped / spec.volume_step + _EPS)
    return round(steps * spec.volume_step, _step_decimals(spec.volume_step))


def is_frozen(trade: TradeSnapshot, quote: Quote, spec: SymbolSpec) -> bool:
    """The current SL or TP lies inside the freeze band, so the broker would refuse a change (10029)."""
    if spec.freeze_level <= 0:
        return False
    band = spec.freeze_level * spec.point
    price = quote.close_price(trade.direction)
    d = trade.direction.sign
    sl_frozen = trade.sl is not None and d * (price - trade.sl) <= band
    tp_frozen = trade.tp is not None and d * (trade.tp - price) <= band
    return sl_frozen or tp_frozen


def _tighter(new: float, old: float | None, direction: Direction, spec: SymbolSpec) -> bool:
    return old is None or direction.sign * (new - old) > spec.tick_size / 2


def tighten_to(
    trade: TradeSnapshot,
    quote: Quote,
    spec: SymbolSpec,
    target: float,
    config: Config,
    action: ActionType = ActionType.TIGHTEN_SL,
    note: str | None = None,
) -> Plan:
    """Move the SL to `target` only if that tightens it, kept at least D from the close price (spec §5.4).

    The SL never loosens (B-FSM-3): a target nearer to price than D is moved out to D and tested again.
    """
    if is_frozen(trade, quote, spec):
        return Skipped(action, "frozen")
    d = trade.direction.sign
    limit = quote.close_price(trade.direction) - d * stop_distance(spec, config.execution.stops_extra_points)
    if d * (target - limit) > 0:
        target = limit
    target = round_stop(target, spec, trade.direction)
    if target <= 0:
        return Skipped(action, "invalid target")
    if not _tighter(target, trade.sl, trade.direction, spec):
        return Skipped(action, "already tighter")
    return Planned(action, {"sl": target, "tp": trade.tp}, note)


def plan_tighten(
    trade: TradeSnapshot, quote: Quote, spec: SymbolSpec, config: Config, atr_fast: float | None = None
) -> Plan:
    """tighten_sl: target = close price - d * max(0.3R, k * ATR of the fast timeframe).

    The ATR term (`actions.tighten_min_atr`) is the noise floor: a stop nearer to price than the fast bars'
    own range is hit by noise, not by the move the warning was about.
    """
    if trade.r is None or trade.r <= 0:
        return Skipped(ActionType.TIGHTEN_SL, "R unknown")
    distance = config.actions.tighten_r * trade.r
    if atr_fast is not None and math.isfinite(atr_fast):
        distance = max(distance, config.actions.tighten_min_atr * atr_fast)
    target = quote.close_price(trade.direction) - trade.direction.sign * distance
    return tighten_to(trade, quote, spec, target, config)


def plan_partial_close(
    trade: TradeSnapshot,
    spec: SymbolSpec,
    config: Config,
    fraction: float | None = None,
    note: str | None = None,
) -> Plan:
    """partial_close: floor(fraction * current volume) to the step; below min: `partial_close.below_min`."""
    volume = floor_volume(
        (config.partial_close.fraction if fraction is None else fraction) * trade.volume, spec
    )
    too_small = volume < spec.volume_min - _EPS or trade.volume - volume < spec.volume_min - _EPS
    if too_small:
        if config.partial_close.below_min == "close_all":
            return Planned(ActionType.CLOSE_ALL, {}, note or "partial_close_below_min")
        return Skipped(ActionType.PARTIAL_CLOSE, "below_min")
    return Planned(ActionType.PARTIAL_CLOSE, {"volume": volume}, note)


def plan_breakeven(
    trade: TradeSnapshot, quote: Quote, spec: SymbolSpec, config: Config, atr_fast: float | None = None
) -> Plan:
    """move_sl_breakeven if entry keeps D from price, else tighten_sl (`breakeven_fallback`)."""
    d = trade.direction.sign
    target = round_stop(trade.entry + d * config.breakeven.offset_points * spec.point, spec, trade.direction)
    room = d * (quote.close_price(trade.direction) - target)
    if room < stop_distance(spec, config.execution.stops_extra_points) - _EPS * spec.point:
        fallback = plan_tighten(trade, quote, spec, config, atr_fast)
        if isinstance(fallback, Planned):
            return Planned(fallback.action, fallback.params, "breakeven_fallback")
        return Skipped(fallback.action, f"breakeven_fallback: {fallback.reason}")
    if is_frozen(trade, quote, spec):
        return Skipped(ActionType.MOVE_SL_BREAKEVEN, "frozen")
    if not _tighter(target, trade.sl, trade.direction, spec):
        return Skipped(ActionType.MOVE_SL_BREAKEVEN, "already tighter")
    return Planned(ActionType.MOVE_SL_BREAKEVEN, {"sl": target, "tp": trade.tp})


def hedge_fallback(trade: TradeSnapshot, spec: SymbolSpec, config: Config, reason: str) -> Plan:
    """What replaces a hedge that cannot be opened: reduce (close the hedge volume) or close_all."""
    note = f"hedge_fallback: {reason}"
    if config.hedge.fallback == "close_all":
        return Planned(ActionType.CLOSE_ALL, {}, note)
    return plan_partial_close(trade, spec, config, config.hedge.fraction, note)


def plan_hedge(
    trade: TradeSnapshot,
    quote: Quote,
    spec: SymbolSpec,
    atr: float | None,
    config: Config,
    *,
    hedging_account: bool,
    trading_active: bool,
) -> Plan:
    """open_hedge: opposite side, 0.5 * volume, SL 0.5 * ATR14(M15) from its reference price, no TP."""
    volume = floor_volume(config.hedge.fraction * trade.volume, spec)
    reason = None
    if not hedging_account:
        reason = "netting_account"
    elif not config.hedge.enabled:
        reason = "hedging_disabled"
    elif not trading_active:
        reason = "gated"
    elif volume < spec.volume_min - _EPS:
        reason = "below_min"
    elif atr is None or not math.isfinite(atr) or atr <= 0:
        reason = "atr_unavailable"
    if reason is not None or atr is None:
        return hedge_fallback(trade, spec, config, reason or "atr_unavailable")
    side = Direction.SELL if trade.direction is Direction.BUY else Direction.BUY
    d = side.sign
    reference = quote.ask if side is Direction.BUY else quote.bid
    sl = reference - d * config.hedge.sl_atr * atr
    limit = quote.close_price(side) - d * stop_distance(spec, config.execution.stops_extra_points)
    if d * (sl - limit) > 0:
        sl = limit
    sl = round_stop(sl, spec, side)
    return Planned(
        ActionType.OPEN_HEDGE,
        {
            "direction": side,
            "volume": volume,
            "sl": sl,
            "tp": None,
            "price": reference,
            "magic": config.execution.magic,
        },
    )


def plan_re_add(trade: TradeSnapshot, spec: SymbolSpec, config: Config, *, trading_active: bool) -> Plan:
    """re_add_position: 0.5 * closed volume, same side, the main SL/TP; SKIPPED below min or gated."""
    if not trading_active:
        return Skipped(ActionType.RE_ADD_POSITION, "gated")
    volume = floor_volume(config.re_add.fraction * trade.closed_volume, spec)
    if volume < spec.volume_min - _EPS:
        return Skipped(ActionType.RE_ADD_POSITION, "below_min")
    return Planned(
        ActionType.RE_ADD_POSITION,
        {
            "direction": trade.direction,
            "volume": volume,
            "sl": trade.sl,
            "tp": trade.tp,
            "magic": config.execution.magic,
        },
    )


def plan_trail(
    trade: TradeSnapshot,
    quote: Quote,
    spec: SymbolSpec,
    swing_low: float | None,
    swing_high: float | None,
    atr: float | None,
    config: Config,
) -> Plan:
    """Optional trail_sl: SWL - 0.1 ATR (BUY) or SH + 0.1 ATR (SELL), under the tighten_sl rules."""
    level = swing_low if trade.direction is Direction.BUY else swing_high
    if level is None or atr is None or not math.isfinite(atr):
        return Skipped(ActionType.TRAIL_SL, "no swing or ATR")
    target = level - trade.direction.sign * config.trail.buffer_atr * atr
    return tighten_to(trade, quote, spec, target, config, ActionType.TRAIL_SL)


__all__ = [
    "Plan",
    "Planned",
    "Quote",
    "Skipped",
    "SymbolSpec",
    "TradeSnapshot",
    "floor_volume",
    "hedge_fallback",
    "is_frozen",
    "plan_breakeven",
    "plan_hedge",
    "plan_partial_close",
    "plan_re_add",
    "plan_tighten",
    "plan_trail",
    "round_stop",
    "stop_distance",
    "tighten_to",
]
