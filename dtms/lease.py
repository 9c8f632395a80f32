"""Pure lease rules: who may take over, and until when a holder is valid; no I/O, every time is an
argument."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

TakeoverReason = Literal["first", "released", "holder_dead", "expired"]

#: A lease name for the engine; other names could elect other singletons on the same database.
ENGINE_LEASE: Final = "engine"


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """The lease row as stored (see dtms/store/schema.py); the store builds it, the rules read it."""

    name: str
    epoch: int
    holder_name: str | None
    host: str | None
    pid: int | None
    proc_start: int | None
    boot_id: str | None
    token: str | None
    acquired_at: str | None
    renewed_at: str | None
    expires_at: str | None
    expires_boot_ms: int | None
    renewals: int
    lease_ttl_ms: int
    loop_beat_boot_ms: int | None
    loop_beat_at: str | None
    transitions: int
    released: bool
    lock_held: bool
    lock_inode: str | None
    clock_offset_ms: int | None = None  # the writer's wall - boot (dtms.clock.clock_offset_ms); None: unknown


class StopProof(StrEnum):
    """How it was proven that an epoch's holder can send nothing more (kill-before-resend, spec/election.md
    §6)."""

    EXITED = "exited"  # its process is gone: pid plus start time checked on this host and boot
    KILLED = "killed"  # dtms killed it (pidfd, start time checked) and saw it exit
    QUIESCED = "quiesced"  # its own leader loop ended: the holder recorded that it sends no more
    OPERATOR = "operator"  # the operator confirmed it (`dtms fence confirm`), e.g. a holder on another boot


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One granted epoch from the lease history: who held it, and whether it is proven stopped."""

    epoch: int
    holder_name: str
    host: str
    pid: int
    proc_start: int | None
    boot_id: str | None
    token: str
    stopped_how: StopProof | None
    acquired_at: str | None = None  # ISO-8601 wall time of the takeover, as its holder wrote it


@dataclass(frozen=True, slots=True)
class Observation:
    """When this process first saw the row's current (epoch, renewals): the observed-time rule's anchor.

    Used where no shared boot clock exists (no boot id): a row unchanged for a whole TTL on *my* monotonic
    clock has expired, whatever its timestamps say (client-go's rule; tolerant of any clock skew).
    """

    epoch: int
    renewals: int
    since_ms: int


def observe(row: LeaseRow | None, previous: Observation | None, now_ms: int) -> Observation | None:
    """The observation after reading `row` at `now_ms`: kept while the row is unchanged, restarted
    otherwise."""
    if row is None:
        return None
    if previous is not None and (previous.epoch, previous.renewals) == (row.epoch, row.renewals):
        return previous
    return Observation(row.epoch, row.renewals, now_ms)


#: Two processes sharing one view of time read `wall - boot` within a few ms of each other; past this they do
#: not share the boot clock (one is in another time namespace, or under libfaketime).
OFFSET_TOLERANCE_MS: Final = 250


def shares_boot_clock(row: LeaseRow, *, boot_id: str | None, clock_offset_ms: int | None) -> bool:
    """Whether the row's boot-clock deadline may be compared with this process's boot clock.

    Only when both name the same boot and both recorded the same `wall - boot` offset: a peer in another time
    namespace has the same boot id but an offset boot clock; one that sees another boot id may be in another
    mount namespace, not on another boot. Anything else uses the observed-time rule (spec/election.md §6).
    """
    if boot_id is None or row.boot_id is None or row.boot_id != boot_id:
        return False
    if clock_offset_ms is None or row.clock_offset_ms is None:
        return False
    return abs(row.clock_offset_ms - clock_offset_ms) <= OFFSET_TOLERANCE_MS


#: How far a holder's takeover must lie before this boot (its wall time against `wall - boot` now) to count as
#: made in an earlier boot; covers the kernel's whole-second boot time and clock slew.
EARLIER_BOOT_MARGIN_MS: Final = 2_000


def from_earlier_boot(
    acquired_at: str | None, holder_boot_id: str | None, *, boot_id: str | None, clock_offset_ms: int | None
) -> bool:
    """Whether a holder ran in an earlier boot of this host, so it cannot be running now.

    Its boot id differs from ours (a reboot; a mount namespace may fake one, so that alone proves nothing) and
    it took the lease before this kernel booted (`clock_offset_ms` is this boot's wall time of boot): every
    process alive now started after that. A holder whose clock lies (libfaketime) records no boot id.
    """
    if acquired_at is None or holder_boot_id is None or boot_id is None or clock_offset_ms is None:
        return False
    if holder_boot_id.split("/", 1)[0] == boot_id.split("/", 1)[0]:
        return False  # the same kernel boot (maybe another pid namespace): alive or not, it is not gone
    try:
        acquired_ms = datetime.fromisoformat(acquired_at).timestamp() * 1000
    except ValueError:
        return False
    return acquired_ms < (clock_offset_ms or 0) - EARLIER_BOOT_MARGIN_MS


def is_expired(
    row: LeaseRow,
    *,
    now_boot_ms: int,
    boot_id: str | None,
    observation: Observation | None,
    clock_offset_ms: int | None = None,
) -> bool:
    """True when the holder's lease has run out on a clock that wall-clock steps cannot move (I7).

    A shared boot clock (`shares_boot_clock`): compare it with the stored deadline. Otherwise (another boot
    id, another view of time, no boot clock on this platform) the observed-time rule: the row must have stayed
    unrenewed for a whole TTL on this process's own clock. A foreign clock can thus neither expire a live
    lease at once nor keep a dead one alive.
    """
    if shares_boot_clock(row, boot_id=boot_id, clock_offset_ms=clock_offset_ms):
        # Within the tolerance the two boot clocks may still differ by the offsets' difference: wait it out,
        # so the holder's own view has ended too.
        skew = abs((row.clock_offset_ms or 0) - (clock_offset_ms or 0))
        return row.expires_boot_ms is None or now_boot_ms >= row.expires_boot_ms + skew
    if observation is None or (observation.epoch, observation.renewals) != (row.epoch, row.renewals):
        return False
    return now_boot_ms - observation.since_ms >= row.lease_ttl_ms


def may_take_over(
    row: LeaseRow | None,
    *,
    now_boot_ms: int,
    boot_id: str | None,
    lock_inode: str | None,
    holder_alive: bool | None,
    observation: Observation | None = None,
    clock_offset_ms: int | None = None,
) -> TakeoverReason | None:
    """Whether a candidate may take the lease now, and why (spec/election.md section 6).

    Args:
        row: the lease row, read in the same transaction that will write the takeover.
        lock_inode: 'dev:ino' of the lock file whose OS lock the candidate holds; None if it holds none.
        holder_alive: whether the row's holder process still runs (pid + start time on this host);
            None when that cannot be known (another host or boot, or no /proc).
        clock_offset_ms: this process's `wall - boot` (see `shares_boot_clock`); None: never compare clocks.
    """
    if row is None or row.holder_name is None:
        return "first"
    if row.released:
        return "released"
    # The fast path: we hold the very lock file the holder held, so it exited (the kernel dropped its lock)
    # or stepped down. Comparing inodes, not probing /proc, avoids racing the kernel's exit bookkeeping; a
    # lock file replaced under a live holder has another inode and falls through to expiry.
    if lock_inode is not None and row.lock_held and row.lock_inode == lock_inode:
        return "holder_dead"
    # Degraded state after a hung-leader takeover: the leader runs without the OS lock, and the lock's new
    # owner is next in line. Its death is proven from /proc rather than waiting for the TTL.
    if lock_inode is not None and not row.lock_held and holder_alive is False:
        return "holder_dead"
    # After a reboot: the holder took the lease before this kernel booted, so it is gone (a robust mutex in
    # the lock file may even still read "locked" by a thread of the earlier boot).
    if from_earlier_boot(row.acquired_at, row.boot_id, boot_id=boot_id, clock_offset_ms=clock_offset_ms):
        return "holder_dead"
    if is_expired(
        row,
        now_boot_ms=now_boot_ms,
        boot_id=boot_id,
        observation=observation,
        clock_offset_ms=clock_offset_ms,
    ):
        return "expired"
    return None


__all__ = [
    "EARLIER_BOOT_MARGIN_MS",
    "ENGINE_LEASE",
    "OFFSET_TOLERANCE_MS",
    "EpochRecord",
    "LeaseRow",
    "Observation",
    "StopProof",
    "TakeoverReason",
    "from_earlier_boot",
    "is_expired",
    "may_take_over",
    "observe",
    "shares_boot_clock",
]
