"""Two bot processes register trades into one shared dtms database, then the trades are listed.

    python examples/two_processes.py [PATH]

Without PATH the database goes to a temporary directory that is removed afterwards. Each process opens
the database itself (one connection per process, as every bot does); both also register the same ticket
with the same data, which shows that registration is idempotent: it is stored once.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
from pathlib import Path

import dtms

SYMBOLS = {"bot-a": ("EURUSD", 1.0850, 0.0050), "bot-b": ("XAUUSD", 2350.0, 15.0)}
SHARED_TICKET = 9000  # registered by both bots with identical data
JOIN_DEADLINE_S = 60.0  # includes a cold interpreter start under spawn


def bot(path: str, name: str, first_ticket: int) -> None:
    """One bot process: open the shared database and register three trades plus the shared one."""
    symbol, price, step = SYMBOLS[name]
    with dtms.open(path) as store:
        for i in range(3):
            direction = "buy" if i % 2 == 0 else "sell"
            entry = price + i * step
            sl = entry - step if direction == "buy" else entry + step
            store.register_trade(first_ticket + i, symbol, direction, entry, 0.10, sl=sl, comment=name)
        store.register_trade(SHARED_TICKET, "EURUSD", "BUY", 1.0800, 0.10, sl=1.0750, comment="shared")


def show(trades: list[dtms.Trade]) -> None:
    """Print the trades as an aligned table."""
    header = ("ticket", "symbol", "direction", "entry_price", "sl", "volume", "state", "comment")
    rows = [
        (str(t.ticket), t.symbol, t.direction.value, f"{t.entry_price:g}", f"{t.sl:g}" if t.sl else "-",
         f"{t.volume:g}", t.state.value, t.comment or "-")
        for t in trades
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def main(path: Path) -> int:
    # spawn: what Windows does anyway, and what a bot started separately amounts to.
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=bot, args=(str(path), "bot-a", 1001), name="bot-a"),
        ctx.Process(target=bot, args=(str(path), "bot-b", 2001), name="bot-b"),
    ]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(JOIN_DEADLINE_S)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    failed = [(p.name, p.exitcode) for p in procs if p.exitcode != 0]
    if failed:
        print(f"bot processes failed: {failed}", file=sys.stderr)
        return 1
    with dtms.open(path, create=False) as store:
        trades = store.list_trades()
    print(f"{len(trades)} trades registered by 2 processes in {path}:\n")
    show(trades)
    expected = 2 * 3 + 1  # three each, plus the shared ticket once
    if len(trades) != expected:
        print(f"expected {expected} trades, found {len(trades)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory(prefix="dtms-example-") as tmp:
        sys.exit(main(Path(tmp) / "dtms.db"))
