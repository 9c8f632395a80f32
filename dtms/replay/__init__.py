"""Replay historical bars through the engine beside an unmanaged baseline and one-line rules: `replay()`;
many at once: `sweep()`; walk-forward calibration of the settings: `tune()` (needs `dtms[tune]`)."""

from __future__ import annotations

from dtms.replay.inputs import (
    DEFAULT_EVERY,
    ENTRY_COLUMNS,
    REPLAY_MAGIC,
    Entry,
    load_bars,
    read_entries,
    resolve_timeframes,
    synthetic,
)
from dtms.replay.rules import COMPARISONS, TIME_STOP_BARS, comparisons
from dtms.replay.run import replay
from dtms.replay.sweep import SweepError, SweepFailure, SweepReport, SweepRun, sweep
from dtms.replay.tune import (
    OBJECTIVES,
    FoldPlan,
    Objective,
    SearchSpace,
    TuneReport,
    plan_folds,
    tune,
)

__all__ = [
    "COMPARISONS",
    "DEFAULT_EVERY",
    "ENTRY_COLUMNS",
    "OBJECTIVES",
    "REPLAY_MAGIC",
    "TIME_STOP_BARS",
    "Entry",
    "FoldPlan",
    "Objective",
    "SearchSpace",
    "SweepError",
    "SweepFailure",
    "SweepReport",
    "SweepRun",
    "TuneReport",
    "comparisons",
    "load_bars",
    "plan_folds",
    "read_entries",
    "replay",
    "resolve_timeframes",
    "sweep",
    "synthetic",
    "tune",
]
