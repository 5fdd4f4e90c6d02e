"""The only module that knows every area at run time: the running daemon.

Its configuration comes from :func:`opswatch.daemon.configure.load_config`.

One collector run is one pass through the pipeline::

    collect (under a timeout) -> evaluate -> track -> record (+ outbox, one transaction) -> wake

The broad ``except Exception`` in :meth:`App.run_check` is the single place where a failing
collector is turned into data (``<kind>.up = 0``) instead of a crash.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import structlog

from opswatch.alerts.tracker import AlertTracker
from opswatch.api.app import ApiServer
from opswatch.api.metrics import CheckCounters, CheckStats, MetricsExporter
from opswatch.api.routes import CheckStatus, Health
from opswatch.collectors.base import Collector, EventSource, up_sample
from opswatch.config import ConfigError, Secret
from opswatch.daemon.configure import AppConfig, load_config
from opswatch.daemon.reload import keep_restart_only, restart_only_changes
from opswatch.daemon.scheduler import Scheduler
from opswatch.daemon.sdnotify import SystemdNotifier
from opswatch.model import (
    Alert,
    AlertState,
    Clock,
    CycleRecord,
    Evaluation,
    RecoveryResult,
    Sample,
    Transition,
    TransitionKind,
    utcnow,
)
from opswatch.notifiers.outbox import Outbox, RetryPolicy
from opswatch.ports import LeaseError, StateStore, StoreError
from opswatch.recovery.base import CommandRunner
from opswatch.recovery.config import target_key
from opswatch.recovery.lifecycle import Remediation
from opswatch.recovery.runner import (
    RecoveryPolicy,
    RecoveryRunner,
    Sleep,
    Verify,
    alert_target,
)
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.state import lease_ttl, open_lease, open_store
from opswatch.state.leases import CheckLeases, Tenure

log = structlog.get_logger("opswatch")

_TRANSITION_EVENTS = {
    TransitionKind.FIRED: "alert_fired",
    TransitionKind.RESOLVED: "alert_resolved",
    TransitionKind.SEVERITY_CHANGED: "alert_severity_changed",
    TransitionKind.REMINDER: "alert_reminder",
    TransitionKind.ESCALATED: "alert_escalated",
}


class App:
    """The running daemon. ``start()``/``stop()`` for tests, ``serve()`` for ``opswatch run``."""

    def __init__(
        self,
        config: AppConfig,
        *,
        clock: Clock = utcnow,
        retry_policy: RetryPolicy | None = None,
        systemd: SystemdNotifier | None = None,
        environ: Callable[[], Mapping[str, str]] | None = None,
        command_runner: CommandRunner | None = None,
        recovery_policy: RecoveryPolicy | None = None,
        recovery_sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.settings = config.settings
        self._clock = clock
        self.store: StateStore = open_store(config.settings)
        # several replicas on one PostgreSQL store: one runs each check (README: replicas)
        self.leases = CheckLeases(open_lease(config.settings, self.store), lease_ttl(self.settings))
        self.evaluator = RuleEvaluator(config.rules)
        self.tracker = AlertTracker(config.repeat_interval)
        self._retry_policy = retry_policy or RetryPolicy()
        self.outbox = Outbox(
            self.store,
            {n.channel: n for n in config.notifiers},
            self._retry_policy,
            clock,
            options=config.notify.delivery,
        )
        self._environ = environ
        self._reload_lock = asyncio.Lock()
        self._reloadable = False
        self.scheduler = Scheduler(config.settings.interval, clock)
        self._check_stats = CheckStats()
        self.metrics = MetricsExporter(self)
        host, port = config.settings.api_listen
        self.api = ApiServer(self, host, port, self.metrics)
        self._systemd = systemd or SystemdNotifier(None)
        self._collectors = {c.check: c for c in config.collectors}
        self._statuses: dict[str, CheckStatus] = {}
        self._up_labels: dict[str, Mapping[str, str]] = {}
        self._started_at = clock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running_checks: set[asyncio.Task[Any]] = set()
        self._ready = False
        self._serving = False
        self._crashed = False
        self._stop_requested = asyncio.Event()
        self._runs: dict[str, int] = {}
        self._ran = asyncio.Condition()
        # recovery: results, budgets and evidence are kept in the state store
        self.recovery = RecoveryRunner(
            lambda: self.config.recovery,
            self.store,
            clock=clock,
            commands=command_runner,
            policy=recovery_policy,
            sleep=recovery_sleep,
        )
        self.remediation = Remediation(
            self.recovery,
            tracker=lambda: self.tracker,
            store=self.store,
            record=self._record,
            verifier=self._verifier,
            evidence=lambda: self.config.evidence,
            clock=clock,
        )
        self._evaluations: dict[str, Evaluation] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> list[Alert]:
        """Open the state and restore the alerts that were firing; returns them.

        A stored alert whose rule or check no longer exists (removed or disabled by
        configuration) can never resolve by itself: it is resolved here, and notified once.
        """
        await self.store.open()
        await self.leases.lease.open()
        active = await self._adopt(await self.store.load_active())
        self.evaluator.seed(active)
        if not self.leases.lease.shared:  # replicas: per check, by the one taking it over
            await self.remediation.restore(self.tracker.active())
        return active

    async def _adopt(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Load ``alerts`` into the tracker but those whose rule or check is no longer
        configured: they could never resolve, so they are resolved now (notified once)."""
        rules = self.evaluator.rule_names()
        active = [a for a in alerts if a.rule in rules and a.check in self._collectors]
        self.tracker.load(active)
        kept = {a.fingerprint for a in active}
        orphans = [a for a in alerts if a.fingerprint not in kept]
        if orphans and await self._lead("orphans", status=False):
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
            await self._record("rules", retired, [], now)
        return active

    async def start(self) -> None:
        """Open the state, then start the API, the outbox and the scheduled checks."""
        self._started_at = self._clock()
        active = await self.open()
        await self.api.start()
        self._serving = True
        self._spawn(self.outbox.run(), "outbox")
        self._spawn(self._heartbeat(), "heartbeat")
        self._start_checks()
        self._reloadable = True
        log.info(
            "daemon_started",
            checks=sorted(self._collectors),
            interval_s=self.settings.interval,
            active_alerts=len(active),
            channels=sorted(n.channel for n in self.config.notifiers),
            state_path=str(self.settings.state_path),
            state_url=None if self.settings.state_url is None else str(self.settings.state_url),
            replica=self.leases.lease.holder,
        )
        for name in self.config.unknown_variables:
            log.warning("config_unknown_variable", variable=name)

    def _start_checks(self) -> None:
        for check, collector in self._collectors.items():
            self.scheduler.add(check, self._job(check))
            if isinstance(collector, EventSource) and collector.supports_watch:
                self._spawn(collector.watch(self._emitter(check)), f"watch:{check}")
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop checks, flush the outbox for up to the shutdown grace, close everything."""
        self._reloadable = False
        async with self._reload_lock:  # let a reload in progress finish first
            pass
        self._systemd.stopping()
        self.scheduler.shutdown()
        for task in list(self._running_checks):
            task.cancel()
        await asyncio.gather(*self._running_checks, return_exceptions=True)
        await self.remediation.cancel()  # interrupted runs are escalated at the next start
        try:  # the other replicas take the checks over now rather than after a TTL
            await self.leases.release_all()
        except (LeaseError, StoreError) as exc:
            log.warning("lease_release_failed", error=str(exc))
        # flush() delivers what it can within the grace, then ends Outbox.run() itself
        await self.outbox.flush(self.settings.shutdown_grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._serving:
            await self.api.stop()
            self._serving = False
        for collector in self._collectors.values():
            await collector.close()
        for notifier in self.config.notifiers:
            await notifier.close()
        await self.leases.lease.close()
        await self.store.close()
        log.info("daemon_stopped")

    async def serve(self) -> int:
        """Run until SIGTERM or SIGINT (exit status 0) or a crashed background task (1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        await self.start()
        await self._stop_requested.wait()
        log.info("daemon_stopping", crashed=self._crashed)
        await self.stop()
        return 1 if self._crashed else 0

    def _reload(self) -> None:
        """SIGHUP (``systemctl reload``)."""
        self._spawn(self.reload(), "reload")

    async def reload(self, environ: Mapping[str, str] | None = None) -> bool:
        """Re-read the configuration (``environ``, else the source given at construction) and
        swap collectors, rules and notifiers; alert state and the outbox's rows are kept.

        A configuration that does not validate is refused (``reload_failed`` with the
        ConfigError line) and the running one stays. Settings that need a restart (state
        path, API address, logging) keep their running values (``reload_needs_restart``).
        Returns whether the new configuration was applied.
        """
        async with self._reload_lock:
            self._systemd.reloading()
            try:
                return await self._apply_reload(environ)
            finally:
                self._systemd.ready()

    async def _apply_reload(self, environ: Mapping[str, str] | None) -> bool:
        try:
            if not self._reloadable:
                raise ConfigError("SIGHUP", "the daemon is starting or stopping; try again")
            if environ is None:
                if self._environ is None:
                    raise ConfigError("SIGHUP", "no configuration source to re-read")
                environ = self._environ()
            config = load_config(environ, self._clock)
        except ConfigError as exc:
            log.error("reload_failed", error=str(exc))
            self._systemd.status(f"reload failed: {exc}")
            return False
        restart = restart_only_changes(self.settings, config.settings)
        if restart:
            log.warning("reload_needs_restart", variables=restart)
        config = replace(config, settings=keep_restart_only(self.settings, config.settings))
        # 1. quiesce: no check runs and no new outbox rows while the parts are swapped
        self.scheduler.shutdown()
        watchers = [t for t in self._tasks if t.get_name().startswith("watch:")]
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, *self._running_checks, return_exceptions=True)
        # 2. deliver what the old channels can take now; the rest stays queued in the store
        await self.outbox.flush(min(self.settings.shutdown_grace, 5.0))
        old_collectors, old_notifiers = list(self._collectors.values()), self.config.notifiers
        # 3. swap (no await in between: a straggling job sees all old or all new parts)
        rules_changed = [r.describe() for r in config.rules] != self.evaluator.describe()
        self.config, self.settings = config, config.settings
        self.leases.ttl = lease_ttl(self.settings)  # a lease outlives 3 of the new intervals
        self._collectors = {c.check: c for c in config.collectors}
        if rules_changed:  # else the evaluator keeps its debounce and hysteresis state
            self.evaluator = RuleEvaluator(config.rules)
        kept_alerts = self.tracker.active()
        self.tracker = AlertTracker(config.repeat_interval)
        for check in set(self._statuses) - set(self._collectors):
            del self._statuses[check]
            self._up_labels.pop(check, None)
        self.outbox = Outbox(
            self.store,
            {n.channel: n for n in config.notifiers},
            self._retry_policy,
            self._clock,
            options=config.notify.delivery,
        )
        self.scheduler = Scheduler(config.settings.interval, self._clock)
        # 4. restart: alerts of removed rules or checks are resolved, then checks run at once
        active = await self._adopt(kept_alerts)
        if rules_changed:
            self.evaluator.seed(active)
        self._spawn(self.outbox.run(), "outbox")
        self._start_checks()
        for collector in old_collectors:
            await collector.close()
        for notifier in old_notifiers:
            await notifier.close()
        log.info(
            "reload_finished",
            checks=sorted(self._collectors),
            interval_s=self.settings.interval,
            rules=len(config.rules),
            channels=sorted(n.channel for n in config.notifiers),
            active_alerts=len(self.active_alerts()),
        )
        self._systemd.status("reloaded")
        return True

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A background task (outbox, heartbeat) must not die quietly: stop the daemon."""
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        log.error("task_crashed", task=task.get_name(), exc_info=task.exception())
        self._crashed = True
        self._stop_requested.set()

    def _emitter(self, check: str) -> Any:
        async def emit(samples: list[Sample]) -> None:
            if await self._lead(check):
                await self.process(check, samples, None, 0.0, trigger="event")

        return emit

    def _job(self, check: str) -> Any:
        async def job() -> None:
            await self.run_check(check)

        return job

    # -- replicas -------------------------------------------------------------------------

    async def _lead(self, check: str, *, status: bool = True) -> bool:
        """Whether this replica runs ``check`` now: always alone (SQLite); with replicas, when
        it holds the check's lease (renewed here, TTL = 3 intervals). On taking a check over
        it first reloads the check's alerts from the store; while standby it forgets them
        and reports the check as standby. A lease that cannot be reached counts as standby
        but leaves the status alone, so /healthz turns unhealthy (the check is late)."""
        try:
            tenure = await self.leases.claim(check)
        except (LeaseError, StoreError) as exc:
            log.warning("lease_failed", check=check, error=str(exc))
            self._forget(check)
            return False
        if tenure is Tenure.TAKEN:
            try:
                await self._take_over(check)
            except BaseException:
                self.leases.drop(check)  # reload again at the next run
                raise
        if tenure is not Tenure.STANDBY:
            return True
        self._forget(check)
        if status:
            now = self._clock()
            self._statuses[check] = CheckStatus(check, now, 0.0, "standby: another replica", ())
            async with self._ran:
                self._runs[check] = self._runs.get(check, 0) + 1
                self._ran.notify_all()
            self._maybe_ready()
        return False

    async def _take_over(self, check: str) -> None:
        """This replica runs ``check`` from now on: its alerts are the store's, not what this
        replica remembers (another may have fired or resolved them meanwhile)."""
        rules = self.evaluator.rule_names()
        stored = [a for a in await self.store.load_active() if a.check == check and a.rule in rules]
        self._forget(check, stored)
        self.evaluator.seed(stored)
        # a recovery left REMEDIATING by the previous holder (killed, stopped) is escalated
        await self.remediation.restore(stored)
        log.info("check_taken_over", check=check, active_alerts=len(stored))

    def _forget(self, check: str, replacement: Sequence[Alert] = ()) -> None:
        """Replace the tracker's alerts of ``check`` by ``replacement`` (the tracker is rebuilt,
        as a reload does: it has no call to drop one check's alerts; between two runs it
        holds no unrecorded change)."""
        active = self.tracker.active()
        others = [a for a in active if a.check != check]
        if len(others) == len(active) and not replacement:
            return
        tracker = AlertTracker(self.config.repeat_interval)
        tracker.load([*others, *replacement])
        self.tracker = tracker

    # -- one cycle ------------------------------------------------------------------------

    async def collect(self, collector: Collector) -> tuple[list[Sample], str | None]:
        """Run one collector under the check timeout. Never raises (but on cancellation)."""
        try:
            async with asyncio.timeout(self.settings.check_timeout):
                samples = await collector.collect()
        except Exception as exc:  # the one broad except: a broken check is data, not a crash
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, TimeoutError):
                error = f"timed out after {self.settings.check_timeout:g}s"
            log.warning("collect_failed", check=collector.check, error=error, exc_info=True)
            kind = collector.check.partition(":")[0]
            target = collector.check.partition(":")[2]
            labels = self._up_labels.get(collector.check, {"target": target} if target else {})
            return [up_sample(kind, collector.check, False, self._clock(), labels)], error
        for sample in samples:
            if sample.metric.endswith(".up"):
                self._up_labels[collector.check] = sample.labels
        return samples, None

    async def run_check(self, check: str) -> list[Transition]:
        """Collect, evaluate, track, persist and enqueue for one check."""
        collector = self._collectors.get(check)
        if collector is None:  # a job of a check that a reload just removed
            return []
        task = asyncio.current_task()
        if task is not None:
            self._running_checks.add(task)
        try:
            if not await self._lead(check):
                return []
            started = time.monotonic()
            samples, error = await self.collect(collector)
            return await self.process(check, samples, error, time.monotonic() - started)
        finally:
            if task is not None:
                self._running_checks.discard(task)

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
        if not self.leases.valid(check) and not await self._lead(check, status=False):
            # renewed over half a TTL ago (a stalled run, an event, a verification) and
            # another replica holds the check now: the run is its, not ours
            log.warning("lease_lost", check=check, trigger=trigger)
            return []
        now = self._clock()
        evaluation: Evaluation = self.evaluator.evaluate(check, samples)
        remediating = self.remediation.in_progress
        transitions = self.tracker.update(evaluation, now, remediating=remediating)
        self._evaluations[check] = evaluation
        self._statuses[check] = CheckStatus(check, now, duration_s, error, tuple(samples))
        scheduled = duration_s if trigger == "schedule" else None
        self._check_stats.observe(check, scheduled, error is not None)
        # evidence for fired alerts; bound ones become REMEDIATING (their FIRED may be held)
        transitions, notify, claims = await self.remediation.intake(transitions)
        await self._record(check, transitions, self.tracker.take_changed(), now, notify=notify)
        self.remediation.start(claims)
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
        async with self._ran:
            self._runs[check] = self._runs.get(check, 0) + 1
            self._ran.notify_all()
        down = any(s.metric.endswith(".up") and s.value == 0 for s in samples)
        if down and self.evaluator.pending(check):
            self.scheduler.run_soon(check, self.settings.retry_interval)
        self._maybe_ready()
        return transitions

    async def _record(
        self,
        check: str,
        transitions: list[Transition],
        changed: list[Alert],
        now: datetime,
        *,
        notify: list[Transition] | None = None,
    ) -> None:
        """Persist changed alerts, transitions and their notifications in one transaction.
        Notifications are routed by severity and grouped per channel (notifiers/settings.py).
        ``notify``: the transitions to notify, when not all of them (recovery holds some)."""
        notified = transitions if notify is None else notify
        outbox = await self.config.notify.rows(self.store, notified, now)
        active = [a for a in changed if a.state is not AlertState.RESOLVED]
        resolved = [t.alert.fingerprint for t in transitions if t.kind is TransitionKind.RESOLVED]
        try:
            await self.store.record(CycleRecord(active, resolved, transitions, outbox), now)
        except Exception:
            log.exception("state_write_failed", check=check, transitions=len(transitions))
            raise
        for transition in transitions:
            alert = transition.alert
            log.info(
                _TRANSITION_EVENTS[transition.kind],
                fingerprint=alert.fingerprint,
                rule=alert.rule,
                check=alert.check,
                severity=alert.severity.value,
                summary=alert.summary,
                value=alert.value,
            )
        if outbox:
            self.outbox.wake()

    async def wait_for_runs(self, check: str, count: int = 1) -> None:
        """Until ``check`` has been processed ``count`` times in all (for tests and tools;
        bound it with ``asyncio.timeout``)."""
        async with self._ran:
            await self._ran.wait_for(lambda: self._runs.get(check, 0) >= count)

    # -- health and systemd ---------------------------------------------------------------

    def _maybe_ready(self) -> None:
        if not self._ready and set(self._statuses) >= set(self._collectors):
            self._ready = True
            self._systemd.ready()
            log.info("daemon_ready", checks=len(self._statuses))

    async def _heartbeat(self) -> None:
        """WATCHDOG=1 only while healthy, so systemd restarts a stalled daemon."""
        interval = self._systemd.watchdog_interval
        if interval is None:
            return
        while True:
            if self.health().healthy:
                self._systemd.watchdog()
            await asyncio.sleep(interval)

    # -- what the API reads ---------------------------------------------------------------

    def health(self) -> Health:
        now = self._clock()
        # A check is late when it has not finished within two intervals plus its timeout.
        allowance = 2 * self.settings.interval + self.settings.check_timeout
        last = max((s.finished_at for s in self._statuses.values()), default=None)
        if not self.scheduler.running:
            return Health(False, "scheduler is not running", self._started_at, last)
        for check in self._collectors:
            status = self._statuses.get(check)
            since = self._started_at if status is None else status.finished_at
            if (now - since).total_seconds() > allowance:
                return Health(False, f"check {check} is late", self._started_at, last)
        return Health(True, "ok", self._started_at, last)

    def check_statuses(self) -> Mapping[str, CheckStatus]:
        return self._statuses

    def active_alerts(self) -> list[Alert]:
        return [a for a in self.tracker.active() if a.state is not AlertState.RESOLVED]

    async def alert_history(self, limit: int) -> list[Transition]:
        return await self.store.history(limit)

    # -- recovery -------------------------------------------------------------------------

    def _verifier(self, alert: Alert) -> Verify:
        """Re-run the check that fired (a full cycle: it is stored and may fire others); true
        once its rule evaluated the alert's series and no longer finds it."""

        async def verify() -> bool:
            collector = self._collectors.get(alert.check)
            if collector is None:
                return False
            started = time.monotonic()
            samples, error = await self.collect(collector)
            duration = time.monotonic() - started
            await self.process(alert.check, samples, error, duration, trigger="verify")
            return _cleared(self._evaluations.get(alert.check), alert.fingerprint)

        return verify

    def _probe(self, alert: Alert) -> Verify:
        """Like :meth:`_verifier` but stores nothing (``opswatch recover`` beside a daemon)."""

        async def probe() -> bool:
            collector = self._collectors.get(alert.check)
            if collector is None:
                return False
            samples, _ = await self.collect(collector)
            return _cleared(self.evaluator.evaluate(alert.check, samples), alert.fingerprint)

        return probe

    async def wait_for_recoveries(self) -> None:
        """Until every recovery in progress has been applied (for tests and tools)."""
        await self.remediation.wait()

    def api_token(self) -> Secret | None:
        return self.config.api_token

    async def recovery_actions(self) -> dict[str, Any]:
        settings = self.config.recovery
        budgets = await self.recovery.budgets()
        return {
            "dry_run": settings.dry_run,
            "notify": settings.notify,
            "budget": settings.budget.text,
            "host": {
                "executions_last_hour": await self.recovery.host_used(),
                "max_per_hour": settings.max_per_hour,
            },
            "bindings": [
                {
                    **binding.describe(),
                    "budget": {
                        "key": state.key,
                        "state": state.state,
                        "used": state.used,
                        "limit": state.limit,
                        "left": state.allowed,
                        "next_trial_at": None
                        if state.next_trial_at is None
                        else state.next_trial_at.isoformat(),
                    },
                }
                for binding, state in budgets
            ],
        }

    async def recovery_history(self, limit: int) -> list[RecoveryResult]:
        return await self.store.recovery_history(limit)

    async def alert_evidence(self, fingerprint: str) -> list[dict[str, Any]]:
        return await self.store.evidence(fingerprint)

    async def run_recovery(
        self, binding_id: str, target: str | None, *, dry_run: bool
    ) -> RecoveryResult | None:
        """An operator's run of a binding (None: no such binding)."""
        binding = self.config.recovery.binding(binding_id)
        if binding is None:
            return None
        return await self.remediation.run_manual(binding, target, dry_run=dry_run)

    async def outbox_counts(self) -> Mapping[str, int]:
        return await self.store.outbox_counts()

    def check_stats(self) -> Mapping[str, CheckCounters]:
        return self._check_stats.snapshot()

    def notify_channels(self) -> Sequence[str]:
        return [n.channel for n in self.config.notifiers]

    def recovery_outcomes(self) -> Mapping[tuple[str, str], int]:
        return self.recovery.outcomes

    def failing_channels(self) -> frozenset[str]:
        return self.outbox.failing_channels()


def _cleared(evaluation: Evaluation | None, fingerprint: str) -> bool:
    """Whether ``evaluation`` saw the series ``fingerprint`` and its rule no longer finds."""
    return (
        evaluation is not None
        and fingerprint in evaluation.observed
        and all(f.fingerprint != fingerprint for f in evaluation.findings)
    )


async def recover_once(
    config: AppConfig,
    rule: str,
    target: str | None,
    *,
    dry_run: bool,
    command_runner: CommandRunner | None = None,
) -> RecoveryResult | None:
    """``opswatch recover RULE [--target T] [--dry-run]``: run the action bound to the rule
    (and target) once from this process, under the same budget (kept in the state store) and
    verified against the rule when its alert is active. The alert itself is left to the
    daemon, which resolves it at its next run. None: nothing is bound to the rule."""
    app = App(config, command_runner=command_runner)
    binding = app.config.recovery.binding_for(rule, target or "")
    if binding is None:
        return None
    await app.store.open()
    try:
        alert = next(
            (
                a
                for a in await app.store.load_active()
                if a.rule == binding.rule
                and (not target or target_key(alert_target(a)) == target_key(target))
            ),
            None,
        )
        verify = None
        if alert is not None:
            app.evaluator.seed([alert])
            verify = app._probe(alert)
        ctx = app.recovery.context(binding, alert, target or "")
        return await app.recovery.run(binding, ctx, verify, dry_run=dry_run)
    finally:
        for collector in config.collectors:
            await collector.close()
        await app.store.close()
