"""The event-driven replay against its oracle: the exact mode runs every tick of the live grid.

Each reference configuration is replayed both ways and the reports must be byte-identical. Every case also
checks that it is not vacuous: the event mode ran far fewer ticks, and the configuration reached what it is
there for (transitions and actions, rails tripping, a hedge, entries from a file, mapped timeframes).
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dtms.replay import replay, synthetic
from dtms.report import Report

SYMBOL = "EURUSD"
pytestmark = pytest.mark.slow


def both(bars: Any, **kwargs: Any) -> tuple[Report, Report]:
    exact = replay(bars, symbol=SYMBOL, exact=True, **kwargs)
    event = replay(bars, symbol=SYMBOL, **kwargs)
    return exact, event


def assert_identical(exact: Report, event: Report) -> None:
    assert event.to_json() == exact.to_json()
    assert exact.timing is not None
    assert event.timing is not None
    assert event.timing["ticks_run"] * 3 < exact.timing["ticks_run"], "the event mode skipped too little"


@pytest.fixture(scope="module")
def m1() -> np.ndarray:
    return synthetic(SYMBOL, days=2, seed=1)


@pytest.mark.parametrize(("seed", "every"), [(1, 6), (2, 12), (3, 24)])
def test_embedded_m1_data_at_several_seeds_and_densities(m1: np.ndarray, seed: int, every: int) -> None:
    exact, event = both(m1, every=every, seed=seed, warmup=100)
    assert_identical(exact, event)
    assert exact.engine["transitions"] > 0
    assert exact.actions


def test_an_h1_file_mapped_to_h1_h4(tmp_path: Path) -> None:
    bars = synthetic(SYMBOL, days=70, seed=3, timeframe="H1")
    path = tmp_path / "EURUSD_H1.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        names = ["time", "open", "high", "low", "close", "tick_volume", "spread"]
        w.writerow(names)
        for r in bars:
            w.writerow([r[n] for n in names])
    fast = {"fast_s": 300.0, "hedged_fast_s": 600.0, "high_vol_fast_s": 150.0, "flat_fast_s": 600.0}
    config = {"monitoring": fast}
    exact, event = both(path, every=12, seed=2, timeframes=("H1", "H4"), config=config)
    assert_identical(exact, event)
    assert exact.meta["config_adjusted"]["monitoring.deep_s"] == 900.0 * 12
    assert exact.engine["deep_checks"] > 0
    spans = [(datetime.fromisoformat(m.entry_at), datetime.fromisoformat(m.exit_at)) for m, _ in exact.trades]
    assert any(b - a > timedelta(days=2) and b.weekday() < a.weekday() for a, b in spans), "no open weekend"


def test_entries_from_a_csv_with_their_own_sl_and_tp(tmp_path: Path, m1: np.ndarray) -> None:
    generated = replay(m1, symbol=SYMBOL, every=18, seed=5, warmup=100)
    path = tmp_path / "entries.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "direction", "volume", "sl", "tp"])
        for m, _ in generated.trades:
            d = 1 if m.direction == "BUY" else -1
            assert m.sl is not None
            w.writerow([m.entry_at, m.direction, 0.2, round(m.sl - d * 0.0002, 5), ""])
    exact, event = both(m1, entries=path, warmup=100)
    assert_identical(exact, event)
    assert exact.meta["entries"]["mode"] == "csv"
    assert exact.meta["entries"]["opened"] == len(generated.trades)


def test_loss_rails_tripping_and_clearing(m1: np.ndarray) -> None:
    config = {"rails": {"daily_loss": 0.0004, "hourly_loss": 0.0002}}
    exact, event = both(m1, every=6, seed=6, warmup=100, config=config, balance=100_000.0)
    assert_identical(exact, event)
    assert exact.engine["events"].get("rail_changed", 0) >= 2, "the rails never tripped and cleared"


def test_hedges_and_the_flat_timer() -> None:
    config = {"fsm": {"flat_timer_s": 1200.0}}
    exact, event = both(synthetic(SYMBOL, days=1, seed=1), every=6, seed=1, config=config)
    assert_identical(exact, event)
    assert "open_hedge" in exact.actions


def test_d1_bars_with_hourly_baselines_skipped_in_bulk() -> None:
    """Daily bars: a quiet stretch spans days, and the event mode records the rails' hourly baselines only
    where one can matter (`_Idle._hours_clear`). Hourly fast checks keep the exact mode affordable; the
    reconciliation every 20 min gives each hour ticks that see a rail tripped inside it. (Without the band
    test in `_hours_clear` the reports differ: 210 rail changes against 44.)"""
    bars = synthetic(SYMBOL, days=330, seed=4, timeframe="D1")  # 30 weeks warm the W1 bars
    fast = {k: 3600.0 for k in ("fast_s", "hedged_fast_s", "flat_fast_s", "high_vol_fast_s")}
    config = {"monitoring": fast, "reconcile": {"interval_s": 1200.0},
              "rails": {"daily_loss": 0.003, "hourly_loss": 0.0008}}  # fmt: skip
    exact, event = both(bars, every=8, seed=3, warmup=30, timeframes=("D1", "W1"), config=config,
                        balance=20_000.0)  # fmt: skip
    assert_identical(exact, event)
    assert exact.engine["transitions"] > 0
    assert exact.engine["events"].get("rail_changed", 0) >= 2, "the rails never tripped and cleared"
    assert event.timing is not None
    hours = (bars["time"][-1] - bars["time"][0]) // 3600 - 30 * 7 * 24
    assert event.timing["hour_records"] * 4 < hours, "the hourly baselines were not skipped in bulk"
