"""A reload (SIGHUP, ``systemctl reload``): re-read the configuration and swap the parts.

Collectors, rules, notifiers, routes, recovery settings and every timing derived from the
interval are replaced; alert state, the outbox's rows and the evaluator's series (when the
rules did not change) are kept. Settings that need a restart (:data:`RESTART_ONLY`) keep
their running values and are named in ``reload_needs_restart``. Where the configuration
comes from is :mod:`opswatch.envfile`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from opswatch.alerts.dependencies import down_rules
from opswatch.capacity.history import SeriesFilter
from opswatch.config import PREFIX, ConfigError, Settings
from opswatch.daemon.configure import AppConfig, load_config
from opswatch.model import Clock
from opswatch.timing import Timing

if TYPE_CHECKING:
    from opswatch.daemon.app import App

log = structlog.get_logger("opswatch")

#: settings a reload cannot change (the store and listener stay open; logging is set up once)
RESTART_ONLY: Mapping[str, str] = {
    "state_path": f"{PREFIX}STATE_PATH",
    "state_url": f"{PREFIX}STATE_URL",
    "state_schema": f"{PREFIX}STATE_SCHEMA",
    "lease_url": f"{PREFIX}LEASE_URL",
    "api_listen": f"{PREFIX}API_LISTEN",
    "log_format": f"{PREFIX}LOG_FORMAT",
    "log_level": f"{PREFIX}LOG_LEVEL",
}


def restart_only_changes(old: Settings, new: Settings) -> list[str]:
    """The variables whose change a reload cannot apply (they need a restart)."""
    return [var for attr, var in RESTART_ONLY.items() if getattr(old, attr) != getattr(new, attr)]


def keep_restart_only(old: Settings, new: Settings) -> Settings:
    """``new`` with the settings a reload cannot change taken from ``old``."""
    return replace(new, **{attr: getattr(old, attr) for attr in RESTART_ONLY})


def _token_changes(old: AppConfig, new: AppConfig) -> list[str]:
    pairs = {
        f"{PREFIX}API_TOKEN": (old.api_token, new.api_token),
        f"{PREFIX}API_READ_TOKEN": (old.api_read_token, new.api_read_token),
    }
    return [
        name
        for name, (was, now) in pairs.items()
        if (was and was.reveal()) != (now and now.reveal())
    ]


class Reload:
    """Re-reads the configuration (``environ``, else the source given at construction) and
    swaps collectors, rules, notifiers, routes, recovery settings and timings in ``app``.

    A configuration that does not validate is refused (``reload_failed`` with the
    ConfigError line) and the running one stays. Settings that need a restart keep their
    running values (``reload_needs_restart``).
    """

    def __init__(
        self, app: App, environ: Callable[[], Mapping[str, str]] | None, clock: Clock
    ) -> None:
        self._app = app
        self._environ = environ
        self._clock = clock
        self._lock = asyncio.Lock()
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    async def disable(self) -> None:
        """No reload from now on; one in progress finishes first."""
        self._enabled = False
        async with self._lock:
            pass

    async def run(self, environ: Mapping[str, str] | None = None) -> bool:
        """Returns whether the new configuration was applied."""
        systemd = self._app.systemd
        async with self._lock:
            systemd.reloading()
            try:
                return await self._apply(environ)
            finally:
                systemd.ready()

    async def _apply(self, environ: Mapping[str, str] | None) -> bool:
        app = self._app
        try:
            if not self._enabled:
                raise ConfigError("SIGHUP", "the daemon is starting or stopping; try again")
            if environ is None:
                if self._environ is None:
                    raise ConfigError("SIGHUP", "no configuration source to re-read")
                environ = self._environ()
            config = load_config(environ, self._clock)
        except ConfigError as exc:
            log.error("reload_failed", error=str(exc))
            app.systemd.status(f"reload failed: {exc}")
            return False
        running = app.config.settings
        restart = restart_only_changes(running, config.settings)
        if restart:
            log.warning("reload_needs_restart", variables=restart)
        config = replace(config, settings=keep_restart_only(running, config.settings))
        tokens = _token_changes(app.config, config)  # the API keeps the tokens it started with
        if tokens:
            log.warning("reload_needs_restart", variables=tokens)
            config = replace(
                config, api_token=app.config.api_token, api_read_token=app.config.api_read_token
            )
        # 1. quiesce: no check runs and no new outbox rows while the parts are swapped
        app.scheduler.shutdown()
        watchers = [t for t in app.tasks if t.get_name().startswith("watch:")]
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, *app.cycle.running, return_exceptions=True)
        # 2. deliver what the old channels can take now; the rest stays queued in the store
        await app.outbox.flush(min(running.shutdown_grace, 5.0))
        old_collectors, old_notifiers = list(app.cycle.collectors.values()), app.config.notifiers
        # 3. swap (no await in between: a straggling job sees all old or all new parts)
        rules_changed = self._swap(config)
        # 4. restart: alerts of removed rules or checks are resolved, then checks run at once
        active = await app.cycle.adopt(app.tracker.active())
        if rules_changed:
            app.evaluator.seed(active)
        app.spawn(app.outbox.run(), "outbox")
        app.start_checks()
        for collector in old_collectors:
            await collector.close()
        for notifier in old_notifiers:
            await notifier.close()
        log.info(
            "reload_finished",
            checks=sorted(app.cycle.collectors),
            interval_s=config.settings.interval,
            rules=len(config.rules),
            channels=sorted(n.channel for n in config.notifiers),
            active_alerts=len(app.tracker.active()),
        )
        app.systemd.status("reloaded")
        return True

    def _swap(self, config: AppConfig) -> bool:
        """Swap every part; returns whether the rules changed."""
        app = self._app
        timing = Timing.of(config.settings)
        app.config, app.timing = config, timing
        # else the evaluator keeps its debounce and hysteresis state
        rules_changed = app.evaluator.configure(config.rules)
        app.tracker.configure(config.repeat_interval, config.ladder)
        app.flapping.configure(config.flapping)
        app.use_store(config.collectors)
        app.cycle.collectors = {c.check: c for c in config.collectors}
        app.checks.configure(app.cycle.collectors, timing)
        app.scheduler.reset(timing)
        app.outage.give_up_after = config.settings.state_give_up_after
        app.leases.ttl = timing.lease_ttl  # a lease outlives 3 of the new intervals
        app.store.poll(timing.outbox_poll)
        app.store.claim_for(timing.lease_ttl)  # an outbox claim too
        app.book.pipeline = config.notify.pipeline(app.mutes)  # the same muters
        app.dependencies.configure(config.depends, down_rules(config.rules))
        app.maintenance.muter.configure(config.maintenance)
        app.recovery.settings = config.recovery
        app.remediation.evidence = config.evidence
        app.outbox = app.new_outbox(config)
        app.cycle.history = SeriesFilter(config.history)
        app.history.settings = config.history
        app.reports.settings = config.reports
        app.capacity.history, app.capacity.forecast = config.history, config.forecast
        return rules_changed
