"""The files under a connection (issue 11, point 3): an acknowledged write is never in a WAL nobody else sees.

Real files and real processes. Case 1: another copy of SQLite in the same process (Python's `sqlite3`) closes
the database, believes it was the last connection (POSIX locks are per process), checkpoints and deletes
`-wal` and `-shm`. Case 2: someone deletes them while processes run.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dtms
from dtms.errors import InvalidArgumentError, StoreFilesChangedError

#: A child that only imports apsw and reads: well below any test timeout even on a loaded runner.
CHILD_DEADLINE_S = 60.0

READER = textwrap.dedent(
    """
    import sys, apsw
    conn = apsw.Connection(sys.argv[1], flags=apsw.SQLITE_OPEN_READONLY)
    print(" ".join(str(r[0]) for r in conn.execute("SELECT ticket FROM trades ORDER BY ticket")))
    """
)

WRITER = textwrap.dedent(
    """
    import sys, dtms
    from dtms.errors import StoreFilesChangedError
    store = dtms.open(sys.argv[1])
    for t in range(1, 11):
        store.register_trade(t, "EURUSD", "buy", 1.1, 0.1)
    store.checkpoint()
    print("ready", flush=True)
    sys.stdin.readline()
    refused = 0
    for t in range(11, 41):
        while True:
            try:
                store.register_trade(t, "EURUSD", "buy", 1.1, 0.1)
            except StoreFilesChangedError:
                refused += 1
                continue
            print("ack", t, flush=True)
            break
    print("done", refused, flush=True)
    sys.stdin.readline()
    store.close()
    """
)


def tickets_seen_by_another_process(db: Path) -> set[int]:
    """The tickets a fresh process reading the database sees."""
    out = subprocess.run(
        [sys.executable, "-c", READER, str(db)],
        capture_output=True,
        text=True,
        timeout=CHILD_DEADLINE_S,
        check=True,
    )
    return {int(t) for t in out.stdout.split()}


def close_with_stdlib_sqlite3(db: Path) -> None:
    """What `pandas.read_sql(..., sqlite3.connect(db))` does: open, read, close."""
    conn = sqlite3.connect(db)
    conn.execute("SELECT count(*) FROM trades").fetchall()
    conn.close()


def register(store: dtms.Store, ticket: int) -> None:
    store.register_trade(ticket, "EURUSD", "buy", 1.1, 0.1)


def test_stdlib_sqlite3_closing_the_database_deletes_its_wal_under_the_store(store: dtms.Store) -> None:
    """The reproduction's premise: the second SQLite copy unlinks -wal and -shm while the Store has them open."""
    register(store, 1)
    close_with_stdlib_sqlite3(store.path)
    assert not Path(f"{store.path}-wal").exists()
    assert not Path(f"{store.path}-shm").exists()


def test_a_write_after_another_sqlite_library_closed_the_database_is_refused_not_lost(
    store: dtms.Store,
) -> None:
    """Case 1: the next write raises StoreFilesChangedError; retried, it lands where every process sees it."""
    register(store, 1)
    close_with_stdlib_sqlite3(store.path)
    with pytest.raises(StoreFilesChangedError, match="-wal was deleted"):
        register(store, 2)
    register(store, 2)  # the connection was reopened
    register(store, 3)
    assert tickets_seen_by_another_process(store.path) == {1, 2, 3}


def test_every_acknowledged_write_survives_repeated_foreign_closes(store: dtms.Store) -> None:
    """Case 1 as measured in the issue (every write after a foreign close): none that returned is lost."""
    acknowledged: set[int] = set()
    for ticket in range(1, 61):
        if ticket % 3 == 0:
            close_with_stdlib_sqlite3(store.path)
        try:
            register(store, ticket)
        except StoreFilesChangedError:
            continue
        acknowledged.add(ticket)
    assert len(acknowledged) >= 40
    assert acknowledged <= tickets_seen_by_another_process(store.path)


def test_check_files_reports_the_change_and_the_next_call_uses_fresh_files(store: dtms.Store) -> None:
    """`check_files()` (for lease renewals) raises once, reopening; then writes work and it passes again."""
    register(store, 1)
    store.check_files()
    close_with_stdlib_sqlite3(store.path)
    with pytest.raises(StoreFilesChangedError):
        store.check_files()
    register(store, 2)
    store.check_files()
    assert tickets_seen_by_another_process(store.path) == {1, 2}


def test_files_deleted_inside_a_transaction_roll_it_back(store: dtms.Store) -> None:
    """Detected before COMMIT: nothing of the transaction is written anywhere."""
    register(store, 1)
    with pytest.raises(StoreFilesChangedError, match="rolled back"), store._write():
        store.set_setting("probe", 1)
        close_with_stdlib_sqlite3(store.path)
    assert store.setting("probe") is None
    assert tickets_seen_by_another_process(store.path) == {1}


def test_files_deleted_during_commit_make_the_write_unacknowledged(store: dtms.Store) -> None:
    """Checked after COMMIT too: a commit that went into an orphaned WAL raises instead of returning."""
    register(store, 1)
    store.checkpoint()  # unlinking below deletes un-checkpointed commits too (what case 2 is about)

    def foreign_close_during_commit() -> bool:
        store._conn.set_commit_hook(None)
        for suffix in ("-wal", "-shm"):
            os.unlink(f"{store.path}{suffix}")
        return False  # go on committing (into the WAL that is no longer at the path)

    store._conn.set_commit_hook(foreign_close_during_commit)
    with pytest.raises(StoreFilesChangedError, match="may be lost"):
        register(store, 2)
    assert 2 not in tickets_seen_by_another_process(store.path)
    register(store, 2)
    assert tickets_seen_by_another_process(store.path) == {1, 2}


def test_closing_a_store_whose_files_changed_leaves_the_new_files_alone(store: dtms.Store) -> None:
    """A stale connection must not checkpoint or delete the -wal/-shm others created since."""
    register(store, 1)
    close_with_stdlib_sqlite3(store.path)
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, dtms; s = dtms.open(sys.argv[1]); "
            "s.register_trade(7, 'EURUSD', 'buy', 1.1, 0.1); print('ok', flush=True); sys.stdin.readline()",
            str(store.path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "ok"
        store.close()
        assert Path(f"{store.path}-wal").exists()
        assert tickets_seen_by_another_process(store.path) == {1, 7}
    finally:
        other.communicate("\n", timeout=CHILD_DEADLINE_S)


def test_writes_after_wal_and_shm_are_deleted_under_a_running_process_are_never_lost(db_path: Path) -> None:
    """Case 2: a writer process keeps registering after -wal/-shm are unlinked; all it acknowledged is seen."""
    db_path.parent.mkdir(parents=True)
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        for suffix in ("-wal", "-shm"):
            os.unlink(f"{db_path}{suffix}")
        child.stdin.write("go\n")
        child.stdin.flush()
        acknowledged = set()
        for line in child.stdout:
            word, *rest = line.split()
            if word == "done":
                assert int(rest[0]) >= 1  # the first write after the unlink was refused
                break
            acknowledged.add(int(rest[0]))
        assert acknowledged == set(range(11, 41))
        # While the writer still runs (a close could hide the loss by checkpointing its orphaned WAL):
        assert tickets_seen_by_another_process(db_path) == set(range(1, 41))
    finally:
        child.communicate("\n", timeout=CHILD_DEADLINE_S)
    assert child.returncode == 0


def test_query_returns_rows_as_dicts(store: dtms.Store) -> None:
    """`Store.query` is the supported way to read from user code: rows as dicts, parameters bound."""
    register(store, 1)
    register(store, 2)
    rows = store.query("SELECT ticket, symbol, volume FROM trades WHERE ticket > ? ORDER BY ticket", (0,))
    assert rows == [
        {"ticket": 1, "symbol": "EURUSD", "volume": 0.1},
        {"ticket": 2, "symbol": "EURUSD", "volume": 0.1},
    ]
    assert store.query("SELECT ticket FROM trades WHERE ticket = :t", {"t": 2}) == [{"ticket": 2}]
    assert store.query("SELECT ticket FROM trades WHERE ticket = 99") == []
    assert store.query("PRAGMA table_info(trades)")[0]["name"] == "identifier"


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM trades",
        "UPDATE trades SET volume = 1",
        "INSERT INTO settings (key, value) VALUES ('x', '1')",
        "WITH x AS (SELECT 1) DELETE FROM trades",
        "CREATE TABLE t (x)",
        "DROP TABLE trades",
        "PRAGMA user_version = 99",
        "PRAGMA synchronous = OFF",
        "PRAGMA query_only = 0",
        "ATTACH ':memory:' AS other",
        "BEGIN",
        "SELECT 1; DELETE FROM trades",
        "VACUUM",
        "SELECT * FROM no_such_table",
    ],
)
def test_query_refuses_anything_but_one_read(store: dtms.Store, sql: str) -> None:
    """Writes, settings, attachments, transactions and extra statements are refused before they run."""
    register(store, 1)
    version = store.schema_version()
    with pytest.raises(InvalidArgumentError):
        store.query(sql)
    assert store.count_trades() == 1
    assert store.schema_version() == version
    assert store._rows("PRAGMA synchronous") == [{"synchronous": 2}]  # still FULL
    register(store, 2)  # the connection is unharmed
