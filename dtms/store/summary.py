"""Counts for `dtms status`: one aggregate query each, the same cost for 10 or 100 000 trades."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final

from dtms.store.db import iso

if TYPE_CHECKING:
    from dtms.store import Store

#: The newest actions `recent_actions` looks at: a bound on the work, far above an hour's worth.
RECENT_ACTIONS: Final = 10_000


def open_trades_by_state(store: Store) -> dict[str, int]:
    """How many open trades are in each state (the partial index `trades_open`; CLOSED rows are not read)."""
    rows = store._rows(
        "SELECT state, count(*) AS n FROM trades WHERE state != 'CLOSED' GROUP BY state ORDER BY state"
    )
    return {str(r["state"]): int(r["n"]) for r in rows}


def armed_trades(store: Store) -> int:
    """How many open trades are armed (registered, not yet monitored)."""
    rows = store._rows("SELECT count(*) AS n FROM trades WHERE state != 'CLOSED' AND armed = 1")
    return int(rows[0]["n"])


def recent_actions(store: Store, since: datetime) -> dict[str, int]:
    """Actions created at or after `since`, by status, among the newest `RECENT_ACTIONS` journal rows."""
    rows = store._rows(
        "SELECT status, count(*) AS n FROM (SELECT status, created_at FROM actions ORDER BY action_id DESC "
        "LIMIT ?) WHERE created_at >= ? GROUP BY status ORDER BY status",
        (RECENT_ACTIONS, iso(since)),
    )
    return {str(r["status"]): int(r["n"]) for r in rows}


__all__ = ["RECENT_ACTIONS", "armed_trades", "open_trades_by_state", "recent_actions"]
