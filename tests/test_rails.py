"""Safety rails: loss limits, stop streaks, news blackout, spread spikes, stale data and gating."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dtms.config import Config
from dtms.engine.machine import ActionType
from dtms.engine.rails import (
    ClosedPosition,
    NewsEvent,
    TradingState,
    consecutive_stops_tripped,
    daily_loss_tripped,
    data_stale,
    day_start,
    evaluate,
    hour_start,
    hourly_loss_tripped,
    is_allowed,
    news_blackout,
    parse_calendar,
    spread_spike,
    symbol_currencies,
    worse,
)
from dtms.errors import DataError

CFG = Config()
NOW = datetime(2024, 1, 8, 14, 30, 15, tzinfo=UTC)
A, R, H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED


@pytest.mark.parametrize(
    ("action", "state", "allowed"),
    [
        (ActionType.OPEN_HEDGE, R, False),
        (ActionType.CLOSE_HEDGE, R, False),
        (ActionType.RE_ADD_POSITION, R, False),
        (ActionType.TIGHTEN_SL, R, True),
        (ActionType.CLOSE_ALL, R, True),
        (ActionType.PARTIAL_CLOSE, R, True),
        (ActionType.OPEN_HEDGE, A, True),
        (ActionType.CLOSE_ALL, H, False),
    ],
)
def test_gating(action: ActionType, state: TradingState, allowed: bool) -> None:
    """REDUCING blocks risk-adding actions only; HALTED sends nothing."""
    assert is_allowed(action, state) is allowed


def test_worse_state_wins() -> None:
    """The effective state is the worse of account and symbol."""
    assert worse(A, R) is R
    assert worse(H, R, A) is H
    assert worse(A) is A


def test_loss_rails() -> None:
    """Daily: B0 - equity ≥ 2 % of B0; hourly: E_h - equity ≥ 1 % of B0."""
    assert daily_loss_tripped(10000, 9800, CFG)
    assert not daily_loss_tripped(10000, 9801, CFG)
    assert hourly_loss_tripped(9900, 9800, 10000, CFG)
    assert not hourly_loss_tripped(9900, 9801, 10000, CFG)
    assert day_start(NOW) == datetime(2024, 1, 8, tzinfo=UTC)
    assert hour_start(NOW) == NOW.replace(minute=0, second=0)


def _close(minutes_ago: int, sl: bool = True, profit: float = -10) -> ClosedPosition:
    return ClosedPosition(NOW - timedelta(minutes=minutes_ago), sl, profit)


def test_consecutive_stops() -> None:
    """The last 3 closes today all stopped out at a loss; yesterday's and reset ones do not count."""
    assert consecutive_stops_tripped([_close(30), _close(20), _close(10)], NOW, CFG)
    assert not consecutive_stops_tripped([_close(30), _close(20), _close(10, sl=False)], NOW, CFG)
    assert not consecutive_stops_tripped([_close(30), _close(20), _close(10, profit=5)], NOW, CFG)
    assert not consecutive_stops_tripped([_close(15 * 60), _close(20), _close(10)], NOW, CFG)
    assert not consecutive_stops_tripped(
        [_close(30), _close(20), _close(10)], NOW, CFG, NOW - timedelta(minutes=25)
    )


CSV = """time_utc,currency,impact,title
2024-01-08T15:00:00Z,USD,high,CPI
2024-01-08T16:00:00+00:00,EUR,medium,Speech
2024-01-09T08:00:00Z,ALL,HIGH,Global thing
"""


def test_parse_calendar() -> None:
    """Rows become UTC events, sorted; impact and currency normalised."""
    events = parse_calendar(CSV)
    assert [e.title for e in events] == ["CPI", "Speech", "Global thing"]
    assert events[0].time == datetime(2024, 1, 8, 15, tzinfo=UTC)
    assert events[2].impact == "high"


@pytest.mark.parametrize(
    "text",
    [
        "time,currency,impact,title\n",
        "time_utc,currency,impact,title\nyesterday,USD,high,x\n",
        "time_utc,currency,impact,title\n2024-01-08T15:00:00,USD,high,x\n",
        "time_utc,currency,impact,title\n2024-01-08T15:00:00Z,USD,huge,x\n",
        "time_utc,currency,impact,title\n2024-01-08T15:00:00Z,DOLLAR,high,x\n",
    ],
)
def test_malformed_calendar_raises(text: str) -> None:
    """Bad header, time without UTC offset, unknown impact or currency: DataError."""
    with pytest.raises(DataError):
        parse_calendar(text)


def test_news_blackout_window() -> None:
    """[event - 30 min, event + 15 min] for high-impact events on the symbol's currencies or ALL."""
    events = parse_calendar(CSV)
    usd = symbol_currencies("XAUUSD", CFG)
    assert usd == {"XAU", "USD"}
    cpi = datetime(2024, 1, 8, 15, tzinfo=UTC)
    assert news_blackout(events, usd, cpi - timedelta(minutes=30), CFG) is events[0]
    assert news_blackout(events, usd, cpi + timedelta(minutes=15), CFG) is events[0]
    assert news_blackout(events, usd, cpi - timedelta(minutes=31), CFG) is None
    assert news_blackout(events, usd, cpi + timedelta(minutes=16), CFG) is None
    assert (
        news_blackout(events, frozenset({"EUR"}), datetime(2024, 1, 8, 16, tzinfo=UTC), CFG) is None
    )  # medium
    assert news_blackout(events, frozenset(), datetime(2024, 1, 9, 8, tzinfo=UTC), CFG) is events[2]


def test_symbol_currencies_from_config_or_key() -> None:
    """Configured currencies win; six-letter keys split; others have none."""
    cfg = Config.from_mapping({"symbols": {"currencies": {"US30": ["usd"]}}})
    assert symbol_currencies("US30", cfg) == {"USD"}
    assert symbol_currencies("US30", CFG) == frozenset()
    assert isinstance(NewsEvent(NOW, "USD", "high", "x"), NewsEvent)


def test_spread_spike() -> None:
    """Current > 2 * median of hourly samples; inactive with fewer than 10 samples."""
    samples = [10.0] * 10
    assert spread_spike(20.1, samples, CFG)
    assert not spread_spike(20.0, samples, CFG)
    assert not spread_spike(1000, samples[:9], CFG)
    assert spread_spike(21, [1000.0] * 5 + [10.0] * 720, CFG)  # only the last 720 samples count


def test_data_staleness() -> None:
    """Stale when now - (newest final M5 close + 5 s) > 300 s, or the symbol is not ready."""
    t = int(NOW.timestamp()) - 300 - 5 - 300
    assert not data_stale(t, NOW, CFG)
    assert data_stale(t - 1, NOW, CFG)
    assert data_stale(None, NOW, CFG)
    assert data_stale(t + 100, NOW, CFG, ready=False)


def test_evaluate_combines_scopes() -> None:
    """Account rails make the account REDUCING, symbol rails the symbol; halt wins; stale data blocks deep."""
    v = evaluate({"daily_loss": False, "hourly_loss": True}, {"news": False})
    assert (v.account, v.symbol, v.effective, v.tripped, v.deep_check_allowed) == (
        R,
        A,
        R,
        ("hourly_loss",),
        True,
    )
    v2 = evaluate({}, {"spread": True}, data_stale_now=True)
    assert (v2.account, v2.symbol, v2.tripped, v2.deep_check_allowed) == (
        A,
        R,
        ("spread", "data_integrity"),
        False,
    )
    v3 = evaluate({}, {}, halted=True)
    assert (v3.effective, v3.deep_check_allowed) == (H, False)
