"""Benchmark: register_trade latency from one process and from concurrent writer processes; get_trade latency.

    python tests/benchmarks/bench_register.py [--n 1000] [--writers 4] [--dir DIR]

Figures, not assertions (not collected by pytest). Each registration is its own BEGIN IMMEDIATE transaction
committed with synchronous=FULL, so the numbers are dominated by the disk's fsync latency: run it on the
disk the bots will use (`--dir`), and expect tmpfs to flatter and a laptop SSD on battery to disappoint.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import dtms

START_DEADLINE_S = 60.0  # cold spawn of several interpreters on a loaded machine


def percentile(samples: list[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def register_many(store: dtms.Store, first_ticket: int, n: int) -> list[float]:
    """Register n distinct trades; the latency of each call in milliseconds."""
    out = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        store.register_trade(first_ticket + i, "EURUSD", "BUY" if i % 2 else "SELL", 1.1, 0.1)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def writer(path: str, index: int, n: int, ready: Queue[Any], go: Event, results: Queue[Any]) -> None:
    """A concurrent writer process: open, report ready, wait for the start, register n trades."""
    with dtms.open(path) as store:
        ready.put(index)
        if not go.wait(START_DEADLINE_S):
            raise TimeoutError("no start signal")
        started = time.perf_counter()
        latencies = register_many(store, 10_000_000 * (index + 1), n)
        results.put((index, latencies, time.perf_counter() - started))


def row(name: str, samples: list[float], wall_s: float | None = None) -> str:
    rate = f"{len(samples) / wall_s:9.0f}" if wall_s else f"{'-':>9}"
    return (
        f"{name:<34} {len(samples):>6} {statistics.median(samples):>9.3f} {percentile(samples, 99):>9.3f} "
        f"{max(samples):>9.3f} {rate}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="registrations per process")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writer processes")
    parser.add_argument(
        "--dir", type=Path, default=None, help="directory for the database (default: a temp dir)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dtms-bench-", dir=args.dir) as tmp:
        lines = []
        # 1. One process.
        single = Path(tmp) / "single.db"
        with dtms.open(single) as store:
            register_many(store, 1, 20)  # warm-up: page cache, statement cache
            wall = time.perf_counter()
            one = register_many(store, 1_000, args.n)
            wall = time.perf_counter() - wall
            lines.append(row("register_trade, 1 process", one, wall))
            # 3. Reads of existing trades, random order (seeded).
            rng = random.Random(1)
            tickets = [1_000 + rng.randrange(args.n) for _ in range(args.n)]
            reads = []
            for ticket in tickets:
                t0 = time.perf_counter_ns()
                store.get_trade(ticket)
                reads.append((time.perf_counter_ns() - t0) / 1e6)
            lines.append(row("get_trade, 1 process", reads))

        # 2. Concurrent writers started together.
        shared = Path(tmp) / "shared.db"
        dtms.open(shared).close()
        ctx = multiprocessing.get_context("spawn")
        ready: Queue[Any] = ctx.Queue()
        results: Queue[Any] = ctx.Queue()
        go = ctx.Event()
        procs = [
            ctx.Process(target=writer, args=(str(shared), i, args.n, ready, go, results), daemon=True)
            for i in range(args.writers)
        ]
        try:
            for proc in procs:
                proc.start()
            for _ in procs:
                ready.get(timeout=START_DEADLINE_S)
            wall = time.perf_counter()
            go.set()
            got = [results.get(timeout=600) for _ in procs]
            wall = time.perf_counter() - wall
            for proc in procs:
                proc.join(60)
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                    proc.join()
        if any(p.exitcode != 0 for p in procs):
            print(f"writer failed: {[p.exitcode for p in procs]}", file=sys.stderr)
            return 1
        merged = [x for _, latencies, _ in got for x in latencies]
        lines.insert(1, row(f"register_trade, {args.writers} processes", merged, wall))
        with dtms.open(shared, create=False) as store:
            assert store.count_trades() == args.writers * args.n

    print(
        f"dtms {dtms.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"db in {args.dir or tempfile.gettempdir()}"
    )
    print(f"{'operation':<34} {'calls':>6} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'calls/s':>9}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
