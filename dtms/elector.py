"""Elector: the lock waiter, the heart (watch + renew + watchdog) and the callback dispatcher of one
process."""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from dtms.clock import Clock, clock_offset_ms, process_start_time
from dtms.config import ElectionConfig
from dtms.errors import LeaseLostError, StoreBusyError, StoreError, StoreFilesChangedError, UsedAfterForkError
from dtms.fence import Fence, holder_alive
from dtms.lease import LeaseRow, Observation, StopProof, TakeoverReason, may_take_over, observe
from dtms.models import Holder
from dtms.oslock import election_lock
from dtms.store import Store

log = logging.getLogger(__name__)

#: Exit status of a process whose leader loop would not stop within `stop_grace_s` (on_wedged="exit").
EXIT_WEDGED: Final = 75

_LIVE: weakref.WeakSet[Elector] = weakref.WeakSet()


def _mark_forked() -> None:
    for elector in list(_LIVE):
        elector._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


@dataclass(frozen=True, slots=True)
class LeaderSeen:
    """What `on_new_leader` receives: the holder and epoch a process observed in the lease row."""

    epoch: int
    holder: Holder | None
    released: bool


class Elector:
    """Takes part in the election for one lease on one database; leads at most one epoch at a time.

    Threads: a *waiter* blocked in the OS lock (the kernel wakes it when the holder dies), a *heart* that
    reads the lease row every `check_interval_s`, renews it every `renew_interval_s` while leading and runs
    the watchdog, and a *dispatcher* that runs user callbacks so they never block the election.

    `on_elected(epoch)` and `on_deposed(epoch, grace_s) -> bool` are the owner's hooks (the Node starts and
    stops its leader loop there); `beat()` is the loop's heartbeat for the watchdog.
    """

    def __init__(
        self,
        store: Store,
        *,
        name: str,
        settings: ElectionConfig,
        clock: Clock,
        on_elected: Callable[[int], None] = lambda epoch: None,
        on_deposed: Callable[[int, float], bool] = lambda epoch, grace: True,
        can_lead: Callable[[], bool] = lambda: True,
        on_started_leading: Callable[[int], object] | None = None,
        on_stopped_leading: Callable[[int, str], object] | None = None,
        on_new_leader: Callable[[LeaderSeen], object] | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.settings = settings
        self.clock = clock
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._can_lead = can_lead
        self._user_started = on_started_leading
        self._user_stopped = on_stopped_leading
        self._user_new_leader = on_new_leader
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self.holder = Holder(
            name=name,
            host=self._host,
            pid=self._pid,
            proc_start=process_start_time(),
            boot_id=clock.boot_id(),
            token=secrets.token_hex(8),
        )
        self._proofs = Fence(
            store,
            token=self.holder.token,
            host=self._host,
            boot_id=clock.boot_id,
            kill=settings.stonith,
            clock_offset_ms=lambda: clock_offset_ms(clock),
        )
        # Fenced writes of this store need our lease, not just its number; `_generation`: the store's files as
        # of the epoch we lead (see is_leader).
        store.fence_token = self.holder.token
        self._generation = store.files_generation
        self._ttl_ms = round(settings.lease_ttl_s * 1000)
        # Beside the real file: processes spelling the path through a symlink must share one lock.
        self._lock = election_lock(f"{os.path.realpath(store.path)}.lock", settings.lock)
        self._mu = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._unlock = threading.Event()  # asks the waiter thread, the lock's only user, to let it go
        self._unlocked = threading.Event()
        self._elected = threading.Condition(self._mu)
        self._calls: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._waiter: threading.Thread | None = None  # the election lock's only user
        self._forked = False
        # Leader state, guarded by _mu.
        self._epoch: int | None = None
        self._fenced = True
        self._valid_until_ms = 0
        self._last_renew_ms = 0
        self._next_renew_ms = 0
        self._row_has_lock = False  # whether the lease row records this leader's OS lock
        self._beat_ms = 0
        self._stepping_down = False
        # Follower state.
        self._observation: Observation | None = None
        # Epochs whose loop ended here, not yet recorded in the lease history.
        self._quiesced: set[int] = set()
        self._seen: tuple[int, str | None, bool] | None = None
        _LIVE.add(self)

    # -- public -----------------------------------------------------------------------------------------

    @property
    def epoch(self) -> int | None:
        """The epoch this process leads, or None."""
        return self._epoch if self.is_leader else None

    @property
    def is_leader(self) -> bool:
        """True while this process holds a valid, unfenced lease: cheap, and false the instant it lapses.

        Always false in a child forked from a leader (I8): the child holds neither the lock nor the loop.
        """
        return (
            self._epoch is not None
            and not self._fenced
            and not self._forked
            and self.clock.boot_ms() < self._valid_until_ms
            and self.store.files_generation == self._generation
            and self.store.files_unchanged()
        )

    def remaining_ms(self) -> int:
        """Boot-clock milliseconds left on this leader's lease (negative or 0 when not leading)."""
        if self._epoch is None or self._fenced or self._forked:
            return 0
        return self._valid_until_ms - self.clock.boot_ms()

    def start(self) -> None:
        """Join the election in background threads; returns at once."""
        self._check_fork()
        for target, label in (
            (self._wait_loop, "waiter"),
            (self._heart, "heart"),
            (self._dispatch, "callbacks"),
        ):
            thread = threading.Thread(target=target, name=f"dtms-{label}-{self.name}", daemon=True)
            if label == "waiter":
                self._waiter = thread
            thread.start()
            self._threads.append(thread)

    def wait_until_leader(self, timeout: float | None = None) -> bool:
        """Block until this process leads (True) or `timeout` seconds pass (False)."""
        with self._elected:
            return (
                self._elected.wait_for(lambda: self.is_leader or self._stop.is_set(), timeout)
                and self.is_leader
            )

    def beat(self) -> None:
        """The leader loop's heartbeat; without it the watchdog lets the lease go (I5)."""
        self._beat_ms = self.clock.boot_ms()

    def fence(self, epoch: int, reason: str = "lease_lost") -> None:
        """Report that `epoch` was found gone (a fenced write raised): stop leading at once."""
        if self._epoch == epoch:
            self._fenced = True
            self._step_down(reason, release=False)

    def stop(self, timeout: float = 5.0) -> None:
        """Leave the election. A leader first commits `released`, then unlocks, so a follower leads at
        once."""
        if self._forked:
            return
        self._stop.set()
        self._step_down("stopped", release=True, grace_s=timeout)
        if self._quiesced:  # an earlier term's proof not written yet: the heart is about to end
            self._record_quiesced()
        self._release_lock()
        with self._mu:
            self._elected.notify_all()
        self._wake.set()
        self._unlock.set()
        self._calls.put(None)
        for thread in self._threads:
            # The waiter may sit in flock forever (uncancellable); it is a daemon and unlocks if it ever wins.
            if thread is self._waiter:
                continue
            thread.join(timeout)
        self._threads.clear()

    # -- election ---------------------------------------------------------------------------------------

    def _check_fork(self) -> None:
        if self._forked or os.getpid() != self._pid:
            raise UsedAfterForkError("this Node was created before fork(); create a new one in the child")

    def _wait_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._lock.acquire()
            except OSError:
                log.exception("dtms: waiting for the election lock failed; retrying")
                self._stop.wait(self.settings.check_interval_s)
                continue
            if self._stop.is_set():
                self._lock.release()
                return
            if not self._lock.is_current():
                # The lock file was replaced or deleted: a lock on the old inode excludes nobody.
                log.warning("dtms: lock file %s was replaced; re-opening it", self._lock.path)
                self._lock.release()
                self._lock.reopen()
                continue
            self._attempt()
            if self._epoch is not None and not self._fenced and not self._row_has_lock:
                # Leading, but the row says the lock is not held: followers could not take the fast path if
                # this process died now. Renew at once to record it.
                self._next_renew_ms = 0
                self._wake.set()
            # A live leader runs without the lock (it won before its waiter got it, or by expiry from a holder
            # since gone) and this follower got it: pass it on, so the leader's death is again seen by the
            # kernel within a millisecond, not by polling /proc.
            passing_on = self._epoch is None and self._leader_lacks_lock()
            if not passing_on:
                self._unlock.wait()
                self._unlock.clear()
            # The thread that acquired the lock lets it go: a robust mutex belongs to a thread, not a process.
            self._lock.release()
            self._unlocked.set()
            if passing_on:  # back off, so the leader's waiter gets it rather than another follower each time
                self._stop.wait(self.settings.check_interval_s)

    def _leader_lacks_lock(self) -> bool:
        """Whether another live process of this host holds the lease, unreleased, without the lock."""
        try:
            row = self.store.lease_row()
        except StoreError:
            return False  # keep the lock: the degraded rule needs it if that leader dies
        if row is None or row.holder_name is None or row.released or row.lock_held:
            return False
        return row.token != self.holder.token and self._holder_alive(row) is True

    def _holder_alive(self, row: LeaseRow) -> bool | None:
        return holder_alive(row.pid, row.proc_start, row.host, row.boot_id, my_host=self._host,
                            my_boot_id=self.clock.boot_id())  # fmt: skip

    def _heart(self) -> None:
        while not self._stop.is_set():
            try:
                if self._quiesced:
                    self._record_quiesced()
                if self._epoch is not None and not self._fenced:
                    if self.clock.boot_ms() >= self._next_renew_ms:
                        self._renew()
                else:
                    self._watch()
            except Exception:  # a bug here must not silently end the election for this process
                log.exception("dtms: election heartbeat failed; continuing")
            self._wake.wait(self._next_wait_s())
            self._wake.clear()

    def _next_wait_s(self) -> float:
        if self._epoch is not None and not self._fenced:
            return max(
                0.001,
                min(self.settings.check_interval_s, (self._next_renew_ms - self.clock.boot_ms()) / 1000),
            )
        return self.settings.check_interval_s

    def _watch(self) -> None:
        row = self.store.lease_row()
        self._observation = observe(row, self._observation, self.clock.boot_ms())
        self._notice(row)
        if self._rule(row) is not None:
            self._attempt()

    def _notice(self, row: LeaseRow | None) -> None:
        if row is None:
            return
        seen = (row.epoch, row.token, row.released)
        if seen == self._seen:
            return
        self._seen = seen
        holder = None
        if row.holder_name is not None:
            holder = Holder(
                name=row.holder_name,
                host=row.host or "",
                pid=row.pid or 0,
                proc_start=row.proc_start,
                boot_id=row.boot_id,
                token=row.token or "",
            )
        if self._user_new_leader is not None:
            callback = self._user_new_leader
            info = LeaderSeen(row.epoch, holder, row.released)
            self._calls.put(lambda: callback(info))

    def _rule(self, row: LeaseRow | None) -> TakeoverReason | None:
        alive = None
        if row is not None and self._lock.is_held and not row.lock_held:  # only the degraded rule needs it
            alive = self._holder_alive(row)
        return may_take_over(
            row,
            now_boot_ms=self.clock.boot_ms(),
            boot_id=self.clock.boot_id(),
            lock_inode=self._lock.inode if self._lock.is_held else None,
            holder_alive=alive,
            observation=self._observation,
            clock_offset_ms=clock_offset_ms(self.clock),
        )

    def _attempt(self) -> None:
        decided: list[LeaseRow | None] = []

        def decide(row: LeaseRow | None) -> TakeoverReason | None:
            decided.append(row)
            return self._rule(row)

        with self._mu:
            if self._stop.is_set() or self._stepping_down or (self._epoch is not None and not self._fenced):
                return
            if not self._can_lead():  # e.g. a wedged loop thread of our last term is still running
                return
            t0 = self.clock.boot_ms()
            generation = self.store.files_generation
            try:
                won = self.store.take_over(
                    self.holder,
                    ttl_ms=self._ttl_ms,
                    now_boot_ms=t0,
                    lock_inode=self._lock.inode if self._lock.is_held else None,
                    decide=decide,
                )
            except StoreError as exc:
                log.warning("dtms: takeover attempt failed; will retry", exc_info=True)
                if isinstance(exc, StoreBusyError):
                    self._unstick()
                elif isinstance(exc, StoreFilesChangedError):
                    self._disown()
                return
            if won is None:
                return
            epoch, reason = won
            self._epoch, self._fenced = epoch, False
            self._generation = generation
            self._valid_until_ms = t0 + self._ttl_ms
            self._last_renew_ms = self._beat_ms = t0
            self._next_renew_ms = t0 + round(self.settings.renew_interval_s * 1000)
            self._row_has_lock = self._lock.is_held
            self._elected.notify_all()
        log.info("dtms: %s leads with epoch %d (%s)", self.name, epoch, reason)
        if reason == "expired" and decided and decided[-1] is not None:
            self._kill_holder(decided[-1], "its lease expired")  # hung: it would hold the OS lock on
        if self._user_started is not None:
            started = self._user_started

            def call_started() -> None:
                try:
                    started(epoch)
                except Exception:
                    # No zombie leader: a leader whose start-up failed lets another process lead.
                    log.exception("dtms: on_started_leading raised; stepping down")
                    if self._epoch == epoch:
                        self._step_down("callback_failed", release=True)

            if threading.current_thread() is self._waiter:
                # Won through the OS lock: the waiter has nothing else to do, so the callback runs here at
                # once instead of waiting for the dispatcher thread to get the GIL (about 0.5 ms here).
                call_started()
            else:  # won by expiry on the heart thread, which must not be held up by user code
                self._calls.put(call_started)
        self._on_elected(epoch)
        self._wake.set()

    def _unstick(self) -> None:
        """After a takeover found the database locked: if the lease has expired, kill its holder (STONITH).

        A holder stopped inside a write transaction locks everyone out, and only killing it frees the
        database (spec/election.md §4.11). The row is read afresh: reads work while another connection
        holds the write lock, and a row someone renewed or took meanwhile is not expired.
        """
        if not self.settings.stonith:
            return
        try:
            row = self.store.lease_row()
        except StoreError:
            return
        if row is not None and self._rule(row) == "expired":
            self._kill_holder(row, "its lease expired while the database stayed locked")

    def _disown(self) -> None:
        """A takeover whose commit was seen after the files changed may have landed: if the row at the path
        now names us, release it, so nobody waits a TTL for a leader that does not know it leads."""
        try:
            row = self.store.lease_row()
            if row is not None and row.token == self.holder.token and not row.released:
                self.store.release_lease(row.epoch)
                log.warning("dtms: released epoch %d, taken while the database's files changed", row.epoch)
        except (LeaseLostError, StoreError):
            log.warning("dtms: could not check for a takeover made while the files changed", exc_info=True)

    def _kill_holder(self, row: LeaseRow, why: str) -> None:
        """Local STONITH (`election.stonith`, on by default): kill a hung holder on this host and record
        it."""
        if not self.settings.stonith:
            return
        log.warning("dtms: fencing the previous holder %s (pid %s, epoch %d): %s", row.holder_name, row.pid,
                    row.epoch, why)  # fmt: skip
        try:
            self._proofs.stopped(row.epoch)
        except StoreError:  # the proof is tried again before anything of that epoch is resent
            log.warning("dtms: could not record how epoch %d stopped", row.epoch, exc_info=True)

    def sender_stopped(self, epoch: int) -> bool:
        """Whether epoch `epoch` is proven unable to send any more (dtms.fence); proves it when it can."""
        return self._proofs.stopped(epoch)

    def quiesced(self, epoch: int) -> None:
        """The leader loop of `epoch` has ended in this process: record that it sends nothing more (retried by
        the heart until it is written: a follower may be waiting for exactly this proof)."""
        if self._forked or os.getpid() != self._pid:
            return
        with self._mu:
            self._quiesced.add(epoch)
        self._wake.set()  # the heart writes it: the loop thread must not wait on a busy database here

    def _record_quiesced(self) -> None:
        with self._mu:
            pending = sorted(self._quiesced)
        for epoch in pending:
            try:
                self.store.record_stopped(epoch, StopProof.QUIESCED, token=self.holder.token)
            except StoreError:  # the database is busy or its files changed: the next heartbeat tries again
                log.warning("dtms: could not record yet that epoch %d has quiesced", epoch, exc_info=True)
                return
            with self._mu:
                self._quiesced.discard(epoch)

    def _renew(self) -> None:
        epoch = self._epoch
        if epoch is None:
            return
        t0 = self.clock.boot_ms()
        stall_ms = round(self.settings.loop_stall_s * 1000)
        if t0 - self._beat_ms > stall_ms:
            log.error("dtms: leader loop silent for %.1f s; stepping down", (t0 - self._beat_ms) / 1000)
            self._step_down("loop_stalled", release=True)
            return
        if self.store.files_generation != self._generation:  # seen by another call of this store meanwhile
            log.error("dtms: the database's files changed under this leader; stepping down")
            self._step_down("files_changed", release=False)
            return
        try:
            self.store.renew_lease(
                epoch,
                expires_boot_ms=t0 + self._ttl_ms,
                ttl_ms=self._ttl_ms,
                loop_beat_boot_ms=self._beat_ms,
                lock_inode=self._lock.inode if self._lock.is_held else None,
            )
        except LeaseLostError:
            self.fence(epoch, "lease_lost")
            return
        except StoreFilesChangedError:  # its writes would be lost: never lead on them (issue 11, point 3)
            log.error("dtms: the database's files changed under this leader; stepping down", exc_info=True)
            # No release: the rows at the path are not the ones this epoch was granted in.
            self._step_down("files_changed", release=False)
            return
        except StoreError:
            log.warning("dtms: lease renewal failed", exc_info=True)
            if t0 - self._last_renew_ms > round(self.settings.renew_deadline_s * 1000):
                self._step_down("renew_deadline", release=True)
            else:
                self._next_renew_ms = t0 + round(self.settings.retry_interval_s * 1000)
            return
        with self._mu:
            if self._epoch == epoch and not self._fenced:
                self._valid_until_ms = t0 + self._ttl_ms
                self._last_renew_ms = t0
                self._next_renew_ms = t0 + round(self.settings.renew_interval_s * 1000)
        # A leader that took over without the OS lock (by expiry, or before its waiter got it) records
        # lock_held with the renewal after its waiter takes the lock (the waiter asks for one at once).
        self._row_has_lock = self._row_has_lock or self._lock.is_held

    def _step_down(self, reason: str, *, release: bool, grace_s: float | None = None) -> None:
        with self._mu:
            epoch = self._epoch
            if epoch is None or self._stepping_down:
                return
            self._stepping_down = True
            self._fenced = True
        try:
            grace = self.settings.stop_grace_s if grace_s is None else grace_s
            if not self._on_deposed(epoch, grace) and self.settings.on_wedged == "exit":
                log.critical("dtms: leader loop did not stop within %.1f s; exiting the process", grace)
                os._exit(EXIT_WEDGED)
            if release:
                # The proof that this epoch sends no more commits with the release: whoever takes over next
                # finds it, and never has to kill this process to get one.
                quiesced = epoch in self._quiesced
                try:
                    self.store.release_lease(epoch, quiesced=quiesced)
                    with self._mu:
                        self._quiesced.discard(epoch)
                except (LeaseLostError, StoreError):
                    log.info("dtms: could not mark epoch %d released", epoch, exc_info=True)
            if self._quiesced and not release:
                self._record_quiesced()  # before the OS lock goes: a taker through it finds the proof
            with self._mu:
                self._epoch = None
            self._release_lock()
            with self._mu:
                self._elected.notify_all()
        finally:
            self._stepping_down = False
        log.info("dtms: %s stopped leading epoch %d (%s)", self.name, epoch, reason)
        if self._user_stopped is not None:
            stopped = self._user_stopped
            self._calls.put(lambda: stopped(epoch, reason))
        self._wake.set()

    def _release_lock(self, wait_s: float = 1.0) -> None:
        """Have the waiter thread let the lock go, and wait until it has (never called holding `_mu`).

        Only after `released` is committed: the follower the kernel wakes must find the row released.
        """
        if not self._lock.is_held:
            return
        if threading.current_thread() is self._waiter:
            self._unlock.set()  # this is the waiter: it releases as soon as it is back in its loop
            return
        self._unlocked.clear()
        self._unlock.set()
        if not self._unlocked.wait(wait_s):
            log.warning("dtms: the election lock was not released within %.1f s", wait_s)

    def _dispatch(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            try:
                call()
            except Exception:
                log.exception("dtms: a leadership callback raised")


__all__ = ["EXIT_WEDGED", "Elector", "LeaderSeen"]
