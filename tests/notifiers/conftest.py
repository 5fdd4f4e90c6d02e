"""A capturing HTTP receiver (a real local aiohttp server) and a real state store.

``receiver`` records every request (path, headers, JSON body) and answers from a script::

    receiver.script(500, 500, 200)                       # then 200 forever
    receiver.script(Reply(429, headers={"Retry-After": "7"}))
    receiver.script(Reply.HANG)                          # never answers (client timeout)
    await receiver.stop(); ...; await receiver.start()   # down, then up on the same port
    await receiver.wait_for(3)                           # under asyncio.timeout, no sleeps
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web

from opswatch.alerts.store import SQLiteStore
from opswatch.model import Alert, AlertState, Severity, Transition, TransitionKind, fingerprint

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


ReceiverFactory = Callable[[], Awaitable[Receiver]]


@pytest.fixture
async def receiver_factory() -> AsyncIterator[ReceiverFactory]:
    started: list[Receiver] = []

    async def make() -> Receiver:
        receiver = Receiver()
        await receiver.start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        await receiver.stop()


@pytest.fixture
async def receiver(receiver_factory: ReceiverFactory) -> Receiver:
    return await receiver_factory()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite3"


@pytest.fixture
async def store(state_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(state_path)
    await store.open()
    yield store
    await store.close()


T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def transition(
    rule: str = "cpu_high",
    *,
    check: str = "host",
    kind: TransitionKind = TransitionKind.FIRED,
    severity: Severity = Severity.WARNING,
    value: float = 97.3,
    labels: Mapping[str, str] | None = None,
    started_at: datetime = T0,
    at: datetime | None = None,
    summary: str = "CPU busy",
    previous_severity: Severity | None = None,
) -> Transition:
    """A transition as the tracker makes them (resolved ones carry ``resolved_at``)."""
    labels = {"host": "web1"} if labels is None else dict(labels)
    at = started_at if at is None else at
    resolved = kind is TransitionKind.RESOLVED
    alert = Alert(
        fingerprint=fingerprint(rule, labels),
        rule=rule,
        check=check,
        labels=labels,
        state=AlertState.RESOLVED if resolved else AlertState.FIRING,
        severity=severity,
        summary=summary,
        value=value,
        started_at=started_at,
        last_seen_at=at,
        resolved_at=at if resolved else None,
    )
    return Transition(
        alert=alert,
        kind=kind,
        at=at,
        previous_state=AlertState.FIRING if resolved else None,
        previous_severity=previous_severity,
    )
