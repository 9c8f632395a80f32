"""A real engine rig for scenario tests: simulated terminal, MT5Broker, SQLite store, gateway, Engine.

Nothing is mocked. `Rig.step(...)` feeds a hand-made evaluation through the pure state machine and the real
Transitions/Executor/Gateway/store/broker; `Rig.tick()` runs the real monitoring cycle; `check_journal`
compares the action journal with what the terminal received and executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dtms
import dtms.sim
from dtms.broker import MT5Broker
from dtms.config import Config, Session, Structure, Volatility
from dtms.engine import machine
from dtms.engine.cycle import Engine
from dtms.engine.regime import Regime, Thresholds
from dtms.engine.signals import Confluence, Evaluation, SignalName, SignalResult
from dtms.events import Event, Notifier
from dtms.gateway import Gateway, SoleLeadership
from dtms.models import Action, ActionStatus, Holder, Trade, TradeState
from dtms.store import TradeUpdate

START = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)  # a Tuesday morning: the synthetic FX market is open
SYMBOL = "EURUSD"
OK = 10009

#: Pipeline tests drive every step by hand: no scheduled or event deep check, no loss rail of its own.
QUIET = {
    "broker": {"server_time": 0},
    "monitoring": {"deep_s": 10**9, "deep_cooldown_s": 10**9},
    "rails": {"daily_loss": 0.99, "hourly_loss": 0.99},
}


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dict merge (extra wins)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class SimClock:
    """The store's clock follows the terminal's simulated time, so registration ages are simulated too."""

    def __init__(self, term: dtms.sim.Terminal) -> None:
        self.term = term

    def utc_now(self) -> datetime:
        return self.term.now()

    def boot_ms(self) -> int:
        return int(self.term.now().timestamp() * 1000)

    def boot_id(self) -> str | None:
        return "sim"


class Recorder(Notifier):
    """A notifier that keeps every event (and logs nothing)."""

    def __init__(self) -> None:
        super().__init__(attempts=1)
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:  # type: ignore[override]
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [str(e.kind) for e in self.events]


def evaluation(
    score: float = 0.0,
    *,
    choch: bool = False,
    bos: bool = False,
    flip: bool = False,
    confluence: Confluence = Confluence.NEUTRAL,
    bar_time: int | None = None,
) -> Evaluation:
    """A hand-made verdict: S1 carries the BOS/CHOCH parts the state machine reads; the score is given."""
    s1 = SignalResult(
        SignalName.STRUCTURE, 0.0, "test", {"bos": 3.0 if bos else 0.0, "choch": -3.0 if choch else 0.0}
    )
    return Evaluation(
        signals=(s1,),
        weights={name: 1.0 for name in SignalName},
        score=score,
        confluence=confluence,
        confluence_ratio=0.0,
        analysis="test",
        regime=Regime(Session.LONDON, Volatility.NORMAL, Structure.TREND),
        thresholds=Thresholds(0.0005, 45, 0.65),
        vwap_flip_active=flip,
        bar_time=bar_time,
    )


@dataclass
class Rig:
    term: dtms.sim.Terminal
    broker: MT5Broker
    store: dtms.Store
    engine: Engine
    epoch: int
    config: Config
    notifier: Recorder
    own: set[str] = field(default_factory=set)  # comments of orders the test itself sent
    own_seq: set[int] = field(default_factory=set)  # sent-log rows of requests the test itself made

    # -- clock ----------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.term.now()

    def advance(self, seconds: float) -> None:
        self.term.advance(seconds)

    # -- positions and trades -------------------------------------------------------------------------
    def open_main(
        self,
        direction: str = "BUY",
        volume: float = 1.0,
        *,
        sl_pips: float | None = 30,
        tp_pips: float | None = 60,
        owner: str = "dtms",
        symbol: str = SYMBOL,
        warm: bool = True,
    ) -> Trade:
        """Open a bot's position on the terminal and register it (armed, HEALTHY); one tick warms the data."""
        tick = self.broker.tick(symbol)
        spec = self.broker.symbol(symbol)
        pip = 10 * spec.point
        d = 1 if direction == "BUY" else -1
        price = tick.ask if d > 0 else tick.bid
        sl = None if sl_pips is None else round(price - d * sl_pips * pip, spec.digits)
        tp = None if tp_pips is None else round(price + d * tp_pips * pip, spec.digits)
        comment = f"bot{len(self.own)}"
        out = self.as_bot(
            lambda: self.broker.open(symbol, direction, volume, sl=sl, tp=tp, magic=7, comment=comment)  # type: ignore[arg-type]
        )
        assert out.is_done, out
        assert out.identifier is not None
        self.own.add(comment)
        trade = self.store.register_trade(out.identifier, symbol, direction, out.price, volume, sl=sl, tp=tp,
                                          owner=owner, magic=7, comment=comment)  # fmt: skip
        if warm:
            self.tick()  # an armed trade: fast check only (bars backfilled, ATR and rails known), no action
            assert self.trade(trade.identifier).armed
        return self.trade(trade.identifier)

    def as_bot(self, call: Any) -> Any:
        """Run a broker request as the bot (not dtms) would: its sent-log rows are left out of `sends()`."""
        before = {r["seq"] for r in self.term.sent_log()}
        try:
            return call()
        finally:
            self.own_seq |= {r["seq"] for r in self.term.sent_log()} - before

    def trade(self, identifier: int) -> Trade:
        trade = self.store.get_trade(identifier)
        assert trade is not None
        return trade

    def position(self, identifier: int) -> Any:
        return self.broker.position(identifier)

    def put_state(self, identifier: int, state: TradeState, **engine: Any) -> Trade:
        """Set the trade's state as earlier (already applied) transitions would have left it; active."""
        patch = {"last_deep_at": self.now().isoformat(), **{k: _iso(v) for k, v in engine.items()}}
        self.store.update_trades(self.epoch, {identifier: TradeUpdate({"state": state, "state_at": self.now(),
                                                                      "armed": 0}, patch)})  # fmt: skip
        return self.trade(identifier)

    # -- driving --------------------------------------------------------------------------------------
    def view(self, trade: Trade) -> machine.TradeView:
        return self.engine._view(trade)

    def step(self, identifier: int, ev: Evaluation) -> tuple[machine.Step, int | None]:
        """One state-machine step from `ev`, begun and driven by the engine's real Transitions."""
        trade = self.trade(identifier)
        now = self.now()
        st = machine.step(self.view(trade), ev, now, self.config)
        assert st.changed, f"no rule matched: {st.reason}"
        tid = self.engine.transitions.begin(self.epoch, trade, st, now, ev.score)
        return st, tid

    def tick(self, n: int = 1, every: float = 30.0) -> None:
        """`n` monitoring cycles, `every` simulated seconds apart (the first one now)."""
        for i in range(n):
            if i:
                self.advance(every)
            self.engine.tick(self.epoch)

    # -- journal --------------------------------------------------------------------------------------
    def journal(self, identifier: int | None = None) -> list[Action]:
        """The journal rows (of one trade), oldest first."""
        return list(reversed(self.store.actions(identifier, limit=10_000)))

    def rows(self, transition_id: int) -> list[Action]:
        return self.store.transition_actions(transition_id)

    def transition_status(self, transition_id: int) -> str:
        tr = self.store.transition(transition_id)
        assert tr is not None
        return str(tr["status"])

    def close(self) -> None:
        self.store.close()
        self.term.close()

    def sends(self) -> list[dict[str, Any]]:
        """order_send log rows made by dtms (the test's own opens left out)."""
        return [r for r in self.term.sent_log() if r["seq"] not in self.own_seq]


#: Every rig made, so a fixture can close their stores and terminals after each test (`close_rigs`).
OPEN_RIGS: list[Rig] = []


def close_rigs() -> None:
    while OPEN_RIGS:
        OPEN_RIGS.pop().close()


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def make_rig(tmp_path: Path, *, account: str = "hedging", config: Mapping[str, Any] | None = None,
             quiet: bool = True, start: datetime = START, seed: int | None = None) -> Rig:  # fmt: skip
    """A leader's engine on a fresh in-memory terminal and a fresh database in `tmp_path`."""
    term = dtms.sim.open(None, clock="manual", start=start, account=account, seed=seed)
    assert term.initialize()
    broker = MT5Broker(term)
    broker.connect()
    store = dtms.open(tmp_path / "dtms.db", clock=SimClock(term))
    holder = Holder(name="test", host="h", pid=1, proc_start=None, boot_id=None, token="t")  # noqa: S106
    taken = store.take_over(holder, ttl_ms=10**9, now_boot_ms=0, lock_inode=None, decide=lambda row: "first")
    assert taken is not None
    epoch = taken[0]
    cfg = Config.from_mapping(merge(QUIET if quiet else {"broker": {"server_time": 0}}, config or {}))
    notifier = Recorder()
    # The executor's FRESH waits pass simulated time, so a resend really sees a newer quote.
    engine = Engine(store, broker, Gateway(store, SoleLeadership(epoch), send_margin_s=0), cfg, now=term.now,
                    notifier=notifier, wait=term.advance)  # fmt: skip
    engine.start(epoch)
    rig = Rig(term, broker, store, engine, epoch, cfg, notifier)
    OPEN_RIGS.append(rig)
    return rig


# -- journal versus terminal ----------------------------------------------------------------------------


def executed(row: Mapping[str, Any]) -> bool:
    """An order_send the server carried out (10009/10008/10010 answers; not the ambiguous faults)."""
    return row["retcode"] in (10008, 10009, 10010)


def check_journal(rig: Rig) -> None:
    """Every DONE close/open in the journal appears exactly once at the terminal, and vice versa.

    Closes and opens carry the action id in their comment, so each is matched to its row: by the deal history
    (exactly one deal with that comment per DONE row; none for a row that is not DONE) and by the sent log (no
    comment was ever executed twice). SL changes: every executed modify is a DONE modify row with that SL.
    """
    actions = rig.journal()
    deals = rig.broker.deals(since=datetime(2000, 1, 1, tzinfo=UTC))
    dtms_deals: dict[str, list[Any]] = {}
    for d in deals:
        if d.comment.startswith("dtms-"):
            dtms_deals.setdefault(d.comment, []).append(d)
    by_comment: dict[str, Action] = {}
    for a in actions:
        req = a.request or {}
        if req.get("op") in ("close", "open"):
            assert req["comment"] not in by_comment, f"two rows share a comment: {a}"
            by_comment[req["comment"]] = a
            found = dtms_deals.get(req["comment"], [])
            if a.status is ActionStatus.DONE:
                assert len(found) == 1, f"DONE row {a.action_id} has {len(found)} deals: {a}"
                assert abs(found[0].volume - float((a.result or {}).get("volume") or 0)) < 1e-9, (a, found)
            elif a.status in (ActionStatus.FAILED, ActionStatus.SKIPPED):
                assert not found, f"{a.status} row {a.action_id} executed at the terminal: {found}"
    unmatched = [c for c in dtms_deals if c not in by_comment]
    assert not unmatched, f"deals with no journal row: {unmatched}"
    for row in rig.sends():  # every executed dtms request is a DONE row
        comment = row["request"].get("comment")
        if executed(row) and comment is not None:
            assert comment in by_comment, row
            assert by_comment[comment].status is ActionStatus.DONE, row
    modifies = [r for r in rig.sends() if r["request"].get("action") == 6 and executed(r)]  # SLTP
    done_mods = [
        a for a in actions
        if (a.request or {}).get("op") == "modify" and a.status is ActionStatus.DONE
        and (a.retcode == OK or (a.result or {}).get("reconciled"))  # or found at the broker after a takeover
    ]  # fmt: skip
    sent_sls = sorted(r["request"]["sl"] for r in modifies)
    assert sent_sls == sorted(float(a.request["sl"]) for a in done_mods)  # type: ignore[index]


def transitions(rig: Rig, identifier: int) -> list[tuple[str, str, str]]:
    return [(t.from_state.value, t.to_state.value, t.status) for t in rig.store.transitions(identifier)]


__all__ = ["OK", "OPEN_RIGS", "QUIET", "START", "SYMBOL", "Recorder", "Rig", "SimClock", "check_journal",
           "close_rigs", "evaluation", "make_rig", "merge", "transitions"]  # fmt: skip
