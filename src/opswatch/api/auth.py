"""Who may call what: one middleware, two scopes.

Every route of the table (:data:`opswatch.api.app.ROUTES`) has a scope. ``read`` routes
answer anyone who can reach the listener. ``write`` routes (acting on the daemon) need the
bearer ``OPSWATCH_API_TOKEN`` (compared in constant time): without a configured token they do
not exist (404), without credentials they answer 401, with wrong ones 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from enum import StrEnum

from aiohttp import web
from aiohttp.typedefs import Middleware

from opswatch.config import Secret

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    #: a heartbeat's ping: its handler checks the heartbeat's key or the write token
    #: (:mod:`opswatch.api.pings`); this middleware lets it through
    PING = "ping"


#: the scope of each route, set by the route table (``route.resource.canonical``, method)
SCOPES: web.AppKey[dict[tuple[str, str], Scope]] = web.AppKey("scopes")


def authenticate(token: Secret | None) -> Middleware:
    """The middleware guarding the ``write`` scope with ``token``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        key = (resource.canonical if resource is not None else "", request.method)
        if request.app[SCOPES].get(key, Scope.READ) is Scope.WRITE:
            _authorize(request, token)
        return await handler(request)

    return middleware


def _authorize(request: web.Request, token: Secret | None) -> None:
    if token is None:
        raise web.HTTPNotFound(text="not found: set OPSWATCH_API_TOKEN to enable this endpoint")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise web.HTTPUnauthorized(
            text="a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(given.strip().encode(), token.reveal().encode()):
        raise web.HTTPForbidden(text="wrong token")
