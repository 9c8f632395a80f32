"""Cadence: start conditions, fast intervals with overrides, scheduled and event-triggered deep checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dtms.config import Config, Volatility
from dtms.engine.cadence import (
    ActivationReason,
    DeepDue,
    DeepReason,
    activation,
    cooldown_until_s,
    deep_due,
    event_trigger,
    fast_due,
    fast_interval_s,
)
from dtms.models import TradeState

CFG = Config()
NOW = datetime(2024, 1, 8, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("r", "age", "reason"),
    [
        (0.2, 0, ActivationReason.PROFIT),
        (0.19, 899, None),
        (None, 900, ActivationReason.AGE),
        (-0.5, 0, ActivationReason.EMERGENCY),
        (-0.49, 100, None),
        (None, 899, None),
        (0.5, 1000, ActivationReason.PROFIT),
    ],
)
def test_activation(r: float | None, age: float, reason: ActivationReason | None) -> None:
    """R ≥ +0.2, age ≥ 900 s or R ≤ -0.5; unknown R leaves only the age condition."""
    assert activation(r, age, CFG) is reason


@pytest.mark.parametrize(
    ("state", "vol", "flat", "cfg", "seconds"),
    [
        (TradeState.HEDGED, Volatility.HIGH, False, {}, 15),
        (TradeState.HEDGED, Volatility.NORMAL, True, {}, 60),
        (TradeState.HEALTHY, Volatility.LOW, True, {}, 60),
        (TradeState.HEALTHY, Volatility.NORMAL, False, {}, 30),
        (TradeState.HEALTHY, Volatility.HIGH, False, {"monitoring": {"high_vol_override": False}}, 30),
        (TradeState.HEALTHY, Volatility.LOW, True, {"monitoring": {"flat_override": False}}, 30),
        (TradeState.WARNING_L1, None, False, {}, 30),
    ],
)
def test_fast_interval_first_match(
    state: TradeState, vol: Volatility | None, flat: bool, cfg: dict[str, Any], seconds: float
) -> None:
    """15 s HIGH volatility, 60 s HEDGED, 60 s flat, else 30 s; both overrides can be switched off (P-4)."""
    assert fast_interval_s(state, vol, flat, Config.from_mapping(cfg)) == seconds


def test_fast_due() -> None:
    """Due when never run or the interval has passed."""
    assert fast_due(None, NOW, 30)
    assert fast_due(NOW - timedelta(seconds=30), NOW, 30)
    assert not fast_due(NOW - timedelta(seconds=29), NOW, 30)


def test_scheduled_deep_check_every_900_s() -> None:
    """900 s after the previous deep check, not before."""
    assert deep_due(NOW - timedelta(seconds=900), NOW, CFG) == DeepDue(DeepReason.SCHEDULED)
    assert deep_due(NOW - timedelta(seconds=899), NOW, CFG) is None


def test_event_deep_check_respects_cooldown_from_last_deep_check() -> None:
    """An event triggers at most once per 600 s since the last deep check of any kind."""
    assert deep_due(NOW - timedelta(seconds=599), NOW, CFG, event="price_move") is None
    assert deep_due(NOW - timedelta(seconds=600), NOW, CFG, event="price_move") == DeepDue(
        DeepReason.EVENT, "price_move"
    )
    assert cooldown_until_s(NOW - timedelta(seconds=100), NOW, CFG) == 500
    assert cooldown_until_s(None, NOW, CFG) == 0


@pytest.mark.parametrize(
    ("kw", "reason"),
    [({"timer_expired": True}, DeepReason.TIMER_EXPIRED), ({"just_activated": True}, DeepReason.ACTIVATION)],
)
def test_timer_expiry_and_activation_bypass_cooldown(kw: dict[str, Any], reason: DeepReason) -> None:
    """Timer expiry and activation run at once, even one second after a deep check."""
    assert deep_due(NOW - timedelta(seconds=1), NOW, CFG, **kw) == DeepDue(reason)


def test_event_triggers() -> None:
    """(a) slope ≥ threshold with counter ≥ 2 either way; (b) mid moved > 0.2 % since the last deep check."""
    assert event_trigger(-0.002, 0.001, 2, None, None, CFG) == "vwap_flip"
    assert event_trigger(0.002, 0.001, 2, None, None, CFG) == "vwap_flip"
    assert event_trigger(0.002, 0.001, 1, 100.0, 100.0, CFG) is None
    assert event_trigger(0.0, 0.001, 0, 100.21, 100.0, CFG) == "price_move"
    assert event_trigger(0.0, 0.001, 0, 99.79, 100.0, CFG) == "price_move"
    assert event_trigger(0.0, 0.001, 0, 100.19, 100.0, CFG) is None
    assert event_trigger(0.0, 0.001, 0, 100.5, None, CFG) is None
