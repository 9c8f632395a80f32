"""The replay report on real replays: timelines with the engine's rules and actions, ending in CLOSED with the
close reason; transition counts that reconcile with the events; the plot's baseline exits and closed markets.

Every fact is checked against the engine's own journal, read from the managed run's store before it closes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

import dtms
from dtms.models import Action, Trade
from dtms.replay import Entry, replay, synthetic
from dtms.report import ARMED, Report, StateMark, TradeResult, render

SYMBOL = "EURUSD"
#: Start conditions no trade can meet: every trade stays armed until its SL or TP (or the end of the data).
NEVER_STARTS = {"monitoring": {"start_profit_r": 50.0, "start_age_s": 1e7, "start_emergency_r": -50.0}}


@dataclass(frozen=True)
class Journaled:
    """One trade as the engine left it in its store: the trade row and each journaled transition (the row
    with its decoded detail, and the action rows with its transition id)."""

    trade: Trade
    transitions: list[tuple[dict[str, Any], list[Action]]]


Journal = list[Journaled]


def journaled(bars: np.ndarray, **kwargs: Any) -> tuple[Report, Journal]:
    """Replay `bars`; also return, per opened trade in entry order, what the engine journaled, read through
    the store's public methods just before the managed run closes its store."""
    per_trade: dict[int, Journaled] = {}
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
                per_trade[trade.identifier] = Journaled(trade, rows)
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
    """Four days of M1 bars, a trade every three hours: warnings, partial closes, engine and broker closes."""
    return journaled(synthetic(SYMBOL, days=4, seed=0), every=36, seed=1, warmup=100)


@pytest.fixture(scope="module")
def hedged() -> tuple[Report, Journal]:
    """A trade every 30 minutes with a short flat timer: a hedge (T5) is opened."""
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
    across the closed market to its TP."""
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


def managed_marks(*runs: tuple[Report, Journal]) -> list[StateMark]:
    return [s for report, _ in runs for m, _ in report.trades for s in transitions_of(m)]


# --- timelines ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["busy", "hedged", "armed"])
def test_every_journaled_transition_is_in_the_timeline_with_its_rule_and_actions(
    case: str, request: pytest.FixtureRequest
) -> None:
    """Mark by mark, the timeline's transitions are the journal's: the rule the engine wrote into the row's
    detail, the reason, the status and the action rows with that transition id (type, leg, final status)."""
    report, journal = request.getfixturevalue(case)
    for (m, _), j in zip(report.trades, journal, strict=True):
        expected = [
            (
                row["detail"]["rule"],
                row["reason"],
                row["status"],
                [(a.action_type, a.leg, a.status.value) for a in acts],
            )
            for row, acts in j.transitions
        ]
        got = [
            (s.rule, s.reason, s.status, [(a.action, a.leg, a.status) for a in s.actions])
            for s in transitions_of(m)
        ]
        assert got == expected, f"trade {m.n}"
        for s, (row, _) in zip(transitions_of(m), j.transitions, strict=True):
            assert epoch(s.at) == min(epoch(row["at"]), epoch(m.exit_at))  # an SL fill is seen after it


def test_the_runs_reach_warnings_partial_closes_hedges_and_broker_closes(
    busy: tuple[Report, Journal], hedged: tuple[Report, Journal]
) -> None:
    """Not vacuous: T1 with its tighten_sl, T3 with partial_close then move_sl_breakeven, T5 with its hedge,
    and external closes; every rule is the engine's own name for it."""
    marks = managed_marks(busy, hedged)
    rules = {s.rule for s in marks}
    assert {"T1", "T3", "T5", "external_close"} <= rules
    assert rules <= {f"T{i}" for i in range(11)} | {"external_close"}
    t1 = next(s for s in marks if s.rule == "T1")
    assert (t1.state, [a.action for a in t1.actions]) == ("WARNING_L1", ["tighten_sl"])
    t3 = next(s for s in marks if s.rule == "T3")
    assert [a.action for a in t3.actions] == ["partial_close", "move_sl_breakeven"]
    t5 = next(s for s in marks if s.rule == "T5")
    assert [(a.action, a.status) for a in t5.actions][:1] == [("open_hedge", "DONE")]
    noted = [a for s in marks for a in s.actions if a.status == "SKIPPED"]
    assert noted
    assert all(a.note for a in noted)  # a skip says why


def test_monitoring_start_is_in_every_timeline_even_at_the_exit(busy: tuple[Report, Journal]) -> None:
    """Every trade the engine activated shows HEALTHY with the start condition when it happened, also one
    closed at that same check (before, a mark at the exit was dropped: the trade showed armed only)."""
    report, journal = busy
    activated = 0
    for (m, _), j in zip(report.trades, journal, strict=True):
        starts = [s for s in m.states if (s.reason or "").startswith("monitoring started")]
        if j.trade.activated_at is None:
            assert starts == []
            continue
        activated += 1
        assert [(s.state, s.rule, s.reason) for s in starts] == [
            ("HEALTHY", None, f"monitoring started ({j.trade.activation_reason})")
        ]
        assert epoch(starts[0].at) == min(j.trade.activated_at.timestamp(), epoch(m.exit_at))
        assert m.states.index(starts[0]) == 1  # right after the entry's armed mark
    assert activated > 0


@pytest.mark.parametrize("case", ["busy", "hedged"])
def test_trades_the_engine_closed_end_in_closed_with_its_rule_and_close_all(
    case: str, request: pytest.FixtureRequest
) -> None:
    """A trade whose main position dtms closed ends with the closing rule (T0, T6 or T9), the trade's close
    reason from the store and the close_all rows; one closed at the broker with external_close and the
    broker's reason (sl, tp) at the fill."""
    report, journal = request.getfixturevalue(case)
    for (m, _), j in zip(report.trades, journal, strict=True):
        closed = m.states[-1]
        assert closed.state == "CLOSED"
        if m.exit_reason == "dtms":
            assert closed.rule in ("T0", "T6", "T9")
            assert closed.reason == j.trade.close_reason
            assert ("close_all", "main", "DONE") in [(a.action, a.leg, a.status) for a in closed.actions]
            assert epoch(closed.at) <= epoch(m.exit_at)
        elif m.exit_reason in ("sl", "tp") and j.trade.state.value == "CLOSED":
            assert (closed.rule, closed.reason) == ("external_close", f"external_close:{m.exit_reason}")
            assert closed.reason == j.trade.close_reason
            assert closed.at == m.exit_at
    assert {m.exit_reason for m, _ in report.trades} & {"dtms", "sl"}


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
    rows = [row for j in journal for row, _ in j.transitions]
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
    k, m = next((k, m) for k, (m, _) in enumerate(report.trades) if any(s.actions for s in m.states))
    for mark, obj in zip(m.states, data["trades"][k]["managed"]["states"], strict=True):
        assert obj == {
            "at": mark.at,
            "state": mark.state,
            "rule": mark.rule,
            "reason": mark.reason,
            "actions": [
                {"action": a.action, "leg": a.leg, "status": a.status, "note": a.note} for a in mark.actions
            ],
            "status": mark.status,
        }
    assert data["trades"][k]["managed"]["states"][-1]["state"] == "CLOSED"
    assert data["trades"][k]["baseline"]["states"] == []
    assert "ticks_run" not in report.to_json()  # work counters depend on the mode: never in the report


def test_render_lists_every_trade_with_both_exits_and_its_timeline(busy: tuple[Report, Journal]) -> None:
    """Each trade's managed and baseline exits, then a line per mark with its rule, reason and actions."""
    report, _ = busy
    section = render(report).split("trades (managed timeline")[1]
    blocks = re.split(r"\n(?= +\d+ (?:BUY|SELL) )", section)[1:]  # a block per trade
    assert len(blocks) == len(report.trades)
    for block, (m, b) in zip(blocks, report.trades, strict=True):
        head, *lines = block.strip("\n").splitlines()
        assert head.split()[0] == str(m.n)
        assert f"managed: {m.exit_reason} " in head
        assert f"baseline: {b.exit_reason} " in head
        assert len(lines) == len(m.states)
        for line, mark in zip(lines, m.states, strict=True):
            assert line.split()[2] == mark.state.split()[0]
            for part in (mark.rule, mark.reason, *(f"{a.action}" for a in mark.actions)):
                assert part is None or part in line
    assert "move_sl_breakeven SKIPPED (breakeven_fallback: already tighter)" in section
    assert "trades (managed timeline" not in render(report, trades=False)


# --- plot --------------------------------------------------------------------------------------------------


def labelled(ax: Any, label: str) -> Any:
    return next(c for c in ax.collections if c.get_label() == label)


def test_the_trade_plot_shows_the_baseline_exit_beside_the_managed_one(weekend: Report) -> None:
    """The managed exits (x, one per leg's deal) and the baseline exit (o) at their prices, the final ones
    labelled with their reasons."""
    pytest.importorskip("matplotlib")
    from dtms.report import figure

    ((m, b),) = weekend.trades
    assert b.exit_reason == "tp"
    ax = figure(weekend, trade=1).axes[0]
    managed_xy = labelled(ax, "exit (managed)").get_offsets()
    ((bx, by),) = labelled(ax, "exit (baseline)").get_offsets()
    assert [y for _, y in managed_xy] == pytest.approx([e[1] for e in m.exits])
    assert by == pytest.approx(b.exit_price)
    assert bx >= max(x for x, _ in managed_xy)  # the baseline holds to its TP, after the weekend
    notes = {t.get_text(): t.xy for t in ax.texts}
    assert notes[f"managed: {m.exit_reason}"][1] == pytest.approx(m.exit_price)
    assert notes["baseline: tp"] == (pytest.approx(bx), pytest.approx(by))


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
