"""The broker layer: the Broker contract, its value types, and MT5Broker over any MetaTrader5-like API."""

from __future__ import annotations

from dtms.broker.base import (
    Account,
    Broker,
    Deal,
    Direction,
    Handling,
    Outcome,
    OutcomeKind,
    Position,
    SymbolSpec,
    Tick,
    action_tag,
    clean_comment,
)
from dtms.broker.mt5 import MT5Broker

__all__ = [
    "Account",
    "Broker",
    "Deal",
    "Direction",
    "Handling",
    "MT5Broker",
    "Outcome",
    "OutcomeKind",
    "Position",
    "SymbolSpec",
    "Tick",
    "action_tag",
    "clean_comment",
]
