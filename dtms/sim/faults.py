"""Seeded fault injection: rules matched by function and optional predicates, consumed in order."""

from __future__ import annotations

import random
from typing import Any, Final

from dtms.errors import ConfigError
from dtms.sim.book import Book
from dtms.sim.constants import ERROR_TEXT

# Functions that answer a trade request with a retcode; the others can only fail with None/False + last_error.
TRADE_FUNCTIONS: Final = frozenset({"order_send", "order_check"})


def make_rule(
    book: Book,
    function: str,
    *,
    retcode: int | None,
    error: int | tuple[int, str] | None,
    count: int | None,
    executed: bool,
    action: int | None,
    symbol: str | None,
    probability: float | None,
    seed: int,
) -> dict[str, Any]:
    """Validate and build one rule (a JSON-ready dict, since rules live in the shared state file)."""
    if (retcode is None) == (error is None):
        raise ConfigError("inject: give exactly one of retcode= or error=")
    if retcode is not None and function not in TRADE_FUNCTIONS:
        raise ConfigError(f"inject: {function} has no retcode; use error=(code, text)")
    if executed and function != "order_send":
        raise ConfigError("inject: executed=True only makes sense for order_send")
    if probability is not None and not 0.0 < probability <= 1.0:
        raise ConfigError("inject: probability must be in (0, 1]")
    if count is not None and count < 1:
        raise ConfigError("inject: count must be >= 1 (None: until cleared)")
    if isinstance(error, int):
        error = (error, ERROR_TEXT.get(error, "Terminal: Call failed"))
    rule_id = max((r["id"] for r in book.faults), default=0) + 1
    return {
        "id": rule_id,
        "function": function,
        "retcode": retcode,
        "error": list(error) if error else None,
        "count": count,
        "executed": executed,
        "action": action,
        "symbol": symbol,
        "probability": probability,
        "seed": seed,
        "calls": 0,
    }


def take(book: Book, function: str, request: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The first rule that fires for this call, consumed (its count decremented), or None."""
    for rule in book.faults:
        if rule["function"] not in (function, "*"):
            continue
        if request is not None:
            if rule["action"] is not None and request.get("action") != rule["action"]:
                continue
            if rule["symbol"] is not None and request.get("symbol") != rule["symbol"]:
                continue
        elif rule["action"] is not None or rule["symbol"] is not None:
            continue
        if rule["probability"] is not None:
            # A draw per (seed, rule, call number): every process sharing the terminal sees the same sequence.
            draw = random.Random(f"{rule['seed']}:{rule['id']}:{rule['calls']}").random()  # noqa: S311
            rule["calls"] += 1
            book.touch("faults")
            if draw >= rule["probability"]:
                continue
        if rule["count"] is not None:
            rule["count"] -= 1
            if rule["count"] <= 0:
                book.faults.remove(rule)
        book.touch("faults")
        return rule
    return None


__all__ = ["TRADE_FUNCTIONS", "make_rule", "take"]
