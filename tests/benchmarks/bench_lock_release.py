"""How soon after SIGKILL each kind of election lock passes to a waiting process, by the holder's memory size.

Run: python tests/benchmarks/bench_lock_release.py [--trials 15] [--sizes 0,30,100,200]

A holder process takes both locks on one file (the robust mutex and the flock: independent locks), touches
N MB of memory, and is killed; a waiter process blocks on each lock in its own thread and reports when each
returned. The kernel frees a robust mutex as the holder's exit begins, an flock only after the holder's
memory is torn down. Linux only (the robust mutex is the Linux lock).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import threading
import time

from dtms.oslock import OSLock, RobustLock

CTX = mp.get_context("spawn")


def _hold(path: str, mb: int, ready) -> None:  # type: ignore[no-untyped-def]
    robust, flock = RobustLock(path), OSLock(path)
    robust.acquire()
    flock.acquire()
    junk = bytearray(mb * 1024 * 1024)
    for i in range(0, len(junk), 4096):
        junk[i] = 1
    ready.set()
    threading.Event().wait(3600)


def _wait(path: str, ready, out) -> None:  # type: ignore[no-untyped-def]
    got: dict[str, float] = {}

    def take(name: str, lock: RobustLock | OSLock) -> None:
        lock.acquire()
        got[name] = time.monotonic()

    kinds = (("robust", RobustLock), ("flock", OSLock))
    threads = [threading.Thread(target=take, args=(n, k(path))) for n, k in kinds]
    for t in threads:
        t.start()
    ready.set()
    for t in threads:
        t.join()
    out.put(got)


def trial(directory: str, n: int, mb: int) -> dict[str, float]:
    path = os.path.join(directory, f"{n}.lock")
    held, waiting, out = CTX.Event(), CTX.Event(), CTX.Queue()
    holder = CTX.Process(target=_hold, args=(path, mb, held), daemon=True)
    holder.start()
    assert held.wait(30)
    waiter = CTX.Process(target=_wait, args=(path, waiting, out), daemon=True)
    waiter.start()
    assert waiting.wait(30)
    time.sleep(0.1)  # both threads are blocked in their locks by now
    t0 = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)
    got = out.get(timeout=30)
    holder.join(5)
    waiter.join(5)
    return {k: (v - t0) * 1000 for k, v in got.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--sizes", default="0,30,100,200", help="holder memory sizes in MB")
    args = parser.parse_args()
    if sys.platform != "linux":
        raise SystemExit("Linux only: the robust mutex is the Linux election lock")
    print("| holder touches | robust mutex p50 ms | p90 ms | flock p50 ms | p90 ms |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for mb in (int(s) for s in args.sizes.split(",")):
            rows = [trial(d, n, mb) for n in range(args.trials)]
            r = [x["robust"] for x in rows]
            f = [x["flock"] for x in rows]
            q = lambda v, p: statistics.quantiles(v, n=10, method="inclusive")[p]  # noqa: E731
            print(f"| {mb} MB | {statistics.median(r):.2f} | {q(r, 8):.2f} | {statistics.median(f):.2f} | "
                  f"{q(f, 8):.2f} |", flush=True)


if __name__ == "__main__":
    main()
