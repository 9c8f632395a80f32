"""Bars in (MetaTrader's CSV export, plain CSV, arrays, synthetic data); the intra-bar path and crossings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dtms.sim
from dtms.errors import ConfigError, DataError
from dtms.sim.feed import Series
from dtms.sim.loaders import read_csv
from dtms.sim.synth import RATES_DTYPE, synthetic_bars

MT5_EXPORT = (
    "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
    "2024.01.02\t00:00:00\t1.10427\t1.10452\t1.10410\t1.10441\t120\t0\t8\n"
    "2024.01.02\t00:01:00\t1.10441\t1.10460\t1.10438\t1.10455\t95\t0\t9\n"
    "2024.01.02\t00:02:00\t1.10455\t1.10456\t1.10401\t1.10405\t130\t0\t8\n"
)


def test_reads_metatrader_export(tmp_path: Path) -> None:
    path = tmp_path / "EURUSD_M1_202401020000_202401020002.csv"
    path.write_text(MT5_EXPORT)
    rates = read_csv(path)
    assert rates.dtype == RATES_DTYPE
    assert len(rates) == 3
    assert rates["time"][0] == int(datetime(2024, 1, 2, tzinfo=UTC).timestamp())
    assert (rates["spread"][1], rates["tick_volume"][2], rates["close"][2]) == (9, 130, 1.10405)


def test_reads_plain_ohlcv_with_iso_or_epoch_times(tmp_path: Path) -> None:
    iso = tmp_path / "iso.csv"
    iso.write_text(
        "time,open,high,low,close,volume\n2024-01-02T00:00:00Z,10,11,9,10.5,3\n"
        "2024-01-02 00:05:00,10.5,12,10,11,4\n"
    )
    epoch = tmp_path / "epoch.csv"
    epoch.write_text("timestamp;open;high;low;close\n1704153600;10;11;9;10.5\n1704153900000;10.5;12;10;11\n")
    a, b = read_csv(iso), read_csv(epoch)
    assert list(a["time"]) == list(b["time"]) == [1704153600, 1704153900]
    assert a["tick_volume"][1] == 4
    assert b["tick_volume"][1] == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("time,open,high,low\n1,1,1,1\n", "missing columns"),
        ("time,open,high,low,close\n1,1,2,0.5,1\n1,1,2,0.5,1\n", "increase strictly"),
        ("time,open,high,low,close\n1,1,0.9,0.5,1\n", "high/low"),
        ("time,open,high,low,close\n1,1,2,-1,1\n", "positive"),
        ("time,open,high,low,close\nyesterday,1,2,0.5,1\n", "unreadable time"),
        ("time,open,high,low,close\n1,1,2,x,1\n", "row 1"),
    ],
)
def test_bad_files_raise_data_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_csv(path)


def test_terminal_from_a_csv_trades_its_symbol(tmp_path: Path) -> None:
    path = tmp_path / "GBPUSD_M1.csv"
    rows = ["<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"]
    for i in range(300):
        rows.append(
            f"2024.01.02\t{i // 60:02d}:{i % 60:02d}:00\t1.27000\t1.27010\t1.26990\t1.27005\t10\t0\t12"
        )
    path.write_text("\n".join(rows))
    term = dtms.sim.open(tmp_path / "t.db", bars=path, clock="manual")
    term.initialize()
    assert [s.name for s in term.symbols_get()] == ["GBPUSD"]
    assert term.now() == datetime(2024, 1, 2, 1, 15, tzinfo=UTC)  # a quarter into the data
    tick = term.symbol_info_tick("GBPUSD")
    assert tick.ask == pytest.approx(tick.bid + 0.00012)


def test_attaching_with_conflicting_arguments_is_refused(tmp_path: Path) -> None:
    dtms.sim.open(tmp_path / "t.db", clock="manual", account="netting")
    dtms.sim.open(tmp_path / "t.db")  # attaching without arguments is fine
    with pytest.raises(ConfigError, match="account='hedging'"):
        dtms.sim.open(tmp_path / "t.db", account="hedging")


def test_synthetic_bars_are_deterministic_per_seed() -> None:
    a = synthetic_bars("EURUSD", 1_767_000_000, 1_767_000_000 + 5 * 86400, digits=5, seed=3)
    b = synthetic_bars.__wrapped__("EURUSD", 1_767_000_000, 1_767_000_000 + 5 * 86400, digits=5, seed=3)
    c = synthetic_bars.__wrapped__("EURUSD", 1_767_000_000, 1_767_000_000 + 5 * 86400, digits=5, seed=4)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_synthetic_bars_contain_the_moves_the_engine_must_survive() -> None:
    """Weekend gaps, intraday jumps and strong adverse moves (several percent within a day)."""
    start = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp())
    rates = synthetic_bars("XAUUSD", start, start + 28 * 86400, digits=2, seed=0)
    assert (rates["high"] >= np.maximum(rates["open"], rates["close"])).all()
    assert (np.diff(rates["time"]) > 3600).sum() >= 3  # weekend breaks
    jumps = np.abs(rates["open"][1:] - rates["close"][:-1]) / rates["close"][:-1]
    assert (jumps > 0.002).sum() >= 5  # gaps at opens
    closes = rates["close"]
    day = 1440
    swings = [
        (closes[i : i + day].max() - closes[i : i + day].min()) / closes[i]
        for i in range(0, len(closes) - day, day)
    ]
    assert max(swings) > 0.02


def test_intra_bar_path_follows_bar_direction() -> None:
    """Bullish bars go O → L → H → C, bearish ones O → H → L → C, at thirds of the bar."""
    rates = np.zeros(2, dtype=RATES_DTYPE)
    rates["time"] = [0, 60]
    rates["open"], rates["high"], rates["low"], rates["close"] = (
        [1.0, 2.0],
        [1.5, 2.5],
        [0.5, 1.5],
        [1.2, 1.8],
    )
    series = Series(rates, 60, 0.01, 2)
    assert [series.quote(t)[0] for t in (0, 20_000, 40_000, 59_999)] == pytest.approx(
        [1.0, 0.5, 1.5, 1.2], abs=0.01
    )
    assert [series.quote(60_000 + t)[0] for t in (0, 20_000, 40_000)] == [2.0, 2.5, 1.5]


def test_crossing_is_found_inside_the_first_bar_that_reaches_the_level() -> None:
    rates = np.zeros(3, dtype=RATES_DTYPE)
    rates["time"] = [0, 60, 180]  # a missing minute: the third bar opens after a pause
    rates["open"], rates["high"], rates["low"], rates["close"] = (
        [1.0, 1.0, 0.8],
        [1.1, 1.05, 0.85],
        [0.95, 0.92, 0.7],
        [1.0, 0.95, 0.75],
    )
    series = Series(rates, 60, 0.01, 2)
    t, price = series.first_cross(0, 240_000, 0.93, below=True, ask=False) or (0, 0.0)
    assert 60_000 < t < 120_000
    assert price == 0.93
    assert series.first_cross(0, 240_000, 0.9, below=True, ask=False) == (180_000, 0.8)  # through the gap
    assert series.first_cross(0, 179_000, 0.9, below=True, ask=False) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(-30_000, 400_000), st.integers(0, 400_000))
def test_bid_range_is_the_lowest_and_highest_point_of_the_path(t0: int, length: int) -> None:
    """`bid_range` over [t0, t1] (bars, a gap, before and after the data) equals the extremes of the very line
    `first_cross` tests, sampled at every millisecond where it can turn and at both ends."""
    rates = np.zeros(4, dtype=RATES_DTYPE)
    rates["time"] = [0, 60, 180, 240]  # a pause between the second and third bar
    rates["open"], rates["high"], rates["low"], rates["close"] = (
        [1.0, 1.0, 0.8, 0.9],
        [1.1, 1.05, 0.85, 1.2],
        [0.95, 0.92, 0.7, 0.88],
        [1.0, 0.95, 0.75, 1.1],
    )
    series = Series(rates, 60, 0.01, 2)
    t1 = t0 + length
    seen = [t0, t1] + [t for k in range(4) for t in series._points(k)[0] if t0 <= t <= t1]

    def price(t: int) -> float:
        k = series.index(t)
        return float(rates["open"][0]) if k < 0 else series._line(k, t)

    values = [price(t) for t in seen]
    assert series.bid_range(t0, t1) == (min(values), max(values))


def _export(rates: np.ndarray, style: str) -> str:
    """`rates` written as MetaTrader exports them, or as plain CSV with ISO or epoch-ms stamps."""
    stamps = [datetime.fromtimestamp(int(t), UTC) for t in rates["time"]]
    if style == "mt5":
        head = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"
        rows = [
            f"{s:%Y.%m.%d}\t{s:%H:%M:%S}\t{float(r['open'])!r}\t{float(r['high'])!r}\t{float(r['low'])!r}\t{float(r['close'])!r}\t"
            f"{r['tick_volume']}\t{r['real_volume']}\t{r['spread']}"
            for s, r in zip(stamps, rates, strict=True)
        ]
    else:
        head = "time,open,high,low,close,tick_volume,spread"
        rows = [
            f"{s.isoformat().replace('+00:00', 'Z') if style == 'iso' else int(r['time']) * 1000},"
            f"{float(r['open'])!r},{float(r['high'])!r},{float(r['low'])!r},{float(r['close'])!r},{r['tick_volume']}.0,{r['spread']}"
            for s, r in zip(stamps, rates, strict=True)
        ]
    return "\n".join([head, *rows]) + "\n"


@pytest.mark.parametrize("style", ["mt5", "iso", "epoch_ms"])
def test_whole_column_reading_returns_the_bars_written(tmp_path: Path, style: str) -> None:
    rates = synthetic_bars("EURUSD", 1_704_153_600, 1_704_153_600 + 3 * 86400, digits=5, seed=4).copy()
    rates["real_volume"] = 0 if style != "mt5" else rates["tick_volume"] // 3
    path = tmp_path / f"EURUSD_{style}.csv"
    path.write_text(_export(rates, style))
    back = read_csv(path)
    for name in ("time", "open", "high", "low", "close", "tick_volume", "spread", "real_volume"):
        assert np.array_equal(back[name], rates[name]), name


def test_stamps_with_offsets_are_converted_to_utc(tmp_path: Path) -> None:
    path = tmp_path / "offsets.csv"
    path.write_text(
        "time,open,high,low,close\n2024-01-02T01:00:00+01:00,1,2,0.5,1\n2024-01-02T00:05:00Z,1,2,0.5,1\n"
    )
    assert list(read_csv(path)["time"]) == [1704153600, 1704153900]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1704243540,1,2,oops,1,3,1", r"data row 1500: low 'oops' is not a number"),
        ("1704243540,1,2,0.5,1,7,inf", r"data row 1500: spread 'inf' is not a number"),
        ("2024-13-03T00:00:00,1,2,0.5,1,3,1", r"data row 1500: unreadable time"),
        ("1704243540,1,2", r"data row 1500: expected 7 fields, got 3"),
    ],
)
def test_a_bad_value_deep_in_a_file_is_named_by_its_row(tmp_path: Path, row: str, message: str) -> None:
    good = [f"{1_704_153_600 + 60 * n},1,2,0.5,1,3,1" for n in range(2000)]
    good[1499] = row
    path = tmp_path / "bad_row.csv"
    path.write_text("\n".join(["time,open,high,low,close,volume,spread", *good]) + "\n")
    with pytest.raises(DataError, match=message):
        read_csv(path)


def test_a_header_without_bars_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "header_only.csv"
    path.write_text("time,open,high,low,close\n")
    with pytest.raises(DataError, match="header but no bars"):
        read_csv(path)


def test_a_stamp_too_long_to_be_a_time_is_refused_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(f"time,open,high,low,close\n2024-01-02T00:00:00{'0' * 40},1,2,0.5,1\n")
    with pytest.raises(DataError, match="data row 1: unreadable time"):
        read_csv(path)
