"""One run of one check: collect -> evaluate -> track -> enrich -> commit.

The scheduler (or an event source, or a recovery's verification) calls :meth:`CheckCycle.run`
or :meth:`CheckCycle.process`. The broad ``except Exception`` in :meth:`CheckCycle.collect` is
the single place where a failing collector is turned into data (``<kind>.up = 0``) instead of
a crash. Everything the run changed is written by the commit path (:class:`AlertBook`) in one
transaction; a run whose write fails leaves nothing behind (its recovery claims are released)
and the next run finds the condition again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

import structlog

from opswatch.alerts.book import AlertBook
from opswatch.alerts.tracker import AlertTracker
from opswatch.capacity.history import SeriesFilter
from opswatch.collectors.base import Collector, up_sample
from opswatch.daemon.checks import CheckBoard
from opswatch.daemon.replicas import Replicas
from opswatch.daemon.scheduler import Scheduler
from opswatch.model import (
    Alert,
    AlertState,
    Clock,
    Evaluation,
    Sample,
    Transition,
    TransitionKind,
)
from opswatch.recovery.lifecycle import Remediation
from opswatch.recovery.runner import Verify
from opswatch.rules.evaluator import RuleEvaluator

log = structlog.get_logger("opswatch")

Emit = Callable[[list[Sample]], Awaitable[None]]


class CheckCycle:
    def __init__(
        self,
        collectors: Mapping[str, Collector],
        *,
        evaluator: RuleEvaluator,
        tracker: AlertTracker,
        book: AlertBook,
        board: CheckBoard,
        replicas: Replicas,
        remediation: Remediation,
        scheduler: Scheduler,
        clock: Clock,
        history: SeriesFilter,
    ) -> None:
        #: replaced by a reload
        self.collectors = dict(collectors)
        #: which samples go into the metric history (replaced by a reload)
        self.history = history
        self._evaluator = evaluator
        self._tracker = tracker
        self._book = book
        self._board = board
        self._replicas = replicas
        self._scheduler = scheduler
        self._remediation = remediation
        self._clock = clock
        self._evaluations: dict[str, Evaluation] = {}
        self.running: set[asyncio.Task[object]] = set()
        #: set by the daemon's stop before it cancels the running checks
        self.stopping = False

    async def adopt(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Load ``alerts`` into the tracker but those whose rule or check is no longer
        configured: they could never resolve, so they are resolved now (notified once)."""
        rules = self._evaluator.rule_names()
        active = [a for a in alerts if a.rule in rules and a.check in self.collectors]
        kept = {a.fingerprint for a in active}
        self._tracker.retain(lambda a: a.fingerprint in kept)
        self._tracker.load(active)
        orphans = [a for a in alerts if a.fingerprint not in kept]
        if orphans and await self._replicas.lead("orphans", status=False):
            now = self._clock()
            retired = [
                Transition(
                    replace(a, state=AlertState.RESOLVED, resolved_at=now),
                    TransitionKind.RESOLVED,
                    now,
                    previous_state=a.state,
                )
                for a in orphans
            ]
            await self._book.commit("rules", retired, now)
        return active

    async def collect(self, collector: Collector) -> tuple[list[Sample], str | None]:
        """Run one collector under the check timeout. Never raises (but on cancellation)."""
        timeout = self._board.timing.check_timeout
        try:
            async with asyncio.timeout(timeout):
                samples = await collector.collect()
        except Exception as exc:  # the one broad except: a broken check is data, not a crash
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, TimeoutError):
                error = f"timed out after {timeout:g}s"
            log.warning("collect_failed", check=collector.check, error=error, exc_info=True)
            kind = collector.check.partition(":")[0]
            labels = self._board.up_labels(collector.check)
            return [up_sample(kind, collector.check, False, self._clock(), labels)], error
        return samples, None

    async def run(self, check: str) -> list[Transition]:
        """Collect, evaluate, track, commit for one scheduled run of ``check``."""
        collector = self.collectors.get(check)
        if collector is None:  # a job of a check that a reload just removed
            return []
        task = asyncio.current_task()
        if task is not None:
            self.running.add(task)
        try:
            if not await self._replicas.lead(check):
                return []
            started = time.monotonic()
            samples, error = await self.collect(collector)
            return await self.process(check, samples, error, time.monotonic() - started)
        finally:
            if task is not None:
                self.running.discard(task)

    async def process(
        self,
        check: str,
        samples: list[Sample],
        error: str | None,
        duration_s: float,
        *,
        trigger: str = "schedule",
    ) -> list[Transition]:
        """Everything after collection: also the entry point for event-driven samples.

        When the check's target is down and a rule is still debouncing, the check runs again
        after ``OPSWATCH_RETRY_INTERVAL`` instead of a full interval (Icinga's retry
        interval), so an outage is confirmed in seconds. Only ``up = 0`` triggers it: a rule
        whose ``for`` is a duration (CPU for 10 min) keeps its meaning.
        """
        if not self._replicas.valid(check) and not await self._replicas.lead(check, status=False):
            # renewed over half a TTL ago (a stalled run, an event, a verification) and
            # another replica holds the check now: the run is its, not ours
            log.warning("lease_lost", check=check, trigger=trigger)
            return []
        now = self._clock()
        evaluation = self._evaluator.evaluate(check, samples, now)
        remediation = self._remediation
        muter = self._book.pipeline.muter
        transitions = self._tracker.update(
            evaluation,
            now,
            remediating=remediation.in_progress,
            muted=lambda alert: muter.muted(alert, now),
        )
        self._evaluations[check] = evaluation
        # evidence for fired alerts; bound ones become REMEDIATING (their FIRED may be held)
        transitions, notify, claims = await remediation.intake(transitions)
        touched = [f.fingerprint for f in evaluation.findings]
        committed = await self._book.commit(
            check,
            transitions,
            now,
            touched=touched,
            notify=notify,
            samples=self.history.keep(samples),
        )
        if committed:
            remediation.start(claims)
        else:
            remediation.release(claims)
        log.info(
            "collect_finished",
            check=check,
            samples=len(samples),
            findings=len(evaluation.findings),
            transitions=len(transitions),
            error=error,
            duration_ms=round(duration_s * 1000, 2),
            trigger=trigger,
        )
        await self._board.finished(
            check, tuple(samples), error, duration_s, scheduled=trigger == "schedule", at=now
        )
        down = any(s.metric.endswith(".up") and s.value == 0 for s in samples)
        if down and self._evaluator.pending(check):
            self._scheduler.run_soon(check, self._board.timing.retry_interval)
        return transitions if committed else []

    def emitter(self, check: str) -> Emit:
        """Where an event source (pidfd watch) hands its samples."""

        async def emit(samples: list[Sample]) -> None:
            if await self._replicas.lead(check):
                await self.process(check, samples, None, 0.0, trigger="event")

        return emit

    def job(self, check: str) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            try:
                await self.run(check)
            except asyncio.CancelledError:
                # cancelled by the daemon's stop: the run ends here, quietly (APScheduler
                # would log a cancelled job as a crash, with its traceback)
                if not self.stopping:
                    raise

        return job

    def verifier(self, alert: Alert) -> Verify:
        """Re-run the check that fired (a full cycle: it is stored and may fire others); true
        once its rule evaluated the alert's series and no longer finds it."""

        async def verify() -> bool:
            collector = self.collectors.get(alert.check)
            if collector is None:
                return False
            started = time.monotonic()
            samples, error = await self.collect(collector)
            duration = time.monotonic() - started
            await self.process(alert.check, samples, error, duration, trigger="verify")
            return cleared(self._evaluations.get(alert.check), alert.fingerprint)

        return verify

    def probe(self, alert: Alert) -> Verify:
        """Like :meth:`verifier` but stores nothing (``opswatch recover`` beside a daemon)."""

        async def probe() -> bool:
            collector = self.collectors.get(alert.check)
            if collector is None:
                return False
            samples, _ = await self.collect(collector)
            return cleared(self._evaluator.evaluate(alert.check, samples), alert.fingerprint)

        return probe


def cleared(evaluation: Evaluation | None, fingerprint: str) -> bool:
    """Whether ``evaluation`` saw the series ``fingerprint`` and its rule no longer finds."""
    return (
        evaluation is not None
        and fingerprint in evaluation.observed
        and all(f.fingerprint != fingerprint for f in evaluation.findings)
    )
