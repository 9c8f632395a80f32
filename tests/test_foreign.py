"""The foreign-database rail on the simulated terminal: another database's tag on the account blocks risk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dtms.broker.base import COMMENT_MAX, action_tag, clean_comment, parse_action_tag
from dtms.engine import foreign
from dtms.engine import rails as rl
from dtms.engine.cycle import Engine
from dtms.gateway import Gateway, SoleLeadership
from dtms.models import TradeState
from tests.engine_helpers import SYMBOL, Rig, close_rigs, evaluation, make_rig

S = foreign  # short alias for the module under test
OTHER = "zzzz"  # a database tag no fresh database has in the tests below (its id is random, checked)


@pytest.fixture(autouse=True)
def _close_rigs() -> Iterator[None]:
    yield
    close_rigs()


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    made = make_rig(tmp_path)
    assert made.store.database_tag not in (None, OTHER)
    return made


def open_foreign(rig: Rig, tag: str) -> int:
    """A position opened by another dtms database's leader on the same account: its hedge, tagged `tag`."""
    comment = action_tag("h", 77, 123456789, database=tag)
    magic = rig.config.execution.magic
    out = rig.as_bot(lambda: rig.broker.open(SYMBOL, "SELL", 0.1, magic=magic, comment=comment))
    assert out.is_done
    assert out.identifier is not None
    return out.identifier


def alerts(rig: Rig) -> list[dict[str, object]]:
    return [e.fields for e in rig.notifier.events if e.kind == "alert" and e.fields.get("alert") == S.RAIL]


# -- tags ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", [None, 1, 123456789, 10**17 - 1])
@pytest.mark.parametrize("action_id", [1, 42, 36**4 - 1, 36**4, 10**12])
@pytest.mark.parametrize("kind", ["c", "h", "r"])
def test_a_database_tag_fits_a_comment_and_reads_back(
    kind: str, action_id: int, identifier: int | None
) -> None:
    """Every tag is a clean comment of at most 26 characters; database and action id always read back."""
    tag = action_tag(kind, action_id, identifier, database="k3x9")  # type: ignore[arg-type]
    assert len(tag) <= COMMENT_MAX
    assert clean_comment(tag) == tag
    assert tag.startswith("dtms-")
    parsed = parse_action_tag(tag)
    assert parsed is not None
    assert (parsed.database, parsed.kind, parsed.action_id) == ("k3x9", kind, action_id)
    assert parsed.identifier in (identifier, None)
    if identifier is not None and action_id < 36**4:
        assert parsed.identifier == identifier  # a 17-digit identifier fits beside 4 action-id characters
    assert parse_action_tag(tag.upper()) == parsed  # a broker that upper-cases comments


def test_tags_without_a_database_keep_the_old_form_and_are_nobodys() -> None:
    """database=None is the old tag; it reads back with no database, so it never trips the rail."""
    assert action_tag("h", 42, 123456789) == "dtms-h123456789a42"
    old = parse_action_tag("dtms-h123456789a42")
    assert old is not None
    assert (old.database, old.identifier, old.action_id) == (None, 123456789, 42)
    assert parse_action_tag("dtms-c-50123") is None  # MT5Broker's own default close comment
    assert parse_action_tag("bot entry") is None
    assert S.foreign_tags([("dtms-h123456789a42", "p"), ("hello", "q")], own="abcd") == {}


def test_a_database_tag_must_be_four_base36_characters() -> None:
    with pytest.raises(ValueError, match="4 characters"):
        action_tag("c", 1, database="toolong")


def test_foreign_tags_finds_other_databases_only() -> None:
    comments = [
        (action_tag("c", 1, database="abcd"), "deal 1"),
        (action_tag("h", 2, 9, database="wxyz"), "p 9"),
    ]
    assert S.foreign_tags(comments, own="abcd") == {"wxyz": f"p 9 ({comments[1][0]})"}


# -- the rail, end to end ----------------------------------------------------------------------------------


def test_another_databases_position_trips_the_rail_alerts_and_blocks_the_hedge(rig: Rig) -> None:
    """A position tagged by another database: an alert, the account REDUCING, and WARNING_L2 → HEDGED sends
    no hedge (the gated fallback runs instead); the status row shows the rail."""
    trade = rig.open_main(volume=1.0)
    assert rig.engine.guard.account_state is rl.TradingState.ACTIVE
    open_foreign(rig, OTHER)
    rig.tick()
    assert rig.engine.guard.account_state is rl.TradingState.REDUCING
    [alert] = alerts(rig)
    assert alert["foreign"] == [OTHER]
    assert alert["database_id"] == rig.store.database_id
    assert S.pending(rig.store) == [OTHER]
    assert S.RAIL in rig.store.setting("engine.status")["tripped"]["account"]
    rig.put_state(trade.identifier, TradeState.WARNING_L2)
    before = {p.identifier for p in rig.broker.positions()}
    rig.step(trade.identifier, evaluation(-7))
    assert {p.identifier for p in rig.broker.positions()} <= before  # nothing risk-adding: no new position
    assert (rig.trade(trade.identifier).engine.get("hedge") or {}).get("mode") != "hedge"
    rig.tick()
    assert len(alerts(rig)) == 1  # recorded once, not on every tick


def test_own_and_old_tags_do_not_trip_the_rail(rig: Rig) -> None:
    rig.open_main()
    own = rig.store.database_tag
    assert own is not None
    open_foreign(rig, own)
    comment = action_tag("h", 5, 99)  # the old form, without a database
    rig.as_bot(lambda: rig.broker.open(SYMBOL, "BUY", 0.1, magic=7, comment=comment))
    rig.tick()
    assert rig.engine.guard.account_state is rl.TradingState.ACTIVE
    assert alerts(rig) == []
    assert S.pending(rig.store) == []


def test_a_closed_foreign_position_is_found_in_the_deal_history(rig: Rig) -> None:
    """Gone from the positions, the other database's deals still show it at the next reconcile."""
    rig.open_main()
    ident = open_foreign(rig, OTHER)
    assert rig.as_bot(lambda: rig.broker.close(ident, comment="manual")).is_done
    rig.tick()
    assert rig.engine.guard.account_state is rl.TradingState.ACTIVE  # not seen yet: no position carries it
    rig.engine.reconcile(rig.epoch, rig.now())
    assert S.pending(rig.store) == [OTHER]
    assert rig.engine.guard.account_state is rl.TradingState.REDUCING


def test_the_rail_survives_a_new_leader_and_clears_on_acknowledgement(rig: Rig) -> None:
    """Stored in the database: a new leader is REDUCING from its start, before any tick; the operator's
    acknowledgement clears it at the next tick; a database seen only later trips it again."""
    rig.open_main()
    open_foreign(rig, OTHER)
    rig.tick()
    assert S.pending(rig.store) == [OTHER]
    successor = Engine(rig.store, rig.broker, Gateway(rig.store, SoleLeadership(rig.epoch), send_margin_s=0),
                       rig.config, now=rig.term.now, notifier=rig.notifier)  # fmt: skip
    successor.start(rig.epoch)
    assert successor.guard.account_state is rl.TradingState.REDUCING
    assert S.acknowledge(rig.store) == [OTHER]
    rig.advance(30)
    successor.tick(rig.epoch)
    assert successor.guard.account_state is rl.TradingState.ACTIVE
    assert S.RAIL not in successor.guard.tripped["account"]
    open_foreign(rig, "yyyy")
    rig.advance(30)
    successor.tick(rig.epoch)
    assert successor.guard.account_state is rl.TradingState.REDUCING
    assert S.pending(rig.store) == ["yyyy"]
