"""Shared fixtures (a database path, an open store, a manual clock) and the hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import pytest
from hypothesis import HealthCheck, settings

import dtms
from dtms.clock import ManualClock

# A Store touched in a forked child must fail loudly; apsw's checker makes SQLite itself refuse too, and it
# only works when installed before the first connection exists (spec/election.md section 7). Some apsw
# builds (the PyPI wheels of 3.54) leave it out; the Store's own pid guard still applies there.
_fork_checker = getattr(apsw, "fork_checker", None)
if _fork_checker is not None:
    _fork_checker()

# NOTE: every example writes to a real SQLite file with synchronous=FULL, so an fsync can stall for
# hundreds of milliseconds on a busy CI disk: no deadline in CI, a loose one locally.
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a test's database goes; nothing exists there yet (the parent directory does not either)."""
    return tmp_path / "data" / "dtms.db"


@pytest.fixture
def open_store(db_path: Path) -> Iterator[Callable[..., dtms.Store]]:
    """A factory for more connections (`open_store()`, `open_store(path, **kwargs)`), closed at teardown."""
    opened: list[dtms.Store] = []

    def factory(path: str | os.PathLike[str] | None = None, **kwargs: object) -> dtms.Store:
        store = dtms.open(db_path if path is None else path, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., dtms.Store]) -> dtms.Store:
    """A fresh store at `db_path`, closed at teardown."""
    return open_store()


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test says so."""
    return ManualClock()
