"""The store on a real SQLite file: registry, journal, schema, files, fenced writes, fork guard, health."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest
from pydantic import ValidationError

import dtms
from dtms import (
    ActionStatus,
    Direction,
    InvalidArgumentError,
    LeaseLostError,
    LeaseState,
    SchemaVersionError,
    StoreBusyError,
    StoreError,
    StoreNotFoundError,
    TradeConflictError,
    TradeState,
    UsedAfterForkError,
)
from dtms.clock import ManualClock
from dtms.models import MAX_INT64, Holder
from dtms.store import STALE_LEADER_S
from dtms.store.schema import SCHEMA_VERSION
from tests.test_models import BAD_INPUTS, VALID, bad_case_id, names_field

OpenStore = Callable[..., dtms.Store]


def lead(store: dtms.Store, name: str = "leader", ttl_ms: int = 60_000) -> int:
    """Take the engine lease unconditionally (as the election would) and return the new epoch."""
    holder = Holder(
        name=name,
        host="test-host",
        pid=os.getpid(),
        proc_start=None,
        boot_id=store.clock.boot_id(),
        token=name,
    )
    granted = store.take_over(
        holder,
        ttl_ms=ttl_ms,
        now_boot_ms=store.clock.boot_ms(),
        lock_inode=None,
        decide=lambda row: "first" if row is None else "expired",
    )
    assert granted is not None
    return granted[0]


def raw(path: Path) -> apsw.Connection:
    """A plain connection that bypasses the Store, for checking what is really in the file."""
    return apsw.Connection(str(path))


def count(path: Path, table: str) -> int:
    """Rows in `table`, read through a fresh connection (so only committed rows count)."""
    conn = raw(path)
    try:
        (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0]  # noqa: S608  # test constant
    finally:
        conn.close()
    assert isinstance(n, int)
    return n


# -- registration ------------------------------------------------------------------------------------------


def test_register_returns_the_stored_trade(store: dtms.Store) -> None:
    """A new trade comes back HEALTHY with its inputs, the initial SL and R derived from the SL."""
    trade = store.register_trade(1001, "EURUSD", "BUY", 1.1, 0.1, sl=1.09, tp=1.12, magic=7, comment="bot A")
    assert (trade.ticket, trade.identifier, trade.symbol, trade.direction) == (
        1001,
        1001,
        "EURUSD",
        Direction.BUY,
    )
    assert (trade.entry_price, trade.volume, trade.initial_volume, trade.closed_volume) == (
        1.1,
        0.1,
        0.1,
        0.0,
    )
    assert (trade.sl, trade.initial_sl, trade.tp) == (1.09, 1.09, 1.12)
    assert trade.r == pytest.approx(0.01)
    assert trade.r_source == "sl"
    assert (trade.owner, trade.magic, trade.comment) == ("dtms", 7, "bot A")
    assert trade.state is TradeState.HEALTHY
    assert trade.is_open
    assert trade.registered_at.utcoffset() is not None


def test_register_without_sl_has_no_r(store: dtms.Store) -> None:
    """Without a stop loss R is unknown until the engine derives one."""
    trade = store.register_trade(5, "XAUUSD", "SELL", 2000.0, 1.0)
    assert (trade.sl, trade.r, trade.r_source) == (None, None, None)


def test_register_is_idempotent(store: dtms.Store, db_path: Path) -> None:
    """Registering the same ticket again returns the stored trade untouched and writes nothing."""
    first = store.register_trade(1001, "EURUSD", "BUY", 1.1, 0.1, sl=1.09)
    again = store.register_trade(1001, "EURUSD", "buy", 1.1, 0.1, sl=1.09)
    assert again == first
    assert count(db_path, "trades") == 1


def test_register_again_with_other_volume_or_levels_keeps_the_stored_values(store: dtms.Store) -> None:
    """After registration volume, SL and TP belong to the engine: a repeat does not overwrite them."""
    first = store.register_trade(1001, "EURUSD", "BUY", 1.1, 0.1, sl=1.09)
    again = store.register_trade(1001, "EURUSD", "BUY", 1.1, 0.5, sl=1.05, tp=1.2, comment="other")
    assert again == first


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"symbol": "GBPUSD"}, "symbol"),
        ({"direction": "SELL", "sl": None, "tp": None}, "direction"),
        ({"entry_price": 1.2, "sl": None, "tp": None}, "entry_price"),
        ({"identifier": 77}, "identifier"),
    ],
)
def test_register_conflict_raises_and_keeps_the_stored_trade(
    store: dtms.Store, db_path: Path, change: dict[str, Any], named: str
) -> None:
    """The same ticket with another symbol, direction, entry or identifier is a conflict; nothing changes."""
    first = store.register_trade(**VALID)
    with pytest.raises(TradeConflictError, match=named):
        store.register_trade(**{**VALID, **change})
    assert store.get_trade(VALID["ticket"]) == first
    assert count(db_path, "trades") == 1


def test_conflict_is_a_value_error_and_a_dtms_error(store: dtms.Store) -> None:
    """Callers may catch a conflict as ValueError or as DtmsError."""
    store.register_trade(**VALID)
    with pytest.raises(ValueError, match="registered already"):
        store.register_trade(**{**VALID, "symbol": "GBPUSD"})
    with pytest.raises(dtms.DtmsError):
        store.register_trade(**{**VALID, "symbol": "GBPUSD"})


@pytest.mark.parametrize("spelling", ["buy", "Buy", "BUY"])
def test_direction_is_stored_upper_case(store: dtms.Store, db_path: Path, spelling: str) -> None:
    """buy, Buy and BUY are all stored as BUY."""
    store.register_trade(1, "EURUSD", spelling, 1.1, 0.1)
    conn = raw(db_path)
    try:
        assert conn.execute("SELECT direction FROM trades").fetchall() == [("BUY",)]
    finally:
        conn.close()
    trade = store.get_trade(1)
    assert trade is not None
    assert trade.direction is Direction.BUY


@pytest.mark.parametrize("case", BAD_INPUTS, ids=bad_case_id)
def test_register_rejects_bad_input_and_writes_nothing(
    store: dtms.Store, db_path: Path, case: tuple[str, Any, dict[str, Any]]
) -> None:
    """Each bad field fails with an error naming it, and the trades table keeps its row count."""
    store.register_trade(**{**VALID, "ticket": 1})
    field, value, overrides = case
    with pytest.raises(ValidationError) as caught:
        store.register_trade(**{**VALID, **overrides, field: value})
    assert names_field(caught.value, field), caught.value.errors()
    assert count(db_path, "trades") == 1


def test_register_many_is_all_or_nothing(store: dtms.Store, db_path: Path) -> None:
    """A batch with one conflicting trade writes none of the batch."""
    from dtms.models import TradeRequest

    store.register_trade(**VALID)
    batch = [
        TradeRequest(**{**VALID, "ticket": 2}),
        TradeRequest(**{**VALID, "symbol": "GBPUSD"}),  # conflicts with the stored ticket 1001
    ]
    with pytest.raises(TradeConflictError):
        store.register_many(batch)
    assert count(db_path, "trades") == 1
    assert store.get_trade(2) is None


def test_identifier_is_the_key_and_ticket_finds_it(store: dtms.Store) -> None:
    """A trade registered with its position identifier is found by identifier and by ticket."""
    store.register_trade(**{**VALID, "ticket": 500, "identifier": 400})
    by_ticket = store.get_trade(500)
    by_identifier = store.get_trade(400)
    assert by_ticket is not None
    assert by_ticket == by_identifier
    assert (by_ticket.ticket, by_ticket.identifier) == (500, 400)


# -- reading -----------------------------------------------------------------------------------------------


def test_get_unknown_trade_is_none(store: dtms.Store) -> None:
    """An unknown ticket reads as None, not as an error."""
    assert store.get_trade(42) is None


@pytest.mark.parametrize("ticket", [0, -1, True, "1", 1.0, MAX_INT64 + 1])
def test_get_trade_rejects_bad_tickets(store: dtms.Store, ticket: Any) -> None:
    """A ticket that cannot exist is an InvalidArgumentError naming the ticket."""
    with pytest.raises(InvalidArgumentError, match="ticket"):
        store.get_trade(ticket)


def test_list_trades_by_identifier_and_state(store: dtms.Store) -> None:
    """Lists are ordered by identifier; closed trades show only when asked for."""
    for ticket in (30, 10, 20):
        store.register_trade(**{**VALID, "ticket": ticket})
    assert store.unregister_trade(20)
    assert [t.ticket for t in store.list_trades()] == [10, 30]
    assert [t.ticket for t in store.list_trades(include_closed=True)] == [10, 20, 30]
    assert [t.ticket for t in store.list_trades(state="closed")] == [20]
    assert [t.ticket for t in store.list_trades(state=TradeState.HEALTHY)] == [10, 30]
    assert store.count_trades() == 3
    assert store.count_trades(include_closed=False) == 2


def test_list_trades_rejects_unknown_state(store: dtms.Store) -> None:
    """An unknown state is an InvalidArgumentError listing the states."""
    with pytest.raises(InvalidArgumentError, match="HEALTHY"):
        store.list_trades(state="bogus")


def test_another_connection_sees_a_registration(store: dtms.Store, open_store: OpenStore) -> None:
    """A committed registration is visible to every other process's connection at once."""
    other = open_store()
    store.register_trade(**VALID)
    assert other.get_trade(VALID["ticket"]) == store.get_trade(VALID["ticket"])


# -- unregistering -----------------------------------------------------------------------------------------


def test_unregister_keeps_history(store: dtms.Store, db_path: Path) -> None:
    """Unregistering closes the trade but keeps its row and writes a transition."""
    store.register_trade(**VALID)
    assert store.unregister_trade(VALID["ticket"], reason="closed by hand") is True
    trade = store.get_trade(VALID["ticket"])
    assert trade is not None
    assert trade.state is TradeState.CLOSED
    assert not trade.is_open
    assert trade.close_reason == "closed by hand"
    assert trade.closed_at is not None
    assert not trade.armed
    assert count(db_path, "trades") == 1
    [transition] = store.transitions(VALID["ticket"])
    assert (transition.from_state, transition.to_state) == (TradeState.HEALTHY, TradeState.CLOSED)
    assert (transition.reason, transition.epoch, transition.status) == ("closed by hand", None, "applied")


def test_second_unregister_returns_false(store: dtms.Store, db_path: Path) -> None:
    """Unregistering twice changes nothing the second time."""
    store.register_trade(**VALID)
    assert store.unregister_trade(VALID["ticket"])
    assert store.unregister_trade(VALID["ticket"]) is False
    assert count(db_path, "transitions") == 1


def test_unregister_unknown_returns_false(store: dtms.Store) -> None:
    """Unregistering a ticket nobody registered is a no-op."""
    assert store.unregister_trade(99) is False


@pytest.mark.parametrize("reason", ["", "x" * 201, "line\nbreak", 5])
def test_unregister_rejects_bad_reason(store: dtms.Store, reason: Any) -> None:
    """A reason must be short printable text; a bad one changes nothing."""
    store.register_trade(**VALID)
    with pytest.raises(InvalidArgumentError, match="reason"):
        store.unregister_trade(VALID["ticket"], reason=reason)
    trade = store.get_trade(VALID["ticket"])
    assert trade is not None
    assert trade.is_open


def test_transitions_limit_and_unknown_ticket(store: dtms.Store) -> None:
    """transitions() of an unknown trade is empty; a bad limit is refused."""
    assert store.transitions(12345) == []
    store.register_trade(**VALID)
    with pytest.raises(InvalidArgumentError, match="limit"):
        store.transitions(VALID["ticket"], limit=0)


# -- the journal -------------------------------------------------------------------------------------------


def test_journal_intent_send_and_outcome(store: dtms.Store) -> None:
    """An action goes INTENT, SENT (one attempt, the request kept), DONE (result, retcode, completed_at)."""
    store.register_trade(**VALID)
    epoch = lead(store)
    intent = store.journal_intent(
        epoch,
        identifier=VALID["ticket"],
        action_type="tighten_sl",
        idempotency_key="k1",
        params={"sl": 1.095},
    )
    assert (intent.status, intent.epoch, intent.attempts, intent.params) == (
        ActionStatus.INTENT,
        epoch,
        0,
        {"sl": 1.095},
    )
    store.mark_sent(epoch, intent.action_id, {"action": 6, "sl": 1.095})
    [sent] = store.actions(ticket=VALID["ticket"])
    assert (sent.status, sent.attempts, sent.request) == (ActionStatus.SENT, 1, {"action": 6, "sl": 1.095})
    assert sent.sent_at is not None
    store.record_outcome(epoch, intent.action_id, ActionStatus.DONE, result={"order": 9}, retcode=10009)
    [done] = store.actions()
    assert (done.status, done.result, done.retcode) == (ActionStatus.DONE, {"order": 9}, 10009)
    assert done.completed_at is not None
    assert store.open_actions() == []


def test_journal_intent_is_idempotent_on_its_key(store: dtms.Store) -> None:
    """Journaling the same key twice returns the first row."""
    store.register_trade(**VALID)
    epoch = lead(store)
    first = store.journal_intent(
        epoch, identifier=VALID["ticket"], action_type="close_all", idempotency_key="k"
    )
    again = store.journal_intent(
        epoch, identifier=VALID["ticket"], action_type="close_all", idempotency_key="k"
    )
    assert again == first
    assert len(store.actions()) == 1


def test_actions_newest_first_limited_and_per_trade(store: dtms.Store) -> None:
    """actions() lists newest first, honours the limit and filters by ticket."""
    store.register_trade(**VALID)
    store.register_trade(**{**VALID, "ticket": 2})
    epoch = lead(store)
    for i in range(3):
        store.journal_intent(
            epoch, identifier=VALID["ticket"], action_type="tighten_sl", idempotency_key=f"a{i}"
        )
    store.journal_intent(epoch, identifier=2, action_type="close_all", idempotency_key="b")
    assert [a.idempotency_key for a in store.actions()] == ["b", "a2", "a1", "a0"]
    assert [a.idempotency_key for a in store.actions(limit=2)] == ["b", "a2"]
    assert [a.idempotency_key for a in store.actions(ticket=2)] == ["b"]
    assert [a.idempotency_key for a in store.open_actions()] == ["a0", "a1", "a2", "b"]
    with pytest.raises(InvalidArgumentError, match="limit"):
        store.actions(limit=0)


def test_mark_sent_of_a_missing_action_raises(store: dtms.Store) -> None:
    """Marking an action that is not in the journal is an error, not a silent no-op."""
    epoch = lead(store)
    with pytest.raises(InvalidArgumentError, match="no action"):
        store.mark_sent(epoch, 404, {})
    with pytest.raises(InvalidArgumentError, match="no action"):
        store.record_outcome(epoch, 404, ActionStatus.DONE)


def test_a_final_action_status_cannot_change(store: dtms.Store) -> None:
    """Once DONE, an action cannot become FAILED: the journal is evidence."""
    store.register_trade(**VALID)
    epoch = lead(store)
    action = store.journal_intent(epoch, identifier=VALID["ticket"], action_type="x", idempotency_key="k")
    store.record_outcome(epoch, action.action_id, ActionStatus.DONE)
    with pytest.raises(StoreError, match="final action status"):
        store.record_outcome(epoch, action.action_id, ActionStatus.FAILED)
    assert store.actions()[0].status is ActionStatus.DONE


@pytest.mark.parametrize("table", ["actions", "transitions"])
def test_the_journal_and_transition_log_are_append_only(store: dtms.Store, db_path: Path, table: str) -> None:
    """DELETE on actions or transitions is refused by a trigger, even from a raw connection."""
    store.register_trade(**VALID)
    epoch = lead(store)
    store.journal_intent(epoch, identifier=VALID["ticket"], action_type="x", idempotency_key="k")
    store.unregister_trade(VALID["ticket"])
    conn = raw(db_path)
    try:
        with pytest.raises(apsw.ConstraintError, match="append-only"):
            conn.execute(f"DELETE FROM {table}")  # noqa: S608  # test constant
    finally:
        conn.close()
    assert count(db_path, table) == 1


def test_journal_needs_a_known_trade(store: dtms.Store) -> None:
    """An intent for a trade that is not registered is refused (foreign key)."""
    epoch = lead(store)
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        store.journal_intent(epoch, identifier=999, action_type="x", idempotency_key="k")


# -- fenced writes -----------------------------------------------------------------------------------------


def test_fenced_write_commits_with_the_current_epoch(store: dtms.Store, db_path: Path) -> None:
    """Writes inside fenced(current epoch) commit."""
    epoch = lead(store)
    with store.fenced(epoch):
        store.register_trade(**VALID)
    assert count(db_path, "trades") == 1


def test_fenced_write_with_a_stale_epoch_raises_and_commits_nothing(
    store: dtms.Store, open_store: OpenStore, db_path: Path
) -> None:
    """After another process took over, the old epoch's block never runs and nothing is written."""
    old = lead(store, "old")
    new = lead(open_store(), "new")
    assert new == old + 1
    ran = False
    with pytest.raises(LeaseLostError) as caught, store.fenced(old):  # noqa: PT012  # the block is the point
        ran = True
        store.register_trade(**VALID)
    assert not ran
    assert (caught.value.epoch, caught.value.current) == (old, new)
    assert count(db_path, "trades") == 0


def test_stale_epoch_journal_write_commits_nothing(store: dtms.Store, db_path: Path) -> None:
    """journal_intent under a lost epoch raises LeaseLostError and leaves the journal empty."""
    store.register_trade(**VALID)
    old = lead(store, "old")
    lead(store, "new")
    with pytest.raises(LeaseLostError):
        store.journal_intent(old, identifier=VALID["ticket"], action_type="x", idempotency_key="k")
    assert count(db_path, "actions") == 0


def test_released_lease_fences_its_own_epoch(store: dtms.Store, db_path: Path) -> None:
    """After a graceful step-down the released epoch can no longer write."""
    epoch = lead(store)
    store.release_lease(epoch)
    with pytest.raises(LeaseLostError), store.fenced(epoch):
        store.register_trade(**VALID)
    assert count(db_path, "trades") == 0


def test_fenced_without_any_lease_raises(store: dtms.Store) -> None:
    """Before any leader there is no epoch to write under."""
    with pytest.raises(LeaseLostError) as caught, store.fenced(1):
        pass
    assert caught.value.current is None


def test_failure_inside_a_fenced_block_rolls_everything_back(store: dtms.Store, db_path: Path) -> None:
    """An exception inside the block undoes every write of the block."""
    epoch = lead(store)
    with pytest.raises(RuntimeError, match="boom"), store.fenced(epoch):  # noqa: PT012  # the block is the point
        store.register_trade(**VALID)
        raise RuntimeError("boom")
    assert count(db_path, "trades") == 0


def test_lease_lost_error_pickles() -> None:
    """LeaseLostError crosses process boundaries with its epochs intact."""
    import pickle

    err = pickle.loads(pickle.dumps(LeaseLostError(3, 4)))  # noqa: S301  # our own bytes
    assert (err.epoch, err.current) == (3, 4)


# -- the lease view and health -----------------------------------------------------------------------------


def test_lease_is_none_before_the_first_leader(store: dtms.Store) -> None:
    """No row, no lease."""
    assert store.lease() is None
    assert store.lease_row() is None


def test_lease_view_and_history(store: dtms.Store) -> None:
    """Each takeover raises the epoch by one and is recorded in the history with its reason."""
    lead(store, "a")
    lead(store, "b")
    info = store.lease()
    assert info is not None
    assert (info.epoch, info.state, info.transitions) == (2, LeaseState.HELD, 2)
    assert info.holder is not None
    assert (info.holder.name, info.holder.pid) == ("b", os.getpid())
    assert [(h["epoch"], h["holder_name"], h["reason"]) for h in store.lease_history()] == [
        (1, "a", "first"),
        (2, "b", "expired"),
    ]


def test_health_is_unhealthy_without_a_leader(store: dtms.Store) -> None:
    """No lease row means no engine runs: unhealthy, and the reason says so."""
    health = store.health()
    assert health.status == "unhealthy"
    assert not health.ok
    assert any("no leader" in r for r in health.reasons)
    assert health.checks["lease_state"] == "none"
    assert health.checks["integrity"] == "ok"


def test_health_is_healthy_with_a_fresh_leader(open_store: OpenStore, clock: ManualClock) -> None:
    """A held lease with a fresh loop heartbeat is healthy."""
    store = open_store(clock=clock)
    epoch = lead(store)
    health = store.health()
    assert health.ok, health.reasons
    assert (health.checks["leader"], health.checks["epoch"]) == ("leader", epoch)


def test_health_is_unhealthy_when_the_leader_loop_is_stale(open_store: OpenStore, clock: ManualClock) -> None:
    """A lease still held but a loop that stopped beating is unhealthy."""
    store = open_store(clock=clock)
    lead(store, ttl_ms=600_000)
    clock.advance(STALE_LEADER_S + 1)
    health = store.health()
    assert not health.ok
    assert any("loop" in r for r in health.reasons)


def test_health_is_unhealthy_when_the_lease_expired(open_store: OpenStore, clock: ManualClock) -> None:
    """A lease past its TTL reads as expired and unhealthy."""
    store = open_store(clock=clock)
    lead(store, ttl_ms=5_000)
    clock.advance(6)
    info = store.lease()
    assert info is not None
    assert info.state is LeaseState.EXPIRED
    assert not store.health().ok


def test_health_is_unhealthy_after_release(store: dtms.Store) -> None:
    """A released lease is no leader."""
    store.release_lease(lead(store))
    health = store.health()
    assert not health.ok
    assert health.checks["lease_state"] == "released"


# -- schema, pragmas and files -----------------------------------------------------------------------------


def test_fresh_database_has_the_current_schema_version(store: dtms.Store, db_path: Path) -> None:
    """A new database is stamped with SCHEMA_VERSION."""
    assert store.schema_version() == SCHEMA_VERSION
    conn = raw(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_newer_schema_raises(store: dtms.Store, db_path: Path) -> None:
    """A database written by a newer dtms is refused, not misread."""
    store.close()
    conn = raw(db_path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="newer"):
        dtms.open(db_path)


def test_reopening_keeps_data_and_schema(store: dtms.Store, db_path: Path, open_store: OpenStore) -> None:
    """Opening an existing database again migrates nothing and sees its trades."""
    trade = store.register_trade(**VALID)
    store.close()
    again = open_store(create=False)
    assert again.schema_version() == SCHEMA_VERSION
    assert again.get_trade(VALID["ticket"]) == trade


def test_wal_mode_and_full_sync(store: dtms.Store, db_path: Path) -> None:
    """The file is in WAL mode and the store's connection commits with synchronous=FULL (2)."""
    conn = raw(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    finally:
        conn.close()
    assert store._rows("PRAGMA synchronous") == [{"synchronous": 2}]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """The database, its -wal and -shm files are 0600 and created directories 0700, even with umask 0."""
    path = tmp_path / "new" / "dir" / "dtms.db"
    old = os.umask(0)
    try:
        store = dtms.open(path)
    finally:
        os.umask(old)
    try:
        store.register_trade(**VALID)
        for name in ("dtms.db", "dtms.db-wal", "dtms.db-shm"):
            assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    finally:
        store.close()


def test_read_only_open_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    """create=False on a missing path raises StoreNotFoundError and leaves no file or directory behind."""
    path = tmp_path / "missing" / "dtms.db"
    with pytest.raises(StoreNotFoundError, match="no dtms database"):
        dtms.open(path, create=False)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(FileNotFoundError):
        dtms.open(tmp_path / "also-missing.db", create=False)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    """Pointing dtms at some other file fails with a StoreError, and the file is untouched."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just text that is long enough to fill a header " * 4)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a healthy dtms database"):
        dtms.open(path)
    assert path.read_bytes() == before


def test_busy_database_raises_store_busy_error(
    store: dtms.Store, open_store: OpenStore, db_path: Path
) -> None:
    """A writer blocked past the busy timeout gets StoreBusyError (a TimeoutError), not apsw's error."""
    impatient = open_store(busy_timeout_s=0.05)
    blocker = raw(db_path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusyError) as caught:
            impatient.register_trade(**VALID)
        assert isinstance(caught.value, TimeoutError)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert impatient.register_trade(**VALID).ticket == VALID["ticket"]


def test_closed_store_refuses_calls_and_close_is_idempotent(store: dtms.Store) -> None:
    """After close() every call raises StoreError; closing again is harmless."""
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        store.get_trade(1)


def test_integrity_check_and_checkpoint(store: dtms.Store) -> None:
    """A healthy database checks ok, before and after a checkpoint."""
    store.register_trade(**VALID)
    store.checkpoint()
    assert store.integrity_check() == "ok"


def test_data_version_changes_when_another_connection_commits(
    store: dtms.Store, open_store: OpenStore
) -> None:
    """data_version() tells a follower that someone else wrote."""
    before = store.data_version()
    open_store().register_trade(**VALID)
    assert store.data_version() != before


# -- fork --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork semantics tested on Linux")
def test_store_used_after_fork_raises_in_the_child(store: dtms.Store) -> None:
    """A Store opened before fork() raises UsedAfterForkError in the child; the parent keeps working."""
    store.register_trade(**VALID)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 3
        try:
            store.get_trade(VALID["ticket"])
            code = 2
        except UsedAfterForkError:
            code = 0
        except BaseException:  # any other outcome is a distinct failure code
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "child: 1 = other error, 2 = the inherited Store worked"
    assert store.get_trade(VALID["ticket"]) is not None
