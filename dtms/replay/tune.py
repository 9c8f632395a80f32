"""tune(bars, …) → TuneReport: walk-forward calibration of the engine's settings with optuna.

The data after the warm-up is cut in time into K + 1 equal parts, optionally after holding out its latest
share (`holdout`). Fold k (1 … K) runs an optuna study on part k (or, `anchored`, on parts 1 … k) and replays
the best settings it found on part k + 1, the next part, which the study never saw: in-sample (IS) versus
out-of-sample (OOS). A last study, `final`, optimises on the latest part (anchored: on all of them) and its
best settings are the result; the holdout, when there is one, evaluates them once. Each trial is a
`dtms.replay.sweep` over the seeds of generated entries (or over the user's entries that fall in the part),
so trials run on every core; the sampler is optuna's TPE, seeded. With a `study` file (optuna's journal
storage, no database server) an interrupted or extended tune resumes where it stopped.

The objective is computed per run and averaged over the runs of a trial; every objective is "higher is
better" (`Objective`, `OBJECTIVES`). optuna is an optional dependency: `pip install 'dtms[tune]'`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ValidationError

import dtms
from dtms.config import Config, toml_text
from dtms.engine.symbols import DEFAULT_TIMEFRAMES, timeframe_s
from dtms.errors import ConfigError, DataError, ExtraNotInstalledError, InvalidArgumentError
from dtms.replay.inputs import DEFAULT_EVERY, Entry, Rates, _name, load_bars, read_entries, resolve_timeframes
from dtms.replay.rig import effective_config, utc
from dtms.replay.run import default_warmup, slow_bar_opens
from dtms.replay.sweep import SweepError, sweep, text_table
from dtms.report import Report, TradeResult
from dtms.sim import loaders

if TYPE_CHECKING:
    import optuna

# --- the search space ---------------------------------------------------------------------------------------

Choice = bool | int | float | str
_SPEC_KEYS: Final = frozenset({"low", "high", "step", "log", "choices"})
#: Sections that do not change how replay manages a trade (identity, timing of the leader loop and election,
#: storage, symbol names): not tunable.
_NOT_TUNABLE: Final = (
    "broker.",
    "election.",
    "execution.",
    "loop.",
    "notify.",
    "order_flow.",
    "ownership.",
    "reconcile.",
    "retention.",
    "symbols.",
)
_SIGNIFICANT: Final = 6  # continuous floats are rounded to this many significant digits


class ParamKind(StrEnum):
    """How a setting is searched: a float or int range, or a list of choices."""

    FLOAT = "float"
    INT = "int"
    CHOICE = "choice"


@dataclass(frozen=True)
class Param:
    """One searched setting: `key` (a dotted `Config` key) and its range (`low`, `high`, `step`, `log`) or
    its `choices`."""

    key: str
    kind: ParamKind
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Choice, ...] = ()

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The optuna distribution of this setting."""
        from optuna import distributions as d

        if self.kind is ParamKind.CHOICE:
            return d.CategoricalDistribution(self.choices)
        assert self.low is not None  # noqa: S101 - set for ranges
        assert self.high is not None  # noqa: S101
        if self.kind is ParamKind.INT:
            return d.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        step = None if self.step is None else float(self.step)
        return d.FloatDistribution(float(self.low), float(self.high), log=self.log, step=step)

    def value(self, raw: Any) -> Choice:
        """The setting's value for a sampled `raw` one: ints as ints, floats on a step rounded to the
        step's decimals, other floats to 6 significant digits (so the written config reads well and is
        exactly what was evaluated)."""
        if self.kind is ParamKind.CHOICE:
            return typing.cast(Choice, raw)
        if self.kind is ParamKind.INT:
            return int(raw)
        if self.step is not None:
            places = max(0, -int(Decimal(str(self.step)).normalize().as_tuple().exponent))
            return round(float(raw), places) + 0.0
        return float(f"{float(raw):.{_SIGNIFICANT}g}")

    def contains(self, value: Any) -> bool:
        """Whether `value` is one this setting can take (for starting a study at the base config)."""
        if self.kind is ParamKind.CHOICE:
            return any(type(value) is type(c) and value == c for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        assert self.low is not None  # noqa: S101 - set for ranges
        assert self.high is not None  # noqa: S101
        if not self.low <= value <= self.high:
            return False
        if self.step is None:
            return self.kind is ParamKind.FLOAT or float(value).is_integer()
        n = (value - self.low) / self.step
        return abs(n - round(n)) < 1e-9

    def spec(self) -> dict[str, Any]:
        """The TOML / JSON form: `{low, high[, step][, log]}` or `{choices}`."""
        if self.kind is ParamKind.CHOICE:
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out

    def describe(self) -> str:
        if self.kind is ParamKind.CHOICE:
            return f"{self.key} in {{{', '.join(_literal(c) for c in self.choices)}}}"
        extra = f" step {self.step:g}" if self.step is not None else (" log" if self.log else "")
        return f"{self.key} {self.low:g} … {self.high:g}{extra}"


@dataclass(frozen=True)
class SearchSpace:
    """The settings a tune searches, each a `Param`; build it with `SearchSpace.from_mapping`, `load` or
    `default`. Keys are validated against `Config`: unknown keys, untunable ones and bad ranges raise
    `InvalidArgumentError` naming the key."""

    params: tuple[Param, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SearchSpace:
        """A space from `{key: spec}`: dotted keys (`"actions.tighten_r"`) or nested tables, each spec
        `{low, high}` with optional `step` (a grid) or `log = true` (a log scale), or `{choices = [...]}`.

        Raises:
            InvalidArgumentError: an empty space, an unknown or untunable key, a spec of the wrong shape or
                type for the setting, or a range whose ends the setting does not accept.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"the search space must be a table of key = spec, not {data!r}")
        flat = _flatten(data)
        if not flat:
            raise InvalidArgumentError("the search space is empty: name at least one setting to tune")
        return cls(tuple(_param(key, spec) for key, spec in flat.items()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SearchSpace:
        """The `[tune.space]` table of the TOML file at `path`.

        Raises:
            InvalidArgumentError: unreadable or invalid TOML, no `[tune.space]` table, or a bad space.
        """
        try:
            with Path(path).open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgumentError(f"invalid TOML in {path}: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise InvalidArgumentError(f"cannot read search space file {path}: {exc}") from exc
        tune = data.get("tune")
        space = tune.get("space") if isinstance(tune, Mapping) else None
        if not isinstance(space, Mapping):
            raise InvalidArgumentError(
                f'{path}: no [tune.space] table (e.g. [tune.space] "actions.tighten_r" = '
                "{low = 0.2, high = 0.8})"
            )
        try:
            return cls.from_mapping(space)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"{path}: {exc}") from exc

    @classmethod
    def default(cls, timeframe: str = DEFAULT_TIMEFRAMES[0], *, scale_time: bool = True) -> SearchSpace:
        """The default space (`DEFAULT_SPACE`): the T1 tighten, the T3 partial close, the hedge's size and
        stop, the flat and recovery timers and the score thresholds of the state machine. The timers'
        ranges are in seconds on M5 and, like replay's defaults, scaled to a coarser fast `timeframe`
        unless `scale_time` is False."""
        scale = max(1.0, timeframe_s(timeframe) / timeframe_s(DEFAULT_TIMEFRAMES[0])) if scale_time else 1.0
        data: dict[str, Any] = {}
        for key, spec in DEFAULT_SPACE.items():
            if key in _TIMERS and scale != 1:
                spec = {**spec, "low": spec["low"] * scale, "high": spec["high"] * scale}
            data[key] = spec
        return cls.from_mapping(data)

    def values(self, params: Mapping[str, Any]) -> dict[str, Choice]:
        """The settings' values for optuna's sampled `params` (see `Param.value`)."""
        return {p.key: p.value(params[p.key]) for p in self.params}

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {p.key: p.distribution() for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        return {p.key: p.spec() for p in self.params}

    def to_toml(self) -> str:
        """The space as a `[tune.space]` table, the form `SearchSpace.load` reads."""
        lines = ["[tune.space]"]
        for p in self.params:
            inner = ", ".join(f"{k} = {_literal(v)}" for k, v in p.spec().items())
            lines.append(f'"{p.key}" = {{ {inner} }}')
        return "\n".join(lines) + "\n"


#: The timers of the default space: seconds on M5, scaled to coarser data like replay's own defaults.
_TIMERS: Final = frozenset({"fsm.flat_timer_s", "fsm.recovery_timer_s"})

#: The default search space (timers in seconds on M5 bars): the defensive paths a trade takes. The score
#: thresholds' ranges do not overlap, so every sample keeps l1 > l2 > hedged and the hysteresis above them.
DEFAULT_SPACE: Final[dict[str, dict[str, Any]]] = {
    "actions.tighten_r": {"low": 0.15, "high": 0.8},  # T1: the tightened SL's distance, in R
    "actions.tighten_min_atr": {"low": 0.25, "high": 2.0},  # T1: its noise floor, in fast ATRs
    "partial_close.fraction": {"low": 0.25, "high": 0.75, "step": 0.05},  # T3: share closed
    "hedge.fraction": {"low": 0.25, "high": 1.0, "step": 0.05},  # T5: hedge volume
    "hedge.sl_atr": {"low": 0.25, "high": 2.0},  # T5: hedge SL, in slow ATRs
    "fsm.flat_timer_s": {"low": 1800.0, "high": 10800.0, "log": True},  # T6: HEDGED closes after this
    "fsm.recovery_timer_s": {"low": 600.0, "high": 5400.0, "log": True},  # T7 → T8/T9
    "fsm.down.l1": {"low": -3.0, "high": -1.0, "step": 0.25},  # T1 at score ≤ this
    "fsm.down.l2": {"low": -5.25, "high": -3.25, "step": 0.25},  # T3
    "fsm.down.hedged": {"low": -8.0, "high": -5.5, "step": 0.25},  # T5
}


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and set(value) <= _SPEC_KEYS:
            out[name] = value
        elif isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            raise InvalidArgumentError(
                f"{name}: a search spec is a table {{low = …, high = …}} (optional step = …, log = true) "
                f"or {{choices = [...]}}, not {value!r}"
            )
    return out


def _annotation(key: str) -> Any:
    """The type of the Config setting at dotted `key`; InvalidArgumentError (with a suggestion) if none."""
    model: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        if part not in fields:
            known = [k for k in _tunable_keys() if k.startswith(".".join(parts[:i]))] or _tunable_keys()
            near = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise InvalidArgumentError(f"unknown setting {key!r} in the search space{hint}")
        model = fields[part].annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        raise InvalidArgumentError(f"{key!r} is a section, not a setting: name one of its keys")
    return model


def _tunable_keys() -> list[str]:
    from dtms.config import leaf_keys

    return [k for k in leaf_keys() if not k.startswith(_NOT_TUNABLE)]


def _param(key: str, spec: Mapping[str, Any]) -> Param:
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"search space keys must be dotted setting names, not {key!r}")
    ann = _annotation(key)
    if key.startswith(_NOT_TUNABLE):
        raise InvalidArgumentError(f"{key!r} does not change how replay manages a trade: not tunable")
    literal = typing.get_origin(ann) is Literal
    if ann not in (bool, int, float) and not literal:
        raise InvalidArgumentError(f"{key!r} is not a number, a flag or a named choice: not tunable")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise InvalidArgumentError(f"{key}: give choices alone, or low and high (not both)")
        choices = spec["choices"]
        if not isinstance(choices, list | tuple) or not choices:
            raise InvalidArgumentError(f"{key}: choices must be a non-empty list, not {choices!r}")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise InvalidArgumentError(f"{key}: choices lists a value twice: {list(choices)}")
        for c in choices:
            ok = (
                c in typing.get_args(ann)
                if literal
                else isinstance(c, bool)
                if ann is bool
                else isinstance(c, int) and not isinstance(c, bool)
                if ann is int
                else isinstance(c, int | float) and not isinstance(c, bool)
            )
            if not ok:
                allowed = (
                    ", ".join(map(_literal, typing.get_args(ann)))
                    if literal
                    else "true, false"
                    if ann is bool
                    else ann.__name__ + "s"
                )
                raise InvalidArgumentError(
                    f"{key}: choice {c!r} is not one of the setting's values ({allowed})"
                )
            _check_value(key, c)
        return Param(key, ParamKind.CHOICE, choices=tuple(float(c) if ann is float else c for c in choices))
    if ann is bool or literal:
        raise InvalidArgumentError(f"{key}: this setting takes named values: give {{choices = [...]}}")
    missing = {"low", "high"} - set(spec)
    if missing:
        raise InvalidArgumentError(
            f"{key}: a range needs low and high (missing {', '.join(sorted(missing))})"
        )
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    numbers = (low, high) if step is None else (low, high, step)
    for name, v in zip(("low", "high", "step"), numbers, strict=False):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InvalidArgumentError(f"{key}: {name} must be a finite number, not {v!r}")
        if ann is int and not isinstance(v, int):
            raise InvalidArgumentError(f"{key} is an integer setting: {name} must be an integer, not {v!r}")
    if not isinstance(log, bool):
        raise InvalidArgumentError(f"{key}: log must be true or false, not {log!r}")
    if not low < high:
        raise InvalidArgumentError(f"{key}: low ({low!r}) must be below high ({high!r})")
    if step is not None:
        if log:
            raise InvalidArgumentError(f"{key}: give step or log = true, not both")
        if step <= 0:
            raise InvalidArgumentError(f"{key}: step must be positive, not {step!r}")
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9:
            raise InvalidArgumentError(
                f"{key}: high - low ({high - low:g}) is not a multiple of step ({step:g})"
            )
    if log and low <= 0:
        raise InvalidArgumentError(f"{key}: a log range needs low > 0, not {low!r}")
    for v in (low, high):
        _check_value(key, v)
    if ann is int:
        return Param(key, ParamKind.INT, int(low), int(high), None if step is None else int(step), log)
    return Param(key, ParamKind.FLOAT, float(low), float(high), None if step is None else float(step), log)


def _nested(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    *path, leaf = key.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def _check_value(key: str, value: Any) -> None:
    """InvalidArgumentError when the setting itself refuses `value` (its own bounds); errors that come from
    combining it with other settings' defaults (fsm's ordering) are left to the trials."""
    try:
        Config.model_validate(_nested(key, value))
    except ValidationError as exc:
        mine = [e for e in exc.errors() if tuple(str(p) for p in e["loc"]) == tuple(key.split("."))]
        if mine:
            raise InvalidArgumentError(f"{key}: {value!r} is not a valid value ({mine[0]['msg']})") from None


# --- the objective ------------------------------------------------------------------------------------------


class Objective(StrEnum):
    """What a trial maximises, per run, averaged over the runs (all "higher is better", in R)."""

    EXPECTANCY_DD = "expectancy_dd"
    EXPECTANCY = "expectancy"
    AVG_LOSS = "avg_loss"
    DRAWDOWN = "drawdown"
    VS_BASELINE = "vs_baseline"
    VS_CHANDELIER = "vs_chandelier"


DEFAULT_OBJECTIVE: Final = Objective.EXPECTANCY_DD
DEFAULT_DD_WEIGHT: Final = 0.5
#: The comparison rule `Objective.VS_CHANDELIER` measures against (`dtms.replay.rules`).
CHANDELIER_RULE: Final = "chandelier_3atr"

#: Each objective's formula, per run (R: the trade's result in multiples of its initial risk).
OBJECTIVES: Final[dict[Objective, str]] = {
    Objective.EXPECTANCY_DD: "expectancy (R) - w x max drawdown (R) / trades",
    Objective.EXPECTANCY: "expectancy (R): the mean R of the managed trades",
    Objective.AVG_LOSS: "avg loss (R): the mean R of the losing trades (closer to 0 is better)",
    Objective.DRAWDOWN: "-max drawdown (R) of the managed trades' closed equity",
    Objective.VS_BASELINE: "expectancy (R) managed - expectancy (R) of the same entries unmanaged",
    Objective.VS_CHANDELIER: f"expectancy (R) managed - expectancy (R) under the {CHANDELIER_RULE} rule",
}


@dataclass(frozen=True)
class RunMetrics:
    """The numbers of one replay run an objective reads, all in R (`max_drawdown_r`: the largest fall of
    the managed trades' cumulative R from its running peak, trades in exit order, as `summarize` does)."""

    trades: int
    expectancy_r: float | None
    avg_loss_r: float | None
    max_drawdown_r: float
    baseline_expectancy_r: float | None
    chandelier_expectancy_r: float | None

    @classmethod
    def of(cls, report: Report) -> RunMetrics:
        chandelier = report.comparisons.get(CHANDELIER_RULE)
        return cls(
            trades=int(report.managed["trades"]),
            expectancy_r=report.managed["expectancy_r"],
            avg_loss_r=report.managed["avg_loss_r"],
            max_drawdown_r=drawdown_r([m for m, _ in report.trades]),
            baseline_expectancy_r=report.baseline["expectancy_r"],
            chandelier_expectancy_r=None if chandelier is None else chandelier.summary["expectancy_r"],
        )


def drawdown_r(trades: Sequence[TradeResult]) -> float:
    """The largest fall of the cumulative R from its running peak (start 0), trades in exit order."""
    equity = peak = drawdown = 0.0
    for t in sorted(trades, key=lambda t: (t.exit_at, t.n)):
        equity += t.r
        peak = max(peak, equity)
        drawdown = max(drawdown, peak - equity)
    return drawdown


def score(
    m: RunMetrics, objective: Objective = DEFAULT_OBJECTIVE, dd_weight: float = DEFAULT_DD_WEIGHT
) -> float | None:
    """`objective` of one run (`OBJECTIVES`); None where it is undefined (no trades, no loss, no rule)."""
    if m.trades == 0 or m.expectancy_r is None:
        return None
    if objective is Objective.EXPECTANCY_DD:
        return m.expectancy_r - dd_weight * m.max_drawdown_r / m.trades
    if objective is Objective.EXPECTANCY:
        return m.expectancy_r
    if objective is Objective.AVG_LOSS:
        return m.avg_loss_r
    if objective is Objective.DRAWDOWN:
        return -m.max_drawdown_r
    if objective is Objective.VS_BASELINE:
        return None if m.baseline_expectancy_r is None else m.expectancy_r - m.baseline_expectancy_r
    return None if m.chandelier_expectancy_r is None else m.expectancy_r - m.chandelier_expectancy_r


_DIGITS: Final = 4


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return None if not defined else round(math.fsum(defined) / len(defined), _DIGITS) + 0.0


@dataclass(frozen=True)
class Evaluation:
    """One set of settings on one period: the objective and the metrics behind it, each the mean over the
    runs (seeds) where it is defined; `scored` counts the runs the objective was defined in."""

    objective: float | None
    runs: int
    scored: int
    trades: float
    expectancy_r: float | None
    max_drawdown_r: float | None
    avg_loss_r: float | None

    @classmethod
    def of(cls, runs: Sequence[RunMetrics], objective: Objective, dd_weight: float) -> Evaluation:
        scores = [score(m, objective, dd_weight) for m in runs]
        return cls(
            objective=_mean(scores),
            runs=len(runs),
            scored=sum(s is not None for s in scores),
            trades=_mean([float(m.trades) for m in runs]) or 0.0,
            expectancy_r=_mean([m.expectancy_r for m in runs]),
            max_drawdown_r=_mean([m.max_drawdown_r for m in runs]),
            avg_loss_r=_mean([m.avg_loss_r for m in runs]),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


# --- the folds ----------------------------------------------------------------------------------------------

MIN_PART_SLOW_BARS: Final = 4  # a part shorter than this many slow bars is refused


@dataclass(frozen=True)
class Period:
    """A span of the data in slow-timeframe bars: `first` (the first bar trades may open on) to `stop`
    (exclusive), with its UTC start and end and the number of bars of the data in it."""

    first: int
    stop: int
    start: str
    end: str
    bars: int

    @property
    def slow_bars(self) -> int:
        return self.stop - self.first

    def text(self) -> str:
        return f"{self.start[:10]} → {self.end[:10]}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "slow_bars": self.slow_bars}


@dataclass(frozen=True)
class Fold:
    """One study: it optimises on `train` and its best settings are replayed on `test` (None: the final
    study without a holdout). `name` is "1" … "K" or "final"."""

    name: str
    train: Period
    test: Period | None


@dataclass(frozen=True)
class FoldPlan:
    """How a tune cuts the data: the warm-up (slow bars before the first part), the K + 1 parts, the
    holdout, the K walk-forward folds and the final study."""

    slow: str
    warmup: int
    anchored: bool
    parts: tuple[Period, ...]
    holdout: Period | None
    folds: tuple[Fold, ...]
    final: Fold

    @property
    def studies(self) -> tuple[Fold, ...]:
        return (*self.folds, self.final)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slow_timeframe": self.slow,
            "warmup": self.warmup,
            "anchored": self.anchored,
            "parts": [p.to_dict() for p in self.parts],
            "holdout": None if self.holdout is None else self.holdout.to_dict(),
        }


@dataclass(frozen=True)
class _Bars:
    """The bars and what cutting them needs: times (server), the slow bars' opens, the UTC offset."""

    rates: Rates
    source: str
    times: npt.NDArray[np.int64]
    opens: npt.NDArray[np.int64]
    base_s: int
    offset: int

    def index(self, slow_bar: int) -> int:
        """The first bar of the data in slow bar `slow_bar` (len for the end)."""
        if slow_bar >= len(self.opens):
            return len(self.times)
        return int(np.searchsorted(self.times, self.opens[slow_bar]))

    def period(self, first: int, stop: int) -> Period:
        end = (
            int(self.opens[stop]) if stop < len(self.opens) else int(self.times[-1]) + self.base_s
        ) - self.offset
        start = int(self.opens[first]) - self.offset
        return Period(
            first,
            stop,
            utc(start * 1000).isoformat(),
            utc(end * 1000).isoformat(),
            self.index(stop) - self.index(first),
        )

    def cut(self, period: Period, warmup: int) -> Rates:
        """The bars of `period` with the `warmup` slow bars before it (for the indicators only)."""
        return self.rates[self.index(period.first - warmup) : self.index(period.stop)]


def _walk_forward(
    data: _Bars, slow: str, folds: int, holdout: float, warmup: int, anchored: bool
) -> FoldPlan:
    n = len(data.opens)
    if warmup < 30:
        raise InvalidArgumentError(f"warmup must be at least 30 {slow} bars (replay's minimum), not {warmup}")
    usable = n - warmup
    kept = usable - (round(usable * holdout) if holdout > 0 else 0)
    need = MIN_PART_SLOW_BARS * (folds + 1 + (holdout > 0))
    if usable < need or (holdout > 0 and usable - kept < MIN_PART_SLOW_BARS):
        raise DataError(
            f"{data.source}: {n} {slow} bars leave {usable} after a warm-up of {warmup}: too few for "
            f"{folds} folds ({folds + 1} parts){' and a holdout' if holdout > 0 else ''} of at least "
            f"{MIN_PART_SLOW_BARS} {slow} bars each; use fewer folds, a smaller holdout or a shorter warm-up"
        )
    bounds = [warmup + round(i * kept / (folds + 1)) for i in range(folds + 2)]
    parts = tuple(data.period(a, b) for a, b in itertools.pairwise(bounds))
    if min(p.slow_bars for p in parts) < MIN_PART_SLOW_BARS:
        raise DataError(
            f"{data.source}: {kept} {slow} bars cut into {folds + 1} parts leave one shorter than "
            f"{MIN_PART_SLOW_BARS} {slow} bars; use fewer folds"
        )
    held = data.period(warmup + kept, n) if kept < usable else None

    def train(k: int) -> Period:
        return data.period(parts[0].first, parts[k].stop) if anchored else parts[k]

    fold_list = tuple(Fold(str(k + 1), train(k), parts[k + 1]) for k in range(folds))
    return FoldPlan(slow, warmup, anchored, parts, held, fold_list, Fold("final", train(folds), held))


def _bars_of(
    rates: Rates, source: str, timeframes: Sequence[str] | None, config: Config
) -> tuple[_Bars, str, str]:
    base_s = loaders.base_interval(rates)
    fast, slow = resolve_timeframes(base_s, timeframes, source)
    offset = config.broker.server_time if isinstance(config.broker.server_time, int) else 0
    times = rates["time"].astype(np.int64)
    return _Bars(rates, source, times, slow_bar_opens(times, slow), base_s, offset), fast, slow


def plan_folds(
    bars: str | os.PathLike[str] | Rates,
    *,
    timeframes: Sequence[str] | None = None,
    folds: int = 3,
    holdout: float = 0.2,
    warmup: int | None = None,
    anchored: bool = False,
    config: Config | Mapping[str, Any] | None = None,
) -> FoldPlan:
    """How `tune` cuts `bars` into walk-forward folds (see the module's docstring), without running them.

    The `warmup` slow bars (default as `replay`'s: `data.m15_window`, or a third of the data when it has
    fewer than twice that) come first; the rest, less the latest `holdout` share, is cut into `folds` + 1
    parts of (nearly) equal length on slow-bar boundaries.

    Raises:
        InvalidArgumentError: bad folds, holdout or warmup. DataError: unreadable bars, or too few for the
            folds (each part and the holdout need `MIN_PART_SLOW_BARS` slow bars).
    """
    _check_fold_args(folds, holdout)
    rates, source, _ = load_bars(bars)
    cfg, _, _ = effective_config(config, DEFAULT_TIMEFRAMES[0], scale_time=False)
    data, _, slow = _bars_of(rates, source, timeframes, cfg)
    return _walk_forward(data, slow, folds, holdout, warmup or default_warmup(cfg, len(data.opens)), anchored)


def _check_fold_args(folds: int, holdout: float) -> None:
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise InvalidArgumentError(f"folds must be an integer >= 1, not {folds!r}")
    if isinstance(holdout, bool) or not isinstance(holdout, int | float) or not 0 <= holdout <= 0.5:
        raise InvalidArgumentError(f"holdout must be a share of the data from 0 to 0.5, not {holdout!r}")


# --- the report ---------------------------------------------------------------------------------------------

#: Out-of-sample "much worse" than in-sample: below IS by more than this share of |IS| …
OVERFIT_RATIO: Final = 0.5
#: … and by more than this much of the objective (R for the default), so noise near 0 does not warn.
OVERFIT_FLOOR: Final = 0.05


def overfit(in_sample: float | None, out_of_sample: float | None, *, ratio: float = OVERFIT_RATIO,
            floor: float = OVERFIT_FLOOR) -> bool:  # fmt: skip
    """Whether `out_of_sample` is much worse than `in_sample`: OOS < IS - max(ratio x |IS|, floor)."""
    if in_sample is None or out_of_sample is None:
        return False
    return out_of_sample < in_sample - max(ratio * abs(in_sample), floor)


@dataclass(frozen=True)
class FoldResult:
    """One study's outcome: its trials, the best settings, and both settings (best and the base config)
    in-sample (on `train`) and out-of-sample (on `test`; None without one)."""

    name: str
    train: Period
    test: Period | None
    trials: int
    complete: int
    failed: int
    best_trial: int
    best_params: dict[str, Choice]
    in_sample: Evaluation
    in_sample_default: Evaluation | None
    out_of_sample: Evaluation | None
    out_of_sample_default: Evaluation | None
    overfit: bool
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def ev(e: Evaluation | None) -> dict[str, Any] | None:
            return None if e is None else e.to_dict()

        return {
            "name": self.name,
            "train": self.train.to_dict(),
            "test": None if self.test is None else self.test.to_dict(),
            "trials": {"finished": self.trials, "complete": self.complete, "failed": self.failed},
            "best_trial": self.best_trial,
            "best_params": self.best_params,
            "in_sample": {"best": ev(self.in_sample), "default": ev(self.in_sample_default)},
            "out_of_sample": {"best": ev(self.out_of_sample), "default": ev(self.out_of_sample_default)},
            "overfit": self.overfit,
            "errors": list(self.errors),
        }


@dataclass(frozen=True)
class TuneReport:
    """What `tune` found: the folds in-sample vs out-of-sample, the final study, the best settings and the
    config they make (`config`: the base settings with the best ones merged in), and the warnings.

    Everything but `timing` derives from the inputs and the study; `to_json()` is stable.
    """

    meta: dict[str, Any]
    space: SearchSpace
    plan: FoldPlan
    folds: tuple[FoldResult, ...]
    final: FoldResult
    defaults: dict[str, Choice]
    config: dict[str, Any]
    warnings: tuple[str, ...]
    timing: dict[str, float] | None = field(default=None, compare=False)

    @property
    def best_params(self) -> dict[str, Choice]:
        """The final study's best settings, by dotted key."""
        return self.final.best_params

    def best_config(self) -> Config:
        """The tuned settings as a `Config` (broker.server_time as the base config had it)."""
        return Config.from_mapping(self.config)

    def config_toml(self) -> str:
        """The tuned config as TOML for `dtms replay --config` / `Config.load`, with a header saying where
        it came from (the base config's own settings are kept)."""
        m = self.meta
        head = [
            f"# dtms tune {dtms.__version__}: {m['symbol']} {m['base_timeframe']} bars {m['start'][:10]} → "
            f"{m['end'][:10]}, engine {'/'.join(m['timeframes'])}",
            f"# objective {m['objective']}: {m['formula']}",
            f"# final study: best of {self.final.trials} trials on {self.final.train.text()}, in-sample "
            f"{_num(self.final.in_sample.objective)}"
            + (
                f"; holdout {self.final.test.text()}: {_num(_obj(self.final.out_of_sample))}"
                if self.final.test is not None
                else ""
            ),
            *(f"# WARNING: {w}" for w in self.warnings),
        ]
        if "broker" not in self.config or "server_time" not in self.config.get("broker", {}):
            head.append(
                "# broker.server_time is not set here: replay takes 0; set your broker's for live use"
            )
        return "\n".join(head) + "\n\n" + toml_text(self.config)

    def write_config(self, path: str | os.PathLike[str]) -> Path:
        """Write `config_toml()` to `path`; returns the path."""
        out = Path(path)
        out.write_text(self.config_toml(), encoding="utf-8")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "space": self.space.to_dict(),
            "plan": self.plan.to_dict(),
            "folds": [f.to_dict() for f in self.folds],
            "final": self.final.to_dict(),
            "defaults": self.defaults,
            "best_params": self.best_params,
            "config": self.config,
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        """Stable JSON (sorted keys; the timing is left out)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"

    def render(self) -> str:
        """The report for people: the in-sample vs out-of-sample table, the best settings, the warnings."""
        return _render(self)


def _obj(e: Evaluation | None) -> float | None:
    return None if e is None else e.objective


def _num(value: float | None, spec: str = "+.3f") -> str:
    return "n/a" if value is None else f"{value:{spec}}"


def _render(report: TuneReport) -> str:
    m = report.meta
    plan = report.plan
    entries = (
        f"seeds {_ranges(m['seeds'])}, an entry every {', '.join(map(str, m['every']))} "
        f"{m['timeframes'][0]} bars"
        if m["entries"] == "generated"
        else f"the given entries ({m['entries_used']} in the parts)"
    )
    mode = (
        "anchored: optimise on parts 1 … k, evaluate on part k + 1"
        if plan.anchored
        else "rolling: optimise on part k, evaluate on part k + 1"
    )
    lines = [
        f"dtms tune: {m['symbol']} {m['base_timeframe']} bars, engine {'/'.join(m['timeframes'])}, "
        f"{m['start'][:10]} → {m['end'][:10]} after a warm-up of {plan.warmup} {plan.slow} bars",
        f"objective {m['objective']} (higher is better): {m['formula']}",
        f"walk-forward: {len(report.folds)} folds, {mode}; "
        + (f"holdout {plan.holdout.text()}" if plan.holdout is not None else "no holdout"),
        f"trials: {m['trials']} per study, {entries}; space: {len(report.space.params)} settings",
        "",
        "in-sample (IS: the part optimised on) vs out-of-sample (OOS: the next part), objective per config",
    ]
    rows: list[list[str]] = [
        ["fold", "optimised on", "evaluated on", "trials", "IS best", "IS default", "OOS best", "OOS default",
         "IS - OOS", ""],
    ]  # fmt: skip
    for f in (*report.folds, report.final):
        gap = (
            None
            if f.out_of_sample is None or f.out_of_sample.objective is None or f.in_sample.objective is None
            else f.in_sample.objective - f.out_of_sample.objective
        )
        rows.append(
            [
                f.name if f.name != "final" else "final (holdout)" if f.test is not None else "final",
                f.train.text(),
                "-" if f.test is None else f.test.text(),
                f"{f.complete}/{f.trials}",
                _num(f.in_sample.objective),
                _num(_obj(f.in_sample_default)),
                _num(_obj(f.out_of_sample)),
                _num(_obj(f.out_of_sample_default)),
                _num(gap),
                "OVERFIT" if f.overfit else "",
            ]
        )
    means = _fold_means(report.folds)
    rows.append(["mean of folds", "", "", "", *(_num(v) for v in means), ""])
    lines += text_table(rows)
    lines += ["", "the metrics behind them (mean over the runs): trades, expectancy (R), max drawdown (R)"]
    rows = [["fold", "IS best", "IS default", "OOS best", "OOS default"]]
    for f in (*report.folds, report.final):
        cells = [f.name]
        for e in (f.in_sample, f.in_sample_default, f.out_of_sample, f.out_of_sample_default):
            cells.append(
                "-"
                if e is None
                else f"{e.trades:.1f}  {_num(e.expectancy_r)}  {_num(e.max_drawdown_r, '.2f')}"
            )
        rows.append(cells)
    lines += text_table(rows)
    lines += [
        "",
        f"best settings (the final study's trial {report.final.best_trial}; base value in brackets)",
    ]
    rows = [[k, _literal(v), f"({_literal(report.defaults.get(k))})"] for k, v in report.best_params.items()]
    lines += ["  " + line for line in text_table(rows)]
    if report.warnings:
        lines += ["", "warnings:"]
        lines += [f"  - {w}" for w in report.warnings]
    w = report.timing
    if w:
        lines += [
            "",
            f"work: {int(w['runs'])} replay runs on {int(w['jobs'])} processes, {w['wall_s']:.1f} s",
        ]
    return "\n".join(lines) + "\n"


def _fold_means(folds: Sequence[FoldResult]) -> list[float | None]:
    cols: list[list[float | None]] = [
        [f.in_sample.objective for f in folds],
        [_obj(f.in_sample_default) for f in folds],
        [_obj(f.out_of_sample) for f in folds],
        [_obj(f.out_of_sample_default) for f in folds],
    ]
    means = [None if any(v is None for v in c) else _mean(c) for c in cols]
    gap = None if means[0] is None or means[2] is None else round(means[0] - means[2], _DIGITS) + 0.0
    return [*means, gap]


def _ranges(values: Sequence[int]) -> str:
    out, run = [], [values[0]] if values else []
    for v in values[1:]:
        if v == run[-1] + 1:
            run.append(v)
        else:
            out.append(run)
            run = [v]
    if run:
        out.append(run)
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in out)


def _why(f: FoldResult) -> str:
    """Whether the base config fell about as far between the same parts: then the gap is the data's (a
    harder part), not only the fit's."""
    is_best, oos_best = f.in_sample.objective, _obj(f.out_of_sample)
    is_base, oos_base = _obj(f.in_sample_default), _obj(f.out_of_sample_default)
    if is_best is None or oos_best is None or is_base is None or oos_base is None:
        return ": the settings may fit that part's noise"
    if is_base - oos_base >= 0.5 * (is_best - oos_best):
        return (
            f"; the base config fell nearly as far ({_num(is_base)} → {_num(oos_base)}): much of the gap is "
            "the next part being harder, not only the fit"
        )
    return f": the base config held up better ({_num(is_base)} → {_num(oos_base)}), the settings fit noise"


def _warnings(
    folds: Sequence[FoldResult], final: FoldResult, defaults: Mapping[str, Choice], ratio: float, floor: float
) -> list[str]:
    out = []
    rule = f"OOS below IS by more than max({ratio:g} x |IS|, {floor:g})"
    for f in folds:
        if f.overfit:
            out.append(
                f"fold {f.name}: out-of-sample {_num(_obj(f.out_of_sample))} is much worse than in-sample "
                f"{_num(f.in_sample.objective)} ({rule}){_why(f)}"
            )
    means = _fold_means(folds)
    if len(folds) > 1 and overfit(means[0], means[2], ratio=ratio, floor=floor):
        out.append(
            f"overfitting: over the folds, out-of-sample {_num(means[2])} is much worse than in-sample "
            f"{_num(means[0])}; trust the OOS column, not the IS one, and consider a smaller space, more "
            "seeds or longer parts"
        )
    if final.test is not None and final.overfit:
        out.append(
            f"holdout: the final settings score {_num(_obj(final.out_of_sample))} on the holdout against "
            f"{_num(final.in_sample.objective)} in-sample ({rule})"
        )
    worse = [
        f.name
        for f in folds
        if f.best_params != defaults
        and _obj(f.out_of_sample) is not None
        and _obj(f.out_of_sample_default) is not None
        and typing.cast(float, _obj(f.out_of_sample)) <= typing.cast(float, _obj(f.out_of_sample_default))
    ]
    if worse and len(worse) * 2 >= len(folds):
        out.append(
            f"out of sample the tuned settings did no better than the base config in {len(worse)} of "
            f"{len(folds)} folds ({', '.join(worse)})"
        )
    kept = [f.name for f in (*folds, final) if f.best_params == defaults]
    if kept:
        out.append(
            f"the base config was the best trial of {'study' if len(kept) == 1 else 'studies'} "
            f"{', '.join(kept)}: more trials may find better settings, or the defaults are hard to beat here"
        )
    for f in (*folds, final):
        if f.failed:
            first = f" (first: {f.errors[0]})" if f.errors else ""
            out.append(f"study {f.name}: {f.failed} of {f.trials} trials failed{first}")
    return out


# --- running ------------------------------------------------------------------------------------------------


def require_optuna() -> Any:
    """The optuna module; ExtraNotInstalledError saying `pip install 'dtms[tune]'` when it is missing."""
    try:
        import optuna
    except ImportError as exc:
        raise ExtraNotInstalledError("dtms tune needs optuna: pip install 'dtms[tune]'") from exc
    return optuna


def _deep_merge(into: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else value
    return into


def _overrides(values: Mapping[str, Choice]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        _deep_merge(out, _nested(key, value))
    return out


def _base_mapping(config: Config | Mapping[str, Any] | None) -> dict[str, Any]:
    """The base settings as a nested mapping: a mapping as given, a `Config` as its non-default values."""
    if config is None:
        return {}
    if isinstance(config, Config):
        return _diff(config.to_dict(), Config().to_dict())
    if not isinstance(config, Mapping):
        raise InvalidArgumentError(f"config must be a Config or a mapping, not {type(config).__name__}")
    Config.from_mapping(config)  # ConfigError now, naming the key, not in every run
    return copy.deepcopy(dict(config))


def _diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in a.items():
        other = b.get(key)
        if isinstance(value, Mapping) and isinstance(other, Mapping):
            sub = _diff(value, other)
            if sub:
                out[key] = sub
        elif value != other:
            out[key] = value
    return out


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


@dataclass
class _Progress:
    callback: Callable[[int, int], object] | None
    total: int
    done: int = 0

    def tick(self, extra: int = 0) -> None:
        if self.callback is not None:
            self.callback(min(self.done + extra, self.total), self.total)


@dataclass
class _Run:
    """Everything the studies share."""

    symbol: str
    data: _Bars
    space: SearchSpace
    objective: Objective
    dd_weight: float
    base: dict[str, Any]
    defaults: dict[str, Choice]
    entries: list[Entry] | None
    seeds: list[int]
    every: list[int] | None
    replay_kwargs: dict[str, Any]
    jobs: int | None
    batch: int
    warmup: int
    progress: _Progress
    runs: int = 0

    def evaluate(
        self, period: Period, configs: Mapping[str, Mapping[str, Any]], per: int = 0
    ) -> dict[str, tuple[Evaluation | None, str | None]]:
        """Each config replayed on `period` over the seeds (or the period's entries): its evaluation, or
        None and the first error of a run that failed."""
        kwargs: dict[str, Any] = dict(self.replay_kwargs, warmup=self.warmup)
        if self.entries is not None:
            start, end = datetime.fromisoformat(period.start), datetime.fromisoformat(period.end)
            kwargs["entries"] = [e for e in self.entries if start <= e.at < end]
            seeds: list[int] = [0]
            every = None
        else:
            seeds, every = self.seeds, self.every

        def on_runs(done: int, _total: int) -> None:
            if per:
                self.progress.tick(done // per)

        try:
            report = sweep(
                self.data.cut(period, self.warmup),
                symbol=self.symbol,
                seeds=seeds,
                every=every,
                configs=dict(configs),
                jobs=self.jobs,
                progress=on_runs,
                **kwargs,
            )
            runs, failures = list(report.runs), []
        except SweepError as exc:
            runs, failures = list(exc.report.runs) if exc.report else [], list(exc.failures)
            if not runs:
                raise DataError(
                    f"every replay run on {period.text()} failed: {failures[0].error}: {failures[0].message}"
                ) from exc
        self.runs += len(runs) + len(failures)
        out: dict[str, tuple[Evaluation | None, str | None]] = {}
        for name in configs:
            failed = [f for f in failures if f.params["config"] == name]
            if failed:
                out[name] = None, f"{failed[0].error}: {failed[0].message}"
                continue
            metrics = [RunMetrics.of(r.report) for r in runs if r.params["config"] == name]
            ev = Evaluation.of(metrics, self.objective, self.dd_weight)
            out[name] = (
                (ev, None) if ev.objective is not None else (None, "the objective is undefined in every run")
            )
        return out


def _fingerprint(run: _Run, plan: FoldPlan, fold: Fold) -> dict[str, Any]:
    """What a study's trials depend on; a resumed study must have been made with the same."""
    h = hashlib.sha256(np.ascontiguousarray(run.data.rates).tobytes()).hexdigest()[:16]
    entries = (
        None
        if run.entries is None
        else hashlib.sha256(repr([dataclasses.astuple(e) for e in run.entries]).encode()).hexdigest()[:16]
    )
    return {
        "symbol": run.symbol,
        "bars": h,
        "entries": entries,
        "seeds": run.seeds if run.entries is None else None,
        "every": run.every,
        "objective": str(run.objective),
        "dd_weight": run.dd_weight,
        "space": run.space.to_dict(),
        "base": run.base,
        "replay": {k: v for k, v in sorted(run.replay_kwargs.items()) if k != "compare"},
        "warmup": plan.warmup,
        "train": [fold.train.first, fold.train.stop],
        "test": None if fold.test is None else [fold.test.first, fold.test.stop],
        "dtms_tune": 1,
    }


_STUDY_ATTR: Final = "dtms_tune"


def _study(optuna: Any, storage: Any, name: str, seed: int, fingerprint: dict[str, Any], where: str) -> Any:
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", sampler=sampler, load_if_exists=True
    )
    known = study.user_attrs.get(_STUDY_ATTR)
    if known is None:
        study.set_user_attr(_STUDY_ATTR, json.loads(json.dumps(fingerprint)))
    else:
        now = json.loads(json.dumps(fingerprint))
        differ = sorted(k for k in set(known) | set(now) if known.get(k) != now.get(k))
        if differ:
            raise InvalidArgumentError(
                f"{where}: study {name!r} was made with other settings ({', '.join(differ)} differ): "
                "resume with the same bars, entries, seeds, space, objective, folds and config, or use a new "
                "study file"
            )
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in stale:  # an interrupted run's trials: never told, never will be
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return study


def _storage(optuna: Any, path: str | os.PathLike[str] | None) -> Any:
    """optuna's journal storage on the file at `path` (its open lock works on every platform), or memory."""
    if path is None:
        return optuna.storages.InMemoryStorage()
    journal = optuna.storages.journal
    name = os.fspath(path)
    return journal.JournalStorage(
        journal.JournalFileBackend(name, lock_obj=journal.JournalFileOpenLock(name))
    )


def _finished(optuna: Any, study: Any) -> list[Any]:
    """The trials that count: those with a value and those that failed on their own (an error noted); not
    the ones an interrupted run left unfinished (failed on resuming, without an error)."""
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False, states=(states.COMPLETE, states.FAIL, states.PRUNED))
    return [t for t in trials if t.state != states.FAIL or "error" in t.user_attrs]


def _optimise(optuna: Any, run: _Run, study: Any, fold: Fold, trials: int) -> None:
    """Ask, replay and tell trials in batches until the study has `trials` finished ones."""
    distributions = run.space.distributions()
    if not study.get_trials(deepcopy=False) and all(
        p.contains(run.defaults[p.key]) for p in run.space.params
    ):
        study.enqueue_trial(dict(run.defaults), user_attrs={"base": True})
    per = len(run.seeds) * len(run.every or [None]) if run.entries is None else 1
    finished = len(_finished(optuna, study))
    run.progress.done += min(finished, trials)
    run.progress.tick()
    while finished < trials:
        asked = [
            study.ask(fixed_distributions=distributions) for _ in range(min(run.batch, trials - finished))
        ]
        configs: dict[str, dict[str, Any]] = {}
        for trial in asked:
            values = run.space.values(trial.params)
            mapping = _deep_merge(copy.deepcopy(run.base), _overrides(values))
            try:
                Config.from_mapping(mapping)
            except ConfigError as exc:
                trial.set_user_attr("error", str(exc))
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            configs[f"trial-{trial.number}"] = mapping
        results = run.evaluate(fold.train, configs, per) if configs else {}
        for trial in asked:
            key = f"trial-{trial.number}"
            if key not in results:
                continue
            ev, error = results[key]
            if ev is None:
                trial.set_user_attr("error", error)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                trial.set_user_attr("evaluation", ev.to_dict())
                study.tell(trial, ev.objective)
        finished += len(asked)
        run.progress.done += len(asked)
        run.progress.tick()


def _result(optuna: Any, run: _Run, study: Any, fold: Fold, ratio: float, floor: float) -> FoldResult:
    done = _finished(optuna, study)
    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    errors = tuple(str(t.user_attrs["error"]) for t in done if "error" in t.user_attrs)
    if not complete:
        raise DataError(
            f"study {fold.name}: none of its {len(done)} trials gave a value"
            + (f"; the first error: {errors[0]}" if errors else "")
        )
    best = study.best_trial
    params = run.space.values(best.params)
    base_trial = next((t for t in complete if t.user_attrs.get("base")), None)
    in_default = None if base_trial is None else Evaluation.from_dict(base_trial.user_attrs["evaluation"])
    oos = oos_default = None
    if fold.test is not None:
        cached = study.user_attrs.get("test")
        if cached is not None and cached.get("trial") == best.number:
            oos = Evaluation.from_dict(cached["best"]) if cached["best"] else None
            oos_default = Evaluation.from_dict(cached["default"]) if cached["default"] else None
        else:
            best_mapping = _deep_merge(copy.deepcopy(run.base), _overrides(params))
            if params == run.defaults:  # the base config won: one evaluation is both
                oos = oos_default = run.evaluate(fold.test, {"best": best_mapping})["best"][0]
            else:
                got = run.evaluate(fold.test, {"best": best_mapping, "default": run.base})
                oos, oos_default = got["best"][0], got["default"][0]
            study.set_user_attr(
                "test",
                {
                    "trial": best.number,
                    "best": None if oos is None else oos.to_dict(),
                    "default": None if oos_default is None else oos_default.to_dict(),
                },
            )
    in_sample = Evaluation.from_dict(best.user_attrs["evaluation"])
    return FoldResult(
        name=fold.name,
        train=fold.train,
        test=fold.test,
        trials=len(done),
        complete=len(complete),
        failed=len(done) - len(complete),
        best_trial=best.number,
        best_params=params,
        in_sample=in_sample,
        in_sample_default=in_default,
        out_of_sample=oos,
        out_of_sample_default=oos_default,
        overfit=overfit(in_sample.objective, _obj(oos), ratio=ratio, floor=floor),
        errors=errors,
    )


def tune(
    bars: str | os.PathLike[str] | Rates,
    *,
    symbol: str,
    space: SearchSpace | Mapping[str, Any] | None = None,
    objective: Objective | str = DEFAULT_OBJECTIVE,
    dd_weight: float = DEFAULT_DD_WEIGHT,
    folds: int = 3,
    holdout: float = 0.2,
    anchored: bool = False,
    trials: int = 20,
    seeds: int | Iterable[int] = (0, 1, 2),
    every: int | Iterable[int] | None = None,
    entries: str | os.PathLike[str] | Sequence[Entry] | None = None,
    config: Config | Mapping[str, Any] | None = None,
    timeframes: Sequence[str] | None = None,
    warmup: int | None = None,
    sl_atr: float = 1.5,
    tp_r: float | None = 2.0,
    volume: float = 0.1,
    balance: float = 10_000.0,
    scale_time: bool = True,
    study: str | os.PathLike[str] | None = None,
    sampler_seed: int = 0,
    batch: int = 4,
    jobs: int | None = None,
    progress: Callable[[int, int], object] | None = None,
    overfit_ratio: float = OVERFIT_RATIO,
    overfit_floor: float = OVERFIT_FLOOR,
) -> TuneReport:
    """Walk-forward calibration of the engine's settings on `bars` (see the module's docstring).

    Args:
        bars, symbol, timeframes, warmup, sl_atr, tp_r, volume, balance, scale_time: as for `replay`; the
            `warmup` (slow bars) precedes the first part, and each part's replay warms up on the `warmup`
            slow bars before it.
        space: the settings to search (`SearchSpace`, or a mapping for `SearchSpace.from_mapping`); None:
            `SearchSpace.default` for the fast timeframe.
        objective: what a trial maximises (`Objective`; `OBJECTIVES` gives each formula); `dd_weight` is
            the w of the default `expectancy_dd`.
        folds, holdout, anchored: K walk-forward folds over K + 1 parts after holding out the latest
            `holdout` share (0 … 0.5; 0: none); rolling (optimise on part k) unless `anchored` (parts 1 … k).
        trials: finished trials per study (K + 1 studies): a resumed study runs only the missing ones.
        seeds, every: generated entries, as for `sweep`; or `entries` (a CSV path or `Entry` list): each
            part replays the entries that fall in it (seeds and every do not apply).
        config: the base settings the searched ones override (and that the study starts from: its first
            trial is the base values when they lie in the space).
        study: an optuna journal file: created, or resumed when it exists (same settings required).
            None keeps the study in memory.
        sampler_seed: seeds the TPE sampler (study i gets seed + i). batch: trials asked of the sampler and
            replayed together in one sweep; the results depend on it and the seed, not on `jobs`.
        jobs: worker processes for the sweeps (None: every core). progress: `progress(done, total)` in
            trials over all studies.
        overfit_ratio, overfit_floor: out-of-sample counts as much worse than in-sample when it falls short
            by more than max(ratio x |in-sample|, floor) (`overfit`).

    Raises:
        ExtraNotInstalledError: optuna is not installed (`pip install 'dtms[tune]'`).
        InvalidArgumentError: bad arguments, space or a study made with other settings. DataError: bars
            or entries unreadable, too few for the folds, or every run failed. ConfigError: a bad config.
    """
    import time

    wall0 = time.perf_counter()
    optuna = require_optuna()
    objective = _objective(objective)
    _check_fold_args(folds, holdout)
    for name, value, ok in (
        ("trials", trials, isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1),
        ("batch", batch, isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1),
        (
            "dd_weight",
            dd_weight,
            isinstance(dd_weight, int | float) and math.isfinite(dd_weight) and dd_weight >= 0,
        ),
        ("overfit_ratio", overfit_ratio, isinstance(overfit_ratio, int | float) and overfit_ratio >= 0),
        ("overfit_floor", overfit_floor, isinstance(overfit_floor, int | float) and overfit_floor >= 0),
        ("sampler_seed", sampler_seed, isinstance(sampler_seed, int) and sampler_seed >= 0),
    ):
        if not ok:
            raise InvalidArgumentError(
                f"{name} must be a non-negative number (trials, batch >= 1), not {value!r}"
            )
    base = _base_mapping(config)
    rates, source, _fmt = load_bars(bars)
    base_cfg, _, _ = effective_config(base, DEFAULT_TIMEFRAMES[0], scale_time=False)
    data, fast, slow = _bars_of(rates, source, timeframes, base_cfg)
    effective, _, _ = effective_config(base, fast, scale_time=scale_time)
    if space is None:
        space = SearchSpace.default(fast, scale_time=scale_time)
    elif not isinstance(space, SearchSpace):
        space = SearchSpace.from_mapping(space)
    defaults = {p.key: _get(effective, p.key) for p in space.params}
    plan = _walk_forward(
        data, slow, folds, holdout, warmup or default_warmup(base_cfg, len(data.opens)), anchored
    )
    given: list[Entry] | None = None
    if entries is not None:
        if every is not None:
            raise InvalidArgumentError("every applies to generated entries: give entries or every, not both")
        given = (
            read_entries(entries)
            if isinstance(entries, str | os.PathLike)
            else sorted(entries, key=lambda e: e.at)
        )
        for p in (*plan.parts, *([plan.holdout] if plan.holdout else [])):
            start, end = datetime.fromisoformat(p.start), datetime.fromisoformat(p.end)
            if not any(start <= e.at < end for e in given):
                raise DataError(f"no entry falls in the part {p.text()}: every part needs entries to replay")
    seed_list = [seeds] if isinstance(seeds, int) else list(seeds)
    every_list = None if every is None else ([every] if isinstance(every, int) else list(every))
    replay_kwargs: dict[str, Any] = {
        "timeframes": None if timeframes is None else [fast, slow],
        "sl_atr": sl_atr,
        "tp_r": tp_r,
        "volume": volume,
        "balance": balance,
        "scale_time": scale_time,
        "compare": (CHANDELIER_RULE,) if objective is Objective.VS_CHANDELIER else (),
    }
    run = _Run(
        symbol, data, space, objective, float(dd_weight), base, defaults, given, seed_list, every_list,
        replay_kwargs, jobs, batch, plan.warmup, _Progress(progress, trials * len(plan.studies)),
    )  # fmt: skip
    storage = _storage(optuna, study)
    where = "memory" if study is None else Path(study).name
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        results = []
        for i, fold in enumerate(plan.studies):
            name = f"fold-{fold.name}" if fold.name != "final" else "final"
            s = _study(optuna, storage, name, sampler_seed + i, _fingerprint(run, plan, fold), where)
            _optimise(optuna, run, s, fold, trials)
            results.append(_result(optuna, run, s, fold, overfit_ratio, overfit_floor))
    finally:
        optuna.logging.set_verbosity(verbosity)
    *fold_results, final = results
    best = _deep_merge(copy.deepcopy(base), _overrides(final.best_params))
    used = None
    if given is not None:
        spans = [(datetime.fromisoformat(p.start), datetime.fromisoformat(p.end)) for p in plan.parts]
        if plan.holdout is not None:
            spans.append(
                (datetime.fromisoformat(plan.holdout.start), datetime.fromisoformat(plan.holdout.end))
            )
        used = sum(any(a <= e.at < b for a, b in spans) for e in given)
    last = plan.holdout or plan.parts[-1]
    meta = {
        "symbol": symbol,
        "source": source,
        "base_timeframe": _name(data.base_s),
        "timeframes": [fast, slow],
        "start": plan.parts[0].start,
        "end": last.end,
        "objective": str(objective),
        "formula": OBJECTIVES[objective].replace("w x", f"{dd_weight:g} x")
        if objective is Objective.EXPECTANCY_DD
        else OBJECTIVES[objective],
        "dd_weight": dd_weight,
        "folds": folds,
        "holdout": holdout,
        "trials": trials,
        "batch": batch,
        "sampler_seed": sampler_seed,
        "entries": "generated" if given is None else "given",
        "entries_used": used,
        "seeds": seed_list if given is None else None,
        "every": (every_list or [DEFAULT_EVERY]) if given is None else None,
        "replay": {k: (list(v) if isinstance(v, tuple) else v) for k, v in replay_kwargs.items()},
        "overfit": {"ratio": overfit_ratio, "floor": overfit_floor},
        "dtms_version": dtms.__version__,
    }
    warnings = _warnings(fold_results, final, defaults, overfit_ratio, overfit_floor)
    timing = {
        "wall_s": time.perf_counter() - wall0,
        "runs": float(run.runs),
        "jobs": float(jobs or os.cpu_count() or 1),
    }
    return TuneReport(meta, space, plan, tuple(fold_results), final, defaults, best, tuple(warnings), timing)


def _objective(value: Objective | str) -> Objective:
    try:
        return Objective(value)
    except ValueError:
        raise InvalidArgumentError(
            f"unknown objective {value!r}: choose from {', '.join(o.value for o in Objective)}"
        ) from None


__all__ = [
    "CHANDELIER_RULE",
    "DEFAULT_DD_WEIGHT",
    "DEFAULT_OBJECTIVE",
    "DEFAULT_SPACE",
    "MIN_PART_SLOW_BARS",
    "OBJECTIVES",
    "OVERFIT_FLOOR",
    "OVERFIT_RATIO",
    "Evaluation",
    "Fold",
    "FoldPlan",
    "FoldResult",
    "Objective",
    "Param",
    "ParamKind",
    "Period",
    "RunMetrics",
    "SearchSpace",
    "TuneReport",
    "drawdown_r",
    "overfit",
    "plan_folds",
    "require_optuna",
    "score",
    "tune",
]
