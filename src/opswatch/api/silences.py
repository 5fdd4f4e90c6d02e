"""``/api/v1/silences``: list, create (``?dry_run=1``: the active alerts it would match),
change and expire silences."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from opswatch.alerts.silences import (
    SilenceError,
    Silences,
    matches_all,
    state,
)
from opswatch.api.requests import json_object, matchers_field, text_field, time_field
from opswatch.api.services import ALERTS, SILENCES
from opswatch.codec import JSON, alert_to_json, silence_to_json
from opswatch.model import Silence


def _answer(silence: Silence, now: datetime) -> JSON:
    return {**silence_to_json(silence), "state": state(silence, now).value}


async def listed(request: web.Request) -> web.Response:
    silences = request.app[SILENCES]
    now = silences.now()
    return web.json_response({"silences": [_answer(s, now) for s in silences.muter.listed(now)]})


async def create(request: web.Request) -> web.Response:
    """Body: ``{"matchers": ["check=~postgres:.*"], "ends_at": ISO, "created_by": "ana",
    "comment": "...", "starts_at": ISO (default now)}``."""
    body = await json_object(request)
    silences = request.app[SILENCES]
    matchers = matchers_field(body.get("matchers"))
    ends_at = time_field(body.get("ends_at"), "ends_at")
    starts_at = time_field(body.get("starts_at"), "starts_at")
    created_by = text_field(body.get("created_by"), "created_by")
    comment = text_field(body.get("comment"), "comment")
    if ends_at is None:
        raise web.HTTPBadRequest(text="ends_at: required")
    if _dry_run(request):
        hit = [a for a in request.app[ALERTS].active() if matches_all(matchers, a)]
        return web.json_response({"dry_run": True, "alerts": [alert_to_json(a) for a in hit]})
    try:
        silence = await silences.create(matchers, ends_at, created_by, comment, starts_at)
    except SilenceError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response(_answer(silence, silences.now()), status=201)


async def update(request: web.Request) -> web.Response:
    """Body: any of ``{"ends_at": ISO, "comment": "...", "matchers": [...], "by": "ana"}``."""
    body = await json_object(request)
    silences = request.app[SILENCES]
    silence = await _found(silences, request)
    matchers = None if body.get("matchers") is None else matchers_field(body["matchers"])
    comment = None if body.get("comment") is None else text_field(body["comment"], "comment")
    ends_at = None if body.get("ends_at") is None else time_field(body["ends_at"], "ends_at")
    by = "api" if body.get("by") is None else text_field(body["by"], "by")
    try:
        changed = await silences.update(
            silence, by=by, ends_at=ends_at, comment=comment, matchers=matchers
        )
    except SilenceError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response(_answer(changed, silences.now()))


async def expire(request: web.Request) -> web.Response:
    """Ends the silence now; ``?by=ana`` names who (default ``api``)."""
    silences = request.app[SILENCES]
    silence = await _found(silences, request)
    ended = await silences.expire(silence, by=request.query.get("by", "api"))
    return web.json_response(_answer(ended, silences.now()))


async def _found(silences: Silences, request: web.Request) -> Silence:
    """The silence ``{id}`` (looked up in the store too: another replica may have made it)."""
    silence_id = request.match_info["id"]
    silence = silences.muter.get(silence_id)
    if silence is None:
        await silences.load()
        silence = silences.muter.get(silence_id)
    if silence is None:
        raise web.HTTPNotFound(text=f"no silence {silence_id!r}")
    return silence


def _dry_run(request: web.Request) -> bool:
    raw = request.query.get("dry_run", "0").lower()
    if raw not in ("0", "1", "true", "false"):
        raise web.HTTPBadRequest(text="dry_run: expected 1 or 0")
    return raw in ("1", "true")
