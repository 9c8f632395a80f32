"""`dtms tune`: walk-forward calibration of the engine's settings (a thin layer over `dtms.replay.tune`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from dtms.cli import FilePath, cli, json_option
from dtms.cli.operate import IntList, config_option, read_toml, replay_options
from dtms.config import env_overrides

#: Where `dtms tune` writes the best settings unless --config-out says otherwise.
DEFAULT_CONFIG_OUT = "tuned.toml"
_OBJECTIVES = ("expectancy_dd", "expectancy", "avg_loss", "drawdown", "vs_baseline", "vs_chandelier")


@cli.command("tune")
@click.argument("bars", type=FilePath(exists=True))
@click.option(
    "--symbol", help="The symbol (default: the file name's first part, as MetaTrader names exports)."
)
@click.option("--space", "space_path", type=FilePath(exists=True),
              help="A TOML file whose [tune.space] table is the search space.")  # fmt: skip
@click.option("--show-space", is_flag=True, help="Print the search space as TOML and exit.")
@click.option("--objective", type=click.Choice(_OBJECTIVES), default="expectancy_dd", show_default=True,
              help="What a trial maximises (see docs/tune.md).")  # fmt: skip
@click.option("--dd-weight", type=click.FloatRange(0), default=0.5, show_default=True,
              help="expectancy_dd: the weight of max drawdown (R) per trade.")  # fmt: skip
@click.option("--folds", type=click.IntRange(1), default=3, show_default=True, help="Walk-forward folds.")
@click.option("--holdout", type=click.FloatRange(0, 0.5), default=0.2, show_default=True,
              help="The latest share of the data, held out, evaluated once at the end; 0: none.")  # fmt: skip
@click.option("--anchored", is_flag=True,
              help="Optimise fold k on parts 1..k instead of on part k alone (rolling).")  # fmt: skip
@click.option("--trials", type=click.IntRange(1), default=20, show_default=True,
              help="Finished trials per study (one study per fold, plus the final one).")  # fmt: skip
@click.option("--study", "study_path", type=FilePath(),
              help="An optuna journal file: created, or resumed when it exists.")  # fmt: skip
@click.option("--sampler-seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed of the TPE sampler.")  # fmt: skip
@click.option("--batch", type=click.IntRange(1), default=4, show_default=True,
              help="Trials asked of the sampler and replayed together.")  # fmt: skip
@click.option("--entries", "entries_path", type=FilePath(exists=True),
              help="A CSV of entries (time,direction,volume,sl,tp); a part replays those in it.")  # fmt: skip
@click.option("--every", type=IntList(ranges=False, minimum=1),
              help="Generated entries: one every N fast-timeframe bars (default 24).")  # fmt: skip
@click.option("--seed", "--seeds", "seeds", type=IntList(ranges=True, minimum=0), default="0-2",
              show_default=True, help="Seeds of the generated entries' directions (1-5, 1,3,7).")  # fmt: skip
@replay_options
@click.option("--warmup", type=click.IntRange(30), help="Slow-timeframe bars before the first part.")
@click.option(
    "--seconds",
    "keep_seconds",
    is_flag=True,
    help="On coarse timeframes keep time settings (and the default space's timers) in seconds.",
)
@config_option
@click.option("--config-out", type=FilePath(), default=DEFAULT_CONFIG_OUT, show_default=True,
              help="Write the best settings here, as a config file dtms reads.")  # fmt: skip
@json_option
@click.option("--out", "out_path", type=FilePath(), help="Also write the report's JSON here.")
@click.option("--jobs", type=click.IntRange(1), help="Worker processes (default: every core).")
def tune_command(bars: Path, symbol: str | None, space_path: Path | None, show_space: bool, objective: str,
                 dd_weight: float, folds: int, holdout: float, anchored: bool, trials: int,
                 study_path: Path | None, sampler_seed: int, batch: int, entries_path: Path | None,
                 every: list[int] | None, seeds: list[int], timeframes: str | None, sl_atr: float,
                 tp_r: float, no_tp: bool, volume: float, balance: float, warmup: int | None,
                 keep_seconds: bool, config_path: Path | None, config_out: Path, as_json: bool,
                 out_path: Path | None, jobs: int | None) -> None:  # fmt: skip
    """Calibrate the engine's settings on BARS by walk-forward optimisation (optuna's TPE): optimise on one
    part of the data, evaluate on the next, for each fold; report in-sample against out-of-sample, warn
    when out-of-sample is much worse (overfitting), and write the final study's best settings as a config
    file. Needs: pip install 'dtms[tune]'. With --study FILE an interrupted or extended tune resumes."""
    from rich.progress import MofNCompleteColumn, Progress

    from dtms.replay import inputs
    from dtms.replay.tune import SearchSpace, require_optuna, tune
    from dtms.sim import loaders
    from dtms.sim.loaders import symbol_from_path

    require_optuna()  # the missing extra is said before any work
    pair = tuple(t.strip().upper() for t in timeframes.split(",")) if timeframes else None
    if pair is not None and len(pair) != 2:
        raise click.BadParameter("give two timeframes, e.g. H1,H4", param_hint="--timeframes")
    if entries_path is not None and (every is not None or len(seeds) > 1):
        raise click.UsageError("--entries replays the given entries: give neither --every nor several seeds")
    base: dict[str, Any] = read_toml(config_path) if config_path is not None else {}
    _merge(base, env_overrides(os.environ))
    space = SearchSpace.load(space_path) if space_path is not None else None
    if show_space:
        if space is None:
            rates, source, _ = inputs.load_bars(bars)
            fast, _ = inputs.resolve_timeframes(loaders.base_interval(rates), pair, source)
            space = SearchSpace.default(fast, scale_time=not keep_seconds)
        click.echo(space.to_toml(), nl=False)
        return
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())
    console = Console(file=sys.stderr)
    with Progress(*columns, console=console, transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("tuning (trials)", total=None)
        report = tune(
            bars, symbol=symbol or symbol_from_path(bars), space=space, objective=objective,
            dd_weight=dd_weight, folds=folds, holdout=holdout, anchored=anchored, trials=trials,
            seeds=seeds if entries_path is None else 0, every=every, entries=entries_path, config=base,
            timeframes=pair, warmup=warmup, sl_atr=sl_atr, tp_r=None if no_tp else tp_r, volume=volume,
            balance=balance, scale_time=not keep_seconds, study=study_path, sampler_seed=sampler_seed,
            batch=batch, jobs=jobs,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    report.write_config(config_out)
    text = report.to_json()
    if out_path is not None:
        out_path.write_text(text)
    click.echo(text if as_json else report.render(), nl=not as_json)
    click.echo(f"best settings written to {config_out}", err=True)
    if report.timing:
        w = report.timing
        click.echo(f"{int(w['runs'])} replay runs on {int(w['jobs'])} processes: wall {w['wall_s']:,.1f} s",
                   err=True)  # fmt: skip


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


__all__ = ["DEFAULT_CONFIG_OUT"]
