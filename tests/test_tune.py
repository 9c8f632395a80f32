"""`dtms tune`: the search space, the walk-forward folds, the objectives, the studies and the CLI."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from click.testing import CliRunner

from dtms.cli import cli
from dtms.config import Config
from dtms.errors import DataError, ExtraNotInstalledError, InvalidArgumentError
from dtms.replay import Entry, SearchSpace, TuneReport, plan_folds, replay, synthetic, tune
from dtms.replay.tune import (
    DEFAULT_SPACE,
    Evaluation,
    Objective,
    ParamKind,
    Period,
    RunMetrics,
    drawdown_r,
    overfit,
    score,
)
from dtms.report import TradeResult

# the module, not the function `dtms.replay.tune` that the package exports under the same name
tune_module = importlib.import_module("dtms.replay.tune")

SYMBOL = "EURUSD"
TF = ("H1", "H4")
# 14 days of H1 bars mapped to H1/H4: 84 H4 bars, 30 of them the warm-up; an entry every 8 H1 bars with a
# near SL and TP, so a run takes a fraction of a second.
RUN: dict[str, Any] = {"timeframes": TF, "warmup": 30, "every": 8, "sl_atr": 0.75, "tp_r": 1.0, "jobs": 1}


@pytest.fixture(scope="module")
def bars() -> np.ndarray:
    return synthetic(SYMBOL, days=14, seed=1, timeframe="H1")


# --- the search space ---------------------------------------------------------------------------------------


def test_space_from_dotted_and_nested_keys_is_the_same() -> None:
    dotted = SearchSpace.from_mapping(
        {
            "actions.tighten_r": {"low": 0.2, "high": 0.6},
            "fsm.down.l1": {"low": -3, "high": -1, "step": 0.5},
            "fsm.flat_timer_s": {"low": 1000, "high": 9000, "log": True},
            "actions.tighten_min_bars": {"low": 0, "high": 6},
            "hedge.enabled": {"choices": [True, False]},
            "partial_close.below_min": {"choices": ["skip", "close_all"]},
        }
    )
    nested = SearchSpace.from_mapping(
        {
            "actions": {"tighten_r": {"low": 0.2, "high": 0.6}, "tighten_min_bars": {"low": 0, "high": 6}},
            "fsm": {"down": {"l1": {"low": -3, "high": -1, "step": 0.5}}},
            "fsm.flat_timer_s": {"low": 1000, "high": 9000, "log": True},
            "hedge.enabled": {"choices": [True, False]},
            "partial_close.below_min": {"choices": ["skip", "close_all"]},
        }
    )
    assert sorted(dotted.params, key=lambda p: p.key) == sorted(nested.params, key=lambda p: p.key)
    kinds = {p.key: p.kind for p in dotted.params}
    assert kinds["actions.tighten_r"] is ParamKind.FLOAT
    assert kinds["actions.tighten_min_bars"] is ParamKind.INT
    assert kinds["hedge.enabled"] is ParamKind.CHOICE
    by_key = {p.key: p for p in dotted.params}
    assert by_key["fsm.down.l1"].low == -3.0
    assert isinstance(by_key["fsm.down.l1"].low, float)  # an int bound of a float setting is a float
    assert by_key["fsm.flat_timer_s"].log
    dists = dotted.distributions()
    assert isinstance(dists["actions.tighten_min_bars"], optuna.distributions.IntDistribution)
    assert isinstance(dists["hedge.enabled"], optuna.distributions.CategoricalDistribution)
    assert dists["fsm.down.l1"].step == 0.5  # type: ignore[attr-defined]


def test_sampled_values_are_rounded_as_written() -> None:
    space = SearchSpace.from_mapping(
        {
            "partial_close.fraction": {"low": 0.25, "high": 0.75, "step": 0.05},
            "actions.tighten_r": {"low": 0.2, "high": 0.6},
            "actions.tighten_min_bars": {"low": 0, "high": 6},
        }
    )
    values = space.values(
        {
            "partial_close.fraction": 0.35000000000000003,
            "actions.tighten_r": 0.123456789,
            "actions.tighten_min_bars": 4,
        }
    )
    assert values == {
        "partial_close.fraction": 0.35,
        "actions.tighten_r": 0.123457,
        "actions.tighten_min_bars": 4,
    }
    assert type(values["actions.tighten_min_bars"]) is int


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "empty"),
        (
            {"actions.tighten": {"low": 0.1, "high": 0.5}},
            "unknown setting 'actions.tighten'.*did you mean actions.tighten_r",
        ),
        ({"actions": {"low": 0.1, "high": 0.5}}, "is a section"),
        ({"election.lease_ttl_s": {"low": 5, "high": 20}}, "not tunable"),
        ({"broker.server_time": {"low": 0, "high": 3600}}, "not tunable"),
        ({"regime.session_mult": {"low": 0.5, "high": 1.5}}, "not a number, a flag or a named choice"),
        ({"actions.tighten_r": 0.3}, "a search spec is a table"),
        ({"actions.tighten_r": {"low": 0.5, "high": 0.5}}, r"low \(0.5\) must be below high"),
        ({"actions.tighten_r": {"low": 0.2}}, "missing high"),
        ({"actions.tighten_r": {"low": "a", "high": 0.5}}, "low must be a finite number"),
        ({"actions.tighten_r": {"low": 0.1, "high": 0.5, "step": 0.15}}, "not a multiple of step"),
        ({"actions.tighten_r": {"low": 0.1, "high": 0.5, "step": 0.1, "log": True}}, "step or log"),
        ({"fsm.down.l1": {"low": -3, "high": -1, "log": True}}, "log range needs low > 0"),
        ({"actions.tighten_min_bars": {"low": 0.5, "high": 4}}, "integer setting"),
        (
            {"partial_close.fraction": {"low": 0.5, "high": 1.0}},
            r"partial_close.fraction: 1.0 is not a valid value",
        ),
        ({"actions.tighten_r": {"low": 0.0, "high": 0.5}}, "0.0 is not a valid value"),
        ({"hedge.enabled": {"low": 0, "high": 1}}, "takes named values"),
        ({"partial_close.below_min": {"choices": ["skip", "bogus"]}}, "'bogus' is not one of"),
        ({"hedge.enabled": {"choices": [True, True]}}, "twice"),
        ({"hedge.enabled": {"choices": []}}, "non-empty list"),
        ({"actions.tighten_r": {"choices": [0.3], "low": 0.1}}, "choices alone"),
    ],
)
def test_bad_spaces_are_refused_naming_the_key(space: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        SearchSpace.from_mapping(space)


def test_combination_rules_are_left_to_the_trials() -> None:
    """l1 = -5 alone breaks l1 > l2 with the default l2, but with a sampled l2 it may not: accepted."""
    space = SearchSpace.from_mapping({"fsm.down.l1": {"low": -5.0, "high": -1.0}})
    assert space.keys == ("fsm.down.l1",)


def test_space_file_round_trips_through_toml(tmp_path: Path) -> None:
    space = SearchSpace.default("H1")
    path = tmp_path / "space.toml"
    path.write_text("# tuning\n" + space.to_toml())
    assert SearchSpace.load(path) == space
    (tmp_path / "none.toml").write_text("[tune]\nx = 1\n")
    with pytest.raises(InvalidArgumentError, match=r"no \[tune.space\] table"):
        SearchSpace.load(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text('[tune.space]\n"actions.nope" = {low = 1, high = 2}\n')
    with pytest.raises(InvalidArgumentError, match=r"bad.toml: unknown setting 'actions.nope'"):
        SearchSpace.load(tmp_path / "bad.toml")


def test_default_space_scales_its_timers_and_keeps_every_sample_valid() -> None:
    m5, h1 = SearchSpace.default(), SearchSpace.default("H1")
    assert set(m5.keys) == set(DEFAULT_SPACE)
    low = {p.key: p.low for p in h1.params}
    assert low["fsm.flat_timer_s"] == 12 * DEFAULT_SPACE["fsm.flat_timer_s"]["low"]
    assert low["actions.tighten_r"] == DEFAULT_SPACE["actions.tighten_r"]["low"]
    assert SearchSpace.default("H1", scale_time=False) == m5
    # the thresholds' corners: every combination of their ends is a valid config
    ends = [
        (k, (DEFAULT_SPACE[k]["low"], DEFAULT_SPACE[k]["high"]))
        for k in ("fsm.down.l1", "fsm.down.l2", "fsm.down.hedged")
    ]
    for l1, l2, hedged in itertools.product(*(e for _, e in ends)):
        Config.from_mapping({"fsm": {"down": {"l1": l1, "l2": l2, "hedged": hedged}}})
    # the base config's values lie in the default space, so a study starts from them
    for p in m5.params:
        assert p.contains(tune_module._get(Config(), p.key)), p.key


# --- the objective ------------------------------------------------------------------------------------------


def trade(n: int, r: float, exit_at: str) -> TradeResult:
    return TradeResult(n, "BUY", 0.1, "2026-01-05T00:00:00+00:00", 1.1, 1.09, None, 10.0, exit_at, 1.1, "sl",
                       r * 10.0, r)  # fmt: skip


def test_drawdown_in_r_takes_the_trades_in_exit_order() -> None:
    trades = [
        trade(1, 1.0, "2026-01-05T01:00:00+00:00"),
        trade(2, 0.5, "2026-01-05T04:00:00+00:00"),  # exits last
        trade(3, -2.0, "2026-01-05T02:00:00+00:00"),
        trade(4, -1.0, "2026-01-05T03:00:00+00:00"),
    ]
    # exit order: +1 (peak 1), -2 (-1), -1 (-2), +0.5: the largest fall is 1 - (-2) = 3
    assert drawdown_r(trades) == 3.0
    assert drawdown_r([]) == 0.0


def test_objective_formulas() -> None:
    m = RunMetrics(trades=10, expectancy_r=0.2, avg_loss_r=-0.8, max_drawdown_r=3.0, baseline_expectancy_r=0.05,
                   chandelier_expectancy_r=0.25)  # fmt: skip
    assert score(m) == pytest.approx(0.2 - 0.5 * 3.0 / 10)
    assert score(m, Objective.EXPECTANCY_DD, dd_weight=1.0) == pytest.approx(0.2 - 0.3)
    assert score(m, Objective.EXPECTANCY) == 0.2
    assert score(m, Objective.AVG_LOSS) == -0.8
    assert score(m, Objective.DRAWDOWN) == -3.0
    assert score(m, Objective.VS_BASELINE) == pytest.approx(0.15)
    assert score(m, Objective.VS_CHANDELIER) == pytest.approx(-0.05)
    none = dataclasses.replace(m, trades=0, expectancy_r=None, avg_loss_r=None, max_drawdown_r=0.0)
    assert all(score(none, o) is None for o in Objective)
    no_loss = dataclasses.replace(m, avg_loss_r=None)
    ev = Evaluation.of([m, no_loss], Objective.AVG_LOSS, 0.5)
    assert (ev.objective, ev.scored, ev.runs) == (-0.8, 1, 2)  # the mean over the runs where it is defined
    ev = Evaluation.of([m, dataclasses.replace(m, expectancy_r=0.4)], Objective.EXPECTANCY, 0.5)
    assert ev.objective == pytest.approx(0.3)
    assert Evaluation.from_dict(ev.to_dict()) == ev


def test_overfit_rule() -> None:
    assert overfit(0.30, 0.10)  # short by 0.20 > max(0.15, 0.05)
    assert not overfit(0.30, 0.20)  # short by 0.10 < 0.15
    assert not overfit(0.04, -0.005)  # short by 0.045 < the floor 0.05: noise around 0
    assert overfit(-0.10, -0.20)  # short by 0.10 > max(0.05, 0.05)
    assert not overfit(0.30, 0.50)
    assert not overfit(None, 0.1)
    assert not overfit(0.3, None)
    assert overfit(0.30, 0.20, ratio=0.2, floor=0.0)


# --- the folds ----------------------------------------------------------------------------------------------


def test_folds_cut_the_data_in_order_without_overlap(bars: np.ndarray) -> None:
    plan = plan_folds(bars, timeframes=TF, folds=3, holdout=0.2, warmup=30)
    assert plan.slow == "H4"
    assert plan.warmup == 30
    opens = tune_module.slow_bar_opens(bars["time"].astype(np.int64), "H4")
    n_slow = len(opens)  # the H4 bars of 14 days, weekends closed
    assert n_slow == 62
    parts = plan.parts
    assert len(parts) == 4
    assert parts[0].first == 30  # trades start after the warm-up
    for a, b in itertools.pairwise(parts):
        assert a.stop == b.first  # contiguous, no overlap
        assert a.end == b.start
    assert plan.holdout is not None
    assert parts[-1].stop == plan.holdout.first
    assert plan.holdout.stop == n_slow
    assert plan.holdout.slow_bars == round(0.2 * (n_slow - 30))
    sizes = [p.slow_bars for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sum(p.bars for p in (*parts, plan.holdout)) == len(bars) - int(
        np.searchsorted(bars["time"], opens[30])
    )
    # rolling: fold k optimises on part k, evaluates on part k + 1; the final study on the last part
    assert [(f.name, f.train, f.test) for f in plan.folds] == [
        ("1", parts[0], parts[1]),
        ("2", parts[1], parts[2]),
        ("3", parts[2], parts[3]),
    ]
    assert (plan.final.train, plan.final.test) == (parts[3], plan.holdout)


def test_anchored_folds_and_no_holdout(bars: np.ndarray) -> None:
    plan = plan_folds(bars, timeframes=TF, folds=2, holdout=0, warmup=30, anchored=True)
    assert plan.holdout is None
    parts = plan.parts
    assert parts[-1].stop == 62
    assert [(f.train.first, f.train.stop, f.test) for f in plan.folds] == [
        (parts[0].first, parts[0].stop, parts[1]),
        (parts[0].first, parts[1].stop, parts[2]),
    ]
    assert (plan.final.train.first, plan.final.train.stop, plan.final.test) == (parts[0].first, 62, None)


def test_bad_fold_arguments(bars: np.ndarray) -> None:
    with pytest.raises(InvalidArgumentError, match="folds must be"):
        plan_folds(bars, timeframes=TF, folds=0)
    with pytest.raises(InvalidArgumentError, match="holdout must be"):
        plan_folds(bars, timeframes=TF, holdout=0.6)
    with pytest.raises(InvalidArgumentError, match="at least 30"):
        plan_folds(bars, timeframes=TF, warmup=20)
    with pytest.raises(DataError, match="too few for 12 folds"):
        plan_folds(bars, timeframes=TF, folds=12, warmup=30)


def test_a_part_replays_from_its_start_after_warming_up_on_the_bars_before_it(bars: np.ndarray) -> None:
    plan = plan_folds(bars, timeframes=TF, folds=2, holdout=0.2, warmup=30)
    part = plan.parts[1]
    cut = tune_module._bars_of(bars, "array", TF, Config())[0].cut(part, 30)
    report = replay(cut, symbol=SYMBOL, timeframes=TF, warmup=30, every=50, compare="none")
    assert report.meta["start"] == part.start
    assert report.meta["end"] == part.end
    assert report.meta["bars"] == part.bars


# --- the studies --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tune") / "study.journal"


@pytest.fixture(scope="module")
def tuned(bars: np.ndarray, study_file: Path) -> TuneReport:
    """Two folds and a holdout, three trials per study, one seed: 15 short runs."""
    return tune(
        bars, symbol=SYMBOL, folds=2, holdout=0.2, trials=3, seeds=[1], batch=2, study=study_file, **RUN
    )


def test_tune_runs_every_study_and_starts_from_the_base_config(tuned: TuneReport) -> None:
    assert [f.name for f in tuned.folds] == ["1", "2"]
    assert tuned.final.name == "final"
    for f in (*tuned.folds, tuned.final):
        assert (f.trials, f.complete, f.failed) == (3, 3, 0)
        assert f.out_of_sample is not None
        assert f.out_of_sample_default is not None
        assert f.in_sample_default is not None  # trial 0 is the base config
        assert f.in_sample.objective is not None
        assert f.in_sample.objective >= f.in_sample_default.objective  # type: ignore[operator]
    assert tuned.final.test == tuned.plan.holdout
    assert set(tuned.best_params) == set(DEFAULT_SPACE)
    assert tuned.defaults["fsm.flat_timer_s"] == 4500.0 * 12  # the scaled default on H1
    assert tuned.timing is not None
    assert tuned.timing["runs"] == 3 * 3 + sum(
        1 if f.best_params == tuned.defaults else 2 for f in tuned.folds
    ) + (1 if tuned.final.best_params == tuned.defaults else 2)


def test_the_written_config_is_one_dtms_reads(tuned: TuneReport, tmp_path: Path) -> None:
    path = tuned.write_config(tmp_path / "tuned.toml")
    text = path.read_text()
    assert text.startswith("# dtms tune")
    config = Config.load(path, env={"DTMS__BROKER__SERVER_TIME": "0"})
    assert Config.from_mapping(tomllib.loads(text)) == tuned.best_config()
    for key, value in tuned.best_params.items():
        assert tune_module._get(config, key) == value, key


def test_report_json_and_text(tuned: TuneReport) -> None:
    data = json.loads(tuned.to_json())
    assert [f["name"] for f in data["folds"]] == ["1", "2"]
    assert data["best_params"] == tuned.best_params
    assert data["meta"]["objective"] == "expectancy_dd"
    assert data["folds"][0]["test"]["first"] == data["folds"][1]["train"]["first"]
    text = tuned.render()
    for needle in ("IS best", "OOS best", "OOS default", "final (holdout)", "mean of folds", "best settings"):
        assert needle in text


def test_resume_continues_the_same_study(bars: np.ndarray, study_file: Path, tuned: TuneReport) -> None:
    before = optuna.load_study(study_name="fold-1", storage=tune_module._storage(optuna, study_file))
    first = [t.params for t in before.trials]
    again = tune(
        bars, symbol=SYMBOL, folds=2, holdout=0.2, trials=4, seeds=[1], batch=2, study=study_file, **RUN
    )
    assert [f.trials for f in (*again.folds, again.final)] == [4, 4, 4]
    after = optuna.load_study(study_name="fold-1", storage=tune_module._storage(optuna, study_file))
    assert len(after.trials) == 4
    assert [t.params for t in after.trials[:3]] == first  # the earlier trials are kept, not re-run
    # a trial an interrupted run left running is failed on resuming, and not counted
    after.ask()
    # nothing left to do: no replay at all (the out-of-sample results are kept in the study too)
    same = tune(
        bars, symbol=SYMBOL, folds=2, holdout=0.2, trials=4, seeds=[1], batch=2, study=study_file, **RUN
    )
    assert same.timing is not None
    assert same.timing["runs"] == 0
    assert same.to_json() == again.to_json()
    resumed = optuna.load_study(study_name="fold-1", storage=tune_module._storage(optuna, study_file))
    assert [t.state for t in resumed.trials[4:]] == [optuna.trial.TrialState.FAIL]
    with pytest.raises(InvalidArgumentError, match=r"other settings \(dd_weight differ\)"):
        tune(
            bars,
            symbol=SYMBOL,
            folds=2,
            holdout=0.2,
            trials=4,
            seeds=[1],
            dd_weight=1.0,
            study=study_file,
            **RUN,
        )


def test_a_space_of_invalid_configs_fails_every_trial_without_a_replay(bars: np.ndarray) -> None:
    space = {"fsm.down.l1": {"choices": [-5.0, -4.5]}}  # never above the default l2 = -4
    with pytest.raises(DataError, match=r"none of its 2 trials gave a value; the first error: .*fsm"):
        tune(bars, symbol=SYMBOL, space=space, folds=1, holdout=0, trials=2, seeds=[1], **RUN)


def test_given_entries_are_replayed_in_their_parts(bars: np.ndarray) -> None:
    plan = plan_folds(bars, timeframes=TF, folds=1, holdout=0, warmup=30)
    times = [datetime.fromisoformat(p.start) for p in plan.parts]
    entries = [Entry(t + timedelta(hours=4), side, 0.1) for t in times for side in ("BUY", "SELL")]
    run = {k: v for k, v in RUN.items() if k != "every"}
    space = {"actions.tighten_r": {"low": 0.2, "high": 0.6}}
    report = tune(bars, symbol=SYMBOL, space=space, folds=1, holdout=0, trials=1, entries=entries, **run)
    assert report.meta["entries"] == "given"
    assert report.meta["entries_used"] == 4
    assert report.folds[0].in_sample.trades == 2
    assert report.folds[0].out_of_sample is not None
    assert report.folds[0].out_of_sample.trades == 2
    with pytest.raises(DataError, match="no entry falls in the part"):
        tune(bars, symbol=SYMBOL, space=space, folds=1, holdout=0, trials=1, entries=entries[:2], **run)


def test_overfitting_is_warned_about(tuned: TuneReport) -> None:
    def ev(value: float) -> Evaluation:
        return Evaluation(value, 1, 1, 5.0, value, 1.0, -1.0)

    tuned_params = {**tuned.defaults, "actions.tighten_r": 0.7}
    folds = tuple(
        dataclasses.replace(
            f,
            best_params=tuned_params,
            in_sample=ev(0.40),
            in_sample_default=ev(base),
            out_of_sample=ev(-0.10),
            out_of_sample_default=ev(0.0),
            overfit=overfit(0.40, -0.10),
        )  # fmt: skip
        for f, base in zip(tuned.folds, (0.05, 0.35), strict=True)
    )
    warnings = tune_module._warnings(folds, tuned.final, tuned.defaults, 0.5, 0.05)
    text = "\n".join(warnings)
    # fold 1: the base config lost 0.05 where the tuned lost 0.50, fold 2: 0.35 of 0.50, the part was harder
    assert (
        "fold 1: out-of-sample -0.100 is much worse than in-sample +0.400 (OOS below IS by more than " in text
    )
    assert "the base config held up better (+0.050 → +0.000), the settings fit noise" in warnings[0]
    assert "the base config fell nearly as far (+0.350 → +0.000)" in warnings[1]
    assert "overfitting: over the folds" in text
    assert "did no better than the base config in 2 of 2 folds" in text
    report = dataclasses.replace(tuned, folds=folds, warnings=tuple(warnings))
    assert report.render().count("OVERFIT") >= 2
    fine = tuple(
        dataclasses.replace(f, in_sample=ev(0.10), out_of_sample=ev(0.08), overfit=overfit(0.10, 0.08))
        for f in folds
    )
    assert not any(
        "much worse" in w for w in tune_module._warnings(fine, tuned.final, tuned.defaults, 0.5, 0.05)
    )


# --- the CLI ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bars_csv(tmp_path_factory: pytest.TempPathFactory, bars: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("tune-cli") / "EURUSD_H1.csv"
    rows = ["time,open,high,low,close,volume,spread"]
    for x in bars:
        stamp = datetime.fromtimestamp(int(x["time"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            f"{stamp},{float(x['open'])!r},{float(x['high'])!r},{float(x['low'])!r},{float(x['close'])!r},"
            f"{x['tick_volume']},{x['spread']}"
        )
    path.write_text("\n".join(rows) + "\n")
    return path


CLI_RUN = ["--timeframes", "H1,H4", "--warmup", "30", "--every", "8", "--sl-atr", "0.75", "--tp-r", "1",
           "--jobs", "1", "--seeds", "1"]  # fmt: skip


def test_cli_tune_writes_a_config_replay_reads(bars_csv: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "best.toml", tmp_path / "tune.json"
    space = tmp_path / "space.toml"
    space.write_text(
        '[tune.space]\n"actions.tighten_r" = { low = 0.2, high = 0.6 }\n"hedge.enabled" = { choices = [true, false] }\n'
    )
    result = CliRunner().invoke(
        cli,
        ["tune", str(bars_csv), "--folds", "1", "--holdout", "0", "--trials", "2", "--space", str(space),
         "--config-out", str(out), "--out", str(report), *CLI_RUN],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "OOS best" in result.stdout
    assert f"best settings written to {out}" in result.stderr
    data = json.loads(report.read_text())
    assert data["meta"]["symbol"] == "EURUSD"  # from the file name
    assert set(data["best_params"]) == {"actions.tighten_r", "hedge.enabled"}
    assert tomllib.loads(out.read_text())["actions"]["tighten_r"] == data["best_params"]["actions.tighten_r"]
    replayed = CliRunner().invoke(
        cli,
        ["replay", str(bars_csv), "--config", str(out), "--timeframes", "H1,H4", "--warmup", "30", "--every", "40",
         "--compare", "none", "--json"],
    )  # fmt: skip
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.stdout)["meta"]["entries"]["opened"] > 0


def test_cli_show_space_prints_the_default_for_the_timeframe(bars_csv: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["tune", str(bars_csv), "--timeframes", "H1,H4", "--show-space"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "space.toml"
    path.write_text(result.stdout)
    assert SearchSpace.load(path) == SearchSpace.default("H1")


def test_cli_bad_space_is_a_usage_error(bars_csv: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text('[tune.space]\n"actions.tighten_rr" = { low = 0.2, high = 0.6 }\n')
    result = CliRunner().invoke(cli, ["tune", str(bars_csv), "--space", str(space), *CLI_RUN])
    assert result.exit_code == 2
    assert "unknown setting 'actions.tighten_rr'" in result.output
    assert "did you mean actions.tighten_r" in result.output


def test_without_optuna_tune_says_what_to_install(
    bars: np.ndarray, bars_csv: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    with pytest.raises(ExtraNotInstalledError, match=r"pip install 'dtms\[tune\]'"):
        tune(bars, symbol=SYMBOL, trials=1, **RUN)
    out = tmp_path / "never.toml"
    result = CliRunner().invoke(cli, ["tune", str(bars_csv), "--config-out", str(out), *CLI_RUN])
    assert result.exit_code == 1
    assert "pip install 'dtms[tune]'" in result.output
    assert not out.exists()


def test_period_text_is_dates() -> None:
    p = Period(30, 40, "2026-01-12T04:00:00+00:00", "2026-01-13T16:00:00+00:00", 40)
    assert p.text() == "2026-01-12 → 2026-01-13"
    assert p.slow_bars == 10


def test_cli_objective_choices_are_the_objectives() -> None:
    """The CLI lists the names without importing the tune module; they must be the enum's."""
    from dtms.cli import tune as cli_tune

    assert cli_tune._OBJECTIVES == tuple(o.value for o in Objective)


DOC = Path(__file__).resolve().parent.parent / "docs" / "tune.md"


def test_docs_space_example_loads_and_the_default_space_table_is_complete(tmp_path: Path) -> None:
    import re

    text = DOC.read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.S)
    assert example is not None
    (tmp_path / "space.toml").write_text(example.group(1))
    assert len(SearchSpace.load(tmp_path / "space.toml").params) == 6
    table = text[text.index("**The default space**") : text.index("The thresholds' ranges")]
    assert set(re.findall(r"^\| `([a-z_.0-9]+)` \|", table, re.M)) == set(DEFAULT_SPACE)
