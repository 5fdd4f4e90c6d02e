"""APScheduler 3.x wiring: one interval job per collector instance.

Each job runs at start-up, then every ``interval`` seconds, with ``max_instances=1`` (a slow
check is never run twice at once) and ``coalesce=True`` (missed runs collapse into one).
``run_soon`` pulls a job's next run forward: the fast re-check after a failure.

The scheduler runs on wall time, never on the daemon's injected clock: a test clock pinned in
the past would make APScheduler walk every fire time missed since then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from opswatch.timing import Timing

Job = Callable[[], Awaitable[None]]


class Scheduler:
    """One per daemon; a reload calls :meth:`reset` with the new timings."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self._scheduler = AsyncIOScheduler(timezone="UTC")

    def reset(self, timing: Timing) -> None:
        """Drop every job (after :meth:`shutdown`) and take ``timing`` for the next ones."""
        self.shutdown()
        self.timing = timing
        self._scheduler = AsyncIOScheduler(timezone="UTC")

    def add(self, job_id: str, job: Job) -> None:
        self._scheduler.add_job(
            job,
            IntervalTrigger(seconds=self.timing.interval, timezone="UTC"),
            id=job_id,
            name=job_id,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=self.timing.misfire_grace,
            replace_existing=True,
        )

    def run_soon(self, job_id: str, delay: float) -> None:
        """Run ``job_id`` after ``delay`` seconds unless it is due sooner anyway."""
        job = self._scheduler.get_job(job_id)
        if job is None or job.next_run_time is None:
            return
        when = datetime.now(UTC) + timedelta(seconds=delay)
        if when < job.next_run_time:
            job.modify(next_run_time=when)

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)
