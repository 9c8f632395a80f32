"""Replay four days of the simulator's embedded EURUSD bars: managed trades beside the same trades unmanaged.

Run: python examples/replay.py [PLOT.png]

The bars are the synthetic M1 series every simulated terminal carries (`dtms.replay.synthetic`); a CSV export
from MetaTrader works the same way: `replay("EURUSD_M1_202401020000_202401312359.csv", symbol="EURUSD")`.
"""

from __future__ import annotations

import sys

from dtms.replay import replay, synthetic
from dtms.report import render


def main() -> None:
    bars = synthetic("EURUSD", days=4, seed=0)
    # A trade every 3 hours of M5 bars, random side (seed 1), SL 1.5 x ATR14(M15), TP 2 R, 0.1 lots.
    report = replay(bars, symbol="EURUSD", every=36, seed=1, warmup=100)
    print(render(report), end="")
    timing = report.timing or {}
    print(
        f"replayed in {timing.get('wall_s', 0.0):.1f} s "
        f"({timing.get('bar_trade_steps_per_s', 0.0):,.0f} bar x open-trade steps per second)"
    )
    if len(sys.argv) > 1:
        from dtms.report import plot

        plot(report, sys.argv[1])
        print(f"plot written to {sys.argv[1]}")


if __name__ == "__main__":
    main()
