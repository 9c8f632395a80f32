"""Peak memory (max RSS) of a follower process and of a leader managing 1000 trades on 50 symbols.

Run: python tests/benchmarks/bench_memory.py [--trades 1000] [--symbols 50]

Each measurement runs in a fresh spawned process, so imports and caches of one do not count for the other.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def follower(path: str, trades: int, out: Any) -> None:
    """A bot process that joins the election as a follower and registers and reads `trades` trades."""
    import dtms

    base = _rss_mb()
    node = dtms.Node(path, name="follower")
    for i in range(1, trades + 1):
        node.store.register_trade(i, "EURUSD", "buy", 1.1, 0.1, sl=1.09)
    for i in range(1, trades + 1):
        node.store.get_trade(i)
    node.store.list_trades()
    out.put(("follower (Node, registers and reads all trades)", base, _rss_mb()))
    node.close()


def leader(directory: str, trades: int, symbols: int, out: Any) -> None:
    """The engine leader: windows for every symbol, a fast and a deep check of every trade."""
    import bench_engine

    base = _rss_mb()
    engine, _store, term, epoch = bench_engine.build(trades, symbols, directory)
    engine.tick(epoch)
    term.advance(900)  # type: ignore[attr-defined]
    engine.tick(epoch)
    out.put((f"leader (engine, {trades} trades, {symbols} symbols, simulated terminal in-process)", base, _rss_mb()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=50)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    with tempfile.TemporaryDirectory() as d:
        jobs = [
            ctx.Process(target=follower, args=(f"{d}/f.db", args.trades, out)),
            ctx.Process(target=leader, args=(d, args.trades, args.symbols, out)),
        ]
        print("| process | RSS at start MB | peak RSS MB |\n|---|---|---|")
        for job in jobs:
            job.start()
            label, base, peak = out.get(timeout=600)
            job.join(60)
            print(f"| {label} | {base:.0f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
