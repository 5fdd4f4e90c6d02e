"""``GET /api/v1/openapi.json``: an OpenAPI 3.1 document generated from the route table.

Nothing here is written per route: each :class:`opswatch.api.app.Route` carries its method,
path (``{name}`` segments become path parameters), scope (``write`` routes get the bearer
security requirement, ``read`` routes an optional one, each with its refusals), summary, and
optionally its query parameters (:class:`Param`), JSON request body, answer and other
statuses. The shapes of the answers are the encoders' schemas, declared once beside them in
:data:`opswatch.codec.SCHEMAS`; every error status answers its ``Error`` shape
(:mod:`opswatch.api.errors`). A route without any of the optional fields is still documented
(as answering 200).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from opswatch import __version__
from opswatch.api.auth import Scope
from opswatch.api.requests import MAX_BODY, MAX_DEPTH
from opswatch.codec import JSON, SCHEMAS, ref

if TYPE_CHECKING:
    from opswatch.api.app import Route

#: the OpenAPI version of the document
OPENAPI_VERSION = "3.1.0"
#: the name of the bearer security scheme (``components.securitySchemes``)
BEARER = "bearer"
#: the name of the heartbeat key security scheme (``?key=`` of a ping)
PING_KEY = "heartbeatKey"
#: the document served, built once from the route table by ``build_app``
DOCUMENT: web.AppKey[JSON] = web.AppKey("openapi_document")

_PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@dataclass(frozen=True, slots=True)
class Param:
    """One query parameter of a route."""

    name: str
    schema: JSON
    description: str = ""
    required: bool = False


def document(routes: Iterable[Route], version: str = __version__) -> JSON:
    """The OpenAPI 3.1 document describing ``routes``."""
    paths: dict[str, JSON] = {}
    for route in routes:
        template = _PARAMETER.sub(r"{\1}", route.path)
        paths.setdefault(template, {})[route.method.lower()] = _operation(route, template)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "opswatch",
            "version": version,
            "description": (
                "The opswatch daemon's HTTP API. /healthz is always open. Read routes are "
                "open on a loopback listener; bound elsewhere they need `Authorization: "
                "Bearer` with OPSWATCH_API_READ_TOKEN or OPSWATCH_API_TOKEN (and with neither "
                "set only /healthz is served). Write routes need `Authorization: Bearer "
                "$OPSWATCH_API_TOKEN` (404 while no token is set). /ack/{token} routes are "
                "authenticated by their signed token. Every error answers the Error shape: "
                '`{"error": {"status": 404, "code": "not_found", "message": "..."}}`.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(SCHEMAS),
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the value of OPSWATCH_API_TOKEN",
                },
                PING_KEY: {
                    "type": "apiKey",
                    "in": "query",
                    "name": "key",
                    "description": "a heartbeat's key, OPSWATCH_HEARTBEAT_<NAME>_KEY",
                },
            },
        },
    }


async def handler(request: web.Request) -> web.Response:
    return web.json_response(request.app[DOCUMENT])


def _operation(route: Route, template: str) -> JSON:
    operation: JSON = {
        "operationId": _operation_id(route.method, template),
        "summary": route.summary,
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAMETER.findall(template)
    ]
    parameters += [_query(param) for param in route.query]
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": False,
            "description": f"a JSON object of at most {MAX_BODY} bytes, nested at most "
            f"{MAX_DEPTH} levels",
            "content": {"application/json": {"schema": route.body}},
        }
    operation["responses"] = _responses(route)
    if route.scope is Scope.WRITE:
        operation["security"] = [{BEARER: []}]
    elif route.scope is Scope.PING:
        operation["security"] = [{PING_KEY: []}, {BEARER: []}]
    elif route.scope is Scope.READ:  # a token only beyond loopback
        operation["security"] = [{}, {BEARER: []}]
    return operation


def _operation_id(method: str, template: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", template)
    return "_".join([method.lower(), *words])


def _query(param: Param) -> JSON:
    query: JSON = {"name": param.name, "in": "query", "required": param.required}
    if param.description:
        query["description"] = param.description
    query["schema"] = param.schema
    return query


def _responses(route: Route) -> JSON:
    answer: JSON = {"description": route.summary}
    if route.answer is not None:
        answer["content"] = {route.answer_type: {"schema": route.answer}}
    responses: JSON = {"200": answer}
    for status, description in route.also:
        responses[str(status)] = {**answer, "description": description}
    errors: dict[int, list[str]] = {}
    if route.query or route.body is not None:
        errors.setdefault(400, []).append("a malformed query parameter or body")
    if route.body is not None:
        errors.setdefault(413, []).append(f"a body over {MAX_BODY} bytes")
    for status, description in _SCOPE_ERRORS[route.scope]:
        errors.setdefault(status, []).append(description)
    if _PARAMETER.search(route.path):
        errors.setdefault(404, []).append("no route for this path (a parameter holding '/')")
    for status, description in route.errors:
        errors.setdefault(status, []).append(description)
    for status, descriptions in sorted(errors.items()):
        responses[str(status)] = {
            "description": "; or ".join(dict.fromkeys(descriptions)),
            "content": {"application/json": {"schema": ref("Error")}},
        }
    return responses


#: the refusals each scope may answer (opswatch.api.auth)
_SCOPE_ERRORS: dict[Scope, tuple[tuple[int, str], ...]] = {
    Scope.OPEN: (),
    Scope.READ: (
        (401, "beyond loopback: no bearer token"),
        (403, "beyond loopback: a wrong bearer token"),
        (404, "beyond loopback without any token: only /healthz is served"),
    ),
    Scope.WRITE: (
        (401, "no bearer token"),
        (403, "a wrong bearer token (or the read token)"),
        (404, "no OPSWATCH_API_TOKEN configured: the route is off"),
    ),
    Scope.LINK: ((404, "no OPSWATCH_EXTERNAL_URL configured: ack links are off"),),
    Scope.PING: (),  # each ping route declares its own (api/app.py _PING_ERRORS)
}
