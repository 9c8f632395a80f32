"""Leader-only writes to trades: engine state in bulk, and transitions with their intents (all fenced)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dtms.errors import InvalidArgumentError
from dtms.models import Action, TradeState
from dtms.store.db import dumps, iso, query
from dtms.store.journal import _ACTION_COLUMNS, JournalMixin, action_from_row

#: The trade columns the engine may set. Column names are never taken from input: only from this set.
ENGINE_COLUMNS: Final = frozenset(
    {
        "ticket",
        "volume",
        "initial_volume",
        "closed_volume",
        "sl",
        "tp",
        "r",
        "r_source",
        "state",
        "state_at",
        "score",
        "armed",
        "activated_at",
        "activation_reason",
        "closed_at",
        "close_reason",
    }
)


@dataclass(frozen=True)
class TradeUpdate:
    """Columns to set and a JSON merge patch for the `engine` column (a None value deletes that key)."""

    columns: Mapping[str, Any] = field(default_factory=dict)
    engine: Mapping[str, Any] = field(default_factory=dict)


def _assignments(columns: Mapping[str, Any]) -> tuple[str, list[Any]]:
    unknown = set(columns) - ENGINE_COLUMNS
    if unknown:
        raise InvalidArgumentError(f"not engine columns: {sorted(unknown)}")
    names = sorted(columns)
    values = [iso(v) if hasattr(v, "tzinfo") else (v.value if isinstance(v, TradeState) else v)
              for v in (columns[n] for n in names)]  # fmt: skip
    return "".join(f"{n} = ?, " for n in names), values


class EngineMixin(JournalMixin):
    """What only the leader writes; every method is fenced on the caller's epoch."""

    def update_trades(self, epoch: int, updates: Mapping[int, TradeUpdate]) -> int:
        """Apply many trade updates in one fenced transaction; CLOSED trades are left alone unless the update
        closes them itself (a follower may have unregistered a trade meanwhile: never resurrect it).

        Returns how many rows changed. Raises LeaseLostError when `epoch` is gone (nothing is written).
        """
        now = iso(self.clock.utc_now())
        changed = 0
        with self.fenced(epoch), self._write() as conn:
            for identifier, update in updates.items():
                sets, values = _assignments(update.columns)
                conn.execute(
                    f"UPDATE trades SET {sets}engine = json_patch(engine, ?), updated_at = ?, "  # noqa: S608
                    "row_version = row_version + 1 WHERE identifier = ? AND state != 'CLOSED'",
                    (*values, dumps(dict(update.engine)), now, identifier),
                )
                changed += conn.changes()
        return changed

    def begin_transition(
        self,
        epoch: int,
        *,
        identifier: int,
        from_state: TradeState,
        to_state: TradeState,
        reason: str,
        score: float | None,
        actions: Iterable[tuple[str, str, Mapping[str, Any]]],
        detail: Mapping[str, Any] | None = None,
        engine: Mapping[str, Any] | None = None,
    ) -> tuple[int, list[Action]] | None:
        """Write a pending transition and one INTENT per (leg, action_type, params), atomically (fenced).

        Returns (transition_id, intents), or None when the trade is no longer in `from_state` (for example a
        follower unregistered it): nothing is written then. `engine` patches the trade's engine state in the
        same transaction (e.g. to mark the transition pending).
        """
        now = iso(self.clock.utc_now())
        with self.fenced(epoch), self._write() as conn:
            rows = query(conn, "SELECT state FROM trades WHERE identifier = ?", (identifier,))
            if not rows or rows[0]["state"] != TradeState(from_state).value:
                return None
            conn.execute(
                "INSERT INTO transitions "
                "(identifier, at, from_state, to_state, reason, score, epoch, status, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (
                    identifier,
                    now,
                    TradeState(from_state).value,
                    TradeState(to_state).value,
                    reason,
                    score,
                    epoch,
                    dumps(dict(detail or {})),
                ),
            )
            transition_id = conn.last_insert_rowid()
            intents = []
            for seq, (leg, action_type, params) in enumerate(actions):
                intents.append(
                    self._insert_intent(
                        conn,
                        epoch,
                        identifier,
                        transition_id,
                        f"{transition_id}:{seq}",
                        leg,
                        action_type,
                        params,
                        now,
                    )
                )
            conn.execute(
                "UPDATE trades SET engine = json_patch(engine, ?), updated_at = ? WHERE identifier = ?",
                (dumps({**(engine or {}), "pending_transition": transition_id}), now, identifier),
            )
        return transition_id, intents

    def finish_transition(
        self, epoch: int, transition_id: int, *, applied: bool, update: TradeUpdate | None = None
    ) -> None:
        """Apply (state and timers change with the primary outcome) or abandon a pending transition
        (fenced)."""
        now = iso(self.clock.utc_now())
        update = update or TradeUpdate()
        with self.fenced(epoch), self._write() as conn:
            rows = query(
                conn, "SELECT identifier, status FROM transitions WHERE transition_id = ?", (transition_id,)
            )
            if not rows:
                raise InvalidArgumentError(f"no transition {transition_id}")
            if rows[0]["status"] != "pending":
                return
            identifier = rows[0]["identifier"]
            conn.execute(
                "UPDATE transitions SET status = ? WHERE transition_id = ?",
                ("applied" if applied else "abandoned", transition_id),
            )
            columns = dict(update.columns) if applied else {}
            sets, values = _assignments(columns)
            engine = {**(dict(update.engine) if applied else {}), "pending_transition": None}
            conn.execute(
                f"UPDATE trades SET {sets}engine = json_patch(engine, ?), updated_at = ?, "  # noqa: S608
                "row_version = row_version + 1 WHERE identifier = ?",
                (*values, dumps(engine), now, identifier),
            )

    def pending_transitions(self) -> list[dict[str, Any]]:
        """Transitions whose primary action is not resolved yet, oldest first."""
        return self._rows(
            "SELECT transition_id, identifier, at, from_state, to_state, reason, score, epoch, detail "
            "FROM transitions WHERE status = 'pending' ORDER BY transition_id"
        )

    def transition(self, transition_id: int) -> dict[str, Any] | None:
        """One transition row with its detail decoded."""
        rows = self._rows(
            "SELECT transition_id, identifier, at, from_state, to_state, reason, score, epoch, status, "
            "detail FROM transitions WHERE transition_id = ?",
            (transition_id,),
        )
        if not rows:
            return None
        return {**rows[0], "detail": json.loads(rows[0]["detail"])}

    def transition_actions(self, transition_id: int) -> list[Action]:
        """The journal rows of one transition, in the order they were written."""
        rows = self._rows(
            f"SELECT {_ACTION_COLUMNS} FROM actions WHERE transition_id = ? ORDER BY action_id",  # noqa: S608
            (transition_id,),
        )
        return [action_from_row(r) for r in rows]

    def requeue_action(self, epoch: int, action_id: int, *, retcode: int | None, error: str) -> None:
        """A sent request that certainly did not execute (a DEFER/BACKOFF answer): back to INTENT, retried
        on a later check (fenced)."""
        with self.fenced(epoch), self._write() as conn:
            conn.execute(
                "UPDATE actions SET status = 'INTENT', retcode = ?, error = ? WHERE action_id = ? "
                "AND status IN ('SENT', 'INTENT')",
                (retcode, error, action_id),
            )


__all__ = ["ENGINE_COLUMNS", "EngineMixin", "TradeUpdate"]
