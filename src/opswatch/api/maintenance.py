"""``/api/v1/maintenance``: the maintenance windows (recurring ones from the configuration,
one-off ones made here) with their next occurrences; one-off windows created and deleted."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from opswatch.alerts.maintenance import (
    Maintenance,
    MaintenanceError,
    RecurringWindow,
    Span,
    one_off_open,
)
from opswatch.api.requests import json_object, matchers_field, text_field, time_field
from opswatch.api.services import MAINTENANCE
from opswatch.codec import (
    BOOLEAN,
    JSON,
    NULLABLE_STRING,
    NUMBER,
    SCHEMAS,
    STRING,
    TIME,
    array,
    obj,
)
from opswatch.model import MaintenanceWindow

#: how many next occurrences a recurring window lists by default (``?next=``, at most 50)
NEXT = 3
MAX_NEXT = 50

# ``shape()`` takes its name as ``name``: this shape has a property of that name
SCHEMAS["MaintenanceWindow"] = obj(
    id=NULLABLE_STRING,
    name=STRING,
    kind={"enum": ["recurring", "one-off"]},
    matchers=array(STRING),
    cron=NULLABLE_STRING,
    duration_s=NUMBER,
    tz=NULLABLE_STRING,
    open=BOOLEAN,
    next=array(obj(starts_at=TIME, ends_at=TIME)),
    created_by=NULLABLE_STRING,
    comment=NULLABLE_STRING,
)


def _spans(spans: list[Span]) -> list[JSON]:
    return [{"starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat()} for s in spans]


def recurring_to_json(window: RecurringWindow, now: datetime, count: int) -> JSON:
    spans = window.next_spans(now, count)
    return {
        "id": None,
        "name": window.name,
        "kind": "recurring",
        "matchers": [m.text for m in window.matchers],
        "cron": window.cron,
        "duration_s": window.duration.total_seconds(),
        "tz": window.tz.key,
        "open": bool(spans) and spans[0].starts_at <= now,
        "next": _spans(spans),
        "created_by": None,
        "comment": None,
    }


def one_off_to_json(window: MaintenanceWindow, now: datetime) -> JSON:
    return {
        "id": window.id,
        "name": window.name,
        "kind": "one-off",
        "matchers": [m.text for m in window.matchers],
        "cron": None,
        "duration_s": (window.ends_at - window.starts_at).total_seconds(),
        "tz": None,
        "open": one_off_open(window, now),
        "next": _spans([Span(window.starts_at, window.ends_at)]),
        "created_by": window.created_by,
        "comment": window.comment,
    }


async def listed(request: web.Request) -> web.Response:
    """``?next=N``: how many next occurrences of each recurring window (default 3)."""
    maintenance = _maintenance(request)
    raw = request.query.get("next", str(NEXT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_NEXT:
        raise web.HTTPBadRequest(text=f"next: expected a whole number from 1 to {MAX_NEXT}")
    now = maintenance.now()
    windows = [recurring_to_json(w, now, int(raw)) for w in maintenance.muter.recurring]
    windows += [one_off_to_json(w, now) for w in maintenance.muter.one_off(now)]
    return web.json_response({"windows": windows})


async def create(request: web.Request) -> web.Response:
    """Body: ``{"name": "db-upgrade", "matchers": ["check=~postgres:.*"], "ends_at": ISO,
    "created_by": "ana", "comment": "...", "starts_at": ISO (default now)}``."""
    body = await json_object(request)
    maintenance = _maintenance(request)
    name = text_field(body.get("name"), "name")
    matchers = matchers_field(body.get("matchers"))
    starts_at = time_field(body.get("starts_at"), "starts_at")
    ends_at = time_field(body.get("ends_at"), "ends_at")
    created_by = text_field(body.get("created_by"), "created_by")
    comment = text_field(body.get("comment"), "comment")
    if ends_at is None:
        raise web.HTTPBadRequest(text="ends_at: required")
    try:
        window = await maintenance.create(
            name, matchers, ends_at, created_by=created_by, comment=comment, starts_at=starts_at
        )
    except MaintenanceError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response(one_off_to_json(window, maintenance.now()), status=201)


async def delete(request: web.Request) -> web.Response:
    """Deletes a one-off window (an open one ends now); ``?by=ana`` names who (default
    ``api``)."""
    maintenance = _maintenance(request)
    window_id = request.match_info["id"]
    window = maintenance.muter.get(window_id)
    if window is None:  # another replica may have made it
        await maintenance.load()
        window = maintenance.muter.get(window_id)
    if window is None:
        raise web.HTTPNotFound(text=f"no one-off maintenance window {window_id!r}")
    await maintenance.delete(window, by=request.query.get("by", "api"))
    return web.json_response(one_off_to_json(window, maintenance.now()))


def _maintenance(request: web.Request) -> Maintenance:
    maintenance = request.app[MAINTENANCE]
    if maintenance is None:
        raise web.HTTPServiceUnavailable(text="maintenance windows are not available")
    return maintenance
