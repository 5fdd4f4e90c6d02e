"""The aiohttp application: one declarative route table, the services behind AppKeys, one
authentication middleware, and its listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from opswatch.api import alerts, checks, operator, recovery
from opswatch.api.auth import SCOPES, Scope, authenticate
from opswatch.api.metrics import METRICS, MetricsExporter, metrics_handler
from opswatch.api.requests import MAX_BODY
from opswatch.api.scrub import scrub_answers
from opswatch.api.services import MetricsView, Services, install
from opswatch.config import Secret

log = structlog.get_logger("opswatch.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    scope: Scope
    summary: str


#: every endpoint, with its scope and what it answers (README: HTTP API)
ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", checks.healthz, Scope.READ, "200 healthy, 503 with the reason"),
    Route("GET", "/status", checks.status, Scope.READ, "each check's last run; alert count"),
    Route("GET", "/metrics", metrics_handler, Scope.READ, "Prometheus text exposition"),
    Route("GET", "/api/v1/alerts", alerts.active, Scope.READ, "active alerts"),
    Route("GET", "/api/v1/alerts/history", alerts.history, Scope.READ, "transitions"),
    Route(
        "GET",
        "/api/v1/alerts/{fingerprint}/evidence",
        alerts.evidence,
        Scope.READ,
        "snapshots taken when the alert fired",
    ),
    Route(
        "POST",
        "/api/v1/alerts/{fingerprint}/ack",
        operator.ack,
        Scope.WRITE,
        "acknowledge an active alert (author, comment, expires_at or duration, sticky)",
    ),
    Route(
        "DELETE",
        "/api/v1/alerts/{fingerprint}/ack",
        operator.unack,
        Scope.WRITE,
        "remove an alert's acknowledgement",
    ),
    Route(
        "POST",
        "/api/v1/alerts/{fingerprint}/resolve",
        operator.resolve,
        Scope.WRITE,
        "resolve an active alert by hand (author, comment)",
    ),
    Route("GET", "/api/v1/recovery/actions", recovery.actions, Scope.READ, "bindings, budgets"),
    Route("GET", "/api/v1/recovery/history", recovery.history, Scope.READ, "recovery runs"),
    Route(
        "POST",
        "/api/v1/recovery/{action}/run",
        recovery.run,
        Scope.WRITE,
        "run a binding's action now",
    ),
)


def build_app(
    services: Services, token: Secret | None, metrics: MetricsExporter | None = None
) -> web.Application:
    app = web.Application(
        middlewares=[scrub_answers, authenticate(token)], client_max_size=MAX_BODY
    )
    install(app, services)
    app[METRICS] = metrics or MetricsExporter(MetricsView(services))
    scopes: dict[tuple[str, str], Scope] = {}
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
        scopes[route.path, route.method] = route.scope
    app[SCOPES] = scopes
    return app


class ApiServer:
    """Serves :func:`build_app` on ``host:port`` (port 0 picks a free port: see ``port``)."""

    def __init__(
        self,
        services: Services,
        token: Secret | None,
        host: str,
        port: int,
        metrics: MetricsExporter | None = None,
    ) -> None:
        self._runner = web.AppRunner(build_app(services, token, metrics), access_log=None)
        self._host = host
        self._port = port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the bound port when 0 was asked for
        log.info("api_listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
