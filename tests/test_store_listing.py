"""Listing trades at scale (newest first, limits, since, streamed JSON) and the database id."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import dtms
from dtms.models import TradeRequest
from dtms.store import TradeUpdate
from dtms.store.settings import DATABASE_ID_KEY, ID_ALPHABET, ID_LENGTH
from tests.test_store import lead


@pytest.fixture
def listed(store: dtms.Store) -> dtms.Store:
    """Six trades registered one after another: 1-3 closed by the engine, 4-6 open, varied fields."""
    for i in range(1, 7):
        store.register_trade(
            i,
            "EURUSD" if i % 2 else "XAUUSD",
            "BUY" if i % 2 else "SELL",
            1.1 + i / 3,
            0.1 * i,
            sl=(1.1 + i / 3) * (0.99 if i % 2 else 1.01),
            magic=i,
            comment=f"bot é {i}",
        )
    epoch = lead(store)
    closed = datetime(2026, 1, 5, 8, 0, 0, 123000, tzinfo=UTC)
    store.update_trades(
        epoch,
        {
            i: TradeUpdate(
                {
                    "state": "CLOSED",
                    "closed_at": closed,
                    "close_reason": "tp",
                    "score": 0.1 + 0.2,
                    "armed": 0,
                },
                {"nested": {"x": [1, 2.5, None]}, "text": 'ü"q'},
            )
            for i in (1, 2, 3)
        },
    )
    store.update_trades(
        epoch, {5: TradeUpdate({"state": "WARNING_L1", "score": -3.25}, {"r_multiple": 1e-7})}
    )
    return store


def test_iter_trades_is_newest_first_and_open_only_by_default(listed: dtms.Store) -> None:
    assert [t.ticket for t in listed.iter_trades()] == [6, 5, 4]
    assert [t.ticket for t in listed.iter_trades(include_closed=True)] == [6, 5, 4, 3, 2, 1]
    assert [t.ticket for t in listed.iter_trades(include_closed=True, limit=2)] == [6, 5]
    assert [t.ticket for t in listed.iter_trades("closed")] == [3, 2, 1]
    assert [t.ticket for t in listed.iter_trades("WARNING_L1")] == [5]


def test_since_keeps_trades_registered_at_or_after_it(listed: dtms.Store) -> None:
    fourth = listed.get_trade(4)
    assert fourth is not None
    since = fourth.registered_at
    assert [t.ticket for t in listed.iter_trades(include_closed=True, since=since)] == [6, 5, 4]
    assert listed.count_trades(since=since) == 3
    assert listed.count_trades(include_closed=False, since=since + timedelta(days=1)) == 0
    with pytest.raises(dtms.InvalidArgumentError, match="timezone-aware"):
        listed.count_trades(since=datetime(2026, 1, 1))  # noqa: DTZ001  # naive on purpose


def test_count_trades_filters_like_the_listing(listed: dtms.Store) -> None:
    assert (listed.count_trades(), listed.count_trades(include_closed=False)) == (6, 3)
    assert listed.count_trades(state="CLOSED") == 3
    assert listed.count_trades(state="healthy") == 2


def test_json_listing_equals_the_model_dump_of_every_trade(listed: dtms.Store) -> None:
    """The JSON made by SQLite is `Trade.model_dump(mode="json")` once parsed: keys, order, times, floats."""
    texts = list(listed.iter_trades_json(include_closed=True))
    models = list(listed.iter_trades(include_closed=True))
    assert len(texts) == len(models) == 6
    for text, trade in zip(texts, models, strict=True):
        assert json.loads(text) == trade.model_dump(mode="json")
        assert list(json.loads(text)) == list(type(trade).model_fields)


def test_listing_streams_in_batches_across_many_trades(store: dtms.Store) -> None:
    """More trades than one batch: every one comes, once, newest first."""
    n = 1234
    store.register_many(
        [
            TradeRequest(ticket=i, symbol="EURUSD", direction="BUY", entry_price=1.1, volume=0.1)
            for i in range(1, n + 1)
        ]
    )
    # One transaction gives one registration time: identifier decides, newest (largest) first.
    assert [json.loads(t)["ticket"] for t in store.iter_trades_json()] == list(range(n, 0, -1))
    assert sum(1 for _ in store.iter_trades(limit=600)) == 600


def test_the_database_id_is_made_once_and_read_by_every_process(store: dtms.Store, db_path: Path) -> None:
    """Random, 8 characters of Crockford base32, stored in settings; another process reads the same id."""
    assert store.setting(DATABASE_ID_KEY) is None
    made = store.database_id
    assert made is not None
    assert len(made) == ID_LENGTH
    assert set(made) <= set(ID_ALPHABET)
    assert store.database_tag == made[:4]
    with dtms.open(db_path) as again:
        assert again.database_id == made
    code = f"import dtms; print(dtms.open({str(db_path)!r}).database_id)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == made


def test_a_read_only_open_makes_no_id(store: dtms.Store, db_path: Path) -> None:
    with dtms.open(db_path, readonly=True) as reader:
        assert reader.database_id is None
    assert store.setting(DATABASE_ID_KEY) is None
    made = store.database_id
    with dtms.open(db_path, readonly=True) as reader:
        assert reader.database_id == made


def test_two_databases_have_different_ids(tmp_path: Path) -> None:
    with dtms.open(tmp_path / "a.db") as a, dtms.open(tmp_path / "b.db") as b:
        assert a.database_id != b.database_id
