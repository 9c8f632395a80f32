"""Engine node processes for the chaos run: a broker send may kill its own process just before or after, stop
it (SIGSTOP) inside the send window, or hang past the lease before it reaches the terminal."""

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
#: A hung send outlasts the loop watchdog (loop_stall_s), its stop grace and two leases: by then another node leads.
HANG_S = ELECTION["loop_stall_s"] + 1.0 + 2 * ELECTION["lease_ttl_s"] + 2.0


def run_chaos_node(db: str, sim: str, name: str, events: Any, faults: dict[str, float], budget: Any, seed: int,
                   stonith: bool) -> None:  # fmt: skip
    """A leader-capable bot process. Each send, after its row is marked SENT, may (probabilities in `faults`):
    `crash`: SIGKILL this process before the terminal saw the request or right after it executed it (no
    outcome recorded); `pause`: SIGSTOP this process just before the request reaches the terminal (a GC pause,
    VM steal, a laptop lid); `hang`: block the send for HANG_S, longer than the lease, then send it (a terminal
    reconnecting), with `on_wedged = "stay"`. `budget` (a shared lock-free array: a node may be killed at any
    moment, and a killed lock holder would block the others) bounds pauses and hangs over the whole run."""
    import dtms
    import dtms.sim
    from dtms.broker import MT5Broker
    from dtms.config import Config
    from dtms.gateway import Gateway

    rng = random.Random(seed)  # noqa: S311  # a reproducible fault schedule, not security
    original = Gateway.send

    def send(self: Gateway, epoch: int, action: Any, request: Any, call: Any) -> Any:
        draw = rng.random()
        fault = None
        for kind in ("crash", "pause", "hang"):
            if draw < faults.get(kind, 0.0):
                fault = kind
                break
            draw -= faults.get(kind, 0.0)
        slot = {"pause": 0, "hang": 1}.get(fault or "")
        if slot is not None:
            if budget[slot] <= 0:
                return original(self, epoch, action, request, call)
            budget[slot] -= 1  # racy across nodes by design: an approximate budget is all it needs
        if fault in ("pause", "hang"):
            info = {"name": name, "pid": os.getpid(), "epoch": epoch, "action_id": action.action_id,
                    "action_type": action.action_type, "t": time.monotonic()}  # fmt: skip

            def late() -> Any:
                events.put({"kind": fault, **info})
                if fault == "pause":
                    time.sleep(0.05)  # let the pipe hand the event over
                    os.kill(os.getpid(), signal.SIGSTOP)
                else:
                    time.sleep(HANG_S)
                outcome = call()  # after SIGCONT or the hang: the request reaches the terminal now
                events.put({"kind": "late_send", **info, "retcode": getattr(outcome, "retcode", None)})
                return outcome

            return original(self, epoch, action, request, late)
        if fault is None:
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
    election = {**ELECTION, "stonith": stonith, "on_wedged": "stay", "stop_grace_s": 1.0}
    config = Config.from_mapping(
        {"broker": {"server_time": 0}, "loop": {"tick_s": 0.02}, "election": election}
    )
    node = dtms.Node(
        db, MT5Broker(term), name=name, config=config, now=term.now,
        on_started_leading=lambda epoch: events.put({"kind": "started", "name": name, "epoch": epoch,
                                                     "t": time.monotonic()}),
    )  # fmt: skip
    node.start()
    events.put({"kind": "ready", "name": name})
    while True:
        time.sleep(3600)


__all__ = ["ELECTION", "HANG_S", "run_chaos_node"]
