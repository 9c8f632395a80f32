"""Bar windows, merges, gaps, server time, symbol keys, session VWAP and spread helpers."""

from __future__ import annotations

from datetime import time as dtime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtms.engine.market import (
    BarWindow,
    ServerTime,
    SessionVwap,
    session_starts,
    spread_median,
    spread_points,
    symbol_key,
    vwap_series,
    vwap_slope,
)
from dtms.errors import ConfigError
from tests.strategies_engine import T0, at, bars, rates

M5 = 300


def window() -> BarWindow:
    return BarWindow(M5, 600, 5.0)


def test_forming_bar_is_pending_and_replaced_by_every_fetch() -> None:
    """The forming bar never freezes: each fetch replaces it, and it is not final (B-DATA-2)."""
    w = window()
    times = [T0 + i * M5 for i in range(3)]
    w.merge(rates(times, [1, 2, 3]), at(T0 + 2 * M5 + 10))
    assert list(w.final()["time"]) == times[:2]
    assert list(w.pending()["close"]) == [3]
    w.merge(rates(times, [1, 2, 3.5]), at(T0 + 2 * M5 + 20))
    assert list(w.pending()["close"]) == [3.5]
    assert len(w) == 2


def test_bar_becomes_final_only_with_a_fetch_after_close_plus_delay() -> None:
    """At close + 4 s the bar is still pending; a fetch at close + 5 s makes it final with those values."""
    w = window()
    close_t = T0 + M5
    w.merge(rates([T0], [1.0]), at(close_t + 4))
    assert len(w) == 0
    assert not w.is_closed(T0, at(close_t + 4))
    res = w.merge(rates([T0, T0 + M5], [1.5, 2.0]), at(close_t + 5))
    assert w.is_closed(T0, at(close_t + 5))
    assert res.appended == (T0,)
    assert w.final()["close"][0] == 1.5
    assert w.final()["final"].all()
    assert res.pending == (T0 + M5,)


def test_same_open_time_replaces_and_reports_revision() -> None:
    """A final bar whose values change is replaced and reported as revised; unchanged bars are not."""
    w = window()
    times = [T0 + i * M5 for i in range(3)]
    o = [1, 1, 1]
    w.merge(rates(times, [1, 2, 3], open_=o), at(T0 + 10 * M5))
    res = w.merge(rates(times, [1, 2.5, 3], open_=o), at(T0 + 10 * M5))
    assert res.revised == (T0 + M5,)
    assert res.appended == ()
    assert w.final()["close"][1] == 2.5
    assert w.merge(rates(times, [1, 2.5, 3], open_=o), at(T0 + 10 * M5)).revised == ()


def test_window_keeps_capacity_dropping_the_oldest() -> None:
    """The window is bounded: merging beyond capacity drops the oldest bars."""
    w = BarWindow(M5, 5, 5.0)
    w.merge(rates([T0 + i * M5 for i in range(8)], list(range(8))), at(T0 + 100 * M5))
    assert list(w.final()["close"]) == [3, 4, 5, 6, 7]


def test_non_overlapping_fetch_reports_missing_range() -> None:
    """A batch starting more than one interval after the newest bar needs the range in between first."""
    w = window()
    w.merge(rates([T0, T0 + M5], [1, 2]), at(T0 + 10 * M5))
    batch = rates([T0 + 5 * M5, T0 + 6 * M5], [5, 6])
    assert w.missing_range(batch) == (T0 + 2 * M5, T0 + 4 * M5)
    assert w.missing_range(rates([T0 + 2 * M5], [3])) is None


def test_missing_range_is_capped_at_one_window() -> None:
    """After a long outage at most one window of bars is requested."""
    w = BarWindow(M5, 10, 5.0)
    w.merge(rates([T0], [1]), at(T0 + 2 * M5))
    start, end = w.missing_range(rates([T0 + 1000 * M5], [1]))  # type: ignore[misc]
    assert (end - start) // M5 + 1 == 10


def test_gap_detected_beyond_gap_factor_intervals() -> None:
    """Open times 600 s apart are no M5 gap; 900 s apart are."""
    w = window()
    w.merge(rates([T0, T0 + 2 * M5, T0 + 5 * M5], [1, 2, 3]), at(T0 + 100 * M5))
    gaps = w.gaps(2.0)
    assert len(gaps) == 1
    assert (gaps[0].gap_start, gaps[0].gap_end, gaps[0].duration_s) == (T0 + 3 * M5, T0 + 5 * M5, 2 * M5)


def test_server_time_fixed_offset() -> None:
    """A +7200 s server clock reads two hours ahead of UTC."""
    st = ServerTime(7200)
    assert st.to_utc(np.array([T0 + 7200]))[0] == T0


def test_server_time_iana_zone_follows_dst() -> None:
    """Europe/Athens is UTC+2 in January and UTC+3 in July."""
    st = ServerTime("Europe/Athens")
    jan = T0 + 2 * 3600
    jul = T0 + 182 * 86400 + 3 * 3600
    utc = st.to_utc(np.array([jan, jul]))
    assert list(utc) == [T0, T0 + 182 * 86400]
    r = st.rates_to_utc(rates([jan], [1.0]))
    assert r["time"][0] == T0


def test_server_time_mismatch_beyond_120_s() -> None:
    """A tick stamped 7200 s ahead matches a +7200 setting; 121 s more is a mismatch."""
    st = ServerTime(7200)
    now = at(T0)
    assert not st.mismatch(T0 + 7200 + 120, now)
    assert st.mismatch(T0 + 7200 + 121, now)
    assert ServerTime(0).mismatch(T0 + 7200, now)


def test_server_time_is_required() -> None:
    """No guessing: a missing setting is a configuration error."""
    with pytest.raises(ConfigError):
        ServerTime(None)


@pytest.mark.parametrize(
    ("broker", "expected"),
    [
        ("XAUUSD", ("XAUUSD", True)),
        ("XAUUSDc", ("XAUUSD", True)),
        ("EURUSD.pro", ("EURUSD", True)),
        ("GOLD", ("XAUUSD", True)),
        ("US30", ("default", False)),
    ],
)
def test_symbol_key_mapping(broker: str, expected: tuple[str, bool]) -> None:
    """Exact, then alias, then suffix stripped, else default (B-REG-2)."""
    known = ["XAUUSD", "EURUSD", "default"]
    assert symbol_key(broker, known, {"GOLD": "XAUUSD"}, r"[.\-_]?[a-z]+$") == expected


def test_vwap_series_hand_computed_and_session_reset() -> None:
    """VWAP = Σ tp·v / Σ v within a session; a new UTC day restarts it."""
    b = bars(
        [10, 20, 30],
        step=M5,
        start=T0 + 86400 - 2 * M5,
        high=[10, 20, 30],
        low=[10, 20, 30],
        volume=[1, 3, 5],
    )
    v = vwap_series(b)
    assert v[0] == pytest.approx(10.0)
    assert v[1] == pytest.approx((10 + 60) / 4)
    assert v[2] == pytest.approx(30.0)  # the third bar opens at 00:00 of the next day


def test_vwap_undefined_without_volume() -> None:
    """Σ tick_volume = 0 leaves the VWAP undefined (no fallback to typical prices)."""
    s = SessionVwap()
    s.update(bars([10, 11], step=M5, volume=0))
    assert s.value is None
    assert np.isnan(vwap_series(bars([10], step=M5, volume=0))).all()


def test_session_starts_in_configured_zone() -> None:
    """With a 22:00 New York start (03:00 UTC in January), 02:00 UTC is in the previous day's session."""
    starts = session_starts(np.array([T0 + 2 * 3600, T0 + 4 * 3600]), "America/New_York", dtime(22, 0))
    assert list(starts) == [T0 - 21 * 3600, T0 + 3 * 3600]
    utc = session_starts(np.array([T0 + 3600]), "UTC", dtime(0, 0))
    assert utc[0] == T0


def test_each_final_bar_is_added_once() -> None:
    """Updating twice with the same window changes nothing (B-DATA-1); it matches the vectorized series."""
    b = bars([10, 11, 12, 13], step=M5, volume=[5, 6, 7, 8])
    s = SessionVwap()
    s.update(b)
    first = (s.value, s.sum_v)
    s.update(b)
    s.update(b[:2])
    assert (s.value, s.sum_v) == first
    assert s.value == pytest.approx(vwap_series(b)[-1])
    assert list(s.series.values()) == pytest.approx(list(vwap_series(b)))


def test_revision_recomputes_the_session() -> None:
    """A revised bar recomputes the session VWAP from the window rather than adding again."""
    b = bars([10, 11, 12], step=M5, volume=[5, 6, 7])
    s = SessionVwap()
    s.update(b)
    b2 = b.copy()
    b2["close"][1] = 20.0
    s.update(b2, revised=[int(b2["time"][1])])
    assert s.value == pytest.approx(vwap_series(b2)[-1])
    assert s.sum_v == 18


def test_slope_is_computed_on_vwap_values() -> None:
    """slope = (VWAP_t - VWAP_{t-2}) / VWAP_{t-2}, 0 with fewer than 3 bars (B-SIG-2)."""
    b = bars([10, 20, 30], step=M5, high=[10, 20, 30], low=[10, 20, 30], volume=1)
    s = SessionVwap()
    s.update(b[:2])
    assert s.slope() == 0.0
    s.update(b)
    vw = vwap_series(b)  # 10, 15, 20: the price moved 200 %, the VWAP 100 %
    assert s.slope() == pytest.approx((vw[2] - vw[0]) / vw[0]) == pytest.approx(1.0)
    assert vwap_slope([1.0, 2.0], 3) == 0.0


def test_spread_helpers() -> None:
    """Spread in points and the median of samples."""
    assert spread_points(1.1000, 1.1002, 0.00001) == pytest.approx(20)
    assert spread_median([3, 1, 2]) == 2
    assert spread_median([]) is None


def _reference_merge(final: dict[int, float], batch: list[tuple[int, float]], now_s: float, capacity: int):
    """The merge rule in its plainest form, one bar at a time: final bars by open time, close only."""
    appended, revised = [], []
    for t, close in sorted(batch, key=lambda b: b[0]):
        if now_s < t + M5 + 5.0:
            continue  # not final: pending
        if t in final:
            if final[t] != close:
                revised.append(t)
                final[t] = close
        else:
            appended.append(t)
            final[t] = close
    kept = dict(sorted(final.items())[-capacity:])
    return kept, [t for t in appended if t in kept], revised


@given(
    fetches=st.lists(
        st.lists(st.tuples(st.integers(0, 30), st.sampled_from([1.0, 1.5, 2.0])), max_size=8, unique_by=lambda b: b[0]),
        min_size=1,
        max_size=8,
    ),
    capacity=st.integers(1, 12),
)
@settings(max_examples=200, deadline=None)
def test_merge_matches_a_bar_by_bar_reference(fetches, capacity) -> None:
    """Appends, revisions and the capacity cut of `merge` equal a one-bar-at-a-time model over any fetches."""
    w = BarWindow(M5, capacity, 5.0)
    model: dict[int, float] = {}
    for n, fetch in enumerate(fetches):
        now_s = T0 + (n + 3) * 4 * M5
        batch = [(T0 + k * M5, c) for k, c in fetch]
        res = w.merge(rates([t for t, _ in batch], [c for _, c in batch], open_=[1.0] * len(batch),
                            high=[3.0] * len(batch), low=[0.5] * len(batch)), at(now_s))  # fmt: skip
        model, appended, revised = _reference_merge(model, batch, now_s, capacity)
        assert list(w.final()["time"]) == list(model)
        assert list(w.final()["close"]) == list(model.values())
        assert (sorted(res.appended), sorted(res.revised)) == (sorted(appended), sorted(revised))
