"""The only code that speaks SQL to the dtms database: `open(path) -> Store`."""

from __future__ import annotations

import os
from typing import Final

from dtms.clock import Clock
from dtms.models import Health, LeaseState
from dtms.store.db import DEFAULT_BUSY_TIMEOUT_S
from dtms.store.engine import EngineMixin, TradeUpdate
from dtms.store.journal import JournalMixin
from dtms.store.leases import LeasesMixin
from dtms.store.settings import SettingsMixin
from dtms.store.trades import TradesMixin

#: A leader whose loop has not beaten for this long is stale: other managers read dtms_state as UNKNOWN
#: (spec/dtms-behaviour.md section 9) and health is red.
STALE_LEADER_S: Final = 30.0


class Store(TradesMixin, LeasesMixin, JournalMixin, EngineMixin, SettingsMixin):
    """The shared trade database of every dtms process: trades, the lease, the journal.

    One connection per process, shared by its threads behind one lock; every write is BEGIN IMMEDIATE.
    Unusable in a child forked after it was opened (raises `UsedAfterForkError`): open a new one there.
    """

    def health(self) -> Health:
        """Healthy when the database is intact and a leader holds a fresh lease with a live loop."""
        checks: dict[str, object] = {}
        reasons: list[str] = []
        integrity = self._rows("PRAGMA quick_check")[0]
        checks["integrity"] = str(next(iter(integrity.values())))
        if checks["integrity"] != "ok":
            reasons.append(f"database integrity: {checks['integrity']}")
        lease = self.lease()
        checks["leader"] = None if lease is None or lease.holder is None else lease.holder.name
        checks["epoch"] = None if lease is None else lease.epoch
        checks["lease_state"] = LeaseState.NONE.value if lease is None else lease.state.value
        checks["loop_beat_age_s"] = None if lease is None else lease.loop_beat_age_s
        if lease is None or lease.state is not LeaseState.HELD:
            reasons.append(f"no leader holds the lease (state: {checks['lease_state']})")
        elif lease.loop_beat_age_s is None or lease.loop_beat_age_s > STALE_LEADER_S:
            reasons.append(f"the leader loop has not beaten for {lease.loop_beat_age_s} s")
        checks["open_trades"] = self.count_trades(include_closed=False)
        status = "healthy" if not reasons else "unhealthy"
        return Health(status=status, reasons=tuple(reasons), checks=checks, checked_at=self.clock.utc_now())


def open(  # noqa: A001  # dtms.open mirrors the builtin on purpose: it is the library's front door
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    clock: Clock | None = None,
    allow_network_fs: bool = False,
) -> Store:
    """Open (creating it, owner-only, unless `create=False`) the dtms database at `path`.

    Raises:
        StoreNotFoundError: `create=False` and there is no database at `path`.
        SchemaVersionError: the database was written by a newer dtms.
        StoreError: the file is not a database, is on a network file system, or cannot be opened.
    """
    return Store(
        path, create=create, busy_timeout_s=busy_timeout_s, clock=clock, allow_network_fs=allow_network_fs
    )


__all__ = ["STALE_LEADER_S", "Store", "TradeUpdate", "open"]
