"""Node processes for the election tests: spawn entry points, an event log and named deadlines."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from typing import Any, Final

from tests.process_helpers import EventPipe

CTX: Final = mp.get_context("spawn")  # Windows has no fork; Python 3.14 changed the Linux default
#: A slow interpreter start on a loaded 2-core runner is not an election failure.
SPAWN_DEADLINE_S: Final = 30.0
#: Crash takeover is measured at ~3 ms; 5 s is generous for CI yet far below the 60 s TTL the tests set.
CRASH_DEADLINE_S: Final = 5.0
#: Asserting that something does NOT happen must stay short.
NEGATIVE_WAIT_S: Final = 0.5
#: Long enough that only the OS lock (not expiry) can explain a fast takeover.
LONG_TTL: Final = {"lease_ttl_s": 60.0, "renew_deadline_s": 50.0}
#: Short timings for the hung-leader tests.
SHORT_TTL: Final = {
    "lease_ttl_s": 2.0,
    "renew_deadline_s": 1.5,
    "retry_interval_s": 0.2,
    "check_interval_s": 0.1,
    "renew_interval_s": 0.5,
    "send_margin_s": 0.2,
}

AUDIT_DDL: Final = "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, pid INTEGER)"


class AuditWork:
    """Leader work for the tests: every tick commits one audit row in a fenced transaction."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def start(self, epoch: int) -> None:
        pass

    def tick(self, epoch: int) -> None:
        audit_write(self.node.store, epoch)

    def stop(self) -> None:
        pass


def audit_write(store: Any, epoch: int) -> None:
    """One fenced audit row (the test's own table; raw SQL is fine in a test)."""
    with store.fenced(epoch):
        store._conn.execute("INSERT INTO audit (epoch, pid) VALUES (?, ?)", (epoch, os.getpid()))


def run_node(path: str, name: str, events: Any, commands: Any, election: dict[str, Any], audit: bool) -> None:
    """A bot process: starts a Node, reports leadership events, obeys commands until told to exit."""
    import logging

    import dtms

    if os.environ.get("DTMS_TEST_LOG"):  # e.g. INFO: the election's own account, on the test's stderr
        logging.basicConfig(level=os.environ["DTMS_TEST_LOG"], format=f"%(relativeCreated)d {name} %(message)s")
    from dtms.config import Config, ElectionConfig

    def put(kind: str, **extra: Any) -> None:
        events.put({"kind": kind, "name": name, "pid": os.getpid(), "t": time.monotonic(), **extra})

    # DTMS_TEST_LOCK runs a whole suite on one kind of election lock ("auto" = the robust mutex on Linux).
    election = {"lock": os.environ.get("DTMS_TEST_LOCK", "auto"), **election}
    node = dtms.Node(
        path,
        name=name,
        election=ElectionConfig(**election),
        config=Config.from_mapping({"loop": {"tick_s": election.get("loop_interval_s", 1.0)}}),
        on_started_leading=lambda epoch: put("started", epoch=epoch),
        on_stopped_leading=lambda epoch, reason: put("stopped", epoch=epoch, reason=reason),
    )
    if audit:
        node._work = AuditWork(node)
    node.start()
    put("ready")
    last_epoch: int | None = None
    while True:
        cmd = commands.get()
        op = cmd[0]
        if op == "exit":
            return
        if op == "stop":
            t = time.monotonic()
            node.stop(timeout=5)
            put("stopped_node", t_stop=t)
        elif op == "hold_write":  # a test hook: another connection of this process holds the write lock
            import apsw

            held = apsw.Connection(path)
            held.set_busy_timeout(10_000)  # the leader's own write may hold the lock at this moment
            held.execute("BEGIN IMMEDIATE")
            put("holding_write", epoch=node.epoch, is_leader=node.is_leader)
        elif op == "epoch":
            last_epoch = node.epoch if node.epoch is not None else last_epoch
            put("epoch", epoch=node.epoch, is_leader=node.is_leader)
        elif op == "write":
            epoch = cmd[1]
            try:
                audit_write(node.store, epoch)
                put("write", ok=True, epoch=epoch)
            except dtms.LeaseLostError as exc:
                put("write", ok=False, epoch=epoch, error=type(exc).__name__, is_leader=node.is_leader)
        elif op == "fork":
            pid = os.fork()
            if pid == 0:  # the child: dtms must refuse, and it must not keep the lock alive
                code = 0
                try:
                    node.store.list_trades()
                    code = 3
                except dtms.UsedAfterForkError:
                    code = 0
                try:
                    node.start()
                    code = code or 4
                except dtms.UsedAfterForkError:
                    pass
                with open(cmd[2], "w") as fh:
                    fh.write(str(code))
                time.sleep(cmd[1])
                os._exit(code)
            put("forked", child=pid)


@dataclass
class Cluster:
    """Node processes on one database, their command queues and their event pipes (one per process)."""

    path: str
    readers: dict[str, Any] = field(default_factory=dict)
    procs: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, Any] = field(default_factory=dict)
    backlog: list[dict[str, Any]] = field(default_factory=list)

    def event_pipe(self, name: str) -> EventPipe:
        """A new event pipe for the process `name`: the child writes, `wait` reads."""
        reader, writer = CTX.Pipe(duplex=False)
        self.readers[name] = reader
        return EventPipe(writer)

    def spawn(self, name: str, election: dict[str, Any] | None = None, *, audit: bool = False) -> None:
        commands = CTX.Queue()
        proc = CTX.Process(
            target=run_node,
            args=(self.path, name, self.event_pipe(name), commands, election or LONG_TTL, audit),
            name=name,
            daemon=True,
        )
        proc.start()
        self.procs[name] = proc
        self.commands[name] = commands

    def send(self, name: str, *cmd: Any) -> None:
        self.commands[name].put(cmd)

    def wait(self, kind: str, timeout: float, **match: Any) -> dict[str, Any]:
        """The first event of `kind` matching `match` (from the backlog or the pipes), or AssertionError."""
        for i, event in enumerate(self.backlog):
            if event["kind"] == kind and all(event.get(k) == v for k, v in match.items()):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} event matching {match} within {timeout} s; saw {self.backlog}")
            for reader in mp_connection.wait(list(self.readers.values()), timeout=left):
                try:
                    self.backlog.append(reader.recv())
                except (EOFError, OSError):  # the writer is gone: nothing more will come from it
                    self.readers = {k: r for k, r in self.readers.items() if r is not reader}
            for i, event in enumerate(self.backlog):
                if event["kind"] == kind and all(event.get(k) == v for k, v in match.items()):
                    return self.backlog.pop(i)

    def none_within(self, kind: str, seconds: float, **match: Any) -> None:
        """Assert that no `kind` event matching `match` arrives within `seconds`."""
        with contextlib.suppress(AssertionError):
            event = self.wait(kind, seconds, **match)
            raise RuntimeError(f"unexpected {kind} event: {event}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> float:
        t = time.monotonic()
        os.kill(self.procs[name].pid, sig)
        return t

    def reap(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(Exception):
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGCONT)  # SIGTERM waits while a child is stopped
                    proc.kill()
                proc.join(5)
                proc.close()
        self.procs.clear()


@contextlib.contextmanager
def cluster(path: str) -> Iterator[Cluster]:
    """A Cluster whose children are killed and reaped whatever happens."""
    c = Cluster(path)
    try:
        yield c
    finally:
        c.reap()


__all__ = [
    "AUDIT_DDL",
    "CRASH_DEADLINE_S",
    "CTX",
    "LONG_TTL",
    "NEGATIVE_WAIT_S",
    "SHORT_TTL",
    "SPAWN_DEADLINE_S",
    "Cluster",
    "cluster",
    "run_node",
]
