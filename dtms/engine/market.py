"""Bar windows per symbol and timeframe: forming vs final bars, gaps, broker time → UTC, session VWAP."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from dtms.broker.rates import RATES_DTYPE
from dtms.errors import ConfigError

#: What a window hands out: UTC open times plus the `final` flag of spec §2.1.
BAR_DTYPE: Final = np.dtype(
    [
        ("time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_volume", "<f8"),
        ("final", "?"),
    ]
)
M5_S: Final = 300
M15_S: Final = 900
_VALUE_FIELDS: Final = ("open", "high", "low", "close", "tick_volume")


class ServerTime:
    """Converts broker server wall-clock epoch seconds to UTC (spec §2.5): fixed offset or IANA zone."""

    def __init__(self, setting: int | str | None) -> None:
        if setting is None:
            raise ConfigError("broker.server_time: required to convert broker times to UTC")
        self._offset = setting if isinstance(setting, int) else None
        self._zone = ZoneInfo(setting) if isinstance(setting, str) else None

    def offset_s(self, server_epoch: int) -> int:
        """Seconds the server clock is ahead of UTC at that server wall time."""
        if self._offset is not None:
            return self._offset
        # NOTE: in a DST fall-back hour the wall time is ambiguous; fold=0 takes the first (summer) reading.
        wall = datetime.fromtimestamp(server_epoch, UTC).replace(tzinfo=self._zone or UTC)
        delta = wall.utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    def to_utc(self, server_times: NDArray[np.int64]) -> NDArray[np.int64]:
        """UTC epoch seconds for an array of server epoch seconds."""
        times = np.asarray(server_times, dtype=np.int64)
        if self._offset is not None:
            return times - self._offset
        # Offsets only change on whole hours, so one lookup per distinct hour is enough.
        hours, inverse = np.unique(times // 3600, return_inverse=True)
        offsets = np.array([self.offset_s(int(h) * 3600) for h in hours], dtype=np.int64)
        return times - offsets[inverse]

    def mismatch(self, tick_server_epoch: int, now: datetime, tolerance_s: float = 120.0) -> bool:
        """Health check (spec §2.5): a fresh tick's server time is > 120 s off the configured offset."""
        observed = tick_server_epoch - now.timestamp()
        return abs(observed - self.offset_s(tick_server_epoch)) > tolerance_s

    def rates_to_utc(self, rates: NDArray[np.void]) -> NDArray[np.void]:
        """A copy of a copy_rates array with `time` converted to UTC."""
        out = np.array(rates, copy=True)
        out["time"] = self.to_utc(out["time"])
        return out


@dataclass(frozen=True)
class Gap:
    """Missing bars between two stored bars: gap_start is the first missing open time, gap_end the next."""

    timeframe_s: int
    gap_start: int
    gap_end: int

    @property
    def duration_s(self) -> int:
        return self.gap_end - self.gap_start


@dataclass(frozen=True)
class MergeResult:
    """What one merge changed: open times appended, revised (final values changed) and of the pending bars."""

    appended: tuple[int, ...] = ()
    revised: tuple[int, ...] = ()
    pending: tuple[int, ...] = ()


class BarWindow:
    """The bounded window of final bars for one symbol and timeframe, plus the bars not yet final.

    Final bars live in a time-sorted array of at most `capacity` rows (oldest dropped first). Bars fetched
    before their close + `partial_bar_delay_s` are held apart as *pending* and replaced by every fetch (the
    original froze the first copy of the forming bar, B-DATA-2); signals, VWAP and regime read `final()` only.
    """

    def __init__(self, timeframe_s: int, capacity: int, partial_bar_delay_s: float = 5.0) -> None:
        self.timeframe_s = timeframe_s
        self.capacity = capacity
        self.partial_bar_delay_s = partial_bar_delay_s
        self._final = np.zeros(0, dtype=BAR_DTYPE)
        self._pending = np.zeros(0, dtype=BAR_DTYPE)

    def __len__(self) -> int:
        return len(self._final)

    def is_closed(self, open_time: int, now: datetime) -> bool:
        """Closed when now ≥ T + I + partial_bar_delay (spec §2.2)."""
        return now.timestamp() >= open_time + self.timeframe_s + self.partial_bar_delay_s

    def final(self) -> NDArray[np.void]:
        """The final bars, oldest first (a read-only view)."""
        view = self._final.view()
        view.flags.writeable = False
        return view

    def pending(self) -> NDArray[np.void]:
        """Bars of the latest fetch that were not yet final when fetched (the forming bar, usually one)."""
        view = self._pending.view()
        view.flags.writeable = False
        return view

    @property
    def newest_final_time(self) -> int | None:
        return int(self._final["time"][-1]) if len(self._final) else None

    def missing_range(self, batch_utc: NDArray[np.void]) -> tuple[int, int] | None:
        """The open-time range to fetch before merging a batch that does not overlap the window (spec §2.3).

        None when the window is empty (that is a backfill) or the batch overlaps or directly follows. The
        range is capped at one window of bars ending just before the batch.
        """
        newest = self.newest_final_time
        if newest is None or len(batch_utc) == 0:
            return None
        oldest = int(np.min(batch_utc["time"]))
        if oldest - newest <= self.timeframe_s:
            return None
        start = max(newest + self.timeframe_s, oldest - self.capacity * self.timeframe_s)
        return start, oldest - self.timeframe_s

    def merge(self, batch_utc: NDArray[np.void], fetched_at: datetime) -> MergeResult:
        """Merge fetched bars (UTC times) by open time: same time → replace; newer → append.

        A bar is final only if `fetched_at` ≥ its close + delay; otherwise it replaces the pending set.
        """
        if len(batch_utc) == 0:
            return MergeResult(pending=tuple(int(t) for t in self._pending["time"]))
        batch = _by_time(np.asarray(batch_utc))
        rows = np.zeros(len(batch), dtype=BAR_DTYPE)
        for name in ("time", *_VALUE_FIELDS):
            rows[name] = batch[name]
        closes_at = rows["time"] + self.timeframe_s + self.partial_bar_delay_s
        is_final = fetched_at.timestamp() >= closes_at
        rows["final"] = is_final
        fresh = rows[is_final]
        self._pending = rows[~is_final]
        appended: list[int] = []
        revised: list[int] = []
        if len(fresh):
            known = self._final["time"]
            idx = np.searchsorted(known, fresh["time"])
            if len(known):
                hit = (idx < len(known)) & (known[np.minimum(idx, len(known) - 1)] == fresh["time"])
            else:
                hit = np.zeros(len(fresh), dtype=bool)
            if len(np.unique(fresh["time"])) == len(fresh):
                # Vectorised: each fetched bar is compared with the one final bar of its time.
                where = idx[hit]
                old, new = self._final[where], fresh[hit]
                changed = np.zeros(len(new), dtype=bool)
                for f in _VALUE_FIELDS:
                    changed |= old[f] != new[f]
                revised = [int(t) for t in new["time"][changed]]
                self._final[where[changed]] = new[changed]
                appended = [int(t) for t in fresh["time"][~hit]]
            else:  # a batch repeating a time: row by row, each compared with what the previous one left
                for row, at, seen in zip(fresh, idx, hit, strict=True):
                    if seen:
                        old_row = self._final[at]
                        if any(old_row[f] != row[f] for f in _VALUE_FIELDS):
                            revised.append(int(row["time"]))
                            self._final[at] = row
                    else:
                        appended.append(int(row["time"]))
            if appended:
                new_rows = fresh[np.isin(fresh["time"], appended)]
                merged = np.concatenate([self._final, new_rows])
                self._final = _by_time(merged)[-self.capacity :]
        oldest = int(self._final["time"][0]) if len(self._final) else None  # the window drops the oldest
        return MergeResult(
            appended=tuple(t for t in appended if oldest is not None and t >= oldest),
            revised=tuple(revised),
            pending=tuple(int(t) for t in self._pending["time"]),
        )

    def gaps(self, gap_factor: float = 2.0) -> list[Gap]:
        """Consecutive final bars whose open times differ by more than gap_factor * I (spec §2.4)."""
        times = self._final["time"]
        if len(times) < 2:
            return []
        step = np.diff(times)
        where = np.flatnonzero(step > gap_factor * self.timeframe_s)
        return [Gap(self.timeframe_s, int(times[i]) + self.timeframe_s, int(times[i + 1])) for i in where]


def _by_time(rows: NDArray[np.void]) -> NDArray[np.void]:
    """Rows in open-time order (stable; a sort by one field of a structured array is far slower)."""
    times = rows["time"]
    if len(times) < 2 or bool((times[1:] >= times[:-1]).all()):
        return rows
    return rows[np.argsort(times, kind="stable")]


def symbol_key(
    broker_symbol: str, known: Iterable[str], aliases: Mapping[str, str], suffix_pattern: str
) -> tuple[str, bool]:
    """Canonical config key of a broker symbol and whether it matched (False → the default entry; warn once).

    Order (spec §2.8): exact match, then `aliases`, then the symbol with its broker suffix stripped, else
    default.
    """
    keys = set(known)
    if broker_symbol in keys:
        return broker_symbol, True
    if broker_symbol in aliases:
        return aliases[broker_symbol], True
    stripped = re.sub(suffix_pattern, "", broker_symbol)
    if stripped != broker_symbol and stripped in keys:
        return stripped, True
    return "default", False


# --- session VWAP ------------------------------------------------------------------------------------


def session_starts(times: NDArray[np.int64], tz: str, start: dtime) -> NDArray[np.int64]:
    """For each UTC open time, the UTC epoch of the most recent session start at or before it (spec §2.6)."""
    t = np.asarray(times, dtype=np.int64)
    if tz == "UTC":
        offset = start.hour * 3600 + start.minute * 60 + start.second
        return (t - offset) // 86400 * 86400 + offset
    zone = ZoneInfo(tz)
    cache: dict[int, int] = {}
    out = np.empty(len(t), dtype=np.int64)
    for i, ts in enumerate(t.tolist()):
        local = datetime.fromtimestamp(ts, zone)
        day = local.date()
        if local.time() < start:
            day -= timedelta(days=1)
        key = day.toordinal()
        if key not in cache:
            cache[key] = int(datetime.combine(day, start, tzinfo=zone).timestamp())
        out[i] = cache[key]
    return out


def vwap_series(bars: NDArray[np.void], tz: str = "UTC", start: dtime = dtime(0, 0)) -> NDArray[np.float64]:
    """VWAP_k for each final bar: Σ(tp * v)/Σ v since its session start; NaN if Σ v = 0."""
    if len(bars) == 0:
        return np.zeros(0)
    tp = (bars["high"] + bars["low"] + bars["close"]) / 3.0
    vol = bars["tick_volume"].astype(np.float64)
    sessions = session_starts(bars["time"], tz, start)
    boundary = np.r_[True, sessions[1:] != sessions[:-1]]
    group = np.cumsum(boundary) - 1
    pv = np.cumsum(tp * vol)
    v = np.cumsum(vol)
    first = np.flatnonzero(boundary)
    pv_base = np.r_[0.0, pv][first][group]
    v_base = np.r_[0.0, v][first][group]
    sum_v = v - v_base
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sum_v > 0, (pv - pv_base) / sum_v, np.nan)


@dataclass
class SessionVwap:
    """Incremental session VWAP of one symbol's final M5 bars: each bar is added once (B-DATA-1).

    `update` adds only bars newer than the last accumulated one; a revised bar recomputes its session from the
    window, never adds again. `series` maps open time → VWAP as of that bar, for the current session.
    """

    tz: str = "UTC"
    start: dtime = dtime(0, 0)
    session: int | None = None
    last_time: int | None = None
    sum_pv: float = 0.0
    sum_v: float = 0.0
    series: dict[int, float] = field(default_factory=dict)

    def update(self, window: NDArray[np.void], revised: Sequence[int] = ()) -> None:
        """Bring the VWAP up to date with the final bars of `window` (oldest first)."""
        if len(window) == 0:
            return
        sessions = session_starts(window["time"], self.tz, self.start)
        if self.session is not None and any(
            int(s) == self.session
            for s in session_starts(np.asarray(revised, dtype=np.int64), self.tz, self.start)
        ):
            self._recompute(window, sessions)
            return
        newer = window["time"] > (self.last_time if self.last_time is not None else np.iinfo(np.int64).min)
        for row, sess in zip(window[newer], sessions[newer], strict=True):
            if self.session != int(sess):
                self.session, self.sum_pv, self.sum_v, self.series = int(sess), 0.0, 0.0, {}
            vol = float(row["tick_volume"])
            self.sum_pv += (float(row["high"]) + float(row["low"]) + float(row["close"])) / 3.0 * vol
            self.sum_v += vol
            self.last_time = int(row["time"])
            if self.sum_v > 0:
                self.series[self.last_time] = self.sum_pv / self.sum_v

    def _recompute(self, window: NDArray[np.void], sessions: NDArray[np.int64]) -> None:
        rows = window[sessions == self.session]
        values = vwap_series(rows, self.tz, self.start)
        vol = rows["tick_volume"].astype(np.float64)
        tp = (rows["high"] + rows["low"] + rows["close"]) / 3.0
        self.sum_pv, self.sum_v = float(np.sum(tp * vol)), float(np.sum(vol))
        self.series = {int(t): float(v) for t, v in zip(rows["time"], values, strict=True) if np.isfinite(v)}
        self.last_time = int(rows["time"][-1]) if len(rows) else self.last_time
        self.update(window[window["time"] > (self.last_time or 0)])

    @property
    def value(self) -> float | None:
        """The current session VWAP; None while undefined (no volume yet this session, spec §2.6)."""
        return self.sum_pv / self.sum_v if self.sum_v > 0 else None

    def slope(self, bars: int = 3) -> float:
        """(VWAP_t - VWAP_{t-2}) / VWAP_{t-2} over the session's last `bars` final bars; 0 if fewer (§2.7)."""
        return vwap_slope(list(self.series.values()), bars)


def vwap_slope(values: Sequence[float], bars: int = 3) -> float:
    """Relative change of VWAP values (never prices, B-SIG-2) across the last `bars` entries; 0 if fewer."""
    if len(values) < bars:
        return 0.0
    old, new = values[-bars], values[-1]
    return (new - old) / old if old else 0.0


def spread_points(bid: float, ask: float, point: float) -> float:
    """The spread in points, (ask - bid)/point (spec §2.8)."""
    return (ask - bid) / point


def spread_median(samples: Sequence[float]) -> float | None:
    """The median of a set of spread samples (one UTC hour's, or the hourly medians); None when empty."""
    return float(np.median(np.asarray(samples, dtype=np.float64))) if len(samples) else None


__all__ = [
    "BAR_DTYPE",
    "M5_S",
    "M15_S",
    "RATES_DTYPE",
    "BarWindow",
    "Gap",
    "MergeResult",
    "ServerTime",
    "SessionVwap",
    "session_starts",
    "spread_median",
    "spread_points",
    "symbol_key",
    "vwap_series",
    "vwap_slope",
]
