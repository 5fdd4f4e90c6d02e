"""Fixtures for the service collectors' tests: RabbitMQ's management API, enabled on demand."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import REQUIRE_SERVICES, port_open, require_service

MANAGEMENT_URL = "http://guest:guest@127.0.0.1:15672"
MANAGEMENT_DEADLINE_S = 90.0


def _unavailable(message: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and OPSWATCH_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


async def _enable_management_plugin() -> None:
    """``rabbitmq-plugins enable rabbitmq_management`` (idempotent; needs root)."""
    executable = shutil.which("rabbitmq-plugins")
    if executable is None:
        _unavailable("RabbitMQ's management API is off and rabbitmq-plugins is not installed")
        return
    process = await asyncio.create_subprocess_exec(
        executable,
        "enable",
        "rabbitmq_management",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(MANAGEMENT_DEADLINE_S):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        _unavailable("rabbitmq-plugins enable rabbitmq_management did not finish")
        return
    if process.returncode != 0:
        _unavailable(
            f"rabbitmq-plugins enable rabbitmq_management failed ({process.returncode}): "
            f"{output.decode(errors='replace').strip()[-300:]}"
        )


async def _wait_for_port(host: str, port: int, deadline_s: float) -> bool:
    """Poll connect until the port opens or the deadline passes (waiting on an external
    process: the only place these tests pause between attempts)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(1.0):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.2)
            continue
        writer.close()
        await writer.wait_closed()
        return True
    return False


@pytest.fixture
async def rabbitmq_management() -> str:
    """The management API's URL with credentials, enabling the plugin when it is off."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    url = os.environ.get("OPSWATCH_TEST_RABBITMQ_MANAGEMENT_URL", MANAGEMENT_URL)
    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 15672
    if not port_open(host, port):
        await _enable_management_plugin()
        if not await _wait_for_port(host, port, MANAGEMENT_DEADLINE_S):
            _unavailable(
                f"RabbitMQ's management API did not open {host}:{port}"
                f" within {MANAGEMENT_DEADLINE_S:g}s"
            )
    return url
