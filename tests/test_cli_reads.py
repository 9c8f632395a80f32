"""CLI reads at scale and the one-database-per-account defaults: trades paging, status, lease, foreign ack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import dtms
from dtms.cli import cli
from dtms.engine import foreign
from dtms.engine import rails as rl
from dtms.models import TradeRequest
from tests.engine_helpers import close_rigs, make_rig
from tests.test_foreign import OTHER, open_foreign


@pytest.fixture(autouse=True)
def _close_rigs() -> Iterator[None]:
    yield
    close_rigs()


@pytest.fixture
def many(store: dtms.Store) -> dtms.Store:
    """120 open trades registered one transaction each (distinct times), then 1-20 unregistered."""
    for i in range(1, 121):
        store.register_many(
            [TradeRequest(ticket=i, symbol="EURUSD", direction="BUY", entry_price=1.1, volume=0.1)]
        )
    for i in range(1, 21):
        store.unregister_trade(i)
    return store


def invoke(db: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_trades_shows_the_newest_50_open_and_says_how_many_more(many: dtms.Store, db_path: Path) -> None:
    code, out, _ = invoke(db_path, "trades")
    assert code == 0
    assert "50 of 100 open trade(s), newest first; 50 more not shown" in out
    assert "│    120 │" in out
    assert "│     70 │" not in out


def test_trades_json_is_one_array_newest_first_with_the_rest_on_stderr(
    many: dtms.Store, db_path: Path
) -> None:
    code, out, err = invoke(db_path, "trades", "--json", "--limit", "3")
    assert code == 0
    assert [t["ticket"] for t in json.loads(out)] == [120, 119, 118]
    assert "3 of 100 trades; 97 more not shown" in err
    code, out, err = invoke(db_path, "trades", "--all", "--json", "--limit", "0")
    assert [t["ticket"] for t in json.loads(out)] == list(range(120, 0, -1))
    assert err == ""
    code, out, _ = invoke(db_path, "trades", "--state", "WARNING_L2", "--json")
    assert json.loads(out) == []


def test_trades_since_an_iso_time(many: dtms.Store, db_path: Path) -> None:
    t = many.get_trade(115)
    assert t is not None
    since = t.registered_at.isoformat()
    code, out, _ = invoke(db_path, "trades", "--since", since, "--json")
    assert [r["ticket"] for r in json.loads(out)] == [120, 119, 118, 117, 116, 115]
    code, out, _ = invoke(db_path, "trades", "--since", "2999-01-01", "--json")
    assert json.loads(out) == []
    code, _, err = invoke(db_path, "trades", "--since", "yesterday")
    assert code == 2
    assert "ISO-8601" in err


def test_status_counts_trades_and_shows_the_database(many: dtms.Store, db_path: Path) -> None:
    database_id = many.database_id
    _, out, _ = invoke(db_path, "status", "--json")
    data = json.loads(out)
    assert (data["active_trades"], data["armed_trades"], data["trades_by_state"]) == (
        100,
        100,
        {"HEALTHY": 100},
    )
    assert data["database"] == {"path": str(db_path), "id": database_id}
    assert data["foreign_databases"] == []
    _code, out, _ = invoke(db_path, "status")
    assert str(db_path) in out
    assert str(database_id) in out


def test_bots_in_two_working_directories_share_one_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --db: a registration from one folder (CliRunner) is what a process in another folder reads."""
    env = {k: v for k, v in os.environ.items() if k != "DTMS_DB"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    monkeypatch.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
    monkeypatch.delenv("DTMS_DB", raising=False)
    for folder in ("bot-a", "bot-b"):
        (tmp_path / folder).mkdir()
    monkeypatch.chdir(tmp_path / "bot-a")
    result = CliRunner().invoke(
        cli, ["register", "501", "EURUSD", "buy", "1.1", "0.1"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    out = subprocess.run(
        [sys.executable, "-m", "dtms", "lease", "--json"],
        cwd=tmp_path / "bot-b",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout)["database"]["path"] == str(tmp_path / "xdg" / "dtms" / "dtms.db")
    out = subprocess.run(
        [sys.executable, "-m", "dtms", "trades", "--json"],
        cwd=tmp_path / "bot-b",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [t["ticket"] for t in json.loads(out.stdout)] == [501]
    assert not (tmp_path / "bot-a" / "data").exists()


def test_an_account_gets_its_own_default_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DTMS_DB", raising=False)
    default = dtms.cli.App(dtms.default_db_path(), explicit=False)
    assert default.account_db(7, "Demo") == tmp_path / "xdg" / "dtms" / "accounts" / "demo-7" / "dtms.db"
    assert dtms.cli.App(tmp_path / "mine.db").account_db(7, "Demo") == tmp_path / "mine.db"  # --db wins


def test_foreign_ack_end_to_end(tmp_path: Path) -> None:
    """Another database's hedge on the account: status shows it, the account is REDUCING; `dtms foreign ack`
    clears the rail at the leader's next tick."""
    rig = make_rig(tmp_path)
    rig.open_main()
    open_foreign(rig, OTHER)
    rig.tick()
    db = rig.store.path
    code, out, _ = invoke(db, "status", "--json")
    assert json.loads(out)["foreign_databases"] == [OTHER]
    assert foreign.RAIL in json.loads(out)["engine"]["tripped"]["account"]
    assert "FOREIGN DATABASE" in invoke(db, "status")[1]
    code, out, _ = invoke(db, "foreign", "ack", "--json")
    assert code == 0
    assert json.loads(out)["acknowledged"] == [OTHER]
    rig.advance(30)
    rig.tick()
    assert rig.engine.guard.account_state is rl.TradingState.ACTIVE
    assert json.loads(invoke(db, "status", "--json")[1])["foreign_databases"] == []
    assert "nothing to acknowledge" not in invoke(db, "foreign", "ack")[1]
