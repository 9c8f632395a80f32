"""A bot process: open a position on the (simulated) terminal, register it with dtms, watch dtms manage it.

Run: python examples/bot.py        (a temporary simulated terminal; nothing to install but dtms)

In production the broker is `MT5Broker()` (the MetaTrader5 package on Windows) and every bot process of yours
creates the same `dtms.Node` on the same database; one of them leads and manages every registered trade.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import dtms
import dtms.sim
from dtms.broker import MT5Broker
from dtms.config import Config


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="dtms-bot-"))
    term = dtms.sim.open(directory / "terminal.db", clock="manual")  # time moves only when we say so
    term.advance(2 * 86_400)  # two days of bars behind "now" for the engine's windows
    config = Config.from_mapping({"broker": {"server_time": 0}, "loop": {"tick_s": 0.05}})
    with dtms.Node(directory / "dtms.db", MT5Broker(term), name="bot", config=config, now=term.now) as node:
        assert node.wait_until_leader(10), "no leader"
        # The bot's own trading: a market BUY with a stop loss, placed through its own connection.
        trader = MT5Broker(term)
        trader.connect()
        tick = trader.tick("EURUSD")
        sl = round(tick.ask - 0.0025, 5)
        opened = trader.open("EURUSD", "BUY", 0.5, sl=sl, magic=777, comment="my bot")
        assert opened.is_done and opened.identifier is not None, opened
        trade = node.store.register_trade(opened.identifier, "EURUSD", "buy", opened.price, 0.5, sl=sl,
                                          magic=777)  # fmt: skip
        print(f"registered #{trade.identifier}: {trade.direction} {trade.volume} EURUSD at "
              f"{trade.entry_price}, R = {trade.r:.5f}, state {trade.state}, "
              "armed (monitoring starts at +0.2R, -0.5R or 15 min)")  # fmt: skip
        for _ in range(40):  # 40 times 5 simulated minutes
            term.advance(300)
            time.sleep(0.1)  # the leader loop ticks meanwhile
        trade = node.store.get_trade(trade.identifier)
        assert trade is not None
        evaluation = trade.engine.get("evaluation", {})
        print(
            f"after 200 simulated minutes: state {trade.state}, score {trade.score}, SL {trade.sl}, "
            f"volume {trade.volume}, activated by {trade.activation_reason}"
        )
        print(f"  {evaluation.get('analysis', 'no deep check yet')}")
        for t in node.store.transitions(trade.identifier):
            print(f"  transition {t.from_state} → {t.to_state}: {t.reason} ({t.status})")
        for a in reversed(node.store.actions(trade.identifier)):
            print(f"  action {a.action_type}: {a.status} {a.result or ''}")


if __name__ == "__main__":
    main()
