"""``/api/v1/recovery``: the bound actions with their budgets, past runs, and an operator's
run of a binding."""

from __future__ import annotations

from aiohttp import web

from opswatch.api.requests import json_object, limit
from opswatch.api.services import RECOVERY, STORE
from opswatch.codec import budget_state_to_json, recovery_result_to_json


async def actions(request: web.Request) -> web.Response:
    runner = request.app[RECOVERY].runner
    settings = runner.settings
    budgets = await runner.budgets()
    return web.json_response(
        {
            "dry_run": settings.dry_run,
            "notify": settings.notify,
            "budget": settings.budget.text,
            "host": {
                "executions_last_hour": await runner.host_used(),
                "max_per_hour": settings.max_per_hour,
            },
            "bindings": [
                {**binding.describe(), "budget": budget_state_to_json(state)}
                for binding, state in budgets
            ],
        }
    )


async def history(request: web.Request) -> web.Response:
    results = await request.app[STORE].recovery_history(limit(request))
    return web.json_response({"runs": [recovery_result_to_json(r) for r in results]})


async def run(request: web.Request) -> web.Response:
    """``POST /api/v1/recovery/{action}/run``, ``{action}`` a binding id (``http_down`` or
    ``http_down:api``); optional JSON body ``{"target": "api", "dry_run": true}``."""
    body = await json_object(request)
    target, dry_run = body.get("target"), body.get("dry_run", False)
    if not (target is None or isinstance(target, str)):
        raise web.HTTPBadRequest(text="target: expected a string")
    if not isinstance(dry_run, bool):
        raise web.HTTPBadRequest(text="dry_run: expected true or false")
    remediation = request.app[RECOVERY]
    action = request.match_info["action"]
    binding = remediation.settings.binding(action)
    if binding is None:
        raise web.HTTPNotFound(text=f"no recovery binding {action!r}")
    result = await remediation.run_manual(binding, target, dry_run=dry_run)
    return web.json_response(recovery_result_to_json(result))
