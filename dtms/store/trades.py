"""The trade registry: register (idempotent, batch), get, list, unregister; followers and leader alike."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, Final

import apsw

from dtms.errors import InvalidArgumentError, TradeConflictError
from dtms.models import MAX_INT64, Trade, TradeRequest, TradeState, Transition
from dtms.store.db import StoreCore, dumps, from_iso, iso, query

_TRADE_COLUMNS: Final = (
    "identifier, ticket, symbol, direction, entry_price, initial_volume, volume, closed_volume, initial_sl, sl, "
    "tp, r, r_source, owner, magic, comment, state, state_at, score, armed, activated_at, activation_reason, "
    "registered_at, updated_at, closed_at, close_reason, engine"
)
_TIME_FIELDS: Final = ("state_at", "activated_at", "registered_at", "updated_at", "closed_at")
#: Prices agree when they differ by less than this fraction (a float that went through JSON or a CSV).
_PRICE_TOLERANCE: Final = 1e-9
_MAX_REASON: Final = 200


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
            direction=direction,  # type: ignore[arg-type]  # validated (case-insensitively) by the model
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
            "initial_sl, sl, tp, r, r_source, owner, magic, comment, state, state_at, registered_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'HEALTHY', ?, ?, ?)",
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
        rows = query(conn, f"SELECT {_TRADE_COLUMNS} FROM trades WHERE identifier = ?", (identifier,))
        if not rows and ticket is not None:
            rows = query(
                conn, f"SELECT {_TRADE_COLUMNS} FROM trades WHERE ticket = ? ORDER BY identifier LIMIT 1", (ticket,)
            )
        return trade_from_row(rows[0]) if rows else None

    def get_trade(self, ticket: int) -> Trade | None:
        """The trade with this position identifier, or else this current ticket; None if unknown."""
        check_id(ticket)
        with self._read() as conn:
            return self._find(conn, ticket, ticket)

    def list_trades(self, state: TradeState | str | None = None, include_closed: bool = False) -> list[Trade]:
        """Registered trades by identifier; CLOSED ones only with `include_closed` or `state='CLOSED'`."""
        if state is not None:
            try:
                wanted = TradeState(state.upper() if isinstance(state, str) else state)
            except ValueError:
                raise InvalidArgumentError(
                    f"state must be one of {', '.join(TradeState)}, got {state!r}"
                ) from None
            rows = self._rows(
                f"SELECT {_TRADE_COLUMNS} FROM trades WHERE state = ? ORDER BY identifier", (wanted.value,)
            )
        elif include_closed:
            rows = self._rows(f"SELECT {_TRADE_COLUMNS} FROM trades ORDER BY identifier")
        else:
            rows = self._rows(f"SELECT {_TRADE_COLUMNS} FROM trades WHERE state != 'CLOSED' ORDER BY identifier")
        return [trade_from_row(r) for r in rows]

    def count_trades(self, include_closed: bool = True) -> int:
        """How many trades are registered (open ones only without `include_closed`)."""
        where = "" if include_closed else " WHERE state != 'CLOSED'"
        return int(self._rows(f"SELECT count(*) AS n FROM trades{where}")[0]["n"])

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
                "INSERT INTO transitions (identifier, at, from_state, to_state, reason, score, epoch, status, "
                "detail) VALUES (?, ?, ?, 'CLOSED', ?, ?, NULL, 'applied', ?)",
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
            "SELECT transition_id, identifier, at, from_state, to_state, reason, score, epoch, status "
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
