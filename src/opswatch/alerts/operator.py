"""Operator actions on an active alert (acknowledge, unacknowledge, resolve), each committed
through :class:`~opswatch.alerts.book.AlertBook` (source ``operator``) with its history
transition: who and why are in the alert history, the store and every replica's view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from opswatch.alerts.book import AlertBook
from opswatch.model import Clock, Transition

SOURCE = "operator"


class Outcome(StrEnum):
    DONE = "done"
    UNKNOWN = "unknown"  # no active alert with that fingerprint
    NOT_STORED = "not stored"  # the state store refused the write: nothing changed


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    transition: Transition | None = None


class Operator:
    """Acks, unacks and manual resolves, through the one commit path."""

    def __init__(self, book: AlertBook, clock: Clock) -> None:
        self._book = book
        self._clock = clock

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
        now = self._clock()
        transition = self._book.tracker.ack(
            fingerprint, author, now, comment=comment, expires_at=expires_at, sticky=sticky
        )
        return await self._commit(transition, now)

    async def unack(self, fingerprint: str, author: str, *, comment: str | None = None) -> Result:
        now = self._clock()
        transition = self._book.tracker.unack(fingerprint, author, now, comment=comment)
        return await self._commit(transition, now)

    async def resolve(self, fingerprint: str, author: str, *, comment: str | None = None) -> Result:
        now = self._clock()
        transition = self._book.tracker.resolve(fingerprint, author, now, comment=comment)
        return await self._commit(transition, now)

    async def _commit(self, transition: Transition | None, now: datetime) -> Result:
        if transition is None:
            return Result(Outcome.UNKNOWN)
        if not await self._book.commit(SOURCE, [transition], now):
            return Result(Outcome.NOT_STORED)
        return Result(Outcome.DONE, transition)
