"""The wake-up contract's session times: a session change wakes a trade only where its fast check decides
otherwise (the VWAP threshold follows the session; the flip latch and the VWAP event trigger follow it).

The end-to-end proof that skipping the other session changes changes nothing is the equivalence suite
(tests/test_replay_equivalence.py, the H1 case crosses every session); these pin the rule itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

import dtms
from dtms.config import Config
from dtms.engine import regime as rg
from dtms.engine.regime import Regime, Session, Structure, Volatility
from dtms.engine.wake import next_session_change, session_wake
from dtms.models import Direction, Trade

CONFIG = Config()
KEY = "default"
BASE = CONFIG.symbols.vwap_base[KEY]


@dataclass
class _Symbol:
    """What `session_wake` reads of a `SymbolData`: the regime of the last check, the key, the slope."""

    regime: Regime | None
    value: float
    key: str = KEY

    def slope(self) -> float:
        return self.value


def _trade(direction: Direction, **engine: Any) -> Trade:
    store = dtms.open(":memory:")
    trade = store.register_trade(1, "EURUSD", direction.value, 1.1, 0.1, sl=1.09 if direction is Direction.BUY else 1.11)
    store.close()
    return trade.model_copy(update={"engine": engine})


def _threshold(session: Session) -> float:
    return rg.thresholds(Regime(session, Volatility.NORMAL, Structure.TREND), KEY, CONFIG).vwap


def _at(hour: int, minute: int = 0, day: int = 8) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)  # a Tuesday


def _regime(now: datetime) -> Regime:
    return Regime(rg.session_at(now)[0], Volatility.NORMAL, Structure.TREND)


@pytest.mark.parametrize(
    ("now", "change"),
    [
        (_at(2), _at(8)),  # ASIAN -> LONDON
        (_at(12, 59), _at(13)),  # LONDON -> OVERLAP
        (_at(16, 30), _at(21)),  # NY -> ASIAN (its off-hours part)
        (_at(21, 30), _at(8, day=9)),  # 21:00-24:00 and 00:00-08:00 are one session: no change at midnight
    ],
)
def test_the_next_session_change_is_a_change_of_session_not_of_the_off_hours_flag(now, change):
    assert next_session_change(now) == change


@pytest.mark.parametrize("direction", [Direction.BUY, Direction.SELL])
def test_no_session_can_change_anything_when_the_slope_is_below_every_threshold(direction):
    now = _at(2)
    slope = 0.5 * CONFIG.vwap.flip_clear_ratio * min(_threshold(s) for s in Session)
    trade = _trade(direction, vwap_cross_counter=5, vwap_flip_active=False)
    assert session_wake(trade, _Symbol(_regime(now), -direction.sign * slope), now, CONFIG) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("direction", [Direction.BUY, Direction.SELL])
def test_the_first_session_whose_threshold_the_slope_reaches_wakes_the_trade(direction):
    """From ASIAN (x1.5) at 02:00: LONDON (x1.0) at 08:00 is still above the slope, OVERLAP (x0.7) at 13:00
    is not: the event trigger and the flip latch fire there, so 13:00 is the wake time."""
    now = _at(2)
    slope = (_threshold(Session.LONDON) + _threshold(Session.OVERLAP)) / 2
    adverse = -direction.sign * slope
    trade = _trade(direction, vwap_cross_counter=CONFIG.vwap.cross_min, vwap_flip_active=False)
    assert session_wake(trade, _Symbol(_regime(now), adverse), now, CONFIG) == _at(13)  # type: ignore[arg-type]


def test_the_trigger_needs_the_cross_counter():
    """Below `vwap.cross_min` crossings neither the trigger nor the latch can fire, whatever the session."""
    now = _at(2)
    trade = _trade(Direction.BUY, vwap_cross_counter=CONFIG.vwap.cross_min - 1, vwap_flip_active=False)
    slope = -_threshold(Session.OVERLAP) * 1.01
    assert session_wake(trade, _Symbol(_regime(now), slope), now, CONFIG) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("direction", [Direction.BUY, Direction.SELL])
def test_a_session_whose_higher_threshold_clears_the_latch_wakes_the_trade(direction):
    """The latch is set in OVERLAP (x0.7) on an adverse slope; at 21:00 ASIAN (x1.5) puts the slope below 0.7
    of its threshold, which clears the latch: that change wakes the trade (NY at 16:00 keeps it)."""
    now = _at(14)
    slope = 0.9 * CONFIG.vwap.flip_clear_ratio * _threshold(Session.ASIAN)
    assert slope >= CONFIG.vwap.flip_clear_ratio * _threshold(Session.NY)  # NY keeps the latch set
    trade = _trade(direction, vwap_cross_counter=0, vwap_flip_active=True)
    adverse = -direction.sign * slope
    assert session_wake(trade, _Symbol(_regime(now), adverse), now, CONFIG) == _at(21)  # type: ignore[arg-type]


def test_a_regime_of_another_session_than_now_wakes_at_once():
    """The clock moved into another session after the last classification: the next check classifies."""
    now = _at(8, 30)
    trade = _trade(Direction.BUY)
    regime = Regime(Session.ASIAN, Volatility.NORMAL, Structure.TREND)
    assert session_wake(trade, _Symbol(regime, 0.0), now, CONFIG) == now  # type: ignore[arg-type]
    assert session_wake(trade, _Symbol(None, 0.0), now, CONFIG) == now  # type: ignore[arg-type]
