"""Reads never modify (issue 11, point 5): read commands open read-only, refuse foreign files untouched, and
work on a read-only file system."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import dtms
from dtms.cli import cli
from dtms.errors import NotADtmsDatabaseError, StoreError

READ_COMMANDS = [
    ["trades"],
    ["trades", "--all", "--json"],
    ["trade", "1"],
    ["actions"],
    ["lease"],
    ["health"],
    ["status"],
    ["may-modify", "1", "universal"],
]


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file in `directory` with its bytes, mtime and mode."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def foreign_database(path: Path, *, wal: bool) -> Path:
    """Another application's SQLite file, closed cleanly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def seeded_db(db_path: Path) -> Path:
    """A dtms database with one open trade, closed (so no -wal or -shm is left)."""
    with dtms.open(db_path) as store:
        store.register_trade(1, "EURUSD", "buy", 1.1, 0.1, sl=1.09)
    return db_path


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: "-".join(c))
def test_a_read_command_on_another_applications_database_refuses_it_and_changes_nothing(
    tmp_path: Path, wal: bool, command: list[str]
) -> None:
    """Exit 1 naming the file; its bytes, mtime and the directory's files are exactly as before."""
    db = foreign_database(tmp_path / "app" / "other_app.db", wal=wal)
    before = snapshot(db.parent)
    result = CliRunner().invoke(cli, ["--db", str(db), *command])
    assert result.exit_code == 1, result.output
    assert str(db) in result.output and "not a dtms database" in result.output
    assert snapshot(db.parent) == before


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: "-".join(c))
def test_a_read_command_on_an_empty_file_leaves_it_empty(tmp_path: Path, command: list[str]) -> None:
    """An empty file is not a dtms database: exit 1, still 0 bytes, no -wal or -shm beside it."""
    db = tmp_path / "empty.db"
    db.touch()
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["--db", str(db), *command])
    assert result.exit_code == 1, result.output
    assert "empty" in result.output
    assert snapshot(tmp_path) == before


def test_read_only_open_refuses_foreign_files_with_a_dtms_error(tmp_path: Path) -> None:
    """`dtms.open(path, readonly=True)`: NotADtmsDatabaseError naming the path, for every kind of foreign file."""
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 40)
    for path in (
        foreign_database(tmp_path / "a.db", wal=False),
        foreign_database(tmp_path / "b.db", wal=True),
        text,
    ):
        with pytest.raises(NotADtmsDatabaseError, match=str(path)):
            dtms.open(path, readonly=True)


def test_read_only_open_reads_and_refuses_writes(seeded_db: Path) -> None:
    """A read-only Store reads everything and raises StoreError on a write, leaving the database as it was."""
    with dtms.open(seeded_db, readonly=True) as store:
        assert [t.ticket for t in store.list_trades()] == [1]
        assert store.query("SELECT ticket FROM trades") == [{"ticket": 1}]
        with pytest.raises(StoreError, match="read-only"):
            store.register_trade(2, "EURUSD", "buy", 1.1, 0.1)
    with dtms.open(seeded_db) as store:
        assert store.count_trades() == 1


def test_read_commands_work_on_a_dtms_database(seeded_db: Path) -> None:
    """The read-only path still serves dtms databases, while another process has it open for writing."""
    with dtms.open(seeded_db) as writer:
        writer.register_trade(2, "EURUSD", "buy", 1.1, 0.1)
        result = CliRunner().invoke(cli, ["--db", str(seeded_db), "trades", "--json"])
        assert result.exit_code == 0, result.output
        assert sorted(t["ticket"] for t in json.loads(result.output)) == [1, 2]


def test_write_commands_still_write(seeded_db: Path) -> None:
    """unregister, halt and resume open for writing."""
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", str(seeded_db), "halt"]).exit_code == 0
    assert runner.invoke(cli, ["--db", str(seeded_db), "resume"]).exit_code == 0
    assert runner.invoke(cli, ["--db", str(seeded_db), "unregister", "1"]).exit_code == 0
    with dtms.open(seeded_db) as store:
        trade = store.get_trade(1)
        assert trade is not None and not trade.is_open


READ_ON_RO_MOUNT = textwrap.dedent(
    """
    set -e
    mount -t tmpfs -o size=16m tmpfs "$1"
    cp -p "$2"* "$1"/
    mount -o remount,ro "$1"
    if touch "$1"/probe 2>/dev/null; then echo "mount is writable"; exit 3; fi
    exec "$3" -m dtms --db "$1"/dtms.db trades --json
    """
)


@pytest.mark.skipif(sys.platform != "linux" or shutil.which("unshare") is None, reason="needs Linux unshare")
@pytest.mark.parametrize("live_files", [False, True], ids=["closed-cleanly", "with-wal-and-shm"])
def test_read_commands_work_on_a_read_only_file_system(
    tmp_path: Path, seeded_db: Path, live_files: bool
) -> None:
    """A database copied onto a tmpfs remounted read-only (a private mount namespace) can still be read."""
    if live_files:  # a reader leaves (empty) -wal and -shm beside the file: copy those too
        with dtms.open(seeded_db, readonly=True) as store:
            store.count_trades()
        assert Path(f"{seeded_db}-shm").exists()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount in a private namespace here: {probe.stderr.decode().strip()}")
    out = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            READ_ON_RO_MOUNT,
            "sh",
            str(mnt),
            str(seeded_db),
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert [t["ticket"] for t in json.loads(out.stdout)] == [1]
