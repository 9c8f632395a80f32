"""Node: what every bot process creates; wires the store, the election and (when leading) the leader loop."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final, Protocol

from dtms.clock import Clock, SystemClock
from dtms.config import Config, ElectionConfig
from dtms.elector import Elector, LeaderSeen
from dtms.errors import LeaseError, LeaseLostError, NotLeaderError, StoreBusyError, StoreFilesChangedError
from dtms.events import Hook, log_event
from dtms.gateway import Gateway
from dtms.notifiers import configured_hooks
from dtms.outbox import Dispatcher, Outbox
from dtms.store import Store
from dtms.store import open as open_store

log = logging.getLogger(__name__)

_NODES: dict[str, Node] = {}
_NODES_MU: Final = threading.Lock()


class LeaderWork(Protocol):
    """What the leader loop runs (the engine): `tick` once per loop interval while leading."""

    def start(self, epoch: int) -> None:
        """Called once when this process starts leading `epoch`, before the first tick."""

    def tick(self, epoch: int) -> None:
        """One iteration; raises LeaseLostError when a fenced write finds the epoch gone."""

    def stop(self) -> None:
        """Called once when leading ends (on the loop thread)."""


class Node:
    """Joins the election for a dtms database; leads (runs the engine loop) or follows (reads and registers).

    With a `broker` (e.g. `dtms.broker.MT5Broker()`), the leader runs the engine on it; `now` is the trading
    clock (the simulated terminal's `term.now` in demos and replays, UTC wall time by default); `hooks`
    receive typed events (the default logs them), with the notifiers `[notify]` configures (webhook,
    Telegram) beside them. Events go through the database's outbox: whichever process leads delivers them, at
    least once, each with a stable `event_id`, on a thread of its own (a slow hook never delays the engine).

    ```python
    with dtms.Node(dtms.default_db_path(), name="telegram-bot") as node:
        node.store.register_trade(...)
    ```

    Leadership changes arrive on callbacks run on a dispatcher thread: `on_started_leading(epoch)`,
    `on_stopped_leading(epoch, reason)` (exactly once per term), `on_new_leader(LeaderSeen)`.
    dtms installs no signal handlers: map SIGTERM to `node.stop()` in your process for a graceful handover.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        broker: Any = None,
        *,
        name: str | None = None,
        config: Config | None = None,
        election: ElectionConfig | None = None,
        clock: Clock | None = None,
        work: LeaderWork | None = None,
        now: Callable[[], datetime] | None = None,
        hooks: Iterable[Hook] | None = None,
        on_started_leading: Callable[[int], object] | None = None,
        on_stopped_leading: Callable[[int, str], object] | None = None,
        on_new_leader: Callable[[LeaderSeen], object] | None = None,
    ) -> None:
        self.config = config or Config()
        self.settings = election or self.config.election
        self.clock: Clock = clock or SystemClock()
        self.name = name or f"pid-{os.getpid()}"
        self.broker = broker
        self.store: Store = open_store(path, clock=self.clock)
        self._key = str(self.store.path)
        self.now: Callable[[], datetime] = now or self.clock.utc_now
        chosen = list(hooks) if hooks is not None else [log_event]
        self.dispatcher = Dispatcher(self.store, [*chosen, *configured_hooks(self.config.notify)],
                                     self.config.notify)  # fmt: skip
        self.outbox = Outbox(self.store, wake=self.dispatcher.wake)
        self._loop_stop = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self._data_version = -1
        self._started = False
        try:
            self.elector = Elector(
                self.store,
                name=self.name,
                settings=self.settings,
                clock=self.clock,
                on_elected=self._start_loop,
                on_deposed=self._stop_loop,
                can_lead=self._loop_is_idle,
                on_started_leading=on_started_leading,
                on_stopped_leading=on_stopped_leading,
                on_new_leader=on_new_leader,
            )
        except BaseException:
            self.store.close()  # e.g. OSLock refused a symlinked lock file: leave nothing open
            raise
        self.gateway = Gateway(self.store, self.elector, send_margin_s=self.settings.send_margin_s)
        self._work = work
        if work is None and broker is not None:
            from dtms.engine.cycle import Engine  # numpy-heavy: only a process that manages trades loads it

            self._work = Engine(
                self.store,
                broker,
                self.gateway,
                self.config,
                now=self.now,
                notifier=self.outbox,
                wait=lambda s: self._loop_stop.wait(s),
            )

    # -- public -----------------------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while this process leads with a valid lease (cheap)."""
        return self.elector.is_leader

    @property
    def epoch(self) -> int | None:
        """The epoch this process leads, if it leads."""
        return self.elector.epoch

    def start(self) -> Node:
        """Join the election in background threads; returns at once (idempotent)."""
        self.elector._check_fork()
        if self._started:
            return self
        with _NODES_MU:
            other = _NODES.get(self._key)
            if other is not None and other is not self:
                raise LeaseError(f"a Node for {self._key} already runs in this process; share that one")
            _NODES[self._key] = self
        self._started = True
        self.elector.start()
        return self

    def wait_until_leader(self, timeout: float | None = None) -> bool:
        """Block until this node leads (True) or `timeout` seconds pass (False)."""
        return self.elector.wait_until_leader(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Leave the election; a leader hands over at once (commit released, then unlock). Idempotent."""
        if not self._started:
            return
        self._started = False
        self.elector.stop(timeout)
        with _NODES_MU:
            if _NODES.get(self._key) is self:
                del _NODES[self._key]

    def close(self) -> None:
        """Stop and close the database connection."""
        self.stop()
        self.store.close()

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- leader loop ------------------------------------------------------------------------------------

    def _start_loop(self, epoch: int) -> None:
        self.dispatcher.start(epoch, name=f"dtms-outbox-{self.name}")
        self._loop_stop = threading.Event()
        thread = threading.Thread(
            target=self._loop, args=(epoch, self._loop_stop), name=f"dtms-loop-{self.name}", daemon=True
        )
        thread.start()
        self._loop_thread = thread  # published only once started: _stop_loop may join it from another thread

    def _loop_is_idle(self) -> bool:
        # A loop thread that outlived its term (on_wedged="stay") must not run beside a new one.
        return self._loop_thread is None or not self._loop_thread.is_alive()

    def _stop_loop(self, epoch: int, grace_s: float) -> bool:
        self.dispatcher.stop(0.0)  # it records nothing once deposed; a hook call in progress may finish
        self._loop_stop.set()
        thread = self._loop_thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(grace_s)
        return not thread.is_alive()

    def _loop(self, epoch: int, stop: threading.Event) -> None:
        elector = self.elector
        # The loop beats every election.loop_interval_s (the watchdog's pulse) and runs the work every
        # loop.tick_s; a slow tick delays the beat, which is exactly what the watchdog is for.
        beat_s, tick_s = self.settings.loop_interval_s, self.config.loop.tick_s
        next_tick = time.monotonic()
        lost: str | None = None  # why the epoch ended here, if it did
        try:
            if self._work is not None:
                self._work.start(epoch)
            while not stop.is_set():
                elector.beat()
                self._notice_changes()
                if self._work is not None and time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + tick_s
                    try:
                        self._work.tick(epoch)
                    except StoreBusyError:  # transient: another process held the write lock
                        log.warning("dtms: the database stayed busy during a tick; retrying next tick")
                    elector.beat()
                stop.wait(max(0.0, min(beat_s, next_tick - time.monotonic())))
        except StoreFilesChangedError:  # the database's files changed under this process: lead on none of it
            log.error("dtms: the database's files changed during the leader loop; stepping down")
            lost = "files_changed"
        except (LeaseLostError, NotLeaderError):  # the epoch moved on, or the lease ran out mid-tick
            log.warning("dtms: epoch %d was lost during the leader loop", epoch)
            lost = "lease_lost"
        except Exception:
            log.exception("dtms: the leader loop failed; stepping down")
            lost = "loop_failed"
        finally:
            if self._work is not None:
                try:
                    self._work.stop()
                except Exception:
                    log.exception("dtms: stopping the leader work failed")
            # This thread sends nothing more for `epoch`: recorded before the step-down below lets the OS lock
            # go, so whoever takes over through it finds the proof and need not kill this process.
            elector.quiesced(epoch)
        if lost is not None:
            elector.fence(epoch, lost)

    def _notice_changes(self) -> None:
        # PRAGMA data_version moves only when another connection commits: new registrations, cheaply.
        version = self.store.data_version()
        if version != self._data_version:
            self._data_version = version
            log.debug("dtms: database changed (data_version %d)", version)


__all__ = ["LeaderWork", "Node"]
