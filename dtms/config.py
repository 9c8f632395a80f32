"""Config: every number of the spec and the election timings, from defaults, TOML and the environment."""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Mapping
from datetime import time as dtime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from dtms.errors import ConfigError
from dtms.models import TradeState

#: Prefix of environment overrides: DTMS__SECTION__KEY=value (nested sections add more `__` parts).
ENV_PREFIX: Final = "DTMS__"


class Session(StrEnum):
    """Trading session of the evaluation time (spec §3.1)."""

    ASIAN = "ASIAN"
    LONDON = "LONDON"
    OVERLAP = "OVERLAP"
    NY = "NY"


class Volatility(StrEnum):
    """ATR-ratio volatility label (spec §3.2)."""

    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"


class Structure(StrEnum):
    """Bollinger-width structure label (spec §3.3)."""

    RANGE = "RANGE"
    TREND = "TREND"


def _label(key: Any) -> Any:
    # One spelling everywhere: the original's casing mismatch silently disabled multipliers (B-REG-1).
    return key.strip().upper().replace("-", "_").replace(" ", "_") if isinstance(key, str) else key


def _labelled(value: Any, defaults: Mapping[Any, Any]) -> Any:
    """Normalise the keys of a label-keyed mapping and fill the labels it omits from the defaults."""
    if not isinstance(value, Mapping):
        return value
    merged = dict(defaults)
    for key, item in value.items():
        merged[_label(key)] = item
    return merged


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Section):
    server_time: int | str | None = None
    hedging: Literal["auto"] | bool = "auto"

    @field_validator("server_time")
    @classmethod
    def _zone_exists(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str):
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown IANA time zone {value!r}") from exc
        elif isinstance(value, int) and abs(value) > 14 * 3600:
            raise ValueError("offset must be within ±14 hours (in seconds)")
        return value


class DeviationConfig(_Section):
    base: int = 10
    per_spread: float = 0.5
    max: int = 50


class ExecutionConfig(_Section):
    magic: int = Field(default=1146375507, ge=0, lt=2**63)
    deviation: DeviationConfig = DeviationConfig()
    fresh_attempts: int = Field(default=3, ge=0)
    fresh_waits_s: tuple[float, ...] = (0.5, 1.0, 2.0)
    secondary_attempts: int = Field(default=3, ge=1)
    stops_extra_points: int = Field(default=2, ge=0)
    unknown_recheck_s: float = Field(default=10.0, gt=0)
    # A request handed to the terminal before its sender was stopped may still complete this long after.
    inflight_horizon_s: float = Field(default=15.0, ge=0)


class LoopConfig(_Section):
    tick_s: float = Field(default=5.0, gt=0)


class DataConfig(_Section):
    m5_window: int = Field(default=600, ge=1)
    m15_window: int = Field(default=300, ge=1)
    m5_fetch: int = Field(default=10, ge=2)
    m15_fetch: int = Field(default=4, ge=2)
    partial_bar_delay_s: float = Field(default=5.0, ge=0)
    gap_factor: float = Field(default=2.0, gt=1)


class VwapConfig(_Section):
    session_timezone: str = "UTC"
    session_start: dtime = dtime(0, 0)
    slope_bars: int = Field(default=3, ge=2)
    cross_min: int = Field(default=2, ge=1)
    flip_clear_ratio: float = Field(default=0.7, gt=0, le=1)

    @field_validator("session_timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


_VWAP_BASE: Final = {
    "XAUUSD": 0.001,
    "BTCUSD": 0.002,
    "EURUSD": 0.0005,
    "GBPUSD": 0.0005,
    "USDJPY": 0.0007,
    "GBPJPY": 0.0007,
    "EURJPY": 0.0007,
    "default": 0.001,
}


class SymbolsConfig(_Section):
    aliases: dict[str, str] = {}
    suffix_pattern: str = r"[.\-_]?[a-z]+$"
    currencies: dict[str, tuple[str, ...]] = {}
    vwap_base: dict[str, float] = dict(_VWAP_BASE)

    @field_validator("vwap_base", mode="before")
    @classmethod
    def _merge_vwap_base(cls, value: Any) -> Any:
        # Symbol keys are canonical upper-case names; overrides replace key by key (spec §13).
        if not isinstance(value, Mapping):
            return value
        merged = dict(_VWAP_BASE)
        for key, item in value.items():
            merged["default" if str(key).lower() == "default" else str(key).upper()] = item
        return merged

    @field_validator("currencies", mode="before")
    @classmethod
    def _upper_currencies(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {str(k).upper(): [str(c).upper() for c in v] for k, v in value.items()}


class IndicatorsConfig(_Section):
    smoothing: Literal["wilder", "sma"] = "wilder"


class ClampConfig(_Section):
    min: float = Field(default=0.5, gt=0)
    max: float = Field(default=1.8, gt=0)


class RegimeThreshold(_Section):
    normal: float
    low_vol: float


_SESSION_MULT: Final = {Session.ASIAN: 1.5, Session.LONDON: 1.0, Session.NY: 0.8, Session.OVERLAP: 0.7}
_VOLATILITY_MULT: Final = {Volatility.LOW: 1.4, Volatility.NORMAL: 1.0, Volatility.HIGH: 0.8}
_STRUCTURE_MULT: Final = {Structure.RANGE: 1.3, Structure.TREND: 1.0}


class RegimeConfig(_Section):
    atr_period: int = Field(default=14, ge=1)
    atr_baseline_values: int = Field(default=280, ge=1)
    atr_min_values: int = Field(default=10, ge=1)
    atr_min_bars: int = Field(default=30, ge=1)
    atr_low: float = 0.7
    atr_high: float = 1.3
    bb_period: int = Field(default=20, ge=2)
    bb_std: float = Field(default=2.0, gt=0)
    bb_range_width: float = Field(default=0.004, gt=0)
    session_mult: dict[Session, float] = dict(_SESSION_MULT)
    volatility_mult: dict[Volatility, float] = dict(_VOLATILITY_MULT)
    structure_mult: dict[Structure, float] = dict(_STRUCTURE_MULT)
    clamp: ClampConfig = ClampConfig()
    rsi_threshold: RegimeThreshold = RegimeThreshold(normal=45, low_vol=40)
    volume_flip_threshold: RegimeThreshold = RegimeThreshold(normal=0.65, low_vol=0.72)

    @field_validator("session_mult", mode="before")
    @classmethod
    def _norm_session(cls, value: Any) -> Any:
        return _labelled(value, _SESSION_MULT)

    @field_validator("volatility_mult", mode="before")
    @classmethod
    def _norm_volatility(cls, value: Any) -> Any:
        return _labelled(value, _VOLATILITY_MULT)

    @field_validator("structure_mult", mode="before")
    @classmethod
    def _norm_structure(cls, value: Any) -> Any:
        return _labelled(value, _STRUCTURE_MULT)

    @model_validator(mode="after")
    def _ordered(self) -> RegimeConfig:
        if not self.atr_low < self.atr_high:
            raise ValueError("atr_low must be below atr_high")
        if not self.clamp.min <= self.clamp.max:
            raise ValueError("clamp.min must not exceed clamp.max")
        return self


class SignalWeights(_Section):
    structure: float = 3.0
    vwap_volume: float = 2.0
    momentum: float = 2.0
    ema_alignment: float = 1.5
    delta_pressure: float = 1.0
    candle_conviction: float = 1.0


_ADAPTIVE: Final = {
    "RANGE": {
        "structure": 0.7,
        "vwap_volume": 1.3,
        "momentum": 1.0,
        "ema_alignment": 0.8,
        "delta_pressure": 1.2,
        "candle_conviction": 1.1,
    },
    "HIGH_VOLATILITY": {
        "structure": 1.2,
        "vwap_volume": 0.9,
        "momentum": 0.8,
        "ema_alignment": 1.0,
        "delta_pressure": 1.1,
        "candle_conviction": 0.9,
    },
    "ASIAN": {
        "structure": 0.8,
        "vwap_volume": 0.8,
        "momentum": 0.8,
        "ema_alignment": 0.8,
        "delta_pressure": 0.8,
        "candle_conviction": 0.8,
    },
}


class AdaptiveWeights(_Section):
    """Multiplier rows of spec §4.7, applied together; field names are the upper-case regime labels."""

    RANGE: SignalWeights = SignalWeights(**_ADAPTIVE["RANGE"])
    HIGH_VOLATILITY: SignalWeights = SignalWeights(**_ADAPTIVE["HIGH_VOLATILITY"])
    ASIAN: SignalWeights = SignalWeights(**_ADAPTIVE["ASIAN"])

    @model_validator(mode="before")
    @classmethod
    def _merge_rows(cls, value: Any) -> Any:
        # A row given in part keeps the spec's multipliers for the signals it omits, not the base weights.
        if not isinstance(value, Mapping):
            return value
        out: dict[str, Any] = {}
        for key, row in value.items():
            label = _label(key)
            base = _ADAPTIVE.get(label)
            if base is not None and isinstance(row, Mapping):
                out[label] = {**base, **row}
            else:
                out[label] = row
        return out


class SignalsConfig(_Section):
    weights: SignalWeights = SignalWeights()
    adaptive_weights: AdaptiveWeights = AdaptiveWeights()


class StructureConfig(_Section):
    swing_n: int = Field(default=2, ge=1)
    lookback_bars: int = Field(default=50, ge=3)
    bos_buffer: float = Field(default=0.0003, ge=0)
    choch_buffer_atr: float = Field(default=0.5, ge=0)  # beyond HL/LH by this many slow-timeframe ATRs
    bos_score: float = 3.0
    choch_score: float = -3.0

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "choch_buffer" in data:
            raise ValueError(
                "choch_buffer (a fraction of the swing price) was replaced by choch_buffer_atr (multiples of "
                "the slow timeframe's ATR, default 0.5): a fixed percentage is 3 ATR on M15 and a fraction "
                "of one on H4; see docs/configuration.md"
            )
        return data


class VolumeBands(_Section):
    against_score: float = -1.0
    mild_above: float = 0.55
    mild_score: float = -0.5
    favour_below: float = 0.35
    favour_score: float = 1.0


class VwapSignalConfig(_Section):
    flip_against: float = -2.0
    flip_with: float = 1.0
    volume_bands: VolumeBands = VolumeBands()


class MacdConfig(_Section):
    fast: int = Field(default=12, ge=1)
    slow: int = Field(default=26, ge=2)
    signal: int = Field(default=9, ge=1)


class MomentumConfig(_Section):
    rsi_period: int = Field(default=14, ge=1)
    rsi_trend_lag: int = Field(default=2, ge=1)
    overbought: float = 70.0
    oversold: float = 30.0
    mid: float = 50.0
    macd: MacdConfig = MacdConfig()


class EmaConfig(_Section):
    fast: int = Field(default=50, ge=1)
    slow: int = Field(default=200, ge=1)
    slope_lookback: int = Field(default=10, ge=1)
    divergence_score: float = -1.5


class DeltaConfig(_Section):
    z_threshold: float = Field(default=0.5, ge=0)


class OrderFlowConfig(_Section):
    max_age_s: float = Field(default=60.0, gt=0)
    symbol_map: dict[str, str] = {}


class CandleConfig(_Section):
    body_ratio: float = Field(default=0.65, ge=0, le=1)
    range_atr: float = Field(default=0.8, ge=0)
    vwap_distance_atr: float = Field(default=0.25, ge=0)


class ConfluenceConfig(_Section):
    ratio: float = Field(default=0.7, gt=0.5, le=1)


class WarningsConfig(_Section):
    decay_s: float = Field(default=1800.0, gt=0)


class FsmDown(_Section):
    l1: float = -2.0
    l2: float = -4.0
    hedged: float = -6.0


class FsmUp(_Section):
    l1_to_healthy: float = 0.0
    l2_to_l1: float = -2.0


_NON_CLOSED: Final = tuple(s for s in TradeState if s is not TradeState.CLOSED)


class FsmConfig(_Section):
    down: FsmDown = FsmDown()
    up: FsmUp = FsmUp()
    flat_timer_s: float = Field(default=4500.0, gt=0)
    recovery_timer_s: float = Field(default=1800.0, gt=0)
    recovery_min_score: float = 1.0
    choch_terminal_from: frozenset[TradeState] = frozenset(_NON_CLOSED)

    @field_validator("choch_terminal_from", mode="before")
    @classmethod
    def _norm_states(cls, value: Any) -> Any:
        return [_label(v) for v in value] if isinstance(value, list | tuple | set | frozenset) else value

    @model_validator(mode="after")
    def _consistent(self) -> FsmConfig:
        d, u = self.down, self.up
        if not d.l1 > d.l2 > d.hedged:
            raise ValueError("fsm.down thresholds must fall: l1 > l2 > hedged")
        # Hysteresis: the way back up must need a better score than the way down, or the state flaps.
        if not (u.l1_to_healthy > d.l1 and u.l2_to_l1 > d.l2):
            raise ValueError("fsm.up thresholds must lie above their fsm.down counterparts (hysteresis)")
        if TradeState.CLOSED in self.choch_terminal_from:
            raise ValueError("choch_terminal_from cannot contain CLOSED (it is terminal)")
        return self


class ActionsConfig(_Section):
    tighten_r: float = Field(default=0.3, gt=0)
    # The noise floor of tighten_sl: never nearer to price than this many fast-timeframe ATRs, and T1 not
    # before this many fast bars closed after monitoring started.
    tighten_min_atr: float = Field(default=1.0, ge=0)
    tighten_min_bars: int = Field(default=3, ge=0)
    r_fallback_atr: float = Field(default=1.0, gt=0)


class PartialCloseConfig(_Section):
    fraction: float = Field(default=0.5, gt=0, lt=1)
    below_min: Literal["skip", "close_all"] = "skip"


class HedgeConfig(_Section):
    enabled: bool = True
    fraction: float = Field(default=0.5, gt=0, le=1)
    sl_atr: float = Field(default=0.5, gt=0)
    fallback: Literal["reduce", "close_all"] = "reduce"


class BreakevenConfig(_Section):
    offset_points: float = 0.0


class ReAddConfig(_Section):
    fraction: float = Field(default=0.5, gt=0, le=1)


class TrailConfig(_Section):
    enabled: bool = False
    buffer_atr: float = Field(default=0.1, ge=0)


class MonitoringConfig(_Section):
    start_profit_r: float = Field(default=0.2, gt=0)
    start_age_s: float = Field(default=900.0, ge=0)
    start_emergency_r: float = Field(default=-0.5, lt=0)
    fast_s: float = Field(default=30.0, gt=0)
    hedged_fast_s: float = Field(default=60.0, gt=0)
    deep_s: float = Field(default=900.0, gt=0)
    deep_cooldown_s: float = Field(default=600.0, ge=0)
    high_vol_fast_s: float = Field(default=15.0, gt=0)
    high_vol_override: bool = True
    flat_fast_s: float = Field(default=60.0, gt=0)
    flat_override: bool = True
    price_move_trigger: float = Field(default=0.002, gt=0)


class NewsConfig(_Section):
    before_min: float = Field(default=30.0, ge=0)
    after_min: float = Field(default=15.0, ge=0)
    calendar_path: Path | None = None


class SpreadRailConfig(_Section):
    samples: int = Field(default=720, ge=1)
    min_samples: int = Field(default=10, ge=1)
    spike_multiplier: float = Field(default=2.0, gt=1)


class DataRailConfig(_Section):
    max_bar_age_s: float = Field(default=300.0, gt=0)


class RailsConfig(_Section):
    daily_loss: float = Field(default=0.02, gt=0, lt=1)
    hourly_loss: float = Field(default=0.01, gt=0, lt=1)
    news: NewsConfig = NewsConfig()
    spread: SpreadRailConfig = SpreadRailConfig()
    max_consecutive_stops: int = Field(default=3, ge=1)
    data: DataRailConfig = DataRailConfig()


class ForeignSl(StrEnum):
    """What the leader does when someone else loosens the SL of a trade dtms acts on
    (`ownership.foreign_sl`)."""

    RESTORE = "restore"  # send dtms's SL back, and alert
    ALERT = "alert"  # keep the new SL, and alert
    ADOPT = "adopt"  # keep the new SL (an event, no alert)


class SlLockConfig(_Section):
    ttl_s: float = Field(default=5.0, gt=0)
    acquire_s: float = Field(default=5.0, gt=0)
    poll_s: float = Field(default=0.1, gt=0)


class OwnershipConfig(_Section):
    managers: tuple[str, ...] = ("universal", "intelligent_exit")
    defensive_states: frozenset[TradeState] = frozenset({TradeState.WARNING_L2, TradeState.HEDGED})
    stale_after_s: float = Field(default=30.0, gt=0)
    sl_lock: SlLockConfig = SlLockConfig()
    foreign_sl: ForeignSl = ForeignSl.RESTORE
    max_sl_restores: int = Field(default=3, ge=0)  # per trade; then the loosened SL is kept, with an alert

    @field_validator("defensive_states", mode="before")
    @classmethod
    def _norm_states(cls, value: Any) -> Any:
        return [_label(v) for v in value] if isinstance(value, list | tuple | set | frozenset) else value

    @field_validator("managers")
    @classmethod
    def _not_reserved(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if {"dtms", "none"} & set(value):
            raise ValueError("'dtms' and 'none' are built in, not manager names")
        return value


class ReconcileConfig(_Section):
    adopt_unknown: bool = False
    adopt_owner: str = "dtms"
    close_orphan_legs: bool = True
    missing_confirmations: int = Field(default=2, ge=1)
    missing_interval_s: float = Field(default=10.0, ge=0)
    interval_s: float = Field(default=300.0, gt=0)


class WebhookConfig(_Section):
    """A JSON POST of every event to `url` (off while None)."""

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
        return value


#: The Telegram Bot API's base URL (`notify.telegram.api_url` may name a local Bot API server instead).
TELEGRAM_API: Final = "https://api.telegram.org"


class TelegramConfig(_Section):
    """A Telegram bot message per event to `chat_id` (off while either is unset)."""

    token: SecretStr | None = None
    chat_id: str | None = None
    api_url: str = TELEGRAM_API

    @model_validator(mode="after")
    def _both_or_neither(self) -> TelegramConfig:
        if (self.token is None) != (self.chat_id is None):
            raise ValueError("notify.telegram needs both token and chat_id (or neither)")
        return self


class NotifyConfig(_Section):
    hook_attempts: int = Field(default=3, ge=1)
    backoff_s: float = Field(default=2.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)
    webhook: WebhookConfig = WebhookConfig()
    telegram: TelegramConfig = TelegramConfig()


class RetentionConfig(_Section):
    closed_trade_days: int = Field(default=90, ge=1)
    score_history: int = Field(default=500, ge=1)


class ElectionConfig(_Section):
    """Leader-election timings (spec/election.md §6); validated as a whole at construction."""

    lease_ttl_s: float = Field(default=10.0, gt=0)
    renew_interval_s: float = Field(default=10.0 / 3, gt=0)
    renew_deadline_s: float = Field(default=7.0, gt=0)
    retry_interval_s: float = Field(default=0.5, gt=0)
    check_interval_s: float = Field(default=0.5, gt=0)
    loop_interval_s: float = Field(default=1.0, gt=0)
    loop_stall_s: float = Field(default=30.0, gt=0)
    stop_grace_s: float = Field(default=5.0, gt=0)
    send_margin_s: float = Field(default=1.0, ge=0)
    stonith: bool = True  # kill-before-resend: a hung holder on this host is killed, its exit verified
    lock: Literal["auto", "flock"] = "auto"
    on_wedged: Literal["exit", "stay"] = "exit"

    @model_validator(mode="before")
    @classmethod
    def _default_renew_interval(cls, value: Any) -> Any:
        # The renew interval follows the TTL unless given: a longer TTL alone must not fail validation.
        if isinstance(value, Mapping) and "renew_interval_s" not in value and "lease_ttl_s" in value:
            ttl = value["lease_ttl_s"]
            if isinstance(ttl, int | float) and not isinstance(ttl, bool):
                return {**value, "renew_interval_s": ttl / 3}
        return value

    @model_validator(mode="after")
    def _timings(self) -> ElectionConfig:
        if not self.lease_ttl_s > self.renew_deadline_s > 1.2 * self.retry_interval_s:
            raise ValueError("need lease_ttl_s > renew_deadline_s > 1.2 * retry_interval_s")
        # Tolerance: the default ttl/3 must pass its own bound despite float rounding.
        if self.renew_interval_s > self.lease_ttl_s / 3 * (1 + 1e-9):
            raise ValueError("need renew_interval_s ≤ lease_ttl_s / 3")
        if not self.send_margin_s < self.lease_ttl_s - self.renew_deadline_s:
            raise ValueError("need send_margin_s < lease_ttl_s - renew_deadline_s")
        return self


class Config(_Section):
    """The whole validated, immutable configuration; build it with `Config.load` or directly in code."""

    broker: BrokerConfig = BrokerConfig()
    execution: ExecutionConfig = ExecutionConfig()
    loop: LoopConfig = LoopConfig()
    data: DataConfig = DataConfig()
    vwap: VwapConfig = VwapConfig()
    symbols: SymbolsConfig = SymbolsConfig()
    indicators: IndicatorsConfig = IndicatorsConfig()
    regime: RegimeConfig = RegimeConfig()
    signals: SignalsConfig = SignalsConfig()
    structure: StructureConfig = StructureConfig()
    vwap_signal: VwapSignalConfig = VwapSignalConfig()
    momentum: MomentumConfig = MomentumConfig()
    ema: EmaConfig = EmaConfig()
    delta: DeltaConfig = DeltaConfig()
    order_flow: OrderFlowConfig = OrderFlowConfig()
    candle: CandleConfig = CandleConfig()
    confluence: ConfluenceConfig = ConfluenceConfig()
    warnings: WarningsConfig = WarningsConfig()
    fsm: FsmConfig = FsmConfig()
    actions: ActionsConfig = ActionsConfig()
    partial_close: PartialCloseConfig = PartialCloseConfig()
    hedge: HedgeConfig = HedgeConfig()
    breakeven: BreakevenConfig = BreakevenConfig()
    re_add: ReAddConfig = ReAddConfig()
    trail: TrailConfig = TrailConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    rails: RailsConfig = RailsConfig()
    ownership: OwnershipConfig = OwnershipConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    notify: NotifyConfig = NotifyConfig()
    retention: RetentionConfig = RetentionConfig()
    election: ElectionConfig = ElectionConfig()

    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
        """Defaults, then the TOML file at `path`, then `DTMS__SECTION__KEY` overrides from `env`.

        `env=None` reads `os.environ`. Unlike `Config()`, a loaded config must set `broker.server_time`
        (spec §2.5: no default, no guessing).

        Raises:
            ConfigError: unreadable file, invalid TOML, unknown key or bad value (the message names the key).
        """
        data: dict[str, Any] = {}
        if path is not None:
            try:
                with Path(path).open("rb") as fh:
                    data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"invalid TOML in {path}: {exc}") from exc
            # ValueError: a path the OS cannot spell (NUL, lone surrogate).
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read config file {path!r}: {exc}") from exc
        _deep_merge(data, env_overrides(os.environ if env is None else env))
        config = cls.from_mapping(data)
        if config.broker.server_time is None:
            raise ConfigError(
                "broker.server_time: required (offset seconds or an IANA zone of the broker server)"
            )
        return config

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Config:
        """Validate a nested mapping, turning pydantic's errors into one `ConfigError` naming each key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid configuration: {problems}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The effective configuration as plain JSON-compatible data (sets sorted, so dumps are stable)."""
        out: dict[str, Any] = _sorted_sets(self.model_dump(mode="json"))
        return out

    def to_toml(self) -> str:
        """The effective configuration as TOML for `dtms config show`; unset values appear as comments."""
        return toml_text(self.to_dict())


def toml_text(data: Mapping[str, Any]) -> str:
    """Nested settings (a part of `Config.to_dict()`, or a whole one) as TOML: scalars first, then one
    `[section]` table per nested section; None values appear as comments."""
    lines: list[str] = []
    _emit_table(lines, [], dict(data))
    return "\n".join(lines).strip() + "\n"


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Nested overrides from `DTMS__SECTION__KEY=value` variables; JSON values if they parse, else text."""
    out: dict[str, Any] = {}
    for name, raw in sorted(env.items()):
        if not name.upper().startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].split("__")
        if any(not p for p in parts):
            raise ConfigError(f"{name}: empty key part in environment override")
        keys = _resolve_env_path(parts)
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: conflicts with another override")
        node[keys[-1]] = value
    return out


def _resolve_env_path(parts: list[str]) -> list[str]:
    # Field names match case-insensitively; below a mapping-typed field, keys keep their case (symbol names).
    model: type[BaseModel] | None = Config
    keys: list[str] = []
    for part in parts:
        if model is None:
            keys.append(part)
            continue
        wanted = part.lower()
        match = next((f for f in model.model_fields if f.lower() == wanted), None)
        if match is None:
            keys.append(wanted)  # unknown: extra="forbid" reports it with its path
            model = None
            continue
        keys.append(match)
        ann = model.model_fields[match].annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return keys


def _deep_merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _sorted_sets(value: Any, path: tuple[str, ...] = ()) -> Any:
    # Set iteration order depends on string hashing, which differs per process; dumps must not.
    if isinstance(value, dict):
        return {k: _sorted_sets(v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list) and _is_set(list(path)):
        return sorted(value)
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if not (isinstance(value, float) and math.isinf(value)) else "inf"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _emit_table(lines: list[str], path: list[str], table: dict[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) or not _is_section([*path, k])}
    if path:
        lines.append(f"\n[{'.'.join(_toml_key(p) for p in path)}]")
    for key, value in scalars.items():
        if value is None:
            lines.append(f"# {_toml_key(key)} = (unset)")
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        if key not in scalars:
            _emit_table(lines, [*path, key], value)


def _field_at(path: list[str]) -> Any:
    model: Any = Config
    ann: Any = None
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        model = ann
    return ann


def _is_section(path: list[str]) -> bool:
    ann = _field_at(path)
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _is_set(path: list[str]) -> bool:
    return "frozenset" in str(_field_at(path))


def leaf_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Dotted names of every leaf setting (a field whose type is not a section), for docs and tests."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(leaf_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


__all__ = [
    "ENV_PREFIX",
    "AdaptiveWeights",
    "Config",
    "ElectionConfig",
    "Session",
    "SignalWeights",
    "Structure",
    "Volatility",
    "env_overrides",
    "leaf_keys",
    "toml_text",
]
