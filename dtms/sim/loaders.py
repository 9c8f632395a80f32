"""Reading bars (MetaTrader's CSV export, plain OHLCV CSV, numpy arrays), validated into the rates dtype."""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np

from dtms.errors import DataError
from dtms.sim.feed import Rates
from dtms.sim.synth import RATES_DTYPE

_TIME_NAMES: Final = ("time", "datetime", "timestamp", "date")
_VOLUME_NAMES: Final = ("tick_volume", "tickvol", "volume", "vol")


def _parse_time(text: str, fmt_hint: str = "") -> int:
    text = text.strip()
    if text.lstrip("-").isdigit():
        value = int(text)
        return value // 1000 if value > 100_000_000_000 else value  # epoch milliseconds
    norm = text.replace(".", "-", 2) if fmt_hint == "mt5" else text
    norm = norm.replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(norm)
    except ValueError as exc:
        raise DataError(f"unreadable time {text!r}") from exc
    if parsed.tzinfo is None:
        # Bar files carry server time written as if it were UTC (spec/mt5.md §1.3): read it that way.
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def read_csv(path: str | os.PathLike[str]) -> Rates:
    """Bars from MetaTrader's export (`<DATE> <TIME> <OPEN> …`, tab-separated) or a plain OHLCV CSV.

    Raises:
        DataError: missing columns, unreadable values or inconsistent bars.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read bars file {path}: {exc}") from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"bars file {path} is empty")
    delimiter = "\t" if "\t" in lines[0] else (";" if ";" in lines[0] else ",")
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [h.strip().strip("<>").lower() for h in rows[0]]
    mt5 = rows[0][0].strip().startswith("<")
    col = {name: i for i, name in enumerate(header)}
    missing = [k for k in ("open", "high", "low", "close") if k not in col]
    # MetaTrader splits the stamp into <DATE> and <TIME> (and drops <TIME> for daily bars).
    time_col = "date" if "date" in col else next((n for n in _TIME_NAMES if n in col), None)
    if missing or time_col is None:
        raise DataError(f"bars file {path}: missing columns {missing or ['time']} in header {rows[0]}")
    vol_col = next((n for n in _VOLUME_NAMES if n in col), None)
    body = rows[1:]
    out = np.zeros(len(body), dtype=RATES_DTYPE)
    try:
        for i, row in enumerate(body):
            stamp = row[col[time_col]]
            if time_col == "date" and "time" in col:
                stamp = f"{stamp} {row[col['time']]}"
            out[i]["time"] = _parse_time(stamp, "mt5" if mt5 else "")
            for name in ("open", "high", "low", "close"):
                out[i][name] = float(row[col[name]])
            out[i]["tick_volume"] = int(float(row[col[vol_col]])) if vol_col else 0
            out[i]["real_volume"] = int(float(row[col["vol"]])) if mt5 and "vol" in col else 0
            out[i]["spread"] = int(float(row[col["spread"]])) if "spread" in col else 0
    except (ValueError, IndexError) as exc:
        raise DataError(f"bars file {path}, data row {i + 1}: {exc}") from exc
    return validate(out, str(path))


def coerce(array: np.ndarray, source: str = "array") -> Rates:
    """A rates array from any structured array with time/open/high/low/close (other fields default to 0)."""
    names = array.dtype.names or ()
    missing = [k for k in ("time", "open", "high", "low", "close") if k not in names]
    if missing:
        raise DataError(f"{source}: missing fields {missing}")
    out = np.zeros(len(array), dtype=RATES_DTYPE)
    for name in RATES_DTYPE.names or ():
        if name in names:
            out[name] = array[name]
    return validate(out, source)


def validate(rates: Rates, source: str) -> Rates:
    """Reject bars the simulator cannot trade on: unsorted or repeated times, inverted OHLC, prices <= 0."""
    if len(rates) == 0:
        raise DataError(f"{source}: no bars")
    prices = np.stack([rates[k] for k in ("open", "high", "low", "close")])
    if not np.isfinite(prices).all() or (prices <= 0).any():
        raise DataError(f"{source}: prices must be finite and positive")
    if (np.diff(rates["time"]) <= 0).any():
        bad = int(np.flatnonzero(np.diff(rates["time"]) <= 0)[0]) + 1
        raise DataError(f"{source}: bar times must increase strictly (row {bad + 1})")
    ohlc_ok = (rates["high"] >= np.maximum(rates["open"], rates["close"])) & (
        rates["low"] <= np.minimum(rates["open"], rates["close"])
    )
    if not ohlc_ok.all():
        bad = int(np.flatnonzero(~ohlc_ok)[0])
        raise DataError(f"{source}: bar {bad + 1} has high/low outside open/close")
    return rates


def base_interval(rates: Rates) -> int:
    """The bar interval in seconds: the smallest step between bars (gaps only make steps longer)."""
    if len(rates) < 2:
        return 60
    return int(np.diff(rates["time"]).min())


def symbol_from_path(path: str | os.PathLike[str]) -> str:
    """MetaTrader names exports `EURUSD_M1_202401020000_202401312359.csv`: the symbol precedes the `_`."""
    return Path(path).stem.split("_")[0]


__all__ = ["base_interval", "coerce", "read_csv", "symbol_from_path", "validate"]
