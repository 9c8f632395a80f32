"""Symbol specifications of the simulated terminal: presets, defaults for unknown names, SymbolInfo values."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final


@dataclass(slots=True)
class SymbolConfig:
    """Everything the terminal knows about one symbol besides its prices (distances in points)."""

    name: str
    digits: int = 5
    contract_size: float = 100_000.0
    tick_size: float = 0.0  # 0 = one point
    tick_value: float = 0.0  # 0 = tick_size x contract_size (profit currency = account currency)
    volume_min: float = 0.01
    volume_max: float = 100.0
    volume_step: float = 0.01
    volume_limit: float = 0.0
    stops_level: int = 0
    freeze_level: int = 0
    trade_mode: int = 4  # SYMBOL_TRADE_MODE_FULL
    exemode: int = 2  # SYMBOL_TRADE_EXECUTION_MARKET
    filling_mode: int = 3  # FOK | IOC bits
    order_mode: int = 127
    spread: int = 10  # points, used when the bars carry no spread
    currency_base: str = "EUR"
    currency_profit: str = "USD"
    currency_margin: str = "EUR"
    description: str = ""
    path: str = ""
    swap_long: float = 0.0
    swap_short: float = 0.0
    market: bool | None = None  # None: open while bars flow; True/False: forced by the harness
    selected: bool = True

    @property
    def point(self) -> float:
        return 10.0**-self.digits

    @property
    def tick(self) -> float:
        return self.tick_size or self.point

    @property
    def value_per_tick(self) -> float:
        return self.tick_value or self.tick * self.contract_size

    def round_price(self, price: float) -> float:
        return round(round(price / self.tick) * self.tick, self.digits)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SymbolConfig:
        return cls(**data)


# Execution modes and filling masks differ on purpose so tests cover the adapter's filling rule (spec §2):
# EURUSD is Instant execution with FOK only (the doc's EURJPY example), XAUUSD Market with IOC only.
# fmt: off
PRESETS: Final[dict[str, dict[str, Any]]] = {
    "EURUSD": {"digits": 5, "contract_size": 100_000.0, "spread": 12, "exemode": 1, "filling_mode": 1,
               "currency_base": "EUR", "currency_margin": "EUR", "description": "Euro vs US Dollar",
               "path": "Forex\\EURUSD", "stops_level": 10, "freeze_level": 5},
    "GBPUSD": {"digits": 5, "contract_size": 100_000.0, "spread": 15, "currency_base": "GBP",
               "currency_margin": "GBP", "description": "Pound Sterling vs US Dollar",
               "path": "Forex\\GBPUSD"},
    "USDJPY": {"digits": 3, "contract_size": 100_000.0, "spread": 14, "currency_base": "USD",
               "currency_profit": "JPY", "currency_margin": "USD", "tick_value": 0.65,
               "description": "US Dollar vs Yen", "path": "Forex\\USDJPY"},
    "XAUUSD": {"digits": 2, "contract_size": 100.0, "spread": 25, "filling_mode": 2, "volume_max": 50.0,
               "currency_base": "XAU", "currency_margin": "XAU", "description": "Gold vs US Dollar",
               "path": "Metals\\XAUUSD", "stops_level": 20, "freeze_level": 10},
    "BTCUSD": {"digits": 2, "contract_size": 1.0, "spread": 1500, "volume_max": 10.0,
               "currency_base": "BTC", "currency_margin": "BTC", "description": "Bitcoin vs US Dollar",
               "path": "Crypto\\BTCUSD"},
}

# fmt: on


def preset(name: str, *, digits: int | None = None, overrides: dict[str, Any] | None = None) -> SymbolConfig:
    """The preset for `name` (a broker suffix such as `EURUSDm` is ignored), else a generic spec."""
    base = next((key for key in PRESETS if name.upper().startswith(key)), None)
    values: dict[str, Any] = dict(PRESETS[base]) if base else {}
    if base is None:
        values["digits"] = 5 if digits is None else digits
        values["contract_size"] = 100_000.0 if len(name) == 6 and name.isalpha() else 1.0
        values["currency_base"] = values["currency_margin"] = name[:3]
        values["path"] = name
    values.update(overrides or {})
    return SymbolConfig(name=name, **values)


def infer_digits(prices: list[float]) -> int:
    """Decimal places of a price sample (what MetaTrader writes in its CSV export), at most 8."""
    best = 0
    for price in prices:
        for digits in range(best, 9):
            if math.isclose(price, round(price, digits), rel_tol=0.0, abs_tol=1e-10):
                break
        best = max(best, digits)
    return best


def symbol_info_values(cfg: SymbolConfig, bid: float, ask: float, time_s: int) -> dict[str, Any]:
    """Field values for the SymbolInfo record (zeros for what the simulator does not model)."""
    values: dict[str, Any] = {}
    for name in _SYMBOL_ZERO_INT:
        values[name] = 0
    for name in _SYMBOL_ZERO_FLOAT:
        values[name] = 0.0
    for name in _SYMBOL_EMPTY_STR:
        values[name] = ""
    values.update(
        custom=True,
        chart_mode=0,
        select=cfg.selected,
        visible=cfg.selected,
        time=time_s,
        digits=cfg.digits,
        spread=round((ask - bid) / cfg.point),
        spread_float=True,
        ticks_bookdepth=0,
        trade_calc_mode=0,
        trade_mode=cfg.trade_mode,
        trade_stops_level=cfg.stops_level,
        trade_freeze_level=cfg.freeze_level,
        trade_exemode=cfg.exemode,
        swap_mode=1,
        swap_rollover3days=3,
        margin_hedged_use_leg=False,
        expiration_mode=7,
        filling_mode=cfg.filling_mode,
        order_mode=cfg.order_mode,
        bid=bid,
        ask=ask,
        bidhigh=bid,
        bidlow=bid,
        askhigh=ask,
        asklow=ask,
        point=cfg.point,
        trade_tick_value=cfg.value_per_tick,
        trade_tick_value_profit=cfg.value_per_tick,
        trade_tick_value_loss=cfg.value_per_tick,
        trade_tick_size=cfg.tick,
        trade_contract_size=cfg.contract_size,
        volume_min=cfg.volume_min,
        volume_max=cfg.volume_max,
        volume_step=cfg.volume_step,
        volume_limit=cfg.volume_limit,
        swap_long=cfg.swap_long,
        swap_short=cfg.swap_short,
        margin_hedged=cfg.contract_size,
        currency_base=cfg.currency_base,
        currency_profit=cfg.currency_profit,
        currency_margin=cfg.currency_margin,
        description=cfg.description,
        name=cfg.name,
        path=cfg.path,
    )
    return values


_SYMBOL_ZERO_INT: Final = [
    "session_deals",
    "session_buy_orders",
    "session_sell_orders",
    "volume",
    "volumehigh",
    "volumelow",
    "start_time",
    "expiration_time",
    "order_gtc_mode",
    "option_mode",
    "option_right",
]
_SYMBOL_ZERO_FLOAT: Final = [
    "last",
    "lasthigh",
    "lastlow",
    "volume_real",
    "volumehigh_real",
    "volumelow_real",
    "option_strike",
    "trade_accrued_interest",
    "trade_face_value",
    "trade_liquidity_rate",
    "margin_initial",
    "margin_maintenance",
    "session_volume",
    "session_turnover",
    "session_interest",
    "session_buy_orders_volume",
    "session_sell_orders_volume",
    "session_open",
    "session_close",
    "session_aw",
    "session_price_settlement",
    "session_price_limit_min",
    "session_price_limit_max",
    "price_change",
    "price_volatility",
    "price_theoretical",
    "price_greeks_delta",
    "price_greeks_theta",
    "price_greeks_gamma",
    "price_greeks_vega",
    "price_greeks_rho",
    "price_greeks_omega",
    "price_sensitivity",
]
_SYMBOL_EMPTY_STR: Final = ["basis", "category", "bank", "exchange", "formula", "isin", "page"]

__all__ = ["PRESETS", "SymbolConfig", "infer_digits", "preset", "symbol_info_values"]
