"""The terminal's own SQLite file (WAL, BEGIN IMMEDIATE per call, mode 0600) or memory; sim/'s only SQL."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol

import apsw
import numpy as np

from dtms.errors import ConfigError, DataError
from dtms.sim.book import META_KEYS, Book
from dtms.sim.feed import Rates
from dtms.sim.models import Deal, Order, Position
from dtms.sim.synth import RATES_DTYPE

BUSY_TIMEOUT_MS: Final = 10_000  # API calls are short; a longer wait means a stuck process
CHECKPOINT_MS: Final = 3_600_000  # an SL/TP scan cursor is saved at least hourly (see Book.checkpoint_ms)
Bars = dict[str, tuple[Rates, int]]  # symbol -> (base rates, interval seconds)

# Column lists come from the dataclasses (fixed names, never user input), so the tables follow the records.
_POS_COLS: Final = tuple(f.name for f in dataclasses.fields(Position))
_DEAL_COLS: Final = tuple(f.name for f in dataclasses.fields(Deal))
_ORDER_COLS: Final = tuple(f.name for f in dataclasses.fields(Order))


def _names(cols: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in cols)  # quoted: `order` is an SQL keyword


def _insert(table: str, cols: tuple[str, ...], verb: str = "INSERT") -> str:
    return f"{verb} INTO {table}({_names(cols)}) VALUES ({', '.join('?' * len(cols))})"


_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars(symbol TEXT PRIMARY KEY, interval_s INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS positions({_names(_POS_COLS)}, PRIMARY KEY(identifier));
CREATE TABLE IF NOT EXISTS deals({_names(_DEAL_COLS)}, PRIMARY KEY(ticket));
CREATE TABLE IF NOT EXISTS orders({_names(_ORDER_COLS)}, PRIMARY KEY(ticket));
CREATE TABLE IF NOT EXISTS sent_log(seq INTEGER PRIMARY KEY AUTOINCREMENT, pid INTEGER, tag TEXT,
    time_msc INTEGER, request TEXT, retcode INTEGER, error TEXT, result TEXT);
"""
_INSERT_POS: Final = _insert("positions", _POS_COLS, "INSERT OR REPLACE")
_INSERT_DEAL: Final = _insert("deals", _DEAL_COLS)
_INSERT_ORDER: Final = _insert("orders", _ORDER_COLS)
_SENT_COLS: Final = ("pid", "tag", "time_msc", "request", "retcode", "error", "result")
_INSERT_SENT: Final = _insert("sent_log", _SENT_COLS)
_SELECT_POS: Final = f"SELECT {_names(_POS_COLS)} FROM positions"  # noqa: S608
_SELECT_DEALS: Final = f"SELECT {_names(_DEAL_COLS)} FROM deals WHERE ticket > ? ORDER BY ticket"  # noqa: S608
_SELECT_ORDERS: Final = f"SELECT {_names(_ORDER_COLS)} FROM orders WHERE ticket > ? ORDER BY ticket"  # noqa: S608
_SELECT_SENT: Final = f"SELECT seq, {_names(_SENT_COLS)} FROM sent_log ORDER BY seq"  # noqa: S608


class State(Protocol):
    """Where a terminal keeps its book between calls."""

    bars: Bars

    def transaction(self) -> contextlib.AbstractContextManager[Book]: ...

    def sent_log(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class MemoryState:
    """Single-object state with no I/O: the fast mode for replay; a failing call may leave partial changes."""

    def __init__(self, book: Book, bars: Bars) -> None:
        self.book, self.bars = book, bars
        self._sent: list[dict[str, Any]] = []
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Book]:
        with self._lock:
            yield from self._transaction()

    def _transaction(self) -> Iterator[Book]:
        try:
            yield self.book
        finally:
            for i, row in enumerate(self.book.new_sent, start=len(self._sent) + 1):
                self._sent.append({"seq": i, **row})
            self.book.clear_changes()

    def sent_log(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._sent]

    def close(self) -> None:
        """Nothing to release."""


class SqliteState:
    """State in one SQLite file shared by every process that opens it; bars are read once per process."""

    def __init__(self, path: str | os.PathLike[str], create: Callable[[], tuple[Book, Bars]]) -> None:
        self.path = Path(path)
        self._pid = os.getpid()
        self._book: Book | None = None
        self._seen_version = -1
        # Threads of one process share the connection and the cached book: one transaction at a time.
        self._lock = threading.RLock()
        self.created = False
        try:
            # Owner-only from the first byte: it holds account state (SQLite copies the mode to -wal/-shm).
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except FileExistsError:
            # A dangling symlink: SQLite would follow it and create the target 0644, not owner-only.
            if self.path.is_symlink() and not self.path.exists():
                raise ConfigError(f"{self.path} is a symlink to a missing file; not creating it") from None
        self._conn = self._connect()
        created_bars: Bars | None = None
        with self._immediate():
            self._conn.execute(_SCHEMA)
            if self._conn.execute("SELECT 1 FROM meta WHERE key = 'created'").fetchone() is None:
                book, bars = create()
                created_bars = bars
                self._write_bars(bars)
                book.dirty_meta.update(META_KEYS)
                book.dirty_positions.update(book.positions)
                self._save(book)
                self._conn.execute("INSERT INTO meta VALUES ('created', '1')")
                self.created = True
        # The creator keeps its arrays (equal to what it stored, and cached per process); others read them.
        self.bars = created_bars if created_bars is not None else self._read_bars()

    def _connect(self) -> apsw.Connection:
        conn = apsw.Connection(str(self.path))
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # a simulator: losing the last call on power loss is fine
        return conn

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Book]:
        with self._lock:
            yield from self._transaction()

    def _transaction(self) -> Iterator[Book]:
        if os.getpid() != self._pid:
            # A forked child must not reuse the parent's connection (SQLite forbids it): open its own.
            self._pid, self._book, self._conn = os.getpid(), None, self._connect()
        try:
            with self._immediate():
                (version,) = self._conn.execute("PRAGMA data_version").fetchone() or (-2,)
                if self._book is None or version != self._seen_version:
                    self._book = self._load(self._book)
                    self._seen_version = version
                yield self._book
                self._save(self._book)
        except BaseException:
            self._book = None  # the in-memory copy may hold rolled-back changes: reload next time
            raise

    def _load(self, book: Book | None) -> Book:
        fresh = book is None
        if book is None:
            book = Book(checkpoint_ms=CHECKPOINT_MS)
        for key, value in self._conn.execute("SELECT key, value FROM meta WHERE key != 'created'"):
            book.set_meta(key, json.loads(value))
        book.positions = {row[1]: Position(*row) for row in self._conn.execute(_SELECT_POS)}
        # History is append-only with increasing tickets: read only what this process has not seen.
        last_deal = 0 if fresh or not book.deals else book.deals[-1].ticket
        last_order = 0 if fresh or not book.orders else book.orders[-1].ticket
        book.deals.extend(Deal(*row) for row in self._conn.execute(_SELECT_DEALS, (last_deal,)))
        book.orders.extend(Order(*row) for row in self._conn.execute(_SELECT_ORDERS, (last_order,)))
        book.clear_changes()
        return book

    def _save(self, book: Book) -> None:
        for key in book.dirty_meta:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(book.meta(key))))
        for ident in book.dirty_positions:
            self._conn.execute(_INSERT_POS, dataclasses.astuple(book.positions[ident]))
        for ident in book.removed_positions:
            self._conn.execute("DELETE FROM positions WHERE identifier = ?", (ident,))
        for deal in book.new_deals:
            self._conn.execute(_INSERT_DEAL, dataclasses.astuple(deal))
        for order in book.new_orders:
            self._conn.execute(_INSERT_ORDER, dataclasses.astuple(order))
        for row in book.new_sent:
            self._conn.execute(_INSERT_SENT, tuple(row[c] for c in _SENT_COLS))
        book.clear_changes()

    def _write_bars(self, bars: Bars) -> None:
        for symbol, (rates, interval) in bars.items():
            self._conn.execute(
                "INSERT OR REPLACE INTO bars VALUES (?, ?, ?)",
                (symbol, interval, rates.astype(RATES_DTYPE).tobytes()),
            )

    def _read_bars(self) -> Bars:
        out: Bars = {}
        for symbol, interval, blob in self._conn.execute("SELECT symbol, interval_s, data FROM bars"):
            if len(blob) % RATES_DTYPE.itemsize:
                raise DataError(f"{self.path}: stored bars of {symbol} are truncated")
            out[symbol] = (np.frombuffer(blob, dtype=RATES_DTYPE).copy(), int(interval))
        return out

    def sent_log(self) -> list[dict[str, Any]]:
        cols = ("seq", *_SENT_COLS)
        rows = self._conn.execute(_SELECT_SENT)
        return [dict(zip(cols, row, strict=True)) for row in rows]

    def close(self) -> None:
        self._conn.close()


__all__ = ["Bars", "MemoryState", "SqliteState", "State"]
