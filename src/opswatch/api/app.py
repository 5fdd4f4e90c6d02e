"""The aiohttp application: one declarative route table, the services behind AppKeys, one
authentication middleware, and its listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from opswatch.api import alerts, capacity, checks, openapi, operator, recovery, silences
from opswatch.api.auth import SCOPES, Scope, authenticate
from opswatch.api.charts import SVG, chart_handler
from opswatch.api.metrics import METRICS, MetricsExporter, metrics_handler
from opswatch.api.openapi import DOCUMENT, Param, document
from opswatch.api.pages import PAGE, PageCache, page_handler
from opswatch.api.requests import MAX_BODY
from opswatch.api.scrub import scrub_answers
from opswatch.api.services import MetricsView, Services, install
from opswatch.codec import BOOLEAN, INTEGER, JSON, NUMBER, STRING, STRING_MAP, TIME, array, obj, ref
from opswatch.config import Secret

log = structlog.get_logger("opswatch.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint. Everything after ``summary`` only describes it (in the OpenAPI document,
    :mod:`opswatch.api.openapi`) and may be left out."""

    method: str
    path: str
    handler: Handler
    scope: Scope
    summary: str
    #: its query parameters
    query: tuple[Param, ...] = ()
    #: the JSON schema of its (optional) JSON object body; ``None``: it reads no body
    body: JSON | None = None
    #: the schema of its 200 answer (``codec.ref`` names an encoder's shape)
    answer: JSON | None = None
    answer_type: str = "application/json"
    #: other statuses answering the same shape, with what they mean
    also: tuple[tuple[int, str], ...] = ()
    #: its own error statuses (text), with what they mean (400/413 for a query or body and
    #: 401/403/404 for a write route are added by themselves)
    errors: tuple[tuple[int, str], ...] = ()


#: ``?limit=``: how many of the newest
LIMIT = Param(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    "how many, newest first",
)

#: the body of an operator action on an alert (ack adds its own fields)
_OPERATOR_BODY: JSON = {
    "type": "object",
    "properties": {"author": STRING, "comment": STRING},
    "required": ["author"],
    "additionalProperties": False,
}
_OPERATOR_ANSWER = obj(alert=ref("Alert"), transition=ref("Transition"))
_OPERATOR_ERRORS = (
    (409, "the alert's check run is committing a change to it; try again"),
    (503, "the state store refused the change; nothing changed"),
)

#: every endpoint, with its scope and what it answers (README: HTTP API)
ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/healthz",
        checks.healthz,
        Scope.READ,
        "200 healthy, 503 with the reason",
        answer=ref("Health"),
        also=((503, "unhealthy, with the reason"),),
    ),
    Route(
        "GET",
        "/status",
        checks.status,
        Scope.READ,
        "each check's last run; alert count",
        answer=obj(
            checks={"type": "object", "additionalProperties": ref("CheckStatus")},
            active_alerts=INTEGER,
            outbox=obj(pending=INTEGER, failed=INTEGER),
        ),
    ),
    Route(
        "GET",
        "/metrics",
        metrics_handler,
        Scope.READ,
        "Prometheus text exposition",
        answer=STRING,
        answer_type="text/plain",
    ),
    Route(
        "GET",
        "/api/v1/alerts",
        alerts.active,
        Scope.READ,
        "active alerts",
        answer=obj(alerts=array(ref("Alert"))),
    ),
    Route(
        "GET",
        "/api/v1/alerts/history",
        alerts.history,
        Scope.READ,
        "transitions",
        query=(LIMIT,),
        answer=obj(transitions=array(ref("Transition"))),
    ),
    Route(
        "GET",
        "/api/v1/alerts/{fingerprint}/evidence",
        alerts.evidence,
        Scope.READ,
        "snapshots taken when the alert fired",
        answer=obj(evidence=array({"type": "object"})),
    ),
    Route(
        "GET",
        "/api/v1/recovery/actions",
        recovery.actions,
        Scope.READ,
        "bindings, budgets",
        answer=obj(
            dry_run=BOOLEAN,
            notify=STRING,
            budget=STRING,
            host=obj(executions_last_hour=INTEGER, max_per_hour=INTEGER),
            bindings=array(
                {
                    "type": "object",
                    "description": "the binding's settings (its action's vary), and its budget",
                    "properties": {"id": STRING, "rule": STRING, "budget": ref("BudgetState")},
                    "required": ["id", "rule", "budget"],
                }
            ),
        ),
    ),
    Route(
        "GET",
        "/api/v1/recovery/history",
        recovery.history,
        Scope.READ,
        "recovery runs",
        query=(LIMIT,),
        answer=obj(runs=array(ref("RecoveryResult"))),
    ),
    Route(
        "POST",
        "/api/v1/alerts/{fingerprint}/ack",
        operator.ack,
        Scope.WRITE,
        "acknowledge an active alert (author, comment, expires_at or duration, sticky)",
        body=_OPERATOR_BODY
        | {
            "properties": {
                **_OPERATOR_BODY["properties"],
                "expires_at": {"type": "string", "format": "date-time"},
                "duration": {"type": ["string", "number"]},
                "sticky": BOOLEAN,
            }
        },
        answer=_OPERATOR_ANSWER,
        errors=_OPERATOR_ERRORS,
    ),
    Route(
        "DELETE",
        "/api/v1/alerts/{fingerprint}/ack",
        operator.unack,
        Scope.WRITE,
        "remove an alert's acknowledgement",
        body={**_OPERATOR_BODY, "required": []},
        answer=_OPERATOR_ANSWER,
        errors=_OPERATOR_ERRORS,
    ),
    Route(
        "POST",
        "/api/v1/alerts/{fingerprint}/resolve",
        operator.resolve,
        Scope.WRITE,
        "resolve an active alert by hand (author, comment)",
        body=_OPERATOR_BODY,
        answer=_OPERATOR_ANSWER,
        errors=_OPERATOR_ERRORS,
    ),
    Route(
        "POST",
        "/api/v1/recovery/{action}/run",
        recovery.run,
        Scope.WRITE,
        "run a binding's action now",
        body={
            "type": "object",
            "properties": {"target": STRING, "dry_run": BOOLEAN},
        },
        answer=ref("RecoveryResult"),
        errors=((404, "no such binding"),),
    ),
    Route(
        "GET",
        "/api/v1/openapi.json",
        openapi.handler,
        Scope.READ,
        "this document: OpenAPI 3.1, generated from the route table",
        answer={"type": "object"},
    ),
    Route("GET", "/api/v1/silences", silences.listed, Scope.READ, "active, pending, expired 24 h"),
    Route(
        "POST",
        "/api/v1/silences",
        silences.create,
        Scope.WRITE,
        "create a silence (?dry_run=1: the alerts it would match)",
    ),
    Route("PUT", "/api/v1/silences/{id}", silences.update, Scope.WRITE, "change end, comment"),
    Route("DELETE", "/api/v1/silences/{id}", silences.expire, Scope.WRITE, "expire now"),
    Route(
        "GET",
        "/api/v1/metrics/{check}",
        capacity.metrics,
        Scope.READ,
        "the metric history of a check: raw samples or 5-minute roll-ups",
        query=(
            Param("metric", STRING, "one metric (default: every metric of the check)"),
            Param("since", STRING, "how far back: 6h, 7d or an ISO 8601 time (default 1h)"),
            Param("step", STRING, "raw, or a multiple of 5m (default: raw up to 6h)"),
        ),
        answer=obj(
            check=STRING,
            since=TIME,
            step={"type": ["string", "integer"]},
            series=array(
                obj(
                    metric=STRING,
                    labels=STRING_MAP,
                    points=array(array(NUMBER)),
                )
            ),
        ),
        errors=((404, "history is off, or the check has no history"),),
    ),
    Route(
        "GET",
        "/api/v1/capacity",
        capacity.capacity,
        Scope.READ,
        "forecasts (when each resource with a rising trend reaches its limit) and advice",
        answer=obj(history=BOOLEAN, forecasts=array(ref("Forecast")), advice=array(ref("Advice"))),
    ),
    Route(
        "GET",
        "/",
        page_handler,
        Scope.READ,
        "the status page: checks with 90-day availability, alerts, incidents, sparklines",
        answer=STRING,
        answer_type="text/html",
    ),
    Route(
        "GET",
        "/charts/{check}/{metric}.svg",
        chart_handler,
        Scope.READ,
        "an SVG chart of every series of one metric of a check",
        query=(Param("since", STRING, "how far back: 6h, 7d or an ISO 8601 time (default 24h)"),),
        answer=STRING,
        answer_type=SVG,
        errors=((404, "history is off, or no such series"),),
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
    app[PAGE] = PageCache()
    scopes: dict[tuple[str, str], Scope] = {}
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
        scopes[route.path, route.method] = route.scope
    app[SCOPES] = scopes
    app[DOCUMENT] = document(ROUTES)
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
