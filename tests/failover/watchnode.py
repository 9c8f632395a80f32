"""A node run as a plain script, so a test can start it under `unshare` (another time or mount namespace).

Usage: python watchnode.py DB NAME TTL_S. Prints one JSON line per change of (is_leader, epoch) with the
host's wall time (time namespaces never offset CLOCK_REALTIME), and exits when stdin closes.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import dtms
from dtms.config import ElectionConfig

POLL_S = 0.005


def main(path: str, name: str, ttl_s: float) -> None:
    timings = ElectionConfig(lease_ttl_s=ttl_s, renew_deadline_s=ttl_s * 0.75, retry_interval_s=0.1,
                             check_interval_s=0.05, renew_interval_s=ttl_s / 4, send_margin_s=0.1)  # fmt: skip
    node = dtms.Node(path, name=name, election=timings)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    node.start()
    seen: tuple[bool, int | None] | None = None
    print(json.dumps({"t": time.time(), "ready": True, "boot_id": node.elector.clock.boot_id()}), flush=True)
    while not done.wait(POLL_S):
        now = (node.is_leader, node.epoch)
        if now != seen:
            seen = now
            print(json.dumps({"t": time.time(), "leader": now[0], "epoch": now[1]}), flush=True)
    node.stop(timeout=5)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
