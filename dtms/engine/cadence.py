"""Monitoring cadence: start conditions, the fast-check interval, and when a deep check is due."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from dtms.config import Config, Volatility
from dtms.models import TradeState


class ActivationReason(StrEnum):
    """Why an armed trade became active (spec §6.1)."""

    PROFIT = "profit"
    AGE = "age"
    EMERGENCY = "emergency"


class DeepReason(StrEnum):
    """Why a deep check is due; the first two bypass the event cooldown."""

    ACTIVATION = "activation"
    TIMER_EXPIRED = "timer_expired"
    SCHEDULED = "scheduled"
    EVENT = "event"


def activation(r_multiple: float | None, age_s: float, config: Config) -> ActivationReason | None:
    """R ≥ +0.2 (profit), age ≥ 900 s, or R ≤ -0.5 (emergency); only age counts while R is unknown."""
    mc = config.monitoring
    if r_multiple is not None and r_multiple >= mc.start_profit_r:
        return ActivationReason.PROFIT
    if age_s >= mc.start_age_s:
        return ActivationReason.AGE
    if r_multiple is not None and r_multiple <= mc.start_emergency_r:
        return ActivationReason.EMERGENCY
    return None


def fast_interval_s(state: TradeState, volatility: Volatility | None, flat: bool, config: Config) -> float:
    """First match: 15 s HIGH volatility (override on); 60 s HEDGED; 60 s flat (override on); else 30 s."""
    mc = config.monitoring
    if mc.high_vol_override and volatility is Volatility.HIGH:
        return mc.high_vol_fast_s
    if state is TradeState.HEDGED:
        return mc.hedged_fast_s
    if mc.flat_override and flat:
        return mc.flat_fast_s
    return mc.fast_s


def next_due(
    now: datetime, trade_dues: Sequence[datetime | None], last_reconcile: datetime | None, config: Config
) -> datetime:
    """The next tick that can change anything (see `Engine.next_due`): a trade's next fast check (None: at
    once), the next reconciliation, or the first tick of the next UTC hour (the hourly equity baseline)."""
    if any(d is None for d in trade_dues):
        return now
    due = [now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)]
    if last_reconcile is not None:
        due.append(last_reconcile + timedelta(seconds=config.reconcile.interval_s))
    due += [d for d in trade_dues if d is not None]
    return max(now, min(due))


def fast_due(last_fast_at: datetime | None, now: datetime, interval_s: float) -> bool:
    """A fast check is due when none ran yet or `interval_s` has passed since the last one."""
    return last_fast_at is None or (now - last_fast_at).total_seconds() >= interval_s


def event_trigger(
    slope: float,
    vwap_threshold: float,
    cross_counter: int,
    mid: float | None,
    mid_at_last_deep: float | None,
    config: Config,
) -> str | None:
    """(a) |slope| ≥ threshold with counter ≥ 2, either way; (b) mid moved > 0.2 % since the last deep check.

    (b) is measured from the mid at the last deep check, never from entry (the original's P-5).
    """
    if abs(slope) >= vwap_threshold and cross_counter >= config.vwap.cross_min:
        return "vwap_flip"
    moved = mid is not None and mid_at_last_deep and abs(mid - mid_at_last_deep) / mid_at_last_deep
    if moved and moved > config.monitoring.price_move_trigger:
        return "price_move"
    return None


@dataclass(frozen=True)
class DeepDue:
    """A due deep check and its reason (`detail` names the event for EVENT)."""

    reason: DeepReason
    detail: str | None = None


def deep_due(
    last_deep_at: datetime | None,
    now: datetime,
    config: Config,
    *,
    just_activated: bool = False,
    timer_expired: bool = False,
    event: str | None = None,
) -> DeepDue | None:
    """Activation and timer expiry run at once; otherwise 900 s after the last deep check, or an event once
    the 600 s cooldown since the last deep check of any kind has passed (spec §6.2)."""
    if just_activated:
        return DeepDue(DeepReason.ACTIVATION)
    if timer_expired:
        return DeepDue(DeepReason.TIMER_EXPIRED)
    if last_deep_at is None:
        # NOTE: an active trade without any deep check is one activated before a restart: run it now.
        return DeepDue(DeepReason.SCHEDULED)
    since = (now - last_deep_at).total_seconds()
    if since >= config.monitoring.deep_s:
        return DeepDue(DeepReason.SCHEDULED)
    if event is not None and since >= config.monitoring.deep_cooldown_s:
        return DeepDue(DeepReason.EVENT, event)
    return None


def cooldown_until_s(last_deep_at: datetime | None, now: datetime, config: Config) -> float:
    """Seconds until an event may trigger a deep check again (0 when it may now)."""
    if last_deep_at is None:
        return 0.0
    return max(0.0, config.monitoring.deep_cooldown_s - (now - last_deep_at).total_seconds())


__all__ = [
    "ActivationReason",
    "DeepDue",
    "DeepReason",
    "activation",
    "cooldown_until_s",
    "deep_due",
    "event_trigger",
    "fast_due",
    "fast_interval_s",
    "next_due",
]
