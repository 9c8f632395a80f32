"""Security properties: owner-only files, SQL only with bound parameters, no sockets, symlinks handled safely.

Symlinks, decided: the lock file is opened with O_NOFOLLOW, so a symlink planted at `<db>.lock` makes the
`OSLock` constructor (and so `Node(...)`) raise `OSError` without creating or touching the link's target.
A symlink *database* path is followed, as SQLite itself resolves it: data, `-wal` and `-shm` live beside
the target, which keeps its owner-only mode. The lock file is `<path as given>.lock`, beside the link, so two
processes spelling the path differently use two lock files: mutual exclusion still holds (the fast takeover
needs the holder's lock-file inode; otherwise the lease must expire), only failover is slower. A *dangling*
symlink (database or terminal file) is refused: SQLite would create its target 0644, readable by everyone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import apsw
import pydantic
import pytest
from click.testing import CliRunner

import dtms
from dtms.cli import cli
from dtms.oslock import OSLock
from tests.process_helpers import NEGATIVE_WAIT_S

#: Spawning an interpreter that imports dtms (and maybe starts a Node) on a loaded CI runner.
SUBPROCESS_DEADLINE_S = 60.0

#: Text that would damage the database if any string argument were formatted into SQL.
SQL_INPUTS: list[str] = [
    "'; DROP TABLE trades; --",
    "x'); DELETE FROM trades; --",
    "' OR '1'='1",
    '"; DROP TABLE lease; --',
    "1; UPDATE trades SET state = 'CLOSED'",
    "') UNION SELECT * FROM lease --",
    "Robert'); DROP TABLE actions;--",
    "%",
    "_%",
    "?1",
    ":ticket",
    "\\'; ATTACH DATABASE '/tmp/x' AS x; --",
]


def run_python(code: str, *args: str, umask: int | None = None) -> Any:
    """Run `code` in a fresh interpreter (optionally under `umask`); return the JSON it prints last."""
    prelude = "" if umask is None else f"import os\nos.umask({umask:#o})\n"
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_DEADLINE_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mode(path: Path) -> int:
    """Permission bits of `path` itself (not of a symlink's target)."""
    return os.lstat(path).st_mode & 0o777


def schema(path: Path) -> list[tuple[Any, ...]]:
    """Every table, index and trigger of the database, read through a separate connection."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name").fetchall()
    finally:
        conn.close()


# -- file modes ----------------------------------------------------------------------------------------------

OWNER_ONLY_NODE = """
    import json, os, sys
    import dtms

    db = os.path.join(sys.argv[1], "deep", "er", "dtms.db")
    node = dtms.Node(db, name="modes").start()
    try:
        assert node.wait_until_leader(30), "no leader within 30 s"
        node.store.register_trade(1, "EURUSD", "BUY", 1.1, 0.1)
        names = [db + suffix for suffix in ("", "-wal", "-shm", ".lock")]
        names += [os.path.dirname(db), os.path.dirname(os.path.dirname(db))]
        print(json.dumps({name: os.stat(name).st_mode & 0o777 for name in names}))
    finally:
        node.close()
"""


def test_database_wal_shm_lock_and_new_directories_are_owner_only_under_umask_0(tmp_path: Path) -> None:
    """With umask 0 a leading Node's database, -wal, -shm, .lock and created directories are owner-only."""
    modes = run_python(OWNER_ONLY_NODE, str(tmp_path), umask=0)
    assert len(modes) == 6
    assert {name: oct(m) for name, m in modes.items() if m & 0o077} == {}


OWNER_ONLY_SIM = """
    import json, os, sys
    import dtms.sim

    path = os.path.join(sys.argv[1], "terminal.db")
    term = dtms.sim.open(path)
    try:
        term.account_info()
        names = [path + s for s in ("", "-wal", "-shm", "-journal") if os.path.exists(path + s)]
        print(json.dumps({name: os.stat(name).st_mode & 0o777 for name in names}))
    finally:
        term.shutdown()
"""


def test_simulated_terminal_file_is_owner_only_under_umask_0(tmp_path: Path) -> None:
    """The simulated terminal's SQLite file (and its -wal/-shm) are owner-only with umask 0."""
    try:
        import dtms.sim  # noqa: F401  # another engineer's module: skip until it exists
    except ImportError as exc:
        pytest.skip(f"dtms.sim is not importable yet: {exc}")
    modes = run_python(OWNER_ONLY_SIM, str(tmp_path), umask=0)
    assert str(tmp_path / "terminal.db") in modes
    assert {name: oct(m) for name, m in modes.items() if m & 0o077} == {}


# -- SQL injection -------------------------------------------------------------------------------------------


def test_sql_looking_strings_are_stored_verbatim_and_change_nothing_else(store: dtms.Store) -> None:
    """Free-text arguments keep SQL-looking text verbatim, constrained ones refuse it; nothing else moves."""
    bystander = store.register_trade(1, "EURUSD", "BUY", 1.1, 0.1, sl=1.0, comment="bystander")
    tables = schema(store.path)
    for ticket, text in enumerate(SQL_INPUTS, start=100):
        trade = store.register_trade(ticket, "XAUUSD", "SELL", 2000.0, 1.0, comment=text[:31])
        assert trade.comment == text[:31]
        assert store.unregister_trade(ticket, reason=text)
        closed = store.get_trade(ticket)
        assert closed is not None
        assert closed.close_reason == text
        assert store.transitions(ticket)[-1].reason == text
        store.set_setting(text, {"v": text})
        assert store.setting(text) == {"v": text}
        for field in ("symbol", "direction", "owner"):
            args: dict[str, Any] = {"symbol": "EURUSD", "direction": "BUY", "owner": "dtms", field: text}
            with pytest.raises(pydantic.ValidationError):
                store.register_trade(ticket + 1000, entry_price=1.1, volume=0.1, **args)
        with pytest.raises(dtms.InvalidArgumentError):
            store.list_trades(state=text)
        with pytest.raises(dtms.InvalidArgumentError):
            store.get_trade(text)  # type: ignore[arg-type]
        with pytest.raises(dtms.InvalidArgumentError):
            store.unregister_trade(text)  # type: ignore[arg-type]
    # A prefix is matched literally, not as a LIKE pattern: '%' finds only keys that start with '%'.
    assert store.settings("%") == {k: {"v": k} for k in SQL_INPUTS if k.startswith("%")}
    assert store.settings("_") == {k: {"v": k} for k in SQL_INPUTS if k.startswith("_")}
    assert schema(store.path) == tables
    assert store.get_trade(1) == bystander
    assert store.count_trades() == 1 + len(SQL_INPUTS)
    assert store.integrity_check() == "ok"


def test_sql_looking_node_name_is_stored_verbatim_as_the_lease_holder(db_path: Path) -> None:
    """The process name in the lease row is data: a name that looks like SQL is kept as it is."""
    name = "x'); DROP TABLE lease; --"
    with dtms.Node(db_path, name=name) as node:
        assert node.wait_until_leader(30)
        lease = node.store.lease()
        assert lease is not None
        assert lease.holder is not None
        assert lease.holder.name == name
        assert [row[1] for row in schema(db_path) if row[0] == "table"].count("lease") == 1


def test_sql_looking_cli_arguments_are_stored_verbatim(store: dtms.Store) -> None:
    """`dtms register --comment` and `dtms halt --reason` keep SQL-looking text as data."""
    runner = CliRunner()
    text = "'; DROP TABLE trades; --"
    tables = schema(store.path)
    done = runner.invoke(
        cli, ["--db", str(store.path), "register", "7", "EURUSD", "BUY", "1.1", "0.1", "--comment", text]
    )
    assert done.exit_code == 0, done.output
    halted = runner.invoke(cli, ["--db", str(store.path), "halt", "--reason", text])
    assert halted.exit_code == 0, halted.output
    trade = store.get_trade(7)
    assert trade is not None
    assert trade.comment == text
    assert store.setting("trading.halted_reason") == text
    assert schema(store.path) == tables


# -- no network ----------------------------------------------------------------------------------------------

NO_NETWORK = """
    import json, socket, sys

    attempts = []

    def refuse(what):
        def call(*args, **kwargs):
            attempts.append(what)
            raise OSError(f"dtms must not use the network ({what})")
        return call

    class NoSocket(socket.socket):  # a subclass, so modules that subclass socket.socket still import
        def __init__(self, *args, **kwargs):
            refuse("socket.socket")()

    socket.socket = NoSocket
    for name in ("create_connection", "create_server", "socketpair", "getaddrinfo", "gethostbyname",
                 "getfqdn"):
        setattr(socket, name, refuse(name))

    import dtms

    db = sys.argv[1]
    with dtms.open(db) as store:
        store.register_trade(1, "EURUSD", "BUY", 1.1, 0.1)
        got = store.get_trade(1)
        listed = store.list_trades()
    node = dtms.Node(db, name="offline").start()
    try:
        led = node.wait_until_leader(30)
        leader_seen = node.store.lease().holder.name
    finally:
        node.close()
    print(json.dumps({"attempts": attempts, "got": got.ticket, "listed": len(listed), "led": led,
                      "leader": leader_seen}))
"""


def test_register_get_list_and_a_node_election_open_no_socket(tmp_path: Path) -> None:
    """With every socket constructor and DNS lookup patched to fail, the store and a Node still work."""
    out = run_python(NO_NETWORK, str(tmp_path / "dtms.db"))
    assert out == {"attempts": [], "got": 1, "listed": 1, "led": True, "leader": "offline"}


# -- symlinks ------------------------------------------------------------------------------------------------


def test_a_symlink_planted_at_the_lock_path_is_refused_and_its_target_is_not_created(tmp_path: Path) -> None:
    """O_NOFOLLOW: OSLock raises a clear OSError and never creates the file the link points at."""
    target = tmp_path / "elsewhere" / "victim"
    target.parent.mkdir()
    link = tmp_path / "dtms.db.lock"
    link.symlink_to(target)
    with pytest.raises(OSError, match="symlink"):
        OSLock(link)
    assert not target.exists()
    assert link.is_symlink()


def test_a_symlink_planted_at_the_lock_path_leaves_an_existing_target_untouched(tmp_path: Path) -> None:
    """An existing file behind the link keeps its bytes, mode and mtime."""
    target = tmp_path / "precious.txt"
    target.write_bytes(b"do not truncate me\n")
    target.chmod(0o644)
    before = os.stat(target)
    (tmp_path / "dtms.db.lock").symlink_to(target)
    with pytest.raises(OSError, match="symlink"):
        OSLock(tmp_path / "dtms.db.lock")
    after = os.stat(target)
    assert target.read_bytes() == b"do not truncate me\n"
    assert (after.st_mode, after.st_mtime_ns, after.st_size) == (
        before.st_mode,
        before.st_mtime_ns,
        before.st_size,
    )


def test_a_node_refuses_to_start_on_a_symlinked_lock_file(tmp_path: Path) -> None:
    """`Node(...)` surfaces the OSLock refusal before joining any election."""
    db = tmp_path / "dtms.db"
    dtms.open(db).close()
    target = tmp_path / "victim"
    (tmp_path / "dtms.db.lock").symlink_to(target)
    with pytest.raises(OSError, match="symlink"):
        dtms.Node(db, name="refused")
    assert not target.exists()


def test_a_symlinked_database_path_reaches_the_target_database(tmp_path: Path) -> None:
    """SQLite resolves the link: writes land in the target, whose -wal/-shm sit beside it, owner-only."""
    real = tmp_path / "real" / "dtms.db"
    dtms.open(real).close()
    link = tmp_path / "link.db"
    link.symlink_to(real)
    with dtms.open(link) as via_link:
        trade = via_link.register_trade(1, "EURUSD", "BUY", 1.1, 0.1)
        assert (real.parent / "dtms.db-wal").exists()
        assert not (tmp_path / "link.db-wal").exists()
        assert mode(real) == 0o600
        assert mode(real.parent / "dtms.db-wal") == 0o600
        with dtms.open(real) as direct:
            assert direct.get_trade(1) == trade
    assert link.is_symlink()


DANGLING = """
    import json, os, sys
    import dtms

    link, target = sys.argv[1], sys.argv[2]
    os.symlink(target, link)
    try:
        dtms.open(link).close()
    except dtms.StoreError as exc:
        print(json.dumps({"refused": str(exc), "target_exists": os.path.exists(target)}))
    else:
        print(json.dumps({"target_mode": os.stat(target).st_mode & 0o777}))
"""


def test_a_dangling_database_symlink_never_yields_a_world_readable_database(tmp_path: Path) -> None:
    """A link to a missing file is refused, or its target is created owner-only like any new database."""
    out = run_python(DANGLING, str(tmp_path / "link.db"), str(tmp_path / "target.db"), umask=0)
    if "refused" in out:
        assert out["target_exists"] is False
    else:
        assert out["target_mode"] & 0o077 == 0, oct(out["target_mode"])


def test_nodes_spelling_the_database_path_differently_still_elect_one_leader(tmp_path: Path) -> None:
    """Two lock files (beside the link and beside the target) do not make two leaders: the lease decides."""
    real = tmp_path / "dtms.db"
    dtms.open(real).close()
    link = tmp_path / "alias.db"
    link.symlink_to(real)
    first = dtms.Node(real, name="first").start()
    second = None
    try:
        assert first.wait_until_leader(30)
        second = dtms.Node(link, name="second").start()
        assert not second.wait_until_leader(NEGATIVE_WAIT_S)
        assert first.is_leader
        first.stop()  # a graceful handover releases the lease, so the other spelling takes over at once
        assert second.wait_until_leader(30)
    finally:
        first.close()
        if second is not None:
            second.close()


DANGLING_SIM = """
    import json, os, sys
    import dtms.sim

    link, target = sys.argv[1], sys.argv[2]
    os.symlink(target, link)
    try:
        dtms.sim.open(link).shutdown()
    except dtms.DtmsError as exc:
        print(json.dumps({"refused": str(exc), "target_exists": os.path.exists(target)}))
    else:
        print(json.dumps({"target_mode": os.stat(target).st_mode & 0o777}))
"""


def test_a_dangling_terminal_symlink_never_yields_a_world_readable_terminal_file(tmp_path: Path) -> None:
    """The simulated terminal's file gets the same protection as the database."""
    try:
        import dtms.sim  # noqa: F401  # another engineer's module: skip until it exists
    except ImportError as exc:
        pytest.skip(f"dtms.sim is not importable yet: {exc}")
    out = run_python(DANGLING_SIM, str(tmp_path / "link.db"), str(tmp_path / "target.db"), umask=0)
    if "refused" in out:
        assert out["target_exists"] is False
    else:
        assert out["target_mode"] & 0o077 == 0, oct(out["target_mode"])
