"""Who may call what: one middleware, four scopes, decided by the tokens and the listener.

Every route of the table (:data:`opswatch.api.app.ROUTES`) has a scope:

* ``open`` (``/healthz``): anyone who reaches the listener, always (probes).
* ``read``: anyone while the listener is on a loopback address; bound anywhere else, the bearer
  ``OPSWATCH_API_READ_TOKEN`` or ``OPSWATCH_API_TOKEN`` (401 without one, 403 with a wrong one),
  or either as the password of HTTP Basic credentials (a browser on the status page).
  Bound elsewhere with neither token set, the read routes are not served (404): such a
  listener serves ``/healthz`` only (and the daemon logs ``api_public_without_token``).
* ``write`` (acting on the daemon): the bearer ``OPSWATCH_API_TOKEN``; without a configured
  token they do not exist (404), without credentials they answer 401, with others 403.
* ``link``: the path carries its own credential (a signed ack link, checked by its handler,
  which answers 404 while ack links are not configured: ``OPSWATCH_EXTERNAL_URL``).
* ``ping``: a heartbeat's ping, checked by its handler (:mod:`opswatch.api.pings`): the
  heartbeat's key in ``?key=`` or the write token; served on every listener once a heartbeat
  is configured (404 before).

Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import BasicAuth, web
from aiohttp.typedefs import Handler, Middleware

from opswatch.config import Secret


class Scope(StrEnum):
    OPEN = "open"
    READ = "read"
    WRITE = "write"
    #: a heartbeat's ping: its handler checks the heartbeat's key or the write token
    #: (:mod:`opswatch.api.pings`); this middleware lets it through
    PING = "ping"
    #: the path carries its own credential (a signed ack link)
    LINK = "link"


#: the scope of each route, set by the route table (``route.resource.canonical``, method)
SCOPES: web.AppKey[dict[tuple[str, str], Scope]] = web.AppKey("scopes")

_NO_READ_TOKEN = (
    "not served: the API listens beyond loopback without OPSWATCH_API_READ_TOKEN or "
    "OPSWATCH_API_TOKEN, so it serves /healthz only"
)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` stands for is a loopback one (``127.0.0.0/8``, ``::1``,
    ``localhost``); a wildcard (``0.0.0.0``, ``::``) or any other address is not."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


@dataclass(frozen=True, slots=True)
class Access:
    """The credentials the API knows and where it listens: what each scope needs."""

    write_token: Secret | None
    read_token: Secret | None
    loopback: bool
    links: bool = False
    #: some heartbeat is configured (its pings are served)
    pings: bool = False

    @property
    def public_without_token(self) -> bool:
        """Bound beyond loopback with no token at all: only ``open`` (and ``link``, ``ping``)
        routes."""
        return not self.loopback and self.write_token is None and self.read_token is None

    def served(self, scope: Scope) -> bool:
        """Whether routes of ``scope`` answer at all (with the right token, where one is due)."""
        match scope:
            case Scope.OPEN:
                return True
            case Scope.PING:
                return self.pings
            case Scope.LINK:
                return self.links
            case Scope.WRITE:
                return self.write_token is not None
            case Scope.READ:
                return not self.public_without_token

    def needs_token(self, scope: Scope) -> bool:
        return scope is Scope.WRITE or (scope is Scope.READ and not self.loopback)

    def check(self, request: web.Request, scope: Scope) -> None:
        """Raise the refusal of ``request`` for a route of ``scope`` (nothing: allowed)."""
        if scope is Scope.LINK:
            return  # its handler checks the link, and answers 404 while links are off
        if scope is Scope.PING:
            if not self.pings:
                raise web.HTTPNotFound(text="not found: no heartbeat is configured")
            return  # its handler checks the heartbeat's key or the write token
        if not self.served(scope):
            raise web.HTTPNotFound(text=self._off(scope))
        if not self.needs_token(scope):
            return
        given = _bearer(request) or (_basic(request) if scope is Scope.READ else None)
        if given is None:
            # a browser (the status page) answers a Basic challenge with the token as password
            challenge = 'Basic realm="opswatch", Bearer' if scope is Scope.READ else "Bearer"
            raise web.HTTPUnauthorized(
                text="a bearer token is required", headers={"WWW-Authenticate": challenge}
            )
        tokens = [self.write_token] if scope is Scope.WRITE else [self.write_token, self.read_token]
        if not any(_same(given, token) for token in tokens):
            raise web.HTTPForbidden(
                text="wrong token" if scope is Scope.READ else "this needs the write token"
            )

    def _off(self, scope: Scope) -> str:
        if scope is Scope.WRITE:
            return "not found: set OPSWATCH_API_TOKEN to enable this endpoint"
        return _NO_READ_TOKEN

    def describe(self, routes: Iterable[tuple[str, str, Scope]]) -> dict[str, Any]:
        """What this listener exposes, for ``check-config``: the routes anyone who reaches it
        gets, those behind a token, and those not served."""
        rows = list(routes)

        def named(keep: Iterable[Scope], *, token: bool | None = None) -> list[str]:
            wanted = set(keep)
            return [
                f"{method} {path}"
                for method, path, scope in rows
                if scope in wanted
                and self.served(scope)
                and (token is None or self.needs_token(scope) is token)
            ]

        return {
            "loopback": self.loopback,
            "write_token": self.write_token is not None,
            "read_token": self.read_token is not None,
            "without_token": named(Scope, token=False),
            "with_read_token": named([Scope.READ], token=True),
            "with_write_token": named([Scope.WRITE], token=True),
            "not_served": [
                f"{method} {path}" for method, path, scope in rows if not self.served(scope)
            ],
        }


def authenticate(access: Access) -> Middleware:
    """The middleware applying ``access`` to each request's route scope."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        key = (resource.canonical if resource is not None else "", request.method)
        scope = request.app[SCOPES].get(key)
        if scope is not None:  # an unknown path or method: aiohttp's own 404/405
            access.check(request, scope)
        return await handler(request)

    return middleware


def _bearer(request: web.Request) -> str | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip()


def _basic(request: web.Request) -> str | None:
    """The password of HTTP Basic credentials (any user name): how a browser sends the read
    token to the status page. Never for a write route: a browser replays Basic credentials on
    any request to the origin, a cross-site form included."""
    try:
        credentials = BasicAuth.decode(request.headers.get("Authorization", ""))
    except ValueError:
        return None
    return credentials.password or None


def _same(given: str, token: Secret | None) -> bool:
    return token is not None and hmac.compare_digest(given.encode(), token.reveal().encode())
