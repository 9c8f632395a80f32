"""Replay: the production engine on the simulated terminal with a stepped clock, against the baseline."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from dtms.broker.rates import RATES_DTYPE
from dtms.config import Config
from dtms.engine.symbols import SymbolData, check_timeframes, timeframe_s
from dtms.errors import ConfigError, DataError, InvalidArgumentError
from dtms.replay import Entry, load_bars, read_entries, replay, synthetic
from dtms.errors import ExtraNotInstalledError
from dtms.report import Report, TradeResult, plot, render, summarize, time_in_states

SYMBOL = "EURUSD"
CONTRACT = 100_000.0  # EURUSD lot size in the simulator: profit = move x volume x contract
SPREAD = 0.00012  # the EURUSD preset's 12 points, used when the bars carry no spread


@pytest.fixture(scope="module")
def m1() -> np.ndarray:
    return synthetic(SYMBOL, days=4, seed=0)


@pytest.fixture(scope="module")
def run(m1: np.ndarray) -> Report:
    """One generated-entries run shared by the tests that only read its report."""
    return replay(m1, symbol=SYMBOL, every=48, seed=3, warmup=100)


def aggregate(rates: np.ndarray, seconds: int) -> np.ndarray:
    """Coarser bars from finer ones (what a MetaTrader export of a higher timeframe holds)."""
    buckets = rates["time"] // seconds * seconds
    first = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    last = np.r_[first[1:], len(rates)] - 1
    out = np.zeros(len(first), dtype=RATES_DTYPE)
    out["time"] = buckets[first]
    out["open"], out["close"] = rates["open"][first], rates["close"][last]
    out["high"] = np.maximum.reduceat(rates["high"], first)
    out["low"] = np.minimum.reduceat(rates["low"], first)
    out["tick_volume"] = np.add.reduceat(rates["tick_volume"], first)
    return out


def write_ohlcv(path: Path, rates: np.ndarray) -> Path:
    lines = ["time,open,high,low,close,volume"]
    for r in rates:
        stamp = datetime.fromtimestamp(int(r["time"]), UTC).strftime("%Y-%m-%dT%H:%M:%S")
        lines.append(
            f"{stamp},{r['open']:.5f},{r['high']:.5f},{r['low']:.5f},{r['close']:.5f},{r['tick_volume']}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def write_mt5(path: Path, rates: np.ndarray) -> Path:
    lines = ["<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"]
    for r in rates:
        when = datetime.fromtimestamp(int(r["time"]), UTC)
        lines.append(
            f"{when:%Y.%m.%d}\t{when:%H:%M:%S}\t{r['open']:.5f}\t{r['high']:.5f}\t{r['low']:.5f}\t"
            f"{r['close']:.5f}\t{r['tick_volume']}\t0\t{r['spread']}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


# --- determinism -------------------------------------------------------------------------------------------


def test_same_inputs_give_byte_identical_reports(m1: np.ndarray, run: Report) -> None:
    """A second run of the same inputs serialises to the very same bytes, with no wall-clock figure in it."""
    again = replay(m1, symbol=SYMBOL, every=48, seed=3, warmup=100)
    assert again.to_json() == run.to_json()
    data = json.loads(run.to_json())
    assert "timing" not in data
    assert run.timing is not None
    assert run.timing["wall_s"] > 0  # measured, but kept out of the report


def test_generated_entries_follow_the_seed(run: Report) -> None:
    """Entries come every N fast bars after the warm-up, with directions drawn from the seed."""
    entries = [m.entry_at for m, _ in run.trades]
    gaps = {(datetime.fromisoformat(b) - datetime.fromisoformat(a)) for a, b in pairwise(entries)}
    assert min(gaps) >= timedelta(minutes=48 * 5)
    assert entries[0] == run.meta["start"]
    assert {m.direction for m, _ in run.trades} == {"BUY", "SELL"}
    for m, _ in run.trades:
        d = 1 if m.direction == "BUY" else -1
        assert m.sl is not None
        assert m.tp is not None
        assert d * (m.tp - m.entry_price) == pytest.approx(2.0 * d * (m.entry_price - m.sl), abs=2e-5)


# --- baseline versus managed -------------------------------------------------------------------------------


def test_the_baseline_holds_sl_and_tp_and_nothing_else(run: Report) -> None:
    """Baseline trades have no engine activity; each closes at its SL or TP (or at the end) for its P&L."""
    for _, b in run.trades:
        assert (b.actions, b.states, b.final_state) == ((), (), None)
        assert b.exit_reason in ("sl", "tp", "end")
        assert [e[3] for e in b.exits] == ["main"]
        d = 1 if b.direction == "BUY" else -1
        assert b.profit == pytest.approx(
            round(d * (b.exit_price - b.entry_price) * b.volume * CONTRACT, 2), abs=0.011
        )
        if b.exit_reason == "sl":
            assert d * (b.exit_price - b.sl) <= 1e-9  # at the stop, or beyond it after a gap
        if b.exit_reason == "tp":
            assert d * (b.exit_price - b.tp) >= -1e-9


def test_managed_trades_differ_only_where_the_engine_acted(run: Report) -> None:
    """A trade the engine never touched at the broker ends exactly as in the baseline; the others differ."""
    touched = 0
    for m, b in run.trades:
        assert (m.entry_at, m.entry_price, m.sl, m.tp, m.risk) == (
            b.entry_at,
            b.entry_price,
            b.sl,
            b.tp,
            b.risk,
        )
        if any(status == "DONE" for _, _, status in m.actions):
            touched += 1
        else:
            assert (m.profit, m.exit_at, m.exit_reason) == (b.profit, b.exit_at, b.exit_reason)
    assert touched > 0
    assert run.managed["net_profit"] != run.baseline["net_profit"]
    assert sum(run.actions.get("tighten_sl", {}).values()) > 0


def test_hand_checkable_trade_reaches_its_tp_in_both_runs() -> None:
    """A steady rise: a BUY 0.1 lot with TP 10 pips and SL 20 pips earns 10.00 (0.5 R) unmanaged."""
    n = 400
    rates = np.zeros(n, dtype=RATES_DTYPE)
    rates["time"] = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp()) + 300 * np.arange(n)
    rates["open"] = np.round(1.1 + 0.00002 * np.arange(n), 5)
    rates["close"] = np.round(rates["open"] + 0.00002, 5)
    rates["high"], rates["low"] = rates["close"] + 0.00001, rates["open"] - 0.00001
    rates["tick_volume"] = 100
    k = 200
    at = datetime.fromtimestamp(int(rates["time"][k]), UTC)
    entry = round(float(rates["open"][k]) + SPREAD, 5)
    report = replay(
        rates, symbol=SYMBOL, entries=[Entry(at, "BUY", 0.1, sl=entry - 0.0020, tp=entry + 0.0010)], warmup=30
    )
    ((m, b),) = report.trades
    assert (b.entry_price, b.exit_reason, b.exit_price) == (entry, "tp", pytest.approx(entry + 0.0010))
    assert (b.profit, b.risk, b.r) == (10.0, 20.0, 0.5)
    assert report.baseline["win_rate"] == 1.0
    assert report.baseline["profit_factor"] is None
    assert report.baseline["max_drawdown"] == 0.0
    assert m.profit > 0
    assert m.exit_reason in ("tp", "dtms")


def test_summary_numbers_on_a_tiny_hand_checkable_case() -> None:
    """+20, -10, -5 on a risk of 10 each: win rate 1/3, PF 4/3, drawdown 15, expectancy +1.67 / +0.167 R."""

    def trade(n: int, profit: float, exit_at: str, reason: str) -> TradeResult:
        return TradeResult(
            n,
            "BUY",
            0.1,
            "2026-01-05T10:00:00+00:00",
            1.1,
            1.099,
            1.102,
            10.0,
            exit_at,
            1.1,
            reason,
            profit,
            profit / 10.0,
        )

    trades = [
        trade(1, 20.0, "2026-01-05T11:00:00+00:00", "tp"),
        trade(2, -10.0, "2026-01-05T12:00:00+00:00", "sl"),
        trade(3, -5.0, "2026-01-05T13:00:00+00:00", "dtms"),
    ]
    s = summarize(trades)
    assert s == {
        "trades": 3,
        "wins": 1,
        "losses": 2,
        "win_rate": 0.3333,
        "avg_win_r": 2.0,
        "avg_loss_r": -0.75,
        "avg_win": 20.0,
        "avg_loss": -7.5,
        "expectancy_r": 0.1667,
        "expectancy": 1.67,
        "profit_factor": 1.333,
        "net_profit": 5.0,
        "max_drawdown": 15.0,
        "exits": {"dtms": 1, "sl": 1, "tp": 1},
    }


def test_time_in_states_runs_from_entry_to_exit() -> None:
    """Armed 15 min, HEALTHY 15 min, WARNING_L1 30 min; the CLOSED tail before the exit is not counted."""
    t = TradeResult(
        1,
        "BUY",
        0.1,
        "2026-01-05T10:00:00+00:00",
        1.1,
        1.099,
        None,
        10.0,
        "2026-01-05T11:05:00+00:00",
        1.099,
        "dtms",
        -10.0,
        -1.0,
        "CLOSED",
        states=(
            ("2026-01-05T10:00:00+00:00", "HEALTHY (armed)"),
            ("2026-01-05T10:15:00+00:00", "HEALTHY"),
            ("2026-01-05T10:30:00+00:00", "WARNING_L1"),
            ("2026-01-05T11:00:00+00:00", "CLOSED"),
        ),
    )
    states = time_in_states([t])
    assert {k: v["seconds"] for k, v in states.items() if v["seconds"]} == {
        "HEALTHY (armed)": 900.0,
        "HEALTHY": 900.0,
        "WARNING_L1": 1800.0,
    }
    assert states["WARNING_L1"]["share"] == 0.5


def test_render_shows_both_columns_aligned(run: Report) -> None:
    """The table has a managed, a baseline and a column per comparison rule, every row the same width."""
    text = render(run)
    rows = text.split("\n\n")[1].splitlines()
    assert rows[0].split() == ["managed", "baseline", *run.comparisons]
    assert len({len(r) for r in rows}) == 1
    assert any(r.startswith("win rate") for r in rows)
    assert "time in state (managed)" in text
    assert "VWAP slope" in text
    assert run.vwap_slope["bars"] > 0
    assert run.vwap_slope["abs"]["p50"] >= 0


def test_progress_is_reported_up_to_the_total(m1: np.ndarray) -> None:
    """The callback sees increasing bar counts and ends at (total, total)."""
    seen: list[tuple[int, int]] = []
    replay(m1, symbol=SYMBOL, every=144, warmup=100, progress=lambda d, t: seen.append((d, t)))
    assert len(seen) > 3
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1][0] == seen[-1][1]


# --- bars files --------------------------------------------------------------------------------------------


def test_mt5_export_and_plain_ohlcv_are_detected_and_read_alike(tmp_path: Path, m1: np.ndarray) -> None:
    """The same bars written both ways load to the same prices; the format is recognised."""
    part = m1[:500]
    mt5_rates, _, mt5_fmt = load_bars(write_mt5(tmp_path / "EURUSD_M1.csv", part))
    csv_rates, name, csv_fmt = load_bars(write_ohlcv(tmp_path / "bars.csv", part))
    assert (mt5_fmt, csv_fmt, name) == ("mt5", "ohlcv", "bars.csv")
    for field in ("time", "open", "high", "low", "close", "tick_volume"):
        assert np.array_equal(mt5_rates[field], csv_rates[field]), field
        assert np.allclose(mt5_rates[field], part[field]), field


BAD_BARS = {
    "unknown format": ("a,b,c\n1,2,3\n", "missing columns"),
    "empty": ("", "is empty"),
    "header only": ("time,open,high,low,close\n", "no bars"),
    "unsorted": (
        "time,open,high,low,close\n2026-01-05T08:01:00,1,1,1,1\n2026-01-05T08:00:00,1,1,1,1\n",
        "must increase strictly",
    ),
    "duplicate time": (
        "time,open,high,low,close\n2026-01-05T08:00:00,1,1,1,1\n2026-01-05T08:00:00,1,1,1,1\n",
        "must increase strictly",
    ),
    "NaN": ("time,open,high,low,close\n2026-01-05T08:00:00,1,nan,1,1\n", "finite and positive"),
    "high below low": ("time,open,high,low,close\n2026-01-05T08:00:00,1.1,1.0,1.2,1.1\n", "high/low"),
    "not a number": ("time,open,high,low,close\n2026-01-05T08:00:00,1,x,1,1\n", "data row 1"),
    "bad time": ("time,open,high,low,close\nyesterday,1,1,1,1\n", "unreadable time"),
}


@pytest.mark.parametrize("case", sorted(BAD_BARS))
def test_bad_bars_files_raise_a_clear_data_error(tmp_path: Path, case: str) -> None:
    """Anything but a consistent MetaTrader or OHLCV file is refused with the reason."""
    text, message = BAD_BARS[case]
    path = tmp_path / "bars.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        replay(path, symbol=SYMBOL)


def test_undecodable_and_missing_files_raise_data_errors(tmp_path: Path) -> None:
    """A binary file and a missing path are DataErrors too, never a bare OSError or UnicodeDecodeError."""
    binary = tmp_path / "bars.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    for path in (binary, tmp_path / "missing.csv"):
        with pytest.raises(DataError, match="cannot read bars file"):
            replay(path, symbol=SYMBOL)


def test_data_shorter_than_the_warm_up_is_refused(m1: np.ndarray) -> None:
    """Too little data for the engine's windows says so."""
    with pytest.raises(DataError, match="too few"):
        replay(m1[:2000], symbol=SYMBOL, warmup=300)


# --- timeframes --------------------------------------------------------------------------------------------


def test_coarse_data_names_the_timeframes_to_use() -> None:
    """H1 bars cannot feed M5/M15: the error gives the mapping, for the API and the CLI."""
    h1 = aggregate(synthetic(SYMBOL, days=6), 3600)
    with pytest.raises(DataError, match=r"bars are H1.*timeframes=\('H1', 'H4'\).*--timeframes H1,H4"):
        replay(h1, symbol=SYMBOL)
    with pytest.raises(DataError, match="requested timeframes M15/H1"):
        replay(h1, symbol=SYMBOL, timeframes=("M15", "H1"))


def test_the_engine_runs_on_mapped_timeframes() -> None:
    """timeframes=("H1", "H4") builds the engine's windows from H1 data; deep checks run, data not stale."""
    h1 = aggregate(synthetic(SYMBOL, days=14), 3600)
    k = 140
    at = datetime.fromtimestamp(int(h1["time"][k]), UTC)
    price = float(h1["open"][k]) + SPREAD
    report = replay(
        h1,
        symbol=SYMBOL,
        timeframes=("H1", "H4"),
        warmup=30,
        entries=[Entry(at, "BUY", 0.1, sl=round(price - 0.004, 5), tp=round(price + 0.004, 5))],
    )
    assert report.meta["timeframes"] == ["H1", "H4"]
    assert report.meta["base_timeframe"] == "H1"
    # Every bar-timed setting left at its default is scaled by the mapping (H1 is 12 x M5).
    assert report.meta["config_adjusted"] == {
        "monitoring.start_age_s": 900.0 * 12,
        "monitoring.deep_s": 900.0 * 12,
        "monitoring.deep_cooldown_s": 600.0 * 12,
        "fsm.flat_timer_s": 4500.0 * 12,
        "fsm.recovery_timer_s": 1800.0 * 12,
        "warnings.decay_s": 1800.0 * 12,
        "rails.data.max_bar_age_s": 300.0 * 12,
    }
    assert report.meta["warnings"] == []
    assert report.engine["deep_checks"] > 0
    assert report.vwap_slope["timeframe"] == "H1"


def test_bar_timed_settings_set_by_the_user_or_kept_in_seconds_are_not_scaled() -> None:
    """A setting the config gives is kept; scale_time=False keeps all; impossible paths are named."""
    h1 = aggregate(synthetic(SYMBOL, days=14), 3600)
    at = datetime.fromtimestamp(int(h1["time"][140]), UTC)
    kept = replay(h1, symbol=SYMBOL, timeframes=("H1", "H4"), warmup=30, entries=[Entry(at, "BUY", 0.1)],
                  config={"fsm": {"flat_timer_s": 3000.0}})  # fmt: skip
    assert "fsm.flat_timer_s" not in kept.meta["config_adjusted"]
    assert kept.meta["config_adjusted"]["monitoring.deep_s"] == 10800.0
    assert any("HEDGED -> RECOVERING" in w for w in kept.meta["warnings"])  # 3000 s < one H4 bar
    seconds = replay(h1, symbol=SYMBOL, timeframes=("H1", "H4"), warmup=30, entries=[Entry(at, "BUY", 0.1)],
                     scale_time=False)  # fmt: skip
    assert seconds.meta["config_adjusted"] == {}
    assert len(seconds.meta["warnings"]) == 2  # the flat timer and the deep cadence, both under a bar
    assert "warning: fsm.flat_timer_s" in render(seconds)


def test_default_engine_timeframes_are_m5_and_m15() -> None:
    """Without a mapping the windows are M5 and M15, as before."""
    data = SymbolData(SYMBOL, SYMBOL, Config.from_mapping({"broker": {"server_time": 0}}))
    assert (data.timeframes, data.m5.timeframe_s, data.m15.timeframe_s) == (("M5", "M15"), 300, 900)
    assert timeframe_s("d1") == 86400


@pytest.mark.parametrize(
    "bad", [("M15", "M5"), ("M5", "M7"), ("M5", "M5"), ("H1", "MN1"), ("M10", "M15"), ("M5",)]
)
def test_invalid_timeframe_pairs_are_config_errors(bad: tuple[str, ...]) -> None:
    """The slow timeframe must be a longer whole multiple of the fast one, both known to MetaTrader."""
    with pytest.raises(ConfigError):
        check_timeframes(bad)  # type: ignore[arg-type]


# --- entries -----------------------------------------------------------------------------------------------


def test_entries_csv_is_read_in_time_order(tmp_path: Path) -> None:
    """Z, offsets and naive times are UTC; direction in any case; an empty tp means none."""
    path = tmp_path / "entries.csv"
    path.write_text(
        "direction,time,volume,sl,tp\n"
        "sell,2026-01-06T15:00:00+01:00,0.2,1.09,\n"
        "BUY,2026-01-06T10:00:00Z,0.1,1.08,1.09\n"
    )
    assert read_entries(path) == [
        Entry(datetime(2026, 1, 6, 10, tzinfo=UTC), "BUY", 0.1, 1.08, 1.09),
        Entry(datetime(2026, 1, 6, 14, tzinfo=UTC), "SELL", 0.2, 1.09, None),
    ]


HEADER = "time,direction,volume,sl,tp\n"
BAD_ENTRIES = {
    "empty": ("", "is empty"),
    "header only": (HEADER, "no entries"),
    "wrong header": ("time,side,volume,sl,tp\n", "header must be"),
    "bad time": (HEADER + "tomorrow,BUY,0.1,,\n", "line 2: time 'tomorrow' is not ISO-8601"),
    "bad direction": (HEADER + "2026-01-06T10:00:00Z,LONG,0.1,,\n", "line 2: direction must be BUY or SELL"),
    "zero volume": (HEADER + "2026-01-06T10:00:00Z,BUY,0,,\n", "line 2: volume must be a positive"),
    "missing volume": (HEADER + "2026-01-06T10:00:00Z,BUY,,,\n", "line 2: volume is required"),
    "bad sl": (HEADER + "2026-01-06T10:00:00Z,BUY,0.1,abc,\n", "line 2: sl 'abc' is not a number"),
    "sl above tp": (HEADER + "2026-01-06T10:00:00Z,BUY,0.1,1.09,1.08\n", "line 2: a BUY needs sl below tp"),
    "too few fields": (HEADER + "2026-01-06T10:00:00Z,BUY,0.1\n", "line 2: expected 5 fields, got 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_bad_entries_files_raise_a_clear_data_error(tmp_path: Path, case: str) -> None:
    """Each malformed entries file is refused with the line and the reason."""
    text, message = BAD_ENTRIES[case]
    path = tmp_path / "entries.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_entries(path)


def test_entries_outside_the_replay_are_refused(m1: np.ndarray) -> None:
    """An entry before the warm-up ends (or after the data) cannot be replayed."""
    early = datetime.fromtimestamp(int(m1["time"][10]), UTC)
    with pytest.raises(DataError, match="outside the replay"):
        replay(m1, symbol=SYMBOL, entries=[Entry(early, "BUY", 0.1)], warmup=100)


def test_entries_and_every_are_exclusive(m1: np.ndarray) -> None:
    """Generated and given entries do not mix."""
    with pytest.raises(InvalidArgumentError, match="not both"):
        replay(m1, symbol=SYMBOL, entries=[], every=10)
    with pytest.raises(InvalidArgumentError, match="every"):
        replay(m1, symbol=SYMBOL, every=0)


# --- plot --------------------------------------------------------------------------------------------------


def test_plot_writes_png_files_for_the_run_and_one_trade(tmp_path: Path, run: Report) -> None:
    """The whole run and a single trade each give a PNG."""
    pytest.importorskip("matplotlib")
    busiest = max(run.trades, key=lambda mb: len(mb[0].actions))[0].n
    for name, trade in (("run.png", None), ("trade.png", busiest)):
        plot(run, tmp_path / name, trade=trade)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidArgumentError, match="no trade number"):
        plot(run, tmp_path / "x.png", trade=10_000)


def test_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, run: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing matplotlib is an ExtraNotInstalledError that says what to install."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ExtraNotInstalledError, match=r"pip install 'dtms\[plot\]'"):
        plot(run, tmp_path / "x.png")
