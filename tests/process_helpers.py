"""Multiprocess test harness: the spawn context, named deadlines, waiting on events, and reaping every child.

Rules (spec/election.md section 7): spawn, never fork; wait for events with a deadline, never sleep then
assert; reap every child in `finally`, whatever happened.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.queues
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.context import SpawnProcess
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Any, Final

#: Windows has no fork and Python 3.14 changed the Linux default: spawn everywhere, so tests behave alike.
CTX: Final = multiprocessing.get_context("spawn")

#: A slow interpreter start (importing dtms, pydantic, apsw) on a loaded runner is not a test failure.
SPAWN_DEADLINE_S: Final = 30.0
#: A process killed with SIGKILL is gone in about a millisecond; generous for CI, far below any lease TTL.
CRASH_DEADLINE_S: Final = 2.0
#: Asserting that something does *not* happen must stay short, or the suite crawls.
NEGATIVE_WAIT_S: Final = 0.5
#: Workers doing real work (thousands of fsyncs on a shared CI disk) finish well within this; it only
#: bounds a hang, and stays below pytest-timeout's 300 s so the reaper still runs.
WORK_DEADLINE_S: Final = 180.0
#: How long a terminated child gets to exit before it is killed.
REAP_GRACE_S: Final = 5.0


class EventPipe:
    """One child's end of its own event pipe; `put` is safe from the child's threads.

    Not a multiprocessing.Queue: its writers share one lock across processes, so a writer killed or stopped
    while holding it (a leader SIGKILLed right after reporting) silences every other process.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._lock: threading.Lock | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"conn": self.conn}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.conn, self._lock = state["conn"], None

    def put(self, event: dict[str, Any]) -> None:
        if self._lock is None:
            self._lock = threading.Lock()
        with self._lock:
            self.conn.send(event)


def spawn(target: Callable[..., Any], *args: Any, name: str | None = None, **kwargs: Any) -> SpawnProcess:
    """A daemon spawn process (not started) running `target(*args, **kwargs)`; `target` must be importable."""
    return CTX.Process(target=target, args=args, kwargs=kwargs, name=name, daemon=True)


def reap(procs: Iterable[BaseProcess]) -> None:
    """Continue, terminate, kill, join and close every process; never raises for a process already gone."""
    procs = list(procs)
    for proc in procs:
        pid = _live_pid(proc)
        if pid is None:
            continue
        # SIGTERM is held while a process is stopped (SIGSTOP); SIGCONT first so terminate() works.
        if hasattr(signal, "SIGCONT"):
            _signal(pid, signal.SIGCONT)
        proc.terminate()
    deadline = time.monotonic() + REAP_GRACE_S
    for proc in procs:
        if _live_pid(proc) is not None:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(CRASH_DEADLINE_S)
    for proc in procs:
        try:
            proc.close()
        except ValueError:  # still running after SIGKILL (a kernel-stuck process): nothing more to do here
            continue


@contextlib.contextmanager
def reaped(*procs: BaseProcess) -> Iterator[tuple[BaseProcess, ...]]:
    """`with reaped(p1, p2):` start or use the processes; all are reaped on leaving, whatever happened."""
    try:
        yield procs
    finally:
        reap(procs)


def start_all(procs: Iterable[BaseProcess]) -> None:
    """Start every process."""
    for proc in procs:
        proc.start()


def wait_event(event: Event, deadline_s: float, reason: str) -> None:
    """Wait for `event`; fail with `reason` if it is not set within `deadline_s`."""
    if not event.wait(deadline_s):
        raise AssertionError(f"timed out after {deadline_s} s waiting for: {reason}")


def wait_for(
    events: multiprocessing.queues.Queue[Any],
    predicate: Callable[[Any], bool],
    deadline_s: float,
    reason: str,
    seen: list[Any] | None = None,
) -> Any:
    """The first item from `events` that satisfies `predicate`; others are appended to `seen` if given."""
    deadline = time.monotonic() + deadline_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {deadline_s} s waiting for: {reason} (seen: {seen})")
        try:
            item = events.get(timeout=left)
        except queue.Empty:
            continue
        if predicate(item):
            return item
        if seen is not None:
            seen.append(item)


def join_all(procs: Iterable[BaseProcess], deadline_s: float, reason: str) -> dict[str, int | None]:
    """Join every process within one shared deadline; returns exit codes by process name."""
    deadline = time.monotonic() + deadline_s
    codes: dict[str, int | None] = {}
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        codes[proc.name] = proc.exitcode
    if any(code is None for code in codes.values()):
        raise AssertionError(f"timed out after {deadline_s} s waiting for: {reason} (exit codes: {codes})")
    return codes


def drain(events: multiprocessing.queues.Queue[Any]) -> list[Any]:
    """Everything already in `events`, without waiting for more."""
    items = []
    while True:
        try:
            items.append(events.get_nowait())
        except queue.Empty:
            return items


def _live_pid(proc: BaseProcess) -> int | None:
    try:
        return proc.pid if proc.is_alive() else None
    except ValueError:  # closed already
        return None


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited since we looked
        os.kill(pid, signum)


__all__ = [
    "CRASH_DEADLINE_S",
    "CTX",
    "NEGATIVE_WAIT_S",
    "REAP_GRACE_S",
    "SPAWN_DEADLINE_S",
    "WORK_DEADLINE_S",
    "EventPipe",
    "drain",
    "join_all",
    "reap",
    "reaped",
    "spawn",
    "start_all",
    "wait_event",
    "wait_for",
]
