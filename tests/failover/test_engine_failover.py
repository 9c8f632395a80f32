"""A leader killed in the middle of a broker action: the next leader finishes it, never twice (spec §8.1)."""

from __future__ import annotations

import sys
import time

import pytest
from engineproc import run_engine_node
from nodeproc import CRASH_DEADLINE_S, CTX, SPAWN_DEADLINE_S, Cluster

import dtms
import dtms.sim
from dtms.broker import MT5Broker
from dtms.models import ActionStatus, TradeState
from dtms.store import TradeUpdate

pytestmark = [
    pytest.mark.failover,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
]
#: The next leader reconciles within a few ticks; the deadline covers spawn and a loaded CI runner.
RESUME_DEADLINE_S = 30.0


def _spawn(c: Cluster, db: str, sim: str, name: str, crash_at: str | None) -> None:
    proc = CTX.Process(target=run_engine_node, args=(db, sim, name, c.event_pipe(name), crash_at, "partial_close"),
                       name=name, daemon=True)  # fmt: skip
    proc.start()
    c.procs[name] = proc


def _wait_until(predicate, timeout: float, term) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        term.advance(2)  # simulated time moves on, so rechecks (10 s of terminal time) can expire
        time.sleep(0.05)


@pytest.mark.parametrize("crash_at", ["before_send", "after_send"])
def test_leader_killed_mid_action_is_resumed_exactly_once(tmp_path, crash_at):
    """SIGKILL between the SENT mark and the send, or between the send and its outcome: one close, ever."""
    db, sim = str(tmp_path / "dtms.db"), str(tmp_path / "sim.db")
    term = dtms.sim.open(sim, clock="manual")
    term.advance(86_400)
    broker = MT5Broker(term)
    broker.connect()
    tick = broker.tick("EURUSD")
    opened = broker.open("EURUSD", "BUY", 1.0, sl=round(tick.ask - 0.003, 5), magic=7, comment="bot")
    assert opened.is_done and opened.identifier is not None
    ident = opened.identifier
    store = dtms.open(db)
    store.register_trade(ident, "EURUSD", "BUY", opened.price, 1.0, sl=round(tick.ask - 0.003, 5))
    c = Cluster(db)
    try:
        _spawn(c, db, sim, "first", crash_at)
        first = c.wait("started", SPAWN_DEADLINE_S, name="first")
        epoch = first["epoch"]
        # A deep check's decision, written as the leader would (fenced on its epoch): WARNING_L1 → WARNING_L2.
        store.update_trades(epoch, {ident: TradeUpdate({"state": TradeState.WARNING_L1, "armed": 0},
                                                       {"last_deep_at": term.now().isoformat()})})  # fmt: skip
        began = store.begin_transition(epoch, identifier=ident, from_state=TradeState.WARNING_L1,
                                       to_state=TradeState.WARNING_L2, reason="test", score=-4.5,
                                       actions=[("main", "partial_close", {"primary": True, "fraction": 0.5})])  # fmt: skip
        assert began is not None
        transition_id, _ = began
        c.wait("crashing", RESUME_DEADLINE_S, name="first")
        c.procs["first"].join(CRASH_DEADLINE_S)
        assert c.procs["first"].exitcode == -9
        _spawn(c, db, sim, "second", None)
        second = c.wait("started", SPAWN_DEADLINE_S, name="second")
        assert second["epoch"] == epoch + 1
        _wait_until(lambda: store.transition(transition_id)["status"] != "pending", RESUME_DEADLINE_S, term)
        assert store.transition(transition_id)["status"] == "applied"
        trade = store.get_trade(ident)
        assert trade is not None and trade.state is TradeState.WARNING_L2
        assert trade.volume == pytest.approx(0.5)
        closes = [d for d in broker.deals(ident) if d.entry == "out"]
        assert [d.volume for d in closes] == [pytest.approx(0.5)]  # executed exactly once
        rows = store.transition_actions(transition_id)
        assert rows[-1].status is ActionStatus.DONE
        if crash_at == "after_send":  # found again by its comment in the deal history, not resent
            assert len(rows) == 1 and rows[0].result and rows[0].result.get("reconciled")
        else:  # confirmed not applied, then sent once by the new leader
            assert [r.status for r in rows] == [ActionStatus.FAILED, ActionStatus.DONE]
            assert rows[0].result and rows[0].result.get("reason") == "not_applied"
            assert rows[1].epoch == epoch + 1
    finally:
        c.reap()
