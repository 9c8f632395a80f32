"""Replay sweeps: independent replays over seeds, densities and configs on worker processes, combined."""

from __future__ import annotations

import importlib
import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from dtms.cli import cli
from dtms.cli.operate import IntList
from dtms.errors import InvalidArgumentError
from dtms.replay import Entry, SweepError, SweepReport, replay, sweep, synthetic
from dtms.replay.rules import COMPARISONS
from dtms.replay.sweep import stats
from dtms.report import Report

SYMBOL = "EURUSD"
SEEDS = (1, 2)
EVERY = (48, 96)  # 8 and 4 entries on two days: the runs take about a second each (marked slow: seconds)
# the module, not the function `dtms.replay.sweep` that the package exports under the same name
sweep_module = importlib.import_module("dtms.replay.sweep")


@pytest.fixture(scope="module")
def bars() -> np.ndarray:
    return synthetic(SYMBOL, days=2, seed=1)


@pytest.fixture(scope="module")
def progress_calls() -> list[tuple[int, int]]:
    return []


@pytest.fixture(scope="module")
def swept(bars: np.ndarray, progress_calls: list[tuple[int, int]]) -> SweepReport:
    """Four runs on two worker processes."""
    return sweep(
        bars,
        symbol=SYMBOL,
        seeds=SEEDS,
        every=EVERY,
        jobs=2,
        progress=lambda done, total: progress_calls.append((done, total)),
    )


@pytest.fixture(scope="module")
def singles(bars: np.ndarray) -> dict[tuple[int, int], Report]:
    """The same four runs, one `replay()` each, in this process."""
    return {(n, s): replay(bars, symbol=SYMBOL, every=n, seed=s) for n in EVERY for s in SEEDS}


@pytest.fixture(scope="module")
def bars_csv(tmp_path_factory: pytest.TempPathFactory, bars: np.ndarray) -> Path:
    """The same bars as a plain OHLCV CSV (floats written exactly, the spread column kept)."""
    path = tmp_path_factory.mktemp("sweep") / "EURUSD_M1.csv"
    rows = ["time,open,high,low,close,volume,spread"]
    for x in bars:
        stamp = datetime.fromtimestamp(int(x["time"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            f"{stamp},{float(x['open'])!r},{float(x['high'])!r},{float(x['low'])!r},{float(x['close'])!r},"
            f"{x['tick_volume']},{x['spread']}"
        )
    path.write_text("\n".join(rows) + "\n")
    return path


# --- the runs -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_run_on_two_processes_is_the_replay_of_its_parameters(
    swept: SweepReport, singles: dict[tuple[int, int], Report]
) -> None:
    """Runs come in grid order (every, then seed) and each serialises exactly as its own `replay()`."""
    assert [r.params for r in swept.runs] == [
        {"config": None, "every": n, "seed": s} for n in EVERY for s in SEEDS
    ]
    for run in swept.runs:
        assert run.report.to_json() == singles[(run.params["every"], run.params["seed"])].to_json()
        assert run.report.bars is not None  # re-attached in the parent, for plot()
    assert swept.runs[0].report.bars is swept.runs[-1].report.bars  # one array for every run
    assert swept.timing is not None
    assert swept.timing["jobs"] == 2


@pytest.mark.slow
def test_one_job_runs_in_this_process_and_gives_the_same_sweep(
    bars: np.ndarray, swept: SweepReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jobs=1 starts no pool, and its report is byte-identical to the one of two processes."""

    def no_pool(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("jobs=1 must not start a process pool")

    monkeypatch.setattr(sweep_module, "ProcessPoolExecutor", no_pool)
    alone = sweep(bars, symbol=SYMBOL, seeds=SEEDS, every=EVERY, jobs=1)
    assert alone.to_json() == swept.to_json()
    assert alone.to_json(full=True) == swept.to_json(full=True)
    assert [r.report for r in alone.runs] == [r.report for r in swept.runs]


@pytest.mark.slow
def test_progress_counts_the_runs_up_to_the_total(
    swept: SweepReport, progress_calls: list[tuple[int, int]]
) -> None:
    """One callback before the first run and one as each run ends, in this process."""
    assert progress_calls == [(i, 4) for i in range(5)]


@pytest.mark.slow
def test_a_csv_path_is_read_once_and_named_as_replay_names_it(bars_csv: Path) -> None:
    """Workers get the parsed bars; each report is still the one `replay(path)` gives (source, format)."""
    report = sweep(bars_csv, symbol=SYMBOL, seeds=SEEDS, every=96, jobs=2)
    for run, seed in zip(report.runs, SEEDS, strict=True):
        assert run.report.to_json() == replay(bars_csv, symbol=SYMBOL, every=96, seed=seed).to_json()
    assert (report.meta["source"], report.meta["format"]) == ("EURUSD_M1.csv", "ohlcv")


# --- the combined report ------------------------------------------------------------------------------------


def expected(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "mean": pytest.approx(statistics.fmean(values), abs=1e-4) if values else None,
        "stdev": pytest.approx(statistics.stdev(values), abs=1e-4) if len(values) > 1 else None,
        "min": pytest.approx(min(values), abs=1e-4) if values else None,
        "max": pytest.approx(max(values), abs=1e-4) if values else None,
    }


METRICS = ("trades", "win_rate", "avg_win_r", "avg_loss_r", "expectancy_r", "net_profit", "max_drawdown")


@pytest.mark.slow
def test_the_summary_is_the_mean_and_spread_of_the_runs(swept: SweepReport) -> None:
    """Managed, baseline and their run-by-run difference, each over the runs where the metric is defined."""
    reports = swept.reports
    s = swept.summary
    assert s["runs"] == 4
    for key in METRICS:
        m = [r.managed[key] for r in reports if r.managed[key] is not None]
        b = [r.baseline[key] for r in reports if r.baseline[key] is not None]
        d = [
            r.managed[key] - r.baseline[key]
            for r in reports
            if r.managed[key] is not None and r.baseline[key] is not None
        ]
        assert s["managed"][key] == expected(m), key
        assert s["baseline"][key] == expected(b), key
        assert s["difference"][key] == expected(d), key
    for reason in {r for rep in reports for r in (*rep.managed["exits"], *rep.baseline["exits"])}:
        counts = [float(r.managed["exits"].get(reason, 0)) for r in reports]
        assert s["managed"][f"exits.{reason}"] == expected(counts)


@pytest.mark.slow
def test_groups_combine_the_seeds_of_each_density(swept: SweepReport) -> None:
    """One group per (config, every), over its seeds."""
    assert [(g["config"], g["every"], g["seeds"], g["runs"]) for g in swept.groups] == [
        (None, n, list(SEEDS), 2) for n in EVERY
    ]
    for g in swept.groups:
        values = [r.report.managed["expectancy_r"] for r in swept.runs if r.params["every"] == g["every"]]
        assert g["managed"]["expectancy_r"] == expected(values)


@pytest.mark.slow
def test_each_comparison_rule_is_a_side_with_managed_minus_rule(swept: SweepReport) -> None:
    """summary.comparisons[rule] is the rule's mean and spread; summary.versus[rule] is managed - rule."""
    reports = swept.reports
    s = swept.summary
    assert list(s["comparisons"]) == list(s["versus"]) == list(COMPARISONS)
    for name in COMPARISONS:
        for key in METRICS:
            c = [r.comparisons[name].summary[key] for r in reports]
            m = [r.managed[key] for r in reports]
            assert s["comparisons"][name][key] == expected([v for v in c if v is not None]), (name, key)
            d = [a - b for a, b in zip(m, c, strict=True) if a is not None and b is not None]
            assert s["versus"][name][key] == expected(d), (name, key)
    data = json.loads(swept.to_json())
    assert data["runs"][0]["comparisons"] == {n: c.summary for n, c in reports[0].comparisons.items()}
    text = swept.render()
    assert "comparisons: the same entries under one-line rules" in text
    row = next(line for line in text.splitlines() if line.startswith("chandelier_2atr"))
    v = s["versus"]["chandelier_2atr"]["expectancy_r"]
    assert f"{v['mean']:+.3f} ± {v['stdev']:.3f}" in row


def test_stats_of_none_one_and_several_values() -> None:
    """The sample standard deviation needs two values; nothing gives n 0."""
    assert stats([]) == {"n": 0, "mean": None, "stdev": None, "min": None, "max": None}
    assert stats([2.0]) == {"n": 1, "mean": 2.0, "stdev": None, "min": 2.0, "max": 2.0}
    assert stats([1.0, 2.0, 6.0]) == {"n": 3, "mean": 3.0, "stdev": 2.6458, "min": 1.0, "max": 6.0}


@pytest.mark.slow
def test_json_is_stable_and_full_embeds_each_report(swept: SweepReport) -> None:
    """to_json() has meta, summary, groups and runs; full=True adds each run's whole report."""
    data = json.loads(swept.to_json())
    assert set(data) == {"meta", "summary", "groups", "runs"}
    assert data["meta"]["grid"] == {"configs": None, "every": list(EVERY), "seeds": list(SEEDS)}
    assert "timing" not in json.dumps(data)
    assert [r["managed"] for r in data["runs"]] == [r.report.managed for r in swept.runs]
    full = json.loads(swept.to_json(full=True))
    assert [r["report"] for r in full["runs"]] == [json.loads(r.report.to_json()) for r in swept.runs]


@pytest.mark.slow
def test_render_shows_mean_and_spread_then_each_run(swept: SweepReport) -> None:
    """The text: a row per metric, mean ± stdev for managed, baseline and difference; a row per run."""
    text = swept.render()
    assert text.startswith(
        "dtms replay sweep: EURUSD M1 bars, engine M5/M15, 4 runs (every 48, 96; seeds 1, 2)"
    )
    row = next(line for line in text.splitlines() if line.startswith("expectancy (R)"))
    assert row.count("±") == 3
    s = swept.summary["managed"]["expectancy_r"]
    assert f"{s['mean']:+.3f} ± {s['stdev']:.3f}" in row
    assert "per group" in text
    for run in swept.runs:
        m, b = run.report.managed, run.report.baseline
        assert f"{m['expectancy_r']:+.3f} / {b['expectancy_r']:+.3f}" in text


# --- configurations and failures ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_failing_run_is_named_after_every_run_has_ended(bars: np.ndarray) -> None:
    """Configs are the outer axis; a failed run raises SweepError naming it, holding the runs that passed."""
    configs: dict[str, Any] = {"defaults": None, "broken": {"broker": {"server_time": "x"}}}
    with pytest.raises(SweepError) as caught:
        sweep(bars, symbol=SYMBOL, seeds=SEEDS, every=96, configs=configs, jobs=2)
    err = caught.value
    assert "2 of 4 replay runs failed" in str(err)
    assert "config=broken every=96 seed=1: ConfigError: replay needs broker.server_time" in str(err)
    assert [(f.params["config"], f.params["seed"], f.error) for f in err.failures] == [
        ("broken", 1, "ConfigError"),
        ("broken", 2, "ConfigError"),
    ]
    assert "Traceback" in err.failures[0].traceback
    assert err.report is not None
    assert [r.params for r in err.report.runs] == [
        {"config": "defaults", "every": 96, "seed": s} for s in SEEDS
    ]
    assert err.report.meta["grid"]["configs"] == ["defaults", "broken"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": -1}, "seeds must be integers >= 0"),
        ({"seeds": []}, "seeds must name at least one value"),
        ({"seeds": [1, 1]}, "seeds lists 1 twice"),
        ({"every": 0}, "every must be integers >= 1"),
        ({"every": [24, 2.5]}, "every must be integers >= 1"),
        ({"jobs": 0}, "jobs must be an integer >= 1"),
        ({"seed": 3}, "sweep takes seeds=, not seed="),
        ({"progres": None}, "unknown keyword 'progres'"),
        ({"configs": {}}, "configs must be a non-empty mapping"),
        ({"configs": {"a": None}, "config": None}, "give config or configs, not both"),
        ({"entries": [], "every": 24}, "give entries or every, not both"),
        ({"entries": [], "seeds": [1, 2]}, "with entries give one seed at most"),
    ],
)
def test_bad_arguments_fail_before_any_run(
    bars: np.ndarray, kwargs: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invalid grids, jobs and keywords are InvalidArgumentErrors raised before a replay starts."""
    monkeypatch.setattr(sweep_module, "replay", lambda *a, **k: pytest.fail("a replay started"))
    with pytest.raises(InvalidArgumentError, match=message):
        sweep(bars, symbol=SYMBOL, **kwargs)


@pytest.mark.slow
def test_entries_from_a_list_run_once_per_config(
    bars: np.ndarray, singles: dict[tuple[int, int], Report]
) -> None:
    """With entries, the grid is the configs alone; every and seed stay out of the parameters."""
    first = singles[(96, 1)].trades[0][0]
    entries = [Entry(datetime.fromisoformat(first.entry_at), "BUY", 0.1)]
    report = sweep(bars, symbol=SYMBOL, entries=entries, jobs=1)
    assert [r.params for r in report.runs] == [{"config": None, "every": None, "seed": 0}]
    assert report.runs[0].report.to_json() == replay(bars, symbol=SYMBOL, entries=entries).to_json()


# --- the command line ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_sweeps_seeds_and_densities_on_two_processes(
    bars_csv: Path, swept: SweepReport, tmp_path: Path
) -> None:
    """`--seeds 1-2 --every 24,48 --jobs 2`: four runs, one combined JSON report (also written by --out)."""
    out = tmp_path / "sweep.json"
    args = ["replay", str(bars_csv), "--seeds", "1-2", "--every", "24,48", "--jobs", "2", "--json"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads(out.read_text())
    assert [(r["params"]["every"], r["params"]["seed"]) for r in data["runs"]] == [
        (24, 1), (24, 2), (48, 1), (48, 2)
    ]  # fmt: skip
    assert data["summary"]["runs"] == 4
    assert data["meta"]["source"] == "EURUSD_M1.csv"
    # the every-48 runs are those of the API sweep over the same bars
    api = {(r.params["every"], r.params["seed"]): r.report.managed for r in swept.runs}
    for run in data["runs"][2:]:
        assert run["managed"] == api[(run["params"]["every"], run["params"]["seed"])]
    assert "4 runs on 2 processes" in result.stderr


@pytest.mark.slow
def test_cli_prints_the_combined_table(bars_csv: Path) -> None:
    """Without --json the sweep prints its render(): the mean ± stdev table and a line per run."""
    result = CliRunner().invoke(
        cli, ["replay", str(bars_csv), "--seeds", "1,2", "--every", "96", "--jobs", "1"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("dtms replay sweep: EURUSD M1 bars, engine M5/M15, 2 runs")
    assert "expectancy (R)" in result.stdout
    assert "±" in result.stdout


def test_cli_one_seed_and_one_density_is_one_replay_as_before(bars_csv: Path) -> None:
    """`--seeds 2` is `--seed 2`: a single run prints the single Report, not a sweep."""
    runner = CliRunner()
    one = runner.invoke(cli, ["replay", str(bars_csv), "--seeds", "2", "--every", "96", "--json"])
    old = runner.invoke(cli, ["replay", str(bars_csv), "--seed", "2", "--every", "96", "--json"])
    assert one.exit_code == old.exit_code == 0, one.output
    assert one.stdout == old.stdout
    data = json.loads(one.stdout)
    assert "runs" not in data
    assert data["meta"]["entries"]["seed"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "5-1"], "the range 5-1 runs backwards (write 1-5)"),
        (["--seeds", "x"], "'x' is not an integer, a range A-B or a comma list"),
        (["--seeds", "1-3,2"], "2 listed twice"),
        (["--every", "0"], "0 is below 1"),
        (["--every", "12,,24"], "'12,,24' is not an integer or a comma list"),
        (["--every", "12-24"], "is not an integer or a comma list"),
        (["--jobs", "0"], "Invalid value for '--jobs'"),
        (["--seeds", "1-2", "--plot", "run.png"], "--plot draws one run"),
    ],
)
def test_cli_bad_sweep_arguments_are_usage_errors(bars_csv: Path, args: list[str], message: str) -> None:
    """Each is exit 2 with a message naming the problem."""
    result = CliRunner().invoke(cli, ["replay", str(bars_csv), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_failed_runs_exit_1_naming_them(bars_csv: Path) -> None:
    """Every run failing (a warm-up longer than the data) is exit 1 listing each run and the file."""
    args = ["replay", str(bars_csv), "--seeds", "1,2", "--every", "96", "--warmup", "5000", "--jobs", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "2 of 2 replay runs failed" in result.output
    assert "every=96 seed=1: DataError: EURUSD_M1.csv: " in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "ranges", "values"),
    [
        ("3", True, [3]),
        ("1-5", True, [1, 2, 3, 4, 5]),
        ("1,3,7", True, [1, 3, 7]),
        ("1-3, 7", True, [1, 2, 3, 7]),
        ("12,24,48", False, [12, 24, 48]),
    ],
)
def test_int_lists_read_single_values_ranges_and_comma_lists(
    text: str, ranges: bool, values: list[int]
) -> None:
    """The spellings of --seeds and --every."""
    assert IntList(ranges=ranges, minimum=0).convert(text, None, None) == values
