"""The comparisons: the baseline's entries under one-line rules a trader would otherwise use (issue #13).

Each rule runs on its own simulated terminal, opened as the baseline's (`dtms.replay.rig.open_terminal`), so
fills, spread and the intra-bar price path are the baseline's; the entries are opened exactly as the baseline
opens them. The rule then reads the data's own bars (the finest the terminal has) and acts only on closed
bars: whatever bar `b` shows is acted on at the open of bar `b + 1` (the first moment the market quotes after
`b` closed), through `MT5Broker.modify_sl_tp` / `MT5Broker.close`, so the terminal's rules (stops level,
freeze level, market hours) apply. A refused request is counted and listed, and tried again at the next bar.

- `breakeven_1r`: once a closed bar has traded at or beyond entry + 1 R (high for a BUY, low for a SELL), SL
  to the entry price, once. R = |entry - initial SL| (no SL: the ATR-based R of the report's risk).
- `chandelier_2atr`, `chandelier_3atr`: SL = highest high since entry - k x ATR14 (BUY; lowest low + k x ATR
  for a SELL), ATR of the data's bars (Wilder, `dtms.engine.indicators.atr`), only ever tightened, so never
  looser than the initial SL.
- `time_stop`: close at market once `time_stop_bars` bars (entry bar included) have closed.

Every rule keeps the entry's TP. Bars are bid prices, as the chart shows them; the terminal fires a SELL's SL
on the ask, as MetaTrader does.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dtms.broker.base import Handling, Outcome, SymbolSpec
from dtms.engine import indicators as ind
from dtms.errors import InvalidArgumentError
from dtms.replay.inputs import REPLAY_MAGIC
from dtms.replay.results import RULE_CLOSE_PREFIX, rejected_result, trade_result
from dtms.replay.rig import Opened, Plan, open_terminal, utc
from dtms.report import Comparison, TradeResult, summarize

#: The comparison rules, in report order.
COMPARISONS: Final = ("breakeven_1r", "chandelier_2atr", "chandelier_3atr", "time_stop")
#: Bars of the data a time-stopped trade is given. The same number on every timeframe: every comparison
#: counts in bars of the data (ATR14, the highest high since entry), and the generated entries' SL and TP
#: scale with the bars too. 20 bars is an ATR window and a half, four trading weeks of D1 bars (the common
#: "give it a month"); set `time_stop_bars` to the horizon your entries are meant for.
TIME_STOP_BARS: Final = 20
ATR_PERIOD: Final = 14  # the chandelier's ATR, Wilder-smoothed as the engine's
_CHANDELIER: Final = {"chandelier_2atr": 2.0, "chandelier_3atr": 3.0}
_CHUNK: Final = 256  # bars of a trade's future searched at once; doubled while nothing is found

_ACT, _OPEN = 0, 1  # at equal times: act on open positions, then open new ones


def comparisons(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The comparison names chosen by `value`, in report order: None or `"all"` = all four; `"none"` or
    `()` = none; otherwise names (a sequence, or one string of comma-separated names).

    Raises:
        InvalidArgumentError: an unknown or repeated name (the message lists the valid ones).
    """
    if value is None:
        return COMPARISONS
    items = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidArgumentError(f"comparison names must be strings, not {item!r}")
        if item.strip():
            names.append(item.strip().lower())
    if names == ["none"]:
        return ()
    if names == ["all"]:
        return COMPARISONS
    valid = ", ".join(COMPARISONS)
    for name in names:
        if name not in COMPARISONS:
            raise InvalidArgumentError(f"unknown comparison {name!r}: choose from {valid} (or all, or none)")
        if names.count(name) > 1:
            raise InvalidArgumentError(f"comparison {name!r} is listed twice")
    return tuple(n for n in COMPARISONS if n in names)


def describe(name: str, time_stop_bars: int, timeframe: str) -> str:
    """One line saying what the rule does, for the report."""
    if name == "breakeven_1r":
        return "SL to the entry price once a closed bar has traded at +1 R (once)"
    if name in _CHANDELIER:
        k = _CHANDELIER[name]
        return (
            f"SL trails the highest high (BUY) / lowest low (SELL) since entry by {k:g} x ATR{ATR_PERIOD}"
            f"({timeframe}), after each closed bar, tighten only"
        )
    return f"close at market after {time_stop_bars} {timeframe} bars"


def compare(
    plan: Plan, opened: Sequence[Opened], names: Sequence[str], *, time_stop_bars: int, timeframe: str
) -> tuple[dict[str, Comparison], dict[str, float]]:
    """Every rule of `names` over the opened entries; the comparisons and their seconds (per rule)."""
    out, timing = {}, {}
    bars = _Bars(plan)
    for name in names:
        t0 = time.perf_counter()
        out[name] = _Run(plan, bars, name, time_stop_bars, timeframe).run(opened)
        timing[f"compare_{name}_s"] = time.perf_counter() - t0
    return out, timing


class _Bars:
    """The data's bars as the rules read them: UTC open times, highs, lows and ATR14 (NaN before it)."""

    def __init__(self, plan: Plan) -> None:
        r = plan.rates
        self.t_ms: npt.NDArray[np.int64] = (r["time"].astype(np.int64) - plan.offset) * 1000
        self.high = r["high"].astype(np.float64)
        self.low = r["low"].astype(np.float64)
        self.atr = ind.atr(self.high, self.low, r["close"].astype(np.float64), ATR_PERIOD, "wilder")
        self.n = len(r)

    def index(self, t_ms: int) -> int:
        """The bar opened at or before `t_ms` (an entry's bar)."""
        return int(np.searchsorted(self.t_ms, t_ms, side="right")) - 1


@dataclass
class _Trade:
    """One entry under the rule: its position, the bar it opened in, its SL now and what the rule wants."""

    opened: Opened
    pid: int
    buy: bool
    k0: int
    price: float
    tp: float | None
    sl: float | None
    r: float  # one R in price
    sl_path: list[tuple[str, float]]
    stops: npt.NDArray[np.float64] | None = None  # chandelier: the tighten-only SL after each bar from k0
    running: tuple[float, float] = (0.0, 0.0)  # chandelier: (best price, tightest stop) at the end of `stops`


class _Run:
    """One rule over every entry, on its own terminal, in time order across the trades."""

    def __init__(self, plan: Plan, bars: _Bars, name: str, time_stop_bars: int, timeframe: str) -> None:
        self.plan, self.bars, self.name, self.n_bars = plan, bars, name, time_stop_bars
        self.timeframe = timeframe
        self.term, self.broker = open_terminal(plan)
        self.spec: SymbolSpec = self.broker.symbol(plan.symbol)
        self.half = (self.spec.tick_size or self.spec.point) / 2
        self.k = _CHANDELIER.get(name, 0.0)
        self.queue: list[tuple[int, int, int, int]] = []  # (UTC ms, _ACT/_OPEN, entry index, bar index)
        self.trades: list[_Trade | None] = []
        self.counts = {"sl_moves": 0, "sl_refused": 0, "closes": 0, "close_refused": 0}
        self.refused: list[dict[str, Any]] = []

    def run(self, opened: Sequence[Opened]) -> Comparison:
        plan, now_ms = self.plan, self.plan.start_ms
        for i, o in enumerate(opened):
            heapq.heappush(self.queue, (round(o.entry.at.timestamp() * 1000), _OPEN, i, -1))
        while self.queue:
            t, kind, i, j = heapq.heappop(self.queue)
            if t >= plan.end_ms:
                break
            self.term.advance((t - now_ms) / 1000)
            now_ms = t
            if kind == _OPEN:
                self._open(opened[i])
            else:
                self._act(i, j)
        self.term.advance(max(0, plan.end_ms - now_ms) / 1000)
        end = utc(plan.end_ms)
        positions = {p.identifier: p for p in self.broker.positions()}
        results: list[TradeResult] = []
        for o, tr in zip(opened, self.trades, strict=True):
            if tr is None:
                results.append(rejected_result(o))
                continue
            got = trade_result(
                Opened(o.n, o.entry, tr.pid, o.price, o.risk), self.broker, positions, end, {tr.pid: "main"}
            )
            results.append(dataclasses.replace(got, sl_path=tuple(tr.sl_path)))
        orders: dict[str, Any] = {**self.counts, "refused": self.refused}
        params: dict[str, Any] = {"timeframe": self.timeframe}
        if self.k:
            params.update(atr_period=ATR_PERIOD, atr_multiple=self.k)
        if self.name == "time_stop":
            params["bars"] = self.n_bars
        return Comparison(
            self.name,
            describe(self.name, self.n_bars, self.timeframe),
            params,
            summarize(results),
            orders,
            tuple(results),
        )

    # --- entries ----------------------------------------------------------------------------------------

    def _open(self, o: Opened) -> None:
        """Open the entry as the baseline does; schedule the rule's first look at it."""
        e = o.entry
        out = self.broker.open(
            self.plan.symbol, e.direction, e.volume, sl=e.sl, tp=e.tp, magic=REPLAY_MAGIC, comment="replay"
        )
        if not out.is_done or out.identifier is None:
            self.trades.append(None)  # refused here though the managed run filled it: shown as rejected
            return
        spec = self.spec
        per_price = spec.tick_value / spec.tick_size * e.volume if spec.tick_size else 0.0
        r = abs(out.price - e.sl) if e.sl else (o.risk / per_price if per_price else 0.0)
        k0 = self.bars.index(round(e.at.timestamp() * 1000))
        tr = _Trade(o, out.identifier, e.direction == "BUY", k0, out.price, e.tp, e.sl, r, [])
        if e.sl:
            tr.sl_path.append((e.at.isoformat(), e.sl))
        self.trades.append(tr)
        i = len(self.trades) - 1
        if self.name == "time_stop":
            self._schedule(i, k0 + self.n_bars)
        elif self.name == "breakeven_1r":
            level = out.price + r if tr.buy else out.price - r
            b = self._first(k0, lambda lo, hi: self._reached(tr, level, lo, hi))
            if b is not None:
                self._schedule(i, b + 1)
        else:
            self._next_stop(i, tr, k0 + 1)

    def _schedule(self, i: int, j: int) -> None:
        """Act on entry `i` at the open of bar `j` (nothing when the data ends first)."""
        if j < self.bars.n:
            heapq.heappush(self.queue, (int(self.bars.t_ms[j]), _ACT, i, j))

    def _first(self, start: int, find: Any) -> int | None:
        """The first bar from `start` where `find(lo, hi)` (over bars lo..hi-1) finds one, chunk by chunk."""
        lo, size = start, _CHUNK
        while lo < self.bars.n:
            hi = min(self.bars.n, lo + size)
            hit: int | None = find(lo, hi)
            if hit is not None:
                return hit
            lo, size = hi, size * 2
        return None

    def _reached(self, tr: _Trade, level: float, lo: int, hi: int) -> int | None:
        """The first bar of lo..hi-1 that traded at or beyond `level` in the trade's favour."""
        if tr.buy:
            hits = np.flatnonzero(self.bars.high[lo:hi] >= level - self.half)
        else:
            hits = np.flatnonzero(self.bars.low[lo:hi] <= level + self.half)
        return lo + int(hits[0]) if len(hits) else None

    # --- the chandelier's stops -------------------------------------------------------------------------

    def _stops(self, tr: _Trade, upto: int) -> None:
        """Extend the trade's tighten-only chandelier SL (one value per closed bar from k0) to bar `upto`."""
        have = 0 if tr.stops is None else len(tr.stops)
        lo, hi = tr.k0 + have, min(self.bars.n, upto)
        if hi <= lo:
            return
        b = self.bars
        if tr.buy:
            best = np.maximum.accumulate(b.high[lo:hi])
            if have:
                best = np.maximum(best, tr.running[0])
            raw = np.where(np.isnan(b.atr[lo:hi]), -np.inf, best - self.k * b.atr[lo:hi])
            floor = tr.running[1] if have else (tr.sl if tr.sl else -np.inf)
            stops = np.maximum.accumulate(np.maximum(raw, floor))
        else:
            best = np.minimum.accumulate(b.low[lo:hi])
            if have:
                best = np.minimum(best, tr.running[0])
            raw = np.where(np.isnan(b.atr[lo:hi]), np.inf, best + self.k * b.atr[lo:hi])
            floor = tr.running[1] if have else (tr.sl if tr.sl else np.inf)
            stops = np.minimum.accumulate(np.minimum(raw, floor))
        tr.running = (float(best[-1]), float(stops[-1]))
        tr.stops = stops if tr.stops is None else np.concatenate([tr.stops, stops])

    def _next_stop(self, i: int, tr: _Trade, j_min: int) -> None:
        """Schedule the first bar open from `j_min` at which the chandelier SL is tighter than the SL now."""
        current = tr.sl if tr.sl else (-np.inf if tr.buy else np.inf)

        def find(lo: int, hi: int) -> int | None:
            self._stops(tr, hi)
            assert tr.stops is not None  # noqa: S101  # filled up to hi by _stops
            window = tr.stops[lo - tr.k0 : hi - tr.k0]  # the SL wanted after bars lo..hi-1
            if tr.buy:
                k = int(np.searchsorted(window, current + self.half, side="right"))
            else:  # non-increasing: search the negated values
                k = int(np.searchsorted(-window, -(current - self.half), side="right"))
            return lo + k if k < len(window) else None

        b = self._first(max(tr.k0, j_min - 1), find)
        if b is not None:
            self._schedule(i, b + 1)

    # --- acting -----------------------------------------------------------------------------------------

    def _act(self, i: int, j: int) -> None:
        """At the open of bar `j`: what the rule does with entry `i`, from the bars closed before it."""
        tr = self.trades[i]
        assert tr is not None  # noqa: S101  # only filled entries are scheduled
        at = utc(int(self.bars.t_ms[j])).isoformat()
        if self.name == "time_stop":
            out = self.broker.close(tr.pid, comment=RULE_CLOSE_PREFIX + "time")
            if self._settled(tr, out, at, "close", "closes", "close_refused"):
                return
            self._schedule(i, j + 1)
            return
        if self.name == "breakeven_1r":
            target = self.spec.round_price(tr.price)
        else:
            self._stops(tr, j)  # up to bar j - 1, the last closed one (a retry may pass the chunk)
            assert tr.stops is not None  # noqa: S101  # filled by _stops
            target = self.spec.round_price(float(tr.stops[j - 1 - tr.k0]))
        out = self.broker.modify_sl_tp(tr.pid, target, tr.tp)
        if self._settled(tr, out, at, "sl", "sl_moves", "sl_refused"):
            if out.is_done:
                tr.sl = target
                tr.sl_path.append((at, target))
                if self.k:
                    self._next_stop(i, tr, j + 1)
            return
        self._schedule(i, j + 1)  # refused: the rule still wants it; try again at the next bar

    def _settled(self, tr: _Trade, out: Outcome, at: str, action: str, done: str, refused: str) -> bool:
        """Count the outcome; True when done or the position is gone (closed at its SL or TP before)."""
        if out.is_done:
            self.counts[done] += 1
            return True
        if out.handling is Handling.GONE:
            return True
        self.counts[refused] += 1
        self.refused.append(
            {"n": tr.opened.n, "at": at, "action": action, "retcode": out.retcode, "text": out.text}
        )
        return False


__all__ = ["ATR_PERIOD", "COMPARISONS", "TIME_STOP_BARS", "compare", "comparisons", "describe"]
