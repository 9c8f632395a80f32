"""Notifications that survive failover: the engine's events go to the outbox, a dispatcher delivers them.

`Outbox` is what a Node gives its engine to emit through: each event is written to the database (inside
the fenced transaction of the change it reports, where the engine opens one). `Dispatcher` runs on a thread
of whichever process leads, off the monitoring loop: it reads the due events, calls every hook, and records
who has each one; a failing hook is retried with exponential backoff, `notify.hook_attempts` times in all,
then the event is a dead letter (`dtms status` counts them, `dtms outbox retry` requeues them). A leader
killed between a commit and its delivery loses nothing: the next leader delivers it, same `event_id`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

from dtms.config import NotifyConfig
from dtms.errors import LeaseLostError, StoreBusyError
from dtms.events import Event, Hook, hook_name
from dtms.models import OutboxEntry, OutboxStatus
from dtms.store import Store

log = logging.getLogger(__name__)

#: NOTE: the dispatcher wakes at once for events its own engine writes; this bounds how late it notices a
#: retry coming due or an event another path wrote, at no measurable cost (one indexed read).
POLL_S: Final = 1.0


class Outbox:
    """The engine's event sink on a Node: every event becomes an outbox row of the epoch that reported it."""

    def __init__(self, store: Store, wake: Callable[[], object] = lambda: None) -> None:
        self.store = store
        self.wake = wake

    def emit(self, event: Event) -> None:
        if event.epoch is None:
            log.info("dtms: %s event without an epoch is not recorded", event.kind)
            return
        try:
            self.store.add_events(event.epoch, [event])
        except LeaseLostError:
            # Only a standalone event (engine_stopped after the lease went) gets here: inside a change's
            # transaction the fence was checked already, and a lost lease fails the change itself.
            log.info("dtms: %s event not recorded: epoch %d is over", event.kind, event.epoch)
            return
        self.wake()


def backoff(attempt: int, config: NotifyConfig) -> timedelta:
    """The wait after failed attempt number `attempt` (1-based): base * 2^(attempt - 1), capped."""
    return timedelta(seconds=min(config.backoff_s * 2 ** (attempt - 1), config.backoff_max_s))


class Dispatcher:
    """Delivers the outbox to the hooks while this process leads `epoch` (one thread, `start`/`stop`)."""

    def __init__(self, store: Store, hooks: Sequence[Hook], config: NotifyConfig) -> None:
        self.store = store
        self.hooks = list(hooks)
        self.names = [hook_name(h, i) for i, h in enumerate(self.hooks)]
        self.config = config
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Deliver soon: an event was written."""
        self._wake.set()

    def start(self, epoch: int, name: str = "dtms-outbox") -> None:
        """Deliver for `epoch` on a new thread (an earlier term's thread is told to stop first)."""
        self.stop(0.0)
        self._stop = threading.Event()
        thread = threading.Thread(target=self._run, args=(epoch, self._stop), name=name, daemon=True)
        thread.start()
        self._thread = thread  # published only once started: `stop` may join it from another thread

    def stop(self, timeout: float = 2.0) -> None:
        """Stop delivering; a hook call in progress finishes on its own (it records nothing if deposed)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self, epoch: int, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                while not stop.is_set() and self.dispatch(epoch) > 0:
                    pass
            except LeaseLostError:
                log.info("dtms: outbox delivery stops: epoch %d is over", epoch)
                return
            except StoreBusyError:
                log.warning("dtms: the database stayed busy; outbox delivery retries shortly")
            except Exception:
                log.exception("dtms: outbox delivery failed; retrying shortly")
            self._wake.wait(POLL_S)

    def dispatch(self, epoch: int, now: datetime | None = None) -> int:
        """One pass over the due events; returns how many it tried. Raises LeaseLostError once deposed."""
        entries = self.store.due_events(now)
        for entry in entries:
            self._deliver(epoch, entry, now)
        return len(entries)

    def _deliver(self, epoch: int, entry: OutboxEntry, now: datetime | None) -> None:
        event = Event(entry.kind, entry.at, entry.fields, epoch=entry.epoch, event_id=entry.event_id)  # type: ignore[arg-type]
        delivered = list(entry.delivered)
        errors: list[str] = []
        for hook, name in zip(self.hooks, self.names, strict=True):
            if name in delivered:
                continue
            try:
                hook(event)
            except Exception as exc:
                errors.append(f"{name}: {type(exc).__name__}: {exc}"[:500])
                log.warning("dtms: notification hook %s failed on %s (attempt %d): %s",
                            name, entry.event_id, entry.attempts + 1, exc)  # fmt: skip
            else:
                delivered.append(name)
        if not errors:
            self.store.settle_event(epoch, entry.seq, delivered=delivered, status=OutboxStatus.DELIVERED)
            return
        attempt = entry.attempts + 1
        error = "; ".join(errors)
        if attempt >= self.config.hook_attempts:
            log.error("dtms: notification %s (%s) dropped after %d attempts: %s",
                      entry.event_id, entry.kind, attempt, error)  # fmt: skip
            dead = OutboxStatus.DEAD
            self.store.settle_event(epoch, entry.seq, delivered=delivered, status=dead, error=error)
            return
        due = (now or self.store.clock.utc_now()) + backoff(attempt, self.config)
        self.store.settle_event(
            epoch, entry.seq, delivered=delivered, status=OutboxStatus.PENDING, error=error, next_at=due
        )


__all__ = ["POLL_S", "Dispatcher", "Outbox", "backoff"]
