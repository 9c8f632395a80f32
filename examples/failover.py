"""Two bot processes on one database: one leads; kill it; the other takes over within milliseconds.

Run: python examples/failover.py
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import tempfile
import time
from typing import Any


def bot(path: str, name: str, events: Any) -> None:
    """A bot process: join the election and report when it starts leading."""
    import dtms

    def started(epoch: int) -> None:
        events.put((name, os.getpid(), epoch, time.monotonic()))

    node = dtms.Node(path, name=name, on_started_leading=started)
    node.start()
    time.sleep(3600)


def main() -> None:
    import dtms

    ctx = mp.get_context("spawn")  # the same on Linux and Windows
    path = os.path.join(tempfile.mkdtemp(prefix="dtms-failover-"), "dtms.db")
    events: Any = ctx.Queue()
    procs = {
        name: ctx.Process(target=bot, args=(path, name, events), daemon=True) for name in ("telegram", "api")
    }
    try:
        for p in procs.values():
            p.start()
        name, pid, epoch, _ = events.get(timeout=30)
        print(f"{name} (pid {pid}) leads with epoch {epoch}")
        time.sleep(1)  # the other bot is waiting in the OS lock by now
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        new_name, new_pid, new_epoch, started_at = events.get(timeout=30)
        print(f"killed {name}; {new_name} (pid {new_pid}) leads with epoch {new_epoch}, "
              f"{(started_at - killed_at) * 1000:.1f} ms later")  # fmt: skip
        lease = dtms.open(path).lease()
        assert lease is not None and lease.holder is not None and lease.holder.name == new_name
        assert new_epoch == epoch + 1
        print(f"dtms lease: holder {lease.holder.name}, epoch {lease.epoch}, state {lease.state.value}")
    finally:
        for p in procs.values():
            p.kill()
            p.join(5)


if __name__ == "__main__":
    main()
