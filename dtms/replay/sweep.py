"""sweep(bars, seeds=…, every=…, configs=…) → SweepReport: independent replays on every core, combined.

Each grid point (config x every x seed, in that order, seeds innermost) is one `dtms.replay.replay` run.
The bars are read and checked once in the parent and sent to each worker process once (pickling a 200 000-row
rates array costs ~15 ms; re-reading the CSV costs ~1 s per process). Workers are started with the `spawn`
method on every platform, so a script that calls `sweep` with `jobs` > 1 needs the usual
`if __name__ == "__main__":` guard. `jobs=1` runs in the calling process; both give the same reports.

Results are in grid order, whatever order the runs finish in. A run that fails does not stop the others: once
every run has ended, `SweepError` names each failed run's parameters and error and carries the report of the
runs that succeeded (`SweepError.report`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import multiprocessing
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Final

import dtms
from dtms.config import Config
from dtms.errors import DataError, DtmsError, InvalidArgumentError
from dtms.replay.inputs import DEFAULT_EVERY, Rates, _utc_bars, load_bars
from dtms.replay.run import replay
from dtms.report import Report

ConfigLike = Config | Mapping[str, Any] | None

SIDES: Final = ("managed", "baseline", "difference")
_DIGITS: Final = 4  # the combined statistics' rounding, for a stable JSON
_WINDOWS_MAX_WORKERS: Final = 61  # ProcessPoolExecutor's limit on Windows
_NOT_FORWARDED: Final = frozenset({"bars", "every", "seed", "progress"})  # sweep's own parameters
_SHOWN_FAILURES: Final = 10
#: The keywords `sweep` passes on to every `replay` call.
_FORWARDED: Final = frozenset(inspect.signature(replay).parameters) - _NOT_FORWARDED - {"symbol"}

#: (label, format) of the metrics of `dtms.report.summarize`, as `dtms.report.render` shows them.
_LABELS: Final[dict[str, tuple[str, str]]] = {
    "trades": ("trades", ".1f"),
    "wins": ("wins", ".1f"),
    "losses": ("losses", ".1f"),
    "win_rate": ("win rate", ".1%"),
    "avg_win_r": ("avg win (R)", "+.2f"),
    "avg_loss_r": ("avg loss (R)", "+.2f"),
    "avg_win": ("avg win", "+,.2f"),
    "avg_loss": ("avg loss", "+,.2f"),
    "expectancy_r": ("expectancy (R)", "+.3f"),
    "expectancy": ("expectancy", "+,.2f"),
    "profit_factor": ("profit factor", ".2f"),
    "net_profit": ("net profit", "+,.2f"),
    "max_drawdown": ("max drawdown", ",.2f"),
}


class SweepError(DtmsError):
    """One or more runs of a sweep failed; raised once every run has ended.

    `failures` names each failed run (its parameters, the error's type and message, the traceback);
    `report` is the `SweepReport` of the runs that succeeded (None when none did).
    """

    def __init__(self, message: str, failures: tuple[SweepFailure, ...], report: SweepReport | None) -> None:
        super().__init__(message)
        self.failures = failures
        self.report = report


@dataclass(frozen=True)
class SweepFailure:
    """A run that raised: its parameters, the error's type name, message and formatted traceback."""

    params: dict[str, Any]
    error: str
    message: str
    traceback: str = field(default="", repr=False)


@dataclass(frozen=True)
class SweepRun:
    """One run of the grid: its parameters (`config` name or None, `every`, `seed`) and its report."""

    params: dict[str, Any]
    report: Report


@dataclass(frozen=True)
class SweepReport:
    """The runs of a sweep in grid order and their combined statistics.

    `summary[side][metric]` for side `managed`, `baseline` and `difference` (managed - baseline, run by run)
    is `{n, mean, stdev, min, max}` over the runs where the metric is defined (`avg_loss_r` is undefined in a
    run without a loss); `stdev` is the sample standard deviation (None for fewer than two values). The
    metrics are the numbers of `Report.managed` / `Report.baseline` plus `exits.<reason>` counts. Each
    comparison rule of the runs is a side too, `summary["comparisons"][rule][metric]`, and managed - rule,
    run by run, is `summary["versus"][rule][metric]`. `groups`
    holds the same statistics per (config, every) over its seeds. Like `Report`, everything but `timing`
    derives from the inputs: the same sweep gives a byte-identical `to_json()`, whatever `jobs`.
    """

    meta: dict[str, Any]
    runs: tuple[SweepRun, ...]
    summary: dict[str, Any]
    groups: tuple[dict[str, Any], ...]
    timing: dict[str, float] | None = field(default=None, compare=False)

    @property
    def reports(self) -> tuple[Report, ...]:
        """The runs' reports, in grid order."""
        return tuple(r.report for r in self.runs)

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """JSON-ready data: meta, summary, groups and per run its parameters, entries and both summaries.

        With `full`, each run also carries its whole report (`Report.to_dict()`) under `report`.
        """
        runs = []
        for run in self.runs:
            rep = run.report
            item: dict[str, Any] = {
                "params": run.params,
                "entries": {
                    "opened": rep.meta["entries"]["opened"],
                    "rejected": len(rep.meta["entries"]["rejected"]),
                },
                "managed": rep.managed,
                "baseline": rep.baseline,
                "comparisons": {name: c.summary for name, c in rep.comparisons.items()},
            }
            if full:
                item["report"] = rep.to_dict()
            runs.append(item)
        return {"meta": self.meta, "summary": self.summary, "groups": list(self.groups), "runs": runs}

    def to_json(self, *, full: bool = False) -> str:
        """Stable JSON (sorted keys, fixed rounding); `full` embeds every run's whole report."""
        import json

        return json.dumps(self.to_dict(full=full), sort_keys=True, indent=2, allow_nan=False) + "\n"

    def render(self) -> str:
        """The combined report for people: mean ± stdev per metric, then one line per run (and per group)."""
        return render(self)


def sweep(
    bars: str | os.PathLike[str] | Rates,
    *,
    symbol: str,
    seeds: int | Iterable[int] = 0,
    every: int | Iterable[int] | None = None,
    configs: Mapping[str, ConfigLike] | None = None,
    jobs: int | None = None,
    progress: Callable[[int, int], object] | None = None,
    **replay_kwargs: Any,
) -> SweepReport:
    """Replay `bars` once per grid point (config x every x seed) on `jobs` processes; combine the reports.

    Args:
        bars: as for `replay`: a CSV path or a rates array; read and checked once, here.
        seeds: the generated entries' seeds (an int or several, each >= 0).
        every: the generated entries' densities (an int or several, each >= 1; None: the default, 24).
        configs: named configurations (`Config`, a mapping or None for the defaults) to compare; without it,
            every run uses `config=` from `replay_kwargs` (or the defaults).
        jobs: worker processes (None: `os.cpu_count()`; never more than there are runs). 1 runs every replay
            in this process, one after another.
        progress: called as `progress(done_runs, total_runs)`, in this process, as runs end.
        replay_kwargs: passed to every `replay` call (`entries`, `config`, `timeframes`, `sl_atr`, `tp_r`,
            `volume`, `balance`, `warmup`, `exact`, `scale_time`). With `entries`, give neither `every` nor
            more than one seed: the runs would be the same.

    Raises:
        InvalidArgumentError: a bad grid, `jobs` or keyword; DataError: unreadable bars (before any run).
        SweepError: once every run has ended, when one or more failed; it names them and holds the others.
    """
    wall0 = time.perf_counter()
    names = _check_kwargs(configs, replay_kwargs)
    seed_list = _ints("seeds", seeds, minimum=0)
    generated = replay_kwargs.get("entries") is None
    if generated:
        every_list: list[int | None] = list(
            _ints("every", every, minimum=1) if every is not None else [DEFAULT_EVERY]
        )
    else:
        if every is not None:
            raise InvalidArgumentError("every applies to generated entries: give entries or every, not both")
        if len(seed_list) > 1:
            raise InvalidArgumentError("seeds apply to generated entries: with entries give one seed at most")
        every_list = [None]
    workers = _jobs(jobs)
    rates, source, fmt = load_bars(bars)
    grid = [
        (name, cfg, n, seed)
        for name, cfg in (configs.items() if configs is not None else [(None, None)])
        for n in every_list
        for seed in seed_list
    ]
    common = {**replay_kwargs, "symbol": symbol}
    where = (source, fmt)
    total = len(grid)
    workers = min(workers, total)
    outcomes: list[_Outcome | None] = [None] * total
    params = [_params(name, n, seed) for name, _, n, seed in grid]
    if progress is not None:
        progress(0, total)
    if workers == 1:
        for i, (_, cfg, n, seed) in enumerate(grid):
            outcomes[i] = _one(rates, common, where, configs is not None, cfg, n, seed, params[i])
            if progress is not None:
                progress(i + 1, total)
    else:
        _pool(rates, common, where, configs is not None, grid, params, workers, outcomes, progress)
    wall1 = time.perf_counter()
    runs, failures, cpu = _split(outcomes, params, rates)
    meta = {
        "symbol": symbol,
        "source": source,
        "format": fmt,
        "runs": total,
        "grid": {"configs": names, "every": every_list, "seeds": seed_list},
        "dtms_version": dtms.__version__,
    }
    timing = {
        "wall_s": wall1 - wall0,
        "jobs": float(workers),
        "runs_s": math.fsum((r.report.timing or {}).get("wall_s", 0.0) for r in runs),
        "runs_cpu_s": cpu,
    }
    report = _combine(meta, runs, timing) if runs else None
    if failures:
        raise SweepError(_failure_text(failures, total), tuple(failures), report)
    assert report is not None  # noqa: S101 - no failure means every run succeeded
    return report


# --- running ------------------------------------------------------------------------------------------------

_Outcome = tuple[Report | SweepFailure, float]  # a run's report or failure, and its CPU seconds
_SHARED: dict[str, Any] = {}  # a worker's bars and common arguments, sent once by the pool's initializer


def _init_worker(rates: Rates, common: dict[str, Any], where: tuple[str, str], named: bool) -> None:
    _SHARED.update(rates=rates, common=common, where=where, named=named)


def _task(cfg: ConfigLike, every: int | None, seed: int, params: dict[str, Any]) -> _Outcome:
    s = _SHARED
    return _one(s["rates"], s["common"], s["where"], s["named"], cfg, every, seed, params)


def _one(
    rates: Rates,
    common: dict[str, Any],
    where: tuple[str, str],
    named: bool,
    cfg: ConfigLike,
    every: int | None,
    seed: int,
    params: dict[str, Any],
) -> _Outcome:
    """One replay over the already loaded bars, reported as if it had read them from their source itself;
    with the CPU seconds it took in this process."""
    source, fmt = where
    kwargs = dict(common)
    if named:
        kwargs["config"] = cfg
    cpu0 = time.process_time()
    try:
        report = replay(rates, every=every, seed=seed, **kwargs)
    except Exception as exc:  # every error is the run's, to report with its parameters
        message = str(exc)
        if isinstance(exc, DataError) and message.startswith("array:"):
            message = source + message.removeprefix("array")  # name the file, as replay(path) would
        text = "".join(traceback.format_exception(exc))
        return SweepFailure(params, type(exc).__name__, message, text), time.process_time() - cpu0
    meta = {**report.meta, "source": source, "format": fmt}
    # bars re-attached in the parent: not pickled back once per run
    return dataclasses.replace(report, meta=meta, bars=None), time.process_time() - cpu0


def _pool(
    rates: Rates,
    common: dict[str, Any],
    where: tuple[str, str],
    named: bool,
    grid: Sequence[tuple[str | None, ConfigLike, int | None, int]],
    params: Sequence[dict[str, Any]],
    workers: int,
    outcomes: list[_Outcome | None],
    progress: Callable[[int, int], object] | None,
) -> None:
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(rates, common, where, named),
    )
    try:
        futures: dict[Future[_Outcome], int] = {
            pool.submit(_task, cfg, n, seed, params[i]): i for i, (_, cfg, n, seed) in enumerate(grid)
        }
        for done, future in enumerate(as_completed(futures), start=1):
            i = futures[future]
            try:
                outcomes[i] = future.result()
            except Exception as exc:  # the worker died (BrokenProcessPool) or its result did not pickle
                text = "".join(traceback.format_exception(exc))
                outcomes[i] = SweepFailure(params[i], type(exc).__name__, str(exc) or repr(exc), text), 0.0
            if progress is not None:
                progress(done, len(grid))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _split(
    outcomes: Sequence[_Outcome | None], params: Sequence[dict[str, Any]], rates: Rates
) -> tuple[list[SweepRun], list[SweepFailure], float]:
    """The runs (bars re-attached, one array per server-time offset), the failures (both in grid order), and
    the CPU seconds of all runs."""
    runs, failures = [], []
    utc: dict[int, Rates] = {}
    cpu = 0.0
    for item, p in zip(outcomes, params, strict=True):
        assert item is not None  # noqa: S101 - every grid point was run
        outcome, seconds = item
        cpu += seconds
        if isinstance(outcome, Report):
            offset = int(outcome.meta["server_time_offset_s"])
            if offset not in utc:
                utc[offset] = _utc_bars(rates, offset)
            runs.append(SweepRun(p, dataclasses.replace(outcome, bars=utc[offset])))
        else:
            failures.append(outcome)
    return runs, failures, cpu


def _failure_text(failures: Sequence[SweepFailure], total: int) -> str:
    lines = [f"{len(failures)} of {total} replay runs failed:"]
    lines += [f"  {_label(f.params)}: {f.error}: {f.message}" for f in failures[:_SHOWN_FAILURES]]
    if len(failures) > _SHOWN_FAILURES:
        lines.append(f"  … and {len(failures) - _SHOWN_FAILURES} more")
    return "\n".join(lines)


# --- arguments ----------------------------------------------------------------------------------------------


def _check_kwargs(configs: Mapping[str, ConfigLike] | None, kwargs: Mapping[str, Any]) -> list[str] | None:
    """The config names (None without `configs`); InvalidArgumentError for a keyword `replay` cannot take."""
    known = _FORWARDED
    for key in kwargs:
        if key == "seed":
            raise InvalidArgumentError("sweep takes seeds=, not seed=")
        if key not in known:
            raise InvalidArgumentError(f"sweep got an unknown keyword {key!r} (replay takes {sorted(known)})")
    if configs is None:
        return None
    if "config" in kwargs:
        raise InvalidArgumentError("give config or configs, not both")
    if not isinstance(configs, Mapping) or not configs:
        raise InvalidArgumentError("configs must be a non-empty mapping of name to config")
    names = list(configs)
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"config names must be non-empty strings, not {name!r}")
    return names


def _ints(name: str, value: int | Iterable[int], *, minimum: int) -> list[int]:
    items = [value] if isinstance(value, int) else list(value)
    if not items:
        raise InvalidArgumentError(f"{name} must name at least one value")
    seen: set[int] = set()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item < minimum:
            raise InvalidArgumentError(f"{name} must be integers >= {minimum}, not {item!r}")
        if item in seen:
            raise InvalidArgumentError(f"{name} lists {item} twice")
        seen.add(item)
    return items


def _jobs(jobs: int | None) -> int:
    if jobs is None:
        jobs = os.cpu_count() or 1
    elif isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidArgumentError(f"jobs must be an integer >= 1, not {jobs!r}")
    return min(jobs, _WINDOWS_MAX_WORKERS) if sys.platform == "win32" else jobs


def _params(name: str | None, every: int | None, seed: int) -> dict[str, Any]:
    return {"config": name, "every": every, "seed": seed}


def _label(params: Mapping[str, Any]) -> str:
    parts = [] if params["config"] is None else [f"config={params['config']}"]
    if params["every"] is not None:
        parts.append(f"every={params['every']}")
    parts.append(f"seed={params['seed']}")
    return " ".join(parts)


# --- statistics ---------------------------------------------------------------------------------------------


def _numbers(side: Mapping[str, Any], reasons: Sequence[str]) -> dict[str, float | None]:
    """The numeric metrics of one `summarize()` result, then its exit counts as `exits.<reason>`."""
    out: dict[str, float | None] = {}
    for key, value in side.items():
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            out[key] = None if value is None else float(value)
    exits = side.get("exits") or {}
    for reason in reasons:
        out[f"exits.{reason}"] = float(exits.get(reason, 0))
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, _DIGITS) + 0.0  # + 0.0: no -0.0 in the JSON


def stats(values: Sequence[float]) -> dict[str, Any]:
    """`{n, mean, stdev, min, max}` of `values`, rounded to 4 decimals; stdev is the sample one (n - 1)."""
    if not values:
        return {"n": 0, "mean": None, "stdev": None, "min": None, "max": None}
    return {
        "n": len(values),
        "mean": _round(math.fsum(values) / len(values)),
        "stdev": _round(statistics.stdev(values)) if len(values) >= 2 else None,
        "min": _round(min(values)),
        "max": _round(max(values)),
    }


def _rules(reports: Sequence[Report]) -> list[str]:
    """The comparison rules of the runs, in report order (every run of a sweep has the same ones)."""
    names: dict[str, None] = {}
    for rep in reports:
        names.update(dict.fromkeys(rep.comparisons))
    return list(names)


def combine(reports: Sequence[Report]) -> dict[str, Any]:
    """Per side (managed, baseline, difference) and metric, the statistics over `reports` (`SweepReport`);
    per comparison rule the same under `comparisons` and managed - rule, run by run, under `versus`."""
    rules = _rules(reports)

    def sides(rep: Report) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {"managed": rep.managed, "baseline": rep.baseline}
        out.update((f"rule:{n}", rep.comparisons[n].summary) for n in rules if n in rep.comparisons)
        return out

    reasons = sorted({r for rep in reports for s in sides(rep).values() for r in s.get("exits") or {}})
    rows = [{k: _numbers(v, reasons) for k, v in sides(rep).items()} for rep in reports]
    keys: dict[str, None] = {}
    for row in rows:
        for numbers in row.values():
            keys.update(dict.fromkeys(k for k in numbers if not k.startswith("exits.")))
    keys.update(dict.fromkeys(f"exits.{r}" for r in reasons))

    def side(first: str, minus: str | None = None) -> dict[str, Any]:
        """Statistics of side `first` (less side `minus`, run by run) over the runs where both are defined."""
        out: dict[str, Any] = {}
        for key in keys:
            values = []
            for row in rows:
                a = row[first].get(key) if first in row else None
                b = row[minus].get(key) if minus is not None and minus in row else None
                if a is not None and (minus is None or b is not None):
                    values.append(a if b is None else a - b)
            out[key] = stats(values)
        return out

    return {
        "runs": len(reports),
        "managed": side("managed"),
        "baseline": side("baseline"),
        "difference": side("managed", "baseline"),
        "comparisons": {n: side(f"rule:{n}") for n in rules},
        "versus": {n: side("managed", f"rule:{n}") for n in rules},
    }


_NONE: Final = stats([])


def _combine(meta: dict[str, Any], runs: Sequence[SweepRun], timing: dict[str, float]) -> SweepReport:
    groups: dict[tuple[str | None, int | None], list[SweepRun]] = {}
    for run in runs:
        groups.setdefault((run.params["config"], run.params["every"]), []).append(run)
    grouped = tuple(
        {
            "config": name,
            "every": every,
            "seeds": [r.params["seed"] for r in members],
            **combine([r.report for r in members]),
        }
        for (name, every), members in groups.items()
    )
    return SweepReport(meta, tuple(runs), combine([r.report for r in runs]), grouped, timing)


# --- text ---------------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else f"{value:{spec}}"


def _spread_spec(spec: str) -> str:
    return spec.replace("+", "")


def _mean_sd(s: Mapping[str, Any], spec: str, runs: int | None = None) -> str:
    if s["mean"] is None:
        return "n/a"
    text = _fmt(s["mean"], spec)
    if s["stdev"] is not None:
        text += f" ± {_fmt(s['stdev'], _spread_spec(spec))}"
    if runs is not None and s["n"] < runs:
        text += f" (n={s['n']})"
    return text


def _metric(key: str) -> tuple[str, str]:
    if key.startswith("exits."):
        return f"exits: {key.removeprefix('exits.')}", ".1f"
    return _LABELS.get(key, (key, "g"))


def text_table(rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell: the first `left` left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


#: The metrics the sweep's comparison table shows, each rule beside managed and baseline.
_COMPARED: Final = ("expectancy_r", "avg_loss_r", "win_rate", "profit_factor", "net_profit", "max_drawdown")


def _render_comparisons(s: Mapping[str, Any]) -> list[str]:
    """Mean ± stdev of each comparison rule beside managed and baseline, then managed - rule per rule."""
    rules = list(s.get("comparisons") or {})
    if not rules:
        return []
    n = s["runs"]
    lines = ["", "comparisons: the same entries under one-line rules (mean ± stdev over the runs)"]
    rows: list[list[str]] = [["", "managed", "baseline", *rules]]
    for key in _COMPARED:
        label, spec = _metric(key)
        cells = [_mean_sd(s[side][key], spec, n) for side in ("managed", "baseline")]
        rows.append([label, *cells, *(_mean_sd(s["comparisons"][r][key], spec, n) for r in rules)])
    lines += text_table(rows)
    lines += ["", "managed - rule, run by run (mean ± stdev; min … max)"]
    rows = [["", *(f"{label}" for label, _ in map(_metric, _VERSUS)), "expectancy (R) min … max"]]
    for r in rules:
        v = s["versus"][r]
        e = v["expectancy_r"]
        span = "" if e["min"] is None else f"{_fmt(e['min'], '+.3f')} … {_fmt(e['max'], '+.3f')}"
        rows.append([r, *(_mean_sd(v[key], _metric(key)[1], n) for key in _VERSUS), span])
    lines += text_table(rows)
    return lines


_VERSUS: Final = ("expectancy_r", "avg_loss_r", "net_profit", "max_drawdown")


def render(report: SweepReport) -> str:
    """The sweep for people: mean ± stdev per metric (managed, baseline, difference), the runs, the groups."""
    meta, s = report.meta, report.summary
    first = report.runs[0].report.meta
    grid = meta["grid"]
    axes = [f"configs {', '.join(grid['configs'])}"] if grid["configs"] else []
    if grid["every"] != [None]:
        axes.append("every " + ", ".join(str(n) for n in grid["every"]))
    axes.append("seeds " + ", ".join(str(n) for n in grid["seeds"]))
    lines = [
        f"dtms replay sweep: {meta['symbol']} {first['base_timeframe']} bars, engine "
        f"{'/'.join(first['timeframes'])}, {len(report.runs)} runs ({'; '.join(axes)})",
        f"period: {first['start']} → {first['end']} ({first['bars']} bars after the warm-up)",
        "",
        "mean ± sample stdev over the runs (n=: the runs where the metric is defined, when not all)",
    ]
    rows: list[list[str]] = [["", "managed", "baseline", "difference", "difference min … max"]]
    for key, m in s["managed"].items():
        label, spec = _metric(key)
        b, d, n = s["baseline"][key], s["difference"][key], s["runs"]
        span = "" if d["min"] is None else f"{_fmt(d['min'], spec)} … {_fmt(d['max'], spec)}"
        rows.append([label, _mean_sd(m, spec, n), _mean_sd(b, spec, n), _mean_sd(d, spec, n), span])
    lines += text_table(rows)
    lines += _render_comparisons(s)
    lines += ["", "runs (managed / baseline)"]
    named = grid["configs"] is not None
    head = ["config"] if named else []
    head += ["every", "seed", "trades", "expectancy (R)", "net profit", "max drawdown"]
    rows = [head]
    for run in report.runs:
        p, rm, rb = run.params, run.report.managed, run.report.baseline
        cells = [str(p["config"])] if named else []
        cells += ["-" if p["every"] is None else str(p["every"]), str(p["seed"]), str(rm["trades"])]
        for key, spec in (("expectancy_r", "+.3f"), ("net_profit", "+,.2f"), ("max_drawdown", ",.2f")):
            cells.append(f"{_fmt(rm.get(key), spec)} / {_fmt(rb.get(key), spec)}")
        rows.append(cells)
    lines += text_table(rows, left=1 if named else 0)
    if len(report.groups) > 1:
        lines += ["", "per group, over its seeds (mean ± stdev)"]
        head = (["config"] if named else []) + ["every", "runs", "expectancy (R) managed", "baseline"]
        rows = [[*head, "difference", "net profit difference"]]
        for g in report.groups:
            cells = [str(g["config"])] if named else []
            cells += ["-" if g["every"] is None else str(g["every"]), str(g["runs"])]
            cells += [_mean_sd(g[side].get("expectancy_r", _NONE), "+.3f") for side in SIDES]
            cells.append(_mean_sd(g["difference"].get("net_profit", _NONE), "+,.2f"))
            rows.append(cells)
        lines += text_table(rows, left=1 if named else 0)
    w = report.timing
    if w:
        lines += [
            "",
            f"work: {len(report.runs)} runs on {int(w['jobs'])} processes, {w['wall_s']:.2f} s "
            f"({w['runs_s']:.2f} s of runs)",
        ]
    return "\n".join(lines) + "\n"
