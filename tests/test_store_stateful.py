"""The store against an in-memory dict under random register / re-register / conflict / unregister / reads."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import dtms
from dtms import Direction, TradeConflictError, TradeState

# A small ticket pool so that re-registrations, conflicts and repeated unregisters happen often.
tickets = st.integers(min_value=1, max_value=12)


@dataclass
class Expected:
    """What the model believes one trade is."""

    symbol: str
    direction: Direction
    entry_price: float
    volume: float
    open: bool = True


class StoreVersusDict(RuleBasedStateMachine):
    """Every step is applied to a real store and to a dict; after each step the two must agree."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="dtms-stateful-")
        self.store = dtms.open(Path(self.tmp) / "dtms.db")
        self.model: dict[int, Expected] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(
        ticket=tickets,
        symbol=st.sampled_from(["EURUSD", "GBPUSD"]),
        direction=st.sampled_from(["buy", "BUY", "Sell"]),
        entry=st.sampled_from([1.1, 1.25]),
        volume=st.sampled_from([0.1, 0.5]),
    )
    def register(self, ticket: int, symbol: str, direction: str, entry: float, volume: float) -> None:
        want = Expected(symbol, Direction(direction.upper()), entry, volume)
        known = self.model.get(ticket)
        if known is None:
            trade = self.store.register_trade(ticket, symbol, direction, entry, volume)
            self.model[ticket] = want
        elif (known.symbol, known.direction, known.entry_price) == (symbol, want.direction, entry):
            trade = self.store.register_trade(
                ticket, symbol, direction, entry, volume
            )  # idempotent: unchanged
        else:
            try:
                self.store.register_trade(ticket, symbol, direction, entry, volume)
            except TradeConflictError:
                return
            raise AssertionError(f"ticket {ticket} re-registered with other data did not conflict")
        self._agree(ticket, trade)

    @rule(ticket=tickets)
    def unregister(self, ticket: int) -> None:
        known = self.model.get(ticket)
        expected = known is not None and known.open
        assert self.store.unregister_trade(ticket) is expected
        if known is not None:
            known.open = False

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def get_known(self, data: st.DataObject) -> None:
        ticket = data.draw(st.sampled_from(sorted(self.model)))
        self._agree(ticket, self.store.get_trade(ticket))

    @rule(ticket=tickets)
    def get_any(self, ticket: int) -> None:
        trade = self.store.get_trade(ticket)
        if ticket in self.model:
            self._agree(ticket, trade)
        else:
            assert trade is None

    @invariant()
    def lists_agree(self) -> None:
        open_tickets = sorted(t for t, e in self.model.items() if e.open)
        assert [t.ticket for t in self.store.list_trades()] == open_tickets
        assert [t.ticket for t in self.store.list_trades(include_closed=True)] == sorted(self.model)
        closed = [t.ticket for t in self.store.list_trades(state=TradeState.CLOSED)]
        assert closed == sorted(t for t, e in self.model.items() if not e.open)
        assert self.store.count_trades() == len(self.model)

    def _agree(self, ticket: int, trade: dtms.Trade | None) -> None:
        known = self.model[ticket]
        assert trade is not None
        assert (trade.ticket, trade.symbol, trade.direction, trade.entry_price, trade.volume) == (
            ticket,
            known.symbol,
            known.direction,
            known.entry_price,
            known.volume,
        )
        assert trade.is_open is known.open


TestStoreVersusDict = StoreVersusDict.TestCase
