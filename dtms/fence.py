"""Proof that an earlier epoch can send no more, and local fencing: kill-before-resend.

The lease fences the database, not the broker: MetaTrader 5 takes no token, so a leader paused or hung
between its last check and `order_send` may still deliver its request after another process took over.
Before a leader resends or re-plans an action an earlier epoch journaled SENT, it therefore needs proof
that the earlier holder can send nothing more (spec/election.md §6), recorded in the lease history as a
`StopProof`:

- EXITED: the holder's process is gone: pid plus start time, checked on this host and boot;
- KILLED: dtms killed it (the default, `election.stonith`): pidfd first, then the start time, then SIGKILL
  through the pidfd, then its exit seen on the pidfd, so a reused pid is never signalled;
- QUIESCED: the holder's own leader loop ended and it recorded so (a clean hand-over, or a fenced loop
  that noticed it lost the lease), or the epoch was this very elector's own earlier term;
- OPERATOR: the operator confirmed it (`dtms fence confirm EPOCH`), the only way for another boot.

Without proof nothing is concluded: the action stays UNKNOWN. The process checks are Linux only;
elsewhere only QUIESCED and OPERATOR proofs exist (docs/election.md).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from dtms.clock import process_start_time
from dtms.lease import ENGINE_LEASE, EpochRecord, StopProof, from_earlier_boot
from dtms.store import Store

log = logging.getLogger(__name__)

#: A kill that did not end in an exit (a process in an uninterruptible system call) is tried again only after
#: this long: each try waits up to KILL_WAIT_S on the thread that asked (the leader loop).
KILL_RETRY_S: Final = 30.0
#: How long a kill waits to see the process exit; a SIGKILLed process (even a stopped one) exits in ms unless
#: it is inside an uninterruptible system call, and then it is still no proof.
KILL_WAIT_S: Final = 2.0


def _boottime_offset_ticks(pid: int | str) -> int | None:
    """The boot-clock offset of `pid`'s time namespace in clock ticks: 0 outside one or without time
    namespaces (no file), None when it exists but cannot be read (then nothing is concluded)."""
    path = Path(f"/proc/{pid}/timens_offsets")
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("boottime", "7"):  # CLOCK_BOOTTIME is clock id 7
            return (int(parts[1]) * 1_000_000_000 + int(parts[2])) * os.sysconf("SC_CLK_TCK") // 1_000_000_000
    return 0


def same_start_time(pid: int, recorded: int) -> bool | None:
    """Whether `pid` is the process that recorded `recorded` as its own start time (`proc_start`).

    Linux shifts `/proc/<pid>/stat`'s start time by the *reader's* time namespace, so a holder in another time
    namespace recorded another number than the one read here: add its boot-clock offset, remove ours. The
    kernel truncates start + offset as one sum, so across namespaces one tick either way is the same process.
    None when it cannot be told (no /proc entry readable, offsets unreadable).
    """
    start = process_start_time(pid)
    theirs, ours = _boottime_offset_ticks(pid), _boottime_offset_ticks("self")
    if start is None or theirs is None or ours is None:
        return None
    seen = start + theirs - ours
    return abs(seen - recorded) <= (1 if theirs or ours else 0)


def holder_alive(pid: int | None, proc_start: int | None, host: str | None, boot_id: str | None, *,
                 my_host: str, my_boot_id: str | None) -> bool | None:  # fmt: skip
    """Whether the recorded holder process still runs: pid plus start time on this host and boot, else None.

    None means it cannot be known here: another host or boot id, no start time recorded, or no /proc.
    """
    if (
        pid is None
        or host != my_host
        or my_boot_id is None
        or boot_id != my_boot_id
        or sys.platform != "linux"
    ):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    if stat[stat.rindex(")") + 2 :].split()[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    if proc_start is None:
        return None  # a pid alone proves nothing: it may have been reused
    return same_start_time(pid, proc_start)


def kill_verified(pid: int, proc_start: int, *, wait_s: float = KILL_WAIT_S) -> bool:
    """SIGKILL the process `pid` started at `proc_start`, and return True once it has exited.

    `pidfd_open` pins the process, then its start time is checked, then the signal goes through the pidfd, and
    the pidfd turns readable when the process exits: a reused pid can neither pass the check nor be signalled.
    Never this process; False whenever any step fails (Linux ≥ 5.3 only).
    """
    if sys.platform != "linux" or not hasattr(os, "pidfd_open") or pid == os.getpid():
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # gone already, or not ours to see
        return False
    try:
        if not same_start_time(pid, proc_start):
            return False
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        readable, _, _ = select.select([fd], [], [], wait_s)
        return bool(readable)
    except OSError:
        return False
    finally:
        os.close(fd)


class Fence:
    """Answers "can epoch e still send?" for one elector, proving and recording what it can.

    Args:
        store: the shared database (the lease history holds every epoch's holder and its proof).
        token: this elector's per-Node token: an earlier epoch with it was this process's own term, whose
            loop ended before this elector could lead again.
        host, boot_id: this process's host name and boot id (a callable: the clock's answer may change).
        kill: whether to kill a live holder to obtain proof (`election.stonith`, default on).
    """

    def __init__(
        self,
        store: Store,
        *,
        token: str,
        host: str,
        boot_id: Callable[[], str | None],
        kill: bool,
        clock_offset_ms: Callable[[], int | None] = lambda: None,
        name: str = ENGINE_LEASE,
    ) -> None:
        self.store = store
        self.clock_offset_ms = clock_offset_ms
        self.token = token
        self.host = host
        self.boot_id = boot_id
        self.kill = kill
        self.name = name
        self._tried: dict[int, float] = {}  # epoch -> monotonic time of its last unsuccessful kill

    def stopped(self, epoch: int) -> bool:
        """True when epoch `epoch` is proven unable to send; records a proof it finds or makes."""
        record = self.store.epoch_record(epoch, self.name)
        if record is None:
            return False
        if record.stopped_how is not None:
            return True
        how = self._prove(record)
        if how is None:
            return False
        self.store.record_stopped(epoch, how, self.name)
        log.warning("dtms: epoch %d (%s, pid %d) can send no more: %s", epoch, record.holder_name, record.pid,
                    how.value)  # fmt: skip
        return True

    def _prove(self, record: EpochRecord) -> StopProof | None:
        if record.token == self.token:
            return StopProof.QUIESCED  # our own earlier term: the elector never leads while its loop runs
        if from_earlier_boot(record.acquired_at, record.boot_id, boot_id=self.boot_id(),
                             clock_offset_ms=self.clock_offset_ms()):  # fmt: skip
            return StopProof.EXITED  # it ran before this host rebooted
        alive = holder_alive(record.pid, record.proc_start, record.host, record.boot_id, my_host=self.host,
                             my_boot_id=self.boot_id())  # fmt: skip
        if alive is False:
            return StopProof.EXITED
        if (
            alive
            and self.kill
            and record.proc_start is not None
            and kill_verified(record.pid, record.proc_start)
        ):
            return StopProof.KILLED
        return None


__all__ = ["KILL_RETRY_S", "KILL_WAIT_S", "Fence", "holder_alive", "kill_verified", "same_start_time"]
