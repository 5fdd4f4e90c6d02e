"""``/healthz`` and ``/status``: the daemon's health and the last run of each check, and what
is paused (by whom, since when)."""

from __future__ import annotations

from aiohttp import web

from opswatch.api.monitoring import paused
from opswatch.api.services import ALERTS, CHECKS, PAUSES, STORE
from opswatch.codec import check_status_to_json, health_to_json


async def healthz(request: web.Request) -> web.Response:
    health = request.app[CHECKS].health()
    body = {**health_to_json(health), "paused": paused(request.app[PAUSES])}
    return web.json_response(body, status=200 if health.healthy else 503)


async def status(request: web.Request) -> web.Response:
    statuses = request.app[CHECKS].statuses()
    checks = {name: check_status_to_json(s) for name, s in sorted(statuses.items())}
    alerts = request.app[ALERTS].active()
    counts = await request.app[STORE].outbox_counts()
    outbox = {state: counts.get(state, 0) for state in ("pending", "failed")}
    return web.json_response(
        {
            "checks": checks,
            "active_alerts": len(alerts),
            "outbox": outbox,
            "paused": paused(request.app[PAUSES]),
        }
    )
