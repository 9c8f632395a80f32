"""The only path to the broker: fenced intent, then a validity check, then the send, then the fenced
outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from dtms.errors import LeaseLostError, NotLeaderError
from dtms.models import Action, ActionStatus
from dtms.store import Store

R = TypeVar("R")


class Leadership(Protocol):
    """What the gateway asks of the election: the epoch and how long the lease still runs."""

    @property
    def epoch(self) -> int | None: ...

    def remaining_ms(self) -> int: ...

    def sender_stopped(self, epoch: int) -> bool:
        """Whether an earlier epoch is proven unable to send any more (its holder exited, was killed, or its
        loop ended): only then may its in-flight requests be concluded not applied (dtms.fence)."""
        ...


class Gateway:
    """Every broker request goes through here, so none is sent that was not journaled under a valid epoch
    (I3).

    1. `intent(...)` commits the INTENT row in a fenced transaction (idempotent on its key);
    2. `send(...)` checks, just before sending, that this process still leads with at least `send_margin_s`
       of lease left, marks the row SENT (fenced) with the exact request, then calls the broker;
    3. `outcome(...)` commits the result (fenced).
    If (3) fails because the epoch moved, the next leader finds the row SENT and reconciles it with the
    broker before sending anything. MetaTrader 5 takes no token, so a leader paused or hung between the check
    in (2) and the send can still deliver its request after losing the lease. The next leader therefore never
    concludes such a request "not applied", nor sends anything risk-adding for its trade, until
    `sender_stopped(epoch)` proves the old holder can send no more and a re-read after
    `execution.inflight_horizon_s` still finds nothing (dtms.engine.execute, dtms.fence).
    """

    def __init__(self, store: Store, leadership: Leadership, *, send_margin_s: float) -> None:
        self.store = store
        self.leadership = leadership
        self.send_margin_ms = round(send_margin_s * 1000)

    def _epoch(self, epoch: int) -> None:
        current = self.leadership.epoch
        if current is None:
            raise NotLeaderError(f"not leading (wanted epoch {epoch})")
        if current != epoch:
            raise LeaseLostError(epoch, current)

    def intent(
        self,
        epoch: int,
        *,
        identifier: int,
        action_type: str,
        idempotency_key: str,
        params: dict[str, Any] | None = None,
        leg: str = "main",
        transition_id: int | None = None,
    ) -> Action:
        """Journal the intent to act (fenced); returns the row, the existing one if the key was seen."""
        self._epoch(epoch)
        return self.store.journal_intent(
            epoch,
            identifier=identifier,
            action_type=action_type,
            idempotency_key=idempotency_key,
            params=params,
            leg=leg,
            transition_id=transition_id,
        )

    def send(self, epoch: int, action: Action, request: dict[str, Any], call: Callable[[], R]) -> R:
        """Mark `action` SENT with `request` and run `call` (the broker request), if still safely leading.

        Raises:
            NotLeaderError / LeaseLostError: not leading, or too little lease left; nothing was sent.
        """
        self._epoch(epoch)
        if self.leadership.remaining_ms() < self.send_margin_ms:
            raise NotLeaderError(f"less than {self.send_margin_ms} ms of lease left; not sending")
        self.store.mark_sent(epoch, action.action_id, request)
        self._epoch(epoch)
        return call()

    def sender_stopped(self, epoch: int) -> bool:
        """See `Leadership.sender_stopped`."""
        return self.leadership.sender_stopped(epoch)

    def outcome(
        self,
        epoch: int,
        action: Action,
        status: ActionStatus,
        *,
        result: dict[str, Any] | None = None,
        retcode: int | None = None,
        error: str | None = None,
    ) -> None:
        """Commit what came of `action` (fenced on `epoch`)."""
        self.store.record_outcome(
            epoch, action.action_id, status, result=result, retcode=retcode, error=error
        )


class SoleLeadership:
    """Leadership for a process that holds the lease alone and is not elected (replay, tests): a fixed
    epoch."""

    def __init__(self, epoch: int) -> None:
        self._epoch = epoch

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def remaining_ms(self) -> int:
        return 2**62

    def sender_stopped(self, epoch: int) -> bool:
        return True  # no other process ever held an epoch here


__all__ = ["Gateway", "Leadership", "SoleLeadership"]
