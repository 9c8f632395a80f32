"""Clock protocol (wall UTC, boot-clock ms, boot id), the system clock and a manual clock for tests and
replay."""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

_BOOT_ID_PATH: Final = Path("/proc/sys/kernel/random/boot_id")
_STAT_PATH: Final = Path("/proc/stat")
#: How far this process's `wall - boot` may differ from the kernel's boot time (`btime`, whole seconds) before
#: its boot clock is not trusted as the host's: a time namespace whose /proc is not its own, or libfaketime.
BOOT_CLOCK_TOLERANCE_MS: Final = 2_000


class Clock(Protocol):
    """Every time read dtms makes goes through one of these, so tests and replay can step time."""

    def utc_now(self) -> datetime:
        """Timezone-aware UTC wall time: for display and trading logic, never for lease deadlines."""
        ...

    def boot_ms(self) -> int:
        """Milliseconds on a clock shared by every process of this host that wall-clock steps do not move."""
        ...

    def boot_id(self) -> str | None:
        """Identifies the current boot; `None` when `boot_ms` is not comparable across processes."""
        ...


def _read_boot_id() -> str | None:
    """The kernel's boot id, qualified by this process's pid namespace (`<boot id>/pidns:<inode>`).

    Pids and /proc entries are only comparable inside one pid namespace: processes of two containers that
    share a host name would otherwise judge each other's pids. With the namespace in the id, a peer in another
    one counts as "another boot": its liveness is never guessed from a pid, its deadline never compared.
    """
    try:
        boot = _BOOT_ID_PATH.read_text().strip()
    except OSError:
        return None
    if not boot:
        return None
    try:
        return f"{boot}/pidns:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return boot


def _kernel_boot_time_ms() -> int | None:
    """The kernel's wall time of boot (`btime` in /proc/stat, whole seconds), or None where there is none."""
    try:
        for line in _STAT_PATH.read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) * 1000
    except (OSError, ValueError):
        return None
    return None


def clock_offset_ms(clock: Clock) -> int:
    """`wall - boot` in milliseconds: equal (within a few ms) in every process that shares one view of time.

    A lease row records its writer's offset; a reader whose offset differs has another view of time (a time
    namespace, libfaketime) and must not compare boot-clock deadlines with it (spec/election.md §6).
    """
    return round(clock.utc_now().timestamp() * 1000) - clock.boot_ms()


class SystemClock:
    """The real clocks.

    On Linux `boot_ms` is `CLOCK_BOOTTIME`: system-wide, counts through suspend, ignores wall-clock steps, so
    a deadline one process writes is valid in another (spec I7). Elsewhere `boot_ms` is this process's
    monotonic clock and `boot_id` is `None`: lease logic then falls back to the observed-time rule. So it does
    when this process's `wall - boot` disagrees with the kernel's boot time (libfaketime, a foreign /proc).
    """

    def __init__(self) -> None:
        self._boottime = getattr(time, "CLOCK_BOOTTIME", None) if sys.platform.startswith("linux") else None
        self._boot_id = _read_boot_id() if self._boottime is not None else None
        if self._boot_id is not None and not self._boot_clock_is_the_kernels():
            # This process's clocks disagree with the kernel's own boot time: its boot clock cannot be
            # compared with other processes' deadlines, so it uses (and its rows demand) the observed-time
            # rule.
            self._boot_id = None

    def _boot_clock_is_the_kernels(self) -> bool:
        btime = _kernel_boot_time_ms()
        return btime is None or abs(clock_offset_ms(self) - btime) <= BOOT_CLOCK_TOLERANCE_MS

    def utc_now(self) -> datetime:
        return datetime.now(UTC)

    def boot_ms(self) -> int:
        if self._boottime is not None:
            return time.clock_gettime_ns(self._boottime) // 1_000_000
        return time.monotonic_ns() // 1_000_000

    def boot_id(self) -> str | None:
        return self._boot_id


class ManualClock:
    """A clock that moves only when told to: `advance(seconds)` moves both clocks, `step_wall` only the
    wall."""

    def __init__(
        self, start: datetime | None = None, *, boot_ms: int = 1_000_000, boot_id: str | None = "manual-boot"
    ) -> None:
        self._wall = start or datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        if self._wall.tzinfo is None:
            raise ValueError("ManualClock start must be timezone-aware")
        self._boot = boot_ms
        self._boot_id = boot_id

    def utc_now(self) -> datetime:
        return self._wall

    def boot_ms(self) -> int:
        return self._boot

    def boot_id(self) -> str | None:
        return self._boot_id

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass on both clocks."""
        self._wall += timedelta(seconds=seconds)
        self._boot += round(seconds * 1000)

    def step_wall(self, seconds: float) -> None:
        """Step only the wall clock, as an NTP correction or an operator would."""
        self._wall += timedelta(seconds=seconds)

    def reboot(self) -> None:
        """A new boot: a new boot id, the boot clock restarts."""
        self._boot_id = uuid.uuid4().hex
        self._boot = 0


def process_start_time(pid: int | None = None) -> int | None:
    """Start time of a process in clock ticks since boot (Linux `/proc/<pid>/stat` field 22), else None.

    With the pid it pins one process: a reused pid has another start time.
    """
    pid = os.getpid() if pid is None else pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


__all__ = [
    "BOOT_CLOCK_TOLERANCE_MS",
    "Clock",
    "ManualClock",
    "SystemClock",
    "clock_offset_ms",
    "process_start_time",
]
