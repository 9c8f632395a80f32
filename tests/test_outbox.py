"""The outbox (issue 14 §4, spec §12): events commit with the change they report, the leader's dispatcher
delivers them at least once with a stable id, retries with backoff, keeps dead letters; the webhook and
Telegram notifiers against a real HTTP server on 127.0.0.1; a leader SIGKILLed between commit and delivery."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import dtms
from dtms.config import Config
from dtms.errors import LeaseLostError, NotifyError, StoreError
from dtms.events import Event
from dtms.models import ActionStatus, Holder, OutboxStatus
from dtms.notifiers import Telegram, Webhook, configured_hooks
from dtms.outbox import Dispatcher, Outbox, backoff
from tests.engine_helpers import Rig, close_rigs, evaluation, make_rig
from tests.process_helpers import SPAWN_DEADLINE_S, reaped, spawn

T0 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _close_rigs() -> Iterator[None]:
    yield
    close_rigs()


def _until(predicate: Any, deadline_s: float, reason: str) -> None:
    """Poll `predicate` until it holds; fail after `deadline_s` (a bound on a hang, not a timing claim)."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s} s waiting for: {reason}")
        time.sleep(0.02)


def _lead(store: dtms.Store, name: str = "test") -> int:
    holder = Holder(name=name, host="h", pid=1, proc_start=None, boot_id=None, token=f"t-{name}")
    taken = store.take_over(holder, ttl_ms=10**9, now_boot_ms=0, lock_inode=None, decide=lambda row: "first")
    assert taken is not None
    return taken[0]


def _event(kind: Any = "alert", **fields: Any) -> Event:
    return Event(kind, T0, {"kind": "data_stale", **fields})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[dtms.Store]:
    s = dtms.open(tmp_path / "dtms.db")
    yield s
    s.close()


# --- the store: events commit with their change -----------------------------------------------------------


def test_an_event_commits_with_the_change_it_reports_or_not_at_all(store: dtms.Store) -> None:
    epoch = _lead(store)
    with pytest.raises(RuntimeError), store.fenced(epoch):
        store.set_setting("x", 1, epoch=epoch)
        store.add_events(epoch, [_event()])
        raise RuntimeError("the change fails after its event was written")
    assert store.setting("x") is None
    assert store.outbox_entries() == []
    with store.fenced(epoch):
        store.set_setting("x", 2, epoch=epoch)
        [seq] = store.add_events(epoch, [_event(symbol="EURUSD", at=T0, nan=float("nan"))])
    [entry] = store.outbox_entries()
    assert store.setting("x") == 2
    assert entry.seq == seq
    assert entry.event_id == f"{store.database_id}-{seq}"
    assert entry.status is OutboxStatus.PENDING
    assert entry.epoch == epoch
    assert entry.fields == {"kind": "data_stale", "symbol": "EURUSD", "at": T0.isoformat(), "nan": None}


def test_a_deposed_epoch_writes_no_event(store: dtms.Store) -> None:
    old = _lead(store, "a")
    new = _lead(store, "b")
    assert new > old
    with pytest.raises(LeaseLostError):
        store.add_events(old, [_event()])
    assert store.outbox_entries() == []
    Outbox(store).emit(Event("engine_stopped", T0, {}, epoch=old))  # logged, not raised, not written
    assert store.outbox_entries() == []


# --- the engine: every change's event is in the outbox, in the change's transaction ------------------------


def _outboxed(tmp_path: Path) -> Rig:
    rig = make_rig(tmp_path)
    sink = Outbox(rig.store)
    rig.engine.notifier = sink
    rig.engine.transitions.notifier = sink
    return rig


def test_every_transition_and_outcome_has_its_event_in_the_outbox(tmp_path: Path) -> None:
    rig = _outboxed(tmp_path)
    trade = rig.open_main(sl_pips=30)
    rig.put_state(trade.identifier, dtms.TradeState.HEALTHY)
    _, t1 = rig.step(trade.identifier, evaluation(-3))  # T1: tighten
    _, t3 = rig.step(trade.identifier, evaluation(-5))  # T3: partial close + breakeven
    entries = list(reversed(rig.store.outbox_entries(limit=1000)))
    transitions = [
        (e.fields["transition_id"], e.fields["status"]) for e in entries if e.kind == "state_transition"
    ]
    assert transitions == [(t1, "pending"), (t1, "applied"), (t3, "pending"), (t3, "applied")]
    resolved = [
        a for a in rig.journal(trade.identifier) if a.status in (ActionStatus.DONE, ActionStatus.SKIPPED)
    ]
    assert len(resolved) == 3
    actions = [(e.fields["action_type"], e.fields["status"]) for e in entries if e.kind == "action"]
    assert actions == [(a.action_type, a.status.value) for a in resolved]
    assert {e.epoch for e in entries} == {rig.epoch}


def test_an_event_that_cannot_be_written_rolls_its_transition_back(tmp_path: Path, monkeypatch: Any) -> None:
    rig = _outboxed(tmp_path)
    trade = rig.open_main(sl_pips=30)
    rig.put_state(trade.identifier, dtms.TradeState.HEALTHY)
    sends = len(rig.sends())

    def broken(epoch: int, events: Any) -> list[int]:
        raise StoreError("disk full")

    monkeypatch.setattr(rig.store, "add_events", broken)
    with pytest.raises(StoreError):
        rig.step(trade.identifier, evaluation(-3))
    assert rig.store.transitions(trade.identifier) == []  # the transition and its intent went with the event
    assert rig.journal(trade.identifier) == []
    assert len(rig.sends()) == sends  # nothing was sent
    monkeypatch.undo()
    _, tid = rig.step(trade.identifier, evaluation(-3))
    assert rig.trade(trade.identifier).state is dtms.TradeState.WARNING_L1
    assert any(e.fields.get("transition_id") == tid for e in rig.store.outbox_entries())


def test_a_fast_check_event_commits_with_the_trade_update(tmp_path: Path) -> None:
    """A partial close made by someone else: the trade's new volume and its external_change event, one commit."""
    rig = _outboxed(tmp_path)
    trade = rig.open_main(volume=1.0)
    out = rig.as_bot(lambda: rig.broker.close(trade.identifier, 0.4))
    assert out.is_done, out
    rig.advance(30)
    rig.tick()
    assert rig.trade(trade.identifier).volume == pytest.approx(0.6)
    [change] = [e for e in rig.store.outbox_entries() if e.kind == "external_change"]
    assert change.fields["kind"] == "partial_close"
    assert change.fields["volume"] == pytest.approx(0.6)


# --- the dispatcher ------------------------------------------------------------------------------------------


class Collect:
    def __init__(self, name: str, fail: int = 0) -> None:
        self.name, self.fail, self.seen = name, fail, []  # type: list[Event]  # noqa: PYI026

    def __call__(self, event: Event) -> None:
        self.seen.append(event)
        if len(self.seen) <= self.fail:
            raise ConnectionError(f"{self.name} down")


def test_delivery_calls_every_hook_once_with_the_stable_id(store: dtms.Store) -> None:
    epoch = _lead(store)
    [seq] = store.add_events(epoch, [_event()])
    a, b = Collect("a"), Collect("b")
    assert Dispatcher(store, [a, b], Config().notify).dispatch(epoch, T0) == 1
    assert [e.event_id for e in a.seen] == [e.event_id for e in b.seen] == [f"{store.database_id}-{seq}"]
    assert a.seen[0].epoch == epoch and a.seen[0].fields["kind"] == "data_stale"
    [entry] = store.outbox_entries()
    assert (entry.status, entry.delivered, entry.attempts) == (OutboxStatus.DELIVERED, ("a", "b"), 1)
    assert Dispatcher(store, [a, b], Config().notify).dispatch(epoch, T0) == 0  # nothing twice


def test_a_failing_hook_is_retried_with_backoff_and_only_it(store: dtms.Store) -> None:
    epoch = _lead(store)
    store.add_events(epoch, [_event()])
    good, flaky = Collect("good"), Collect("flaky", fail=1)
    config = Config().notify
    dispatcher = Dispatcher(store, [good, flaky], config)
    dispatcher.dispatch(epoch, T0)
    [entry] = store.outbox_entries()
    assert (entry.status, entry.delivered, entry.attempts) == (OutboxStatus.PENDING, ("good",), 1)
    assert entry.next_at == T0 + backoff(1, config) == T0 + timedelta(seconds=config.backoff_s)
    assert "flaky down" in (entry.error or "")
    assert dispatcher.dispatch(epoch, T0 + timedelta(seconds=config.backoff_s / 2)) == 0  # not due yet
    assert dispatcher.dispatch(epoch, T0 + timedelta(seconds=config.backoff_s)) == 1
    assert (len(good.seen), len(flaky.seen)) == (1, 2)  # the hook that had it is not called again
    [entry] = store.outbox_entries()
    assert (entry.status, entry.delivered) == (OutboxStatus.DELIVERED, ("good", "flaky"))


def test_backoff_doubles_up_to_its_cap() -> None:
    config = Config.from_mapping({"notify": {"backoff_s": 2.0, "backoff_max_s": 5.0}}).notify
    assert [backoff(n, config).total_seconds() for n in (1, 2, 3, 4)] == [2.0, 4.0, 5.0, 5.0]


def test_after_the_last_attempt_the_event_is_a_dead_letter_until_requeued(store: dtms.Store) -> None:
    epoch = _lead(store)
    store.add_events(epoch, [_event()])
    config = Config.from_mapping({"notify": {"hook_attempts": 2, "backoff_s": 1.0}}).notify
    down = Collect("down", fail=10)
    dispatcher = Dispatcher(store, [down], config)
    dispatcher.dispatch(epoch, T0)
    dispatcher.dispatch(epoch, T0 + timedelta(seconds=1))
    assert dispatcher.dispatch(epoch, T0 + timedelta(hours=1)) == 0
    assert len(down.seen) == 2
    summary = store.outbox_summary()
    assert (summary.pending, summary.dead, summary.delivered) == (0, 1, 0)
    assert "down down" in (summary.last_error or "")
    [dead] = store.outbox_entries(OutboxStatus.DEAD)
    assert dead.attempts == 2
    assert store.requeue_dead() == 1
    down.fail = 0
    assert dispatcher.dispatch(epoch, T0 + timedelta(hours=1)) == 1
    assert store.outbox_summary().delivered == 1


def test_a_deposed_dispatcher_records_nothing(store: dtms.Store) -> None:
    epoch = _lead(store, "a")
    store.add_events(epoch, [_event()])
    _lead(store, "b")
    hook = Collect("x")
    with pytest.raises(LeaseLostError):
        Dispatcher(store, [hook], Config().notify).dispatch(epoch, T0)
    [entry] = store.outbox_entries()
    assert entry.status is OutboxStatus.PENDING  # the next leader delivers it (again, with the same id)
    assert len(hook.seen) == 1


# --- the notifiers against a real HTTP server ---------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST; `status`/`answer` set the reply, `hold` stalls it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status, self.answer = 200, b'{"ok": true}'
        self.hold = threading.Event()
        self.hold.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
                receiver.hold.wait(30)
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_the_webhook_posts_the_event_with_its_id(receiver: Receiver) -> None:
    event = Event("state_transition", T0, {"identifier": 7, "symbol": "EURUSD", "from": "HEALTHY",
                                           "to": "WARNING_L1", "score": -3.0}, epoch=4, event_id="abcd-12")  # fmt: skip
    Webhook(f"{receiver.url}/hook").__call__(event)
    [req] = receiver.requests
    assert req["path"] == "/hook"
    assert req["headers"]["Idempotency-Key"] == "abcd-12"
    assert req["body"]["event_id"] == "abcd-12"
    assert req["body"]["kind"] == "state_transition"
    assert req["body"]["at"] == "2026-01-06T10:00:00Z"
    assert req["body"]["epoch"] == 4
    assert req["body"]["fields"]["to"] == "WARNING_L1"
    assert "EURUSD" in req["body"]["text"]


def test_the_webhook_raises_on_an_error_answer_and_on_no_server(receiver: Receiver) -> None:
    receiver.status = 503
    with pytest.raises(NotifyError, match="HTTP 503"):
        Webhook(receiver.url)(_event())
    port = receiver.server.server_address[1]
    receiver.close()
    with pytest.raises(NotifyError, match="webhook"):
        Webhook(f"http://127.0.0.1:{port}", timeout_s=1)(_event())
    with pytest.raises(dtms.ConfigError):
        Webhook("ftp://example.invalid")


def test_telegram_sends_the_text_and_never_shows_its_token(receiver: Receiver) -> None:
    token = "123:SECRET"  # noqa: S105
    notifier = Telegram(token, "-100", api_url=receiver.url)
    notifier(_event("alert"))
    [req] = receiver.requests
    assert req["path"] == f"/bot{token}/sendMessage"
    assert req["body"]["chat_id"] == "-100"
    assert "data_stale" in req["body"]["text"]
    receiver.answer = b'{"ok": false, "description": "chat not found"}'
    with pytest.raises(NotifyError, match="chat not found") as caught:
        notifier(_event())
    receiver.status = 401
    with pytest.raises(NotifyError) as caught_http:
        notifier(_event())
    for text in (str(caught.value), str(caught_http.value), repr(notifier)):
        assert "SECRET" not in text


def test_the_notify_section_configures_both_notifiers(receiver: Receiver) -> None:
    config = Config.from_mapping({"notify": {"webhook": {"url": receiver.url},
                                             "telegram": {"token": "1:x", "chat_id": "5", "api_url": receiver.url}}})  # fmt: skip
    hooks = configured_hooks(config.notify)
    assert [type(h).__name__ for h in hooks] == ["Webhook", "Telegram"]
    assert "1:x" not in config.model_dump_json()
    assert configured_hooks(Config().notify) == []
    with pytest.raises(dtms.ConfigError):
        Config.from_mapping({"notify": {"telegram": {"chat_id": "5"}}})
    with pytest.raises(dtms.ConfigError):
        Config.from_mapping({"notify": {"webhook": {"url": "localhost:9"}}})


# --- a Node: events delivered from the outbox, and across a leader's SIGKILL --------------------------------


def _config(url: str) -> Config:
    return Config.from_mapping({"broker": {"server_time": 0}, "notify": {"webhook": {"url": url},
                                "backoff_s": 0.2, "hook_attempts": 10}})  # fmt: skip


def _sim_node(db: str, url: str, name: str) -> dtms.Node:
    import dtms.sim
    from dtms.broker import MT5Broker

    term = dtms.sim.open(None, clock="manual", start=T0)
    return dtms.Node(db, MT5Broker(term), name=name, config=_config(url), now=term.now, hooks=[])


def test_a_leading_node_delivers_its_engine_events_through_the_outbox(
    tmp_path: Path, receiver: Receiver
) -> None:
    with _sim_node(str(tmp_path / "dtms.db"), receiver.url, "solo") as node:
        assert node.wait_until_leader(10)
        _until(lambda: receiver.requests, 10, "engine_started delivered")
        [started] = [r["body"] for r in receiver.requests if r["body"]["kind"] == "engine_started"]
        assert started["epoch"] == node.epoch
        _until(lambda: node.store.outbox_summary().delivered >= 1, 5, "recorded as delivered")
        [entry] = node.store.outbox_entries(OutboxStatus.DELIVERED)
        assert entry.event_id == started["event_id"]


def child_leader(db: str, url: str, ready: Any) -> None:
    node = _sim_node(db, url, "doomed").start()
    if node.wait_until_leader(SPAWN_DEADLINE_S):
        ready.set()
    time.sleep(600)


def test_a_leader_killed_between_commit_and_delivery_loses_no_event(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The receiver takes the first POST and never answers; the leader is SIGKILLed; the next leader delivers
    the same event again, with the same id. Every event in the outbox reaches the receiver."""
    import multiprocessing

    db = str(tmp_path / "dtms.db")
    receiver.hold.clear()  # the doomed leader's delivery hangs after the receiver has the request
    ready = multiprocessing.get_context("spawn").Event()
    proc = spawn(child_leader, db, receiver.url, ready, name="doomed")
    with reaped(proc):
        proc.start()
        assert ready.wait(SPAWN_DEADLINE_S), "the child never led"
        _until(lambda: receiver.requests, 10, "the doomed leader's first delivery")
        first = receiver.requests[0]["body"]
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)
    receiver.hold.set()
    with dtms.Node(db, name="next", config=_config(receiver.url), hooks=[]) as node:  # leads, no broker
        assert node.wait_until_leader(20)
        _until(lambda: node.store.outbox_summary().pending == 0, 20, "the outbox drained")
        entries = node.store.outbox_entries(limit=1000)
    received = [r["body"]["event_id"] for r in receiver.requests]
    assert received.count(first["event_id"]) >= 2  # at least once, same id: a receiver drops the repeat
    assert {e.event_id for e in entries} <= set(received)
    assert all(e.status is OutboxStatus.DELIVERED for e in entries)


# --- the CLI -------------------------------------------------------------------------------------------------


def test_status_shows_dead_letters_and_outbox_retry_requeues_them(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dtms.cli import cli

    db = tmp_path / "dtms.db"
    with dtms.open(db) as store:
        epoch = _lead(store)
        store.add_events(epoch, [_event(), _event()])
        config = Config.from_mapping({"notify": {"hook_attempts": 1}}).notify
        Dispatcher(store, [Collect("receiver", fail=10)], config).dispatch(epoch, T0)
    runner = CliRunner()
    status = runner.invoke(cli, ["--db", str(db), "status", "--json"])
    assert status.exit_code == 0, status.output
    notifications = json.loads(status.output)["notifications"]
    assert (notifications["dead"], notifications["pending"]) == (2, 0)
    assert "receiver down" in notifications["last_error"]
    table = runner.invoke(cli, ["--db", str(db), "status"])
    assert "DEAD NOTIFICATIONS" in table.output
    listed = runner.invoke(cli, ["--db", str(db), "outbox", "--status", "dead", "--json"])
    assert [e["status"] for e in json.loads(listed.output)["events"]] == ["dead", "dead"]
    retry = runner.invoke(cli, ["--db", str(db), "outbox", "retry", "--json"])
    assert json.loads(retry.output) == {"requeued": 2}
    with dtms.open(db) as store:
        assert store.outbox_summary().pending == 2
    bad = runner.invoke(cli, ["--db", str(db), "outbox", "--status", "lost"])
    assert bad.exit_code == 2
