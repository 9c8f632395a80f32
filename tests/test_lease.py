"""The pure lease rules: who may take over, and when a lease has expired (I1, I7)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from dtms.lease import (
    OFFSET_TOLERANCE_MS,
    LeaseRow,
    Observation,
    is_expired,
    may_take_over,
    observe,
    shares_boot_clock,
)

BOOT = "boot-a"
OFFSET = 1_796_571_863_119  # wall ms - boot ms of every process sharing the host's view of time


def row(**over: object) -> LeaseRow:
    base = LeaseRow(
        name="engine", epoch=3, holder_name="bot", host="h", pid=42, proc_start=7, boot_id=BOOT, token="t",
        acquired_at=None, renewed_at=None, expires_at=None, expires_boot_ms=10_000, renewals=5,
        lease_ttl_ms=10_000, loop_beat_boot_ms=None, loop_beat_at=None, transitions=2, released=False,
        lock_held=True, lock_inode="1:99", clock_offset_ms=OFFSET,
    )
    return dataclasses.replace(base, **over)


def rule(r: LeaseRow | None, now: int = 5_000, **kw: object) -> str | None:
    args: dict[str, object] = {"now_boot_ms": now, "boot_id": BOOT, "lock_inode": None, "holder_alive": None,
                               "clock_offset_ms": OFFSET}  # fmt: skip
    args.update(kw)
    return may_take_over(r, **args)  # type: ignore[arg-type]


def test_first_candidate_takes_an_empty_lease():
    """No row (or no holder) means the first candidate leads."""
    assert rule(None) == "first"
    assert rule(row(holder_name=None)) == "first"


def test_released_lease_is_free_at_once():
    """A graceful step-down frees the lease without waiting for the TTL (I6)."""
    assert rule(row(released=True)) == "released"


def test_winning_the_holders_lock_file_proves_it_let_go():
    """Holding the same lock inode the holder recorded: the holder exited or released."""
    assert rule(row(), lock_inode="1:99") == "holder_dead"


def test_a_replaced_lock_file_does_not_depose_a_live_holder():
    """A lock on another inode (the file was replaced) is no proof; only expiry is."""
    assert rule(row(), lock_inode="1:100") is None
    assert rule(row(), now=10_000, lock_inode="1:100") == "expired"


def test_degraded_next_in_line_needs_proof_of_death():
    """After a hung-leader takeover (lock_held = 0), the lock owner takes over only from a dead holder."""
    degraded = row(lock_held=False, lock_inode=None)
    assert rule(degraded, lock_inode="1:99", holder_alive=True) is None
    assert rule(degraded, lock_inode="1:99", holder_alive=None) is None
    assert rule(degraded, lock_inode="1:99", holder_alive=False) == "holder_dead"


def test_expiry_is_decided_on_the_boot_clock_exactly_at_the_deadline():
    """A live lease is valid until expires_boot_ms; at that instant a follower may take it (I1)."""
    assert rule(row(), now=9_999) is None
    assert rule(row(), now=10_000) == "expired"


def test_another_boot_id_is_judged_by_the_observed_time_rule_not_at_once():
    """A different boot id may be a reboot, or a process seeing another /proc (a mount namespace): neither side's
    boot clock means anything to the other, so the row must be seen unrenewed for a whole TTL (issue 11)."""
    assert rule(row(), now=0, boot_id="boot-b") is None
    assert rule(row(), now=10**9, boot_id="boot-b") is None  # no observation yet: never at once
    seen = observe(row(), None, 2_000)
    assert rule(row(), now=11_999, boot_id="boot-b", observation=seen) is None
    assert rule(row(), now=12_000, boot_id="boot-b", observation=seen) == "expired"


def test_a_foreign_view_of_time_never_compares_boot_clocks():
    """A process in another time namespace (same boot id, boot clock offset) or under libfaketime (wall offset)
    records another `wall - boot`: its deadlines and ours are not comparable either way."""
    assert shares_boot_clock(row(), boot_id=BOOT, clock_offset_ms=OFFSET + OFFSET_TOLERANCE_MS)
    assert not shares_boot_clock(row(), boot_id=BOOT, clock_offset_ms=OFFSET + OFFSET_TOLERANCE_MS + 1)
    assert not shares_boot_clock(row(clock_offset_ms=None), boot_id=BOOT, clock_offset_ms=OFFSET)
    assert not shares_boot_clock(row(), boot_id=BOOT, clock_offset_ms=None)
    # A follower whose boot clock runs 100 000 s ahead sees a live leader's deadline long past: not expired.
    ahead = 100_000_000
    assert rule(row(), now=5_000 + ahead, clock_offset_ms=OFFSET - ahead) is None
    # A leader whose boot clock runs ahead writes a deadline far in our future: it still expires, by observation.
    far = row(expires_boot_ms=10_000 + ahead, clock_offset_ms=OFFSET - ahead)
    seen = observe(far, None, 5_000)
    assert rule(far, now=14_999, observation=seen) is None
    assert rule(far, now=15_000, observation=seen) == "expired"


@given(
    skew=st.integers(min_value=-(10**12), max_value=10**12).filter(lambda d: abs(d) > OFFSET_TOLERANCE_MS),
    now=st.integers(min_value=-(10**12), max_value=10**12),
    seen_at=st.integers(min_value=-(10**12), max_value=10**12),
)
def test_with_another_view_of_time_only_observation_expires_a_lease(skew: int, now: int, seen_at: int) -> None:
    """Whatever the skew and readings: with views of time that differ, the verdict is the observed-time one."""
    r = row()
    seen = observe(r, None, seen_at)
    verdict = rule(r, now=now, clock_offset_ms=OFFSET + skew, observation=seen)
    assert (verdict == "expired") == (now - seen_at >= r.lease_ttl_ms)


@given(step=st.integers(min_value=-10**12, max_value=10**12), now=st.integers(min_value=0, max_value=20_000))
def test_wall_clock_steps_change_nothing(step: int, now: int) -> None:
    """Wall-clock fields are display only: any wall value gives the same verdict as the boot clock (I7)."""
    stepped = row(expires_at=f"step {step}", renewed_at=f"step {step}")
    assert rule(stepped, now=now) == rule(row(), now=now)
    assert (rule(row(), now=now) == "expired") == (now >= 10_000)


def test_observed_time_rule_without_a_shared_boot_clock():
    """No boot id: a row unchanged for a whole TTL on my own clock has expired; any change restarts it."""
    r = row(boot_id=None)
    obs = observe(r, None, 1_000)
    assert obs == Observation(3, 5, 1_000)
    assert not is_expired(r, now_boot_ms=10_999, boot_id=None, observation=obs)
    assert is_expired(r, now_boot_ms=11_000, boot_id=None, observation=obs)
    renewed = row(boot_id=None, renewals=6)
    obs2 = observe(renewed, obs, 10_500)
    assert obs2 == Observation(3, 6, 10_500)
    assert not is_expired(renewed, now_boot_ms=11_000, boot_id=None, observation=obs2)


@given(
    epoch=st.integers(1, 5),
    renewals=st.integers(0, 5),
    released=st.booleans(),
    lock_held=st.booleans(),
    inode=st.sampled_from([None, "1:99", "1:100"]),
    alive=st.sampled_from([None, True, False]),
    now=st.integers(0, 20_000),
)
def test_a_live_unexpired_lease_held_with_its_lock_is_never_taken(
    epoch: int, renewals: int, released: bool, lock_held: bool, inode: str | None, alive: bool | None, now: int
) -> None:
    """Safety (I1): a takeover needs release, expiry, or proof that the holder let go of its lock."""
    r = row(epoch=epoch, renewals=renewals, released=released, lock_held=lock_held)
    verdict = rule(r, now=now, lock_inode=inode, holder_alive=alive)
    if verdict == "holder_dead":
        assert (lock_held and inode == r.lock_inode) or (not lock_held and inode is not None and alive is False)
    elif verdict == "expired":
        assert now >= r.expires_boot_ms  # type: ignore[operator]
    elif verdict == "released":
        assert released
    else:
        assert verdict is None


def test_a_holder_that_took_the_lease_before_this_boot_is_gone():
    """Another boot id alone proves nothing (a mount namespace shows its own); a takeover older than this
    kernel's boot does: every process alive now started after it."""
    from dtms.lease import from_earlier_boot

    boot_began_ms = 1_800_000_000_000  # this boot's wall time of boot (`wall - boot`)
    before = datetime.fromtimestamp((boot_began_ms - 60_000) / 1000, UTC).isoformat()
    after = datetime.fromtimestamp((boot_began_ms + 60_000) / 1000, UTC).isoformat()
    mine = "b-new/pidns:1"
    assert from_earlier_boot(before, "b-old/pidns:1", boot_id=mine, clock_offset_ms=boot_began_ms)
    assert not from_earlier_boot(after, "b-old/pidns:1", boot_id=mine, clock_offset_ms=boot_began_ms)
    assert not from_earlier_boot(before, "b-new/pidns:2", boot_id=mine, clock_offset_ms=boot_began_ms)  # same boot
    assert not from_earlier_boot(before, None, boot_id=mine, clock_offset_ms=boot_began_ms)  # a lying clock
    assert not from_earlier_boot(before, "b-old", boot_id=None, clock_offset_ms=boot_began_ms)
    assert not from_earlier_boot(None, "b-old", boot_id=mine, clock_offset_ms=boot_began_ms)
    ghost = row(boot_id="b-old/pidns:1", acquired_at=before, lock_held=False, lock_inode=None)
    verdict = may_take_over(ghost, now_boot_ms=0, boot_id=mine, lock_inode=None, holder_alive=None,
                            clock_offset_ms=boot_began_ms)  # fmt: skip
    assert verdict == "holder_dead"
