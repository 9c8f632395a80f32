"""The simulated trade server: hedging vs netting, SL/TP triggers (touch, gap), close-by, stop-out, rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sim_helpers import terminal

import dtms.sim
from dtms.sim import Terminal
from dtms.sim.synth import RATES_DTYPE

T0 = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)  # a Tuesday
NO_LEVELS = {"stops_level": 0, "freeze_level": 0, "exemode": 2, "filling_mode": 3}


def bars(*ohlc: tuple[float, float, float, float], spread: int = 10) -> np.ndarray:
    """Consecutive M1 bars from T0 - 10 min: ten flat bars at the first open, then the given ones."""
    first = ohlc[0][0]
    rows = [(first, first, first, first)] * 10 + list(ohlc) + [(ohlc[-1][3],) * 4] * 30
    out = np.zeros(len(rows), dtype=RATES_DTYPE)
    out["time"] = int(T0.timestamp()) - 600 + 60 * np.arange(len(rows))
    for i, (o, h, lo, c) in enumerate(rows):
        out[i]["open"], out[i]["high"], out[i]["low"], out[i]["close"] = o, h, lo, c
    out["tick_volume"], out["spread"] = 10, spread
    return out


def scripted(*ohlc: tuple[float, float, float, float], account: str = "hedging", **kw: Any) -> Terminal:
    return terminal(
        bars={"EURUSD": bars(*ohlc)}, symbols={"EURUSD": NO_LEVELS}, start=T0, account=account, **kw
    )


def send(term: Terminal, type_: int, volume: float, **extra: Any) -> Any:
    tick = term.symbol_info_tick("EURUSD")
    return term.order_send(
        {
            "action": 1,
            "symbol": "EURUSD",
            "volume": volume,
            "type": type_,
            "price": tick.ask if type_ == 0 else tick.bid,
            **extra,
        }
    )


def deals_of(term: Terminal, identifier: int) -> list[Any]:
    return list(term.history_deals_get(position=identifier))


# --- SL/TP triggering ---------------------------------------------------------------------------------------
def test_buy_sl_touched_inside_a_bar_fills_at_the_level() -> None:
    term = scripted((1.1000, 1.1004, 1.0984, 1.0990))
    ident = send(term, 0, 0.1, sl=1.0988).order
    term.advance(60)
    assert term.positions_get() == ()
    out = deals_of(term, ident)[-1]
    assert (out.price, out.reason, out.entry, out.comment) == (1.0988, 4, 1, "[sl 1.09880]")
    assert out.profit == pytest.approx((1.0988 - 1.1001) * 100_000 * 0.1)
    assert T0 < datetime.fromtimestamp(out.time_msc / 1000, UTC) < T0 + timedelta(seconds=60)


def test_sl_gapped_through_fills_at_the_open() -> None:
    """A bar that opens beyond the stop fills at that open, not at the level (spec §6.4)."""
    term = scripted((1.1000, 1.1002, 1.0998, 1.1000), (1.0950, 1.0960, 1.0940, 1.0955))
    ident = send(term, 0, 0.1, sl=1.0980).order
    term.advance(180)
    out = deals_of(term, ident)[-1]
    assert (out.price, out.reason) == (1.0950, 4)
    assert out.time_msc == int((T0 + timedelta(seconds=60)).timestamp() * 1000)


def test_sell_tp_waits_for_the_ask() -> None:
    """A sell's TP fills when the ask (bid + 1 pip of spread here) reaches it, not the bid."""
    term = scripted((1.1000, 1.1000, 1.0996, 1.0996), (1.0996, 1.0996, 1.0990, 1.0990))
    ident = send(term, 1, 0.1, tp=1.0995).order
    term.advance(60)
    assert len(term.positions_get()) == 1  # bid touched 1.0996 only: ask 1.0997, above the TP
    term.advance(60)
    out = deals_of(term, ident)[-1]
    assert (out.price, out.reason, out.comment) == (1.0995, 5, "[tp 1.09950]")


def test_both_levels_in_one_bar_take_the_sl_first_by_default() -> None:
    bar = (1.1000, 1.1030, 1.0970, 1.1020)  # bullish: the path visits the low first anyway
    bear = (1.1000, 1.1030, 1.0970, 1.0980)  # bearish: O → H → L → C, the TP comes first on the path
    for ohlc, setting, reason in [(bear, "sl_first", 4), (bear, "path", 5), (bar, "path", 4)]:
        term = scripted(ohlc)
        term.configure(both_in_bar=setting)
        ident = send(term, 0, 0.1, sl=1.0980, tp=1.1020).order
        term.advance(120)
        assert deals_of(term, ident)[-1].reason == reason, (ohlc, setting)


@pytest.mark.parametrize("shared", [False, True])
def test_levels_are_only_checked_after_they_were_set(tmp_path: Path, shared: bool) -> None:
    """Prices before an SL was placed never trigger it (in memory and in the shared file)."""
    term = scripted(
        (1.1000, 1.1000, 1.0950, 1.1000),
        (1.1000, 1.1002, 1.0999, 1.1001),
        path=tmp_path / "t.db" if shared else None,
    )
    ident = send(term, 0, 0.1).order
    term.advance(65)
    (pos,) = term.positions_get()
    request = {"action": 6, "position": pos.ticket, "symbol": "EURUSD", "sl": 1.0990, "tp": 0.0}
    assert term.order_send(request).retcode == 10009
    term.advance(60)
    assert term.positions_get()[0].identifier == ident


def test_stop_out_closes_the_worst_position_with_reason_so() -> None:
    term = scripted(
        *[
            (1.1000 - i * 0.0005, 1.1000 - i * 0.0005, 1.0995 - i * 0.0005, 1.0995 - i * 0.0005)
            for i in range(20)
        ],
        balance=500.0,
    )
    term.configure_account(leverage=500)
    ident = send(term, 0, 1.0).order
    term.advance(20 * 60)
    out = deals_of(term, ident)[-1]
    assert out.reason == 6
    assert out.comment.startswith("[so ")
    assert term.account_info().balance < 500.0


# --- hedging and netting ------------------------------------------------------------------------------------
def test_hedging_opposite_order_opens_a_second_position_and_close_by_pairs_them() -> None:
    term = scripted((1.1000, 1.1001, 1.0999, 1.1000))
    buy = send(term, 0, 0.3).order
    sell = send(term, 1, 0.1).order
    assert {p.identifier for p in term.positions_get()} == {buy, sell}
    result = term.order_send({"action": 10, "symbol": "EURUSD", "position": buy, "position_by": sell})
    assert result.retcode == 10009
    (left,) = term.positions_get()
    assert (left.identifier, left.volume) == (buy, pytest.approx(0.2))
    by_deals = [d for d in term.history_deals_get(ticket=result.order)]
    assert sorted(d.position_id for d in by_deals) == sorted([buy, sell])
    assert {d.entry for d in by_deals} == {3}
    assert term.history_orders_get(ticket=result.order)[0].type == 8


def test_netting_adds_reduces_and_reverses_keeping_the_identifier() -> None:
    term = scripted((1.1000, 1.1001, 1.0999, 1.1000), account="netting")
    ident = send(term, 0, 0.1, sl=1.0900, tp=1.1100).order
    send(term, 0, 0.1, sl=1.0950)  # an add takes SL/TP from the order: the zero TP deletes it
    (pos,) = term.positions_get()
    assert (pos.identifier, pos.volume, pos.sl, pos.tp) == (ident, pytest.approx(0.2), 1.0950, 0.0)
    send(term, 1, 0.05, sl=1.2, tp=1.0)  # a partial close keeps the levels
    (pos,) = term.positions_get()
    assert (pos.volume, pos.sl, pos.tp) == (pytest.approx(0.15), 1.0950, 0.0)
    rev = send(term, 1, 0.25, sl=1.1050)
    (pos,) = term.positions_get()
    assert (pos.identifier, pos.type, pos.volume, pos.ticket) == (ident, 1, pytest.approx(0.1), rev.order)
    assert (pos.sl, pos.tp) == (1.1050, 0.0)
    assert [d.entry for d in deals_of(term, ident)] == [0, 0, 1, 2]
    send(term, 0, 0.1)
    assert term.positions_get() == ()


def test_profit_follows_tick_value_and_contract_size() -> None:
    term = terminal()
    assert term.order_calc_profit(0, "EURUSD", 1.0, 1.10000, 1.10300) == pytest.approx(300.0)
    assert term.order_calc_profit(1, "XAUUSD", 0.1, 2600.00, 2590.00) == pytest.approx(100.0)
    assert term.order_calc_profit(0, "BTCUSD", 0.5, 90_000.0, 91_000.0) == pytest.approx(500.0)


# --- rules --------------------------------------------------------------------------------------------------
def test_market_closed_at_the_weekend_but_not_for_bitcoin() -> None:
    term = terminal()
    term.advance_to(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))  # Saturday
    fx = term.order_send(
        {
            "action": 1,
            "symbol": "EURUSD",
            "volume": 0.1,
            "type": 0,
            "price": term.symbol_info_tick("EURUSD").ask,
        }
    )
    btc = term.order_send({"action": 1, "symbol": "BTCUSD", "volume": 0.1, "type": 0})
    assert (fx.retcode, btc.retcode) == (10018, 10009)


@pytest.mark.parametrize(
    ("setting", "retcode"),
    [
        ({"hedge_prohibited": True}, 10046),
        ({"limit_positions": 1}, 10040),
    ],
)
def test_account_rules_refuse_a_second_position(setting: dict[str, Any], retcode: int) -> None:
    term = scripted((1.1000, 1.1001, 1.0999, 1.1000))
    term.configure_account(**setting)
    send(term, 0, 0.1)
    assert send(term, 1, 0.1).retcode == retcode


def test_fifo_accounts_close_the_oldest_first() -> None:
    term = scripted((1.1000, 1.1001, 1.0999, 1.1000))
    term.configure_account(fifo_close=True)
    first, second = send(term, 0, 0.1).order, send(term, 0, 0.1).order
    assert send(term, 1, 0.1, position=second).retcode == 10045
    assert send(term, 1, 0.1, position=first).retcode == 10009


def test_no_money_refuses_the_order() -> None:
    term = scripted((1.1000, 1.1001, 1.0999, 1.1000), balance=100.0)
    assert send(term, 0, 10.0).retcode == 10019


def test_instant_execution_requotes_beyond_the_deviation() -> None:
    term = terminal()  # EURUSD is Instant execution
    tick = term.symbol_info_tick("EURUSD")
    stale = {
        "action": 1,
        "symbol": "EURUSD",
        "volume": 0.1,
        "type": 0,
        "price": tick.ask - 0.0005,
        "deviation": 10,
    }
    result = term.order_send(stale)
    assert (result.retcode, result.ask) == (10004, tick.ask)
    assert term.order_send({**stale, "deviation": 60}).retcode == 10009


def test_close_of_more_than_the_position_gives_10038() -> None:
    term = scripted((1.1000, 1.1001, 1.0999, 1.1000))
    ident = send(term, 0, 0.1).order
    assert send(term, 1, 0.2, position=ident).retcode == 10038


def test_sltp_unchanged_and_vanished() -> None:
    term = scripted((1.1000, 1.1001, 1.0999, 1.1000))
    ident = send(term, 0, 0.1, sl=1.0900).order
    req = {"action": 6, "position": ident, "symbol": "EURUSD", "sl": 1.0900, "tp": 0.0}
    assert term.order_send(req).retcode == 10025
    send(term, 1, 0.1, position=ident)
    assert term.order_send(req).retcode == 10036
    term.configure(vanished_retcode=10013)
    assert term.order_send(req).retcode == 10013


def test_ticket_change_keeps_the_identifier() -> None:
    term = scripted((1.1000, 1.1001, 1.0999, 1.1000))
    ident = send(term, 0, 0.1).order
    new = term.change_ticket(ident)
    (pos,) = term.positions_get()
    assert (pos.ticket, pos.identifier) == (new, ident)
    assert new != ident
    assert send(term, 1, 0.1, position=ident).retcode == 10036  # the old ticket no longer exists
    assert send(term, 1, 0.1, position=new).retcode == 10009
    assert {d.position_id for d in deals_of(term, ident)} == {ident}


def test_opening_deposit_is_a_balance_deal() -> None:
    term = dtms.sim.open(None, clock="manual", balance=2500.0)
    term.initialize()
    deals = term.history_deals_get(datetime(2000, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    assert [(d.type, d.profit) for d in deals] == [(2, 2500.0)]
