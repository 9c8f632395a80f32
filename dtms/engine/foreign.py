"""The foreign-database rail: dtms-tagged activity on this account that another dtms database sent.

Two databases on one account mean two leaders managing the same positions: the misconfiguration dtms exists to
end (issue 11, point 4). Every request dtms sends carries its database's tag (`action_tag`); a leader that
finds another tag on its account's positions or deals records it, raises an alert and makes the account
REDUCING (nothing risk-adding is sent) until the operator acknowledges it with `dtms foreign ack`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from dtms.broker.base import Broker, parse_action_tag
from dtms.errors import BrokerError
from dtms.store import Store

log = logging.getLogger(__name__)

#: The rail's name in `tripped` and in the status.
RAIL: Final = "foreign_database"
#: Written by the leader (fenced): {"tags": {tag: {"first_seen_at", "seen"}}} of every foreign tag ever seen.
DETECTED_KEY: Final = "foreign.detected"
#: Written by the operator (`dtms foreign ack`): {"tags": [...], "at", "by"}; the rail ignores these tags.
ACKNOWLEDGED_KEY: Final = "foreign.acknowledged"
#: How far back the first deal scan of a leader looks: another leader that traded today is the danger.
FIRST_SCAN: Final = timedelta(days=1)
#: Later scans overlap the previous one by this much (deals can appear with a slightly older time).
SCAN_OVERLAP: Final = timedelta(minutes=5)


def foreign_tags(comments: Iterable[tuple[str, str]], own: str | None) -> dict[str, str]:
    """Database tags other than `own` in (comment, where) pairs, each with where it was first seen.

    Tags older than database ids (no database in them) and comments that are not dtms tags are nobody's.
    """
    found: dict[str, str] = {}
    for comment, where in comments:
        tag = parse_action_tag(comment)
        if tag is not None and tag.database is not None and tag.database != own:
            found.setdefault(tag.database, f"{where} ({comment})")
    return found


def pending(store: Store) -> list[str]:
    """The foreign tags seen and not acknowledged yet: the rail is tripped while there is one."""
    detected = (store.setting(DETECTED_KEY) or {}).get("tags") or {}
    acknowledged = set((store.setting(ACKNOWLEDGED_KEY) or {}).get("tags") or [])
    return sorted(set(detected) - acknowledged)


def acknowledge(store: Store, by: str = "operator") -> list[str]:
    """Acknowledge every foreign tag seen so far (the operator's `dtms foreign ack`); returns them.

    The rail clears at the leader's next tick. A tag seen only after this call trips it again.
    """
    detected = sorted(((store.setting(DETECTED_KEY) or {}).get("tags") or {}).keys())
    store.set_setting(ACKNOWLEDGED_KEY, {"tags": detected, "at": store.clock.utc_now().isoformat(), "by": by})
    return detected


class ForeignWatch:
    """The leader's watch: positions on every tick it reads them, the deal history on every reconcile."""

    def __init__(self, store: Store, broker: Broker, emit: Callable[..., None]) -> None:
        self.store, self.broker, self._emit = store, broker, emit
        self._scanned_to: datetime | None = None

    def observe_positions(self, epoch: int, now: datetime, positions: Iterable[Any]) -> bool:
        """Check the comments of the account's open positions; True while the rail is tripped."""
        return self._record(epoch, now, ((p.comment, f"position {p.identifier}") for p in positions))

    def scan_deals(self, epoch: int, now: datetime) -> bool:
        """Check the deal history since the last scan (the last day at first); True while tripped."""
        since = now - FIRST_SCAN if self._scanned_to is None else self._scanned_to - SCAN_OVERLAP
        try:
            deals = self.broker.deals(since=since)
        except BrokerError as exc:  # no evidence this time; the next scan covers the same span again
            log.warning("dtms: deal history unavailable for the foreign-database check: %s", exc)
            return self.tripped()
        self._scanned_to = now
        seen = ((d.comment, f"deal {d.ticket} of position {d.identifier}") for d in deals)
        return self._record(epoch, now, seen)

    def tripped(self) -> bool:
        """Whether a foreign tag is pending acknowledgement (read from the database: survives failover)."""
        return bool(pending(self.store))

    def _record(self, epoch: int, now: datetime, comments: Iterable[tuple[str, str]]) -> bool:
        found = foreign_tags(comments, self.store.database_tag)
        if found:
            detected = dict(self.store.setting(DETECTED_KEY) or {})
            tags = dict(detected.get("tags") or {})
            new = {t: seen for t, seen in found.items() if t not in tags}
            if new:
                tags.update({t: {"first_seen_at": now.isoformat(), "seen": seen} for t, seen in new.items()})
                with self.store.fenced(epoch):  # the finding and its alert commit together
                    self.store.set_setting(DETECTED_KEY, {**detected, "tags": tags}, epoch=epoch)
                    self._emit(
                        "alert",
                        now,
                        alert=RAIL,
                        database_id=self.store.database_id,
                        foreign=sorted(new),
                        seen=list(new.values()),
                        action="another dtms database manages this account: nothing risk-adding is sent "
                        "until `dtms foreign ack`",
                    )
        return self.tripped()


__all__ = [
    "ACKNOWLEDGED_KEY",
    "DETECTED_KEY",
    "RAIL",
    "ForeignWatch",
    "acknowledge",
    "foreign_tags",
    "pending",
]
