"""Per-entry results from the terminal's deals and the store's journal; the baseline run; the VWAP slopes."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from dtms.broker import MT5Broker
from dtms.broker.base import Deal
from dtms.engine.market import session_starts, symbol_key, vwap_series
from dtms.engine.symbols import timeframe_s
from dtms.models import Trade
from dtms.replay.inputs import _SL_ACTIONS, REPLAY_MAGIC
from dtms.replay.rig import Opened, Plan, open_terminal, utc
from dtms.report import TradeResult, percentiles


def exit_reason(deal: Deal) -> str:
    return "dtms" if deal.comment.startswith("dtms-") else deal.reason


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
    """One entry's money, exit and (managed) timelines, from the terminal's deals and the store's journal."""
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
    states: list[tuple[str, str]] = []
    sl_path: list[tuple[str, float]] = [(entry_at, o.entry.sl)] if o.entry.sl else []
    if trade is not None:
        marks = [(o.entry.at, "HEALTHY (armed)")]
        if trade.activated_at is not None:
            marks.append((trade.activated_at, "HEALTHY"))
        marks += [(t.at, t.to_state.value) for t in transitions if t.status == "applied"]
        states = [(at.isoformat(), s) for at, s in sorted(marks, key=lambda m: m[0]) if at < exit_at]
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
        states=tuple(states),
        sl_path=tuple(sl_path),
        exits=tuple(sorted(exits)),
        actions=tuple((a.created_at.isoformat(), a.action_type, a.status.value) for a in actions),
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
            results.append(
                TradeResult(
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
            )
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
