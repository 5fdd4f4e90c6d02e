"""``GET /api/v1/openapi.json``: an OpenAPI 3.1 document generated from the route table.

Nothing here is written per route: each :class:`opswatch.api.app.Route` carries its method,
path (``{name}`` segments become path parameters), scope (``write`` routes get the bearer
security requirement and their 401/403/404), summary, and optionally its query parameters
(:class:`Param`), JSON request body, answer and other statuses. The shapes of the answers are
the encoders' schemas, declared once beside them in :data:`opswatch.codec.SCHEMAS`. A route
without any of the optional fields is still documented (as answering 200).
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
from opswatch.codec import JSON, SCHEMAS

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
                "The opswatch daemon's HTTP API. Read routes are open; write routes need "
                "`Authorization: Bearer $OPSWATCH_API_TOKEN` (404 while no token is set). "
                "Errors answer one line of text naming the problem."
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
    if route.scope is Scope.PING:
        operation["security"] = [{PING_KEY: []}, {BEARER: []}]
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
    if route.scope is Scope.WRITE:
        errors.setdefault(401, []).append("no bearer token")
        errors.setdefault(403, []).append("a wrong bearer token")
        errors.setdefault(404, []).append("no OPSWATCH_API_TOKEN configured: the route is off")
    for status, description in route.errors:
        errors.setdefault(status, []).append(description)
    for status, descriptions in sorted(errors.items()):
        responses[str(status)] = {
            "description": "; or ".join(descriptions),
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    return responses
