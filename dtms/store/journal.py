"""The action journal and the transition log: intents, sends and outcomes, append-only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from dtms.errors import InvalidArgumentError
from dtms.models import Action, ActionStatus
from dtms.store.db import StoreCore, dumps, from_iso, iso, query
from dtms.store.trades import check_id, check_limit

_ACTION_COLUMNS: Final = (
    "action_id, idempotency_key, transition_id, identifier, leg, action_type, params, status, attempts, "
    "epoch, request, result, retcode, error, created_at, sent_at, completed_at"
)
_FINAL: Final = frozenset({ActionStatus.DONE, ActionStatus.FAILED, ActionStatus.SKIPPED})


def action_from_row(row: dict[str, Any]) -> Action:
    """An `Action` from an `actions` row."""
    data = dict(row)
    for name in ("params", "request", "result"):
        data[name] = None if data[name] is None else json.loads(data[name])
    for name in ("created_at", "sent_at", "completed_at"):
        data[name] = from_iso(data[name])
    return Action.model_validate(data)


class JournalMixin(StoreCore):
    """Journal methods of `Store`. Writes are fenced: only the current leader's epoch commits them."""

    def journal_intent(
        self,
        epoch: int,
        *,
        identifier: int,
        action_type: str,
        idempotency_key: str,
        params: dict[str, Any] | None = None,
        leg: str = "main",
        transition_id: int | None = None,
    ) -> Action:
        """Record that the leader intends to send one broker request; idempotent on `idempotency_key`.

        This is the first step of every broker call (spec/election.md I3): nothing is sent that was not
        first committed here under the sender's epoch. Re-journaling the same key returns the first row.

        Raises:
            LeaseLostError: `epoch` is no longer current; nothing is written.
        """
        now = iso(self.clock.utc_now())
        with self.fenced(epoch), self._write() as conn:
            return self._insert_intent(
                conn, epoch, identifier, transition_id, idempotency_key, leg, action_type, params or {}, now
            )

    def _insert_intent(
        self, conn: Any, epoch: int, identifier: int, transition_id: int | None, key: str, leg: str,
        action_type: str, params: Mapping[str, Any], now: str,
    ) -> Action:  # fmt: skip
        """The INTENT insert, inside the caller's fenced transaction (also used by `begin_transition`)."""
        conn.execute(
            "INSERT INTO actions (idempotency_key, transition_id, identifier, leg, action_type, params, "
            "status, epoch, created_at) VALUES (?, ?, ?, ?, ?, ?, 'INTENT', ?, ?) "
            "ON CONFLICT (idempotency_key) DO NOTHING",
            (key, transition_id, identifier, leg, action_type, dumps(dict(params)), epoch, now),
        )
        # S608: _ACTION_COLUMNS is a constant column list; the key is a bound parameter.
        rows = query(conn, f"SELECT {_ACTION_COLUMNS} FROM actions WHERE idempotency_key = ?", (key,))  # noqa: S608
        return action_from_row(rows[0])

    def mark_sent(self, epoch: int, action_id: int, request: dict[str, Any]) -> None:
        """Record, just before sending, the exact request and one more attempt (fenced)."""
        now = iso(self.clock.utc_now())
        with self.fenced(epoch), self._write() as conn:
            conn.execute(
                "UPDATE actions SET status = 'SENT', request = ?, attempts = attempts + 1, sent_at = ?, "
                "epoch = ? WHERE action_id = ?",
                (dumps(request), now, epoch, action_id),
            )
            if conn.changes() != 1:
                raise InvalidArgumentError(f"no action {action_id} in the journal")

    def record_outcome(
        self,
        epoch: int,
        action_id: int,
        status: ActionStatus,
        *,
        result: dict[str, Any] | None = None,
        retcode: int | None = None,
        error: str | None = None,
    ) -> None:
        """Record what came of an action (fenced). Final statuses set `completed_at`."""
        status = ActionStatus(status)
        now = iso(self.clock.utc_now())
        with self.fenced(epoch), self._write() as conn:
            conn.execute(
                "UPDATE actions SET status = ?, result = coalesce(?, result), "
                "retcode = coalesce(?, retcode), error = coalesce(?, error), "
                "completed_at = CASE WHEN ? THEN ? ELSE completed_at END "
                "WHERE action_id = ?",
                (
                    status.value,
                    None if result is None else dumps(result),
                    retcode,
                    error,
                    int(status in _FINAL),
                    now,
                    action_id,
                ),
            )
            if conn.changes() != 1:
                raise InvalidArgumentError(f"no action {action_id} in the journal")

    def actions(self, ticket: int | None = None, limit: int = 50) -> list[Action]:
        """Journal rows, newest first; of one trade if `ticket` is given."""
        check_limit(limit)
        # S608: _ACTION_COLUMNS is a constant column list; ticket and limit are bound parameters.
        if ticket is None:
            sql = f"SELECT {_ACTION_COLUMNS} FROM actions ORDER BY action_id DESC LIMIT ?"  # noqa: S608
            rows = self._rows(sql, (limit,))
        else:
            check_id(ticket)
            rows = self._rows(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE identifier = "  # noqa: S608
                "coalesce((SELECT identifier FROM trades WHERE identifier = ?1), "
                "(SELECT identifier FROM trades WHERE ticket = ?1 ORDER BY identifier LIMIT 1)) "
                "ORDER BY action_id DESC LIMIT ?2",
                (ticket, limit),
            )
        return [action_from_row(r) for r in rows]

    def open_actions(self, identifier: int | None = None) -> list[Action]:
        """INTENT, SENT and UNKNOWN rows (of one trade if given), oldest first: what a new leader reconciles
        before it sends anything new."""
        where = "status IN ('INTENT','SENT','UNKNOWN')"
        params: tuple[Any, ...] = ()
        if identifier is not None:
            where += " AND identifier = ?"
            params = (identifier,)
        rows = self._rows(f"SELECT {_ACTION_COLUMNS} FROM actions WHERE {where} ORDER BY action_id", params)  # noqa: S608
        return [action_from_row(r) for r in rows]

    def awaiting_proof(self) -> list[Action]:
        """Rows an earlier epoch sent that wait for proof that it can send no more (dtms.fence), oldest first:
        nothing is concluded about them, and nothing risk-adding is sent for their trades, until it comes."""
        rows = self._rows(
            f"SELECT {_ACTION_COLUMNS} FROM actions WHERE status IN ('SENT','UNKNOWN') "  # noqa: S608
            "AND json_extract(result, '$.awaiting_proof') = 1 ORDER BY action_id"
        )
        return [action_from_row(r) for r in rows]


__all__ = ["JournalMixin", "action_from_row"]
