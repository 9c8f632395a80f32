"""`dtms fence`: epochs with their stop proofs, rows awaiting one, and the operator's confirm."""

from __future__ import annotations

import json

from click.testing import CliRunner

import dtms
from dtms.cli import cli
from dtms.lease import StopProof
from dtms.models import ActionStatus, Holder


def _take(store: dtms.Store, i: int) -> None:
    holder = Holder(name=f"n{i}", host="elsewhere", pid=100 + i, proc_start=None, boot_id="b", token=f"t{i}")  # noqa: S106
    store.take_over(holder, ttl_ms=1000, now_boot_ms=0, lock_inode=None, decide=lambda r: "expired")


def _epochs(path, n: int) -> dtms.Store:  # type: ignore[no-untyped-def]
    store = dtms.open(path)
    for i in range(n):
        _take(store, i)
    return store


def _awaiting_row(store: dtms.Store, epoch: int) -> int:
    store.register_trade(7, "EURUSD", "buy", 1.1, 0.1, sl=1.09)
    action = store.journal_intent(epoch, identifier=7, action_type="partial_close", idempotency_key="k")
    store.mark_sent(epoch, action.action_id, {"op": "close", "identifier": 7, "at": "2026-01-05T08:00:00+00:00"})
    return action.action_id


def test_fence_lists_epochs_and_rows_awaiting_proof(tmp_path):
    path = tmp_path / "d.db"
    store = _epochs(path, 2)
    action_id = _awaiting_row(store, 2)
    _take(store, 2)
    store.record_outcome(3, action_id, ActionStatus.UNKNOWN, result={"awaiting_proof": True})
    store.record_stopped(1, StopProof.EXITED)
    result = CliRunner().invoke(cli, ["--db", str(path), "fence", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [e["epoch"] for e in data["epochs"]] == [3, 2, 1]
    assert [e["stopped_how"] for e in data["epochs"]] == [None, None, "exited"]
    assert [a["action_id"] for a in data["awaiting_proof"]] == [action_id]
    table = CliRunner().invoke(cli, ["--db", str(path), "fence"])
    assert table.exit_code == 0
    assert "Awaiting proof" in table.output
    status = CliRunner().invoke(cli, ["--db", str(path), "status", "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["awaiting_proof"] == [
        {"action_id": action_id, "identifier": 7, "action_type": "partial_close", "epoch": 2}]
    assert "AWAITING PROOF" in CliRunner().invoke(cli, ["--db", str(path), "status"]).output


def test_confirm_records_an_operator_proof_once_and_never_for_the_current_epoch(tmp_path):
    path = tmp_path / "d.db"
    store = _epochs(path, 3)
    run = CliRunner().invoke
    assert run(cli, ["--db", str(path), "fence", "confirm", "3", "--yes"]).exit_code == 2  # the live lease
    assert run(cli, ["--db", str(path), "fence", "confirm", "9", "--yes"]).exit_code == 2  # never granted
    assert run(cli, ["--db", str(path), "fence", "confirm", "2"], input="n\n").exit_code == 1  # not confirmed
    assert store.epoch_record(2).stopped_how is None  # type: ignore[union-attr]
    ok = run(cli, ["--db", str(path), "fence", "confirm", "2"], input="y\n")
    assert ok.exit_code == 0, ok.output
    assert store.epoch_record(2).stopped_how is StopProof.OPERATOR  # type: ignore[union-attr]
    again = run(cli, ["--db", str(path), "fence", "confirm", "2", "--yes"])
    assert again.exit_code == 0
    assert "already" in again.output
    assert [h["stopped_how"] for h in store.lease_history()] == [None, "operator", None]
