"""The aiohttp application: one declarative route table, the services behind AppKeys, one
authentication middleware, and its listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from opswatch.alerts.silences import SilenceState
from opswatch.api import (
    acklink,
    alerts,
    capacity,
    checks,
    heartbeats,
    maintenance,
    monitoring,
    openapi,
    operator,
    pings,
    recovery,
    runbooks,
    silences,
)
from opswatch.api.auth import SCOPES, Access, Scope, authenticate
from opswatch.api.charts import SVG, chart_handler
from opswatch.api.errors import json_errors
from opswatch.api.metrics import METRICS, MetricsExporter, metrics_handler
from opswatch.api.openapi import DOCUMENT, Param, document
from opswatch.api.pages import PAGE, PageCache, page_handler
from opswatch.api.requests import MAX_BODY
from opswatch.api.scrub import scrub_answers
from opswatch.api.services import MetricsView, Services, install
from opswatch.codec import BOOLEAN, INTEGER, JSON, NUMBER, STRING, STRING_MAP, TIME, array, obj, ref

log = structlog.get_logger("opswatch.api")

#: what ``check-config`` and the start-up log say of a listener beyond loopback without tokens
PUBLIC_WITHOUT_TOKEN = (
    "the API listens beyond loopback without a token: it serves /healthz only; set "
    "OPSWATCH_API_READ_TOKEN (reads) or OPSWATCH_API_TOKEN (reads and writes) to serve the rest"
)

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
    #: its own error statuses, with what they mean (400/413 for a query or body, the
    #: refusals of its scope and 404 for a path with parameters are added by themselves)
    errors: tuple[tuple[int, str], ...] = ()

    @property
    def row(self) -> tuple[str, str, Scope]:
        """Method, path and scope: what :meth:`Access.describe` lists."""
        return self.method, self.path, self.scope


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

_HEARTBEAT_STORE_DOWN = (503, "the state store did not answer")
#: the statuses of a heartbeat's ping (its key or the token: the ``ping`` scope's security)
_PING_ERRORS = (
    (400, "an exit status that is not start, fail or 0-255"),
    (401, "neither a key nor a bearer token"),
    (403, "a wrong key or token (a key for an unknown heartbeat too)"),
    (404, "no such heartbeat (answered to the write token only)"),
    (413, "a body over 64 KiB"),
    (503, "the state store did not answer: the ping was not recorded"),
)
#: the body of a pause or resume
_MONITORING_BODY: JSON = {
    "type": "object",
    "properties": {"checks": array(STRING), "author": STRING, "comment": STRING},
    "required": ["author"],
    "additionalProperties": False,
}
_MONITORING_ANSWER = obj(
    paused_all=BOOLEAN, pauses=array(ref("Pause")), events=array(ref("PauseEvent"))
)
#: a silence as the API answers it: its encoding and its state now
_SILENCE: JSON = {
    "allOf": [
        ref("Silence"),
        {
            "type": "object",
            "properties": {"state": {"enum": [state.value for state in SilenceState]}},
            "required": ["state"],
        },
    ]
}

_RUNBOOK_ERRORS = (
    (404, "no enabled rule of that name"),
    (503, "the state store did not answer"),
)

_LINK_ERRORS = (
    (403, "a malformed, forged or expired link"),
    (410, "the alert episode of the link has ended"),
)

#: every endpoint, with its scope and what it answers (README: HTTP API)
ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/healthz",
        checks.healthz,
        Scope.OPEN,
        "200 healthy, 503 with the reason",
        answer={"allOf": [ref("Health"), obj(paused=array(ref("Pause")))]},
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
            paused=array(ref("Pause")),
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
    Route(
        "GET",
        "/api/v1/silences",
        silences.listed,
        Scope.READ,
        "active, pending, expired 24 h",
        answer=obj(silences=array(_SILENCE)),
    ),
    Route(
        "POST",
        "/api/v1/silences",
        silences.create,
        Scope.WRITE,
        "create a silence (?dry_run=1: the alerts it would match)",
        query=(
            Param(
                "dry_run",
                {"enum": ["0", "1", "true", "false"]},
                "1: create nothing, answer the active alerts it would match",
            ),
        ),
        body={
            "type": "object",
            "properties": {
                "matchers": {**array(STRING), "minItems": 1},
                "starts_at": TIME,
                "ends_at": TIME,
                "created_by": STRING,
                "comment": STRING,
            },
            "required": ["matchers", "ends_at", "created_by", "comment"],
        },
        answer={"oneOf": [obj(dry_run={"const": True}, alerts=array(ref("Alert"))), _SILENCE]},
        also=((201, "created"),),
    ),
    Route(
        "PUT",
        "/api/v1/silences/{id}",
        silences.update,
        Scope.WRITE,
        "change end, comment",
        body={
            "type": "object",
            "properties": {
                "matchers": {**array(STRING), "minItems": 1},
                "ends_at": TIME,
                "comment": STRING,
                "by": STRING,
            },
        },
        answer=_SILENCE,
        errors=((404, "no such silence"),),
    ),
    Route(
        "DELETE",
        "/api/v1/silences/{id}",
        silences.expire,
        Scope.WRITE,
        "expire now",
        query=(Param("by", STRING, "who expires it (default api)"),),
        answer=_SILENCE,
        errors=((404, "no such silence"),),
    ),
    Route(
        "GET",
        "/ack/{token}",
        acklink.confirm,
        Scope.LINK,
        "a notification's one-click ack link: a confirmation page with a button",
        answer=STRING,
        answer_type="text/html",
        errors=_LINK_ERRORS,
    ),
    Route(
        "POST",
        "/ack/{token}",
        acklink.acknowledge,
        Scope.LINK,
        "the button of that page: acknowledge the alert (author link), once",
        answer=STRING,
        answer_type="text/html",
        errors=_LINK_ERRORS + _OPERATOR_ERRORS,
    ),
    *(
        Route(
            "POST",
            path,
            handler,
            Scope.PING,
            f"a heartbeat's ping: {what} (body: the job's output, first 10 KiB kept)",
            answer=ref("Ping"),
            errors=_PING_ERRORS,
        )
        for path, handler, what in (
            ("/ping/{name}", pings.success, "the job succeeded"),
            ("/ping/{name}/start", pings.start, "the job starts"),
            ("/ping/{name}/fail", pings.fail, "the job failed"),
            ("/ping/{name}/{exit_status}", pings.exit_status, "the job ended, 0 is success"),
        )
    ),
    Route(
        "GET",
        "/api/v1/heartbeats",
        heartbeats.listed,
        Scope.READ,
        "each heartbeat: schedule, status, last pings, active alerts",
        answer=obj(heartbeats=array(ref("Heartbeat"))),
        errors=(_HEARTBEAT_STORE_DOWN,),
    ),
    Route(
        "GET",
        "/api/v1/heartbeats/{name}",
        heartbeats.one,
        Scope.READ,
        "one heartbeat and its newest pings",
        query=(LIMIT,),
        answer={
            "allOf": [ref("Heartbeat")],
            "properties": {"pings": array(ref("Ping"))},
            "required": ["pings"],
        },
        errors=((404, "no such heartbeat"), _HEARTBEAT_STORE_DOWN),
    ),
    Route(
        "GET",
        "/api/v1/monitoring",
        monitoring.state,
        Scope.READ,
        "what is paused, by whom, since when; the latest pause and resume events",
        query=(
            Param("limit", LIMIT.schema | {"default": monitoring.EVENTS}, "events, newest first"),
        ),
        answer=_MONITORING_ANSWER,
    ),
    Route(
        "POST",
        "/api/v1/monitoring/pause",
        monitoring.pause,
        Scope.WRITE,
        "pause notifications and recovery of the checks (none: every check); collection goes on",
        body=_MONITORING_BODY,
        answer=_MONITORING_ANSWER,
    ),
    Route(
        "POST",
        "/api/v1/monitoring/resume",
        monitoring.resume,
        Scope.WRITE,
        "resume the checks (none: every pause ends)",
        body=_MONITORING_BODY,
        answer=_MONITORING_ANSWER,
        errors=((409, "every check is paused: resume them all, then pause the others"),),
    ),
    Route(
        "GET",
        "/api/v1/runbooks",
        runbooks.listed,
        Scope.READ,
        "every enabled rule's runbook: what it means, whether it fires, its page",
        answer=obj(runbooks=array(ref("RunbookEntry"))),
        errors=((503, "the state store did not answer"),),
    ),
    Route(
        "GET",
        "/api/v1/runbooks/{rule}",
        runbooks.one,
        Scope.READ,
        "a rule's runbook from the configuration and the state: meaning, impact, diagnosis, "
        "mitigation",
        answer=ref("Runbook"),
        errors=_RUNBOOK_ERRORS,
    ),
    Route(
        "GET",
        "/runbooks/{rule}",
        runbooks.html_page,
        Scope.READ,
        "a rule's runbook as a self-contained HTML page (notifications link to it)",
        answer=STRING,
        answer_type="text/html",
        errors=_RUNBOOK_ERRORS,
    ),
    Route(
        "GET",
        "/api/v1/maintenance",
        maintenance.listed,
        Scope.READ,
        "maintenance windows (recurring and one-off) with their next occurrences",
        query=(
            Param(
                "next",
                {"type": "integer", "minimum": 1, "maximum": maintenance.MAX_NEXT, "default": 3},
                "how many next occurrences of each recurring window",
            ),
        ),
        answer=obj(windows=array(ref("MaintenanceWindow"))),
        errors=((503, "maintenance windows are not available"),),
    ),
    Route(
        "POST",
        "/api/v1/maintenance",
        maintenance.create,
        Scope.WRITE,
        "create a one-off maintenance window",
        body={
            "type": "object",
            "properties": {
                "name": STRING,
                "matchers": array(STRING),
                "starts_at": {"type": "string", "format": "date-time"},
                "ends_at": {"type": "string", "format": "date-time"},
                "created_by": STRING,
                "comment": STRING,
            },
            "required": ["name", "matchers", "ends_at", "created_by", "comment"],
        },
        answer=ref("MaintenanceWindow"),
        also=((201, "created"),),
        errors=((503, "maintenance windows are not available"),),
    ),
    Route(
        "DELETE",
        "/api/v1/maintenance/{id}",
        maintenance.delete,
        Scope.WRITE,
        "delete a one-off maintenance window (an open one ends now)",
        query=(Param("by", STRING, "who deletes it (default api)"),),
        answer=ref("MaintenanceWindow"),
        errors=((404, "no such one-off window"), (503, "maintenance windows are not available")),
    ),
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


def exposure(access: Access) -> dict[str, Any]:
    """What a listener with ``access`` serves to whom (``check-config``, the start-up log)."""
    described = access.describe(route.row for route in ROUTES)
    if access.public_without_token:
        described["warning"] = PUBLIC_WITHOUT_TOKEN
    return described


def build_app(
    services: Services, access: Access, metrics: MetricsExporter | None = None
) -> web.Application:
    app = web.Application(
        middlewares=[scrub_answers, json_errors, authenticate(access)], client_max_size=MAX_BODY
    )
    install(app, services)
    app[METRICS] = metrics or MetricsExporter(MetricsView(services))
    app[PAGE] = PageCache()
    scopes: dict[tuple[str, str], Scope] = {}
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
        scopes[route.path, route.method] = route.scope
    app[SCOPES] = scopes
    app[pings.TOKEN] = access.write_token
    app[DOCUMENT] = document(ROUTES)
    return app


class ApiServer:
    """Serves :func:`build_app` on ``host:port`` (port 0 picks a free port: see ``port``)."""

    def __init__(
        self,
        services: Services,
        access: Access,
        host: str,
        port: int,
        metrics: MetricsExporter | None = None,
    ) -> None:
        self._runner = web.AppRunner(build_app(services, access, metrics), access_log=None)
        self._access = access
        self._host = host
        self._port = port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the bound port when 0 was asked for
        log.info("api_listening", host=self._host, port=self.port)
        if self._access.public_without_token:
            log.warning(
                "api_public_without_token",
                host=self._host,
                port=self.port,
                served=exposure(self._access)["without_token"],
                hint=PUBLIC_WITHOUT_TOKEN,
            )

    async def stop(self) -> None:
        await self._runner.cleanup()
