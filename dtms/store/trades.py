"""The trade registry: register (idempotent, batch), get, list, unregister; followers and leader alike."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Final

import apsw

from dtms.errors import InvalidArgumentError, TradeConflictError
from dtms.models import MAX_INT64, Trade, TradeRequest, TradeState, Transition
from dtms.store.db import StoreCore, dumps, from_iso, iso, query

_TRADE_COLUMNS: Final = (
    "identifier, ticket, symbol, direction, entry_price, initial_volume, volume, closed_volume, initial_sl, "
    "sl, tp, r, r_source, owner, magic, comment, state, state_at, score, armed, activated_at, "
    "activation_reason, registered_at, updated_at, closed_at, close_reason, engine"
)
_COLUMN_NAMES: Final = tuple(name.strip() for name in _TRADE_COLUMNS.split(","))
_TIME_FIELDS: Final = ("state_at", "activated_at", "registered_at", "updated_at", "closed_at")
#: Prices agree when they differ by less than this fraction (a float that went through JSON or a CSV).
_PRICE_TOLERANCE: Final = 1e-9
_MAX_REASON: Final = 200
#: Trades read per query while streaming a listing: the per-query cost vanishes, memory stays flat.
_STREAM_BATCH: Final = 500
#: Newest first: by registration time, then identifier (a batch registered in one transaction shares a time).
_NEWEST_FIRST: Final = "ORDER BY registered_at DESC, identifier DESC"


def trade_from_row(row: dict[str, Any]) -> Trade:
    """A `Trade` from a `trades` row."""
    data = dict(row)
    for name in _TIME_FIELDS:
        data[name] = from_iso(data[name])
    data["armed"] = bool(data["armed"])
    data["engine"] = json.loads(data["engine"])
    return Trade.model_validate(data)


def _conflicts(existing: Trade, req: TradeRequest) -> list[str]:
    diffs = []
    if existing.symbol != req.symbol:
        diffs.append(f"symbol {existing.symbol} != {req.symbol}")
    if existing.direction is not req.direction:
        diffs.append(f"direction {existing.direction} != {req.direction}")
    if not math.isclose(existing.entry_price, req.entry_price, rel_tol=_PRICE_TOLERANCE):
        diffs.append(f"entry_price {existing.entry_price} != {req.entry_price}")
    if req.identifier is not None and existing.identifier != req.identifier:
        diffs.append(f"identifier {existing.identifier} != {req.identifier}")
    return diffs


def _json_expr(column: str) -> str:
    # How pydantic writes each field in JSON: aware UTC times end in `Z` without a zero fraction, armed is a
    # boolean. SQLite writes REALs so that they read back as the same double (tests/test_store_listing.py
    # pins both).
    if column in _TIME_FIELDS:
        return f"replace(replace({column}, '.000000+00:00', 'Z'), '+00:00', 'Z')"
    if column == "armed":
        return "json(CASE WHEN armed THEN 'true' ELSE 'false' END)"
    return column


#: One trade as the JSON text of its `Trade.model_dump(mode="json")`, made by SQLite without building the
#: model: rows were validated when written, and validating and re-encoding 100 000 of them (with their engine
#: state) was most of the time of `dtms trades --json` (issue 11, point 6).
#: NOTE: the engine column is JSON already (CHECK json_valid) and goes in as stored, by concatenation:
#: json(engine) would parse it again and took half of the time.
_TRADE_JSON: Final = (
    "rtrim(json_object(" + ", ".join(f"'{c}', {_json_expr(c)}" for c in _COLUMN_NAMES[:-1]) + "), '}') "
    "|| ',\"engine\":' || engine || '}'"
)


def _check_state(state: TradeState | str) -> TradeState:
    try:
        return TradeState(state.upper() if isinstance(state, str) else state)
    except ValueError:
        raise InvalidArgumentError(f"state must be one of {', '.join(TradeState)}, got {state!r}") from None


def _filter(
    state: TradeState | str | None, include_closed: bool, since: datetime | None
) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (text from constants only) and its parameters for a listing."""
    clauses: list[str] = []
    params: list[Any] = []
    if state is not None:
        clauses.append("state = ?")  # CLOSED only when asked for by name
        params.append(_check_state(state).value)
    elif not include_closed:
        clauses.append("state != 'CLOSED'")  # the partial index trades_open
    if since is not None:
        if not isinstance(since, datetime) or since.tzinfo is None:
            raise InvalidArgumentError(f"since must be a timezone-aware datetime, got {since!r}")
        clauses.append("registered_at >= ?")  # ISO-8601 UTC text sorts as time
        params.append(iso(since))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not 0 < len(reason) <= _MAX_REASON or not reason.isprintable():
        raise InvalidArgumentError(f"reason must be 1-{_MAX_REASON} printable characters")
    return reason


class TradesMixin(StoreCore):
    """Trade registry methods of `Store`."""

    def register_trade(
        self,
        ticket: int,
        symbol: str,
        direction: str,
        entry_price: float,
        volume: float,
        sl: float | None = None,
        tp: float | None = None,
        *,
        owner: str = "dtms",
        magic: int | None = None,
        comment: str | None = None,
        identifier: int | None = None,
    ) -> Trade:
        """Register a position for management, or return it unchanged if it is registered already.

        Registration is idempotent: the same ticket with the same symbol, direction and entry returns the
        stored trade untouched (state, volume, SL and timestamps are the engine's from then on).

        Raises:
            pydantic.ValidationError: invalid input (the message names the field); nothing is written.
            TradeConflictError: the ticket is registered with another symbol, direction or entry.
            StoreBusyError: the database stayed locked past the busy timeout.
        """
        request = TradeRequest(
            ticket=ticket,
            symbol=symbol,
            direction=direction,  # a str, validated (case-insensitively) into a Direction by the model
            entry_price=entry_price,
            volume=volume,
            sl=sl,
            tp=tp,
            owner=owner,
            magic=magic,
            comment=comment,
            identifier=identifier,
        )
        return self.register_many([request])[0]

    def register_many(self, requests: Iterable[TradeRequest]) -> list[Trade]:
        """Register several trades in one transaction: all of them, or none if any conflicts."""
        requests = list(requests)
        now = iso(self.clock.utc_now())
        out: list[Trade] = []
        with self._write() as conn:
            for req in requests:
                out.append(self._register_one(conn, req, now))
        return out

    def _register_one(self, conn: apsw.Connection, req: TradeRequest, now: str) -> Trade:
        existing = self._find(conn, req.position_id, req.ticket)
        if existing is not None:
            diffs = _conflicts(existing, req)
            if diffs:
                raise TradeConflictError(
                    f"ticket {req.ticket} is registered already with other data: {'; '.join(diffs)}"
                )
            return existing
        r = abs(req.entry_price - req.sl) if req.sl is not None else None
        conn.execute(
            "INSERT INTO trades (identifier, ticket, symbol, direction, entry_price, initial_volume, volume, "
            "initial_sl, sl, tp, r, r_source, owner, magic, comment, state, state_at, registered_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'HEALTHY', ?, ?, ?)",
            (
                req.position_id,
                req.ticket,
                req.symbol,
                req.direction.value,
                req.entry_price,
                req.volume,
                req.volume,
                req.sl,
                req.sl,
                req.tp,
                r,
                "sl" if r is not None else None,
                req.owner,
                req.magic,
                req.comment,
                now,
                now,
                now,
            ),
        )
        created = self._find(conn, req.position_id, None)
        assert created is not None  # noqa: S101  # just inserted in this transaction
        return created

    def _find(self, conn: apsw.Connection, identifier: int, ticket: int | None) -> Trade | None:
        # S608: _TRADE_COLUMNS is a constant column list; identifier and ticket are bound parameters.
        rows = query(conn, f"SELECT {_TRADE_COLUMNS} FROM trades WHERE identifier = ?", (identifier,))  # noqa: S608
        if not rows and ticket is not None:
            sql = f"SELECT {_TRADE_COLUMNS} FROM trades WHERE ticket = ? ORDER BY identifier LIMIT 1"  # noqa: S608
            rows = query(conn, sql, (ticket,))
        return trade_from_row(rows[0]) if rows else None

    def get_trade(self, ticket: int) -> Trade | None:
        """The trade with this position identifier, or else this current ticket; None if unknown."""
        check_id(ticket)
        with self._read() as conn:
            return self._find(conn, ticket, ticket)

    def list_trades(self, state: TradeState | str | None = None, include_closed: bool = False) -> list[Trade]:
        """Registered trades by identifier; CLOSED ones only with `include_closed` or `state='CLOSED'`."""
        where, params = _filter(state, include_closed, None)
        # S608: `where` is built from constant text only; the values are bound parameters.
        rows = self._rows(f"SELECT {_TRADE_COLUMNS} FROM trades{where} ORDER BY identifier", params)  # noqa: S608
        return [trade_from_row(r) for r in rows]

    def count_trades(
        self,
        include_closed: bool = True,
        *,
        state: TradeState | str | None = None,
        since: datetime | None = None,
    ) -> int:
        """How many trades are registered (open ones only without `include_closed`; `state` and `since`
        filter as in `iter_trades`)."""
        where, params = _filter(state, include_closed, since)
        return int(self._rows(f"SELECT count(*) AS n FROM trades{where}", params)[0]["n"])  # noqa: S608

    def iter_trades(
        self,
        state: TradeState | str | None = None,
        *,
        include_closed: bool = False,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[Trade]:
        """Trades newest first (by registration time), streamed: memory stays flat however many there are.

        Open ones only unless `include_closed` or `state` says otherwise; `since` keeps those registered at or
        after it; `limit` the newest N. Rows are read in batches, each batch under the store's lock and never
        across a `yield`, so a slow consumer holds up no other thread; a trade whose state changes meanwhile
        is shown as it is when its batch is read (and left out if it no longer matches `state`).
        """
        for row in self._stream(state, include_closed, since, limit):
            yield trade_from_row(dict(zip(_COLUMN_NAMES, row[1:], strict=True)))

    def iter_trades_json(
        self,
        state: TradeState | str | None = None,
        *,
        include_closed: bool = False,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[str]:
        """`iter_trades`, each trade as one compact JSON object: `Trade.model_dump(mode="json")` once parsed.

        Made by SQLite without building the model, ten times faster (see `_TRADE_JSON`).
        """
        for row in self._stream(state, include_closed, since, limit, columns=_TRADE_JSON):
            yield str(row[1])

    def _stream(
        self,
        state: TradeState | str | None,
        include_closed: bool,
        since: datetime | None,
        limit: int | None,
        *,
        columns: str = _TRADE_COLUMNS,
    ) -> Iterator[tuple[Any, ...]]:
        """The rows of a listing as (identifier, *columns) tuples, newest first, a batch at a time."""
        where, params = _filter(state, include_closed, since)
        # NOTE: there is no index on registered_at, so the order is found once, over the identifiers only
        # (a few MB for 100 000 trades); the rows then come by primary key, a batch at a time.
        with self._read() as conn:
            keys = [
                r[0]
                for r in conn.execute(
                    f"SELECT identifier FROM trades{where} {_NEWEST_FIRST} LIMIT ?",  # noqa: S608
                    (*params, -1 if limit is None else check_limit(limit)),
                )
            ]
        again = where.replace(" WHERE ", " AND ", 1)  # the filter once more: a row may have changed since
        for start in range(0, len(keys), _STREAM_BATCH):
            chunk = keys[start : start + _STREAM_BATCH]
            marks = ",".join("?" * len(chunk))
            with self._read() as conn:
                rows = conn.execute(
                    f"SELECT identifier, {columns} FROM trades WHERE identifier IN ({marks}){again}",  # noqa: S608
                    (*chunk, *params),
                ).fetchall()
            found = {r[0]: r for r in rows}
            for key in chunk:
                if key in found:
                    yield found[key]

    def unregister_trade(self, ticket: int, reason: str = "unregistered") -> bool:
        """Stop managing a trade, keeping its history: it becomes CLOSED with `reason`.

        Returns True if an open trade was closed, False if none was open under that ticket. The broker
        position itself is left alone.
        """
        check_id(ticket)
        _check_reason(reason)
        now = iso(self.clock.utc_now())
        with self._write() as conn:
            trade = self._find(conn, ticket, ticket)
            if trade is None or not trade.is_open:
                return False
            conn.execute(
                "UPDATE trades SET state = 'CLOSED', state_at = ?, updated_at = ?, closed_at = ?, "
                "close_reason = ?, armed = 0, row_version = row_version + 1 WHERE identifier = ?",
                (now, now, now, reason, trade.identifier),
            )
            conn.execute(
                "INSERT INTO transitions "
                "(identifier, at, from_state, to_state, reason, score, epoch, status, detail) "
                "VALUES (?, ?, ?, 'CLOSED', ?, ?, NULL, 'applied', ?)",
                (trade.identifier, now, trade.state.value, reason, trade.score, dumps({"by": "unregister"})),
            )
        return True

    def transitions(self, ticket: int, limit: int | None = None) -> list[Transition]:
        """The trade's transition log, oldest first (the last `limit` rows if given)."""
        check_id(ticket)
        trade = self.get_trade(ticket)
        if trade is None:
            return []
        rows = self._rows(
            "SELECT transition_id, identifier, at, from_state, to_state, reason, score, epoch, status, "
            "json_extract(detail, '$.rule') AS rule "
            "FROM transitions WHERE identifier = ? ORDER BY transition_id DESC LIMIT ?",
            (trade.identifier, -1 if limit is None else check_limit(limit)),
        )
        return [Transition.model_validate({**r, "at": from_iso(r["at"])}) for r in reversed(rows)]


def check_id(value: int) -> None:
    # Above 2**63 - 1 SQLite cannot bind the value (apsw raises OverflowError): refuse it here instead.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_INT64:
        raise InvalidArgumentError(f"ticket must be a positive integer up to 2**63 - 1, got {value!r}")


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_INT64:
        raise InvalidArgumentError(f"limit must be a positive integer, got {limit!r}")
    return limit


__all__ = ["TradesMixin", "check_id", "check_limit", "trade_from_row"]
