"""Replay reports: per-trade results, managed-vs-baseline statistics, JSON, a text table and the PNG plot."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dtms.errors import ExtraNotInstalledError

#: States in order of trouble, for the colour bands and the whole-run strip (the worst state shows on top).
STATES: Final = ("HEALTHY (armed)", "HEALTHY", "RECOVERING", "WARNING_L1", "WARNING_L2", "HEDGED")
STATE_COLOURS: Final = {
    "HEALTHY (armed)": "#d9d9d9",
    "HEALTHY": "#a6dba0",
    "RECOVERING": "#92c5de",
    "WARNING_L1": "#fee08b",
    "WARNING_L2": "#fdae61",
    "HEDGED": "#d73027",
}
PERCENTILES: Final = (50, 75, 90, 95, 99)


@dataclass(frozen=True)
class TradeResult:
    """One entry's fate in one run; money in the account currency, R against the entry's initial risk.

    `risk` is the money one R is worth: |entry - SL| at the entry volume (for an entry without SL, the
    ATR-based R the engine uses). `profit` adds every leg dtms opened for the trade (hedge, re-adds).
    The timelines (`states`, `sl_path`, `exits`, `actions`) are filled for the managed run only.
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
    states: tuple[tuple[str, str], ...] = ()  # (from, state): HEALTHY (armed) first, then applied transitions
    sl_path: tuple[tuple[str, float], ...] = ()  # (from, SL) on the main position
    exits: tuple[tuple[str, float, float, str, str], ...] = ()  # (at, price, volume, leg, reason)
    actions: tuple[tuple[str, str, str], ...] = ()  # (at, action_type, status)


@dataclass(frozen=True)
class Report:
    """What `dtms.replay.replay` found: the same entries managed by dtms and left alone (the baseline).

    Everything in it derives from the inputs, so the same inputs give a byte-identical `to_json()`.
    `bars` (for `plot`) and `timing` (wall-clock figures) are attached but never serialised.
    """

    meta: dict[str, Any]
    managed: dict[str, Any]
    baseline: dict[str, Any]
    states: dict[str, Any]
    actions: dict[str, dict[str, int]]
    vwap_slope: dict[str, Any]
    engine: dict[str, Any]
    trades: tuple[tuple[TradeResult, TradeResult], ...]  # (managed, baseline) per opened entry
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
            "trades": [{"managed": asdict(m), "baseline": asdict(b)} for m, b in self.trades],
        }

    def to_json(self) -> str:
        """Stable JSON (sorted keys, fixed rounding) for machines and for comparing runs byte for byte."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"


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
        marks = [*t.states, (t.exit_at, "")]
        for (start, state), (end, _) in pairwise(marks):
            if state in totals:  # CLOSED before the last leg's exit is no state to spend time in
                totals[state] += max(0.0, _seconds(start, end))
    whole = sum(totals.values())
    return {
        s: {"seconds": round(v, 1), "share": round(v / whole, 4) if whole else 0.0} for s, v in totals.items()
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


def render(report: Report) -> str:
    """The report for people: the managed and baseline columns side by side, then states, actions, VWAP."""
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
    rows = [("", "managed", "baseline")]
    rows += [(label, _num(m[key], fmt), _num(b[key], fmt)) for label, key, fmt in _ROWS]
    for reason in sorted(set(m["exits"]) | set(b["exits"])):
        rows.append((f"exits: {reason}", str(m["exits"].get(reason, 0)), str(b["exits"].get(reason, 0))))
    width = max(len(r[0]) for r in rows)
    cols = [max(len(r[i]) for r in rows) for i in (1, 2)]
    lines += [f"{r[0]:<{width}}  {r[1]:>{cols[0]}}  {r[2]:>{cols[1]}}" for r in rows]
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
    lines += [
        "",
        f"engine: {e['deep_checks']} deep checks, {e['transitions']} transitions; "
        f"{e['bar_trade_steps']} bar x open-trade steps",
    ]
    if w:
        lines.append(
            f"work: {int(w.get('ticks_run', 0))} ticks run, {int(w.get('fast_checks', 0))} fast checks; "
            f"{w.get('wall_s', 0.0):.2f} s"
        )
    return "\n".join(lines) + "\n"


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


def _times(values: Iterable[str]) -> list[datetime]:
    return [datetime.fromisoformat(v) for v in values]


def plot(report: Report, path: str | os.PathLike[str], trade: int | None = None) -> None:
    """Draw price with entries and exits, the SL path and the state as colour bands into a PNG at `path`.

    `trade` is an entry number (`TradeResult.n`) for one trade, or None for the whole run (then the bands
    show the worst state of the trades open at each moment).

    Raises:
        ExtraNotInstalledError: matplotlib is missing (`pip install 'dtms[plot]'`).
        InvalidArgumentError: no bars attached to the report, or no trade with that number.
    """
    from dtms.errors import InvalidArgumentError

    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ExtraNotInstalledError("plotting needs matplotlib: pip install 'dtms[plot]'") from exc
    if report.bars is None:
        raise InvalidArgumentError("this report carries no bars to plot (plot the Report replay() returned)")
    managed = [m for m, _ in report.trades]
    if trade is not None:
        managed = [m for m in managed if m.n == trade]
        if not managed:
            raise InvalidArgumentError(f"no trade number {trade} in this report (1 … {len(report.trades)})")
    bars = report.bars
    lo, hi = _span(report, managed if trade is not None else None)
    sel = bars[(bars["time"] >= lo) & (bars["time"] <= hi)]
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(13, 6.5), sharex=True, height_ratios=(12, 1))
    try:
        when = np.asarray(sel["time"], dtype="datetime64[s]")
        close = np.asarray(sel["close"], dtype=np.float64)
        # Break the line over closed markets (weekends, sessions) instead of drawing a ramp across them.
        cut = np.flatnonzero(np.diff(sel["time"]) > 3 * int(np.diff(bars["time"]).min(initial=60))) + 1
        ax.plot(
            np.insert(when, cut, when[cut - 1]),
            np.insert(close, cut, np.nan),
            color="#404040",
            lw=0.7,
            label="close (bid)",
        )
        if len(sel) <= 600:
            ax.fill_between(when, sel["low"], sel["high"], color="#bdbdbd", alpha=0.5, lw=0, step="mid")
        for m in managed:
            _draw_trade(ax, m, single=trade is not None)
        _draw_states(strip, managed)
        title = report.meta["symbol"] + (
            f" trade {trade}" if trade is not None else f": {len(managed)} trades"
        )
        ax.set_title(f"dtms replay, {title}")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
        strip.set_yticks([])
        locator = strip.xaxis.get_major_locator()
        strip.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        fig.tight_layout()
        fig.savefig(os.fspath(path), dpi=110)
    finally:
        plt.close(fig)


def _span(report: Report, trades: Sequence[TradeResult] | None) -> tuple[int, int]:
    """Epoch seconds to show: the trade with some context either side, or the whole run."""
    if trades is None:
        return _epoch(report.meta["start"]), _epoch(report.meta["end"])
    t = trades[0]
    start, end = _epoch(t.entry_at), _epoch(t.exit_at)
    pad = max(1800, (end - start) // 4)
    return start - pad, end + pad


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _draw_trade(ax: Any, t: TradeResult, *, single: bool) -> None:
    marker, colour = ("^", "#1a9850") if t.direction == "BUY" else ("v", "#d73027")
    ax.scatter(
        _times([t.entry_at]),
        [t.entry_price],
        marker=marker,
        color=colour,
        s=40 if single else 18,
        zorder=5,
        label="entry" if single else None,
    )
    if t.exits:
        ax.scatter(
            _times(e[0] for e in t.exits),
            [e[1] for e in t.exits],
            marker="x",
            color="black",
            s=36 if single else 12,
            zorder=5,
            label="exits" if single else None,
        )
    if t.sl_path:
        xs = [*_times(p[0] for p in t.sl_path), datetime.fromisoformat(t.exit_at)]
        ys = [*(p[1] for p in t.sl_path), t.sl_path[-1][1]]
        ax.step(
            xs, ys, where="post", color="#b2182b", lw=1.2 if single else 0.6, label="SL" if single else None
        )
    if single and t.tp:
        ax.hlines(
            t.tp,
            datetime.fromisoformat(t.entry_at),
            datetime.fromisoformat(t.exit_at),
            color="#2166ac",
            lw=1.0,
            linestyles="dashed",
            label="TP",
        )


def _draw_states(strip: Any, trades: Sequence[TradeResult]) -> None:
    """Colour bands of the states; with several trades the worse state is drawn over the better one."""
    segments: list[tuple[int, datetime, datetime]] = []
    for t in trades:
        marks = [*t.states, (t.exit_at, "")]
        for (begin, state), (stop, _) in pairwise(marks):
            if state in STATES:
                segments.append(
                    (STATES.index(state), datetime.fromisoformat(begin), datetime.fromisoformat(stop))
                )
    for rank, when, until in sorted(segments, key=lambda s: s[0]):
        strip.axvspan(when, until, color=STATE_COLOURS[STATES[rank]], lw=0)
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
    "STATES",
    "Report",
    "TradeResult",
    "action_counts",
    "percentiles",
    "plot",
    "render",
    "summarize",
    "time_in_states",
]
