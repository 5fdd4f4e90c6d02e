"""The API's last line of defence: no configured secret leaves in an answer.

Every body the API sends (JSON answers, error texts) passes :func:`opswatch.redact.scrub`,
whatever path a value took to get there (a check's error, an alert's summary, a recovery's
detail). The sources mask what they know; this catches what they did not.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from opswatch.redact import scrub


@web.middleware
async def scrub_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if error.text is not None:
            error.text = scrub(error.text)
        raise
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        charset = response.charset or "utf-8"
        text = response.body.decode(charset, errors="replace")
        scrubbed = scrub(text)
        if scrubbed != text:
            response.body = scrubbed.encode(charset)
    return response
