"""Replay inputs: bars files, entries files or generated entries, the embedded synthetic data, timeframes."""

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from dtms.broker.base import Direction as Side
from dtms.broker.codes import TIMEFRAMES
from dtms.engine.symbols import DEFAULT_TIMEFRAMES, check_timeframes, timeframe_s
from dtms.errors import DataError, InvalidArgumentError
from dtms.sim import loaders
from dtms.sim.create import DEFAULT_START

Rates = npt.NDArray[np.void]

DEFAULT_EVERY: Final = 24  # fast-timeframe bars between generated entries: every 2 hours on M5
REPLAY_MAGIC: Final = 7  # the magic of the entries replay opens, standing in for the bot's own orders
ENTRY_COLUMNS: Final = ("time", "direction", "volume", "sl", "tp")
#: Timeframes suggested for coarse data, before any other MetaTrader timeframe (the common ladder).
_LADDER: Final = ("M1", "M5", "M15", "M30", "H1", "H4", "D1", "W1")
_PROGRESS_STEPS: Final = 200  # progress callbacks per run at most
_SL_ACTIONS: Final = frozenset({"tighten_sl", "move_sl_breakeven", "trail_sl"})
_LEG_ACTIONS: Final = frozenset({"open_hedge", "re_add_position"})


@dataclass(frozen=True)
class Entry:
    """One trade to open at `at` (UTC; moved to the first bar at or after it): SL and TP prices or None."""

    at: datetime
    direction: Side
    volume: float
    sl: float | None = None
    tp: float | None = None


# --- inputs ------------------------------------------------------------------------------------------------


def _utc(text: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"{where}: time {text!r} is not ISO-8601 (e.g. 2026-01-08T10:00:00Z)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _price(text: str, name: str, where: str) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {name} {text!r} is not a number") from None
    if not np.isfinite(value) or value <= 0:
        raise DataError(f"{where}: {name} must be a positive price, not {text!r}")
    return value


def read_entries(path: str | os.PathLike[str]) -> list[Entry]:
    """Entries from a CSV with the header `time,direction,volume,sl,tp` (any order), oldest first.

    time: ISO-8601, UTC (`Z`, `+00:00`, or no offset; other offsets are converted); direction: BUY or SELL
    (any case); volume: lots > 0; sl, tp: prices, or empty for none.

    Raises:
        DataError: unreadable file, wrong header, or a bad row (the message names the line).
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read entries file {path}: {exc}") from exc
    rows = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(text)), 1) if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"entries file {path} is empty")
    header = [h.strip().lower() for h in rows[0][1]]
    if sorted(header) != sorted(ENTRY_COLUMNS):
        raise DataError(
            f"entries file {path}: the header must be {','.join(ENTRY_COLUMNS)} (any order), "
            f"not {','.join(header)}"
        )
    out = []
    for line, row in rows[1:]:
        where = f"entries file {path}, line {line}"
        if len(row) != len(header):
            raise DataError(f"{where}: expected {len(header)} fields, got {len(row)}")
        f = dict(zip(header, (c.strip() for c in row), strict=True))
        side = f["direction"].upper()
        if side not in ("BUY", "SELL"):
            raise DataError(f"{where}: direction must be BUY or SELL, not {f['direction']!r}")
        direction: Side = "BUY" if side == "BUY" else "SELL"
        volume = _price(f["volume"], "volume", where)
        if volume is None:
            raise DataError(f"{where}: volume is required")
        sl, tp = _price(f["sl"], "sl", where), _price(f["tp"], "tp", where)
        if sl is not None and tp is not None and (sl >= tp if direction == "BUY" else sl <= tp):
            raise DataError(
                f"{where}: a {direction} needs sl {'below' if direction == 'BUY' else 'above'} tp"
            )
        out.append(Entry(_utc(f["time"], where), direction, volume, sl, tp))
    if not out:
        raise DataError(f"entries file {path} has a header but no entries")
    return sorted(out, key=lambda e: e.at)


def load_bars(bars: str | os.PathLike[str] | Rates) -> tuple[Rates, str, str]:
    """(rates, source name, format) from a CSV path (MetaTrader export or OHLCV, detected) or an array.

    Raises:
        DataError: unreadable, unsorted or duplicate times, NaN or non-positive prices, high < low, …
    """
    if isinstance(bars, np.ndarray):
        return loaders.coerce(bars, "bars"), "array", "array"
    if not isinstance(bars, str | os.PathLike):
        raise InvalidArgumentError(f"bars must be a CSV path or a rates array, not {type(bars).__name__}")
    path = Path(bars)
    rates = loaders.read_csv(path)
    with path.open(encoding="utf-8-sig") as fh:
        first = next((line for line in fh if line.strip()), "")
    return rates, path.name, "mt5" if first.lstrip().startswith("<") else "ohlcv"


def synthetic(
    symbol: str = "EURUSD",
    *,
    days: int = 14,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    timeframe: str = "M1",
) -> Rates:
    """The simulator's embedded synthetic bars: `days` days from `start`, the same for the same args.

    The generator makes M1 bars; any coarser `timeframe` (e.g. "H1") is built from them as a terminal would.

    Raises:
        ConfigError: an unknown timeframe name.
    """
    from dtms.sim.feed import series_for
    from dtms.sim.symbols import preset
    from dtms.sim.synth import synthetic_bars

    seconds = timeframe_s(timeframe)
    begin = int(start.timestamp())
    digits = preset(symbol).digits
    bars = synthetic_bars(symbol, begin, begin + days * 86400, digits=digits, seed=seed)
    if seconds == 60:
        return bars
    return series_for(bars, 60, 10.0**-digits, digits).resampled(TIMEFRAMES[timeframe.strip().upper()])


def _name(seconds: int) -> str:
    return next((n for n in TIMEFRAMES if n != "MN1" and timeframe_s(n) == seconds), f"{seconds} s")


def resolve_timeframes(base_s: int, timeframes: Sequence[str] | None, source: str) -> tuple[str, str]:
    """The engine's (fast, slow) timeframes for bars every `base_s` seconds; each a multiple of the bars.

    Raises:
        DataError: the timeframes (M5/M15 by default) cannot be built from these bars; names the mapping.
        ConfigError: unknown timeframe names.
    """
    fast, slow = check_timeframes(tuple(timeframes) if timeframes is not None else DEFAULT_TIMEFRAMES)  # type: ignore[arg-type]
    if all(timeframe_s(t) % base_s == 0 for t in (fast, slow)):
        return fast, slow
    names = [*_LADDER, *sorted((n for n in TIMEFRAMES if n not in _LADDER and n != "MN1"), key=timeframe_s)]
    fit = [n for n in names if timeframe_s(n) % base_s == 0]
    if not fit:
        raise DataError(f"{source}: bars every {base_s} s fit no MetaTrader timeframe")
    s_fast = fit[0]
    s_slow = next(
        (
            n
            for n in fit
            if timeframe_s(n) >= 3 * timeframe_s(s_fast) and timeframe_s(n) % timeframe_s(s_fast) == 0
        ),
        fit[-1],
    )
    what = "configured" if timeframes is None else "requested"
    raise DataError(
        f"{source}: the bars are {_name(base_s)}, coarser than (or not dividing) the engine's {what} "
        f"timeframes "
        f"{fast}/{slow}; map the engine onto the data with timeframes=({s_fast!r}, {s_slow!r}) "
        f"(CLI: --timeframes {s_fast},{s_slow})"
    )


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _utc_bars(rates: Rates, offset: int) -> Rates:
    out = np.array(rates, copy=True)
    out["time"] -= offset
    return out
