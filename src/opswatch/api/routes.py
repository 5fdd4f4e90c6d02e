"""HTTP handlers. They read the daemon through :class:`ApiSource`, never its internals."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from opswatch.codec import alert_to_json, transition_to_json
from opswatch.config import Secret
from opswatch.model import Alert, RecoveryResult, Sample, Transition


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """The last run of one check, for ``/status``."""

    check: str
    finished_at: datetime
    duration_s: float
    error: str | None
    samples: Sequence[Sample]


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    reason: str
    started_at: datetime
    last_run_at: datetime | None


class ApiSource(Protocol):
    def health(self) -> Health: ...

    def check_statuses(self) -> Mapping[str, CheckStatus]: ...

    def active_alerts(self) -> list[Alert]: ...

    async def alert_history(self, limit: int) -> list[Transition]: ...

    async def outbox_counts(self) -> Mapping[str, int]: ...

    # recovery (README: Recovery)

    def api_token(self) -> Secret | None: ...

    async def recovery_actions(self) -> dict[str, Any]: ...

    async def recovery_history(self, limit: int) -> list[RecoveryResult]: ...

    async def alert_evidence(self, fingerprint: str) -> list[dict[str, Any]]: ...

    async def run_recovery(
        self, binding_id: str, target: str | None, *, dry_run: bool
    ) -> RecoveryResult | None: ...


SOURCE: web.AppKey[ApiSource] = web.AppKey("source")


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def healthz(request: web.Request) -> web.Response:
    health = request.app[SOURCE].health()
    body = {
        "status": "ok" if health.healthy else "unhealthy",
        "reason": health.reason,
        "started_at": _time(health.started_at),
        "last_run_at": _time(health.last_run_at),
    }
    return web.json_response(body, status=200 if health.healthy else 503)


def _sample_json(sample: Sample) -> dict[str, Any]:
    return {
        "metric": sample.metric,
        "value": sample.value,
        "labels": dict(sample.labels),
        "at": sample.at.isoformat(),
    }


async def status(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    checks = {
        name: {
            "finished_at": _time(check.finished_at),
            "duration_ms": round(check.duration_s * 1000, 3),
            "error": check.error,
            "samples": [_sample_json(s) for s in check.samples],
        }
        for name, check in sorted(source.check_statuses().items())
    }
    alerts = source.active_alerts()
    counts = await source.outbox_counts()
    outbox = {state: counts.get(state, 0) for state in ("pending", "failed")}
    return web.json_response({"checks": checks, "active_alerts": len(alerts), "outbox": outbox})


async def alerts(request: web.Request) -> web.Response:
    active = request.app[SOURCE].active_alerts()
    return web.json_response({"alerts": [alert_to_json(a) for a in active]})


async def alert_history(request: web.Request) -> web.Response:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise web.HTTPBadRequest(text="limit: expected a whole number from 1 to 1000")
    history = await request.app[SOURCE].alert_history(int(raw))
    return web.json_response({"transitions": [transition_to_json(t) for t in history]})


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise web.HTTPBadRequest(text="limit: expected a whole number from 1 to 1000")
    return int(raw)


def recovery_result_json(result: RecoveryResult) -> dict[str, Any]:
    return {
        "action": result.action,
        "key": result.key,
        "rule": result.rule,
        "target": result.target,
        "fingerprint": result.fingerprint,
        "outcome": result.outcome.value,
        "attempts": result.attempts,
        "trial": result.trial,
        "duration_s": round(result.duration_s, 3),
        "detail": result.detail,
        "at": result.at.isoformat(),
    }


async def recovery_actions(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SOURCE].recovery_actions())


async def recovery_history(request: web.Request) -> web.Response:
    results = await request.app[SOURCE].recovery_history(_limit(request))
    return web.json_response({"runs": [recovery_result_json(r) for r in results]})


async def alert_evidence(request: web.Request) -> web.Response:
    fingerprint = request.match_info["fingerprint"]
    return web.json_response({"evidence": await request.app[SOURCE].alert_evidence(fingerprint)})


def _authorize(request: web.Request) -> None:
    """Bearer ``OPSWATCH_API_TOKEN`` (constant-time compare): 404 when no token is set (the
    endpoint does not exist), 401 without credentials, 403 with wrong ones."""
    token = request.app[SOURCE].api_token()
    if token is None:
        raise web.HTTPNotFound(text="not found: set OPSWATCH_API_TOKEN to enable this endpoint")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise web.HTTPUnauthorized(
            text="a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(given.strip().encode(), token.reveal().encode()):
        raise web.HTTPForbidden(text="wrong token")


async def run_recovery(request: web.Request) -> web.Response:
    """``POST /api/v1/recovery/{action}/run``, ``{action}`` a binding id (``http_down`` or
    ``http_down:api``); optional JSON body ``{"target": "api", "dry_run": true}``."""
    _authorize(request)
    body: Any = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="expected a JSON object") from None
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='expected {"target": "<name>", "dry_run": false}')
    target, dry_run = body.get("target"), body.get("dry_run", False)
    if not (target is None or isinstance(target, str)):
        raise web.HTTPBadRequest(text="target: expected a string")
    if not isinstance(dry_run, bool):
        raise web.HTTPBadRequest(text="dry_run: expected true or false")
    result = await request.app[SOURCE].run_recovery(
        request.match_info["action"], target, dry_run=dry_run
    )
    if result is None:
        raise web.HTTPNotFound(text=f"no recovery binding {request.match_info['action']!r}")
    return web.json_response(recovery_result_json(result))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/status", status)
    app.router.add_get("/api/v1/alerts", alerts)
    app.router.add_get("/api/v1/alerts/history", alert_history)
    app.router.add_get("/api/v1/alerts/{fingerprint}/evidence", alert_evidence)
    app.router.add_get("/api/v1/recovery/actions", recovery_actions)
    app.router.add_get("/api/v1/recovery/history", recovery_history)
    app.router.add_post("/api/v1/recovery/{action}/run", run_recovery)
