"""What signals produce and how they combine: results, weights, score, confluence, analysis, warnings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from dtms.config import Config, Session, Structure, Volatility
from dtms.engine.regime import Regime, Thresholds

# The result types live here, not in `signals`, so that scoring does not import the signal functions:
# `signals` builds on this module (and re-exports it), never the other way round.


class SignalName(StrEnum):
    """The six signals; the values are the keys of `signals.weights`."""

    STRUCTURE = "structure"
    VWAP_VOLUME = "vwap_volume"
    MOMENTUM = "momentum"
    EMA_ALIGNMENT = "ema_alignment"
    DELTA_PRESSURE = "delta_pressure"
    CANDLE_CONVICTION = "candle_conviction"


class Confluence(StrEnum):
    """Trade-relative agreement of the weighted signals (spec §4.7)."""

    FAVOURABLE = "FAVOURABLE"
    UNFAVOURABLE = "UNFAVOURABLE"
    MIXED = "MIXED"
    NEUTRAL = "NEUTRAL"


@dataclass(frozen=True)
class SignalResult:
    """One signal's raw score (positive is good for the trade), reason, sub-parts and swing levels."""

    name: SignalName
    raw: float
    reason: str
    parts: Mapping[str, float] = field(default_factory=dict)
    levels: Mapping[str, float] = field(default_factory=dict)
    insufficient_data: bool = False


# --- weights, score, confluence, analysis --------------------------------------------------------


def signal_weights(regime: Regime, config: Config) -> dict[SignalName, float]:
    """Base weights times every adaptive row that applies (RANGE, HIGH_VOLATILITY, ASIAN), all together."""
    sc = config.signals
    rows = []
    if regime.structure is Structure.RANGE:
        rows.append(sc.adaptive_weights.RANGE)
    if regime.volatility is Volatility.HIGH:
        rows.append(sc.adaptive_weights.HIGH_VOLATILITY)
    if regime.session is Session.ASIAN:
        rows.append(sc.adaptive_weights.ASIAN)
    out = {}
    for name in SignalName:
        w = float(getattr(sc.weights, name.value))
        for row in rows:
            w *= float(getattr(row, name.value))
        out[name] = w
    return out


def confluence(weighted: Iterable[float], ratio_cut: float = 0.7) -> tuple[Confluence, float]:
    """FAVOURABLE/UNFAVOURABLE when one side holds ≥ 70 % of the weighted total, else MIXED, or NEUTRAL."""
    values = list(weighted)
    pos = sum(v for v in values if v > 0)
    neg = -sum(v for v in values if v < 0)
    if pos + neg == 0:
        return Confluence.NEUTRAL, 0.0
    ratio = max(pos, neg) / (pos + neg)
    if ratio >= ratio_cut:
        return (Confluence.FAVOURABLE if pos > neg else Confluence.UNFAVOURABLE), ratio
    return Confluence.MIXED, ratio


def analysis_text(
    score: float, ratio: float, weighted: Iterable[float], signals: Iterable[SignalResult]
) -> str:
    """The status line of spec §4.7; X in "confluence (X)" is the side holding the larger weighted share."""
    if score >= 3:
        parts = ["Strong favourable"]
    elif score >= 1:
        parts = ["Moderate favourable"]
    elif score <= -3:
        parts = ["Strong unfavourable"]
    elif score <= -1:
        parts = ["Moderate unfavourable"]
    else:
        parts = ["Neutral"]
    values = list(weighted)
    side = (
        "FAVOURABLE" if sum(v for v in values if v > 0) > -sum(v for v in values if v < 0) else "UNFAVOURABLE"
    )
    if ratio >= 0.7:
        parts.append(f"High confluence ({side})")
    elif ratio >= 0.5:
        parts.append(f"Moderate confluence ({side})")
    else:
        parts.append("Mixed signals")
    key = [f"{s.name.value}={s.raw:g}" for s in signals if abs(s.raw) >= 2]
    if key:
        parts.append("Key signals: " + ", ".join(key))
    return " | ".join(parts)


# --- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """One deep check's verdict for one trade: what the state machine and the status need."""

    signals: tuple[SignalResult, ...]
    weights: Mapping[SignalName, float]
    score: float
    confluence: Confluence
    confluence_ratio: float
    analysis: str
    regime: Regime
    thresholds: Thresholds
    vwap_flip_active: bool = False
    bar_time: int | None = None
    atr_m15: float | None = None
    atr_m5: float | None = None  # the fast timeframe's: the noise floor of stop moves

    def signal(self, name: SignalName) -> SignalResult:
        return next(s for s in self.signals if s.name is name)

    def part(self, name: SignalName, part: str) -> float:
        return float(self.signal(name).parts.get(part, 0.0))

    @property
    def choch_against(self) -> bool:
        """S1's CHOCH part is negative: terminal (T0)."""
        return self.part(SignalName.STRUCTURE, "choch") < 0

    @property
    def choch_bar(self) -> int | None:
        """Open time of the slow bar whose close made the CHOCH break (None without CHOCH)."""
        at = self.signal(SignalName.STRUCTURE).levels.get("choch_bar")
        return None if at is None else int(at)

    @property
    def bos_resume(self) -> bool:
        """S1's BOS part is the full +3 with the trade (T7, T10)."""
        return self.part(SignalName.STRUCTURE, "bos") > 0

    @property
    def bar_closed_at(self) -> datetime | None:
        """Close time of M15 bar t, for T7's "a bar closed after entering HEDGED"."""
        return None if self.bar_time is None else datetime.fromtimestamp(self.bar_time + 900, UTC)


# --- warning counters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WarningCounter:
    """One warning type's count and when it next decays (persisted by the caller)."""

    count: int = 0
    expires_at: datetime | None = None


def warning_hits(evaluation: Evaluation, config: Config) -> dict[str, int]:
    """This evaluation's warnings per type (spec §4.8; volume warns at ≤ -1, B-SIG-5)."""
    e, s = evaluation, SignalName
    return {
        "structural": int(e.part(s.STRUCTURE, "bos") < 0) + int(e.part(s.STRUCTURE, "choch") < 0),
        "vwap": int(e.part(s.VWAP_VOLUME, "flip") == config.vwap_signal.flip_against)
        + int(e.part(s.VWAP_VOLUME, "volume") <= -1),
        "momentum": int(e.part(s.MOMENTUM, "rsi") == -2) + int(e.part(s.MOMENTUM, "macd") == -1),
    }


def update_warnings(
    previous: Mapping[str, WarningCounter], hits: Mapping[str, int], now: datetime, config: Config
) -> dict[str, WarningCounter]:
    """A type warned now takes the new count for 1800 s; otherwise an expired count drops by one per check."""
    decay = timedelta(seconds=config.warnings.decay_s)
    out: dict[str, WarningCounter] = {}
    for kind in sorted(set(previous) | set(hits)):
        prev = previous.get(kind, WarningCounter())
        count = hits.get(kind, 0)
        if count > 0:
            out[kind] = WarningCounter(count, now + decay)
        elif prev.count > 0 and prev.expires_at is not None and now >= prev.expires_at:
            left = prev.count - 1
            out[kind] = WarningCounter(left, now + decay if left else None)
        else:
            out[kind] = prev
    return out


__all__ = [
    "Confluence",
    "Evaluation",
    "SignalName",
    "SignalResult",
    "WarningCounter",
    "analysis_text",
    "confluence",
    "signal_weights",
    "update_warnings",
    "warning_hits",
]
