"""Shared fixtures: real services (skipped when absent, a failure in CI) and a manual clock."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from opswatch import redact

REQUIRE_SERVICES = os.environ.get("OPSWATCH_REQUIRE_SERVICES", "") in {"1", "true", "yes"}


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or fail under OPSWATCH_REQUIRE_SERVICES=1, as in CI) when a service is absent."""
    if port_open(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and OPSWATCH_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port nothing listens on right now (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Sleep = Callable[[float], Awaitable[None]]


async def passes(loop: Callable[[Sleep], Awaitable[None]], count: int) -> list[float]:
    """Run a loop that waits through the sleep it is given (a muter's ``follow``) until its
    ``count``-th wait, which stops it: the waits it asked for, in order."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= count:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await loop(sleep)
    return waits


@dataclass
class ManualClock:
    """An injected clock that moves only when a test says so."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """A test that runs ``main()`` configures logging onto its captured streams: undo it."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _no_secrets_registered() -> Iterator[None]:
    """``load_config`` registers its secrets process-wide (``opswatch.redact``): forget them."""
    yield
    redact.register(())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def postgres_dsn() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return os.environ.get("OPSWATCH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return os.environ.get("OPSWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
