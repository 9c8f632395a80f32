"""Random order sequences never leave negative volumes or a deal history that disagrees with the positions."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import START

import dtms.sim
from dtms.broker import MT5Broker

SYMBOLS = ("BTCUSD", "XAUUSD")
FILLING = {"BTCUSD": 0, "XAUUSD": 1}

op = st.one_of(
    st.tuples(
        st.just("open"), st.sampled_from(SYMBOLS), st.sampled_from([0, 1]), st.integers(1, 30), st.booleans()
    ),
    st.tuples(st.just("close"), st.integers(0, 9), st.integers(1, 30)),
    st.tuples(st.just("close_by"), st.integers(0, 9), st.integers(0, 9)),
    st.tuples(st.just("sltp"), st.integers(0, 9), st.floats(0.001, 0.03)),
    st.tuples(st.just("advance"), st.integers(1, 240)),
    st.tuples(st.just("broker_close"), st.integers(0, 9), st.floats(0.05, 1.0)),
)


def _apply(term: dtms.sim.Terminal, b: MT5Broker, step: tuple[Any, ...]) -> None:
    kind = step[0]
    positions = term.positions_get()
    if kind == "open":
        _, symbol, type_, steps, with_sl = step
        tick = term.symbol_info_tick(symbol)
        price = tick.ask if type_ == 0 else tick.bid
        sl = round(price * (0.99 if type_ == 0 else 1.01), 2) if with_sl else 0.0
        term.order_send(
            {
                "action": 1,
                "symbol": symbol,
                "volume": round(0.01 * steps, 2),
                "type": type_,
                "sl": sl,
                "type_filling": FILLING[symbol],
            }
        )
    elif kind == "advance":
        term.advance(60 * step[1])
    elif not positions:
        return
    elif kind == "close":
        pos = positions[step[1] % len(positions)]
        term.order_send(
            {
                "action": 1,
                "symbol": pos.symbol,
                "volume": round(0.01 * step[2], 2),
                "type": 1 - pos.type,
                "position": pos.ticket,
                "type_filling": FILLING[pos.symbol],
            }
        )
    elif kind == "close_by":
        a = positions[step[1] % len(positions)]
        c = positions[step[2] % len(positions)]
        term.order_send({"action": 10, "symbol": a.symbol, "position": a.ticket, "position_by": c.ticket})
    elif kind == "sltp":
        pos = positions[step[1] % len(positions)]
        away = pos.price_current * float(step[2])
        sl = round(pos.price_current - away if pos.type == 0 else pos.price_current + away, 2)
        term.order_send({"action": 6, "symbol": pos.symbol, "position": pos.ticket, "sl": sl, "tp": 0.0})
    elif kind == "broker_close":
        pos = positions[step[1] % len(positions)]
        b.close(pos.identifier, pos.volume * float(step[2]))


@pytest.mark.parametrize("account", ["hedging", "netting"])
@settings(max_examples=40, deadline=None)
@given(steps=st.lists(op, min_size=3, max_size=30))
def test_random_orders_keep_volumes_and_deals_consistent(account: str, steps: list[tuple[Any, ...]]) -> None:
    term = dtms.sim.open(None, clock="manual", start=START, account=account, balance=1_000_000.0)
    term.initialize()
    b = MT5Broker(term)
    b.connect()
    for step in steps:
        _apply(term, b, step)

    positions = {p.identifier: p for p in term.positions_get()}
    assert all(p.volume > 0 for p in positions.values())
    if account == "netting":
        assert len({p.symbol for p in positions.values()}) == len(positions)
    deals = term.history_deals_get(datetime(2000, 1, 1, tzinfo=UTC), datetime(2037, 1, 1, tzinfo=UTC))
    net: dict[int, float] = defaultdict(float)
    for d in deals:
        if d.type in (0, 1):
            assert d.volume > 0
            net[d.position_id] += d.volume if d.type == 0 else -d.volume
    for ident, signed in net.items():
        pos = positions.get(ident)
        expected = 0.0 if pos is None else (pos.volume if pos.type == 0 else -pos.volume)
        assert signed == pytest.approx(expected, abs=1e-9), ident
    assert set(positions) <= set(net)
    booked = sum(d.profit + d.commission + d.swap + d.fee for d in deals)
    assert term.account_info().balance == pytest.approx(booked, abs=0.01 * len(deals) + 0.01)
