"""The outbox: events written in the fenced transaction of the change they report, delivered at least once.

The leader writes events (`add_events`, fenced: inside another fenced block it joins that transaction); its
dispatcher reads what is due (`due_events`), calls the hooks off the monitoring loop and records the result
(`settle_event`, fenced, so a deposed leader records nothing). Operators read and requeue dead letters from
any process (`outbox_summary`, `outbox_entries`, `requeue_dead`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from dtms.errors import InvalidArgumentError
from dtms.events import Event, jsonable
from dtms.models import OutboxEntry, OutboxStatus, OutboxSummary
from dtms.store.db import dumps, from_iso, iso
from dtms.store.settings import SettingsMixin

#: The most events one dispatch pass reads: a backlog drains in passes, each one short.
DUE_BATCH: Final = 100
_COLUMNS: Final = (
    "event_id, kind, at, epoch, fields, status, attempts, next_at, delivered, error, created_at, finished_at"
)


class OutboxMixin(SettingsMixin):
    """Outbox rows: leader writes fenced; reads and the operator's requeue from any process."""

    def add_events(self, epoch: int, events: Iterable[Event]) -> list[int]:
        """Write events to the outbox (fenced on `epoch`); returns their sequence numbers.

        Called inside another `fenced(epoch)` block, the rows commit (or roll back) with that block's writes.
        Raises LeaseLostError when `epoch` is gone: nothing is written.
        """
        database_id = self.database_id  # made before the transaction: the event ids need it
        assert database_id is not None  # noqa: S101  # a writer always has one
        now = iso(self.clock.utc_now())
        seqs: list[int] = []
        with self.fenced(epoch), self._write() as conn:
            for event in events:
                conn.execute(
                    "INSERT INTO outbox (kind, at, epoch, fields, created_at) VALUES (?, ?, ?, ?, ?)",
                    (event.kind, iso(event.at), epoch, dumps(jsonable(event.fields)), now),
                )
                seqs.append(conn.last_insert_rowid())
        return seqs

    def due_events(self, now: datetime | None = None, limit: int = DUE_BATCH) -> list[OutboxEntry]:
        """Pending events whose backoff has passed at `now` (default: the store's clock), oldest first."""
        at = iso(now or self.clock.utc_now())
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' "  # noqa: S608
            "AND (next_at IS NULL OR next_at <= ?) ORDER BY event_id LIMIT ?",
            (at, limit),
        )
        return self._entries(rows)

    def settle_event(
        self,
        epoch: int,
        seq: int,
        *,
        delivered: Sequence[str],
        status: OutboxStatus,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> None:
        """Record one delivery attempt (fenced): the hooks that now have it, and its new status.

        Only a pending row changes, and its attempt count grows by one.
        """
        now = iso(self.clock.utc_now())
        finished = None if status is OutboxStatus.PENDING else now
        with self.fenced(epoch), self._write() as conn:
            conn.execute(
                "UPDATE outbox SET status = ?, attempts = attempts + 1, delivered = ?, error = ?, "
                "next_at = ?, finished_at = ? WHERE event_id = ? AND status = 'pending'",
                (status.value, dumps(list(delivered)), error, None if next_at is None else iso(next_at),
                 finished, seq),
            )  # fmt: skip

    def outbox_summary(self) -> OutboxSummary:
        """Counts per status, the oldest pending event's time and the latest error."""
        rows = self._rows(
            "SELECT "
            "(SELECT count(*) FROM outbox WHERE status = 'pending') AS pending, "
            "(SELECT count(*) FROM outbox WHERE status = 'dead') AS dead, "
            "(SELECT count(*) FROM outbox WHERE status = 'delivered') AS delivered, "
            "(SELECT min(created_at) FROM outbox WHERE status = 'pending') AS oldest, "
            "(SELECT error FROM outbox WHERE error IS NOT NULL ORDER BY event_id DESC LIMIT 1) AS last_error"
        )
        r = rows[0]
        return OutboxSummary(
            pending=r["pending"],
            dead=r["dead"],
            delivered=r["delivered"],
            oldest_pending_at=from_iso(r["oldest"]),
            last_error=r["last_error"],
        )

    def outbox_entries(self, status: OutboxStatus | str | None = None, limit: int = 50) -> list[OutboxEntry]:
        """The newest `limit` events (of one status, if given), newest first."""
        if limit < 1:
            raise InvalidArgumentError(f"limit must be at least 1, not {limit}")
        if status is None:
            rows = self._rows(
                f"SELECT {_COLUMNS} FROM outbox ORDER BY event_id DESC LIMIT ?",  # noqa: S608
                (limit,),
            )
        else:
            rows = self._rows(
                f"SELECT {_COLUMNS} FROM outbox WHERE status = ? ORDER BY event_id DESC LIMIT ?",  # noqa: S608
                (_status(status).value, limit),
            )
        return self._entries(rows)

    def requeue_dead(self) -> int:
        """Dead letters back to pending with a fresh attempt count (an operator's retry); returns how many.

        Not fenced: any process may ask, and the leader's dispatcher delivers them on its next pass.
        """
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_at = NULL, finished_at = NULL "
                "WHERE status = 'dead'"
            )
            return conn.changes()

    def _entries(self, rows: list[dict[str, Any]]) -> list[OutboxEntry]:
        prefix = self.database_id or "db"
        return [
            OutboxEntry(
                event_id=f"{prefix}-{r['event_id']}",
                seq=r["event_id"],
                kind=r["kind"],
                at=r["at"],
                epoch=r["epoch"],
                fields=json.loads(r["fields"]),
                status=r["status"],
                attempts=r["attempts"],
                next_at=r["next_at"],
                delivered=tuple(json.loads(r["delivered"])),
                error=r["error"],
                created_at=r["created_at"],
                finished_at=r["finished_at"],
            )
            for r in rows
        ]


def _status(value: OutboxStatus | str) -> OutboxStatus:
    try:
        return OutboxStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in OutboxStatus)
        raise InvalidArgumentError(f"outbox status must be one of {allowed}, not {value!r}") from None


__all__ = ["DUE_BATCH", "OutboxMixin"]
