"""Replay historical bars through the engine beside an unmanaged baseline and one-line rules: `replay()`."""

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

__all__ = [
    "COMPARISONS",
    "DEFAULT_EVERY",
    "ENTRY_COLUMNS",
    "REPLAY_MAGIC",
    "TIME_STOP_BARS",
    "Entry",
    "SweepError",
    "SweepFailure",
    "SweepReport",
    "SweepRun",
    "comparisons",
    "load_bars",
    "read_entries",
    "replay",
    "resolve_timeframes",
    "sweep",
    "synthetic",
]
