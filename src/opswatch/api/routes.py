"""HTTP handlers. They read the daemon through :class:`ApiSource`, never its internals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from opswatch.codec import alert_to_json, transition_to_json
from opswatch.model import Alert, Sample, Transition


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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/status", status)
    app.router.add_get("/api/v1/alerts", alerts)
    app.router.add_get("/api/v1/alerts/history", alert_history)
