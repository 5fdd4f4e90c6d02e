"""Every error the API answers is one JSON shape, the ``Error`` schema of
:data:`opswatch.codec.SCHEMAS`::

    {"error": {"status": 404, "code": "not_found", "message": "no silence 'x'"}}

``status`` repeats the HTTP status, ``code`` is its stable name (:data:`CODES`) and ``message``
one line for people. Handlers raise aiohttp's ``HTTPException`` subclasses with a text as
before; :func:`json_errors` (a middleware) turns each one, aiohttp's own (an unknown path 404,
a wrong method 405, a body over the limit 413), a failing state store (503, ``api_store_failed``:
the caller may try again) and any other exception (500, logged without its frame locals) into
that shape. Success answers pass through untouched.
"""

from __future__ import annotations

import json
import sqlite3
from http import HTTPStatus

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from opswatch.codec import JSON
from opswatch.ports import StoreError

log = structlog.get_logger("opswatch.api")

#: the stable ``code`` of each error status the API answers (others: the status's name)
CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
    503: "unavailable",
}


def code(status: int) -> str:
    if status in CODES:
        return CODES[status]
    try:
        return HTTPStatus(status).name.lower()
    except ValueError:
        return f"http_{status}"


def error_json(status: int, message: str) -> JSON:
    return {"error": {"status": status, "code": code(status), "message": message}}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(error_json(status, message), status=status, headers=headers)


def message_of(body: bytes, fallback: str) -> str:
    """The ``message`` of an error body (for the CLI), or its first line, or ``fallback``."""
    text = body.decode(errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = data["error"].get("message")
        if isinstance(message, str) and message:
            return message
    lines = text.splitlines()
    return lines[0] if lines else fallback


#: the headers of an HTTPException worth keeping on the JSON answer
_KEPT_HEADERS = ("WWW-Authenticate", "Allow", "Retry-After")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise  # redirects and the like are not errors
        return _from_http(error)
    except Exception as exc:  # the API's boundary: a bug answers 500, the daemon goes on
        if _store_failure(exc):  # an outage, not a bug: the caller may try again
            log.warning(
                "api_store_failed",
                method=request.method,
                path=request.path,
                error=f"{type(exc).__name__}: {exc}",
            )
            return error_response(503, "the state store did not answer; try again")
        log.exception("api_handler_failed", method=request.method, path=request.path)
        return error_response(500, "internal error: see the daemon's log")
    return response


def _store_failure(exc: Exception) -> bool:
    """Whether ``exc`` is the state store failing (SQLite, PostgreSQL through asyncpg, the
    network under it), told by its type so that asyncpg need not be imported here."""
    if isinstance(exc, StoreError | sqlite3.Error | OSError | TimeoutError):
        return True
    return type(exc).__module__.split(".", 1)[0] == "asyncpg"


def _from_http(error: web.HTTPException) -> web.Response:
    message = (error.text or "").strip() or error.reason
    if message.startswith(f"{error.status}: "):  # aiohttp's own texts: "404: Not Found"
        message = message.removeprefix(f"{error.status}: ")
    headers = {k: error.headers[k] for k in _KEPT_HEADERS if k in error.headers}
    return error_response(error.status, " ".join(message.split()), headers)
