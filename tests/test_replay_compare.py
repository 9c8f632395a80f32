"""The comparison rules: the baseline's entries under breakeven, chandelier and time stops, simulated."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dtms.broker.rates import RATES_DTYPE
from dtms.cli import cli
from dtms.errors import InvalidArgumentError
from dtms.replay import Entry, replay
from dtms.replay.rules import COMPARISONS, TIME_STOP_BARS, comparisons
from dtms.report import Report, TradeResult, render

SYMBOL = "EURUSD"
SPREAD = 0.00012  # the EURUSD preset's 12 points (the bars carry no spread)
PIP = 0.0001
K = 200  # the entry bar
N = 320  # bars in each set
START = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp())
R = 20 * PIP  # every entry's SL is 20 pips from its fill
TIME_BARS = 10  # the time stop's bars in these tests


def flat(rates: np.ndarray, lo: int, hi: int, price: float) -> None:
    """Bars lo..hi-1 open and close at `price`, 2 pips either side: a true range of 4 pips."""
    rates["open"][lo:hi] = rates["close"][lo:hi] = price
    rates["high"][lo:hi], rates["low"][lo:hi] = price + 2 * PIP, price - 2 * PIP


def bar(rates: np.ndarray, k: int, o: float, h: float, lo: float, c: float) -> None:
    rates["open"][k], rates["high"][k], rates["low"][k], rates["close"][k] = o, h, lo, c


def empty() -> np.ndarray:
    rates = np.zeros(N, dtype=RATES_DTYPE)
    rates["time"] = START + 300 * np.arange(N)
    rates["tick_volume"] = 100
    return rates


def trend(sign: int) -> np.ndarray:
    """Flat at 1.1, then from bar K twenty bars of 2 pips each way (true range 4 pips: ATR14 stays 4 pips),
    then one bar straight back to 1.1000, then flat. sign +1 rises then drops, -1 falls then spikes."""
    rates = empty()
    flat(rates, 0, K, 1.1)
    for i in range(20):
        o = 1.1 + sign * 2 * PIP * i
        c = o + sign * 2 * PIP
        bar(rates, K + i, o, max(o, c) + PIP, min(o, c) - PIP, c)
    o = 1.1 + sign * 40 * PIP
    bar(rates, K + 20, o, max(o, 1.1), min(o, 1.1), 1.1 + sign * 5 * PIP)  # O→H→L→C: straight back
    flat(rates, K + 21, N, 1.1 + sign * 5 * PIP)
    return _rounded(rates)


def _rounded(rates: np.ndarray) -> np.ndarray:
    for key in ("open", "high", "low", "close"):
        rates[key] = np.round(rates[key], 5)
    return rates


def at(k: int) -> str:
    return datetime.fromtimestamp(START + 300 * k, UTC).isoformat()


def run(rates: np.ndarray, direction: str, **kwargs: object) -> Report:
    fill = 1.1 + SPREAD if direction == "BUY" else 1.1
    d = 1 if direction == "BUY" else -1
    entry = Entry(datetime.fromtimestamp(START + 300 * K, UTC), direction, 0.1,  # type: ignore[arg-type]
                  sl=round(fill - d * R, 5), tp=round(fill + d * 100 * PIP, 5))  # fmt: skip
    return replay(rates, symbol=SYMBOL, entries=[entry], warmup=30, time_stop_bars=TIME_BARS, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rise() -> Report:
    return run(trend(+1), "BUY")


@pytest.fixture(scope="module")
def fall() -> Report:
    return run(trend(-1), "SELL")


def only(report: Report, name: str) -> TradeResult:
    (t,) = report.comparisons[name].trades
    return t


# --- every rule, both directions ----------------------------------------------------------------------------


def test_every_rule_opens_the_entry_exactly_as_the_baseline(rise: Report, fall: Report) -> None:
    """Same entry time, fill price, SL, TP and risk as the baseline, for every rule."""
    for report in (rise, fall):
        assert tuple(report.comparisons) == COMPARISONS
        ((_, b),) = report.trades
        for name in COMPARISONS:
            t = only(report, name)
            got = (t.entry_at, t.entry_price, t.sl, t.tp, t.risk)
            assert got == (b.entry_at, b.entry_price, b.sl, b.tp, b.risk)


def test_the_baseline_rides_out_the_reversal(rise: Report, fall: Report) -> None:
    """The reversal bar stops short of the initial SL: the unmanaged trade is still open at the end."""
    for report in (rise, fall):
        ((_, b),) = report.trades
        assert b.exit_reason == "end"


def test_breakeven_buy_moves_sl_to_entry_at_the_bar_after_plus_1r_and_exits_at_entry(rise: Report) -> None:
    """Bar K+10's high is the first at entry + 1 R; the SL moves at K+11's open; the drop exits at 0 R."""
    t = only(rise, "breakeven_1r")
    entry = round(1.1 + SPREAD, 5)
    assert t.sl_path == ((at(K), round(entry - R, 5)), (at(K + 11), entry))
    assert (t.exit_reason, t.exit_price, t.exit_at) == ("sl", pytest.approx(entry), t.exit_at)
    assert at(K + 20) <= t.exit_at < at(K + 21)
    assert (t.profit, t.r) == (0.0, 0.0)
    assert rise.comparisons["breakeven_1r"].orders["sl_moves"] == 1


def test_breakeven_sell_moves_sl_to_entry_and_exits_at_entry_on_the_ask(fall: Report) -> None:
    """Bar K+9's low reaches entry - 1 R; the SL moves at K+10's open; the spike fills it at entry (ask)."""
    t = only(fall, "breakeven_1r")
    assert t.sl_path == ((at(K), 1.102), (at(K + 10), 1.1))
    assert (t.exit_reason, t.exit_price, t.profit, t.r) == ("sl", pytest.approx(1.1), 0.0, 0.0)


@pytest.mark.parametrize(("name", "k"), [("chandelier_2atr", 2), ("chandelier_3atr", 3)])
def test_chandelier_buy_exits_at_the_highest_high_less_k_atr(rise: Report, name: str, k: int) -> None:
    """The SL follows highest high - k x 4 pips after every rising bar, and the drop fills it there."""
    t = only(rise, name)
    entry = round(1.1 + SPREAD, 5)
    highs = [round(1.1 + 2 * PIP * (i + 1) + PIP, 5) for i in range(20)]  # of bars K..K+19
    want = [(at(K + 1 + i), round(h - k * 4 * PIP, 5)) for i, h in enumerate(highs)]
    assert list(t.sl_path) == [(at(K), round(entry - R, 5)), *want]
    stop = round(1.1041 - k * 4 * PIP, 5)
    assert (t.exit_reason, t.exit_price) == ("sl", pytest.approx(stop))
    assert t.r == pytest.approx((stop - entry) / R, abs=1e-4)
    assert rise.comparisons[name].orders == {
        "sl_moves": 20, "sl_refused": 0, "closes": 0, "close_refused": 0, "refused": []
    }  # fmt: skip


@pytest.mark.parametrize(("name", "k"), [("chandelier_2atr", 2), ("chandelier_3atr", 3)])
def test_chandelier_sell_exits_at_the_lowest_low_plus_k_atr(fall: Report, name: str, k: int) -> None:
    """Mirrored: the SL follows lowest low + k x 4 pips down; the spike fills it on the ask."""
    t = only(fall, name)
    stop = round(1.0959 + k * 4 * PIP, 5)
    path = [p for _, p in t.sl_path]
    assert path[0] == 1.102
    assert path[-1] == stop
    assert all(b < a for a, b in pairwise(path))  # only ever tightened
    assert (t.exit_reason, t.exit_price) == ("sl", pytest.approx(stop))
    assert t.r == pytest.approx((1.1 - stop) / R, abs=1e-4)


def test_time_stop_closes_at_market_after_exactly_n_bars(rise: Report, fall: Report) -> None:
    """Bars K..K+9 closed: the position is closed at bar K+10's open, at the bid (BUY) or the ask (SELL)."""
    buy, sell = only(rise, "time_stop"), only(fall, "time_stop")
    assert (buy.exit_reason, buy.exit_at, buy.exit_price) == ("time", at(K + TIME_BARS), pytest.approx(1.102))
    assert (sell.exit_reason, sell.exit_at) == ("time", at(K + TIME_BARS))
    assert sell.exit_price == pytest.approx(1.098 + SPREAD)
    assert buy.r == pytest.approx((1.102 - 1.1 - SPREAD) / R, abs=1e-4)
    assert rise.comparisons["time_stop"].params == {"timeframe": "M5", "bars": TIME_BARS}
    assert rise.comparisons["time_stop"].orders["closes"] == 1


# --- no look-ahead; refused modifications -------------------------------------------------------------------


@pytest.fixture(scope="module")
def whipsaw() -> Report:
    """A BUY whose entry bar reaches +1 R and falls back below the entry in the same bar; the next two bars
    open below the entry, so SL = entry is on the wrong side; the third opens 9 pips above it; then a drop."""
    rates = empty()
    flat(rates, 0, K, 1.1)
    bar(rates, K, 1.1, 1.1025, 1.0996, 1.0997)  # O→H→L→C: +1 R, then back below the entry
    bar(rates, K + 1, 1.0997, 1.0999, 1.0995, 1.0998)
    bar(rates, K + 2, 1.0998, 1.1011, 1.0996, 1.101)
    bar(rates, K + 3, 1.101, 1.1011, 1.099, 1.0992)
    flat(rates, K + 4, N, 1.0992)
    return run(_rounded(rates), "BUY", compare="breakeven_1r")


def test_breakeven_reacts_only_after_the_trigger_bar_has_closed(whipsaw: Report) -> None:
    """Within the trigger bar nothing happens (a rule that looked ahead would have left at entry there)."""
    t = only(whipsaw, "breakeven_1r")
    assert [p for p, _ in t.sl_path][1] == at(K + 3)
    assert t.exit_at >= at(K + 3)
    assert (t.exit_reason, t.r) == ("sl", 0.0)


def test_a_refused_modification_is_counted_listed_and_retried(whipsaw: Report) -> None:
    """SL = entry above the bid is refused (10016) at K+1 and K+2, then accepted at K+3."""
    orders = whipsaw.comparisons["breakeven_1r"].orders
    assert (orders["sl_moves"], orders["sl_refused"]) == (1, 2)
    assert [(r["n"], r["at"], r["action"], r["retcode"]) for r in orders["refused"]] == [
        (1, at(K + 1), "sl", 10016),
        (1, at(K + 2), "sl", 10016),
    ]
    assert "breakeven_1r" in render(whipsaw)
    assert "(refused 2)" in render(whipsaw)


# --- choosing them; the report ------------------------------------------------------------------------------


def test_names_choose_the_rules_in_report_order() -> None:
    """None and "all" give all four, "none" and () none; a comma string or a list, in the report's order."""
    assert comparisons(None) == comparisons("all") == COMPARISONS
    assert comparisons("none") == comparisons(()) == ()
    assert comparisons("time_stop, breakeven_1r") == ("breakeven_1r", "time_stop")
    assert comparisons(["chandelier_3atr"]) == ("chandelier_3atr",)


@pytest.mark.parametrize("bad", ["trailing", "breakeven_1r,breakeven_1r", "none,time_stop"])
def test_bad_names_are_refused_listing_the_valid_ones(bad: str) -> None:
    """An unknown or repeated name is an InvalidArgumentError; an unknown one lists every valid name."""
    with pytest.raises(InvalidArgumentError) as info:
        comparisons(bad)
    if "twice" not in str(info.value):
        assert all(name in str(info.value) for name in COMPARISONS)


def test_replay_refuses_bad_comparisons_before_running() -> None:
    """replay(compare=...) and time_stop_bars are checked before the bars are even read."""
    with pytest.raises(InvalidArgumentError, match="chandelier_2atr"):
        replay("missing.csv", symbol=SYMBOL, compare=["chandelier_4atr"])
    with pytest.raises(InvalidArgumentError, match="time_stop_bars"):
        replay("missing.csv", symbol=SYMBOL, time_stop_bars=0)


def test_comparisons_are_in_the_json_and_none_leaves_them_out(rise: Report) -> None:
    """Each rule's summary (the baseline's metrics), orders and trades are serialised; none gives {}."""
    data = json.loads(rise.to_json())
    assert list(data["comparisons"]) == sorted(COMPARISONS)
    for name in COMPARISONS:
        c = data["comparisons"][name]
        assert set(c["summary"]) == set(rise.baseline)
        assert c["summary"] == rise.comparisons[name].summary
        assert len(c["trades"]) == 1
    assert rise.timing is not None
    assert {f"compare_{n}_s" for n in COMPARISONS} | {"compare_s"} <= set(rise.timing)
    bare = run(trend(+1), "BUY", compare="none")
    assert bare.comparisons == {}
    assert json.loads(bare.to_json())["comparisons"] == {}
    assert bare.baseline == rise.baseline


def test_render_puts_every_rule_beside_managed_and_baseline(rise: Report) -> None:
    """One column per rule in the summary table, then a line per rule with managed - rule."""
    text = render(rise, trades=False)
    header = next(line for line in text.splitlines() if line.lstrip().startswith("managed"))
    assert header.split() == ["managed", "baseline", *COMPARISONS]
    assert "exits: time" in text
    assert text.count("managed - rule:") == len(COMPARISONS)


# --- command line -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bars_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rates = trend(+1)
    lines = ["time,open,high,low,close,volume"]
    for r in rates:
        stamp = datetime.fromtimestamp(int(r["time"]), UTC).strftime("%Y-%m-%dT%H:%M:%S")
        lines.append(f"{stamp},{r['open']:.5f},{r['high']:.5f},{r['low']:.5f},{r['close']:.5f},100")
    path = tmp_path_factory.mktemp("compare") / "EURUSD_M5.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_compare_chooses_the_rules_and_time_stop_bars_sets_n(bars_csv: Path) -> None:
    """--compare picks rules for the JSON report; --time-stop-bars is the time stop's N."""
    args = ["replay", str(bars_csv), "--warmup", "30", "--every", "40", "--json"]
    result = CliRunner().invoke(cli, [*args, "--compare", "time_stop", "--time-stop-bars", "7"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data["comparisons"]) == ["time_stop"]
    assert data["comparisons"]["time_stop"]["params"]["bars"] == 7
    result = CliRunner().invoke(cli, [*args, "--compare", "none"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["comparisons"] == {}


def test_cli_bad_compare_names_are_usage_errors_listing_the_valid_ones(bars_csv: Path) -> None:
    """An unknown rule exits 2 before replaying, naming every valid rule."""
    result = CliRunner().invoke(cli, ["replay", str(bars_csv), "--compare", "breakeven_1r,trailing"])
    assert result.exit_code == 2
    assert "unknown comparison 'trailing'" in result.output
    assert all(name in result.output for name in COMPARISONS)


def test_cli_default_time_stop_is_the_library_default() -> None:
    """The CLI's --time-stop-bars default is TIME_STOP_BARS."""
    command = cli.commands["replay"]
    option = next(p for p in command.params if p.name == "time_stop_bars")
    assert option.default == TIME_STOP_BARS
