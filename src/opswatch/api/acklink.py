"""``/ack/{token}``: the one-click ack link of a firing notification (scope ``link``: the
signed token in the path is the credential, :mod:`opswatch.notifiers.acklinks`).

``GET`` only shows a small confirmation page with a button: link previews (chat unfurls,
mail scanners) fetch links, and must not acknowledge anything. The button's ``POST``
acknowledges the alert through the operator path (author ``link``), once per episode: while the
alert is acknowledged (by the link or anyone), or when a link acknowledged this episode before
(and that was removed since), a ``POST`` changes nothing and says so. A token
that is malformed, forged or expired answers 403; one whose alert episode has ended (resolved,
or firing anew since) 410.
"""

from __future__ import annotations

import html

from aiohttp import web

from opswatch.api.operator import done, operator_of
from opswatch.api.services import ACK_LINKS, ALERTS, STORE
from opswatch.model import Alert, Transition, TransitionKind
from opswatch.notifiers.acklinks import AUTHOR, LinkError

#: how many of an alert's newest transitions are looked through for an earlier link ack
_HISTORY_LOOKED_AT = 1000
#: the history comment of an ack made by a link
COMMENT = "acknowledged with the notification's link"
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


async def confirm(request: web.Request) -> web.Response:
    alert = _episode(request)
    done_already = await _done_already(request, alert)
    if done_already is not None:
        return _page(alert, done_already)
    button = '<form method="post"><button type="submit">Acknowledge</button></form>'
    return _page(
        alert,
        "Acknowledge this alert? Its reminders stop until it resolves or its severity rises.",
        button,
    )


async def acknowledge(request: web.Request) -> web.Response:
    alert = _episode(request)
    done_already = await _done_already(request, alert)
    if done_already is not None:
        return _page(alert, done_already)
    result = await operator_of(request).ack(alert.fingerprint, AUTHOR, comment=COMMENT)
    acked = done(result, alert.fingerprint).alert
    return _page(acked, "Acknowledged.")


async def _done_already(request: web.Request, alert: Alert) -> str | None:
    """Why the link acts no more on ``alert``: it is acknowledged, or a link acknowledged
    this episode before (and someone removed that since): a link acks an episode once."""
    if alert.acked_by is not None:
        return f"Already acknowledged by {alert.acked_by}."
    history = await request.app[STORE].history(_HISTORY_LOOKED_AT, alert.fingerprint)
    if any(_by_link(t) and t.alert.started_at == alert.started_at for t in history):
        return (
            "This alert was acknowledged with its link before, and that acknowledgement was "
            "removed since: a link acknowledges once (use opswatch ack)."
        )
    return None


def _by_link(transition: Transition) -> bool:
    return transition.kind is TransitionKind.ACKNOWLEDGED and transition.alert.acked_by == AUTHOR


def _episode(request: web.Request) -> Alert:
    """The active alert of the token's episode; the refusal (403, 410) otherwise."""
    links = request.app[ACK_LINKS]()
    if links is None:
        raise web.HTTPNotFound(text="not found: set OPSWATCH_EXTERNAL_URL to enable ack links")
    operator = operator_of(request)
    try:
        episode = links.verify(request.match_info["token"], operator.now())
    except LinkError as refused:
        raise web.HTTPForbidden(text=str(refused)) from None
    for alert in request.app[ALERTS].active():
        if episode.of(alert):
            return alert
    raise web.HTTPGone(text="the alert this link was sent for is no longer firing")


def _page(alert: Alert, message: str, form: str = "") -> web.Response:
    e = html.escape
    title = f"{alert.severity.value.upper()} {alert.rule} on {alert.check}"
    body = (
        "<!DOCTYPE html>\n<html><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width">'
        f"<title>opswatch: {e(title)}</title></head>"
        '<body style="font-family:sans-serif;max-width:40em;margin:2em auto">'
        f"<h1>{e(title)}</h1><p>{e(alert.summary)}</p><p><strong>{e(message)}</strong></p>"
        f"{form}</body></html>\n"
    )
    return web.Response(text=body, content_type="text/html", headers=_HEADERS)
