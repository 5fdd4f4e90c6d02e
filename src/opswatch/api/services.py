"""What the API handlers read and act on, each behind a ``web.AppKey``.

The daemon hands :func:`opswatch.api.app.build_app` its services (never itself): the check
board, the alert tracker, the state store and the recovery lifecycle. Each handler takes
what it needs from ``request.app[KEY]``. The protocols say what the API uses of each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from opswatch.alerts.maintenance import Maintenance
from opswatch.alerts.operator import Operator
from opswatch.alerts.pause import Pauses
from opswatch.alerts.silences import Silences
from opswatch.api.metrics import CheckCounters, CheckStats
from opswatch.capacity.resources import Capacity
from opswatch.collectors.heartbeat import HeartbeatDesk
from opswatch.model import Alert, CheckStatus, Health, Pause
from opswatch.notifiers.acklinks import AckLinks
from opswatch.notifiers.outbox import Outbox
from opswatch.notifiers.pipeline import Muter, NothingMuted
from opswatch.ports import StateStore
from opswatch.recovery.lifecycle import Remediation
from opswatch.runbooks.source import Runbooks


class CheckReads(Protocol):
    """The check board (:class:`opswatch.daemon.checks.CheckBoard`)."""

    def health(self) -> Health: ...

    def statuses(self) -> Mapping[str, CheckStatus]: ...

    def stats(self) -> Mapping[str, CheckCounters]: ...

    def series(self) -> CheckStats: ...


class AlertReads(Protocol):
    """The alert tracker (:class:`opswatch.alerts.tracker.AlertTracker`)."""

    def active(self) -> list[Alert]: ...


@dataclass(frozen=True)
class Services:
    checks: CheckReads
    alerts: AlertReads
    store: StateStore
    recovery: Remediation
    #: the outbox in use (a reload replaces it)
    outbox: Callable[[], Outbox]
    #: the silences (create, expire) and their muter
    silences: Silences
    #: operator actions on alerts (ack, unack, resolve); ``None``: the routes answer 503
    operator: Operator | None = None
    #: every muter (silences, windows, dependencies, pause): why an alert is muted
    mutes: Muter = field(default_factory=NothingMuted)
    #: heartbeat pings and reads; ``None``: no heartbeat exists (the routes answer 404)
    heartbeats: HeartbeatDesk | None = None
    #: pause and resume (``/api/v1/monitoring``); ``None``: the routes answer 503
    pauses: Pauses | None = None
    #: the maintenance windows (one-off ones made and deleted) and their muter; ``None``:
    #: the routes answer 503
    maintenance: Maintenance | None = None
    #: the signer of one-click ack links in use (``OPSWATCH_EXTERNAL_URL``; a reload may
    #: replace it); ``None``: off
    ack_links: Callable[[], AckLinks | None] = lambda: None
    #: the metric history and the forecasts; ``None``: the routes answer that it is off
    capacity: Capacity | None = None
    #: every enabled rule's runbook (``/api/v1/runbooks``); ``None``: the routes answer 503
    runbooks: Runbooks | None = None


CHECKS: web.AppKey[CheckReads] = web.AppKey("checks")
ALERTS: web.AppKey[AlertReads] = web.AppKey("alerts")
STORE: web.AppKey[StateStore] = web.AppKey("store")
RECOVERY: web.AppKey[Remediation] = web.AppKey("recovery")
OUTBOX: web.AppKey[Callable[[], Outbox]] = web.AppKey("outbox")
SILENCES: web.AppKey[Silences] = web.AppKey("silences")
OPERATOR: web.AppKey[Operator | None] = web.AppKey("operator")
MUTES: web.AppKey[Muter] = web.AppKey("mutes")
HEARTBEATS: web.AppKey[HeartbeatDesk | None] = web.AppKey("heartbeats")
PAUSES: web.AppKey[Pauses | None] = web.AppKey("pauses")
MAINTENANCE: web.AppKey[Maintenance | None] = web.AppKey("maintenance")
ACK_LINKS: web.AppKey[Callable[[], AckLinks | None]] = web.AppKey("ack_links")
CAPACITY: web.AppKey[Capacity | None] = web.AppKey("capacity")
RUNBOOKS: web.AppKey[Runbooks | None] = web.AppKey("runbooks")


def install(app: web.Application, services: Services) -> None:
    app[CHECKS] = services.checks
    app[ALERTS] = services.alerts
    app[STORE] = services.store
    app[RECOVERY] = services.recovery
    app[OUTBOX] = services.outbox
    app[SILENCES] = services.silences
    app[OPERATOR] = services.operator
    app[MUTES] = services.mutes
    app[HEARTBEATS] = services.heartbeats
    app[PAUSES] = services.pauses
    app[MAINTENANCE] = services.maintenance
    app[ACK_LINKS] = services.ack_links
    app[CAPACITY] = services.capacity
    app[RUNBOOKS] = services.runbooks


class MetricsView:
    """The services as ``/metrics`` reads them (:class:`opswatch.api.metrics.MetricsSource`)."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def health(self) -> Health:
        return self._s.checks.health()

    def check_statuses(self) -> Mapping[str, CheckStatus]:
        return self._s.checks.statuses()

    def active_alerts(self) -> list[Alert]:
        return self._s.alerts.active()

    def check_stats(self) -> Mapping[str, CheckCounters]:
        return self._s.checks.stats()

    def last_series(self) -> CheckStats:
        return self._s.checks.series()

    def notify_channels(self) -> Sequence[str]:
        return self._s.outbox().channels()

    def failing_channels(self) -> frozenset[str]:
        return self._s.outbox().failing_channels()

    async def outbox_counts(self) -> Mapping[str, int]:
        return await self._s.store.outbox_counts()

    def recovery_outcomes(self) -> Mapping[tuple[str, str], int]:
        return self._s.recovery.runner.outcomes

    def pauses(self) -> Sequence[Pause]:
        return [] if self._s.pauses is None else self._s.pauses.muter.pauses()
