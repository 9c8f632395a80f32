"""Failover latency: SIGKILL, graceful and hung-leader takeover, beside a polling filelock baseline.

Run: python tests/benchmarks/bench_failover.py [--trials 50] [--hung 5]

Each latency is measured on CLOCK_MONOTONIC, which Linux shares between processes: the parent reads it right
before the kill (or the leader right before `node.stop()`), the new leader inside `on_started_leading`.
Kill delays are randomised, so polling phases cannot lock in with the kills.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "failover"))

from nodeproc import CTX, LONG_TTL, SHORT_TTL, SPAWN_DEADLINE_S, cluster  # noqa: E402

import dtms  # noqa: E402


def summary(name: str, values_ms: list[float]) -> str:
    v = sorted(values_ms)
    q = statistics.quantiles(v, n=100, method="inclusive") if len(v) > 1 else v * 99
    return f"| {name} | {len(v)} | {q[49]:.2f} | {q[89]:.2f} | {q[98]:.2f} | {v[-1]:.2f} |"


def crash_trials(path: str, trials: int, rng: random.Random) -> list[float]:
    out = []
    with cluster(path) as c:
        serial = 0
        for _ in range(2):
            c.spawn(f"n{serial}")
            c.wait("ready", SPAWN_DEADLINE_S, name=f"n{serial}")
            serial += 1
        leader = c.wait("started", 10)
        for _ in range(trials):
            time.sleep(rng.uniform(0.05, 0.25))
            t0 = c.kill(leader["name"])
            nxt = c.wait("started", 10)
            out.append((nxt["t"] - t0) * 1000)
            c.procs.pop(leader["name"]).join(5)
            leader = nxt
            c.spawn(f"n{serial}")
            c.wait("ready", SPAWN_DEADLINE_S, name=f"n{serial}")
            serial += 1
    return out


def graceful_trials(path: str, trials: int, rng: random.Random) -> list[float]:
    out = []
    with cluster(path) as c:
        serial = 0
        for _ in range(2):
            c.spawn(f"n{serial}")
            c.wait("ready", SPAWN_DEADLINE_S, name=f"n{serial}")
            serial += 1
        leader = c.wait("started", 10)
        for _ in range(trials):
            time.sleep(rng.uniform(0.05, 0.25))
            c.send(leader["name"], "stop")
            stopped = c.wait("stopped_node", 10, name=leader["name"])
            nxt = c.wait("started", 10)
            out.append((nxt["t"] - stopped["t_stop"]) * 1000)
            c.send(leader["name"], "exit")
            c.procs.pop(leader["name"]).join(5)
            leader = nxt
            c.spawn(f"n{serial}")
            c.wait("ready", SPAWN_DEADLINE_S, name=f"n{serial}")
            serial += 1
    return out


def hung_trials(path: str, trials: int) -> list[float]:
    out = []
    with cluster(path) as c:
        serial = 0
        for _ in range(2):
            c.spawn(f"n{serial}", SHORT_TTL)
            c.wait("ready", SPAWN_DEADLINE_S, name=f"n{serial}")
            serial += 1
        leader = c.wait("started", 10)
        for _ in range(trials):
            time.sleep(0.5)
            t0 = c.kill(leader["name"], signal.SIGSTOP)
            nxt = c.wait("started", 30)
            out.append((nxt["t"] - t0) * 1000)
            os.kill(c.procs[leader["name"]].pid, signal.SIGKILL)
            c.procs.pop(leader["name"]).join(5)
            leader = nxt
            c.spawn(f"n{serial}", SHORT_TTL)
            c.wait("ready", SPAWN_DEADLINE_S, name=f"n{serial}")
            serial += 1
    return out


def _poller(lock_path: str, events, hold: bool) -> None:  # type: ignore[no-untyped-def]
    from filelock import FileLock

    lock = FileLock(lock_path, thread_local=False)
    lock.acquire()  # filelock's default: poll every 50 ms
    events.put(("locked", os.getpid(), time.monotonic()))
    time.sleep(3600)


def baseline_trials(directory: str, trials: int, rng: random.Random) -> list[float]:
    """The naive design: followers poll `filelock` at its default interval."""
    lock_path = os.path.join(directory, "baseline.lock")
    events = CTX.Queue()
    procs = {}
    out = []
    try:
        for _ in range(2):
            p = CTX.Process(target=_poller, args=(lock_path, events, True), daemon=True)
            p.start()
            procs[p.pid] = p
        _, holder, _ = events.get(timeout=SPAWN_DEADLINE_S)
        for _ in range(trials):
            time.sleep(rng.uniform(0.3, 0.6))  # the replacement is polling by now
            t0 = time.monotonic()
            os.kill(holder, signal.SIGKILL)
            _, new, t = events.get(timeout=10)
            out.append((t - t0) * 1000)
            procs.pop(holder).join(5)
            holder = new
            p = CTX.Process(target=_poller, args=(lock_path, events, True), daemon=True)
            p.start()
            procs[p.pid] = p
    finally:
        for p in procs.values():
            p.kill()
            p.join(5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--hung", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as d:
        rows = []
        for label, run in (
            ("dtms crash (SIGKILL → on_started_leading)", lambda p: crash_trials(p, args.trials, rng)),
            ("dtms graceful (node.stop() → on_started_leading)", lambda p: graceful_trials(p, args.trials, rng)),
            (f"dtms hung leader (SIGSTOP, TTL {SHORT_TTL['lease_ttl_s']} s)", lambda p: hung_trials(p, args.hung)),
        ):
            path = os.path.join(d, f"{len(rows)}.db")
            dtms.open(path).close()
            rows.append(summary(label, run(path)))
            print(rows[-1], file=sys.stderr, flush=True)  # progress; the table follows on stdout
        rows.append(summary("baseline: filelock polling, default 50 ms", baseline_trials(d, args.trials, rng)))
        print(rows[-1], file=sys.stderr, flush=True)
    print("| scenario | n | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nTTL for crash/graceful runs: {LONG_TTL['lease_ttl_s']} s (takeover by the OS lock, not expiry)")


if __name__ == "__main__":
    main()
