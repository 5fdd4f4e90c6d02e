"""``GET /api/v1/heartbeats`` and ``GET /api/v1/heartbeats/{name}``: each heartbeat's
schedule, its verdict now, its last pings (with durations, exit statuses and outputs) and
its active alerts."""

from __future__ import annotations

from aiohttp import web

from opswatch.api.requests import limit
from opswatch.api.services import ALERTS, HEARTBEATS
from opswatch.codec import (
    BOOLEAN,
    JSON,
    NULLABLE_TIME,
    NUMBER,
    SCHEMAS,
    STRING,
    TIME,
    alert_to_json,
    array,
    obj,
    ping_to_json,
    ref,
)
from opswatch.collectors.heartbeat import (
    HeartbeatCheck,
    HeartbeatDesk,
    HeartbeatStatus,
    PingStoreError,
)
from opswatch.model import Ping

#: what a heartbeat's last ping of a kind is: the ping, or null
_LAST: JSON = {"oneOf": [ref("Ping"), {"type": "null"}]}

# declared by hand: ``shape()`` takes its name as the keyword ``name``
SCHEMAS["Heartbeat"] = obj(
    name=STRING,
    check=STRING,
    schedule=STRING,
    grace=STRING,
    status={"enum": [s.value for s in HeartbeatStatus]},
    reason=STRING,
    due_at=TIME,
    deadline=TIME,
    overdue_s=NUMBER,
    failed=BOOLEAN,
    running_since=NULLABLE_TIME,
    last_success=_LAST,
    last_fail=_LAST,
    last_start=_LAST,
    alerts=array(ref("Alert")),
)


async def listed(request: web.Request) -> web.Response:
    checks = list(_desk(request).checks().values())
    try:
        return web.json_response({"heartbeats": [await _answer(request, c) for c in checks]})
    except PingStoreError as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None


async def one(request: web.Request) -> web.Response:
    """One heartbeat and its newest pings (``?limit=``, at most the 100 kept)."""
    desk = _desk(request)
    name = request.match_info["name"]
    check = desk.checks().get(name)
    if check is None:
        raise web.HTTPNotFound(text=f"no heartbeat {name!r}")
    try:
        pings = await desk.pings(name, limit(request, maximum=100))
        answer = await _answer(request, check)
    except PingStoreError as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None
    return web.json_response({**answer, "pings": [ping_to_json(p) for p in pings]})


def _desk(request: web.Request) -> HeartbeatDesk:
    desk = request.app[HEARTBEATS]
    if desk is None:
        raise web.HTTPNotFound(text="no heartbeat is configured")
    return desk


async def _answer(request: web.Request, check: HeartbeatCheck) -> JSON:
    verdict = await _desk(request).verdict(check)
    heartbeat = check.heartbeat
    alerts = [a for a in request.app[ALERTS].active() if a.check == check.check]
    return {
        "name": heartbeat.name,
        "check": check.check,
        "schedule": heartbeat.schedule.text,
        "grace": heartbeat.grace_text,
        "status": verdict.status.value,
        "reason": verdict.reason,
        "due_at": verdict.due_at.isoformat(),
        "deadline": verdict.deadline.isoformat(),
        "overdue_s": round(verdict.overdue_s, 3),
        "failed": verdict.failed,
        "running_since": None if verdict.running is None else verdict.running.at.isoformat(),
        "last_success": _last(verdict.last_success),
        "last_fail": _last(verdict.last_fail),
        "last_start": _last(verdict.last_start),
        "alerts": [alert_to_json(a) for a in alerts],
    }


def _last(ping: Ping | None) -> JSON | None:
    return None if ping is None else ping_to_json(ping)
