"""The six signals S1-S6 as pure functions, and `evaluate`, which scores them together on final bars."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from dtms.config import Config
from dtms.engine import indicators as ind
from dtms.engine.regime import Regime, Thresholds

# Re-exported: the scoring half lived here until it was split out, and callers use `signals` as the one
# engine entry point (`sg.evaluate`, `sg.Evaluation`, `sg.WarningCounter`, ...).
from dtms.engine.score import (
    Confluence,
    Evaluation,
    SignalName,
    SignalResult,
    WarningCounter,
    analysis_text,
    confluence,
    signal_weights,
    update_warnings,
    warning_hits,
)
from dtms.models import Direction


@dataclass(frozen=True)
class OrderFlowReading:
    """What an order-flow source returns; delta_z is a real z-score of buy - sell, positive = net buying."""

    buy_volume: float
    sell_volume: float
    delta_z: float
    as_of: datetime


class OrderFlowSource(Protocol):
    """An optional exchange order-flow feed for S2's volume part and S5 (spec §4.5)."""

    def read(self, exchange_symbol: str) -> OrderFlowReading | None:
        """The latest reading for an exchange symbol, or None."""
        ...


def fresh_flow(
    source: OrderFlowSource | None, symbol_key: str, config: Config, now: datetime
) -> OrderFlowReading | None:
    """A reading for the explicitly mapped exchange symbol; None when unmapped, absent or older than 60 s."""
    exchange = config.order_flow.symbol_map.get(symbol_key)
    if source is None or exchange is None:
        return None
    reading = source.read(exchange)
    if reading is None or (now - reading.as_of).total_seconds() > config.order_flow.max_age_s:
        return None
    return reading


@dataclass(frozen=True)
class VwapView:
    """The symbol's VWAP state as the trade sees it: value at bar t (None = undefined), slope, counters."""

    value: float | None
    slope: float = 0.0
    cross_counter: int = 0
    flip_active: bool = False


def _insufficient(name: SignalName, why: str) -> SignalResult:
    return SignalResult(name, 0.0, f"insufficient data: {why}", insufficient_data=True)


# --- S1 structure -------------------------------------------------------------------------------------


def structure_signal(
    bars_m15: NDArray[np.void], direction: Direction, config: Config, atr: float | None = None
) -> SignalResult:
    """S1: BOS (±3) and CHOCH (-3) of the newest final slow close against confirmed swings (spec §4.1).

    CHOCH: the close is beyond HL (BUY) or LH (SELL) by `structure.choch_buffer_atr` times `atr` (the slow
    timeframe's ATR; without one the CHOCH part is 0). `levels["choch_bar"]` is the open time of the bar
    whose close broke that level first, of the run of closes beyond it ending at bar t: T0 closes a trade
    only on a break made after monitoring started, never on one already there (a level is not an event).
    """
    sc = config.structure
    name = SignalName.STRUCTURE
    if len(bars_m15) < 2 * sc.swing_n + 2:
        return _insufficient(name, f"{len(bars_m15)} M15 bars")
    high, low, closes = bars_m15["high"], bars_m15["low"], bars_m15["close"]
    c = float(closes[-1])
    sh_idx, sl_idx = ind.confirmed_swings(high, low, sc.swing_n, sc.lookback_bars)
    sh = float(high[sh_idx[-1]]) if len(sh_idx) else None
    swl = float(low[sl_idx[-1]]) if len(sl_idx) else None
    # HL: the newest confirmed swing low above the one before it (LH mirrors it with highs); its bar index.
    hl_at = next(
        (int(b) for a, b in zip(sl_idx[-2::-1], sl_idx[:0:-1], strict=True) if low[b] > low[a]), None
    )
    lh_at = next(
        (int(b) for a, b in zip(sh_idx[-2::-1], sh_idx[:0:-1], strict=True) if high[b] < high[a]), None
    )
    hl = float(low[hl_at]) if hl_at is not None else None
    lh = float(high[lh_at]) if lh_at is not None else None
    up = sh is not None and c > sh * (1 + sc.bos_buffer)
    down = swl is not None and c < swl * (1 - sc.bos_buffer)
    with_trade, against = (up, down) if direction is Direction.BUY else (down, up)
    bos = sc.bos_score if with_trade else (-sc.bos_score if against else 0.0)
    swing_at, swing = (hl_at, hl) if direction is Direction.BUY else (lh_at, lh)
    choch, broke_at = 0.0, None
    if swing_at is not None and swing is not None and atr is not None and math.isfinite(atr):
        level = swing - direction.sign * sc.choch_buffer_atr * atr
        beyond = direction.sign * (np.asarray(closes[swing_at + 1 :], dtype=np.float64) - level) < 0
        if len(beyond) and beyond[-1]:
            choch = sc.choch_score
            inside = np.flatnonzero(~beyond)  # the run of closes beyond the level ending at bar t
            broke_at = int(bars_m15["time"][swing_at + 1 + (int(inside[-1]) + 1 if len(inside) else 0)])
    bits = []
    if bos:
        bits.append(f"BOS {'with' if bos > 0 else 'against'} trade")
    if choch:
        bits.append("CHOCH against trade")
    levels = {k: v for k, v in (("sh", sh), ("swl", swl), ("hl", hl), ("lh", lh)) if v is not None}
    if broke_at is not None:
        levels["choch_bar"] = float(broke_at)
    return SignalResult(
        name, bos + choch, "; ".join(bits) or "no structure break", {"bos": bos, "choch": choch}, levels
    )


# --- S2 VWAP flip and volume pressure ----------------------------------------------------------------


def update_cross_counter(counter: int, close: float, vwap: float | None, direction: Direction) -> int:
    """Per new final M5 bar: +1 if it closes on the adverse side of VWAP_t, else -1 down to 0 (spec §2.7)."""
    if vwap is None:
        return counter
    adverse = close < vwap if direction is Direction.BUY else close > vwap
    return counter + 1 if adverse else max(0, counter - 1)


def update_flip_flag(
    active: bool, slope: float, threshold: float, counter: int, direction: Direction, config: Config
) -> bool:
    """Set on an adverse slope ≥ threshold with counter ≥ 2; cleared under 0.7 * it or when favourable."""
    adverse = direction.sign * slope < 0
    if not adverse or abs(slope) < config.vwap.flip_clear_ratio * threshold:
        return False
    if abs(slope) >= threshold and counter >= config.vwap.cross_min:
        return True
    return active


def vwap_signal(
    vwap: VwapView, flow: OrderFlowReading | None, direction: Direction, thr: Thresholds, config: Config
) -> SignalResult:
    """S2: VWAP flip part (-2 adverse / +1 favourable) plus the order-flow volume part (spec §4.2)."""
    vc, bands = config.vwap_signal, config.vwap_signal.volume_bands
    flip = 0.0
    bits: list[str] = []
    if vwap.value is not None and abs(vwap.slope) >= thr.vwap and vwap.cross_counter >= config.vwap.cross_min:
        flip = vc.flip_against if direction.sign * vwap.slope < 0 else vc.flip_with
        bits.append(f"VWAP slope {vwap.slope:+.5f} {'against' if flip < 0 else 'with'} trade")
    volume = 0.0
    if flow is not None and flow.buy_volume + flow.sell_volume > 0:
        total = flow.buy_volume + flow.sell_volume
        opp = (flow.sell_volume if direction is Direction.BUY else flow.buy_volume) / total
        if opp > thr.volume_flip:
            volume = bands.against_score
        elif opp > bands.mild_above:
            volume = bands.mild_score
        elif opp < bands.favour_below:
            volume = bands.favour_score
        bits.append(f"opposing volume {opp:.0%}")
    return SignalResult(
        SignalName.VWAP_VOLUME,
        flip + volume,
        "; ".join(bits) or ("VWAP undefined" if vwap.value is None else "no flip"),
        {"flip": flip, "volume": volume},
        insufficient_data=vwap.value is None,
    )


# --- S3 momentum ----------------------------------------------------------------------------------


def momentum_signal(
    close: NDArray[np.float64], direction: Direction, thr: Thresholds, config: Config
) -> SignalResult:
    """S3: RSI(14) level and trend part plus the MACD histogram's three-bar direction (spec §4.3)."""
    mc = config.momentum
    n = len(close)
    if n <= mc.rsi_period:
        return _insufficient(SignalName.MOMENTUM, f"{n} M15 bars")
    values = ind.rsi(close, mc.rsi_period, config.indicators.smoothing)
    r = float(values[-1])
    trend = float(values[-1] - values[-1 - mc.rsi_trend_lag]) if n > mc.rsi_period + mc.rsi_trend_lag else 0.0
    rsi_part = 0.0
    if direction is Direction.BUY:
        if r < thr.rsi and trend < 0:
            rsi_part = -2.0
        elif r > mc.overbought and trend > 0:
            rsi_part = -1.0
        elif r > mc.mid and trend > 0:
            rsi_part = 1.0
    elif r > 100 - thr.rsi and trend > 0:
        rsi_part = -2.0
    elif r < mc.oversold and trend < 0:
        rsi_part = -1.0
    elif r < mc.mid and trend < 0:
        rsi_part = 1.0
    macd_part = 0.0
    enough = n >= mc.macd.slow + mc.macd.signal + 1
    if enough:
        h = ind.macd(close, mc.macd.fast, mc.macd.slow, mc.macd.signal)[2][-3:]
        if h[2] < h[1] < h[0]:
            macd_part = -direction.sign * 1.0
        elif h[2] > h[1] > h[0]:
            macd_part = direction.sign * 1.0
    return SignalResult(
        SignalName.MOMENTUM,
        rsi_part + macd_part,
        f"RSI {r:.1f} trend {trend:+.1f}; MACD part {macd_part:+g}",
        {"rsi": rsi_part, "macd": macd_part},
        insufficient_data=not enough,
    )


# --- S4 EMA alignment -----------------------------------------------------------------------------


def ema_signal(close: NDArray[np.float64], direction: Direction, config: Config) -> SignalResult:
    """S4: direction-aware table of EMA50/EMA200 slopes over 10 intervals (spec §4.4, B-SIG-4, B-SIG-6)."""
    ec = config.ema
    lag = ec.slope_lookback
    if len(close) < max(ec.fast, ec.slow) + lag:
        return _insufficient(SignalName.EMA_ALIGNMENT, f"{len(close)} M15 bars")
    fast, slow = ind.ema(close, ec.fast), ind.ema(close, ec.slow)
    a_fast = direction.sign * (fast[-1] - fast[-1 - lag]) / fast[-1 - lag]
    a_slow = direction.sign * (slow[-1] - slow[-1 - lag]) / slow[-1 - lag]
    if a_fast > 0:
        raw = 1.0 if a_slow > 0 else 0.0
    elif a_fast < 0:
        raw = ec.divergence_score if a_slow > 0 else -1.0
    else:
        raw = 0.0
    return SignalResult(
        SignalName.EMA_ALIGNMENT, raw, f"EMA{ec.fast} {a_fast:+.5f}, EMA{ec.slow} {a_slow:+.5f}"
    )


# --- S5 delta pressure and S6 candle conviction ---------------------------------------------------


def delta_signal(flow: OrderFlowReading | None, direction: Direction, config: Config) -> SignalResult:
    """S5: ±1 when |delta_z| > 0.5, signed by the trade's direction; 0 without a fresh source (spec §4.5)."""
    if flow is None:
        return _insufficient(SignalName.DELTA_PRESSURE, "no order-flow source")
    z = direction.sign * flow.delta_z
    raw = (1.0 if z > 0 else -1.0) if abs(flow.delta_z) > config.delta.z_threshold else 0.0
    return SignalResult(SignalName.DELTA_PRESSURE, raw, f"delta z {flow.delta_z:+.2f}")


def candle_signal(
    bars_m5: NDArray[np.void], vwap: float | None, direction: Direction, config: Config
) -> SignalResult:
    """S6: a qualifying newest M5 bar that opposes the trade scores -1, or -2 closing through VWAP (§4.6)."""
    cc = config.candle
    name = SignalName.CANDLE_CONVICTION
    period = config.regime.atr_period
    if vwap is None:
        return _insufficient(name, "VWAP undefined")
    if len(bars_m5) <= period:
        return _insufficient(name, f"{len(bars_m5)} M5 bars")
    atr = float(
        ind.atr(bars_m5["high"], bars_m5["low"], bars_m5["close"], period, config.indicators.smoothing)[-1]
    )
    bar = bars_m5[-1]
    o, h, lo, c = float(bar["open"]), float(bar["high"]), float(bar["low"]), float(bar["close"])
    body, rng = abs(c - o), h - lo
    distance = 0.0 if lo <= vwap <= h else min(abs(vwap - h), abs(vwap - lo))
    qualifies = (
        body >= cc.body_ratio * rng and rng >= cc.range_atr * atr and distance <= cc.vwap_distance_atr * atr
    )
    opposes = c < o if direction is Direction.BUY else c > o
    if not (qualifies and opposes):
        return SignalResult(name, 0.0, "no opposing conviction candle")
    through = o > vwap > c if direction is Direction.BUY else o < vwap < c
    return SignalResult(
        name, -2.0 if through else -1.0, "opposing candle" + (" through VWAP" if through else "")
    )


# --- evaluation ---------------------------------------------------------------------------------


def evaluate(
    bars_m5: NDArray[np.void],
    bars_m15: NDArray[np.void],
    direction: Direction,
    regime: Regime,
    thr: Thresholds,
    vwap: VwapView,
    flow: OrderFlowReading | None,
    config: Config,
) -> Evaluation:
    """All six signals on final bars, weighted together into the score, confluence and analysis (spec §4)."""
    close = np.asarray(bars_m15["close"], dtype=np.float64)
    atr, atr_fast = _atr(bars_m15, config), _atr(bars_m5, config)
    results = (
        structure_signal(bars_m15, direction, config, atr),
        vwap_signal(vwap, flow, direction, thr, config),
        momentum_signal(close, direction, thr, config),
        ema_signal(close, direction, config),
        delta_signal(flow, direction, config),
        candle_signal(bars_m5, vwap.value, direction, config),
    )
    weights = signal_weights(regime, config)
    weighted = [r.raw * weights[r.name] for r in results]
    score = float(sum(weighted))
    label, ratio = confluence(weighted, config.confluence.ratio)
    return Evaluation(
        signals=results,
        weights=weights,
        score=score,
        confluence=label,
        confluence_ratio=ratio,
        analysis=analysis_text(score, ratio, weighted, results),
        regime=regime,
        thresholds=thr,
        vwap_flip_active=vwap.flip_active,
        bar_time=int(bars_m15["time"][-1]) if len(bars_m15) else None,
        atr_m15=atr,
        atr_m5=atr_fast,
    )


def _atr(bars: NDArray[np.void], config: Config) -> float | None:
    """The newest ATR (`regime.atr_period`) of final bars; None with too few of them."""
    if len(bars) <= config.regime.atr_period:
        return None
    close = np.asarray(bars["close"], dtype=np.float64)
    smoothing = config.indicators.smoothing
    last = ind.atr(bars["high"], bars["low"], close, config.regime.atr_period, smoothing)[-1]
    return float(last) if np.isfinite(last) else None


__all__ = [
    "Confluence",
    "Evaluation",
    "OrderFlowReading",
    "OrderFlowSource",
    "SignalName",
    "SignalResult",
    "VwapView",
    "WarningCounter",
    "analysis_text",
    "candle_signal",
    "confluence",
    "delta_signal",
    "ema_signal",
    "evaluate",
    "fresh_flow",
    "momentum_signal",
    "signal_weights",
    "structure_signal",
    "update_cross_counter",
    "update_flip_flag",
    "update_warnings",
    "vwap_signal",
    "warning_hits",
]
