"""Engine node processes for the chaos run: each broker send may kill its own process just before or after."""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

#: Short lease timings, so a paused (SIGSTOPped) leader is replaced within seconds.
ELECTION = {
    "lease_ttl_s": 2.0, "renew_deadline_s": 1.5, "retry_interval_s": 0.2, "check_interval_s": 0.1,
    "renew_interval_s": 0.5, "send_margin_s": 0.2, "loop_stall_s": 10.0,
}  # fmt: skip


def run_chaos_node(db: str, sim: str, name: str, events: Any, crash_probability: float, seed: int) -> None:
    """A leader-capable bot process. With `crash_probability`, a send SIGKILLs this process right after the row
    is marked SENT (the terminal saw nothing) or right after the terminal executed it (no outcome recorded)."""
    import dtms
    import dtms.sim
    from dtms.broker import MT5Broker
    from dtms.config import Config
    from dtms.gateway import Gateway

    rng = random.Random(seed)  # noqa: S311  # a reproducible fault schedule, not security
    original = Gateway.send

    def send(self: Gateway, epoch: int, action: Any, request: Any, call: Any) -> Any:
        if rng.random() >= crash_probability:
            return original(self, epoch, action, request, call)
        after = rng.random() < 0.5

        def die() -> Any:
            outcome = call() if after else None
            events.put({"kind": "crash", "name": name, "after_send": after, "action_id": action.action_id})
            time.sleep(0.05)  # let the queue's feeder thread hand the event over
            os.kill(os.getpid(), signal.SIGKILL)
            return outcome

        return original(self, epoch, action, request, die)

    Gateway.send = send  # type: ignore[method-assign]
    term = dtms.sim.open(sim)
    config = Config.from_mapping({"broker": {"server_time": 0}, "loop": {"tick_s": 0.02}, "election": ELECTION})
    node = dtms.Node(
        db, MT5Broker(term), name=name, config=config, now=term.now,
        on_started_leading=lambda epoch: events.put({"kind": "started", "name": name, "epoch": epoch,
                                                     "t": time.monotonic()}),
    )  # fmt: skip
    node.start()
    events.put({"kind": "ready", "name": name})
    while True:
        time.sleep(3600)


__all__ = ["ELECTION", "run_chaos_node"]
