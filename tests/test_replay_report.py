"""The replay report on real replays: timelines with the engine's rules and actions, ending in CLOSED with the
close reason; transition counts that reconcile with the events; the plot's baseline exits and closed markets.

Every fact is checked against the engine's own journal, read from the managed run's store before it closes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

import dtms
from dtms.replay import Entry, replay, synthetic
from dtms.report import ARMED, Report, StateMark, TradeResult, render

SYMBOL = "EURUSD"
#: Start conditions no trade can meet: every trade stays armed until its SL or TP (or the end of the data).
NEVER_STARTS = {"monitoring": {"start_profit_r": 50.0, "start_age_s": 1e7, "start_emergency_r": -50.0}}

Journal = list[list[tuple[dict[str, Any], list[Any]]]]


def journaled(bars: np.ndarray, **kwargs: Any) -> tuple[Report, Journal]:
    """Replay `bars`; also return, per opened trade in entry order, the engine's journaled transitions (the
    row with its detail, and its action rows), read through the store's public methods before it closes."""
    per_trade: dict[int, list[tuple[dict[str, Any], list[Any]]]] = {}
    real_open = dtms.open

    def spying_open(*args: Any, **kw: Any) -> Any:
        store = real_open(*args, **kw)
        close = store.close

        def read_then_close() -> None:
            for trade in store.list_trades(include_closed=True):
                rows = []
                for t in store.transitions(trade.identifier):
                    row = store.transition(t.transition_id)
                    assert row is not None
                    rows.append((row, store.transition_actions(t.transition_id)))
                per_trade[trade.identifier] = rows
            close()

        store.close = read_then_close  # type: ignore[method-assign]
        return store

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dtms, "open", spying_open)
        report = replay(bars, symbol=SYMBOL, **kwargs)
    assert len(per_trade) == len(report.trades)
    return report, [per_trade[i] for i in sorted(per_trade)]  # identifiers grow in registration order


@pytest.fixture(scope="module")
def busy() -> tuple[Report, Journal]:
    """Four days of M1 bars: T0 … T4 and external closes; trade 20 is closed by T0 as monitoring starts."""
    return journaled(synthetic(SYMBOL, days=4, seed=0), every=36, seed=1, warmup=100)


@pytest.fixture(scope="module")
def hedged() -> tuple[Report, Journal]:
    """A hedge (T5) closed by its flat timer (T6), the hedge leg already gone at its SL."""
    return journaled(
        synthetic(SYMBOL, days=1, seed=1), every=6, seed=1, config={"fsm": {"flat_timer_s": 1200.0}}
    )


@pytest.fixture(scope="module")
def armed() -> tuple[Report, Journal]:
    """Trades that never start monitoring: each ends armed at its SL, its TP or the end of the data."""
    return journaled(
        synthetic(SYMBOL, days=2, seed=1),
        every=24,
        seed=4,
        warmup=100,
        config=NEVER_STARTS,
        sl_atr=1.0,
        tp_r=1.5,
    )


@pytest.fixture(scope="module")
def weekend() -> Report:
    """One BUY three hours before the embedded data's weekend, SL and TP 150 pips away: the baseline holds it
    across the closed market."""
    bars = synthetic(SYMBOL, days=7, seed=0)
    last = int(np.flatnonzero(np.diff(bars["time"]) > 60)[0])  # the last bar before the weekend
    at = datetime.fromtimestamp(int(bars["time"][last]) - 3 * 3600, UTC)
    price = float(bars["close"][last - 180])
    entry = Entry(at, "BUY", 0.1, sl=round(price - 0.0150, 5), tp=round(price + 0.0150, 5))
    return replay(bars, symbol=SYMBOL, entries=[entry], warmup=100)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def transitions_of(t: TradeResult) -> list[StateMark]:
    return [s for s in t.states if s.status is not None]


# --- timelines ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["busy", "hedged", "armed"])
def test_every_journaled_transition_is_in_the_timeline_with_its_rule_and_actions(
    case: str, request: pytest.FixtureRequest
) -> None:
    """Mark by mark, the timeline's transitions are the journal's: the rule the engine wrote into the row's
    detail, the reason, the status and the action rows with that transition id (type, leg, final status)."""
    report, journal = request.getfixturevalue(case)
    for (m, _), rows in zip(report.trades, journal, strict=True):
        expected = [
            (
                row["detail"]["rule"],
                row["reason"],
                row["status"],
                [(a.action_type, a.leg, a.status.value) for a in acts],
            )
            for row, acts in rows
        ]
        got = [
            (s.rule, s.reason, s.status, [(a.action, a.leg, a.status) for a in s.actions])
            for s in transitions_of(m)
        ]
        assert got == expected, f"trade {m.n}"
        for s, (row, _) in zip(transitions_of(m), rows, strict=True):
            assert epoch(s.at) == min(epoch(row["at"]), epoch(m.exit_at))  # an SL fill is seen after it


def test_the_rules_seen_cover_the_state_machine_and_external_closes(
    busy: tuple[Report, Journal], hedged: tuple[Report, Journal]
) -> None:
    """Not vacuous: the runs reach T0 to T6 and external closes, and a T3 caused two broker actions."""
    marks = [s for report, _ in (busy, hedged) for m, _ in report.trades for s in transitions_of(m)]
    assert {"T0", "T1", "T2", "T3", "T4", "T5", "T6", "external_close"} <= {s.rule for s in marks}
    t3 = next(s for s in marks if s.rule == "T3")
    assert [a.action for a in t3.actions] == ["partial_close", "move_sl_breakeven"]
    t6 = next(s for s in marks if s.rule == "T6")
    assert (t6.state, t6.reason) == ("CLOSED", "flat timer expired while hedged")
    assert {(a.action, a.leg) for a in t6.actions} == {("close_all", "main"), ("close_all", "hedge")}


def test_a_trade_closed_as_monitoring_starts_ends_in_closed_with_t0(busy: tuple[Report, Journal]) -> None:
    """Trade 20 starts monitoring (emergency) and is closed by T0 at the same check: before, its timeline
    showed `HEALTHY (armed)` only; now it goes on to HEALTHY and ends CLOSED with the rule and close_all."""
    report, _ = busy
    m, b = report.trades[19]
    assert (m.n, m.exit_reason, b.exit_reason) == (20, "dtms", "sl")
    assert [(s.state, s.rule, s.reason, s.status) for s in m.states] == [
        (ARMED, None, None, None),
        ("HEALTHY", None, "monitoring started (emergency)", None),
        ("CLOSED", "T0", "CHOCH against trade", "applied"),
    ]
    assert [tuple(a) for a in m.states[-1].actions] == [("close_all", "main", "DONE", None)]
    assert m.states[-1].at == m.states[1].at == m.exit_at


def test_trades_closed_while_armed_end_in_closed_with_their_sl_tp_or_the_end(
    armed: tuple[Report, Journal],
) -> None:
    """No start condition is met: each timeline is armed, then CLOSED at the very exit, with the
    external_close rule and the broker's reason (sl, tp, as in the baseline), or no rule at the data's end."""
    report, _ = armed
    reasons = set()
    for m, b in report.trades:
        assert [s.state for s in m.states] == [ARMED, "CLOSED"], f"trade {m.n}"
        closed = m.states[-1]
        assert closed.at == m.exit_at
        assert m.exit_reason == b.exit_reason  # the engine never acted: the same exit as unmanaged
        if m.exit_reason == "end":
            assert (closed.rule, closed.status) == (None, None)
            assert closed.reason is not None
            assert closed.reason.startswith("end of data")
            assert m.exit_at == report.meta["end"]
        else:
            assert (closed.rule, closed.reason, closed.status) == (
                "external_close",
                f"external_close:{m.exit_reason}",
                "applied",
            )
        reasons.add(m.exit_reason)
    assert reasons == {"sl", "tp", "end"}


@pytest.mark.parametrize("case", ["busy", "hedged", "armed"])
def test_every_managed_timeline_runs_from_armed_to_closed_within_the_trade(
    case: str, request: pytest.FixtureRequest
) -> None:
    """Armed at the entry first, CLOSED last and only there, times in order and never after the exit."""
    report, _ = request.getfixturevalue(case)
    for m, b in report.trades:
        assert (m.states[0].at, m.states[0].state) == (m.entry_at, ARMED)
        assert [s.state for s in m.states].count("CLOSED") == 1
        assert m.states[-1].state == "CLOSED"
        times = [epoch(s.at) for s in m.states]
        assert times == sorted(times)
        assert times[-1] <= epoch(m.exit_at)
        assert b.states == ()  # the baseline has no engine, so no timeline


# --- counts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["busy", "hedged", "armed"])
def test_engine_transitions_and_state_transition_events_reconcile(
    case: str, request: pytest.FixtureRequest
) -> None:
    """The engine counts the state machine's transitions (T0-T10); external closes are journaled too but not
    counted; each journaled transition emits two state_transition events (begun, then applied/abandoned)."""
    report, journal = request.getfixturevalue(case)
    tc = report.transitions
    rows = [row for trade in journal for row, _ in trade]
    assert tc["journaled"] == len(rows)
    assert tc["by_rule"] == {r: sum(1 for row in rows if row["detail"]["rule"] == r) for r in tc["by_rule"]}
    assert report.engine["transitions"] == tc["state_machine"]
    assert tc["state_machine"] == sum(1 for row in rows if row["detail"]["rule"] != "external_close")
    pending = sum(1 for row in rows if row["status"] == "pending")
    assert report.engine["events"].get("state_transition", 0) == tc["events"] == 2 * len(rows) - pending
    assert report.to_dict()["transitions"] == tc


def test_the_armed_run_shows_why_the_two_counts_differ(armed: tuple[Report, Journal]) -> None:
    """No deep check ever ran, so the engine counted no transition, yet every SL or TP fill was journaled as
    an external close with its two events; the report says so."""
    report, _ = armed
    tc = report.transitions
    closes = sum(1 for m, _ in report.trades if m.exit_reason in ("sl", "tp"))
    assert (report.engine["transitions"], tc["by_rule"], tc["events"]) == (
        0,
        {"external_close": closes},
        2 * closes,
    )
    assert f"journaled transitions: {closes} (external_close {closes}; applied {closes})" in render(report)


# --- JSON and text -----------------------------------------------------------------------------------------


def test_json_timeline_marks_are_named_objects(busy: tuple[Report, Journal]) -> None:
    """In the JSON each mark is an object (at, state, rule, reason, actions, status), each action one too."""
    report, _ = busy
    data = json.loads(report.to_json())
    states = data["trades"][19]["managed"]["states"]
    assert states[-1] == {
        "at": report.trades[19][0].exit_at,
        "state": "CLOSED",
        "rule": "T0",
        "reason": "CHOCH against trade",
        "actions": [{"action": "close_all", "leg": "main", "status": "DONE", "note": None}],
        "status": "applied",
    }
    assert data["trades"][19]["baseline"]["states"] == []
    assert "ticks_run" not in report.to_json()  # work counters depend on the mode: never in the report


def test_render_lists_every_trade_with_both_exits_and_its_timeline(busy: tuple[Report, Journal]) -> None:
    """Each trade's managed and baseline exits, then its timeline with the rules, reasons and actions."""
    report, _ = busy
    text = render(report)
    section = text.split("trades (managed timeline")[1]
    block = section.split("\n   20 ")[1].split("\n   21 ")[0].splitlines()
    assert "managed: dtms" in block[0]
    assert "baseline: sl" in block[0]
    assert block[-1].split()[2:] == ["CLOSED", "T0", "CHOCH", "against", "trade", "close_all", "DONE"]
    assert "move_sl_breakeven SKIPPED (breakeven_fallback: already tighter)" in section
    assert "trades (managed timeline" not in render(report, trades=False)


# --- plot --------------------------------------------------------------------------------------------------


def labelled(ax: Any, label: str) -> Any:
    return next(c for c in ax.collections if c.get_label() == label)


def test_the_trade_plot_shows_the_baseline_exit_beside_the_managed_one(weekend: Report) -> None:
    """Managed exit (x) and baseline exit (o) at their prices, each labelled with its reason."""
    pytest.importorskip("matplotlib")
    from dtms.report import figure

    ((m, b),) = weekend.trades
    assert (m.exit_reason, b.exit_reason) == ("dtms", "tp")
    ax = figure(weekend, trade=1).axes[0]
    (mx, my), (bx, by) = (
        labelled(ax, "exit (managed)").get_offsets()[0],
        labelled(ax, "exit (baseline)").get_offsets()[0],
    )
    assert (my, by) == (pytest.approx(m.exit_price), pytest.approx(b.exit_price))
    assert bx > mx
    texts = {t.get_text() for t in ax.texts}
    assert {"managed: dtms", "baseline: tp"} <= texts


def test_closed_markets_take_no_room_on_the_x_axis(weekend: Report) -> None:
    """The x-axis counts bars: across the weekend the baseline trade spans as many x units as it held bars,
    not the 48 idle hours; the whole run is as wide as its bars, a dotted line marks the gap."""
    pytest.importorskip("matplotlib")
    from dtms.report import figure

    ((m, b),) = weekend.trades
    assert weekend.bars is not None
    times = weekend.bars["time"].astype(np.int64)
    held = int(np.searchsorted(times, epoch(b.exit_at)) - np.searchsorted(times, epoch(m.entry_at)))
    wall_minutes = (epoch(b.exit_at) - epoch(m.entry_at)) / 60
    assert wall_minutes > held + 2000  # the weekend lies inside the trade
    ax = figure(weekend, trade=1).axes[0]
    entry_x = labelled(ax, "entry").get_offsets()[0][0]
    exit_x = labelled(ax, "exit (baseline)").get_offsets()[0][0]
    assert abs((exit_x - entry_x) - held) <= 1
    whole = figure(weekend)
    ax, strip = whole.axes[:2]
    shown = int(np.sum((times >= epoch(weekend.meta["start"])) & (times <= epoch(weekend.meta["end"]))))
    assert strip.get_xlim()[1] <= shown
    assert max(p.get_x() + p.get_width() for p in strip.patches) <= shown
    gaps = [line for line in strip.lines if line.get_linestyle() == ":"]
    assert len(gaps) == 1
    labels = [t.get_text() for t in strip.get_xticklabels()]
    assert labels
    assert all(label for label in labels)
