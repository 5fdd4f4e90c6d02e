"""What the daemon knows of its checks between runs: the last run of each, run counters,
readiness and health.

Every finished run (or a standby verdict of a replica) is reported to :class:`CheckBoard`; the
API, ``/metrics``, the systemd watchdog and the tests read it. Time comes from the injected
clock; how late a check may be comes from :class:`~opswatch.timing.Timing`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from datetime import datetime

import structlog

from opswatch.api.metrics import CheckCounters, CheckStats
from opswatch.daemon.scheduler import Scheduler
from opswatch.model import CheckStatus, Clock, Health, Sample
from opswatch.state.outage import StoreOutage
from opswatch.timing import Timing

log = structlog.get_logger("opswatch")


class CheckBoard:
    def __init__(
        self,
        checks: Collection[str],
        timing: Timing,
        clock: Clock,
        *,
        scheduler: Scheduler,
        on_ready: Callable[[], None],
        outage: StoreOutage,
    ) -> None:
        self.checks = tuple(checks)
        self._outage = outage
        self.timing = timing
        self._clock = clock
        self._scheduler = scheduler
        self._on_ready = on_ready
        self.started_at = clock()
        self._statuses: dict[str, CheckStatus] = {}
        self._up_labels: dict[str, Mapping[str, str]] = {}
        self._stats = CheckStats()
        self._runs: dict[str, int] = {}
        self._ran = asyncio.Condition()
        self._ready = False

    def configure(self, checks: Collection[str], timing: Timing) -> None:
        """A reload: the checks and timings now configured (removed checks are forgotten)."""
        self.checks, self.timing = tuple(checks), timing
        for check in set(self._statuses) - set(self.checks):
            del self._statuses[check]
            self._up_labels.pop(check, None)

    def start(self) -> None:
        self.started_at = self._clock()

    # -- reports ---------------------------------------------------------------------------

    async def finished(
        self,
        check: str,
        samples: tuple[Sample, ...],
        error: str | None,
        duration_s: float,
        *,
        scheduled: bool,
        at: datetime,
    ) -> None:
        """A run of ``check`` was processed (``scheduled``: by the scheduler, not an event)."""
        self._statuses[check] = CheckStatus(check, at, duration_s, error, samples)
        for sample in samples:
            if sample.metric.endswith(".up") and error is None:
                self._up_labels[check] = sample.labels
        self._stats.observe(self._statuses[check], duration_s if scheduled else None)
        await self._count(check)

    async def standby(self, check: str) -> None:
        """Another replica runs ``check``: reported as such, and counted as a run."""
        self._statuses[check] = CheckStatus(
            check, self._clock(), 0.0, "standby: another replica", ()
        )
        await self._count(check)

    def up_labels(self, check: str) -> Mapping[str, str]:
        """The labels of the check's ``<kind>.up`` sample when it last answered (an outage
        keeps them, so its ``up = 0`` is the same series)."""
        target = check.partition(":")[2]
        return self._up_labels.get(check, {"target": target} if target else {})

    async def _count(self, check: str) -> None:
        async with self._ran:
            self._runs[check] = self._runs.get(check, 0) + 1
            self._ran.notify_all()
        if not self._ready and set(self._statuses) >= set(self.checks):
            self._ready = True
            self._on_ready()
            log.info("daemon_ready", checks=len(self._statuses))

    async def wait_for_runs(self, check: str, count: int = 1) -> None:
        """Until ``check`` has been processed ``count`` times in all (for tests and tools;
        bound it with ``asyncio.timeout``)."""
        async with self._ran:
            await self._ran.wait_for(lambda: self._runs.get(check, 0) >= count)

    # -- reads -----------------------------------------------------------------------------

    def statuses(self) -> Mapping[str, CheckStatus]:
        return self._statuses

    def stats(self) -> Mapping[str, CheckCounters]:
        return self._stats.snapshot()

    def series(self) -> CheckStats:
        """The series ``/metrics`` exposes, remembered across runs."""
        return self._stats

    def health(self) -> Health:
        """Unhealthy when the scheduler stopped or a check has not finished within
        ``Timing.health_allowance`` (two intervals plus its timeout)."""
        now = self._clock()
        last = max((s.finished_at for s in self._statuses.values()), default=None)
        if not self._scheduler.running:
            return Health(False, "scheduler is not running", self.started_at, last)
        if self._outage.since is not None:
            down = self._outage.since.strftime("%Y-%m-%dT%H:%M:%SZ")
            reason = f"state store unavailable since {down}: {self._outage.reason}"
            return Health(False, reason, self.started_at, last)
        for check in self.checks:
            status = self._statuses.get(check)
            since = self.started_at if status is None else status.finished_at
            if (now - since).total_seconds() > self.timing.health_allowance:
                return Health(False, f"check {check} is late", self.started_at, last)
        return Health(True, "ok", self.started_at, last)
