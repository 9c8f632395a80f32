"""The lease row: read, take over (epoch + 1), renew, release, history; the display view for the CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

import apsw

from dtms.lease import ENGINE_LEASE, EpochRecord, LeaseRow, StopProof, TakeoverReason, shares_boot_clock
from dtms.models import Holder, LeaseInfo, LeaseState
from dtms.store.db import StoreCore, from_iso, iso

_LEASE_COLUMNS: Final = (
    "name, epoch, holder_name, host, pid, proc_start, boot_id, token, acquired_at, renewed_at, expires_at, "
    "expires_boot_ms, renewals, lease_ttl_ms, loop_beat_boot_ms, loop_beat_at, transitions, released, "
    "lock_held, lock_inode, clock_offset_ms"
)

_LEASE_FIELDS: Final = tuple(c.strip() for c in _LEASE_COLUMNS.split(","))


def _row(values: tuple[Any, ...]) -> LeaseRow:
    row: dict[str, Any] = dict(zip(_LEASE_FIELDS, values, strict=True))
    for flag in ("released", "lock_held"):
        row[flag] = bool(row[flag])
    return LeaseRow(**row)


def _offset_ms(wall: datetime, boot_ms: int) -> int:
    """The writer's `wall - boot` at one instant (dtms.clock.clock_offset_ms), stored with its deadline."""
    return round(wall.timestamp() * 1000) - boot_ms


def _select(conn: apsw.Connection, name: str) -> LeaseRow | None:
    # S608: _LEASE_COLUMNS is a constant column list; the name is a bound parameter.
    rows = conn.execute(f"SELECT {_LEASE_COLUMNS} FROM lease WHERE name = ?", (name,)).fetchall()  # noqa: S608
    return _row(rows[0]) if rows else None


class LeasesMixin(StoreCore):
    """Lease methods of `Store`; the election logic lives in dtms.lease (rules) and dtms.elector (threads)."""

    def lease_row(self, name: str = ENGINE_LEASE) -> LeaseRow | None:
        """The raw lease row, or None before the first leader."""
        with self._read() as conn:
            return _select(conn, name)

    def take_over(
        self,
        holder: Holder,
        *,
        ttl_ms: int,
        now_boot_ms: int,
        lock_inode: str | None,
        decide: Callable[[LeaseRow | None], TakeoverReason | None],
        name: str = ENGINE_LEASE,
    ) -> tuple[int, TakeoverReason] | None:
        """Take the lease if `decide(row)` allows it, in one BEGIN IMMEDIATE transaction.

        `decide` sees the row read inside the transaction, so no other candidate can slip in between the
        decision and the write; the UPDATE is also guarded by the epoch it read (compare-and-set).
        Returns (new epoch, reason), or None when `decide` said no.
        """
        now = self.clock.utc_now()
        wall = iso(now)
        expires_wall = iso(now + timedelta(milliseconds=ttl_ms))
        offset = _offset_ms(now, now_boot_ms)
        with self._relaxed_sync(), self._write() as conn:
            row = _select(conn, name)
            reason = decide(row)
            if reason is None:
                return None
            who = (holder.name, holder.host, holder.pid, holder.proc_start, holder.boot_id, holder.token)
            values = (
                *who,
                wall,
                wall,
                expires_wall,
                now_boot_ms + ttl_ms,
                ttl_ms,
                now_boot_ms,
                wall,
                int(lock_inode is not None),
                lock_inode,
                offset,
            )
            if row is None:
                epoch = 1
                conn.execute(
                    "INSERT INTO lease (name, epoch, holder_name, host, pid, proc_start, boot_id, token, "
                    "acquired_at, renewed_at, expires_at, expires_boot_ms, lease_ttl_ms, loop_beat_boot_ms, "
                    "loop_beat_at, lock_held, lock_inode, clock_offset_ms, renewals, transitions, released) "
                    "VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1, 0)",
                    (name, *values),
                )
            else:
                epoch = row.epoch + 1
                conn.execute(
                    "UPDATE lease SET epoch = epoch + 1, holder_name = ?, host = ?, pid = ?, proc_start = ?, "
                    "boot_id = ?, token = ?, acquired_at = ?, renewed_at = ?, expires_at = ?, "
                    "expires_boot_ms = ?, lease_ttl_ms = ?, loop_beat_boot_ms = ?, loop_beat_at = ?, "
                    "lock_held = ?, lock_inode = ?, clock_offset_ms = ?, renewals = 0, "
                    "transitions = transitions + 1, released = 0 "
                    "WHERE name = ? AND epoch = ?",
                    (*values, name, row.epoch),
                )
                if conn.changes() != 1:  # cannot happen under BEGIN IMMEDIATE; never trust that silently
                    raise RuntimeError("lease compare-and-set lost inside an IMMEDIATE transaction")
            conn.execute(
                "INSERT INTO lease_history (name, epoch, holder_name, host, pid, proc_start, boot_id, token, "
                "acquired_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, epoch, *who, wall, reason),
            )
        return epoch, reason

    def renew_lease(
        self,
        epoch: int,
        *,
        expires_boot_ms: int,
        ttl_ms: int,
        loop_beat_boot_ms: int | None,
        lock_inode: str | None = None,
        name: str = ENGINE_LEASE,
    ) -> None:
        """Extend the holder's lease (fenced on `epoch`) and record the leader loop's last heartbeat.

        Raises:
            LeaseLostError: the epoch is no longer current.
        """
        now = self.clock.utc_now()
        beat_at = None
        if loop_beat_boot_ms is not None:
            beat_at = iso(now - timedelta(milliseconds=max(0, self.clock.boot_ms() - loop_beat_boot_ms)))
        with self.fenced(epoch, name), self._write() as conn:
            conn.execute(
                "UPDATE lease SET renewed_at = ?, expires_at = ?, expires_boot_ms = ?, lease_ttl_ms = ?, "
                "renewals = renewals + 1, loop_beat_boot_ms = coalesce(?, loop_beat_boot_ms), "
                "loop_beat_at = coalesce(?, loop_beat_at), "
                "lock_held = CASE WHEN ? IS NULL THEN lock_held ELSE 1 END, "
                "lock_inode = coalesce(?, lock_inode), clock_offset_ms = ? WHERE name = ?",
                (
                    iso(now),
                    iso(now + timedelta(milliseconds=ttl_ms)),
                    expires_boot_ms,
                    ttl_ms,
                    loop_beat_boot_ms,
                    beat_at,
                    lock_inode,
                    lock_inode,
                    _offset_ms(now, expires_boot_ms - ttl_ms),
                    name,
                ),
            )

    def release_lease(self, epoch: int, name: str = ENGINE_LEASE, *, quiesced: bool = False) -> None:
        """Step down gracefully: mark the lease released so a follower takes over without waiting; with
        `quiesced` (the leader loop has ended), record in the same transaction that the epoch sends no more.

        Raises:
            LeaseLostError: the epoch is no longer current (someone else leads already).
        """
        now = iso(self.clock.utc_now())
        with self.fenced(epoch, name), self._write() as conn:
            conn.execute(
                "UPDATE lease SET released = 1, lock_held = 0, lock_inode = NULL, expires_at = ?, "
                "renewed_at = ? WHERE name = ?",
                (now, now, name),
            )
            if quiesced:
                conn.execute(
                    "UPDATE lease_history SET stopped_at = ?, stopped_how = ? "
                    "WHERE name = ? AND epoch = ? AND stopped_how IS NULL AND token = "
                    "(SELECT token FROM lease WHERE name = ?)",
                    (now, StopProof.QUIESCED.value, name, epoch, name),
                )

    def lease_history(self, name: str = ENGINE_LEASE) -> list[dict[str, Any]]:
        """Every epoch ever granted, oldest first: holder, time, why it was granted, and when and how it was
        proven to send no more (None while unproven)."""
        rows = self._rows(
            "SELECT epoch, holder_name, host, pid, token, acquired_at, reason, stopped_at, stopped_how "
            "FROM lease_history WHERE name = ? ORDER BY epoch",
            (name,),
        )
        return [{**r, "acquired_at": from_iso(r["acquired_at"]), "stopped_at": from_iso(r["stopped_at"])}
                for r in rows]  # fmt: skip

    def epoch_record(self, epoch: int, name: str = ENGINE_LEASE) -> EpochRecord | None:
        """Who held `epoch`, and how it was proven stopped; None for an epoch never granted."""
        rows = self._rows(
            "SELECT epoch, holder_name, host, pid, proc_start, boot_id, token, stopped_how, acquired_at "
            "FROM lease_history WHERE name = ? AND epoch = ?",
            (name, epoch),
        )
        if not rows:
            return None
        r = rows[0]
        how = None if r["stopped_how"] is None else StopProof(r["stopped_how"])
        return EpochRecord(r["epoch"], r["holder_name"], r["host"], r["pid"], r["proc_start"], r["boot_id"],
                           r["token"], how, r["acquired_at"])  # fmt: skip

    def record_stopped(
        self, epoch: int, how: StopProof, name: str = ENGINE_LEASE, *, token: str | None = None
    ) -> None:
        """Record that `epoch`'s holder can send no more; the first proof stays. Not fenced: any process that
        has the proof may write it (it says something about the past, never grants anything). With `token`,
        only if that holder had the epoch (a holder recording its own stop)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE lease_history SET stopped_at = ?, stopped_how = ? "
                "WHERE name = ? AND epoch = ? AND stopped_how IS NULL AND (?5 IS NULL OR token = ?5)",
                (iso(self.clock.utc_now()), StopProof(how).value, name, epoch, token),
            )

    def lease(self, name: str = ENGINE_LEASE) -> LeaseInfo | None:
        """Who leads, with which epoch, how fresh: read from the database, never from the lock file."""
        row = self.lease_row(name)
        if row is None:
            return None
        now = self.clock.utc_now()
        now_boot = self.clock.boot_ms()
        same_boot = shares_boot_clock(
            row, boot_id=self.clock.boot_id(), clock_offset_ms=_offset_ms(now, now_boot)
        )
        expires_at = from_iso(row.expires_at)
        if row.released:
            state = LeaseState.RELEASED
        elif same_boot:
            state = LeaseState.EXPIRED if now_boot >= (row.expires_boot_ms or 0) else LeaseState.HELD
        else:  # no shared boot clock: the display falls back to wall time (the election does not)
            state = LeaseState.EXPIRED if expires_at is not None and now >= expires_at else LeaseState.HELD
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
        renewed_at = from_iso(row.renewed_at)
        expires_in = loop_age = None
        if same_boot and row.expires_boot_ms is not None:
            expires_in = (row.expires_boot_ms - now_boot) / 1000
        elif expires_at is not None:
            expires_in = (expires_at - now).total_seconds()
        if same_boot and row.loop_beat_boot_ms is not None:
            loop_age = (now_boot - row.loop_beat_boot_ms) / 1000
        elif row.loop_beat_at is not None:
            loop_age = _age(now, from_iso(row.loop_beat_at))
        return LeaseInfo(
            name=row.name,
            epoch=row.epoch,
            state=state,
            holder=holder,
            lock_held=row.lock_held,
            acquired_at=from_iso(row.acquired_at),
            renewed_at=renewed_at,
            expires_at=expires_at,
            renewed_ago_s=_age(now, renewed_at),
            expires_in_s=expires_in,
            loop_beat_age_s=loop_age,
            transitions=row.transitions,
            lease_ttl_s=row.lease_ttl_ms / 1000,
            observed_at=now,
        )


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else (now - then).total_seconds()


__all__ = ["LeasesMixin"]
