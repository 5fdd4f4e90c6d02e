"""``/api/v1/alerts``: the active alerts, their history and the evidence taken at firing."""

from __future__ import annotations

from aiohttp import web

from opswatch.api.requests import limit
from opswatch.api.services import ALERTS, MUTES, SILENCES, STORE
from opswatch.codec import alert_to_json, transition_to_json


async def active(request: web.Request) -> web.Response:
    alerts = request.app[ALERTS].active()
    silences = request.app[SILENCES]
    mutes = request.app[MUTES]
    now = silences.now()
    answer = [
        {
            **alert_to_json(a),
            "silenced_by": silences.muter.ids(a, now),
            "muted_by": mutes.muting(a, now),
        }
        for a in alerts
    ]
    return web.json_response({"alerts": answer})


async def history(request: web.Request) -> web.Response:
    transitions = await request.app[STORE].history(limit(request))
    return web.json_response({"transitions": [transition_to_json(t) for t in transitions]})


async def evidence(request: web.Request) -> web.Response:
    fingerprint = request.match_info["fingerprint"]
    return web.json_response({"evidence": await request.app[STORE].evidence(fingerprint)})
