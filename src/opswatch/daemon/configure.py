"""Configuration assembly: the environment read once into a validated :class:`AppConfig`.

This is where every registry (collectors, notifiers, rules, recovery actions) meets the
environment; ``opswatch check-config`` prints :meth:`AppConfig.describe`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opswatch.alerts.dependencies import DEPENDS, parse_depends
from opswatch.alerts.flapping import FlapSettings
from opswatch.alerts.ladder import Ladder
from opswatch.alerts.maintenance import RecurringWindow, windows_from_env
from opswatch.api.auth import Access, is_loopback
from opswatch.capacity.check import FORECAST_RULES, ForecastCheck
from opswatch.capacity.forecast import ForecastSettings
from opswatch.capacity.history import HistorySettings
from opswatch.collectors import COLLECTORS
from opswatch.collectors.base import Collector
from opswatch.collectors.heartbeat import HeartbeatCheck, refuse_unpingable
from opswatch.config import PREFIX, ConfigError, Env, Secret, Settings, UnknownVariable
from opswatch.envfile import ENV_FILE
from opswatch.model import Clock, Severity, utcnow
from opswatch.notifiers import NOTIFIERS
from opswatch.notifiers.acklinks import AckLinks
from opswatch.notifiers.base import Notifier
from opswatch.notifiers.health import METRIC as CHANNEL_UP_METRIC
from opswatch.notifiers.routing import META_RULE
from opswatch.notifiers.settings import NotifySettings
from opswatch.recovery.config import RecoverySettings
from opswatch.recovery.evidence import EvidenceSettings
from opswatch.redact import register as register_secrets
from opswatch.reports.settings import ReportSettings
from opswatch.rules.base import AnyRule
from opswatch.rules.builtin import BUILTIN, RuleSpec, builtin_rules
from opswatch.rules.sources import BUILTIN_ORIGIN, matches_nothing, user_rules
from opswatch.rules.threshold import Level


@dataclass(frozen=True)
class AppConfig:
    """Everything the daemon needs, validated. Built by :func:`load_config`."""

    settings: Settings
    collectors: Sequence[Collector]
    notifiers: Sequence[Notifier]
    rules: Sequence[AnyRule]
    repeat_interval: Mapping[Severity, float]
    unknown_variables: Sequence[UnknownVariable] = field(default_factory=tuple)
    notify: NotifySettings = field(default_factory=NotifySettings)
    recovery: RecoverySettings = field(default_factory=RecoverySettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    #: ``OPSWATCH_API_TOKEN``: bearer token of the API's write endpoints (None: disabled)
    api_token: Secret | None = None
    #: ``OPSWATCH_DEPENDS``: each child check's parents (alerts/dependencies.py)
    depends: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: ``OPSWATCH_MAINTENANCE_<NAME>``: the recurring maintenance windows
    maintenance: tuple[RecurringWindow, ...] = ()
    flapping: FlapSettings = field(default_factory=FlapSettings)
    ladder: Ladder = field(default_factory=Ladder)
    #: ``OPSWATCH_API_READ_TOKEN``: bearer token of the read endpoints beyond loopback
    api_read_token: Secret | None = None
    #: one-click ack links in notifications (``OPSWATCH_EXTERNAL_URL``; None: off)
    ack_links: AckLinks | None = None
    #: where each rule came from (``built-in``, a variable, a file and line), by name
    rule_origins: Mapping[str, str] = field(default_factory=dict)
    #: ``(rule, metric)``: user rules selecting a metric no configured collector produces
    rules_matching_nothing: Sequence[tuple[str, str]] = ()
    #: ``OPSWATCH_HISTORY*``: the metric history (capacity/history.py)
    history: HistorySettings = field(default_factory=HistorySettings)
    #: ``OPSWATCH_FORECAST_*``: the trends' window (capacity/forecast.py)
    forecast: ForecastSettings = field(default_factory=ForecastSettings)
    #: ``OPSWATCH_REPORT_*``, ``OPSWATCH_ROUTE_REPORT``: the scheduled reports (reports/)
    reports: ReportSettings = field(default_factory=ReportSettings)

    def access(self) -> Access:
        """What the API serves to whom (:class:`opswatch.api.auth.Access`)."""
        return Access(
            self.api_token,
            self.api_read_token,
            is_loopback(self.settings.api_listen[0]),
            links=self.ack_links is not None,
            pings=any(isinstance(c, HeartbeatCheck) for c in self.collectors),
        )

    def describe(self) -> dict[str, Any]:
        """The effective configuration with every secret masked (``check-config``)."""
        s = self.settings
        return {
            "interval_s": s.interval,
            "check_timeout_s": s.check_timeout,
            "checks": list(s.checks),
            "state_path": str(s.state_path),
            "state_url": None if s.state_url is None else str(s.state_url),
            "state_schema": s.state_schema,
            "lease_url": None if s.lease_url is None else str(s.lease_url),
            "api_listen": f"{s.api_listen[0]}:{s.api_listen[1]}",
            "log_format": s.log_format,
            "log_level": s.log_level,
            "shutdown_grace_s": s.shutdown_grace,
            "collectors": {c.check: c.describe() for c in self.collectors},
            "notifiers": {n.channel: n.describe() for n in self.notifiers},
            "notify": self.notify.describe(),
            "recovery": self.recovery.describe(),
            "flapping": self.flapping.describe(),
            "ladder": self.ladder.describe(),
            "api_token": None if self.api_token is None else str(self.api_token),
            "api_read_token": None if self.api_read_token is None else str(self.api_read_token),
            "ack_links": None if self.ack_links is None else self.ack_links.describe(),
            "rules": [
                {**r.describe(), "origin": self.rule_origins.get(r.name, BUILTIN_ORIGIN)}
                for r in self.rules
            ],
            "rules_matching_nothing": [
                {"rule": rule, "metric": metric} for rule, metric in self.rules_matching_nothing
            ],
            "history": self.history.describe(),
            "forecast": self.forecast.describe(),
            "reports": self.reports.describe(),
            "repeat_interval_s": {k.value: v for k, v in self.repeat_interval.items()},
            "depends": {child: list(parents) for child, parents in self.depends.items()},
            "maintenance": [w.describe(utcnow()) for w in self.maintenance],
            "unknown_variables": [
                {"variable": u.name, "closest": u.closest} for u in self.unknown_variables
            ],
        }


#: the "notifications failing" meta-alert: fed by the ``notify`` check (notifiers/health.py)
NOTIFY_RULE = RuleSpec(
    META_RULE,
    CHANNEL_UP_METRIC,
    "<",
    (Level(Severity.CRITICAL, 1, 1),),
    "notifications to {channel} are failing",
)


def load_config(environ: Mapping[str, str], clock: Clock = utcnow) -> AppConfig:
    """Parse and validate the whole configuration; raises :class:`ConfigError`."""
    env = Env(environ)
    # A collector whose targets are configured is enabled by default, beside host.
    configured = [
        name
        for name in sorted(COLLECTORS)
        if name != "host"
        and any(
            env.raw(f"{PREFIX}{name.upper()}_{variable}") is not None
            for variable in ("TARGETS", "TARGETS_FILE")
        )
    ]
    default_checks = ("host", *configured)
    settings = Settings.from_env(
        env, available_checks=tuple(sorted(COLLECTORS)), default_checks=default_checks
    )
    collectors: list[Collector] = []
    for name in settings.checks:
        instances = COLLECTORS[name].from_env(env, clock)
        if not instances:
            raise ConfigError(
                f"{PREFIX}{name.upper()}_TARGETS",
                f"required when {name} is in {PREFIX}CHECKS",
            )
        collectors.extend(instances)
    notifiers = [n for name in sorted(NOTIFIERS) for n in NOTIFIERS[name].from_env(env)]
    notify = NotifySettings.from_env(env, notifiers, tuple(NOTIFIERS))
    rules = builtin_rules(env, settings.interval)
    if notifiers:  # channel health is a check, its failure an alert like any other
        collectors.append(notify.health_check(clock))
        rules.extend(builtin_rules(env, settings.interval, (NOTIFY_RULE,)))
    history = HistorySettings.from_env(env)
    if history.enabled:  # forecasts are a check too, their rules like any other
        collectors.append(ForecastCheck(clock))
        rules.extend(builtin_rules(env, settings.interval, FORECAST_RULES))
    tunable = [spec.name for spec in (*BUILTIN, NOTIFY_RULE, *FORECAST_RULES)]
    ruleset = user_rules(env, environ.keys(), rules, settings.interval, tunable)
    repeat = {
        Severity.WARNING: env.duration(f"{PREFIX}REPEAT_WARNING", 4 * 3600.0, minimum=60.0),
        Severity.CRITICAL: env.duration(f"{PREFIX}REPEAT_CRITICAL", 3600.0, minimum=60.0),
        Severity.EMERGENCY: env.duration(f"{PREFIX}REPEAT_EMERGENCY", 1800.0, minimum=60.0),
    }
    recovery = RecoverySettings.from_env(env, environ.keys(), [r.name for r in ruleset.rules])
    api_token = env.secret(f"{PREFIX}API_TOKEN")
    refuse_unpingable(collectors, api_token)
    depends = parse_depends(env.raw(DEPENDS), [c.check for c in collectors])
    maintenance = windows_from_env(env, environ.keys())
    flapping = FlapSettings.from_env(env)
    rule_names = [r.name for r in ruleset.rules]
    ladder = Ladder.from_env(env, environ.keys(), rule_names, settings.interval)
    api_read_token = env.secret(f"{PREFIX}API_READ_TOKEN")
    ack_links = AckLinks.from_env(env)
    forecast = ForecastSettings.from_env(env)
    reports = ReportSettings.from_env(env, notifiers, tuple(NOTIFIERS))
    # every other OPSWATCH_* name is judged by whether a getter read it
    unknown = env.unknown((f"{PREFIX}TEST_", ENV_FILE))
    register_secrets(env.secrets)
    return AppConfig(
        settings,
        tuple(collectors),
        tuple(notifiers),
        ruleset.rules,
        repeat,
        unknown,
        notify,
        recovery=recovery,
        evidence=EvidenceSettings.from_env(env, enabled=recovery.evidence),
        api_token=api_token,
        depends=depends,
        maintenance=maintenance,
        flapping=flapping,
        ladder=ladder,
        api_read_token=api_read_token,
        ack_links=ack_links,
        rule_origins=ruleset.origins,
        rules_matching_nothing=matches_nothing(
            ruleset.rules, {collector.name for collector in collectors}
        ),
        history=history,
        forecast=forecast,
        reports=reports,
    )
