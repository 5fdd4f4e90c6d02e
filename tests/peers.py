"""Real local HTTP peers for tests: a scriptable, capturing aiohttp server.

``Receiver`` stands in for a webhook endpoint, Slack, or a watched HTTP service. It records
every request (path, headers, JSON body) and answers from a script::

    receiver.script(500, 500, 200)                       # then 200 forever
    receiver.script(Reply(429, headers={"Retry-After": "7"}))
    receiver.script(Reply.HANG)                          # never answers (client timeout)
    await receiver.stop(); ...; await receiver.start()   # down, then up on the same port
    await receiver.wait_for(3)                           # under asyncio.timeout, no sleeps
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

WAIT_S = 5.0


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    hang: bool = False

    HANG: ClassVar[Reply]


Reply.HANG = Reply(hang=True)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Receiver:
    """A local webhook endpoint on 127.0.0.1; the port survives stop()/start()."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.port = 0
        self._arrived = asyncio.Condition()
        self._script: deque[Reply] = deque()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: int | Reply) -> None:
        """The next responses, in order; once used up the receiver answers 200."""
        self._script.extend(Reply(r) if isinstance(r, int) else r for r in replies)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the port and every open connection (the receiver is "down")."""
        self._release.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._release = asyncio.Event()

    async def wait_for(
        self,
        count: int,
        timeout: float = WAIT_S,  # noqa: ASYNC109 - the bound is applied here, with asyncio.timeout
    ) -> list[Received]:
        """Wait (at most ``timeout`` s) until ``count`` requests arrived in total; return all."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        body: Any = await request.json() if text else None
        reply = self._script.popleft() if self._script else Reply()
        async with self._arrived:
            self.requests.append(
                Received(request.method, request.path, dict(request.headers), body)
            )
            self._arrived.notify_all()
        if reply.hang:
            await self._release.wait()
        return web.Response(status=reply.status, headers=reply.headers, text=reply.body)
