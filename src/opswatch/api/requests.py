"""Reading what a client sent: query parameters and JSON bodies, refused with one clear line.

A body is at most :data:`MAX_BODY` bytes (aiohttp answers 413 past it) and nested at most
:data:`MAX_DEPTH` deep; anything else that is not the JSON object a route expects answers 400
with a text that names the problem.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from opswatch.alerts.silences import SilenceError, parse_matcher
from opswatch.model import Matcher

#: the largest request body the API reads (bytes)
MAX_BODY = 64 * 1024
#: the deepest nesting of arrays and objects a JSON body may have
MAX_DEPTH = 32
#: the longest author or comment kept (characters)
MAX_TEXT = 1000


def limit(request: web.Request, default: int = 100, maximum: int = 1000) -> int:
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise web.HTTPBadRequest(text=f"limit: expected a whole number from 1 to {maximum}")
    return int(raw)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (an absent or ``null`` body is ``{}``)."""
    if not request.can_read_body:
        return {}
    try:
        text = (await request.read()).decode(request.charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        raise web.HTTPBadRequest(text="body: expected a JSON object in UTF-8") from None
    if _depth(text) > MAX_DEPTH:
        raise web.HTTPBadRequest(text=f"body: nested deeper than {MAX_DEPTH} levels")
    try:
        body: Any = json.loads(text) if text.strip() else None
    except ValueError:
        raise web.HTTPBadRequest(text="body: expected a JSON object") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body: expected a JSON object")
    return body


def matchers_field(value: Any) -> list[Matcher]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise web.HTTPBadRequest(text="matchers: expected a non-empty list of strings")
    try:
        return [parse_matcher(v, "matchers") for v in value]
    except SilenceError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def text_field(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise web.HTTPBadRequest(text=f"{field}: expected a non-empty string")
    return value


def time_field(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise web.HTTPBadRequest(text=f"{field}: expected an ISO 8601 time with a timezone")
    return at


def known_fields(body: dict[str, Any], fields: set[str]) -> None:
    unknown = sorted(set(body) - fields)
    if unknown:
        raise web.HTTPBadRequest(
            text=f"{unknown[0]}: unknown field; expected some of {', '.join(sorted(fields))}"
        )


def line_field(body: dict[str, Any], name: str) -> str | None:
    """An optional one-line text field: whitespace runs become one space (no control
    character reaches the history or the logs), at most :data:`MAX_TEXT` characters."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise web.HTTPBadRequest(text=f"{name}: expected a string")
    value = " ".join(value.split())  # one line: no control characters reach history or logs
    if len(value) > MAX_TEXT:
        raise web.HTTPBadRequest(text=f"{name}: at most {MAX_TEXT} characters")
    return value or None


def author_field(body: dict[str, Any]) -> str:
    author = line_field(body, "author")
    if author is None:
        raise web.HTTPBadRequest(text="author: required (who acts)")
    return author


def comment_field(body: dict[str, Any]) -> str | None:
    return line_field(body, "comment")


def _depth(text: str) -> int:
    """The deepest bracket nesting of ``text`` outside strings (a bound checked before
    parsing, so a hostile body never reaches the recursive parser)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
