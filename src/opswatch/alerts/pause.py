"""Pause and resume: notifications and recovery stop, for every check or some; collection goes on.

A paused check still runs, its alerts are still tracked, stored and listed, but they are muted
(:class:`PauseMuter` in the daemon's :class:`~opswatch.alerts.muting.MuteStack`, reason
``paused by WHO``): notified to nobody, remediated by nothing. On resume an alert whose firing
was muted and that still fires is notified at its check's next run, like after a silence.

The pauses live in the state store (:class:`~opswatch.ports.PauseStore`), so a restart keeps
them; with replicas on one PostgreSQL store each reloads them every check interval
(:meth:`Pauses.follow`), and the replica that serves the call updates its memory at once.
Every pause and resume is audited twice: a row in the store's pause events (who, why, which
checks, when: ``GET /api/v1/monitoring``) and a log line (``monitoring_paused``,
``monitoring_resumed``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from datetime import datetime

import structlog

from opswatch.alerts.follow import follow
from opswatch.model import Alert, Clock, Pause, PauseAction, PauseEvent
from opswatch.ports import PauseStore

log = structlog.get_logger("opswatch")


class PauseError(ValueError):
    """A pause or resume that cannot be done; the message names the field."""


class PausedEverywhereError(PauseError):
    """A resume of some checks while every check is paused."""


class PauseMuter:
    """The pauses in memory, as the pipeline's and recovery's muter: two lookups per alert."""

    def __init__(self, pauses: Iterable[Pause] = ()) -> None:
        self._every: Pause | None = None
        self._checks: dict[str, Pause] = {}
        self.replace(pauses)

    def muted(self, alert: Alert, now: datetime) -> bool:
        del now
        return self._every is not None or alert.check in self._checks

    def muting(self, alert: Alert, now: datetime) -> list[str]:
        """``paused by WHO`` for the pause of every check and for the pause of the alert's."""
        del now
        held = (self._every, self._checks.get(alert.check))
        return [f"paused by {p.by}" for p in held if p is not None]

    def pauses(self) -> list[Pause]:
        """Every pause in force: the pause of every check first, then by check."""
        every = [] if self._every is None else [self._every]
        return every + [self._checks[c] for c in sorted(self._checks)]

    def get(self, check: str | None) -> Pause | None:
        return self._every if check is None else self._checks.get(check)

    def replace(self, pauses: Iterable[Pause]) -> None:
        every: Pause | None = None
        checks: dict[str, Pause] = {}
        for pause in pauses:
            if pause.check is None:
                every = pause
            else:
                checks[pause.check] = pause
        self._every, self._checks = every, checks


class Pauses:
    """Pauses and resumes: in the store first (with the audit event, one transaction), then
    in the muter, with a log line saying who and why. ``checks()`` names the configured checks
    (a pause of any other is refused)."""

    def __init__(
        self, store: PauseStore, clock: Clock, checks: Callable[[], Collection[str]]
    ) -> None:
        self.store = store
        self.muter = PauseMuter()
        self._clock = clock
        self._checks = checks

    def now(self) -> datetime:
        return self._clock()

    async def load(self) -> None:
        self.muter.replace(await self.store.pauses())

    async def follow(
        self,
        every: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Reload the pauses from the store every ``every()`` seconds, for ever (replicas see
        each other's pauses within a check interval); ``pauses_refresh_failed`` when the
        store fails, keeping the pauses in memory."""
        await follow(self.load, every, "pauses_refresh_failed", sleep)

    async def events(self, limit: int = 100) -> list[PauseEvent]:
        return await self.store.pause_events(limit)

    async def pause(
        self, checks: Sequence[str], *, by: str, comment: str | None = None
    ) -> list[Pause]:
        """Pause ``checks`` (empty: every check) from now; a check paused again gets the new
        author, comment and time. Returns the pauses in force."""
        wanted = self._known(checks)
        now = self._clock()
        scopes: list[str | None] = [*wanted] if wanted else [None]
        paused = [Pause(check, by, comment, now) for check in scopes]
        event = PauseEvent(PauseAction.PAUSED, tuple(wanted), by, comment, now)
        await self.store.pause_change(paused, (), event)
        self.muter.replace([*self.muter.pauses(), *paused])
        log.info("monitoring_paused", checks=wanted or "all", by=by, comment=comment)
        return self.muter.pauses()

    async def resume(
        self, checks: Sequence[str], *, by: str, comment: str | None = None
    ) -> list[Pause]:
        """Resume ``checks`` (empty: every pause ends, of every check and of each). Resuming
        some checks while every check is paused is refused (:class:`PausedEverywhereError`).
        Returns the pauses still in force."""
        # a check a reload removed can still be resumed
        wanted = self._known(checks, {p.check for p in self.muter.pauses() if p.check})
        every = self.muter.get(None)
        if wanted and every is not None:
            raise PausedEverywhereError(
                f"checks: every check is paused (by {every.by} since "
                f"{every.since.isoformat()}); resume them all, then pause the others"
            )
        ended = [p.check for p in self.muter.pauses() if not wanted or p.check in wanted]
        now = self._clock()
        event = PauseEvent(PauseAction.RESUMED, tuple(wanted), by, comment, now)
        await self.store.pause_change((), ended, event)
        self.muter.replace(p for p in self.muter.pauses() if p.check not in ended)
        log.info("monitoring_resumed", checks=wanted or "all", by=by, comment=comment)
        return self.muter.pauses()

    def _known(self, checks: Sequence[str], paused: Collection[str] = ()) -> list[str]:
        """``checks`` without repeats, each a configured check (or one of ``paused``)."""
        known = {*self._checks(), *paused}
        for check in checks:
            if check not in known:
                listed = ", ".join(sorted(known)) or "none"
                raise PauseError(f"checks: no check {check!r} (configured: {listed})")
        return list(dict.fromkeys(checks))
