"""A simulated MetaTrader 5 terminal: the MetaTrader5 API over bars, shared by processes through SQLite."""

from __future__ import annotations

from dtms.sim.terminal import Terminal, open

__all__ = ["Terminal", "open"]
