"""``/api/v1/alerts/{fingerprint}/ack`` (POST, DELETE) and ``.../resolve`` (POST): operator
actions, write scope. Bodies are JSON objects; a bad one answers 400 with one line naming the
field, an unknown (or no longer active) fingerprint 404, an alert its check's run is committing 409,
a refused store write 503."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from opswatch.alerts.operator import Operator, Outcome, Result
from opswatch.api.requests import author_field, comment_field, json_object, known_fields
from opswatch.api.services import OPERATOR
from opswatch.codec import alert_to_json, transition_to_json
from opswatch.config import ConfigError, Env
from opswatch.model import Transition


async def ack(request: web.Request) -> web.Response:
    operator = operator_of(request)
    body = await json_object(request)
    known_fields(body, {"author", "comment", "expires_at", "duration", "sticky"})
    author, comment = author_field(body), comment_field(body)
    sticky = body.get("sticky", False)
    if not isinstance(sticky, bool):
        raise web.HTTPBadRequest(text="sticky: expected true or false")
    expires_at = _expiry(body, operator.now())
    result = await operator.ack(
        _fingerprint(request), author, comment=comment, expires_at=expires_at, sticky=sticky
    )
    return _answer(request, result)


async def unack(request: web.Request) -> web.Response:
    operator = operator_of(request)
    body = await json_object(request)
    known_fields(body, {"author", "comment"})
    author = author_field(body) if "author" in body else "api"
    result = await operator.unack(_fingerprint(request), author, comment=comment_field(body))
    return _answer(request, result)


async def resolve(request: web.Request) -> web.Response:
    operator = operator_of(request)
    body = await json_object(request)
    known_fields(body, {"author", "comment"})
    author, comment = author_field(body), comment_field(body)
    result = await operator.resolve(_fingerprint(request), author, comment=comment)
    return _answer(request, result)


def operator_of(request: web.Request) -> Operator:
    operator = request.app[OPERATOR]
    if operator is None:
        raise web.HTTPServiceUnavailable(text="operator actions are not available")
    return operator


def _fingerprint(request: web.Request) -> str:
    return request.match_info["fingerprint"]


def done(result: Result, fingerprint: str) -> Transition:
    """The transition of a done action; the refusal (404, 409, 503) of any other outcome."""
    if result.outcome is Outcome.UNKNOWN:
        raise web.HTTPNotFound(text=f"no active alert with fingerprint {fingerprint}")
    if result.outcome is Outcome.BUSY:
        raise web.HTTPConflict(text="the alert is being updated by its check's run; try again")
    if result.outcome is Outcome.NOT_STORED or result.transition is None:
        raise web.HTTPServiceUnavailable(text="the state store refused the change; try again")
    return result.transition


def _answer(request: web.Request, result: Result) -> web.Response:
    transition = done(result, _fingerprint(request))
    return web.json_response(
        {"alert": alert_to_json(transition.alert), "transition": transition_to_json(transition)}
    )


def _expiry(body: dict[str, Any], now: datetime) -> datetime | None:
    raw_at, raw_duration = body.get("expires_at"), body.get("duration")
    if raw_at is not None and raw_duration is not None:
        raise web.HTTPBadRequest(text="expires_at, duration: give one of them, not both")
    if raw_at is not None:
        if not isinstance(raw_at, str):
            raise web.HTTPBadRequest(text="expires_at: expected an ISO 8601 time")
        try:
            at = datetime.fromisoformat(raw_at)
        except ValueError:
            raise web.HTTPBadRequest(text="expires_at: expected an ISO 8601 time") from None
        if at.tzinfo is None:
            raise web.HTTPBadRequest(text="expires_at: expected a time with its UTC offset")
        if at <= now:
            raise web.HTTPBadRequest(text="expires_at: expected a time in the future")
        return at
    if raw_duration is None:
        return None
    if isinstance(raw_duration, bool) or not isinstance(raw_duration, (str, int, float)):
        raise web.HTTPBadRequest(text="duration: expected a duration such as 30m or 2h")
    try:
        seconds = Env({"duration": str(raw_duration)}).duration("duration", 0.0, minimum=1.0)
    except ConfigError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return now + timedelta(seconds=seconds)
