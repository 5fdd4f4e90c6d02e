"""Operator actions on an active alert (acknowledge, unacknowledge, resolve), each committed
through :class:`~opswatch.alerts.book.AlertBook` (source ``operator``) with its history
transition: who and why are in the alert history, the store and every replica's view."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from opswatch.alerts.book import AlertBook
from opswatch.model import Clock, Transition

SOURCE = "operator"
#: how often a busy alert is looked at again
_POLL_S = 0.02


class Outcome(StrEnum):
    DONE = "done"
    UNKNOWN = "unknown"  # no active alert with that fingerprint
    BUSY = "busy"  # a check's run changed the alert and has not committed it yet
    NOT_STORED = "not stored"  # the state store refused the write: nothing changed


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    transition: Transition | None = None


class Operator:
    """Acks, unacks and manual resolves, through the one commit path. An alert a check's run
    has changed but not yet committed (its run awaits evidence) is waited for, up to
    ``busy_wait_s``, then refused as busy: the action's commit would otherwise write the
    run's half-made alert."""

    def __init__(self, book: AlertBook, clock: Clock, *, busy_wait_s: float = 5.0) -> None:
        self._book = book
        self._clock = clock
        self._busy_wait_s = busy_wait_s

    async def _settled(self, fingerprint: str) -> bool:
        """Wait (at most ``busy_wait_s``) until no run holds uncommitted changes of the alert."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_wait_s
        while self._book.tracker.pending(fingerprint):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(_POLL_S)
        return True

    def now(self) -> datetime:
        return self._clock()

    async def ack(
        self,
        fingerprint: str,
        author: str,
        *,
        comment: str | None = None,
        expires_at: datetime | None = None,
        sticky: bool = False,
    ) -> Result:
        if not await self._settled(fingerprint):
            return Result(Outcome.BUSY)
        now = self._clock()
        transition = self._book.tracker.ack(
            fingerprint, author, now, comment=comment, expires_at=expires_at, sticky=sticky
        )
        return await self._commit(transition, now)

    async def unack(self, fingerprint: str, author: str, *, comment: str | None = None) -> Result:
        if not await self._settled(fingerprint):
            return Result(Outcome.BUSY)
        now = self._clock()
        transition = self._book.tracker.unack(fingerprint, author, now, comment=comment)
        return await self._commit(transition, now)

    async def resolve(self, fingerprint: str, author: str, *, comment: str | None = None) -> Result:
        if not await self._settled(fingerprint):
            return Result(Outcome.BUSY)
        now = self._clock()
        transition = self._book.tracker.resolve(fingerprint, author, now, comment=comment)
        return await self._commit(transition, now)

    async def _commit(self, transition: Transition | None, now: datetime) -> Result:
        if transition is None:
            return Result(Outcome.UNKNOWN)
        if not await self._book.commit(SOURCE, [transition], now):
            return Result(Outcome.NOT_STORED)
        return Result(Outcome.DONE, transition)
