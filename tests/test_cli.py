"""The command line in-process with CliRunner: every command, its --json output and its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import dtms
from dtms.cli import cli
from dtms.models import Action, LeaseInfo, Trade, Transition
from tests.test_store import lead

READ_COMMANDS = [["trades"], ["trade", "1"], ["actions"], ["lease"], ["health"], ["unregister", "1"]]


@pytest.fixture
def run(db_path: Path) -> Any:
    """`run(*args)` invokes the CLI on the test database and returns click's Result."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli, ["--db", str(db_path), *args], env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def seeded(store: dtms.Store) -> dtms.Store:
    """Three trades (one closed), a leader, and two journal entries on trade 1001."""
    store.register_trade(1001, "EURUSD", "BUY", 1.1, 0.1, sl=1.09)
    store.register_trade(1002, "GBPUSD", "SELL", 1.3, 0.2)
    store.register_trade(1003, "XAUUSD", "BUY", 2000.0, 1.0)
    store.unregister_trade(1003, reason="manual close")
    epoch = lead(store)
    first = store.journal_intent(epoch, identifier=1001, action_type="move_sl_breakeven", idempotency_key="a")
    store.record_outcome(epoch, first.action_id, dtms.ActionStatus.DONE, retcode=10009)
    store.journal_intent(epoch, identifier=1001, action_type="tighten_sl", idempotency_key="b")
    return store


def as_utc(text: str) -> datetime:
    """An ISO-8601 time from the JSON output, which must carry UTC."""
    value = datetime.fromisoformat(text)
    assert value.utcoffset() == timedelta(0), text
    return value


# -- reading -------------------------------------------------------------------------------------------------


def test_trades_lists_open_trades_in_a_table(run: Any, seeded: dtms.Store) -> None:
    """The table shows the open trades and hides the closed one."""
    result = run("trades")
    assert result.exit_code == 0, result.output
    assert "1001" in result.stdout
    assert "GBPUSD" in result.stdout
    assert "1003" not in result.stdout
    assert "2 of 2 open trade(s), newest first" in result.stdout
    assert "more not shown" not in result.stdout


def test_trades_json_has_the_model_keys(run: Any, seeded: dtms.Store) -> None:
    """--json prints a list of trades, newest first, keyed by the Trade field names, with UTC times."""
    result = run("trades", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["ticket"] for r in rows] == [1002, 1001]
    assert all(set(r) == set(Trade.model_fields) for r in rows)
    assert rows[1]["direction"] == "BUY"
    as_utc(rows[0]["registered_at"])


@pytest.mark.parametrize(
    ("args", "tickets"),
    [
        (["--all"], [1003, 1002, 1001]),
        (["--state", "closed"], [1003]),
        (["--state", "HEALTHY"], [1002, 1001]),
    ],
)
def test_trades_filters(run: Any, seeded: dtms.Store, args: list[str], tickets: list[int]) -> None:
    """--all includes closed trades; --state (any case) filters by state; newest first."""
    result = run("trades", *args, "--json")
    assert result.exit_code == 0, result.output
    assert [r["ticket"] for r in json.loads(result.stdout)] == tickets


def test_trades_rejects_an_unknown_state(run: Any, seeded: dtms.Store) -> None:
    """A state that does not exist is a usage error."""
    assert run("trades", "--state", "OPEN").exit_code == 2


def test_trade_shows_the_trade_transitions_and_actions(run: Any, seeded: dtms.Store) -> None:
    """One trade's fields, its transitions and its journal in one view."""
    result = run("trade", "1001")
    assert result.exit_code == 0, result.output
    for text in ("Trade 1001", "EURUSD", "Transitions", "move_sl_breakeven", "tighten_sl"):
        assert text in result.stdout


def test_trade_json(run: Any, seeded: dtms.Store) -> None:
    """--json gives the trade, its transitions and its actions under stable keys."""
    data = json.loads(run("trade", "1003", "--json").stdout)
    assert set(data) == {"trade", "transitions", "actions"}
    assert set(data["trade"]) == set(Trade.model_fields)
    assert data["trade"]["state"] == "CLOSED"
    [transition] = data["transitions"]
    assert set(transition) == set(Transition.model_fields)
    assert (transition["to_state"], transition["reason"]) == ("CLOSED", "manual close")
    as_utc(transition["at"])
    actions = json.loads(run("trade", "1001", "--json", "--limit", "1").stdout)["actions"]
    assert [a["idempotency_key"] for a in actions] == ["b"]


def test_missing_trade_exits_1_with_a_message(run: Any, seeded: dtms.Store) -> None:
    """An unknown ticket is exit 1 and says which ticket."""
    result = run("trade", "4242")
    assert result.exit_code == 1
    assert "no trade with ticket 4242" in result.stderr


@pytest.mark.parametrize("ticket", ["0", "-3", "abc", str(2**63)])
def test_bad_ticket_is_a_usage_error(run: Any, seeded: dtms.Store, ticket: str) -> None:
    """A ticket that cannot exist is exit 2."""
    assert run("trade", "--", ticket).exit_code == 2


def test_actions_newest_first_with_limit_and_ticket(run: Any, seeded: dtms.Store) -> None:
    """actions lists the journal newest first, limited, optionally for one trade."""
    rows = json.loads(run("actions", "--json").stdout)
    assert [r["idempotency_key"] for r in rows] == ["b", "a"]
    assert all(set(r) == set(Action.model_fields) for r in rows)
    assert rows[1]["status"] == "DONE"
    assert rows[1]["retcode"] == 10009
    assert [r["idempotency_key"] for r in json.loads(run("actions", "--json", "--limit", "1").stdout)] == [
        "b"
    ]
    assert json.loads(run("actions", "--json", "--ticket", "1002").stdout) == []
    table = run("actions")
    assert table.exit_code == 0
    assert "move_sl_breakeven" in table.stdout


def test_actions_of_a_missing_trade_exit_1(run: Any, seeded: dtms.Store) -> None:
    """Asking for the journal of an unknown trade is exit 1, not an empty list."""
    assert run("actions", "--ticket", "4242").exit_code == 1


def test_actions_limit_must_be_positive(run: Any, seeded: dtms.Store) -> None:
    """--limit 0 is a usage error."""
    assert run("actions", "--limit", "0").exit_code == 2


# -- registering ---------------------------------------------------------------------------------------------


def test_register_creates_the_database_and_the_trade(run: Any, db_path: Path) -> None:
    """register works on a fresh path, stores upper-case BUY and prints the trade."""
    result = run(
        "register", "7", "EURUSD", "buy", "1.1", "0.1", "--sl", "1.09", "--magic", "5", "--comment", "hi"
    )
    assert result.exit_code == 0, result.output
    assert "Registered" in result.stdout
    with dtms.open(db_path, create=False) as store:
        trade = store.get_trade(7)
    assert trade is not None
    assert (trade.direction, trade.sl, trade.magic, trade.comment) == (dtms.Direction.BUY, 1.09, 5, "hi")


def test_register_json_and_idempotence(run: Any, store: dtms.Store) -> None:
    """--json prints the trade; registering it again returns the same trade."""
    first = json.loads(run("register", "7", "EURUSD", "SELL", "1.1", "0.1", "--json").stdout)
    again = json.loads(run("register", "7", "EURUSD", "sell", "1.1", "0.1", "--json").stdout)
    assert first == again
    assert set(first) == set(Trade.model_fields)
    assert store.count_trades() == 1


def test_register_conflict_exits_1(run: Any, store: dtms.Store) -> None:
    """Another symbol for a registered ticket is a conflict: exit 1 with the reason."""
    store.register_trade(7, "EURUSD", "BUY", 1.1, 0.1)
    result = run("register", "7", "GBPUSD", "BUY", "1.1", "0.1")
    assert result.exit_code == 1
    assert "registered already" in result.stderr


GOOD = ["7", "EURUSD", "BUY", "1.1", "0.1"]


@pytest.mark.parametrize(
    ("positionals", "options", "named"),
    [
        (["0", *GOOD[1:]], [], "TICKET"),
        (["x", *GOOD[1:]], [], "TICKET"),
        (["7", "EUR USD", *GOOD[2:]], [], "SYMBOL"),
        (["7", "EURUSD", "LONG", *GOOD[3:]], [], "DIRECTION"),
        ([*GOOD[:3], "nan", "0.1"], [], "ENTRY"),
        ([*GOOD[:3], "cheap", "0.1"], [], "ENTRY"),
        ([*GOOD[:4], "-1"], [], "VOLUME"),
        (GOOD, ["--tp", "inf"], "--tp"),
        (GOOD, ["--sl", "1.2"], "sl must be below"),
        (GOOD, ["--owner", "Bad Owner"], "--owner"),
        (GOOD, ["--magic", "-1"], "--magic"),
        (GOOD, ["--comment", "x" * 40], "--comment"),
        (GOOD, ["--identifier", "0"], "--identifier"),
    ],
)
def test_register_bad_input_is_exit_2_naming_the_argument(
    run: Any, store: dtms.Store, positionals: list[str], options: list[str], named: str
) -> None:
    """Invalid input exits 2, names the argument or option, and writes nothing."""
    result = run("register", *options, "--", *positionals)
    assert result.exit_code == 2, result.output
    assert named in result.stderr
    assert store.count_trades() == 0


# -- unregistering -------------------------------------------------------------------------------------------


def test_unregister_then_again(run: Any, seeded: dtms.Store) -> None:
    """unregister closes the trade (exit 0); a second time says nothing changed (exit 0)."""
    first = run("unregister", "1001", "--reason", "moved to another manager")
    assert first.exit_code == 0, first.output
    assert "unregistered" in first.stdout
    trade = seeded.get_trade(1001)
    assert trade is not None
    assert (trade.state, trade.close_reason) == (dtms.TradeState.CLOSED, "moved to another manager")
    again = run("unregister", "1001", "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout) == {"ticket": 1001, "unregistered": False, "state": "CLOSED"}


def test_unregister_unknown_trade_exits_1(run: Any, seeded: dtms.Store) -> None:
    """Unregistering a ticket that was never registered is exit 1."""
    result = run("unregister", "4242")
    assert result.exit_code == 1
    assert "no trade with ticket 4242" in result.stderr


def test_unregister_bad_reason_is_exit_2(run: Any, seeded: dtms.Store) -> None:
    """An empty reason is refused as bad usage, and the trade stays open."""
    assert run("unregister", "1001", "--reason", "").exit_code == 2
    trade = seeded.get_trade(1001)
    assert trade is not None
    assert trade.is_open


# -- lease and health ----------------------------------------------------------------------------------------


def test_lease_without_a_leader(run: Any, store: dtms.Store) -> None:
    """Before any election the lease reads 'none' with the same JSON keys as a real lease."""
    database_id = store.database_id  # made by the first writer that asks
    human = run("lease")
    assert human.exit_code == 0
    assert "none" in human.stdout
    data = json.loads(run("lease", "--json").stdout)
    assert set(data) == {*LeaseInfo.model_fields, "database"}
    assert (data["state"], data["epoch"], data["holder"]) == ("none", None, None)
    assert data["database"] == {"path": str(store.path), "id": database_id}
    as_utc(data["observed_at"])


def test_lease_with_a_leader(run: Any, store: dtms.Store) -> None:
    """The lease view names the holder, its epoch and a held state."""
    lead(store, "bot-1")
    lead(store, "bot-2")
    database_id = store.database_id
    data = json.loads(run("lease", "--json").stdout)
    assert set(data) == {*LeaseInfo.model_fields, "database"}
    assert (data["state"], data["epoch"], data["transitions"]) == ("held", 2, 2)
    assert data["holder"]["name"] == "bot-2"
    assert data["expires_in_s"] > 0
    as_utc(data["renewed_at"])
    human = run("lease")
    for text in ("bot-2", "held", "epoch", "expires in", "loop heartbeat age", "database id", database_id):
        assert text in human.stdout


def test_lease_watch_prints_one_json_line_per_refresh(run: Any, store: dtms.Store) -> None:
    """--watch --json streams one JSON document per line; --count stops it."""
    lead(store)
    result = run("lease", "--watch", "--interval", "0.1", "--count", "3", "--json")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(json.loads(line)["state"] == "held" for line in lines)


def test_lease_watch_tables(run: Any, store: dtms.Store) -> None:
    """--watch without --json prints the lease table on every refresh."""
    lead(store, "watched")
    result = run("lease", "--watch", "--interval", "0.1", "--count", "2")
    assert result.exit_code == 0
    assert result.stdout.count("watched") == 2


def test_health_exits_1_without_a_leader(run: Any, store: dtms.Store) -> None:
    """No leader: unhealthy, exit 1, and the reason is printed."""
    result = run("health")
    assert result.exit_code == 1
    assert "no leader" in result.stdout
    data = json.loads(run("health", "--json").stdout)
    assert (data["status"], data["ok"]) == ("unhealthy", False)
    as_utc(data["checked_at"])


def test_health_exits_0_with_a_fresh_leader(run: Any, store: dtms.Store) -> None:
    """A leader with a fresh lease and heartbeat: healthy, exit 0."""
    lead(store)
    result = run("health", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["status"], data["ok"], data["reasons"]) == ("healthy", True, [])


# -- the database path ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: a[0])
def test_reading_a_missing_database_exits_1_and_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    """Every read command on a path with no database exits 1, says so, and creates no file or directory."""
    missing = tmp_path / "nowhere" / "dtms.db"
    result = CliRunner().invoke(cli, ["--db", str(missing), *args])
    assert result.exit_code == 1
    assert "no dtms database" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_db_path_from_the_environment(seeded: dtms.Store, db_path: Path) -> None:
    """DTMS_DB names the database when --db is not given."""
    result = CliRunner().invoke(cli, ["trades", "--json"], env={"DTMS_DB": str(db_path)})
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2


def test_default_path_is_the_user_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --db or DTMS_DB the CLI reads dtms.db in the per-user data directory, not the working one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DTMS_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    result = CliRunner().invoke(cli, ["trades"])
    assert result.exit_code == 1
    assert str(tmp_path / "xdg" / "dtms" / "dtms.db") in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_file_that_is_not_a_database_exits_1(tmp_path: Path) -> None:
    """A path to some other file is a clear error, exit 1."""
    path = tmp_path / "notes.txt"
    path.write_text("hello " * 50)
    result = CliRunner().invoke(cli, ["--db", str(path), "trades"])
    assert result.exit_code == 1
    assert "is not a dtms database" in result.stderr


def test_unknown_command_is_exit_2() -> None:
    """click's usage errors keep exit code 2."""
    assert CliRunner().invoke(cli, ["frobnicate"]).exit_code == 2


def test_version() -> None:
    """--version prints the package version."""
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert dtms.__version__ in result.stdout


def test_python_dash_m_dtms_runs_the_cli(seeded: dtms.Store, db_path: Path) -> None:
    """`python -m dtms` is the same command line, in a real process."""
    out = subprocess.run(
        [sys.executable, "-m", "dtms", "--db", str(db_path), "trades", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert [t["ticket"] for t in json.loads(out.stdout)] == [1002, 1001]
