"""Replay reports: per-trade results, managed-vs-baseline statistics, JSON, a text table and the PNG plot."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from dtms.errors import ExtraNotInstalledError, InvalidArgumentError

#: A registered trade before the engine's start conditions hold (spec §6.1): HEALTHY, not yet monitored.
ARMED: Final = "HEALTHY (armed)"
#: States in order of trouble, for the colour bands and the whole-run strip (the worst state shows on top).
STATES: Final = (ARMED, "HEALTHY", "RECOVERING", "WARNING_L1", "WARNING_L2", "HEDGED")
STATE_COLOURS: Final = {
    "HEALTHY (armed)": "#d9d9d9",
    "HEALTHY": "#a6dba0",
    "RECOVERING": "#92c5de",
    "WARNING_L1": "#fee08b",
    "WARNING_L2": "#fdae61",
    "HEDGED": "#d73027",
}
PERCENTILES: Final = (50, 75, 90, 95, 99)


class ActionMark(NamedTuple):
    """One journal row a transition caused: the broker action, its leg, its final status, why (if not done).

    `note` is the skip reason (e.g. `already tighter`, `position_gone`) or the error of a failed request.
    """

    action: str
    leg: str
    status: str
    note: str | None = None


class StateMark(NamedTuple):
    """One point of a managed trade's timeline: from `at` on, the trade is in `state`.

    A journaled transition carries the rule that made it (`T0` … `T10` of the state machine, or
    `external_close` when the position was closed at the broker by its SL or TP, a stop-out or by hand), its
    reason, the broker actions it caused and its journal status: `applied`, `abandoned` (the primary action
    failed: the state stays) or `pending` (still waiting when the data ended: the state stays). The other
    marks (armed at the entry, monitoring started, the final CLOSED of a trade the engine did not close) have
    no rule and no status. Every managed timeline ends in CLOSED, at the exit at the latest.
    """

    at: str
    state: str
    rule: str | None = None
    reason: str | None = None
    actions: tuple[ActionMark, ...] = ()
    status: str | None = None


@dataclass(frozen=True)
class TradeResult:
    """One entry's fate in one run; money in the account currency, R against the entry's initial risk.

    `risk` is the money one R is worth: |entry - SL| at the entry volume (for an entry without SL, the
    ATR-based R the engine uses). `profit` adds every leg dtms opened for the trade (hedge, re-adds).
    The timelines (`states`, `sl_path`, `exits`, `actions`) are filled for the managed run only; `states`
    starts `HEALTHY (armed)` at the entry and ends in CLOSED (see `StateMark`).
    """

    n: int
    direction: str
    volume: float
    entry_at: str
    entry_price: float
    sl: float | None
    tp: float | None
    risk: float
    exit_at: str
    exit_price: float
    exit_reason: str  # sl, tp, so, dtms (the engine closed it), end (still open when the data ended)
    profit: float
    r: float
    final_state: str | None = None
    states: tuple[StateMark, ...] = ()  # the state timeline, HEALTHY (armed) first, CLOSED last
    sl_path: tuple[tuple[str, float], ...] = ()  # (from, SL) on the main position
    exits: tuple[tuple[str, float, float, str, str], ...] = ()  # (at, price, volume, leg, reason)
    actions: tuple[tuple[str, str, str], ...] = ()  # (at, action_type, status)


@dataclass(frozen=True)
class Comparison:
    """The same entries under one comparison rule (`dtms.replay.rules`): what it does and how it did.

    `summary` has the metrics of `Report.baseline` (`summarize`); `orders` counts the rule's requests to the
    terminal (`sl_moves`, `sl_refused`, `closes`, `close_refused`) and lists each refused one under `refused`
    (entry `n`, `at`, `action`, `retcode`, `text`); `trades` holds one `TradeResult` per opened entry.
    """

    name: str
    rule: str
    params: dict[str, Any]
    summary: dict[str, Any]
    orders: dict[str, Any]
    trades: tuple[TradeResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "params": self.params,
            "summary": self.summary,
            "orders": self.orders,
            "trades": [_trade_dict(t) for t in self.trades],
        }


@dataclass(frozen=True)
class Report:
    """What `dtms.replay.replay` found: the same entries managed by dtms and left alone (the baseline).

    `comparisons` holds the same entries under each one-line rule chosen (`Comparison`, by name). Everything
    in it derives from the inputs, so the same inputs give a byte-identical `to_json()`. `bars` (for `plot`)
    and `timing` (wall-clock figures) are attached but never serialised.
    """

    meta: dict[str, Any]
    managed: dict[str, Any]
    baseline: dict[str, Any]
    states: dict[str, Any]
    actions: dict[str, dict[str, int]]
    vwap_slope: dict[str, Any]
    engine: dict[str, Any]
    trades: tuple[tuple[TradeResult, TradeResult], ...]  # (managed, baseline) per opened entry
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    bars: npt.NDArray[np.void] | None = field(default=None, compare=False, repr=False)
    timing: dict[str, float] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (no bars, no timing)."""
        return {
            "meta": self.meta,
            "managed": self.managed,
            "baseline": self.baseline,
            "states": self.states,
            "actions": self.actions,
            "vwap_slope": self.vwap_slope,
            "engine": self.engine,
            "transitions": self.transitions,
            "trades": [{"managed": _trade_dict(m), "baseline": _trade_dict(b)} for m, b in self.trades],
            "comparisons": {name: c.to_dict() for name, c in self.comparisons.items()},
        }

    @property
    def transitions(self) -> dict[str, Any]:
        """The managed trades' journaled transitions, from their timelines (`transition_counts`)."""
        return transition_counts(m for m, _ in self.trades)

    def to_json(self) -> str:
        """Stable JSON (sorted keys, fixed rounding) for machines and for comparing runs byte for byte."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"


def _mark(mark: Sequence[Any]) -> StateMark:
    return mark if isinstance(mark, StateMark) else StateMark(*mark)


def _marks(t: TradeResult) -> list[tuple[str, str]]:
    """(at, state) of each mark of the trade's timeline."""
    return [(m.at, m.state) for m in map(_mark, t.states)]


def _trade_dict(t: TradeResult) -> dict[str, Any]:
    """A trade as JSON-ready data; the timeline's marks and their actions as objects with named fields."""
    out = asdict(t)
    out["states"] = [
        {**_mark(m)._asdict(), "actions": [ActionMark(*a)._asdict() for a in _mark(m).actions]}
        for m in t.states
    ]
    return out


# --- statistics --------------------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits) + 0.0  # + 0.0: no -0.0 in the JSON


def summarize(trades: Sequence[TradeResult]) -> dict[str, Any]:
    """Trades, win rate, average win/loss (R and money), expectancy, profit factor, drawdown, exit reasons.

    A win is a trade with positive profit. The profit factor is gross win / gross loss (None without a
    loss); the drawdown is the largest fall of the closed-trade equity from its running peak (start 0),
    trades taken in exit order.
    """
    wins = [t for t in trades if t.profit > 0]
    losses = [t for t in trades if t.profit < 0]
    gross_win = sum(t.profit for t in wins)
    gross_loss = -sum(t.profit for t in losses)
    equity = peak = drawdown = 0.0
    for t in sorted(trades, key=lambda t: (t.exit_at, t.n)):
        equity += t.profit
        peak = max(peak, equity)
        drawdown = max(drawdown, peak - equity)
    return {
        "trades": len(trades),
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": _round(len(wins) / len(trades), 4) if trades else None,
        "avg_win_r": _round(_mean([t.r for t in wins]), 4),
        "avg_loss_r": _round(_mean([t.r for t in losses]), 4),
        "avg_win": _round(_mean([t.profit for t in wins]), 2),
        "avg_loss": _round(_mean([t.profit for t in losses]), 2),
        "expectancy_r": _round(_mean([t.r for t in trades]), 4),
        "expectancy": _round(_mean([t.profit for t in trades]), 2),
        "profit_factor": _round(gross_win / gross_loss, 3) if gross_loss > 0 else None,
        "net_profit": _round(sum(t.profit for t in trades), 2),
        "max_drawdown": _round(drawdown, 2),
        "exits": dict(sorted(Counter(t.exit_reason for t in trades).items())),
    }


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def time_in_states(trades: Iterable[TradeResult]) -> dict[str, Any]:
    """Seconds (and share) the managed trades spent in each state, from entry to exit."""
    totals = dict.fromkeys(STATES, 0.0)
    for t in trades:
        marks = [*_marks(t), (t.exit_at, "")]
        for (start, state), (end, _) in pairwise(marks):
            if state in totals:  # CLOSED before the last leg's exit is no state to spend time in
                totals[state] += max(0.0, _seconds(start, end))
    whole = sum(totals.values())
    return {
        s: {"seconds": round(v, 1), "share": round(v / whole, 4) if whole else 0.0} for s, v in totals.items()
    }


def _rule_order(rule: str) -> tuple[int, int, str]:
    """T0 … T10 in the spec's order, then the other rules (external_close) by name."""
    if rule[:1] == "T" and rule[1:].isdigit():
        return (0, int(rule[1:]), rule)
    return (1, 0, rule)


def transition_counts(trades: Iterable[TradeResult]) -> dict[str, Any]:
    """The journaled transitions of the managed trades, from their timelines, by rule and by status.

    `state_machine` counts the rules T0 … T10, which is what the engine counts as `transitions` (a deep
    check's step); `external_close` transitions (the position closed at the broker) are journaled but not
    counted there. The notifier emits two `state_transition` events per journaled transition, one as it
    begins (pending) and one as it is applied or abandoned, so `events` is 2 x `journaled` - `pending`.
    """
    rules: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for t in trades:
        for m in map(_mark, t.states):
            if m.status is not None:
                rules[m.rule or "unknown"] += 1
                statuses[m.status] += 1
    journaled = sum(statuses.values())
    return {
        "journaled": journaled,
        "state_machine": sum(n for r, n in rules.items() if _rule_order(r)[0] == 0),
        "by_rule": {r: rules[r] for r in sorted(rules, key=_rule_order)},
        "by_status": dict(sorted(statuses.items())),
        "events": 2 * journaled - statuses["pending"],
    }


def action_counts(trades: Iterable[TradeResult]) -> dict[str, dict[str, int]]:
    """Journal rows of the managed run per action type and final status."""
    counts: dict[str, Counter[str]] = {}
    for t in trades:
        for _, kind, status in t.actions:
            counts.setdefault(kind, Counter())[status] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(counts.items())}


def percentiles(values: Sequence[float], digits: int = 8) -> dict[str, float] | None:
    """p50 … p99 and the maximum of `values` (None when empty), rounded for a stable report."""
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    out = {f"p{p}": round(float(np.percentile(arr, p)), digits) for p in PERCENTILES}
    out["max"] = round(float(arr.max()), digits)
    return out


# --- text --------------------------------------------------------------------------------------------------


def _num(value: Any, fmt: str, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:{fmt}}{suffix}"


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


_ROWS: Final = (
    ("trades", "trades", "d"),
    ("win rate", "win_rate", ".1%"),
    ("avg win (R)", "avg_win_r", "+.2f"),
    ("avg loss (R)", "avg_loss_r", "+.2f"),
    ("avg win", "avg_win", "+,.2f"),
    ("avg loss", "avg_loss", "+,.2f"),
    ("expectancy (R)", "expectancy_r", "+.3f"),
    ("expectancy", "expectancy", "+,.2f"),
    ("profit factor", "profit_factor", ".2f"),
    ("net profit", "net_profit", "+,.2f"),
    ("max drawdown", "max_drawdown", ",.2f"),
)


def render(report: Report, *, trades: bool = True) -> str:
    """The report for people: the managed and baseline columns side by side, then states, actions, VWAP,
    the engine's counts and (with `trades`) every trade: both exits and the managed timeline."""
    m, b, meta = report.managed, report.baseline, report.meta
    lines = [
        f"dtms replay: {meta['symbol']} {meta['base_timeframe']} bars, engine {'/'.join(meta['timeframes'])}",
        f"period: {meta['start']} → {meta['end']} ({meta['bars']} bars after a warm-up of {meta['warmup']} "
        f"{meta['timeframes'][1]} bars)",
        f"entries: {meta['entries']['text']}; {meta['entries']['opened']} opened, "
        f"{len(meta['entries']['rejected'])} rejected",
    ]
    adjusted = meta.get("config_adjusted") or {}
    if adjusted:
        lines.append("adjusted for the timeframes: " + ", ".join(f"{k} = {v:g}" for k, v in adjusted.items()))
    lines += [f"warning: {w}" for w in meta.get("warnings") or ()]
    lines.append("")
    sides = [("managed", m), ("baseline", b)]
    sides += [(name, c.summary) for name, c in report.comparisons.items()]
    rows = [("", *(name for name, _ in sides))]
    rows += [(label, *(_num(side[key], fmt) for _, side in sides)) for label, key, fmt in _ROWS]
    for reason in sorted({r for _, side in sides for r in side["exits"]}):
        rows.append((f"exits: {reason}", *(str(side["exits"].get(reason, 0)) for _, side in sides)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += [
        "  ".join([r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))])
        for r in rows
    ]
    lines += _render_comparisons(report)
    lines += ["", "time in state (managed)"]
    for state, v in report.states.items():
        if v["seconds"]:
            lines.append(f"  {state:<16} {_duration(v['seconds']):>10}  {v['share']:6.1%}")
    lines += ["", "actions (managed)"]
    for kind, statuses in report.actions.items():
        lines.append(f"  {kind:<18} " + "  ".join(f"{s} {n}" for s, n in statuses.items()))
    if not report.actions:
        lines.append("  none")
    lines += ["", *_render_vwap(report.vwap_slope)]
    e, w = report.engine, report.timing or {}
    tc = report.transitions
    lines += [
        "",
        f"engine: {e['deep_checks']} deep checks, {e['transitions']} transitions (T0-T10); "
        f"{e['bar_trade_steps']} bar x open-trade steps",
        f"journaled transitions: {tc['journaled']} "
        f"({', '.join(f'{r} {n}' for r, n in tc['by_rule'].items()) or 'none'}; "
        f"{', '.join(f'{s} {n}' for s, n in tc['by_status'].items()) or 'none'}); "
        f"{e['events'].get('state_transition', 0)} state_transition events (one as each begins, "
        "one as it is applied or abandoned)",
    ]
    if w:
        lines.append(
            f"work: {int(w.get('ticks_run', 0))} ticks run, {int(w.get('fast_checks', 0))} fast checks; "
            f"{w.get('wall_s', 0.0):.2f} s"
        )
    if trades and report.trades:
        lines += ["", "trades (managed timeline: time, state, rule, reason, broker actions)"]
        for managed, unmanaged in report.trades:
            lines += _render_trade(managed, unmanaged)
    return "\n".join(lines) + "\n"


_DIFFS: Final = (("expectancy", "expectancy_r", "+.3f"), ("avg loss", "avg_loss_r", "+.2f"))


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _render_comparisons(report: Report) -> list[str]:
    """What each comparison rule did, its requests to the terminal, and managed - rule in R."""
    if not report.comparisons:
        return []
    lines = ["", "comparisons: the same entries, fills and price path under one-line rules (managed - rule)"]
    m = report.managed
    for name, c in report.comparisons.items():
        o = c.orders
        diff = [f"{label} {_num(_minus(m[key], c.summary[key]), fmt)}" for label, key, fmt in _DIFFS]
        lines.append(f"  {name}: {c.rule}")
        drawdown = _num(_minus(m["max_drawdown"], c.summary["max_drawdown"]), "+,.2f")
        lines.append(
            f"    managed - rule: {', '.join(diff)} R, max drawdown {drawdown}; SL moves {o['sl_moves']} "
            f"(refused {o['sl_refused']}), closes {o['closes']} (refused {o['close_refused']})"
        )
    return lines


def _clock(text: str) -> str:
    """`2026-01-06T09:28:38.261+00:00` as `01-06 09:28:38` (the report's times are UTC)."""
    return datetime.fromisoformat(text).strftime("%m-%d %H:%M:%S")


def _exit(t: TradeResult) -> str:
    return f"{t.exit_reason} {_clock(t.exit_at)} {t.r:+.2f} R {t.profit:+,.2f}"


def _render_trade(m: TradeResult, b: TradeResult) -> list[str]:
    lines = [
        f"  {m.n:>3} {m.direction:<4} {m.volume:g} at {m.entry_price:g} {_clock(m.entry_at)}  "
        f"managed: {_exit(m)}  baseline: {_exit(b)}"
    ]
    for mark in map(_mark, m.states):
        acts = ", ".join(
            " ".join(x for x in (a.action, "" if a.leg == "main" else a.leg, a.status) if x)
            + (f" ({a.note})" if a.note else "")
            for a in (ActionMark(*x) for x in mark.actions)
        )
        status = f" [{mark.status}]" if mark.status not in (None, "applied") else ""
        parts = [f"{_clock(mark.at)}  {mark.state:<15} {mark.rule or '':<5}", (mark.reason or "") + status]
        if acts:
            parts.append(acts)
        lines.append(("      " + "  ".join(parts)).rstrip())
    return lines


def _render_vwap(v: dict[str, Any]) -> list[str]:
    def fmt(p: dict[str, float] | None) -> str:
        return "n/a" if p is None else "  ".join(f"{k} {val:.6f}" for k, val in p.items())

    lines = [f"VWAP slope ({v['timeframe']} bars, |slope| as a fraction of VWAP; base threshold {v['base']})"]
    lines.append(f"  all {v['bars']} bars: {fmt(v['abs'])}")
    share = v["share_at_or_above"]
    lines.append("  share at or above: " + "  ".join(f"{k} {val:.1%}" for k, val in share.items()))
    obs = v["engine"]
    lines.append(f"  seen by the engine ({obs['bars']} bars): {fmt(obs['abs'])}")
    lines.append(
        f"  adaptive thresholds: {fmt(obs['thresholds'])}; at or above: "
        f"{_num(obs['share_at_or_above'], '.1%')}"
    )
    return lines


# --- plot --------------------------------------------------------------------------------------------------

#: A pause between bars longer than this many bar intervals is a closed market (a weekend, a session break).
_GAP_BARS: Final = 3
#: Candidate spacings of the time ticks, seconds; the smallest giving at most `_TICKS` ticks is used.
_TICK_STEPS: Final = (300, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400, 172800, 604800)
_TICKS: Final = 10


class _Axis:
    """Bar number as the x-axis: trading time at an even pace, a closed market (weekend) takes no room.

    Bar `i` opens at x = i; a time inside a bar lies proportionally between i and i + 1, a time in a gap at
    the end of the last bar before it. The ticks are labelled with the bars' times (UTC).
    """

    def __init__(self, times: npt.NDArray[np.int64], bar_s: int) -> None:
        self.times, self.bar_s = times, max(1, bar_s)
        #: Indices of the first bar after each closed market.
        self.gaps = np.flatnonzero(np.diff(times) > _GAP_BARS * self.bar_s) + 1

    def x(self, when: str | datetime | float) -> float:
        """The x of a time (an ISO string, a datetime or epoch seconds)."""
        if isinstance(when, str):
            when = datetime.fromisoformat(when)
        t = when.timestamp() if isinstance(when, datetime) else float(when)
        n = len(self.times)
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        if i < 0:
            return 0.0
        return min(float(n), i + min(1.0, (t - float(self.times[i])) / self.bar_s))

    def ticks(self) -> tuple[list[int], list[str]]:
        """Ticks on the bars that open at round times (every 5 min … 1 week, at most about `_TICKS` of
        them, none crowding the one before), and their labels."""
        times = self.times
        if not len(times):
            return [], []
        step = next((s for s in _TICK_STEPS if len(times) * self.bar_s / s <= _TICKS), _TICK_STEPS[-1])
        origin = 4 * 86400 if step == 604800 else 0  # weeks from a Monday (1970-01-05)
        round_ = np.flatnonzero((times - origin) % step == 0)
        crossings = np.flatnonzero(np.diff((times - origin) // step) != 0) + 1
        where: list[int] = []
        for i in (round_ if len(round_) else crossings).tolist():
            if not where or i - where[-1] >= 0.5 * step / self.bar_s:
                where.append(i)
        labels, day = [], None
        for i in where:
            at = datetime.fromtimestamp(int(times[i]), UTC)
            if step >= 86400:
                labels.append(at.strftime("%a %d %b"))
            else:
                labels.append(at.strftime("%H:%M" if at.date() == day else "%d %b\n%H:%M"))
            day = at.date()
        return where, labels


def figure(report: Report, trade: int | None = None) -> Any:
    """The plot as a matplotlib `Figure` (no pyplot, no backend change): price with entries, the managed
    and the baseline exits, the SL path and the state as colour bands, against bar number (a weekend or
    any other closed market takes no room; the ticks show the bars' UTC times, a dotted line each gap).

    `trade` is an entry number (`TradeResult.n`) for one trade, or None for the whole run (then the bands
    show the worst state of the trades open at each moment).

    Raises:
        ExtraNotInstalledError: matplotlib is missing (`pip install 'dtms[plot]'`).
        InvalidArgumentError: no bars attached to the report, or no trade with that number.
    """
    try:
        import matplotlib  # noqa: F401  # first: a submodule imported earlier would be found without it
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ExtraNotInstalledError("plotting needs matplotlib: pip install 'dtms[plot]'") from exc
    if report.bars is None:
        raise InvalidArgumentError("this report carries no bars to plot (plot the Report replay() returned)")
    pairs = list(report.trades)
    if trade is not None:
        pairs = [p for p in pairs if p[0].n == trade]
        if not pairs:
            raise InvalidArgumentError(f"no trade number {trade} in this report (1 … {len(report.trades)})")
    bars = report.bars
    bar_s = int(np.diff(bars["time"]).min(initial=60))
    lo, hi = _span(report, pairs[0] if trade is not None else None)
    sel = bars[(bars["time"] >= lo) & (bars["time"] <= hi)]
    axis = _Axis(np.asarray(sel["time"], dtype=np.int64), bar_s)
    fig = Figure(figsize=(13, 6.5))
    ax, strip = fig.subplots(2, 1, sharex=True, height_ratios=(12, 1))
    xs = np.arange(len(sel), dtype=np.float64)
    close = np.asarray(sel["close"], dtype=np.float64)
    # Break the line over closed markets (weekends, sessions) instead of joining across them.
    cut = axis.gaps
    ax.plot(np.insert(xs, cut, xs[cut] - 0.5), np.insert(close, cut, np.nan), color="#404040", lw=0.7,
            label="close (bid)")  # fmt: skip
    if len(sel) <= 600:
        ax.fill_between(xs, sel["low"], sel["high"], color="#bdbdbd", alpha=0.5, lw=0, step="mid")
    for m, b in pairs:
        _draw_trade(ax, axis, m, b, single=trade is not None)
    _draw_states(strip, axis, [m for m, _ in pairs])
    for x in cut:
        for a in (ax, strip):
            a.axvline(x - 0.5, color="#737373", lw=0.6, ls=":")
    what = f" trade {trade}" if trade is not None else f": {len(pairs)} trades"
    ax.set_title(f"dtms replay, {report.meta['symbol']}{what}")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    strip.set_yticks([])
    where, labels = axis.ticks()
    strip.set_xticks(where, labels, fontsize=8)
    strip.set_xlim(-0.5, max(0.5, len(sel) - 0.5))
    fig.tight_layout()
    return fig


def plot(report: Report, path: str | os.PathLike[str], trade: int | None = None) -> None:
    """Draw `figure(report, trade)` into a PNG at `path`.

    Raises:
        ExtraNotInstalledError: matplotlib is missing (`pip install 'dtms[plot]'`).
        InvalidArgumentError: no bars attached to the report, or no trade with that number.
    """
    figure(report, trade).savefig(os.fspath(path), dpi=110)


def _span(report: Report, pair: tuple[TradeResult, TradeResult] | None) -> tuple[int, int]:
    """Epoch seconds to show: the trade up to the later of its two exits with some context, or the run."""
    if pair is None:
        return _epoch(report.meta["start"]), _epoch(report.meta["end"])
    m, b = pair
    start, end = _epoch(m.entry_at), max(_epoch(m.exit_at), _epoch(b.exit_at))
    pad = max(1800, (end - start) // 4)
    return start - pad, end + pad


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _draw_trade(ax: Any, axis: _Axis, t: TradeResult, b: TradeResult, *, single: bool) -> None:
    """One trade: its entry, the managed exits (every leg), the baseline exit, the SL path and the TP."""
    marker, colour = ("^", "#1a9850") if t.direction == "BUY" else ("v", "#d73027")
    size = 1.0 if single else 0.4
    ax.scatter([axis.x(t.entry_at)], [t.entry_price], marker=marker, color=colour, s=40 * size, zorder=5,
               label="entry" if single else None)  # fmt: skip
    if t.exits:
        ax.scatter([axis.x(e[0]) for e in t.exits], [e[1] for e in t.exits], marker="x", color="black",
                   s=36 * size, zorder=6, label="exit (managed)" if single else None)  # fmt: skip
    if b.exit_reason != "rejected":
        ax.scatter([axis.x(b.exit_at)], [b.exit_price], marker="o", facecolors="none", edgecolors="#2166ac",
                   s=44 * size, lw=1.0, zorder=6, label="exit (baseline)" if single else None)  # fmt: skip
    if single:
        for who, x, price, reason in (
            ("managed", axis.x(t.exit_at), t.exit_price, t.exit_reason),
            ("baseline", axis.x(b.exit_at), b.exit_price, b.exit_reason),
        ):
            ax.annotate(f"{who}: {reason}", (x, price), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if t.sl_path:
        xs = [*(axis.x(p[0]) for p in t.sl_path), axis.x(t.exit_at)]
        ys = [*(p[1] for p in t.sl_path), t.sl_path[-1][1]]
        ax.step(
            xs,
            ys,
            where="post",
            color="#b2182b",
            lw=1.2 if single else 0.6,
            label="SL" if single else None,
        )
    last = max(axis.x(t.exit_at), axis.x(b.exit_at))
    if single and t.sl and axis.x(b.exit_at) > axis.x(t.exit_at):
        ax.hlines(t.sl, axis.x(t.exit_at), axis.x(b.exit_at), color="#b2182b", lw=0.8, linestyles="dotted",
                  label="SL (baseline)")  # fmt: skip
    if single and t.tp:
        ax.hlines(t.tp, axis.x(t.entry_at), last, color="#2166ac", lw=1.0, linestyles="dashed", label="TP")


def _draw_states(strip: Any, axis: _Axis, trades: Sequence[TradeResult]) -> None:
    """Colour bands of the states; with several trades the worse state is drawn over the better one."""
    segments: list[tuple[int, float, float]] = []
    for t in trades:
        marks = [*_marks(t), (t.exit_at, "")]
        for (start, state), (end, _) in pairwise(marks):
            if state in STATES:
                segments.append((STATES.index(state), axis.x(start), axis.x(end)))
    for rank, begin, until in sorted(segments, key=lambda s: s[0]):
        strip.axvspan(begin, until, color=STATE_COLOURS[STATES[rank]], lw=0)
    handles = [strip.fill_between([], [], color=STATE_COLOURS[s], label=s) for s in STATES]
    strip.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.9),
        ncol=len(STATES),
        fontsize=7,
        frameon=False,
    )
    strip.set_ylim(0, 1)


__all__ = [
    "ARMED",
    "STATES",
    "ActionMark",
    "Comparison",
    "Report",
    "StateMark",
    "TradeResult",
    "action_counts",
    "figure",
    "percentiles",
    "plot",
    "render",
    "summarize",
    "time_in_states",
    "transition_counts",
]
