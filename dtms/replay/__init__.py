"""Replay historical bars through the engine beside an unmanaged baseline: `dtms.replay.replay(...)`."""

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
from dtms.replay.run import replay
from dtms.replay.sweep import SweepError, SweepFailure, SweepReport, SweepRun, sweep

__all__ = [
    "DEFAULT_EVERY",
    "ENTRY_COLUMNS",
    "REPLAY_MAGIC",
    "Entry",
    "SweepError",
    "SweepFailure",
    "SweepReport",
    "SweepRun",
    "load_bars",
    "read_entries",
    "replay",
    "resolve_timeframes",
    "sweep",
    "synthetic",
]
