"""Engine cycle cost: 1000 open trades on 50 symbols, one full deep check and one fast cycle.

Run: python tests/benchmarks/bench_engine.py [--trades 1000] [--symbols 50] [--profile]

The store is a real SQLite file (WAL, synchronous=FULL) as in production; the broker is MT5Broker over an
in-memory simulated terminal, so broker calls cost what the adapter and the simulator cost, not a network.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from datetime import UTC, datetime

import dtms
import dtms.sim
from dtms.broker import MT5Broker
from dtms.config import Config
from dtms.engine.cycle import Engine
from dtms.gateway import Gateway, SoleLeadership
from dtms.models import Holder
from dtms.sim.synth import synthetic_bars
from dtms.store import TradeUpdate


def build(trades: int, symbols: int, directory: str) -> tuple[Engine, dtms.Store, object, int]:
    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    begin, end = int(start.timestamp()) - 4 * 86_400, int(start.timestamp()) + 86_400
    names = [f"SYM{i:02d}" for i in range(symbols)]
    bars = {n: synthetic_bars(n, begin, end, digits=5, seed=i) for i, n in enumerate(names)}
    term = dtms.sim.open(None, bars=bars, clock="manual", start=start)
    broker = MT5Broker(term)
    broker.connect()
    store = dtms.open(f"{directory}/bench.db")
    holder = Holder(name="bench", host="h", pid=1, proc_start=None, boot_id=None, token="b")
    epoch, _ = store.take_over(holder, ttl_ms=10**9, now_boot_ms=0, lock_inode=None, decide=lambda r: "first")
    per = trades // symbols
    for i, name in enumerate(names):
        for k in range(per):
            side = "BUY" if (i + k) % 2 == 0 else "SELL"
            tick = broker.tick(name)
            price = tick.ask if side == "BUY" else tick.bid
            sl = round(price * (0.99 if side == "BUY" else 1.01), 5)
            out = broker.open(name, side, 1.0, sl=sl, magic=9, comment="bench")  # type: ignore[arg-type]
            assert out.is_done and out.identifier is not None
            store.register_trade(out.identifier, name, side, out.price, 1.0, sl=sl)
    # Active trades: the start conditions are covered by tests; here every trade is due for a deep check.
    store.update_trades(epoch, {t.identifier: TradeUpdate({"armed": 0}) for t in store.list_trades()})
    config = Config.from_mapping({"broker": {"server_time": 0}})
    engine = Engine(store, broker, Gateway(store, SoleLeadership(epoch), send_margin_s=0), config, now=term.now)
    engine.start(epoch)
    return engine, store, term, epoch


ACTING = [0.0]  # wall seconds spent executing transitions (journal + broker), measured around begin()


def instrument(engine: Engine) -> None:
    begin = engine.transitions.begin

    def timed_begin(*args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return begin(*args, **kwargs)
        finally:
            ACTING[0] += time.perf_counter() - t0

    engine.transitions.begin = timed_begin  # type: ignore[method-assign]


def timed(label: str, engine: Engine, fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    before = dict(engine._counters)
    ACTING[0] = 0.0
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    d = {k: engine._counters[k] - before[k] for k in before}
    print(f"| {label} | {d['fast_checks']} | {d['deep_checks']} | {d['transitions']} | {wall * 1000:.0f} | "
          f"{cpu * 1000:.0f} | {(wall - ACTING[0]) * 1000:.0f} |", flush=True)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        engine, store, term, epoch = build(args.trades, args.symbols, d)
        print(f"{store.count_trades(include_closed=False)} open trades on {args.symbols} symbols\n")
        print("| cycle | fast checks | deep checks | transitions (executed on the broker) | wall ms | cpu ms "
              "| wall ms without executing the transitions |")
        print("|---|---|---|---|---|---|---|")
        instrument(engine)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        timed("first tick: backfill (600 M5 + 300 M15 bars per symbol), fast + deep check of every trade",
              engine, lambda: engine.tick(epoch))  # fmt: skip
        term.advance(30)  # type: ignore[attr-defined]
        timed("fast cycle (no deep check due)", engine, lambda: engine.tick(epoch))
        term.advance(900)  # type: ignore[attr-defined]
        timed("deep cycle (windows filled)", engine, lambda: engine.tick(epoch))
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        counters = engine._counters
        print(f"\nfast checks {counters['fast_checks']}, deep checks {counters['deep_checks']}, "
              f"transitions {counters['transitions']}")  # fmt: skip


if __name__ == "__main__":
    main()
