"""``POST /ping/{name}`` (also ``/start``, ``/fail`` and ``/{exit_status}``): a job's
heartbeat, like healthchecks.io's.

Authenticated here, not by the scope middleware: by the heartbeat's key in ``?key=`` (the
variable ``OPSWATCH_HEARTBEAT_<NAME>_KEY``) or by ``Authorization: Bearer`` with the write
token, both compared in constant time. No credentials: 401; wrong ones: 403; an unknown
heartbeat: 404; nothing is recorded then. The body is the job's output: its first 10 KiB are
kept (``truncated`` says when more came); a body over 64 KiB is refused (413). The key is
never logged or answered.
"""

from __future__ import annotations

import hmac

import structlog
from aiohttp import web

from opswatch.api.services import HEARTBEATS
from opswatch.codec import ping_to_json
from opswatch.collectors.heartbeat import Heartbeat, PingStoreError
from opswatch.config import Secret
from opswatch.model import PingKind

log = structlog.get_logger("opswatch.api")

#: the write token (``OPSWATCH_API_TOKEN``), which authenticates every heartbeat's pings
TOKEN: web.AppKey[Secret | None] = web.AppKey("ping_token")

#: the largest exit status a process can return
MAX_EXIT_STATUS = 255


async def success(request: web.Request) -> web.Response:
    return await _ping(request, PingKind.SUCCESS, None)


async def start(request: web.Request) -> web.Response:
    return await _ping(request, PingKind.START, None)


async def fail(request: web.Request) -> web.Response:
    return await _ping(request, PingKind.FAIL, None)


async def exit_status(request: web.Request) -> web.Response:
    """``/ping/{name}/0`` is a success, any other status a failure."""
    raw = request.match_info["exit_status"]
    if not raw.isdigit() or int(raw) > MAX_EXIT_STATUS:
        raise web.HTTPBadRequest(
            text=f"exit_status: expected start, fail or a number from 0 to {MAX_EXIT_STATUS}"
        )
    status = int(raw)
    return await _ping(request, PingKind.SUCCESS if status == 0 else PingKind.FAIL, status)


async def _ping(request: web.Request, kind: PingKind, status: int | None) -> web.Response:
    desk = request.app[HEARTBEATS]
    name = request.match_info["name"]
    check = None if desk is None else desk.checks().get(name)
    # credentials first: only the write token learns whether a heartbeat name exists
    by = _authorize(request, name, None if check is None else check.heartbeat, request.app[TOKEN])
    if desk is None or check is None:
        raise web.HTTPNotFound(text=f"no heartbeat {name!r}")
    body = await request.read()
    try:
        ping = await desk.ping(check.heartbeat, kind, status, body)
    except PingStoreError as exc:
        raise web.HTTPServiceUnavailable(text=f"{exc}: the ping was not recorded") from None
    log.info(
        "heartbeat_pinged",
        heartbeat=name,
        kind=kind.value,
        exit_status=status,
        output_bytes=len(body),
        by=by,
    )
    return web.json_response(ping_to_json(ping))


def _authorize(
    request: web.Request, name: str, heartbeat: Heartbeat | None, token: Secret | None
) -> str:
    """How the ping to heartbeat ``name`` (``None``: no such heartbeat) is authenticated
    (``key`` or ``token``); raises 401 or 403, for an unknown name as for a wrong key."""
    key = request.query.get("key")
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    if key is not None:
        if heartbeat is not None and heartbeat.key is not None and _same(key, heartbeat.key):
            return "key"
        raise web.HTTPForbidden(text=f"wrong key for heartbeat {name!r}")
    if scheme.lower() == "bearer" and bearer.strip():
        if token is not None and _same(bearer.strip(), token):
            return "token"
        raise web.HTTPForbidden(text="wrong token")
    raise web.HTTPUnauthorized(
        text="the heartbeat's key (?key=) or the bearer write token is required",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _same(given: str, secret: Secret) -> bool:
    return hmac.compare_digest(given.encode(), secret.reveal().encode())
