"""Pure lease rules: who may take over, and until when a holder is valid; no I/O, every time is an argument."""

from __future__ import annotations

from dataclasses import dataclass
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
    """The observation after reading `row` at `now_ms`: kept while the row is unchanged, restarted otherwise."""
    if row is None:
        return None
    if previous is not None and (previous.epoch, previous.renewals) == (row.epoch, row.renewals):
        return previous
    return Observation(row.epoch, row.renewals, now_ms)


def is_expired(
    row: LeaseRow, *, now_boot_ms: int, boot_id: str | None, observation: Observation | None
) -> bool:
    """True when the holder's lease has run out on a clock that wall-clock steps cannot move (I7).

    Same boot: compare the shared boot clock with the stored deadline. Another boot: the host rebooted since
    the row was written, so its holder is gone. No boot clock on this platform: the observed-time rule.
    """
    if boot_id is not None and row.boot_id is not None:
        if row.boot_id != boot_id:
            return True
        return row.expires_boot_ms is None or now_boot_ms >= row.expires_boot_ms
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
) -> TakeoverReason | None:
    """Whether a candidate may take the lease now, and why (spec/election.md section 6).

    Args:
        row: the lease row, read in the same transaction that will write the takeover.
        lock_inode: 'dev:ino' of the lock file whose OS lock the candidate holds; None if it holds none.
        holder_alive: whether the row's holder process still runs (pid + start time on this host);
            None when that cannot be known (another host or boot, or no /proc).
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
    if is_expired(row, now_boot_ms=now_boot_ms, boot_id=boot_id, observation=observation):
        return "expired"
    return None


def valid_until_ms(row: LeaseRow, token: str) -> int | None:
    """The boot-clock instant at which `token`'s hold ends, or None when it does not hold the row."""
    if row.token != token or row.released:
        return None
    return row.expires_boot_ms


__all__ = [
    "ENGINE_LEASE",
    "LeaseRow",
    "Observation",
    "TakeoverReason",
    "is_expired",
    "may_take_over",
    "observe",
    "valid_until_ms",
]
