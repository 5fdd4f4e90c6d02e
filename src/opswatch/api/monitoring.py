"""``/api/v1/monitoring``: what is paused (GET), pause and resume (POST ``/pause``,
``/resume``, write scope). Bodies: ``{"checks": ["http:api"], "author": "ana", "comment":
"deploy"}`` (no ``checks``: every check). A bad body answers 400 naming the field; resuming
some checks while every check is paused answers 409."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from opswatch.alerts.pause import PausedEverywhereError, PauseError, Pauses
from opswatch.api.requests import author_field, comment_field, json_object, known_fields, limit
from opswatch.api.services import PAUSES
from opswatch.codec import JSON, pause_event_to_json, pause_to_json

#: audit events in the answer by default
EVENTS = 20


async def state(request: web.Request) -> web.Response:
    pauses = _pauses(request)
    return web.json_response(await _state(pauses, limit(request, default=EVENTS)))


async def pause(request: web.Request) -> web.Response:
    return await _change(request, resume=False)


async def resume(request: web.Request) -> web.Response:
    return await _change(request, resume=True)


def paused(pauses: Pauses | None) -> list[JSON]:
    """The pauses in force as JSON (``/status``, ``/healthz``)."""
    return [] if pauses is None else [pause_to_json(p) for p in pauses.muter.pauses()]


async def _state(pauses: Pauses, events: int) -> JSON:
    in_force = pauses.muter.pauses()
    return {
        "paused_all": any(p.check is None for p in in_force),
        "pauses": [pause_to_json(p) for p in in_force],
        "events": [pause_event_to_json(e) for e in await pauses.events(events)],
    }


async def _change(request: web.Request, *, resume: bool) -> web.Response:
    pauses = _pauses(request)
    body = await json_object(request)
    known_fields(body, {"checks", "author", "comment"})
    checks, author, comment = _checks(body), author_field(body), comment_field(body)
    act = pauses.resume if resume else pauses.pause
    try:
        await act(checks, by=author, comment=comment)
    except PausedEverywhereError as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    except PauseError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response(await _state(pauses, EVENTS))


def _pauses(request: web.Request) -> Pauses:
    pauses = request.app[PAUSES]
    if pauses is None:
        raise web.HTTPServiceUnavailable(text="pause and resume are not available")
    return pauses


def _checks(body: dict[str, Any]) -> list[str]:
    checks = body.get("checks", [])
    if checks is None:
        return []
    if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
        raise web.HTTPBadRequest(text="checks: expected a list of check names")
    return checks
