"""Who moved the stop: an SL changed at the broker by someone other than dtms (spec §9, issue: SL ownership).

The leader compares, on every fast check, the broker's SL with the trade's. A change dtms made itself (a
modify in the journal, done or still in flight) is simply recorded. Any other change is an event and a
journal row (`adopt_sl`, or `restore_sl` when a request goes back to the broker):

- tighter (or a first SL): adopted;
- looser, or removed, on a trade dtms acts on (owner `dtms` or `none`, or a defensive state, which overrides
  every owner): by `ownership.foreign_sl` — `restore` (default) sends dtms's SL back and alerts, `alert` keeps
  the new SL and alerts, `adopt` keeps it; after `ownership.max_sl_restores` restores of one trade, the new SL
  is kept with an alert (two managers fighting over one stop would otherwise never stop);
- looser on a trade another manager owns, outside the defensive states: that manager's to move; adopted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from dtms.broker.base import Position
from dtms.config import Config, ForeignSl
from dtms.engine.machine import ActionType
from dtms.gateway import Gateway
from dtms.models import ActionStatus, Trade
from dtms.store import Store

#: Journal rows read back to tell dtms's own SL moves from someone else's.
_RECENT = 50
_IN_FLIGHT = (ActionStatus.INTENT, ActionStatus.SENT, ActionStatus.UNKNOWN)


class StopWatch:
    """Classifies and answers SL changes made at the broker by others (module docstring)."""

    def __init__(self, store: Store, gateway: Gateway, config: Config, emit: Callable[..., None]) -> None:
        self.store, self.gateway, self.config, self._emit = store, gateway, config, emit

    def check(self, epoch: int, trade: Trade, position: Position, half_tick: float, now: datetime) -> bool:
        """The broker's SL differs from the trade's: handle it; True when the broker's SL becomes the trade's
        (False while dtms's own SL is being restored)."""
        old, new = trade.sl, position.sl
        rows = self.store.actions(trade.identifier, limit=_RECENT)
        if _own(rows, new, half_tick):
            return True
        d = trade.direction.sign
        loosened = old is not None and (new is None or d * (new - old) < -half_tick)
        fields = {"symbol": trade.symbol, "sl": new, "previous": old, "owner": trade.owner}

        def report(kind: str, policy: str | None = None, alert: bool = False) -> None:
            extra = {} if policy is None else {"policy": policy}
            self._emit("external_change", now, identifier=trade.identifier, kind=kind, **extra, **fields)
            if alert:
                self._emit("alert", now, identifier=trade.identifier, kind=kind, **extra, **fields)

        if not loosened:
            self._adopt(epoch, trade, new, old, "tightened", now)
            report("sl_tightened")
            return True
        if not (trade.owner in ("dtms", "none") or trade.state in self.config.ownership.defensive_states):
            self._adopt(epoch, trade, new, old, "owner", now)  # the owner's to move
            report("sl_loosened", "owner")
            return True
        policy = self.config.ownership.foreign_sl.value
        if policy == ForeignSl.RESTORE.value:
            restores = [a for a in rows if a.action_type == ActionType.RESTORE_SL.value]
            if any(a.status in _IN_FLIGHT for a in restores):
                return False  # a restore is under way (run by the fast check's retry of open actions)
            if len(restores) < self.config.ownership.max_sl_restores:
                self.gateway.intent(
                    epoch, identifier=trade.identifier, action_type=ActionType.RESTORE_SL.value,
                    idempotency_key=f"{trade.identifier}:restore_sl:{len(restores)}",
                    params={"sl": old, "loosened_to": new},
                )  # fmt: skip
                report("sl_loosened", policy, alert=True)
                return False
            policy = "restore_limit"
        self._adopt(epoch, trade, new, old, policy, now)
        report("sl_loosened", policy, alert=policy != ForeignSl.ADOPT.value)
        return True

    def _adopt(self, epoch: int, trade: Trade, new: float | None, old: float | None, why: str,
               now: datetime) -> None:  # fmt: skip
        """The journal row of an SL kept as the trade's own: final at once, nothing sent."""
        result: dict[str, Any] = {"sl": new, "previous": old, "reason": why}
        with self.store.fenced(epoch):
            row = self.gateway.intent(
                epoch, identifier=trade.identifier, action_type=ActionType.ADOPT_SL.value,
                idempotency_key=f"{trade.identifier}:adopt_sl:{now.isoformat()}:{new}", params=result,
            )  # fmt: skip
            self.gateway.outcome(epoch, row, ActionStatus.DONE, result=result)


def _own(rows: list[Any], sl: float | None, half_tick: float) -> bool:
    """Whether the newest SL request dtms journaled (done, or still possibly executing) set exactly `sl`."""
    for a in rows:  # newest first
        request = a.request or {}
        if request.get("op") != "modify" or a.status not in (ActionStatus.DONE, ActionStatus.SENT,
                                                              ActionStatus.UNKNOWN):  # fmt: skip
            continue
        wanted = request.get("sl")
        return sl is not None and wanted is not None and math.isclose(sl, float(wanted), abs_tol=half_tick)
    return False


__all__ = ["StopWatch"]
