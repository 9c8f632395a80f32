"""Peers that do not share this process's view of time: another time namespace, another boot id (I1, I7).

Before: a follower in another time namespace (or seeing another boot id) took over a live, renewing leader "by
expiry" at once and leadership ping-ponged, `is_leader` true in two processes; a hung leader inside the namespace
was never replaced (its deadline lay 100 000 s ahead). Now such a peer is judged by the observed-time rule.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import dtms

pytestmark = [
    pytest.mark.failover,
    pytest.mark.skipif(sys.platform != "linux", reason="time and mount namespaces are Linux"),
]

WATCHNODE = str(Path(__file__).with_name("watchnode.py"))
TTL_S = 1.0
#: Generous for a loaded runner; without the fix the foreign peer took over within ~50 ms.
READY_DEADLINE_S = 30.0

_BIND_BOOT_ID = (
    'printf "%s\\n" 00000000-0000-4000-8000-00000000f00d > "$DTMS_FAKE_BOOT_ID" && '
    'mount --bind "$DTMS_FAKE_BOOT_ID" /proc/sys/kernel/random/boot_id && exec "$@"'
)
PREFIXES: dict[str, list[str]] = {
    "time_namespace": ["unshare", "--time", "--boottime", "100000"],
    "other_boot_id": ["unshare", "-m", "sh", "-c", _BIND_BOOT_ID, "sh"],
}


def _available(kind: str, tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    env = {**os.environ, "DTMS_FAKE_BOOT_ID": str(tmp_path / "probe-boot-id")}
    probe = subprocess.run([*PREFIXES[kind], "cat", "/proc/sys/kernel/random/boot_id"], env=env,
                           capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    if probe.returncode != 0:
        return False
    return kind != "other_boot_id" or probe.stdout.strip().endswith("f00d")


class Peer:
    """One watchnode process and the (wall time, is_leader, epoch) lines it printed."""

    def __init__(self, path: str, name: str, prefix: list[str], tmp_path: Path) -> None:
        env = {**os.environ, "DTMS_FAKE_BOOT_ID": str(tmp_path / f"{name}-boot-id")}
        self.name = name
        self.proc = subprocess.Popen([*prefix, sys.executable, WATCHNODE, path, name, str(TTL_S)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        self.lines: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(json.loads(line))
                self.changed.notify_all()

    def wait(self, predicate: Any, deadline_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: any(predicate(x) for x in self.lines), deadline_s)

    def led(self) -> list[int]:
        with self.changed:
            return [x["epoch"] for x in self.lines if x.get("leader")]

    def intervals(self, until: float) -> list[tuple[float, float]]:
        """Wall-time intervals during which this process reported `is_leader`."""
        out, start = [], None
        with self.changed:
            for x in self.lines:
                if x.get("leader") and start is None:
                    start = x["t"]
                elif "leader" in x and not x["leader"] and start is not None:
                    out.append((start, x["t"]))
                    start = None
        if start is not None:
            out.append((start, until))
        return out

    def close(self) -> None:
        """Stop the process (it may already be gone: a takeover kills a hung leader) and close both pipes."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        with contextlib.suppress(BrokenPipeError):  # the process exited with input still buffered
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)
        self.proc.stdout.close()


@pytest.fixture
def peers(tmp_path):
    made: list[Peer] = []

    def make(name: str, prefix: list[str]) -> Peer:
        peer = Peer(str(tmp_path / "dtms.db"), name, prefix, tmp_path)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


@pytest.mark.parametrize("kind", sorted(PREFIXES))
@pytest.mark.parametrize("foreign_leads", [False, True], ids=["foreign_follows", "foreign_leads"])
def test_a_peer_with_another_view_of_time_never_takes_over_a_live_leader(
    tmp_path, peers, kind, foreign_leads
):
    if not _available(kind, tmp_path):
        pytest.skip(f"cannot run a process in a {kind.replace('_', ' ')} here (needs unshare and privileges)")
    dtms.open(tmp_path / "dtms.db").close()
    first = peers("first", PREFIXES[kind] if foreign_leads else [])
    assert first.wait(lambda x: x.get("leader"), READY_DEADLINE_S), first.lines
    second = peers("second", [] if foreign_leads else PREFIXES[kind])
    assert second.wait(lambda x: x.get("ready"), READY_DEADLINE_S), second.lines
    time.sleep(4 * TTL_S)  # four lease lifetimes of a live, renewing leader
    end = time.time()
    assert second.led() == [], f"the {'host' if foreign_leads else 'foreign'} peer took over a live leader"
    assert set(first.led()) == {1}
    for a_start, a_end in first.intervals(end):
        for b_start, b_end in second.intervals(end):
            assert a_end <= b_start or b_end <= a_start, "is_leader was true in two processes at once"


@pytest.mark.parametrize("kind", sorted(PREFIXES))
def test_a_hung_leader_in_another_time_view_is_replaced_within_its_ttl(tmp_path, peers, kind):
    if not _available(kind, tmp_path):
        pytest.skip(f"cannot run a process in a {kind.replace('_', ' ')} here (needs unshare and privileges)")
    dtms.open(tmp_path / "dtms.db").close()
    foreign = peers("foreign", PREFIXES[kind])
    assert foreign.wait(lambda x: x.get("leader"), READY_DEADLINE_S), foreign.lines
    host = peers("host", [])
    assert host.wait(lambda x: x.get("ready"), READY_DEADLINE_S), host.lines
    # The namespaced process is `unshare`'s child (unshare execs, so the pid is the node's own).
    os.kill(foreign.proc.pid, signal.SIGSTOP)
    stopped = time.time()
    # Observed-time rule: unrenewed for one TTL on the host's clock, plus a check interval and a busy runner.
    assert host.wait(lambda x: x.get("leader"), 3 * TTL_S + 5.0), "a hung foreign leader was never replaced"
    took = next(x["t"] for x in host.lines if x.get("leader")) - stopped
    assert took >= TTL_S * 0.9, f"taken over after {took:.2f} s: the TTL was not observed"
    assert host.led() == [2]
