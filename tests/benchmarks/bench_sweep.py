"""Replay sweeps: the same runs in one process and across worker processes, and how the bars reach them.

Run: python tests/benchmarks/bench_sweep.py [--days 4] [--every 24] [--seeds 4] [--jobs 2] [--rows 200000]

The first table times one sweep (seeds 1..N at one density on the embedded synthetic EURUSD M1 bars) with
jobs=1 (in-process, one run after another) and with --jobs worker processes (spawned), checks that both give
the same JSON, and prints the speed-up. "runs" sums each run's own wall clock and CPU time: on a machine
busy with other work the wall figures stretch, the CPU ones much less. The last line is why the parent sends
the loaded array to the workers instead of the path: reading a CSV of --rows M1 bars against one pickle round
trip of the array.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dtms.replay import load_bars, sweep, synthetic


def _transfer(rows: int) -> None:
    bars = synthetic("EURUSD", days=rows // 1000 + 1, seed=2)[:rows]
    lines = ["time,open,high,low,close,volume,spread"] + [
        f"{datetime.fromtimestamp(int(b['time']), UTC):%Y-%m-%d %H:%M:%S},{float(b['open'])},"
        f"{float(b['high'])},{float(b['low'])},{float(b['close'])},{b['tick_volume']},{b['spread']}"
        for b in bars
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "EURUSD_M1.csv"
        path.write_text("\n".join(lines) + "\n")
        t0 = time.perf_counter()
        rates, _, _ = load_bars(path)
        read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    blob = pickle.dumps(rates, protocol=pickle.HIGHEST_PROTOCOL)
    pickle.loads(blob)  # noqa: S301 - our own bytes
    pickle_s = time.perf_counter() - t0
    print(
        f"bars to a worker, {len(rates):,} M1 rows: read the CSV {read_s:.2f} s, "
        f"pickle round trip of the array ({len(blob) / 1e6:.1f} MB) {pickle_s:.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--every", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=4, help="runs: seeds 1..N")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    bars = synthetic("EURUSD", days=args.days, seed=1)
    seeds = list(range(1, args.seeds + 1))
    label = f"EURUSD M1 {args.days} d, every {args.every}, seeds 1-{args.seeds}"
    print("| sweep | jobs | runs | wall s | runs: wall s | runs: CPU s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    walls, texts = [], []
    for jobs in (1, args.jobs):
        t0 = time.perf_counter()
        report = sweep(bars, symbol="EURUSD", seeds=seeds, every=args.every, jobs=jobs)
        wall = time.perf_counter() - t0
        walls.append(wall)
        texts.append(report.to_json())
        t = report.timing or {}
        ratio = f"{walls[0] / wall:.2f}x" if jobs != 1 else ""
        print(f"| {label} | {jobs} | {len(report.runs)} | {wall:.2f} | {t.get('runs_s', 0.0):.2f} | "
              f"{t.get('runs_cpu_s', 0.0):.2f} | {ratio} |", flush=True)  # fmt: skip
    print(f"\njobs=1 and jobs={args.jobs} byte-identical: {texts[0] == texts[1]}")
    _transfer(args.rows)


if __name__ == "__main__":  # the workers are spawned: they import this module
    main()
