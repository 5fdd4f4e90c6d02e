"""``/api/v1/runbooks`` and ``/runbooks/{rule}``: every enabled rule's runbook, built from the
configuration in use and the state store when asked for (:mod:`opswatch.runbooks`)."""

from __future__ import annotations

from aiohttp import web

from opswatch.api.services import RUNBOOKS
from opswatch.ports import StoreError
from opswatch.runbooks.build import Runbook
from opswatch.runbooks.render import entry_to_json, page, runbook_to_json
from opswatch.runbooks.source import Runbooks


async def listed(request: web.Request) -> web.Response:
    runbooks = _runbooks(request)
    try:
        entries = await runbooks.index()
    except StoreError:
        raise web.HTTPServiceUnavailable(text="the state store did not answer") from None
    return web.json_response({"runbooks": [entry_to_json(e) for e in entries]})


async def one(request: web.Request) -> web.Response:
    return web.json_response(runbook_to_json(await _one(request)))


async def html_page(request: web.Request) -> web.Response:
    return web.Response(text=page(await _one(request)), content_type="text/html")


def _runbooks(request: web.Request) -> Runbooks:
    runbooks = request.app[RUNBOOKS]
    if runbooks is None:
        raise web.HTTPServiceUnavailable(text="runbooks are not available")
    return runbooks


async def _one(request: web.Request) -> Runbook:
    rule = request.match_info["rule"]
    try:
        runbook = await _runbooks(request).one(rule)
    except StoreError:
        raise web.HTTPServiceUnavailable(text="the state store did not answer") from None
    if runbook is None:
        raise web.HTTPNotFound(text=f"no enabled rule {rule!r}")
    return runbook
