"""Per-entry results from the terminal's deals and the store's journal; the baseline run; the VWAP slopes."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import numpy as np

from dtms.broker import MT5Broker
from dtms.broker.base import Deal
from dtms.engine.market import session_starts, symbol_key, vwap_series
from dtms.engine.symbols import timeframe_s
from dtms.models import Trade, TradeState
from dtms.replay.inputs import _SL_ACTIONS, REPLAY_MAGIC
from dtms.replay.rig import Opened, Plan, open_terminal, utc
from dtms.report import ARMED, ActionMark, StateMark, TradeResult, percentiles

#: The comment of a comparison rule's closing deal, before the exit reason it reports (`rule-time`).
RULE_CLOSE_PREFIX: Final = "rule-"


def exit_reason(deal: Deal) -> str:
    if deal.comment.startswith("dtms-"):
        return "dtms"
    if deal.comment.startswith(RULE_CLOSE_PREFIX):
        return deal.comment.removeprefix(RULE_CLOSE_PREFIX)
    return deal.reason


def trade_result(
    o: Opened,
    broker: MT5Broker,
    positions: Mapping[int, Any],
    end: datetime,
    legs: Mapping[int, str],
    trade: Trade | None = None,
    actions: Sequence[Any] = (),
    transitions: Sequence[Any] = (),
) -> TradeResult:
    """One entry's money, exit and (managed) timelines, from the terminal's deals and the store's journal.

    `transitions` are the trade's journaled transitions (`Store.transitions`), `actions` its journal rows
    oldest first; the state timeline is built from them (`_timeline`).
    """
    profit, exits = 0.0, []
    main_exit: tuple[datetime, float, str] | None = None
    last = o.entry.at
    for pid, leg in legs.items():
        for d in broker.deals(pid):
            profit += d.profit + d.commission + d.swap + d.fee
            if d.entry in ("out", "out_by"):
                exits.append((d.executed_at.isoformat(), d.price, d.volume, leg, exit_reason(d)))
                last = max(last, d.executed_at)
                if leg == "main":
                    main_exit = (d.executed_at, d.price, exit_reason(d))
        p = positions.get(pid)
        if p is not None:
            profit += p.profit + p.swap
            exits.append((end.isoformat(), p.price_current, p.volume, leg, "end"))
            last = end
            if leg == "main":
                main_exit = (end, p.price_current, "end")
    exit_at, exit_price, reason = main_exit or (last, o.price, "unknown")
    exit_at = max(exit_at, last)
    entry_at = o.entry.at.isoformat()
    states: tuple[StateMark, ...] = ()
    sl_path: list[tuple[str, float]] = [(entry_at, o.entry.sl)] if o.entry.sl else []
    if trade is not None:
        states = _timeline(o, trade, actions, transitions, exit_at, reason)
        for a in actions:
            sl = (a.result or {}).get("sl")
            if a.action_type in _SL_ACTIONS and a.leg == "main" and a.status.value == "DONE" and sl:
                sl_path.append(((a.completed_at or a.created_at).isoformat(), float(sl)))
    return TradeResult(
        n=o.n,
        direction=o.entry.direction,
        volume=o.entry.volume,
        entry_at=entry_at,
        entry_price=o.price,
        sl=o.entry.sl,
        tp=o.entry.tp,
        risk=round(o.risk, 2),
        exit_at=exit_at.isoformat(),
        exit_price=exit_price,
        exit_reason=reason,
        profit=round(profit, 2) + 0.0,
        r=round(profit / o.risk, 4) + 0.0 if o.risk else 0.0,
        final_state=trade.state.value if trade is not None else None,
        states=states,
        sl_path=tuple(sl_path),
        exits=tuple(sorted(exits)),
        actions=tuple((a.created_at.isoformat(), a.action_type, a.status.value) for a in actions),
    )


#: How a trade ended that no journaled transition closed, by the main position's exit reason.
_UNSEEN_EXITS: Final = {
    "end": "end of data (still open: valued at the last close)",
    "sl": "SL hit",
    "tp": "TP hit",
    "so": "stop-out",
    "dtms": "closed by dtms",
}


def _note(a: Any) -> str | None:
    """Why an action did not simply execute: its skip reason or error (None when DONE or still open)."""
    if a.status.value == "DONE":
        return None
    result = a.result or {}
    note = a.error or result.get("reason")
    return None if note is None else str(note)


def _timeline(
    o: Opened,
    trade: Trade,
    actions: Sequence[Any],
    transitions: Sequence[Any],
    exit_at: datetime,
    exit_reason: str,
) -> tuple[StateMark, ...]:
    """The managed trade's state timeline: armed at the entry, monitoring started, each journaled transition
    with its rule and the broker actions it caused (journal rows with its transition id), and CLOSED last.

    Times after the exit (the engine sees an SL fill at its next check) are moved back to the exit. A trade
    no transition closed (still open when the data ended, or closed at the broker after the engine's last
    check) gets a final CLOSED mark at its exit with no rule, naming the exit.
    """
    caused: dict[int, list[ActionMark]] = {}
    for a in actions:
        if a.transition_id is not None:
            caused.setdefault(a.transition_id, []).append(
                ActionMark(a.action_type, a.leg, a.status.value, _note(a))
            )
    marks: list[tuple[datetime, StateMark]] = [(o.entry.at, StateMark("", ARMED))]
    if trade.activated_at is not None:
        why = f" ({trade.activation_reason})" if trade.activation_reason else ""
        marks.append((trade.activated_at, StateMark("", "HEALTHY", reason=f"monitoring started{why}")))
    for t in transitions:
        # An abandoned or still pending transition leaves the trade in the state it was in.
        state = t.to_state.value if t.status == "applied" else marks[-1][1].state
        acts = tuple(caused.get(t.transition_id, ()))
        marks.append((t.at, StateMark("", state, t.rule, t.reason, acts, t.status)))
    if trade.state is TradeState.CLOSED:
        applied = [k for k, (_, m) in enumerate(marks) if m.status == "applied"]
        if applied:  # the transition that closed it (a hedge's close_all fallback closes from T5 too)
            at, m = marks[applied[-1]]
            marks[applied[-1]] = (at, m._replace(state="CLOSED", reason=trade.close_reason or m.reason))
    marks.sort(key=lambda p: min(p[0], exit_at))  # stable: the journal's order at equal times
    out = [m._replace(at=min(at, exit_at).isoformat()) for at, m in marks]
    if out[-1].state != "CLOSED":
        why = _UNSEEN_EXITS.get(exit_reason, exit_reason)
        if exit_reason != "end":
            why += "; the data ended before the engine recorded the close"
        out.append(StateMark(exit_at.isoformat(), "CLOSED", reason=why))
    return tuple(out)


def rejected_result(o: Opened) -> TradeResult:
    """An entry the managed run filled but this run's terminal refused: shown as `rejected`, never dropped."""
    return TradeResult(
        o.n,
        o.entry.direction,
        o.entry.volume,
        o.entry.at.isoformat(),
        o.price,
        o.entry.sl,
        o.entry.tp,
        round(o.risk, 2),
        o.entry.at.isoformat(),
        o.price,
        "rejected",
        0.0,
        0.0,
    )


def baseline(plan: Plan, opened: list[Opened]) -> list[TradeResult]:
    """The same entries, same fills, SL and TP held and nothing else: no engine, no store."""
    term, broker = open_terminal(plan)
    now_ms, ids = plan.start_ms, []
    for o in opened:
        at = round(o.entry.at.timestamp() * 1000)
        term.advance((at - now_ms) / 1000)
        now_ms = at
        out = broker.open(
            plan.symbol,
            o.entry.direction,
            o.entry.volume,
            sl=o.entry.sl,
            tp=o.entry.tp,
            magic=REPLAY_MAGIC,
            comment="replay",
        )
        ids.append(out.identifier if out.is_done else None)
    term.advance(max(0, plan.end_ms - now_ms) / 1000)
    end = utc(plan.end_ms)
    positions = {p.identifier: p for p in broker.positions()}
    results = []
    for o, pid in zip(opened, ids, strict=True):
        if pid is None:  # refused here though the managed run filled it: shown, never silently dropped
            results.append(rejected_result(o))
            continue
        results.append(
            trade_result(Opened(o.n, o.entry, pid, o.price, o.risk), broker, positions, end, {pid: "main"})
        )
    return results


def vwap_slopes(broker: MT5Broker, plan: Plan, observed: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """The VWAP slope distribution (spec §3.5): every final fast bar of the replay; what the engine saw."""
    fast_s, vc, sc = timeframe_s(plan.fast), plan.config.vwap, plan.config.symbols
    bars = broker.bars(plan.symbol, plan.fast, min(len(plan.rates), 100_000))  # the terminal's maxbars
    bars = bars[bars["time"] + fast_s <= plan.end_ms // 1000]
    values = vwap_series(bars, vc.session_timezone, vc.session_start)
    sessions = session_starts(bars["time"], vc.session_timezone, vc.session_start)
    lag = vc.slope_bars - 1
    old, new = values[:-lag], values[lag:]
    ok = (
        (sessions[lag:] == sessions[:-lag])
        & np.isfinite(old)
        & np.isfinite(new)
        & (old != 0)
        & (bars["time"][lag:] >= plan.start_ms // 1000)
    )
    slopes = np.abs((new[ok] - old[ok]) / old[ok]).tolist()
    key, _ = symbol_key(plan.symbol, sc.vwap_base.keys(), sc.aliases, sc.suffix_pattern)
    base = sc.vwap_base.get(key, sc.vwap_base.get("default", 0.0))
    seen = [abs(s) for s, _ in observed]
    return {
        "timeframe": plan.fast,
        "base": base,
        "bars": len(slopes),
        "abs": percentiles(slopes),
        "share_at_or_above": {
            f"{m:g}x base": round(float(np.mean(np.asarray(slopes) >= m * base)), 4) if slopes else 0.0
            for m in (plan.config.regime.clamp.min, 1.0, plan.config.regime.clamp.max)
        },
        "engine": {
            "bars": len(seen),
            "abs": percentiles(seen),
            "thresholds": percentiles([t for _, t in observed]),
            "share_at_or_above": round(sum(abs(s) >= t for s, t in observed) / len(observed), 4)
            if observed
            else None,
        },
    }
