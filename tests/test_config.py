"""Config: spec defaults, unknown keys, TOML and environment loading, election timings, docs coverage."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from dtms.config import Config, Session, Structure, Volatility, env_overrides, leaf_keys
from dtms.errors import ConfigError
from dtms.models import TradeState

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_defaults_match_the_spec() -> None:
    """A sample of every section's defaults equals the numbers of spec §13."""
    c = Config()
    assert c.broker.server_time is None
    assert c.broker.hedging == "auto"
    assert c.execution.magic == 1146375507
    assert c.execution.fresh_waits_s == (0.5, 1.0, 2.0)
    assert (c.data.m5_window, c.data.m15_window, c.data.m5_fetch, c.data.m15_fetch) == (600, 300, 10, 4)
    assert (c.data.partial_bar_delay_s, c.data.gap_factor) == (5.0, 2.0)
    assert c.symbols.vwap_base["BTCUSD"] == 0.002
    assert c.symbols.vwap_base["default"] == 0.001
    assert c.regime.session_mult == {
        Session.ASIAN: 1.5,
        Session.LONDON: 1.0,
        Session.NY: 0.8,
        Session.OVERLAP: 0.7,
    }
    assert c.regime.volatility_mult[Volatility.LOW] == 1.4
    assert c.regime.structure_mult[Structure.RANGE] == 1.3
    assert (c.regime.clamp.min, c.regime.clamp.max, c.regime.atr_baseline_values) == (0.5, 1.8, 280)
    assert c.signals.weights.structure == 3.0
    assert c.signals.adaptive_weights.HIGH_VOLATILITY.structure == 1.2
    assert (c.fsm.down.l1, c.fsm.down.l2, c.fsm.down.hedged, c.fsm.up.l1_to_healthy, c.fsm.up.l2_to_l1) == (
        -2,
        -4,
        -6,
        0,
        -2,
    )
    assert (c.fsm.flat_timer_s, c.fsm.recovery_timer_s, c.fsm.recovery_min_score) == (4500, 1800, 1.0)
    assert c.fsm.choch_terminal_from == frozenset(s for s in TradeState if s is not TradeState.CLOSED)
    assert (c.monitoring.fast_s, c.monitoring.deep_s, c.monitoring.deep_cooldown_s) == (30, 900, 600)
    assert c.partial_close.below_min == "skip"
    assert c.hedge.fallback == "reduce"
    assert not c.trail.enabled
    assert (c.rails.daily_loss, c.rails.hourly_loss, c.rails.spread.samples, c.rails.data.max_bar_age_s) == (
        0.02,
        0.01,
        720,
        300,
    )
    assert c.ownership.defensive_states == frozenset({TradeState.WARNING_L2, TradeState.HEDGED})
    e = c.election
    assert (e.lease_ttl_s, e.renew_deadline_s, e.retry_interval_s, e.send_margin_s) == (10, 7, 0.5, 1)
    assert e.renew_interval_s == pytest.approx(10 / 3)
    assert e.on_wedged == "exit"
    assert e.stonith  # kill-before-resend by default (issue 11); `election.stonith = false` opts out


def test_config_is_immutable() -> None:
    """Sections cannot be changed after construction."""
    c = Config()
    with pytest.raises(ValueError, match="frozen"):
        c.loop.tick_s = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "data",
    [
        {"bogus": 1},
        {"loop": {"tick": 5}},
        {"rails": {"news": {"before": 3}}},
        {"signals": {"adaptive_weights": {"X": {}}}},
    ],
)
def test_unknown_keys_are_rejected(data: dict[str, Any]) -> None:
    """Unknown keys at any depth raise ConfigError naming the key."""
    with pytest.raises(ConfigError, match="Extra inputs"):
        Config.from_mapping(data)


def test_labels_are_normalised_and_partial_tables_merge_with_defaults() -> None:
    """Lower-case regime labels map to the enums; omitted labels keep the spec values (B-REG-1)."""
    c = Config.from_mapping(
        {
            "regime": {"session_mult": {"asian": 2.0}, "volatility_mult": {"high": 0.5}},
            "signals": {
                "adaptive_weights": {"high-volatility": {"structure": 1.5}, "range": {"momentum": 0.9}}
            },
            "fsm": {"choch_terminal_from": ["healthy", "hedged"]},
        }
    )
    assert c.regime.session_mult[Session.ASIAN] == 2.0
    assert c.regime.session_mult[Session.NY] == 0.8
    assert c.regime.volatility_mult[Volatility.HIGH] == 0.5
    assert c.signals.adaptive_weights.HIGH_VOLATILITY.structure == 1.5
    assert c.signals.adaptive_weights.HIGH_VOLATILITY.vwap_volume == 0.9
    assert c.signals.adaptive_weights.RANGE.momentum == 0.9
    assert c.signals.adaptive_weights.RANGE.structure == 0.7
    assert c.fsm.choch_terminal_from == {TradeState.HEALTHY, TradeState.HEDGED}


def test_unknown_label_is_rejected() -> None:
    """A session label that does not exist is an error, not a silently unused key."""
    with pytest.raises(ConfigError, match="session_mult"):
        Config.from_mapping({"regime": {"session_mult": {"tokyo": 1.0}}})


def test_load_reads_toml(tmp_path: Path) -> None:
    """TOML values override the defaults key by key."""
    path = tmp_path / "dtms.toml"
    path.write_text(
        '[broker]\nserver_time = "Europe/Athens"\n[symbols.vwap_base]\nXAUUSD = 0.0015\n'
        "[rails.news]\nbefore_min = 45\n"
    )
    c = Config.load(path, env={})
    assert c.broker.server_time == "Europe/Athens"
    assert c.symbols.vwap_base["XAUUSD"] == 0.0015
    assert c.symbols.vwap_base["EURUSD"] == 0.0005
    assert c.rails.news.before_min == 45
    assert c.rails.news.after_min == 15


def test_env_overrides_toml(tmp_path: Path) -> None:
    """DTMS__SECTION__KEY values (JSON when they parse) win over the file."""
    path = tmp_path / "dtms.toml"
    path.write_text("[broker]\nserver_time = 7200\n[loop]\ntick_s = 3\n")
    env = {
        "DTMS__LOOP__TICK_S": "2.5",
        "DTMS__BROKER__HEDGING": "false",
        "DTMS__RAILS__NEWS__CALENDAR_PATH": "/x.csv",
        "DTMS__SYMBOLS__ALIASES": '{"GOLD": "XAUUSD"}',
        "OTHER": "1",
    }
    c = Config.load(path, env=env)
    assert c.loop.tick_s == 2.5
    assert c.broker.hedging is False
    assert c.broker.server_time == 7200
    assert str(c.rails.news.calendar_path) == "/x.csv"
    assert c.symbols.aliases == {"GOLD": "XAUUSD"}


def test_env_override_parsing_keeps_mapping_keys() -> None:
    """Field names match case-insensitively; keys below a mapping keep their case."""
    assert env_overrides({"DTMS__SYMBOLS__VWAP_BASE__XAUUSDc": "0.5"}) == {
        "symbols": {"vwap_base": {"XAUUSDc": 0.5}}
    }
    assert env_overrides({"dtms__loop__tick_s": "hello"}) == {"loop": {"tick_s": "hello"}}


@pytest.mark.parametrize(
    "env",
    [
        {"DTMS__LOOP__TICKS": "1"},
        {"DTMS__LOOP__TICK_S": "soon"},
        {"DTMS__BROKER__SERVER_TIME": '"Mars/Base"'},
    ],
)
def test_invalid_env_values_raise_config_error_naming_the_key(env: dict[str, str]) -> None:
    """Unknown keys and bad values from the environment are ConfigErrors naming the key."""
    env = {"DTMS__BROKER__SERVER_TIME": "0", **env}
    key = next(iter(env.keys() - {"DTMS__BROKER__SERVER_TIME"}), "DTMS__BROKER__SERVER_TIME")
    dotted = ".".join(key.split("__")[1:]).lower()
    with pytest.raises(ConfigError, match=re.escape(dotted)):
        Config.load(None, env=env)


def test_load_requires_server_time() -> None:
    """A loaded config must say how the broker clock relates to UTC (spec §2.5)."""
    with pytest.raises(ConfigError, match=r"broker\.server_time"):
        Config.load(None, env={})


def test_load_rejects_missing_file_and_bad_toml(tmp_path: Path) -> None:
    """Unreadable or malformed files are ConfigErrors."""
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[broker\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        Config.load(bad, env={})


@pytest.mark.parametrize(
    "election",
    [
        {"lease_ttl_s": 7, "renew_deadline_s": 7},
        {"renew_deadline_s": 0.5, "retry_interval_s": 0.5},
        {"renew_interval_s": 4},
        {"send_margin_s": 3},
        {"on_wedged": "panic"},
    ],
)
def test_invalid_election_timings_are_rejected(election: dict[str, Any]) -> None:
    """ttl > deadline > 1.2 * retry, renew ≤ ttl/3 and send margin < ttl - deadline are enforced."""
    with pytest.raises(ConfigError, match="election"):
        Config.from_mapping({"election": election})


def test_renew_interval_follows_the_ttl() -> None:
    """Without an explicit renew interval it is ttl/3."""
    assert Config.from_mapping({"election": {"lease_ttl_s": 30}}).election.renew_interval_s == 10


def test_fsm_thresholds_need_hysteresis() -> None:
    """An up threshold at or below its down threshold would flap, so it is rejected."""
    with pytest.raises(ConfigError, match="hysteresis"):
        Config.from_mapping({"fsm": {"up": {"l1_to_healthy": -2}}})
    with pytest.raises(ConfigError, match="CLOSED"):
        Config.from_mapping({"fsm": {"choch_terminal_from": ["CLOSED"]}})


def test_dump_round_trips_through_toml() -> None:
    """`to_toml` is valid TOML that loads back into an equal config; `to_dict` is stable."""
    c = Config.from_mapping(
        {"broker": {"server_time": 7200}, "fsm": {"choch_terminal_from": ["HEDGED", "HEALTHY"]}}
    )
    text = c.to_toml()
    assert Config.from_mapping(tomllib.loads(text)) == c
    assert c.to_dict()["fsm"]["choch_terminal_from"] == ["HEALTHY", "HEDGED"]
    assert "# server_time = (unset)" in Config().to_toml()


def test_docs_list_every_key() -> None:
    """docs/configuration.md names every leaf key of Config."""
    text = DOC.read_text()
    missing = [k for k in leaf_keys() if f"`{k}`" not in text]
    assert not missing, missing
