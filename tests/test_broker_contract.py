"""The Broker contract, run against every backend: today MT5Broker over the simulator (hedging and netting),
and MT5Broker over a real terminal when one is available (`-m mt5`, Windows only)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sim_helpers import broker, terminal

from dtms.broker import Broker, MT5Broker, OutcomeKind
from dtms.errors import BrokerError

REAL_SYMBOL = os.environ.get("DTMS_MT5_SYMBOL", "EURUSD")
RATES_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_volume", "<u8"),
        ("spread", "<i4"),
        ("real_volume", "<u8"),
    ]
)


@pytest.fixture(
    params=[
        "sim-hedging",
        "sim-netting",
        pytest.param(
            "mt5",
            marks=[
                pytest.mark.mt5,
                pytest.mark.skipif(
                    sys.platform != "win32" or importlib.util.find_spec("MetaTrader5") is None,
                    reason="needs Windows, the MetaTrader5 package and a running terminal",
                ),
            ],
        ),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Broker, str]]:
    if request.param == "mt5":
        real = MT5Broker(server_time_offset_s=int(os.environ.get("DTMS_MT5_SERVER_OFFSET_S", "0")))
        real.connect()
        yield real, REAL_SYMBOL
        real.disconnect()
        return
    account = request.param.removeprefix("sim-")
    term = terminal(tmp_path / "terminal.db", account=account)
    yield broker(term), "EURUSD"
    term.close()


def _open(b: Broker, symbol: str, direction: str = "BUY", volume: float = 0.02) -> int:
    outcome = b.open(symbol, direction, volume, comment="dtms-contract")  # type: ignore[arg-type]
    assert outcome.kind is OutcomeKind.DONE, outcome
    assert outcome.identifier is not None
    return outcome.identifier


def test_open_returns_the_identifier_of_a_visible_position(backend: tuple[Broker, str]) -> None:
    b, symbol = backend
    ident = _open(b, symbol)
    pos = b.position(ident)
    assert pos is not None
    assert pos.identifier == ident
    assert pos.direction == "BUY"
    assert pos.volume == 0.02
    assert ident in {p.identifier for p in b.positions(symbol)}
    assert b.close(ident).kind is OutcomeKind.DONE


def test_position_is_none_once_closed(backend: tuple[Broker, str]) -> None:
    b, symbol = backend
    ident = _open(b, symbol)
    assert b.close(ident).kind is OutcomeKind.DONE
    assert b.position(ident) is None
    assert ident not in {p.identifier for p in b.positions()}


def test_tick_is_aware_utc_with_bid_below_ask(backend: tuple[Broker, str]) -> None:
    b, symbol = backend
    tick = b.tick(symbol)
    assert tick.at.tzinfo is not None
    assert tick.at.utcoffset() == timedelta(0)
    assert 0 < tick.bid < tick.ask


def test_bars_are_oldest_first_with_the_rates_dtype_and_the_forming_bar_last(
    backend: tuple[Broker, str],
) -> None:
    b, symbol = backend
    bars = b.bars(symbol, "M5", 50)
    tick = b.tick(symbol)
    assert bars.dtype == RATES_DTYPE
    assert len(bars) == 50
    assert (np.diff(bars["time"]) > 0).all()
    assert (
        bars["time"][-1] <= tick.at.timestamp() < bars["time"][-1] + 300
        or tick.at.timestamp() >= bars["time"][-1]
    )
    assert (bars["high"] >= bars["low"]).all()


def test_symbol_spec_is_consistent(backend: tuple[Broker, str]) -> None:
    b, symbol = backend
    spec = b.symbol(symbol)
    assert spec.name == symbol
    assert spec.point == pytest.approx(10.0**-spec.digits)
    assert 0 < spec.volume_min <= spec.volume_max
    assert spec.volume_step > 0
    assert spec.is_valid_volume(spec.volume_min)
    assert spec.stops_level >= 0
    assert spec.freeze_level >= 0


def test_account_reports_its_margin_mode(backend: tuple[Broker, str]) -> None:
    b, _ = backend
    acct = b.account()
    assert acct.is_hedging == (acct.margin_mode == 2)
    assert acct.equity == pytest.approx(acct.balance + acct.profit, abs=0.02)


def test_modify_sets_both_levels_and_none_removes_one(backend: tuple[Broker, str]) -> None:
    b, symbol = backend
    ident = _open(b, symbol)
    spec, tick = b.symbol(symbol), b.tick(symbol)
    gap = (max(spec.stops_level, spec.freeze_level) + 200) * spec.point
    sl, tp = spec.round_price(tick.bid - gap), spec.round_price(tick.bid + gap)
    assert b.modify_sl_tp(ident, sl, tp).kind is OutcomeKind.DONE
    pos = b.position(ident)
    assert pos is not None
    assert pos.sl == pytest.approx(sl)
    assert pos.tp == pytest.approx(tp)
    assert b.modify_sl_tp(ident, sl, None).kind is OutcomeKind.DONE
    pos = b.position(ident)
    assert pos is not None
    assert pos.sl == pytest.approx(sl)
    assert pos.tp is None
    b.close(ident)


def test_partial_close_keeps_the_identifier_and_deals_add_up(backend: tuple[Broker, str]) -> None:
    b, symbol = backend
    ident = _open(b, symbol, volume=0.04)
    half = b.close(ident, 0.025)  # floored to 0.02
    assert half.kind is OutcomeKind.DONE
    assert half.volume == pytest.approx(0.02)
    pos = b.position(ident)
    assert pos is not None
    assert pos.volume == pytest.approx(0.02)
    assert b.close(ident).kind is OutcomeKind.DONE
    deals = b.deals(ident)
    assert {d.identifier for d in deals} == {ident}
    opened = sum(d.volume for d in deals if d.entry == "in")
    closed = sum(d.volume for d in deals if d.entry == "out")
    assert opened == pytest.approx(0.04)
    assert closed == pytest.approx(0.04)


def test_deals_since_filter_by_magic_and_time(backend: tuple[Broker, str]) -> None:
    b, symbol = backend
    since = b.tick(symbol).at - timedelta(seconds=1)
    ident = _open(b, symbol)
    mine = b.deals(since=since, magic=getattr(b, "magic", None))
    assert any(d.identifier == ident and d.entry == "in" for d in mine)
    assert all(d.executed_at >= since for d in mine)
    assert b.deals(since=since, magic=12345) == []
    b.close(ident)
    assert datetime(2000, 1, 1, tzinfo=UTC) < since


def test_unknown_symbol_raises_broker_error(backend: tuple[Broker, str]) -> None:
    b, _ = backend
    with pytest.raises(BrokerError):
        b.tick("NOSUCHSYMBOL")
