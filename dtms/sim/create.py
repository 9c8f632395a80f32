"""A new terminal from `dtms.sim.open` arguments (account, symbols, bars, clock); checking re-opens."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from dtms.errors import ConfigError
from dtms.sim import loaders
from dtms.sim.book import Book
from dtms.sim.state import Bars
from dtms.sim.symbols import infer_digits, preset
from dtms.sim.synth import synthetic_bars

DEFAULT_SYMBOLS: Final = ("EURUSD", "XAUUSD", "BTCUSD")
# A Monday morning, dtms.clock.ManualClock's default start.
DEFAULT_START: Final = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
HISTORY_DAYS: Final = 21  # synthetic history before the start: the engine backfills 600 M5 bars and D1 ATR
FUTURE_DAYS: Final = 42  # synthetic bars after the start: six weeks of demo at 60x is ~17 hours of wall time

BarsSource = Mapping[str, "str | os.PathLike[str] | np.ndarray"] | str | os.PathLike[str] | None


@dataclass(frozen=True)
class Options:
    """The creation arguments of `dtms.sim.open`; None means "not given" (default, or what the file holds)."""

    bars: BarsSource = None
    account: str | None = None
    balance: float | None = None
    clock: str | None = None
    speed: float | None = None
    start: datetime | None = None
    seed: int | None = None
    symbols: Mapping[str, Mapping[str, Any]] | None = None
    server_time_offset_s: int | None = None

    def validate(self) -> None:
        if self.account not in (None, "hedging", "netting"):
            raise ConfigError(f"account must be 'hedging' or 'netting', not {self.account!r}")
        if self.clock not in (None, "wall", "manual"):
            raise ConfigError(f"clock must be 'wall' or 'manual', not {self.clock!r}")
        if self.speed is not None and self.speed <= 0:
            raise ConfigError("speed must be positive")
        if self.start is not None and self.start.tzinfo is None:
            raise ConfigError("start must be timezone-aware")


def _load_bars(source: BarsSource, start_s: int, seed: int) -> dict[str, np.ndarray]:
    if source is None:
        return {
            name: synthetic_bars(
                name,
                start_s - HISTORY_DAYS * 86400,
                start_s + FUTURE_DAYS * 86400,
                digits=preset(name).digits,
                seed=seed,
            )
            for name in DEFAULT_SYMBOLS
        }
    if isinstance(source, str | os.PathLike):
        return {loaders.symbol_from_path(source): loaders.read_csv(source)}
    out: dict[str, np.ndarray] = {}
    for name, item in source.items():
        if isinstance(item, np.ndarray):
            out[name] = loaders.coerce(item, f"bars[{name!r}]")
        else:
            out[name] = loaders.read_csv(Path(item))
    return out


def new_terminal(opts: Options, now_wall_ms: int) -> tuple[Book, Bars]:
    """A fresh book and its bars for the given options (the creator's side of `open`)."""
    opts.validate()
    offset = opts.server_time_offset_s or 0
    seed = opts.seed or 0
    default_start = DEFAULT_START if opts.bars is None else None
    start = opts.start or default_start
    start_server_s = int(start.timestamp()) + offset if start else 0
    raw = _load_bars(opts.bars, start_server_s or int(DEFAULT_START.timestamp()), seed)
    book = Book()
    book.server_offset_s = offset
    bars: Bars = {}
    for name, rates in raw.items():
        digits = infer_digits([float(x) for x in rates["close"][:200]])
        overrides = dict((opts.symbols or {}).get(name, {}))
        cfg = preset(name, digits=digits, overrides=overrides)
        if np.all(rates["spread"] == 0):
            rates = rates.copy()
            rates["spread"] = cfg.spread
        book.symbols[name] = cfg
        bars[name] = (rates, loaders.base_interval(rates))
    if not start_server_s:
        # Supplied data: start a quarter into it, so the engine finds history to backfill and bars to come.
        first = min(int(r["time"][len(r) // 4]) for r, _ in bars.values())
        start_server_s = first
    start_utc_ms = (start_server_s - offset) * 1000
    book.clock = {
        "mode": opts.clock or "wall",
        "sim_ms": start_utc_ms,
        "wall_ms": now_wall_ms,
        "speed": float(opts.speed or 60.0),
    }
    book.account.margin_mode = 0 if opts.account == "netting" else 2
    book.account.balance = 0.0
    book.now_ms = start_server_s * 1000
    book.balance_deal(float(10_000.0 if opts.balance is None else opts.balance), "Initial deposit")
    return book, bars


def check_attach(opts: Options, book: Book) -> None:
    """Refuse creation arguments that contradict the terminal in the file (silently ignoring is worse)."""
    opts.validate()
    clashes = []
    if opts.account is not None and (opts.account == "hedging") != book.account.is_hedging:
        clashes.append(f"account={opts.account!r}")
    if opts.clock is not None and opts.clock != book.clock["mode"]:
        clashes.append(f"clock={opts.clock!r}")
    if opts.speed is not None and opts.clock != "manual" and float(opts.speed) != book.clock["speed"]:
        clashes.append(f"speed={opts.speed!r}")
    if opts.server_time_offset_s is not None and opts.server_time_offset_s != book.server_offset_s:
        clashes.append(f"server_time_offset_s={opts.server_time_offset_s!r}")
    if (
        opts.bars is not None
        and not (isinstance(opts.bars, Mapping) and set(opts.bars) <= set(book.symbols))
        and not (not isinstance(opts.bars, Mapping) and loaders.symbol_from_path(opts.bars) in book.symbols)
    ):
        clashes.append("bars=…")
    if clashes:
        raise ConfigError(
            f"the simulated terminal exists already with other settings ({', '.join(clashes)}); "
            "open it without creation arguments to attach, or use a new path"
        )


__all__ = ["DEFAULT_START", "DEFAULT_SYMBOLS", "Options", "check_attach", "new_terminal"]
