"""The operating commands: run, status, halt/resume, rails reset, may-modify, config show, demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import dtms
from dtms.cli import cli
from dtms.models import Holder

#: A spawned `dtms run` needs an interpreter start and imports; generous for a loaded CI runner.
START_DEADLINE_S = 30.0


def invoke(db, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--db", str(db), *args])


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "dtms.db"
    dtms.open(path).close()
    return path


def test_halt_and_resume_flip_the_operator_switch(db):
    """`dtms halt` sets the switch the leader reads; `dtms resume` clears it."""
    assert invoke(db, "halt", "--reason", "news").exit_code == 0
    store = dtms.open(db)
    assert store.setting("trading.halted") is True
    assert store.setting("trading.halted_reason") == "news"
    assert json.loads(invoke(db, "status", "--json").output)["halted"] is True
    assert invoke(db, "resume").exit_code == 0
    assert store.setting("trading.halted") is False


def test_rails_reset_records_when(db):
    """`dtms rails reset` stores the reset time the consecutive-stops rail counts from."""
    assert invoke(db, "rails", "reset").exit_code == 0
    assert dtms.open(db).setting("rails.reset_at") is not None


def test_status_without_a_leader_says_monitoring_is_not_active(db):
    """Status reads the database alone; with no leader, monitoring is not active."""
    dtms.open(db).register_trade(5, "EURUSD", "buy", 1.1, 0.1)
    result = invoke(db, "status", "--json")
    data = json.loads(result.output)
    assert (result.exit_code, data["monitoring_active"], data["leader"]) == (0, False, None)
    assert data["trades_by_state"] == {"HEALTHY": 1}
    assert "NOT ACTIVE" in invoke(db, "status").output


def test_may_modify_answers_with_the_exit_code(db):
    """Yes (0) for the owner while dtms is not defending; no (1) for anyone else, and UNKNOWN without leader."""
    store = dtms.open(db)
    store.register_trade(5, "EURUSD", "buy", 1.1, 0.1, owner="universal")
    holder = Holder(name="x", host="h", pid=1, proc_start=None, boot_id=store.clock.boot_id(), token="t")
    store.take_over(holder, ttl_ms=60_000, now_boot_ms=store.clock.boot_ms(), lock_inode=None,
                    decide=lambda row: "first")  # fmt: skip
    assert invoke(db, "may-modify", "5", "universal").exit_code == 0
    assert invoke(db, "may-modify", "5", "intelligent_exit").exit_code == 1
    assert invoke(db, "may-modify", "999", "anyone").exit_code == 0  # not managed by dtms
    out = json.loads(invoke(db, "may-modify", "5", "universal", "--json").output)
    assert out == {"ticket": 5, "manager": "universal", "action": "sl", "allowed": True, "dtms_state": "HEALTHY"}


def test_config_show_prints_the_effective_config(tmp_path):
    """Defaults without a file; a file's values override them; an unknown key exits 1 naming it."""
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 0 and "[monitoring]" in result.output
    good = tmp_path / "dtms.toml"
    good.write_text("[broker]\nserver_time = 7200\n[monitoring]\ndeep_s = 600\n")
    data = json.loads(CliRunner().invoke(cli, ["config", "show", "--config", str(good), "--json"]).output)
    assert (data["broker"]["server_time"], data["monitoring"]["deep_s"]) == (7200, 600)
    bad = tmp_path / "bad.toml"
    bad.write_text("[broker]\nserver_time = 0\n[monitoring]\ndeep_seconds = 600\n")
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(bad)])
    assert result.exit_code == 1 and "deep_seconds" in result.output


def test_run_needs_a_terminal_file_for_the_sim(db):
    """`--broker sim` without `--sim` is a usage error."""
    assert invoke(db, "run", "--broker", "sim").exit_code == 2


def _run(db, sim, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dtms", "--db", str(db), "run", "--broker", "sim", "--sim", str(sim), "--name", name],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _wait_for_holder(db, name: str) -> dtms.LeaseInfo:
    deadline = time.monotonic() + START_DEADLINE_S
    store = dtms.open(db)
    while True:
        lease = store.lease()
        if lease is not None and lease.holder is not None and lease.holder.name == name and lease.state == "held":
            return lease
        assert time.monotonic() < deadline, f"{name} never led"
        time.sleep(0.05)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics")
def test_two_run_processes_elect_one_leader_and_sigterm_hands_over(tmp_path, db):
    """`dtms run` twice: one leads; SIGTERM on it hands over to the other at once (no TTL wait)."""
    sim = tmp_path / "terminal.db"
    one = _run(db, sim, "one")
    two = None
    try:
        first = _wait_for_holder(db, "one")
        two = _run(db, sim, "two")
        time.sleep(2)  # "two" has started and waits in the OS lock
        one.send_signal(signal.SIGTERM)
        assert one.wait(START_DEADLINE_S) == 0
        second = _wait_for_holder(db, "two")
        assert second.epoch == first.epoch + 1
        assert dtms.open(db).lease_history()[-1]["reason"] == "released"
        assert "stopped leading epoch 1 (stopped)" in (one.stdout.read() if one.stdout else "")
    finally:
        for proc in (one, two):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc is not None and proc.stdout:
                proc.stdout.close()


@pytest.mark.slow
def test_demo_shows_a_failover_without_duplicates():
    """`dtms demo` kills its leader, another takes over, and no action is executed twice."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "dtms", "demo", "--duration", "12"], capture_output=True,
                            text=True, timeout=120, env=env)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failovers: 1" in result.stdout
    assert "duplicates: none" in result.stdout


@pytest.fixture(scope="module")
def bars_csv(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Three days of the embedded synthetic EURUSD M1 bars as a plain OHLCV CSV."""
    from datetime import UTC, datetime

    from dtms.replay import synthetic

    path = tmp_path_factory.mktemp("bars") / "EURUSD_M1.csv"
    rows = ["time,open,high,low,close,volume"]
    for x in synthetic("EURUSD", days=3, seed=2):
        stamp = datetime.fromtimestamp(int(x["time"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(f"{stamp},{x['open']},{x['high']},{x['low']},{x['close']},{x['tick_volume']}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_replay_prints_both_columns_and_the_same_json_twice(bars_csv, tmp_path):
    """`dtms replay` reports managed beside baseline; two runs give identical JSON (files and stdout)."""
    runner = CliRunner()
    table = runner.invoke(cli, ["replay", str(bars_csv), "--every", "48", "--seed", "3"])
    assert table.exit_code == 0, table.output
    assert "managed" in table.output and "baseline" in table.output
    first = runner.invoke(cli, ["replay", str(bars_csv), "--every", "48", "--seed", "3", "--json",
                                "--out", str(tmp_path / "a.json")])  # fmt: skip
    second = runner.invoke(cli, ["replay", str(bars_csv), "--every", "48", "--seed", "3", "--json"])
    assert first.exit_code == second.exit_code == 0
    data = json.loads((tmp_path / "a.json").read_text())
    assert {"managed", "baseline"} <= set(data)
    assert (tmp_path / "a.json").read_text().strip() == second.stdout.strip()


def test_replay_refuses_a_file_that_is_not_bars(tmp_path):
    """Anything but bars exits 1 with a message, not a traceback."""
    bad = tmp_path / "x.csv"
    bad.write_text("hello,world\n1,2\n")
    result = CliRunner().invoke(cli, ["replay", str(bad), "--symbol", "EURUSD"])
    assert result.exit_code == 1 and "Traceback" not in result.output
