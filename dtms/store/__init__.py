"""The only code that speaks SQL to the dtms database: `open(path) -> Store`."""

from __future__ import annotations

import os
from typing import Final, Literal

from dtms.clock import Clock
from dtms.errors import InvalidArgumentError
from dtms.models import Health, LeaseState, TradeState
from dtms.store.db import DEFAULT_BUSY_TIMEOUT_S
from dtms.store.engine import EngineMixin, TradeUpdate
from dtms.store.leases import LeasesMixin
from dtms.store.outbox import OutboxMixin
from dtms.store.settings import SettingsMixin
from dtms.store.trades import TradesMixin

#: A leader whose loop has not beaten for this long is stale: other managers read dtms_state as UNKNOWN
#: (spec/dtms-behaviour.md section 9) and health is red.
STALE_LEADER_S: Final = 30.0


#: Manager actions other processes ask about (spec/dtms-behaviour.md section 9).
ManagerAction = Literal["sl", "trail", "breakeven", "partial_close", "close"]
#: While dtms_state is UNKNOWN (no fresh leader), only these stay allowed: the conservative fallback.
UNKNOWN_ALLOWED: Final = frozenset({"breakeven", "partial_close"})
DEFENSIVE: Final = frozenset({TradeState.WARNING_L2, TradeState.HEDGED})


# EngineMixin extends JournalMixin; OutboxMixin extends SettingsMixin.
class Store(TradesMixin, LeasesMixin, EngineMixin, OutboxMixin, SettingsMixin):
    """The shared trade database of every dtms process: trades, the lease, the journal.

    One connection per process, shared by its threads behind one lock; every write is BEGIN IMMEDIATE.
    Unusable in a child forked after it was opened (raises `UsedAfterForkError`): open a new one there.
    """

    def dtms_state(self, ticket: int) -> str | None:
        """The trade's state as other managers must read it: UNKNOWN when no fresh leader stands behind it.

        None when dtms does not know the ticket. UNKNOWN when there is no leader or its loop heartbeat is
        older than STALE_LEADER_S (spec/dtms-behaviour.md section 9).
        """
        trade = self.get_trade(ticket)
        if trade is None:
            return None
        if trade.state is TradeState.CLOSED:
            return trade.state.value
        lease = self.lease()
        fresh = (
            lease is not None
            and lease.state is LeaseState.HELD
            and lease.loop_beat_age_s is not None
            and lease.loop_beat_age_s <= STALE_LEADER_S
        )
        return trade.state.value if fresh else "UNKNOWN"

    def may_modify(self, ticket: int, manager: str, action: ManagerAction = "sl") -> bool:
        """May `manager` (another stop manager) change this position's SL/TP or close volume now?

        No while dtms defends it (WARNING_L2, HEDGED: defensive states override every owner); otherwise only
        the owner (or anyone for owner `none`). While dtms_state is UNKNOWN, only breakeven moves and partial
        profit-taking are allowed (the conservative fallback). Positions dtms does not manage: yes.
        """
        if action not in ("sl", "trail", "breakeven", "partial_close", "close"):
            raise InvalidArgumentError(
                f"action must be sl, trail, breakeven, partial_close or close, not {action!r}"
            )
        state = self.dtms_state(ticket)
        if state is None or state == TradeState.CLOSED.value:
            return True
        trade = self.get_trade(ticket)
        assert trade is not None  # noqa: S101  # dtms_state found it
        if state == "UNKNOWN":
            return action in UNKNOWN_ALLOWED and trade.owner in (manager, "none")
        if TradeState(state) in DEFENSIVE:
            return False
        return trade.owner in (manager, "none")

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


def open(  # dtms.open mirrors the builtin on purpose: it is the library's front door
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    clock: Clock | None = None,
    allow_network_fs: bool = False,
    readonly: bool = False,
) -> Store:
    """Open (creating it, owner-only, unless `create=False`) the dtms database at `path`.

    `readonly=True` opens an existing dtms database for reading only (what `dtms` read commands use): it never
    creates, migrates or switches the journal mode of a file, refuses a file that is not a dtms database
    (leaving it byte for byte unchanged), and also works on a read-only file system. Writes on it raise
    `StoreError`.

    Raises:
        StoreNotFoundError: `create=False` or `readonly=True`, and there is no database at `path`.
        NotADtmsDatabaseError: `readonly=True` and the file is empty, not SQLite, or has no dtms tables.
        SchemaVersionError: the database was written by a newer dtms (or, read-only, an older one).
        StoreError: the file is not a database, is on a network file system, or cannot be opened.
    """
    return Store(
        path,
        create=create,
        busy_timeout_s=busy_timeout_s,
        clock=clock,
        allow_network_fs=allow_network_fs,
        readonly=readonly,
    )


__all__ = ["STALE_LEADER_S", "Store", "TradeUpdate", "open"]
