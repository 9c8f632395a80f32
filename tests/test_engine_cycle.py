"""The monitoring cycle on the simulated terminal: activation on the trading clock, VWAP counting from first sight."""

from __future__ import annotations

import dtms
import dtms.sim
from dtms.broker import MT5Broker
from dtms.config import Config
from dtms.engine.cycle import Engine
from dtms.gateway import Gateway, SoleLeadership
from dtms.models import Holder


def setup(tmp_path, **config):  # type: ignore[no-untyped-def]
    term = dtms.sim.open(None, clock="manual")
    term.advance(2 * 86_400)
    broker = MT5Broker(term)
    broker.connect()
    store = dtms.open(tmp_path / "d.db")
    holder = Holder(name="t", host="h", pid=1, proc_start=None, boot_id=None, token="x")
    epoch, _ = store.take_over(holder, ttl_ms=10**9, now_boot_ms=0, lock_inode=None, decide=lambda r: "first")
    cfg = Config.from_mapping({"broker": {"server_time": 0}, **config})
    engine = Engine(store, broker, Gateway(store, SoleLeadership(epoch), send_margin_s=0), cfg, now=term.now)
    engine.start(epoch)
    tick = broker.tick("EURUSD")
    out = broker.open("EURUSD", "BUY", 0.1, sl=round(tick.ask - 0.05, 5))  # R far away: only age can arm it
    assert out.is_done and out.identifier is not None
    store.register_trade(out.identifier, "EURUSD", "buy", out.price, 0.1, sl=round(tick.ask - 0.05, 5))
    return term, store, engine, epoch, out.identifier


def test_age_activation_runs_on_the_trading_clock(tmp_path):
    """A trade registered at wall time T activates after 900 s of *terminal* time, whatever the wall says."""
    term, store, engine, epoch, ident = setup(tmp_path)
    engine.tick(epoch)
    term.advance(870)
    engine.tick(epoch)
    assert store.get_trade(ident).armed  # type: ignore[union-attr]
    term.advance(60)
    engine.tick(epoch)
    trade = store.get_trade(ident)
    assert trade is not None and not trade.armed and trade.activation_reason == "age"


def test_vwap_cross_counter_counts_only_bars_after_first_sight(tmp_path):
    """The counter starts at 0 on the first fast check and moves by at most one per new final M5 bar."""
    term, store, engine, epoch, ident = setup(tmp_path)
    engine.tick(epoch)
    assert store.get_trade(ident).engine["vwap_cross_counter"] == 0  # type: ignore[union-attr]
    for _ in range(4):  # four M5 bars close
        term.advance(300)
        engine.tick(epoch)
    assert 0 <= store.get_trade(ident).engine["vwap_cross_counter"] <= 4  # type: ignore[union-attr]
