"""Reading bars (MetaTrader's CSV export, plain OHLCV CSV, numpy arrays), validated into the rates dtype."""

from __future__ import annotations

import csv
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from dtms.errors import DataError
from dtms.sim.feed import Rates
from dtms.sim.synth import RATES_DTYPE

_TIME_NAMES: Final = ("time", "datetime", "timestamp", "date")
_VOLUME_NAMES: Final = ("tick_volume", "tickvol", "volume", "vol")
_STAMP_CHARS: Final = (
    40  # longer than any ISO-8601 stamp with microseconds and offset; longer ones are refused
)


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

    Columns are converted whole (numpy); a value that does not convert is then found row by row, so the
    error names its data row.

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
    head = next(csv.reader(lines[:1], delimiter=delimiter))
    header = [h.strip().strip("<>").lower() for h in head]
    mt5 = head[0].strip().startswith("<")
    col = {name: i for i, name in enumerate(header)}
    missing = [k for k in ("open", "high", "low", "close") if k not in col]
    # MetaTrader splits the stamp into <DATE> and <TIME> (and drops <TIME> for daily bars).
    time_col = "date" if "date" in col else next((n for n in _TIME_NAMES if n in col), None)
    if missing or time_col is None:
        raise DataError(f"bars file {path}: missing columns {missing or ['time']} in header {head}")
    vol_col = next((n for n in _VOLUME_NAMES if n in col), None)
    prices = {k: col[k] for k in ("open", "high", "low", "close")}
    counts = {
        "tick_volume": col[vol_col] if vol_col else None,
        "real_volume": col["vol"] if mt5 and "vol" in col else None,
        "spread": col.get("spread"),
    }
    stamp = (col[time_col], col["time"]) if time_col == "date" and "time" in col else (col[time_col],)
    numbers = {**prices, **{k: i for k, i in counts.items() if i is not None}}
    fields = [(f"stamp{n}", f"U{_STAMP_CHARS}") for n in range(len(stamp))] + [(k, "f8") for k in numbers]
    body = lines[1:]
    if not body:
        raise DataError(f"bars file {path} has a header but no bars")
    try:  # whole columns in one C pass; a bad value is then found row by row to name it
        table = np.loadtxt(
            body,
            delimiter=delimiter,
            dtype=np.dtype(fields),
            usecols=(*stamp, *numbers.values()),
            comments=None,
            quotechar='"',
            ndmin=1,
        )
    except ValueError as exc:
        _name_bad_row(path, body, delimiter, stamp, numbers)
        raise DataError(f"bars file {path}: {exc}") from exc
    for n in range(len(stamp)):
        long = np.flatnonzero(np.char.str_len(table[f"stamp{n}"]) >= _STAMP_CHARS)
        if len(long):
            raise DataError(f"bars file {path}, data row {long[0] + 1}: unreadable time (too long)")
    out = np.zeros(len(table), dtype=RATES_DTYPE)
    stamps = (
        table["stamp0"]
        if len(stamp) == 1
        else np.char.add(np.char.add(table["stamp0"], " "), table["stamp1"])
    )
    out["time"] = _times(stamps, "mt5" if mt5 else "", path)
    for name in numbers:
        column = table[name]
        if name in prices:
            out[name] = column  # NaN or infinite prices: refused by validate, as from any source
            continue
        if not np.isfinite(column).all():
            n = int(np.flatnonzero(~np.isfinite(column))[0])
            raise DataError(
                f"bars file {path}, data row {n + 1}: {name} '{float(column[n])}' is not a number"
            )
        out[name] = column.astype(np.int64)  # counts: written as 12 or 12.0
    return validate(out, str(path))


def _name_bad_row(
    path: str | os.PathLike[str],
    body: list[str],
    delimiter: str,
    stamp: tuple[int, ...],
    numbers: dict[str, int],
) -> None:
    """Raise the DataError naming the first row numpy could not read: too few fields, or not a number."""
    width = max(*stamp, *numbers.values()) + 1
    for n, row in enumerate(csv.reader(body, delimiter=delimiter), 1):
        if len(row) < width:
            raise DataError(f"bars file {path}, data row {n}: expected {width} fields, got {len(row)}")
        for name, index in numbers.items():
            try:
                float(row[index])
            except ValueError:
                raise DataError(
                    f"bars file {path}, data row {n}: {name} {row[index].strip()!r} is not a number"
                ) from None


def _times(
    stamps: npt.NDArray[np.str_], fmt_hint: str, path: str | os.PathLike[str]
) -> npt.NDArray[np.int64]:
    """Epoch seconds of a column of stamps: epoch s or ms, or ISO-8601 (naive is UTC, as files mean it)."""
    values = np.char.strip(stamps)
    if fmt_hint == "mt5":
        values = np.char.replace(values, ".", "-", count=2)
    try:
        if np.char.isdigit(np.char.lstrip(values, "-")).all():
            ints = values.astype(np.int64)
            return np.where(ints > 100_000_000_000, ints // 1000, ints)  # epoch milliseconds
        zulu = np.char.endswith(values, "Z")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an offset in a stamp: numpy drops it with a warning
            parsed = np.where(zulu, np.char.rstrip(values, "Z"), values).astype("datetime64[s]")
        if not np.isnat(parsed).any():
            return parsed.astype(np.int64)
    except (ValueError, OverflowError, UserWarning, DeprecationWarning):
        pass
    out = np.zeros(len(values), dtype=np.int64)  # offsets, or a bad stamp to name: row by row
    for n, text in enumerate(stamps):
        try:
            out[n] = _parse_time(str(text), fmt_hint)
        except DataError as exc:
            raise DataError(f"bars file {path}, data row {n + 1}: {exc}") from None
    return out


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
