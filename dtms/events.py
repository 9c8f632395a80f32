"""Typed notification events and the hook registry; the default notifier logs (dtms never configures
logging)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

log = logging.getLogger("dtms.events")

EventKind = Literal[
    "engine_started",
    "engine_stopped",
    "monitoring_started",
    "state_transition",
    "action",
    "external_change",
    "rail_changed",
    "alert",
]


@dataclass(frozen=True)
class Event:
    """One notification: its kind, when (trading clock, UTC), and the fields of spec/dtms-behaviour.md §12."""

    kind: EventKind
    at: datetime
    fields: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """A one-line human rendering."""
        f = self.fields
        if self.kind == "state_transition":
            return (
                f"DTMS: {f.get('symbol')} #{f.get('identifier')} {f.get('from')} → {f.get('to')} "
                f"({f.get('reason')}, score {f.get('score')}) {f.get('status', '')}"
            ).rstrip()
        if self.kind == "action":
            return (
                f"DTMS: {f.get('action_type')} on {f.get('symbol')} #{f.get('identifier')}: {f.get('status')}"
                f"{' — ' + str(f['detail']) if f.get('detail') else ''}"
            )
        return f"DTMS {self.kind}: " + ", ".join(f"{k}={v}" for k, v in sorted(f.items()))


Hook = Callable[[Event], object]


def log_event(event: Event) -> None:
    """The default hook: one log line per event (WARNING for alerts, INFO otherwise)."""
    log.log(logging.WARNING if event.kind == "alert" else logging.INFO, "%s", event.text())


class Notifier:
    """Calls every hook for every event; a raising hook is logged and retried, never blocks the engine."""

    def __init__(self, hooks: Iterable[Hook] | None = None, attempts: int = 3) -> None:
        self.hooks: list[Hook] = list(hooks) if hooks is not None else [log_event]
        self.attempts = attempts

    def emit(self, event: Event) -> None:
        for hook in self.hooks:
            for attempt in range(1, self.attempts + 1):
                try:
                    hook(event)
                    break
                except Exception:
                    level = logging.ERROR if attempt == self.attempts else logging.WARNING
                    log.log(
                        level, "dtms: notification hook %r failed (attempt %d)", hook, attempt, exc_info=True
                    )


__all__ = ["Event", "EventKind", "Hook", "Notifier", "log_event"]
