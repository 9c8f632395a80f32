"""Run every benchmark in one go and write their tables to docs/performance.md.

Run: python tests/benchmarks/run_all.py [--quick]

Each benchmark is a script in this folder that prints Markdown tables; this runner only collects them, so the
document always shows figures of one run on one machine. --quick shortens the runs (for a smoke check).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "performance.md"

BENCHMARKS = [
    ("Registration and reads: embedded dtms vs the HTTP server it replaces", "bench_http_vs_embedded.py", [], ["--n", "500"]),
    ("Registration from one and four processes", "bench_register.py", [], []),
    ("Failover", "bench_failover.py", ["--trials", "50", "--hung", "3"], ["--trials", "10", "--hung", "1"]),
    ("Lock release after SIGKILL, by the dead holder's memory", "bench_lock_release.py", [], ["--trials", "5", "--sizes", "0,100"]),
    ("Engine cycle: 1000 trades on 50 symbols", "bench_engine.py", [], ["--trades", "200", "--symbols", "10"]),
    ("Replay throughput", "bench_replay.py", [], ["--quick"]),
    ("Peak memory", "bench_memory.py", [], ["--trades", "200", "--symbols", "10"]),
    ("CLI reads on 100 000 trades", "bench_cli_reads.py", [], ["--trades", "20000", "--open", "2000"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    parts = [
        "# Performance\n",
        f"Figures of one run of `python tests/benchmarks/run_all.py` on {datetime.now(UTC):%Y-%m-%d}: "
        f"{platform.system()} {platform.release()}, {cpu}, Python {platform.python_version()}. "
        "Each section is the output of the named script; rerun it to check a figure.\n",
    ]
    for title, script, full, quick in BENCHMARKS:
        path = HERE / script
        if not path.exists():
            parts.append(f"## {title}\n\n(`{script}` is not in this tree.)\n")
            continue
        t0 = time.monotonic()
        result = subprocess.run([sys.executable, str(path), *(quick if args.quick else full)], capture_output=True,
                                text=True, timeout=3600)  # fmt: skip
        took = time.monotonic() - t0
        body = "\n".join(line for line in result.stdout.splitlines() if "no per-symbol settings" not in line)
        status = "" if result.returncode == 0 else f"\n\n**failed with exit {result.returncode}:**\n\n```\n{result.stderr[-2000:]}\n```"
        parts.append(f"## {title}\n\n`python tests/benchmarks/{script} {' '.join(full)}`".rstrip() +
                     f" ({took:.0f} s)\n\n{body.strip()}{status}\n")  # fmt: skip
        print(f"{script}: {took:.0f} s, exit {result.returncode}", flush=True)
    DOC.write_text("\n".join(parts))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
