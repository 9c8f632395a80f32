"""The simulated terminal's surface matches the MetaTrader5 module: records, arrays, errors, call shapes."""

from __future__ import annotations

import pickle
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sim_helpers import START, terminal

import dtms.sim
from dtms.sim import Terminal
from dtms.sim.records import fields_of

RATES = [
    ("time", "<i8"),
    ("open", "<f8"),
    ("high", "<f8"),
    ("low", "<f8"),
    ("close", "<f8"),
    ("tick_volume", "<u8"),
    ("spread", "<i4"),
    ("real_volume", "<u8"),
]
TICKS = [
    ("time", "<i8"),
    ("bid", "<f8"),
    ("ask", "<f8"),
    ("last", "<f8"),
    ("volume", "<u8"),
    ("time_msc", "<i8"),
    ("flags", "<u4"),
    ("volume_real", "<f8"),
]


@pytest.fixture
def term() -> Terminal:
    return terminal()


def _buy(term: Terminal, symbol: str = "BTCUSD", volume: float = 0.1, **extra: object) -> object:
    tick = term.symbol_info_tick(symbol)
    return term.order_send(
        {
            "action": term.TRADE_ACTION_DEAL,
            "symbol": symbol,
            "volume": volume,
            "type": term.ORDER_TYPE_BUY,
            "price": tick.ask,
            "deviation": 20,
            **extra,
        }
    )


def test_position_record_has_the_19_fields_in_order(term: Terminal) -> None:
    _buy(term)
    (pos,) = term.positions_get()
    assert list(pos._asdict()) == [
        "ticket",
        "time",
        "time_msc",
        "time_update",
        "time_update_msc",
        "type",
        "magic",
        "identifier",
        "reason",
        "volume",
        "price_open",
        "sl",
        "tp",
        "price_current",
        "swap",
        "profit",
        "symbol",
        "comment",
        "external_id",
    ]
    assert pos.reason == term.POSITION_REASON_EXPERT


def test_records_have_attributes_asdict_and_iteration_but_no_fields_indexing_or_pickling(
    term: Terminal,
) -> None:
    tick = term.symbol_info_tick("EURUSD")
    assert tick.bid == tick._asdict()["bid"] == list(tick)[1]
    assert not hasattr(tick, "_fields")
    with pytest.raises(TypeError):
        tick[0]  # type: ignore[index]
    with pytest.raises(TypeError):
        pickle.dumps(tick)


@pytest.mark.parametrize(
    ("record", "count", "first", "last"),
    [
        ("TradeOrder", 24, "ticket", "external_id"),
        ("TradeDeal", 18, "ticket", "external_id"),
        ("Tick", 8, "time", "volume_real"),
        ("AccountInfo", 28, "login", "company"),
        ("TerminalInfo", 22, "community_account", "commondata_path"),
        ("TradeRequest", 17, "action", "position_by"),
        ("OrderSendResult", 11, "retcode", "request"),
        ("OrderCheckResult", 9, "retcode", "request"),
        ("SymbolInfo", 96, "custom", "path"),
    ],
)
def test_record_layouts_follow_the_spec(record: str, count: int, first: str, last: str) -> None:
    from dtms.sim import records

    names = fields_of(getattr(records, record))
    assert (len(names), names[0], names[-1]) == (count, first, last)


def test_send_result_echoes_the_request_as_a_nested_record(term: Terminal) -> None:
    result: Any = _buy(term, comment="x")
    assert result.retcode == 10009
    assert result.order == term.positions_get()[0].identifier
    assert (result.request.comment, result.request.sl, result.request.position) == ("x", 0.0, 0)
    assert next(iter(result.request._asdict())) == "action"


def test_rates_have_the_exact_dtype_oldest_first_and_the_forming_bar_last(term: Terminal) -> None:
    term.advance(90)  # 1.5 minutes into the hour: the current M1 bar is half formed
    rates = term.copy_rates_from_pos("EURUSD", term.TIMEFRAME_M1, 0, 5)
    assert rates.dtype == np.dtype(RATES)
    assert (np.diff(rates["time"]) == 60).all()
    tick = term.symbol_info_tick("EURUSD")
    assert rates["time"][-1] == int((START + timedelta(seconds=60)).timestamp())
    assert rates["close"][-1] == tick.bid
    closed = term.copy_rates_from_pos("EURUSD", term.TIMEFRAME_M1, 1, 4)
    assert (closed == rates[:-1]).all()


def test_higher_timeframes_aggregate_the_base_bars(term: Terminal) -> None:
    term.advance(3 * 3600 + 600)
    h1 = term.copy_rates_from_pos("XAUUSD", term.TIMEFRAME_H1, 1, 2)
    m1 = term.copy_rates_range("XAUUSD", term.TIMEFRAME_M1, int(h1["time"][0]), int(h1["time"][0]) + 3599)
    assert len(m1) == 60
    assert h1["open"][0] == m1["open"][0]
    assert h1["close"][0] == m1["close"][-1]
    assert h1["high"][0] == m1["high"].max()
    assert h1["low"][0] == m1["low"].min()
    assert h1["tick_volume"][0] == m1["tick_volume"].sum()


def test_copy_rates_from_returns_bars_opened_at_or_before_the_date(term: Terminal) -> None:
    date = int(START.timestamp()) - 4 * 3600
    rates = term.copy_rates_from("EURUSD", term.TIMEFRAME_H1, date, 10)
    assert len(rates) == 10
    assert rates["time"][-1] == date


def test_ticks_have_the_exact_dtype(term: Terminal) -> None:
    ticks = term.copy_ticks_range(
        "EURUSD", int(START.timestamp()) - 120, int(START.timestamp()) - 1, term.COPY_TICKS_ALL
    )
    assert ticks.dtype == np.dtype(TICKS)
    assert len(ticks) == 6
    assert (ticks["ask"] > ticks["bid"]).all()


def test_calls_before_initialize_fail_with_no_ipc_connection() -> None:
    term = dtms.sim.open(None, clock="manual")
    assert term.positions_get() is None
    assert term.last_error() == (-10004, "No IPC connection")
    assert term.initialize()
    assert term.positions_get() == ()
    assert term.last_error() == (1, "Success")
    term.shutdown()
    assert term.symbol_info_tick("EURUSD") is None
    assert term.last_error()[0] == -10004


def test_unknown_symbol_errors(term: Terminal) -> None:
    assert term.symbol_info("NOPE") is None
    assert term.last_error()[0] == -4
    assert term.copy_rates_from_pos("NOPE", term.TIMEFRAME_M1, 0, 10) is None
    assert term.last_error()[0] == -1


def test_beyond_maxbars_fails(term: Terminal) -> None:
    assert term.copy_rates_from_pos("EURUSD", term.TIMEFRAME_M1, 0, 100_001) is None
    assert term.last_error() == (-1, "Terminal: Call failed")


def test_last_error_is_per_api_object(tmp_path: object) -> None:
    path = f"{tmp_path}/t.db"
    a, b = terminal(path), dtms.sim.open(path)
    b.initialize()
    assert a.symbol_info("NOPE") is None
    assert b.symbol_info("EURUSD") is not None
    assert a.last_error()[0] == -4
    assert b.last_error() == (1, "Success")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("volume", np.float64(0.1)),
        ("price", 1),
        ("comment", "c" * 29),
        ("magic", -1),
        ("type", np.int64(0)),
        ("nonsense", 1),
    ],
)
def test_invalid_request_fields_give_none_with_minus_2(term: Terminal, field: str, value: object) -> None:
    """Plain int/float/str only: numpy scalars cannot cross mt5linux's repr() bridge (spec §1.1)."""
    tick = term.symbol_info_tick("BTCUSD")
    request = {"action": 1, "symbol": "BTCUSD", "volume": 0.1, "type": 0, "price": tick.ask, field: value}
    assert term.order_send(request) is None
    assert term.last_error() == (-2, f'Invalid "{field}" argument')
    assert term.positions_get() == ()


def test_deal_without_volume_is_invalid(term: Terminal) -> None:
    assert term.order_send({"action": 1, "symbol": "BTCUSD", "type": 0}) is None
    assert term.last_error() == (-2, 'Invalid "volume" argument')


def test_keyword_form_is_accepted(term: Terminal) -> None:
    assert term.order_send(action=1, symbol="BTCUSD", volume=0.1, type=0).retcode == 10009


def test_constants_are_attributes_and_missing_names_raise(term: Terminal) -> None:
    assert (term.TRADE_ACTION_SLTP, term.TIMEFRAME_D1, term.TRADE_RETCODE_DONE) == (6, 16408, 10009)
    with pytest.raises(AttributeError):
        term.SYMBOL_FILLING_FOK  # noqa: B018 -- the real package does not export it either
    assert term.__version__
    assert term.__author__


def test_group_filters_and_history_queries(term: Terminal) -> None:
    _buy(term, "BTCUSD")
    assert _buy(term, "XAUUSD", 0.01).retcode == 10030  # type: ignore[attr-defined]  # gold fills IOC only
    _buy(term, "XAUUSD", 0.01, type_filling=term.ORDER_FILLING_IOC)
    assert [s.name for s in term.symbols_get(group="*USD,!BTC*")] == ["EURUSD", "XAUUSD"]
    assert {p.symbol for p in term.positions_get(group="*,!XAU*")} == {"BTCUSD"}
    btc = term.positions_get(symbol="BTCUSD")[0]
    assert [d.entry for d in term.history_deals_get(position=btc.identifier)] == [0]
    assert term.history_deals_get(ticket=btc.identifier)[0].order == btc.identifier
    everything = term.history_deals_get(START - timedelta(days=1), START + timedelta(days=1))
    assert [d.type for d in everything] == [2, 0, 0]  # the initial deposit, then the two buys
    assert len(term.history_orders_get(position=btc.identifier)) == 1


def test_order_check_passes_with_zero_and_changes_nothing(term: Terminal) -> None:
    tick = term.symbol_info_tick("BTCUSD")
    check = term.order_check({"action": 1, "symbol": "BTCUSD", "volume": 0.1, "type": 0, "price": tick.ask})
    assert (check.retcode, check.comment) == (0, "Done")
    assert term.positions_get() == ()


def test_account_info_derives_equity_and_margin(term: Terminal) -> None:
    _buy(term, "BTCUSD", 0.1)
    acct = term.account_info()
    (pos,) = term.positions_get()
    assert acct.equity == pytest.approx(acct.balance + pos.profit)
    assert acct.margin == pytest.approx(0.1 * pos.price_current / 100, rel=1e-3)
    assert acct.margin_level == pytest.approx(acct.equity / acct.margin * 100, rel=1e-3)
