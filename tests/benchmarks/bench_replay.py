"""Replay throughput, event-driven against the exact oracle in the same process, and its ceilings.

Run: python tests/benchmarks/bench_replay.py [--days 4] [--every 36] [--quick] [--no-exact]

The first table times each configuration in both modes (bar × open-trade steps per second of the managed
run; the reports must be byte-identical), then the unmanaged baseline on the same entries. The H1 file
(~3,800 bars from the embedded generator, mapped to H1/H4) runs event-driven only unless --quick.

The second table times the pure engine code a replay cannot skip: one deep check's six signals and score
(`signals.evaluate` on full M5/M15 windows, uncached) and one state-machine step. A replay that runs the same
engine at the live cadence pays at least one evaluation per deep check; the ceiling shown is the throughput if
nothing else (no fast check, no store, no terminal) cost anything.
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime

import numpy as np

from dtms.config import Config
from dtms.engine import machine
from dtms.engine import signals as sg
from dtms.engine.symbols import SymbolData
from dtms.models import Direction, TradeState
from dtms.replay import replay, synthetic
from dtms.report import Report


def _pure_costs(days: int) -> tuple[float, float]:
    """Seconds per uncached `signals.evaluate` and per `machine.step`, on the synthetic data's windows."""
    import dtms.sim
    from dtms.broker import MT5Broker

    rates = synthetic("EURUSD", days=days, seed=1)
    start = datetime.fromtimestamp(int(rates["time"][-1]) - 3600, UTC)
    term = dtms.sim.open(None, bars={"EURUSD": rates}, clock="manual", account="hedging", start=start)
    broker = MT5Broker(term)
    broker.connect()
    cfg = Config()
    sym = SymbolData("EURUSD", "EURUSD", cfg)
    sym.refresh(broker, term.now(), 1)
    assert sym.regime is not None and sym.thresholds is not None
    view = sg.VwapView(sym.vwap.value, sym.slope(), 0, False)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        ev = sg.evaluate(sym.m5.final(), sym.m15.final(), Direction.BUY, sym.regime, sym.thresholds, view, None, cfg)
    evaluate_s = (time.perf_counter() - t0) / n
    trade = machine.TradeView(state=TradeState.HEALTHY, direction=Direction.BUY, state_entered_at=start,
                              flat_timer_started_at=None, recovery_timer_started_at=None, last_trail_bar_time=None)  # fmt: skip
    t0 = time.perf_counter()
    for _ in range(n):
        machine.step(trade, ev, start, cfg)
    return evaluate_s, (time.perf_counter() - t0) / n


def _steps(report: Report, baseline: bool = False) -> int:
    """Bar x open-trade steps of one run's trades (as the report counts them for the managed run)."""
    times = report.bars["time"].astype(np.int64) if report.bars is not None else np.zeros(0, dtype=np.int64)
    out = 0
    for m, b in report.trades:
        t = b if baseline else m
        a = int(np.searchsorted(times, int(datetime.fromisoformat(t.entry_at).timestamp())))
        z = int(np.searchsorted(times, int(datetime.fromisoformat(t.exit_at).timestamp())))
        out += z - a
    return out


def _modes(label: str, bars: np.ndarray, exact: bool = True, **kwargs: object) -> None:
    """One configuration, event-driven and (unless skipped) exact, in the same process."""
    runs = [("event", replay(bars, symbol="EURUSD", **kwargs))]  # type: ignore[arg-type]
    if exact:
        runs.append(("exact", replay(bars, symbol="EURUSD", exact=True, **kwargs)))  # type: ignore[arg-type]
    base = runs[0][1]
    for mode, report in runs:
        t = report.timing or {}
        print(f"| {label} | {mode} | {report.meta['entries'].get('opened')} | {report.engine['bar_trade_steps']} | "
              f"{int(t.get('ticks_run', 0))} | {t.get('managed_s', 0):.2f} | "
              f"{t.get('bar_trade_steps_per_s', 0):,.0f} | {t.get('wall_s', 0):.2f} |", flush=True)
    if len(runs) == 2:
        same = runs[0][1].to_json() == runs[1][1].to_json()
        speed = (runs[1][1].timing or {})["managed_s"] / max(1e-9, (base.timing or {})["managed_s"])
        print(f"| {label} | event / exact | | | | {speed:.1f}x faster | byte-identical: {same} | |", flush=True)
    steps = _steps(base, baseline=True)
    b_s = (base.timing or {}).get("baseline_s", 0.0)
    print(f"| {label} | unmanaged baseline | | {steps} | | {b_s:.3f} | {steps / b_s if b_s else 0:,.0f} | |",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--every", type=int, default=36)
    parser.add_argument("--quick", action="store_true", help="two days, a shorter H1 file")
    parser.add_argument("--no-exact", action="store_true", help="skip the exact (oracle) runs")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    days = 2 if args.quick else args.days
    print("| data | mode | opened | bar x trade steps | ticks run | engine s | steps/s | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    m1 = synthetic("EURUSD", days=days, seed=1)
    for every in (args.every, max(6, args.every // 6)):
        _modes(f"EURUSD M1 {days} d, every {every}", m1, not args.no_exact, every=every, seed=1)
    h1 = synthetic("EURUSD", days=80 if args.quick else 222, seed=3, timeframe="H1")
    # The exact mode on H1 runs ~120 fast checks per bar and trade (minutes); it is timed on the quick file.
    _modes(f"EURUSD H1 {len(h1)} bars, H1/H4, every 24", h1, args.quick and not args.no_exact,
           every=24, seed=1, timeframes=("H1", "H4"))
    print()
    old_main(days, args.every)
    print()
    _load(200_000)


def _load(rows: int) -> None:
    """`read_csv` of a MetaTrader M1 export of `rows` bars (written from the embedded generator)."""
    import tempfile
    from pathlib import Path

    from dtms.sim.loaders import read_csv

    bars = synthetic("EURUSD", days=rows // 1000 + 1, seed=2)[:rows]
    head = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"
    lines = [head] + [
        f"{datetime.fromtimestamp(int(b['time']), UTC):%Y.%m.%d\t%H:%M:%S}\t{float(b['open'])}\t"
        f"{float(b['high'])}\t{float(b['low'])}\t{float(b['close'])}\t{b['tick_volume']}\t0\t{b['spread']}"
        for b in bars
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "EURUSD_M1.csv"
        path.write_text("\n".join(lines) + "\n")
        t0 = time.perf_counter()
        back = read_csv(path)
        took = time.perf_counter() - t0
    assert len(back) == len(bars)
    print(f"read_csv, MetaTrader export of {len(bars):,} M1 bars: {took:.2f} s ({len(bars) / took:,.0f} rows/s)")


def old_main(days: int, every_n: int) -> None:
    print("| data | entries | wall s | engine s | baseline s | fast checks | deep checks | bar × open-trade steps/s |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for every in (every_n, max(6, every_n // 6)):
        report = replay(synthetic("EURUSD", days=days, seed=1), symbol="EURUSD", every=every, seed=1)
        t = report.timing or {}
        e = report.engine
        ratios.append((e["bar_trade_steps"], e["deep_checks"], t.get("fast_checks", 0.0), t.get("managed_s", 0.0)))
        print(f"| EURUSD M1, {days} days | every {every} M5 bars ({report.meta['entries'].get('opened', '?')} opened) | "
              f"{t.get('wall_s', 0):.1f} | {t.get('managed_s', 0):.1f} | {t.get('baseline_s', 0):.2f} | "
              f"{int(t.get('fast_checks', 0))} | {e['deep_checks']} | {t.get('bar_trade_steps_per_s', 0):,.0f} |", flush=True)
    evaluate_s, step_s = _pure_costs(days)
    steps, deep, fast, managed = map(sum, zip(*ratios, strict=True))
    print()
    print("| what | per call ms | per bar × trade step µs | ceiling steps/s |")
    print("|---|---|---|---|")
    print(f"| whole fast check (store, terminal, engine), measured above | {managed / fast * 1000:.3f} | "
          f"{managed / steps * 1e6:.0f} | {steps / managed:,.0f} |")
    print(f"| `signals.evaluate` (six signals + score), once per deep check | {evaluate_s * 1000:.3f} | "
          f"{evaluate_s * deep / steps * 1e6:.1f} | {steps / (evaluate_s * deep):,.0f} |")
    print(f"| `machine.step`, once per deep check | {step_s * 1000:.4f} | {step_s * deep / steps * 1e6:.2f} | "
          f"{steps / (step_s * deep):,.0f} |")
    print(f"\n{steps} steps, {int(fast)} fast checks, {deep} deep checks: {fast / steps:.2f} fast and "
          f"{deep / steps:.3f} deep checks per step (event-driven).")


if __name__ == "__main__":
    main()
