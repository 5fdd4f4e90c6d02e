"""The reports' scheduled job: at each report's time, build it and queue it in the outbox.

It runs beside the checks (a look every :data:`TICK` seconds, never inside a check's
cycle). A report is due when the latest time of its schedule is newer than the last one
sent; one that is more than :data:`CATCH_UP` late (the daemon was down) is skipped. The
report is queued as one outbox row per channel of ``OPSWATCH_ROUTE_REPORT``, its
idempotency key naming its kind and period: with replicas on one store each one may queue
it, and each channel still keeps one row (``lead`` also leaves the work to one replica). A
channel that cannot deliver it fails like any notification: the outbox retries it, and
``notifications_failing`` fires about the channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from opswatch.model import Clock, CycleRecord
from opswatch.reports.build import ReportSources, build_report, period
from opswatch.reports.settings import ReportSettings, Schedule
from opswatch.reports.text import report_notification

log = structlog.get_logger("opswatch")

#: how often the job looks whether a report is due (seconds)
TICK = 60.0
#: how late a report may still be sent (seconds)
CATCH_UP = 3600.0


class ReportJob:
    """Sends the reports of ``settings`` built from ``sources``."""

    def __init__(
        self,
        sources: ReportSources,
        settings: ReportSettings,
        clock: Clock,
        wake: Callable[[], None],
    ) -> None:
        self.sources = sources
        #: swapped by a reload
        self.settings = settings
        self._clock = clock
        self._wake = wake
        #: the schedule time of the last report of each kind sent (or skipped)
        self._done: dict[str, datetime] = {}
        #: when each schedule is due next (computed once per report: a tick only compares)
        self._next: dict[Schedule, datetime] = {}

    def due(self) -> bool:
        """Whether a report's time has come since the last one of its kind (no I/O)."""
        now = self._clock()
        for schedule in self.settings.schedules:
            if schedule not in self._next:
                self._next[schedule] = schedule.after(self._last(schedule, now))
            if self._next[schedule] <= now:
                return True
        return False

    def _last(self, schedule: Schedule, now: datetime) -> datetime:
        """The schedule time of the last report of its kind sent; a new job counts the last
        :data:`CATCH_UP` seconds as not yet sent (a restart's keys keep them once)."""
        return self._done.setdefault(schedule.kind, now - timedelta(seconds=CATCH_UP))

    async def run_once(self) -> list[str]:
        """Send every report that is due now; returns their idempotency keys."""
        now = self._clock()
        sent = []
        for schedule in self.settings.schedules:
            at = schedule.latest(now)
            if at <= self._last(schedule, now):
                continue
            if (now - at).total_seconds() > CATCH_UP:
                log.warning("report_skipped", kind=schedule.kind, due_at=at.isoformat())
            else:
                sent.append(await self.send(schedule, at))
            self._done[schedule.kind] = at
            self._next.pop(schedule, None)
        return sent

    async def send(self, schedule: Schedule, at: datetime) -> str:
        """Build the report of ``schedule`` for the period ending at ``at`` and queue it."""
        since, until = period(at, schedule.period)
        report = await build_report(self.sources, schedule.kind, since, until)
        notification = report_notification(report)
        channels = sorted(self.settings.channels)
        rows = [(channel, notification) for channel in channels]
        await self.sources.store.record(CycleRecord((), (), (), rows), self._clock())
        self._wake()
        log.info(
            "report_queued",
            kind=schedule.kind,
            key=notification.idempotency_key,
            verdict=report.verdict.value,
            channels=channels,
        )
        return notification.idempotency_key

    async def run(
        self,
        lead: Callable[[], Awaitable[bool]],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Every :data:`TICK` seconds, for ever: when a report is due, on the replica that
        ``lead()`` says (asked only then). A failed run is logged (``report_job_failed``,
        one traceback per outage) and retried at the next tick (the report stays due within
        :data:`CATCH_UP`)."""
        failing = False
        while True:
            await sleep(TICK)
            try:
                if self.settings.enabled and self.due() and await lead():
                    await self.run_once()
            except Exception as exc:  # a store outage: the next tick tries again
                log.warning(
                    "report_job_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=not failing,
                )
                failing = True
            else:
                failing = False
