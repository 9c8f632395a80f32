"""Typed notification events and the hook registry; the default notifier logs (dtms never configures
logging)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal, Protocol

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
    """One notification: its kind, when (trading clock, UTC), and the fields of spec/dtms-behaviour.md §12.

    `epoch` is the leader's term that reported it; `event_id` is set on events delivered from the outbox
    (`<database id>-<seq>`, the same on every redelivery: receivers de-duplicate on it).
    """

    kind: EventKind
    at: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as JSON-ready values: what the webhook notifier posts."""
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "epoch": self.epoch,
            "fields": jsonable(self.fields),
            "text": self.text(),
        }

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


def jsonable(value: Any) -> Any:
    """`value` with every part JSON can hold: datetimes as ISO text, enums as values, NaN and inf as None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def hook_name(hook: Hook, index: int) -> str:
    """A hook's stable name in the outbox: its `name` attribute, else its qualified name and position."""
    name = getattr(hook, "name", None)
    if isinstance(name, str) and name:
        return name
    qualname = getattr(hook, "__qualname__", None) or type(hook).__qualname__
    return f"{getattr(hook, '__module__', '') or ''}.{qualname}#{index}"


def log_event(event: Event) -> None:
    """The default hook: one log line per event (WARNING for alerts, INFO otherwise)."""
    log.log(logging.WARNING if event.kind == "alert" else logging.INFO, "%s", event.text())


class EventSink(Protocol):
    """Where the engine reports events: a `Notifier` (hooks called at once) or an outbox."""

    def emit(self, event: Event) -> None:
        """Take one event."""


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


__all__ = ["Event", "EventKind", "EventSink", "Hook", "Notifier", "hook_name", "jsonable", "log_event"]
