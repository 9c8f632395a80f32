"""Wall time and peak memory of every CLI read on a database of 100 000 trades (issue 11, point 6).

Run: python tests/benchmarks/bench_cli_reads.py [--trades 100000] [--open 10000] [--keep DIR]

Builds the database through the public store API (one `register_many` transaction, then one fenced
`update_trades` that closes most of them with an engine state of realistic size), then runs each read command
in its own `python -m dtms` subprocess and measures its wall time and peak RSS (`RUSAGE_CHILDREN` ru_maxrss,
read after each child so every figure is that child's own). Prints a Markdown table and exits 1 when a read
misses a target (1 s, 200 MB). Figures, not a test: it is not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

TARGET_S: Final = 1.0
TARGET_MB: Final = 200.0
#: An engine column of the size a managed trade carries after a few deep checks (score breakdown, timers).
ENGINE: Final = {
    "last_fast_at": "2026-01-05T08:00:00+00:00",
    "last_deep_at": "2026-01-05T08:00:00+00:00",
    "r_multiple": 0.42,
    "vwap_cross_counter": 1,
    "vwap_flip_active": False,
    "warnings": {"rsi": {"count": 1, "expires_at": "2026-01-05T09:00:00+00:00"}},
    "evaluation": {
        "score": -3.2,
        "confluence": "mixed",
        "confluence_ratio": 0.5,
        "analysis": "m5/m15",
        "signals": {
            name: {"raw": -1.0, "weight": 1.2, "reason": f"{name} against the position for two bars"}
            for name in ("vwap", "rsi", "macd", "structure", "volume", "bollinger")
        },
        "regime": {"session": "london", "volatility": "normal", "structure": "trend"},
    },
    "broker": {"volume": 0.1, "price_current": 1.1012, "profit": 12.0, "sl": 1.09, "tp": 1.12},
}


def build(path: Path, trades: int, still_open: int) -> float:
    """`trades` trades, the newest `still_open` open and the rest CLOSED; returns the seconds it took."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import dtms
    from dtms.models import TradeRequest
    from dtms.store import TradeUpdate
    from tests.test_store import lead

    t0 = time.monotonic()
    with dtms.open(path) as store:
        requests = [
            TradeRequest(
                ticket=i,
                symbol=("EURUSD", "GBPUSD", "XAUUSD")[i % 3],
                direction="BUY" if i % 2 else "SELL",
                entry_price=1.1,
                volume=0.1,
                sl=1.09 if i % 2 else 1.11,
            )
            for i in range(1, trades + 1)
        ]
        store.register_many(requests)
        epoch = lead(store)
        closed_at = datetime(2026, 1, 5, 8, tzinfo=UTC)
        updates = {
            i: TradeUpdate(
                {
                    "state": "CLOSED",
                    "closed_at": closed_at + timedelta(seconds=i),
                    "close_reason": "sl",
                    "armed": 0,
                },
                ENGINE,
            )
            for i in range(1, trades - still_open + 1)
        }
        updates.update(
            {i: TradeUpdate({"armed": 0}, ENGINE) for i in range(trades - still_open + 1, trades + 1)}
        )
        store.update_trades(epoch, updates)
        for i in range(1, 200):  # a journal with some rows, for `actions` and `status`
            store.journal_intent(
                epoch,
                identifier=trades - (i % still_open),
                action_type="tighten_sl",
                idempotency_key=f"bench-{i}",
            )
        store.checkpoint()
    return time.monotonic() - t0


def measure(db: Path, args: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of `python -m dtms --db DB ARGS` in a fresh process."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "dtms", "--db", str(db), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
        timeout=600,
    )
    took = time.monotonic() - t0
    # The largest child so far: run from a runner process of its own (`--child`), it is this child's.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stderr.decode(errors="replace")[-2000:])
    return took, peak / 1024, proc.returncode  # Linux reports KiB


def run_one(db: str, args: list[str]) -> None:
    """Child mode: measure one command and print `seconds MB code` (a fresh RUSAGE_CHILDREN per command)."""
    took, mb, code = measure(Path(db), args)
    print(f"{took:.6f} {mb:.3f} {code}")


COMMANDS: Final = [
    ["trades"],
    ["trades", "--json"],
    ["trades", "--all"],
    ["trades", "--all", "--json"],
    ["trades", "--all", "--json", "--limit", "0"],
    ["trades", "--since", "2026-01-01"],
    ["trade", "100000"],
    ["actions"],
    ["status"],
    ["status", "--json"],
    ["lease"],
    ["health"],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=10_000, help="How many of them are still open.")
    parser.add_argument("--keep", type=Path, help="Build (or reuse) the database in this directory.")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child[0], args.child[1:])
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        db = directory / "bench.db"
        if not db.exists():
            took = build(db, args.trades, args.open)
            print(
                f"built {args.trades:,} trades ({args.open:,} open) in {took:.1f} s; "
                f"{db.stat().st_size / 2**20:.0f} MB\n"
            )
        missed = []
        print("| command | wall s | peak RSS MB | exit | target |")
        print("|---|---:|---:|---:|---|")
        for command in COMMANDS:
            # Each command from a runner process of its own: its RUSAGE_CHILDREN is that one child.
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(db), *command],
                capture_output=True,
                text=True,
                check=True,
                timeout=900,
                env={**os.environ, "COLUMNS": "200"},
            )
            took, mb, code = out.stdout.split()
            ok = float(took) <= TARGET_S and float(mb) <= TARGET_MB and code in ("0", "1")
            if not ok:
                missed.append(" ".join(command))
            print(
                f"| `dtms {' '.join(command)}` | {float(took):.2f} | {float(mb):.0f} | {code} | "
                f"{'ok' if ok else 'MISSED'} |",
                flush=True,
            )
        if missed:
            print(f"\nmissed the targets ({TARGET_S:g} s, {TARGET_MB:g} MB): {', '.join(missed)}")
            sys.exit(1)
        print(f"\nevery read within {TARGET_S:g} s and {TARGET_MB:g} MB")


if __name__ == "__main__":
    main()
