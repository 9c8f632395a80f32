"""Pure rules of the MT5 adapter: error translation, deviation, filling choice, stops and freeze bands."""

from __future__ import annotations

from typing import Final

from dtms.broker import codes
from dtms.broker.base import SymbolSpec
from dtms.errors import BrokerError, BrokerUnavailableError

_EPS: Final = 1e-9


def translate(exc: BaseException, what: str) -> BrokerError:
    """The one place third-party failures (MetaTrader5, mt5linux/RPyC) become dtms errors (httpx style)."""
    if (
        isinstance(exc, ConnectionError | EOFError | TimeoutError | OSError)
        or "Timeout" in type(exc).__name__
    ):
        return BrokerUnavailableError(f"{what}: lost the terminal ({type(exc).__name__}: {exc})")
    return BrokerError(f"{what}: {type(exc).__name__}: {exc}")


def deviation_points(bid: float, ask: float, point: float) -> int:
    """Slippage allowed: min(50, max(10, 10 + 0.5 x spread in points))."""
    spread = round((ask - bid) / point)
    return int(min(50, max(10, 10 + 0.5 * spread)))


def filling_candidates(spec: SymbolSpec) -> list[int]:
    """ORDER_FILLING_* modes to try, best first (spec §2 selection rule): the second only after a 10030."""
    if spec.execution_mode in (codes.SYMBOL_TRADE_EXECUTION_REQUEST, codes.SYMBOL_TRADE_EXECUTION_INSTANT):
        return [codes.ORDER_FILLING_FOK]
    out = []
    if spec.filling_mode & codes.SYMBOL_FILLING_FOK:
        out.append(codes.ORDER_FILLING_FOK)
    if spec.filling_mode & codes.SYMBOL_FILLING_IOC:
        out.append(codes.ORDER_FILLING_IOC)
    out.append(codes.ORDER_FILLING_RETURN)
    return out


def in_freeze_band(spec: SymbolSpec, buy: bool, sl: float, tp: float, bid: float, ask: float) -> bool:
    """A non-zero level within freeze_level points of Bid (buys) or Ask (sells) may not change (spec §5.5)."""
    if spec.freeze_level <= 0:
        return False
    ref, sign = (bid, 1.0) if buy else (ask, -1.0)
    band = spec.freeze_level * spec.point + _EPS
    return bool((sl and sign * (ref - sl) <= band) or (tp and sign * (tp - ref) <= band))


def level_violation(spec: SymbolSpec, buy: bool, sl: float, tp: float, bid: float, ask: float) -> int | None:
    """10016 for a new level on the wrong side or inside the stops band, else 10029 inside the freeze band.

    Buys are measured from Bid, sells from Ask (spec §5.5); zero levels are not checked. A wrong request is
    reported before a frozen one: waiting would not make it valid.
    """
    ref, sign = (bid, 1.0) if buy else (ask, -1.0)
    stops = spec.stops_level * spec.point - _EPS
    if (sl and sign * (ref - sl) < max(stops, 0.0)) or (tp and sign * (tp - ref) < max(stops, 0.0)):
        return 10016
    return 10029 if in_freeze_band(spec, buy, sl, tp, bid, ask) else None


__all__ = ["deviation_points", "filling_candidates", "in_freeze_band", "level_violation", "translate"]
