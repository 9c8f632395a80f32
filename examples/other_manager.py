"""Another stop manager (a trailing-stop bot, say) that respects dtms: ownership and the defensive override.

Run: python examples/other_manager.py

Before it moves a stop or takes a partial profit, the other manager asks `store.may_modify(ticket, manager,
action)`. dtms answers from the shared database: the owner may act while dtms is not defending the trade;
nobody may while dtms defends it (WARNING_L2, HEDGED); and while no fresh leader stands behind dtms
(its state reads UNKNOWN) only breakeven moves and partial profit-taking stay allowed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import dtms
from dtms.models import TradeState
from dtms.store import TradeUpdate

ME = "universal"  # this manager's name, as configured in ownership.managers


def ask(store: dtms.Store, ticket: int) -> str:
    answers = {a: store.may_modify(ticket, ME, a) for a in ("trail", "breakeven", "partial_close")}
    verdicts = ", ".join(f"{a} {'yes' if ok else 'no'}" for a, ok in answers.items())
    return f"dtms_state={store.dtms_state(ticket)}: {verdicts}"


def main() -> None:
    path = Path(tempfile.mkdtemp(prefix="dtms-owner-")) / "dtms.db"
    store = dtms.open(path)
    store.register_trade(7001, "XAUUSD", "sell", 2650.0, 0.2, sl=2665.0, owner=ME)
    print("no dtms leader yet     ->", ask(store, 7001))
    with dtms.Node(path, name="dtms-leader") as node:
        assert node.wait_until_leader(10)
        print("leader, trade HEALTHY  ->", ask(store, 7001))
        # What the engine writes when it moves the trade into a defensive state (fenced on its epoch).
        epoch = node.epoch
        assert epoch is not None
        node.store.update_trades(epoch, {7001: TradeUpdate({"state": TradeState.WARNING_L2})})
        print("dtms defends (L2)      ->", ask(store, 7001))
        assert not store.may_modify(7001, ME, "trail")
    print("leader gone            ->", ask(store, 7001))


if __name__ == "__main__":
    main()
