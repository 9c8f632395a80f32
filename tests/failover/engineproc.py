"""Engine node processes on a shared database and a shared simulated terminal, with crash points."""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def run_engine_node(db: str, sim: str, name: str, events: Any, crash_at: str | None, crash_action: str) -> None:
    """A leader-capable bot process; `crash_at` = before_send | after_send SIGKILLs it around one broker call."""
    import dtms
    import dtms.sim
    from dtms.broker import MT5Broker
    from dtms.config import Config
    from dtms.gateway import Gateway

    def put(kind: str, **extra: Any) -> None:
        events.put({"kind": kind, "name": name, "pid": os.getpid(), "t": time.monotonic(), **extra})

    if crash_at is not None:
        original = Gateway.send

        def send(self: Gateway, epoch: int, action: Any, request: Any, call: Any) -> Any:
            if action.action_type != crash_action:
                return original(self, epoch, action, request, call)

            def die() -> Any:
                # before_send: the row is SENT, the terminal saw nothing. after_send: the terminal executed it,
                # the outcome was never recorded.
                outcome = call() if crash_at == "after_send" else None
                put("crashing", at=crash_at, action_id=action.action_id)
                time.sleep(0.2)  # let the queue feeder flush the event
                os.kill(os.getpid(), signal.SIGKILL)
                return outcome

            return original(self, epoch, action, request, die)

        Gateway.send = send  # type: ignore[method-assign]

    term = dtms.sim.open(sim)
    config = Config.from_mapping({
        "broker": {"server_time": 0},
        "loop": {"tick_s": 0.02},
        "election": {"lease_ttl_s": 60, "renew_deadline_s": 50},
        # The test drives one transition by hand; no deep check may add decisions of its own meanwhile.
        "monitoring": {"deep_s": 1e9, "deep_cooldown_s": 1e9},
    })  # fmt: skip
    node = dtms.Node(
        db, MT5Broker(term), name=name, config=config, now=term.now,
        on_started_leading=lambda epoch: put("started", epoch=epoch),
    )  # fmt: skip
    node.start()
    put("ready")
    time.sleep(3600)


__all__ = ["run_engine_node"]
