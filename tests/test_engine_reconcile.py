"""Reconciliation on takeover: adoption of unknown positions only when configured (spec §10)."""

from __future__ import annotations

import pytest

import dtms
import dtms.sim
from dtms.broker import MT5Broker
from dtms.config import Config
from dtms.engine.cycle import Engine
from dtms.gateway import Gateway, SoleLeadership
from dtms.models import Holder


def engine_for(tmp_path, adopt: bool):  # type: ignore[no-untyped-def]
    term = dtms.sim.open(None, clock="manual")
    term.advance(86_400)
    broker = MT5Broker(term)
    broker.connect()
    store = dtms.open(tmp_path / "d.db")
    holder = Holder(name="t", host="h", pid=1, proc_start=None, boot_id=None, token="x")
    epoch, _ = store.take_over(holder, ttl_ms=10**9, now_boot_ms=0, lock_inode=None, decide=lambda r: "first")
    config = Config.from_mapping({"broker": {"server_time": 0}, "reconcile": {"adopt_unknown": adopt}})
    engine = Engine(store, broker, Gateway(store, SoleLeadership(epoch), send_margin_s=0), config, now=term.now)
    return engine, store, broker, epoch


def _open(broker: MT5Broker, magic: int) -> int:
    tick = broker.tick("EURUSD")
    out = broker.open("EURUSD", "SELL", 0.3, sl=round(tick.bid + 0.003, 5), magic=magic, comment="x")
    assert out.is_done and out.identifier is not None
    return out.identifier


@pytest.mark.parametrize("adopt", [False, True])
def test_unknown_positions_are_adopted_only_when_configured(tmp_path, adopt):
    """reconcile.adopt_unknown decides; a dtms-tagged leg (dtms's magic) is never adopted."""
    engine, store, broker, epoch = engine_for(tmp_path, adopt)
    theirs = _open(broker, magic=555)
    leg = _open(broker, magic=engine.config.execution.magic)
    engine.start(epoch)
    adopted = store.get_trade(theirs)
    assert (adopted is not None) == adopt
    assert store.get_trade(leg) is None
    if adopted is not None:
        assert (adopted.owner, adopted.direction.value, adopted.volume, adopted.armed) == ("dtms", "SELL", 0.3, True)
        assert adopted.r is not None  # from the position's stop


def test_adoption_is_idempotent_across_reconciliations(tmp_path):
    """A second pass registers nothing new and changes nothing."""
    engine, store, broker, epoch = engine_for(tmp_path, True)
    theirs = _open(broker, magic=555)
    engine.start(epoch)
    before = store.get_trade(theirs)
    engine.reconcile(epoch, engine.now())
    assert store.get_trade(theirs) == before
    assert store.count_trades() == 1
