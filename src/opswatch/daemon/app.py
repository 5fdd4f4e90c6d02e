"""The only module that knows every area at run time: it wires the daemon and runs it.

Its configuration comes from :func:`opswatch.daemon.configure.load_config`. One run of one
check is :class:`~opswatch.daemon.cycle.CheckCycle`; what the daemon knows of its checks is
:class:`~opswatch.daemon.checks.CheckBoard`; replica leadership is
:class:`~opswatch.daemon.replicas.Replicas`; every alert change is written by
:class:`~opswatch.alerts.book.AlertBook`; a reload's swap is :mod:`opswatch.daemon.reload`.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import structlog

from opswatch.alerts.book import AlertBook
from opswatch.alerts.dependencies import DependencyMuter, down_rules
from opswatch.alerts.flapping import FlapDetector
from opswatch.alerts.maintenance import Maintenance, MaintenanceMuter
from opswatch.alerts.muting import MuteStack
from opswatch.alerts.operator import Operator
from opswatch.alerts.pause import Pauses
from opswatch.alerts.silences import Silences
from opswatch.alerts.tracker import AlertTracker
from opswatch.api.app import ApiServer
from opswatch.api.metrics import MetricsExporter
from opswatch.api.services import MetricsView, Services
from opswatch.capacity.check import CHECK as FORECAST_CHECK
from opswatch.capacity.check import follow as follow_forecasts
from opswatch.capacity.history import SeriesFilter
from opswatch.capacity.resources import Capacity
from opswatch.capacity.rollup import HistoryJob
from opswatch.collectors.base import Collector, EventSource, StoreCheck
from opswatch.collectors.heartbeat import HeartbeatDesk
from opswatch.daemon.checks import CheckBoard
from opswatch.daemon.configure import AppConfig
from opswatch.daemon.cycle import CheckCycle
from opswatch.daemon.reload import Reload
from opswatch.daemon.replicas import Replicas
from opswatch.daemon.scheduler import Scheduler
from opswatch.daemon.sdnotify import SystemdNotifier
from opswatch.model import Alert, Clock, utcnow
from opswatch.notifiers.outbox import Outbox, RetryPolicy
from opswatch.recovery.base import CommandRunner
from opswatch.recovery.lifecycle import Remediation
from opswatch.recovery.runner import RecoveryPolicy, RecoveryRunner, Sleep, Verify
from opswatch.reports.build import ReportSources
from opswatch.reports.job import ReportJob
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.runbooks.source import Runbooks
from opswatch.state import open_lease, open_store
from opswatch.state.leases import CheckLeases
from opswatch.state.outage import StoreOutage, open_when_reachable
from opswatch.timing import Timing

log = structlog.get_logger("opswatch")


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
        self._clock = clock
        self.timing = Timing.of(config.settings)
        self.store = open_store(config.settings)
        # several replicas on one PostgreSQL store: one runs each check (README: replicas)
        self.leases = CheckLeases(open_lease(config.settings, self.store), self.timing.lease_ttl)
        self.evaluator = RuleEvaluator(config.rules)
        # flapping per alert identity: the tracker's notifications and recovery's guard
        self.flapping = FlapDetector(config.flapping)
        self.tracker = AlertTracker(
            config.repeat_interval, flapping=self.flapping, ladder=config.ladder
        )
        self.retry_policy = retry_policy or RetryPolicy()
        self._crashed = False
        self._stop_requested = asyncio.Event()
        self.outage = StoreOutage(clock, config.settings.state_give_up_after, self._give_up)
        self.outbox = self.new_outbox(config)
        self.scheduler = Scheduler(self.timing)
        self.systemd = systemd or SystemdNotifier(None)
        self.checks = CheckBoard(
            [c.check for c in config.collectors],
            self.timing,
            clock,
            scheduler=self.scheduler,
            on_ready=self.systemd.ready,
            outage=self.outage,
        )
        # the silences, and every muter in one stack, kept across reloads (daemon/reload.py)
        self.silences = Silences(self.store, clock)
        self.mutes = MuteStack([self.silences.muter])
        # pause: kept in the store; the checks it may name are the configured ones
        self.pauses = Pauses(self.store, clock, lambda: self.cycle.collectors)
        self.mutes.add(self.pauses.muter)
        # OPSWATCH_DEPENDS and each check's own down alert (reload.py configures it again)
        self.dependencies = DependencyMuter(
            self.tracker, lambda: self.timing.interval, config.depends, down_rules(config.rules)
        )
        self.mutes.add(self.dependencies)
        self.maintenance = Maintenance(self.store, clock, MaintenanceMuter(config.maintenance))
        self.mutes.add(self.maintenance.muter)
        self.book = AlertBook(
            self.store,
            self.tracker,
            config.notify.pipeline(self.mutes),
            self._wake_outbox,
            self.outage,
        )
        self.recovery = RecoveryRunner(
            config.recovery,
            self.store,
            clock=clock,
            commands=command_runner,
            policy=recovery_policy,
            sleep=recovery_sleep,
            flapping=self.flapping,
        )
        self.remediation = Remediation(
            self.recovery,
            book=self.book,
            store=self.store,
            verifier=self._verifier,
            evidence=config.evidence,
            clock=clock,
        )
        self.replicas = Replicas(
            leases=self.leases,
            store=self.store,
            tracker=self.tracker,
            evaluator=self.evaluator,
            remediation=self.remediation,
            board=self.checks,
            outage=self.outage,
        )
        self.cycle = CheckCycle(
            {c.check: c for c in config.collectors},
            evaluator=self.evaluator,
            tracker=self.tracker,
            book=self.book,
            board=self.checks,
            replicas=self.replicas,
            remediation=self.remediation,
            scheduler=self.scheduler,
            clock=clock,
            history=SeriesFilter(config.history),
        )
        self.use_store(config.collectors)
        self.heartbeats = HeartbeatDesk(
            lambda: self.cycle.collectors, self.store, clock, self._recheck
        )
        # roll-ups, retention and the size cap of the metric history: a job of its own
        settle = self.timing.interval + self.timing.check_timeout
        self.history = HistoryJob(self.store, config.history, clock, settle)
        self.capacity = Capacity(self.store, config.history, config.forecast, clock)
        # the daily report and the weekly review: a job of its own, queued in the outbox
        checks = [c.check for c in config.collectors]
        sources = ReportSources(self.store, checks, self.mutes, self.capacity, socket.gethostname())
        self.reports = ReportJob(sources, config.reports, clock, self._wake_outbox)
        self.runbooks = Runbooks(lambda: self.config, self.store, self.recovery.budgets, clock)
        self.services = Services(
            self.checks,
            self.tracker,
            self.store,
            self.remediation,
            lambda: self.outbox,
            self.silences,
            operator=Operator(self.book, clock),
            mutes=self.mutes,
            heartbeats=self.heartbeats,
            pauses=self.pauses,
            maintenance=self.maintenance,
            ack_links=lambda: self.config.ack_links,  # the notifiers' (a reload swaps both)
            capacity=self.capacity,
            runbooks=self.runbooks,
        )
        self.metrics = MetricsExporter(MetricsView(self.services))
        host, port = config.settings.api_listen
        self.api = ApiServer(self.services, config.access(), host, port, self.metrics)
        self.reloader = Reload(self, environ, clock)
        self.tasks: set[asyncio.Task[None]] = set()
        self._serving = False
        self._opened = False

    def use_store(self, collectors: Iterable[Collector]) -> None:
        """Hand the state store to the checks that read it (heartbeats; a reload's too)."""
        for collector in collectors:
            if isinstance(collector, StoreCheck):
                collector.use_store(self.store)

    async def _recheck(self, check: str) -> None:
        """Run ``check`` now through the event path (a heartbeat was pinged)."""
        collector = self.cycle.collectors.get(check)
        if collector is not None:
            samples, _ = await self.cycle.collect(collector)
            await self.cycle.emitter(check)(samples)

    def _verifier(self, alert: Alert) -> Verify:
        return self.cycle.verifier(alert)  # the cycle is built after recovery (it needs it)

    async def _lead_history(self) -> bool:
        """Whether this replica rolls up and prunes the history now (one of them does)."""
        return self.config.history.enabled and await self.replicas.lead("history", status=False)

    async def _lead_reports(self) -> bool:
        """Whether this replica sends the reports now (their outbox keys keep them one)."""
        return await self.replicas.lead("reports", status=False)

    def _wake_outbox(self) -> None:
        self.outbox.wake()  # the one in use: a reload replaces it

    def new_outbox(self, config: AppConfig) -> Outbox:
        return Outbox(
            self.store,
            {n.channel: n for n in config.notifiers},
            self.retry_policy,
            self._clock,
            options=config.notify.delivery,
            outage=self.outage,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> list[Alert] | None:
        """Open the state (waiting for it while unreachable) and restore the alerts that were
        firing; returns them (None: the wait for the store ended first)."""
        stop, interval = self._stop_requested, self.timing.interval
        if not await open_when_reachable(self.store, self.outage, stop, interval):
            return None
        await self.leases.lease.open()
        await self.silences.load()
        await self.pauses.load()
        await self.maintenance.load()
        active = await self.cycle.adopt(await self.store.load_active())
        self.evaluator.seed(active)
        if not self.replicas.shared:  # replicas: per check, by the one taking it over
            await self.remediation.restore(self.tracker.active())
        return active

    async def start(self) -> None:
        """Open the state, then start the API, the outbox and the scheduled checks."""
        self.checks.start()
        active = await self.open()
        if active is None:  # stopped (or gave up) while waiting for the store
            return
        self._opened = True
        await self.api.start()
        self._serving = True
        self.spawn(self.outbox.run(), "outbox")
        self.spawn(self.systemd.heartbeat(lambda: self.checks.health().healthy), "heartbeat")
        if self.replicas.shared:  # other replicas' silences and one-off windows, every interval
            self.spawn(self.silences.follow(lambda: self.timing.interval), "silences")
            self.spawn(self.pauses.follow(lambda: self.timing.interval), "pauses")
            self.spawn(self.maintenance.follow(lambda: self.timing.interval), "maintenance")
        self.spawn(self.history.run(self._lead_history), "history")
        forecasts = follow_forecasts(
            self.capacity, lambda: self.cycle.collectors.get(FORECAST_CHECK)
        )
        self.spawn(forecasts, "forecasts")
        self.spawn(self.reports.run(self._lead_reports), "reports")
        self.start_checks()
        self.reloader.enable()
        settings = self.config.settings
        log.info(
            "daemon_started",
            checks=sorted(self.cycle.collectors),
            interval_s=settings.interval,
            active_alerts=len(active),
            channels=sorted(n.channel for n in self.config.notifiers),
            state_path=str(settings.state_path),
            state_url=None if settings.state_url is None else str(settings.state_url),
            replica=self.leases.lease.holder,
        )
        for unknown in self.config.unknown_variables:
            log.warning("config_unknown_variable", variable=unknown.name, closest=unknown.closest)
        for rule, metric in self.config.rules_matching_nothing:
            log.warning("rule_matches_nothing", rule=rule, metric=metric)

    def start_checks(self) -> None:
        for check, collector in self.cycle.collectors.items():
            self.scheduler.add(check, self.cycle.job(check))
            if isinstance(collector, EventSource) and collector.supports_watch:
                self.spawn(collector.watch(self.cycle.emitter(check)), f"watch:{check}")
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop checks, flush the outbox for up to the shutdown grace, close everything."""
        await self.reloader.disable()  # a reload in progress finishes first
        if not self._opened and self.outage.down:  # never reached the store: nothing ran
            await self.store.close()
            log.info("daemon_stopped")
            return
        self.systemd.stopping()
        self.scheduler.shutdown()
        self.cycle.stopping = True
        for task in list(self.cycle.running):
            task.cancel()
        await asyncio.gather(*self.cycle.running, return_exceptions=True)
        await self.remediation.cancel()  # interrupted runs are escalated at the next start
        await self.replicas.release_all()
        # flush() delivers what it can within the grace, then ends Outbox.run() itself
        await self.outbox.flush(self.config.settings.shutdown_grace)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._serving:
            await self.api.stop()
            self._serving = False
        for collector in self.cycle.collectors.values():
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
        loop.add_signal_handler(signal.SIGHUP, lambda: self.spawn(self._sighup(), "reload"))
        await self.start()
        await self._stop_requested.wait()
        log.info("daemon_stopping", crashed=self._crashed)
        await self.stop()
        return 1 if self._crashed else 0

    async def _sighup(self) -> None:
        await self.reload()

    async def reload(self, environ: Mapping[str, str] | None = None) -> bool:
        """Re-read the configuration and swap the parts (:mod:`opswatch.daemon.reload`)."""
        return await self.reloader.run(environ)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _give_up(self) -> None:
        self._crashed = True
        self._stop_requested.set()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A background task (outbox, heartbeat) must not die quietly: stop the daemon."""
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        log.error("task_crashed", task=task.get_name(), exc_info=task.exception())
        self._crashed = True
        self._stop_requested.set()
