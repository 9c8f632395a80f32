"""Benchmark: the design dtms replaces (a local HTTP service in front of SQLite) against embedded calls.

    python tests/benchmarks/bench_http_vs_embedded.py [--n 1000] [--writers 1 4] [--dir DIR]

Needs the `bench` extra: fastapi, uvicorn and httpx. Figures, not assertions (not collected by pytest).

The baseline is the original system's shape: a FastAPI app under uvicorn in its own process, bound to
127.0.0.1 on an ephemeral port, writing the same rows through `dtms.open` (so the SQL, the transaction and
the fsync are identical), called by each bot process through a pooled keep-alive `httpx.Client`. Against
it, the same bot processes call `store.register_trade` / `store.get_trade` on their own connection.

Each scenario gets a fresh database. Every writer process warms up (connection, statement cache), waits
for a common start, registers `--n` distinct trades, waits until all writers are done, then reads `--n`
random trades of its own. Latency is per call, client side, including (for HTTP) encoding the request and
decoding the JSON response. With synchronous=FULL every registration waits for an fsync, so run it on the
disk the bots use (`--dir`).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from queue import Empty
from typing import Any

from pydantic import BaseModel

import dtms

#: A cold spawn of an interpreter importing pydantic, apsw (and fastapi, uvicorn) on a loaded machine.
START_DEADLINE_S = 60.0
#: Bounds a hang only: 4 writers x 1000 fsync'd registrations finish in seconds on any local disk.
RUN_DEADLINE_S = 600.0
#: Calls before the measured ones: TCP connect, the first statements prepared, pages in the cache.
WARMUP_CALLS = 20
CTX = multiprocessing.get_context("spawn")


def percentile(samples: list[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# -- the HTTP baseline ------------------------------------------------------------------------------------


class Registration(BaseModel):
    """The request body of POST /trades (module level: FastAPI resolves endpoint annotations from here)."""

    ticket: int
    symbol: str
    direction: str
    entry_price: float
    volume: float


def serve(db: str, port_out: Queue[Any]) -> None:
    """The baseline service: FastAPI under uvicorn, one dtms connection, 127.0.0.1 on an ephemeral port."""
    import uvicorn
    from fastapi import FastAPI, HTTPException

    store = dtms.open(db)
    app = FastAPI()

    # Plain `def` endpoints: FastAPI runs them in its thread pool, the right shape for blocking SQLite calls
    # (an `async def` calling SQLite would stall the event loop for every other request).
    @app.post("/trades")
    def register(reg: Registration) -> dict[str, Any]:
        trade = store.register_trade(reg.ticket, reg.symbol, reg.direction, reg.entry_price, reg.volume)
        return trade.model_dump(mode="json")

    @app.get("/trades/{ticket}")
    def get(ticket: int) -> dict[str, Any]:
        trade = store.get_trade(ticket)
        if trade is None:
            raise HTTPException(status_code=404, detail=f"no trade {ticket}")
        return trade.model_dump(mode="json")

    # Bind here, on loopback only, and hand the socket to uvicorn: the OS picks a free port, no race.
    # proto=IPPROTO_TCP, as getaddrinfo would give: asyncio sets TCP_NODELAY on accepted connections only
    # when the socket says it is TCP, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port_out.put(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()


class HttpClient:
    """What a bot process of the original design does: JSON over a pooled keep-alive connection."""

    def __init__(self, port: int) -> None:
        import httpx

        # TCP_NODELAY: without it Nagle's algorithm meets the server's delayed ACK and every call waits
        # ~40 ms on Linux; the baseline gets its best configuration, not a strawman's.
        # trust_env=False: a proxy from the environment must not sit between us and 127.0.0.1.
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", transport=transport, trust_env=False, timeout=30.0
        )

    def register(self, ticket: int, direction: str) -> Any:
        body = {
            "ticket": ticket,
            "symbol": "EURUSD",
            "direction": direction,
            "entry_price": 1.1,
            "volume": 0.1,
        }
        response = self.http.post("/trades", json=body)
        response.raise_for_status()
        return response.json()

    def get(self, ticket: int) -> Any:
        response = self.http.get(f"/trades/{ticket}")
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self.http.close()


class EmbeddedClient:
    """What a dtms bot process does: its own connection, no server in between."""

    def __init__(self, db: str) -> None:
        self.store = dtms.open(db)

    def register(self, ticket: int, direction: str) -> Any:
        return self.store.register_trade(ticket, "EURUSD", direction, 1.1, 0.1)

    def get(self, ticket: int) -> Any:
        return self.store.get_trade(ticket)

    def close(self) -> None:
        self.store.close()


# -- writer processes ----------------------------------------------------------------------------------------


def timed(call: Callable[[], Any]) -> float:
    """Milliseconds one call took."""
    t0 = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - t0) / 1e6


def writer(
    mode: str, target: str, index: int, n: int, ready: Queue[Any], go: Event, reads: Event, out: Queue[Any]
) -> None:
    """One bot process: warm up, register n trades on `go`, then read n of them on `reads`."""
    client: HttpClient | EmbeddedClient = (
        HttpClient(int(target)) if mode == "http" else EmbeddedClient(target)
    )
    try:
        base = 10_000_000 * (index + 1)
        for i in range(WARMUP_CALLS):
            client.register(base - 1 - i, "BUY")
            client.get(base - 1 - i)
        ready.put(index)
        if not go.wait(START_DEADLINE_S):
            raise TimeoutError("no start signal")
        registers = [
            timed(lambda i=i: client.register(base + i, "BUY" if i % 2 else "SELL")) for i in range(n)
        ]
        out.put(("registered", index))
        if not reads.wait(RUN_DEADLINE_S):
            raise TimeoutError("no signal to start reading")
        rng = random.Random(index)  # seeded: the same reads every run
        tickets = [base + rng.randrange(n) for _ in range(n)]
        gets = [timed(lambda t=t: client.get(t)) for t in tickets]
        out.put(("done", index, registers, gets))
    finally:
        client.close()


def reap(procs: list[SpawnProcess]) -> None:
    """Terminate, then kill, every process still alive; close them all."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        proc.close()


def take(queue: Queue[Any], procs: list[SpawnProcess], deadline_s: float, what: str) -> Any:
    """The next item of `queue`; fails at once if a process died instead of waiting out the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=0.2)
        except Empty:
            dead = [f"{p.name}: exit {p.exitcode}" for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"waiting for {what}: {', '.join(dead)}") from None
    raise TimeoutError(f"timed out after {deadline_s} s waiting for {what}")


def run_scenario(mode: str, db: Path, writers: int, n: int) -> tuple[list[float], list[float]]:
    """Register and get latencies (ms) of `writers` concurrent processes against a fresh database."""
    dtms.open(db).close()
    procs: list[SpawnProcess] = []
    try:
        target = str(db)
        if mode == "http":
            port_out: Queue[Any] = CTX.Queue()
            server = CTX.Process(target=serve, args=(str(db), port_out), name="http-server", daemon=True)
            procs.append(server)
            server.start()
            target = str(take(port_out, procs, START_DEADLINE_S, "the server's port"))
        ready: Queue[Any] = CTX.Queue()
        out: Queue[Any] = CTX.Queue()
        go, reads = CTX.Event(), CTX.Event()
        clients = [
            CTX.Process(
                target=writer,
                args=(mode, target, i, n, ready, go, reads, out),
                name=f"writer-{i}",
                daemon=True,
            )
            for i in range(writers)
        ]
        procs.extend(clients)
        for proc in clients:
            proc.start()
        for _ in clients:
            take(ready, procs, START_DEADLINE_S, "writers to warm up")
        go.set()
        for _ in clients:
            assert take(out, procs, RUN_DEADLINE_S, "registrations")[0] == "registered"
        reads.set()
        done = [take(out, procs, RUN_DEADLINE_S, "reads") for _ in clients]
        for proc in clients:
            proc.join(START_DEADLINE_S)
        codes = [proc.exitcode for proc in clients]
        if codes != [0] * writers:
            raise RuntimeError(f"{mode}: writer exit codes {codes}")
    finally:
        reap(procs)  # the HTTP server is always terminated here, whatever happened
    with dtms.open(db, create=False) as store:
        expected = writers * (n + WARMUP_CALLS)
        if store.count_trades() != expected:
            raise RuntimeError(f"{mode}: {store.count_trades()} trades stored, expected {expected}")
    return [x for d in done for x in d[2]], [x for d in done for x in d[3]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="calls of each kind per writer process (>= 500)")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4], help="concurrent writer processes")
    parser.add_argument("--dir", type=Path, default=None, help="directory for the databases (default: temp)")
    args = parser.parse_args()
    try:
        import fastapi
        import httpx
        import uvicorn
    except ImportError as exc:
        print(f"{exc}: install the bench extra (pip install 'dtms[bench]')", file=sys.stderr)
        return 2

    results: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="dtms-bench-http-", dir=args.dir) as tmp:
        for writers in args.writers:
            for mode in ("embedded", "http"):
                results[mode, writers] = run_scenario(
                    mode, Path(tmp) / f"{mode}-{writers}.db", writers, args.n
                )

    print(
        f"dtms {dtms.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}, httpx {httpx.__version__}, "
        f"{args.n} calls of each kind per writer, db in {args.dir or tempfile.gettempdir()}\n"
    )
    print("| operation | writers | embedded p50 ms | embedded p99 ms | HTTP p50 ms | HTTP p99 ms "
          "| HTTP/embedded p50 | HTTP/embedded p99 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, column in (("register_trade", 0), ("get_trade", 1)):
        for writers in args.writers:
            emb, http = results["embedded", writers][column], results["http", writers][column]
            e50, e99, h50, h99 = (
                percentile(emb, 50),
                percentile(emb, 99),
                percentile(http, 50),
                percentile(http, 99),
            )
            print(f"| {kind} | {writers} | {e50:.3f} | {e99:.3f} | {h50:.3f} | {h99:.3f} "
                  f"| {h50 / e50:.1f}x | {h99 / e99:.1f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
