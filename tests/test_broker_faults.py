"""Each injected fault maps to the right outcome kind; failed reads raise instead of reading empty."""

from __future__ import annotations

from typing import Any

import pytest
from sim_helpers import broker, terminal

from dtms.broker import Handling, MT5Broker, OutcomeKind
from dtms.broker.rules import translate
from dtms.errors import BrokerError, BrokerUnavailableError
from dtms.sim import Terminal


@pytest.fixture
def term() -> Terminal:
    return terminal()


@pytest.fixture
def b(term: Terminal) -> MT5Broker:
    return broker(term)


@pytest.mark.parametrize(
    ("retcode", "kind"),
    [
        (10004, OutcomeKind.RETRY),
        (10020, OutcomeKind.RETRY),
        (10021, OutcomeKind.DEFER),
        (10006, OutcomeKind.REJECTED),
        (10011, OutcomeKind.UNKNOWN),
        (10024, OutcomeKind.DEFER),
        (10028, OutcomeKind.DEFER),
        (10018, OutcomeKind.DEFER),
        (10029, OutcomeKind.DEFER),
        (10016, OutcomeKind.REJECTED),
        (10019, OutcomeKind.REJECTED),
        (10046, OutcomeKind.REJECTED),
        (10040, OutcomeKind.REJECTED),
        (10044, OutcomeKind.REJECTED),
        (10045, OutcomeKind.REJECTED),
        (10027, OutcomeKind.REJECTED),
        (10012, OutcomeKind.UNKNOWN),
        (10031, OutcomeKind.UNKNOWN),
    ],
)
def test_injected_retcode_maps_to_its_outcome(
    term: Terminal, b: MT5Broker, retcode: int, kind: OutcomeKind
) -> None:
    term.inject("order_send", retcode=retcode)
    outcome = b.open("EURUSD", "BUY", 0.01)
    assert (outcome.kind, outcome.retcode, outcome.sent) == (kind, retcode, True)
    assert b.positions() == []  # a plain retcode fault is never executed


def test_requote_result_carries_a_fresh_quote(term: Terminal, b: MT5Broker) -> None:
    term.inject("order_send", retcode=10004)
    b.open("EURUSD", "BUY", 0.01)
    result = term.sent_log()[-1]["result"]
    tick = b.tick("EURUSD")
    assert (result["bid"], result["ask"]) == (tick.bid, tick.ask)


def test_halting_codes_are_marked_halt(term: Terminal, b: MT5Broker) -> None:
    term.inject("order_send", retcode=10027)
    assert b.open("EURUSD", "BUY", 0.01).handling is Handling.HALT


@pytest.mark.parametrize("executed", [True, False])
@pytest.mark.parametrize(
    "fault",
    [
        {"retcode": 10012},
        {"retcode": 10031},
        {"retcode": 10011},
        {"error": (-10005, "IPC timeout")},
        {"error": -10001},
    ],
)
def test_ambiguous_answers_are_unknown_whether_or_not_executed(
    term: Terminal, b: MT5Broker, executed: bool, fault: dict[str, Any]
) -> None:
    """The caller cannot tell the two variants apart from the answer: both must be reconciled."""
    term.inject("order_send", executed=executed, **fault)
    outcome = b.open("EURUSD", "BUY", 0.01, comment="dtms-h-42")
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert outcome.sent
    legs = [p for p in b.positions() if p.comment == "dtms-h-42" and p.magic == b.magic]
    assert len(legs) == (1 if executed else 0)


def test_ambiguous_close_is_unknown_and_reconcilable_from_deals(term: Terminal, b: MT5Broker) -> None:
    ident = b.open("EURUSD", "BUY", 0.02).identifier
    assert ident is not None
    term.inject("order_send", retcode=10012, executed=True)
    assert b.close(ident, 0.01).kind is OutcomeKind.UNKNOWN
    pos = b.position(ident)
    assert pos is not None
    assert pos.volume == 0.01
    assert [d.volume for d in b.deals(ident) if d.entry == "out"] == [0.01]


def test_invalid_params_from_the_terminal_is_rejected_and_not_sent(term: Terminal, b: MT5Broker) -> None:
    term.inject("order_send", error=(-2, 'Invalid "comment" argument'))
    outcome = b.open("EURUSD", "BUY", 0.01)
    assert (outcome.kind, outcome.handling, outcome.sent) == (OutcomeKind.REJECTED, Handling.FIX, False)
    assert outcome.error == (-2, 'Invalid "comment" argument')


@pytest.mark.parametrize("code", [-6, -8])
def test_auth_and_autotrading_errors_halt(term: Terminal, b: MT5Broker, code: int) -> None:
    term.inject("order_send", error=code)
    outcome = b.open("EURUSD", "BUY", 0.01)
    assert outcome.kind is OutcomeKind.REJECTED
    assert outcome.handling is Handling.HALT


def test_algo_trading_switched_off_while_running_is_a_halt(term: Terminal, b: MT5Broker) -> None:
    term.set_trade_allowed(False)
    outcome = b.open("EURUSD", "BUY", 0.01)
    assert (outcome.kind, outcome.retcode, outcome.handling) == (OutcomeKind.REJECTED, 10027, Handling.HALT)


def test_connection_lost_at_send_is_unknown(term: Terminal, b: MT5Broker) -> None:
    term.configure(stale_reads=True)  # reads still answer from the terminal's cache, the trade server is gone
    term.set_connected(False)
    outcome = b.open("EURUSD", "BUY", 0.01)
    assert (outcome.kind, outcome.retcode, outcome.sent) == (OutcomeKind.UNKNOWN, 10031, True)


def test_connection_lost_makes_reads_raise_and_operations_back_off(term: Terminal, b: MT5Broker) -> None:
    term.set_connected(False)
    with pytest.raises(BrokerUnavailableError):
        b.positions()
    outcome = b.open("EURUSD", "BUY", 0.01)
    assert (outcome.kind, outcome.handling, outcome.sent) == (OutcomeKind.DEFER, Handling.BACKOFF, False)
    assert term.sent_log() == []
    term.set_connected(True)
    assert b.positions() == []  # the adapter re-attaches after the detected disconnect


def test_a_failed_position_read_is_never_an_empty_list(term: Terminal, b: MT5Broker) -> None:
    """None with a non-OK last_error means "unknown" (spec §1.2): raise, never report "no positions"."""
    b.open("EURUSD", "BUY", 0.01)
    term.inject("positions_get", error=(-1, "Terminal: Call failed"))
    with pytest.raises(BrokerError) as info:
        b.positions()
    assert not isinstance(info.value, BrokerUnavailableError)
    term.inject("positions_get", error=-10004)
    with pytest.raises(BrokerUnavailableError):
        b.position(1)
    assert len(b.positions()) == 1


def test_none_with_success_code_is_an_empty_answer(term: Terminal, b: MT5Broker) -> None:
    term.inject("positions_get", error=(1, "Success"))
    assert b.positions() == []


@pytest.mark.parametrize(
    ("function", "call"),
    [
        ("symbol_info_tick", lambda b: b.tick("EURUSD")),
        ("copy_rates_from_pos", lambda b: b.bars("EURUSD", "M5", 5)),
        ("symbol_info", lambda b: b.symbol("EURUSD")),
        ("account_info", lambda b: b.account()),
        ("history_deals_get", lambda b: b.deals(1)),
    ],
)
def test_every_failed_read_raises(term: Terminal, b: MT5Broker, function: str, call: Any) -> None:
    b.tick("EURUSD")  # selects the symbol first
    term.inject(function, error=(-1, "Terminal: Call failed"))
    with pytest.raises(BrokerError):
        call(b)


def test_probability_faults_are_seeded_and_repeatable() -> None:
    def run() -> list[str]:
        term = terminal()
        b = broker(term)
        term.inject("order_send", retcode=10004, count=None, probability=0.5, seed=7)
        return [b.open("EURUSD", "BUY", 0.01).kind.value for _ in range(12)]

    first = run()
    assert first == run()
    assert {"retry", "done"} == set(first)


def test_wrong_login_is_unavailable(term: Terminal) -> None:
    b = MT5Broker(term, login=42, password="any", server="DtmsSim-Demo")  # noqa: S106 -- a simulator account
    with pytest.raises(BrokerUnavailableError, match="login 42"):
        b.connect()


def test_algo_trading_off_at_connect_is_unavailable(term: Terminal) -> None:
    term.set_trade_allowed(False)
    with pytest.raises(BrokerUnavailableError, match="Algo Trading"):
        MT5Broker(term).connect()


def test_missing_metatrader5_package_is_unavailable() -> None:
    with pytest.raises(BrokerUnavailableError, match="MetaTrader5 package"):
        MT5Broker()


class _Dropping:
    """A transport that loses the link on `order_send` (as an mt5linux/RPyC client does), else delegates."""

    def __init__(self, term: Terminal, exc: BaseException) -> None:
        self._term, self._exc = term, exc

    def __getattr__(self, name: str) -> Any:
        if name == "order_send":

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise self._exc

            return fail
        return getattr(self._term, name)


def test_transport_failure_during_send_is_unknown(term: Terminal) -> None:
    b = MT5Broker(_Dropping(term, EOFError("stream has been closed")))
    b.connect()
    outcome = b.open("EURUSD", "BUY", 0.01)
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert "EOFError" in outcome.text


@pytest.mark.parametrize(
    ("exc", "unavailable"),
    [
        (EOFError("closed"), True),
        (ConnectionResetError("reset"), True),
        (TimeoutError(), True),
        (type("AsyncResultTimeout", (Exception,), {})("t"), True),
        (ValueError("bad"), False),
    ],
)
def test_third_party_errors_translate_in_one_place(exc: BaseException, unavailable: bool) -> None:
    err = translate(exc, "positions_get()")
    assert isinstance(err, BrokerError)
    assert isinstance(err, BrokerUnavailableError) == unavailable
