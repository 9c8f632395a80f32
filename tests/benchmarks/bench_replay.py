"""Replay throughput on the embedded synthetic data, in bar × open-trade steps per second.

Run: python tests/benchmarks/bench_replay.py [--days 4] [--every 36] [--quick]
"""

from __future__ import annotations

import argparse
import logging

from dtms.replay import replay, synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--every", type=int, default=36)
    parser.add_argument("--quick", action="store_true", help="two days")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    days = 2 if args.quick else args.days
    print("| data | entries | wall s | engine s | baseline s | bar × open-trade steps/s |")
    print("|---|---|---|---|---|---|")
    for every in (args.every, max(6, args.every // 6)):
        report = replay(synthetic("EURUSD", days=days, seed=1), symbol="EURUSD", every=every, seed=1)
        t = report.timing or {}
        print(f"| EURUSD M1, {days} days | every {every} M5 bars ({report.meta['entries'].get('opened', '?')} opened) | "
              f"{t.get('wall_s', 0):.1f} | {t.get('managed_s', 0):.1f} | {t.get('baseline_s', 0):.2f} | "
              f"{t.get('bar_trade_steps_per_s', 0):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
