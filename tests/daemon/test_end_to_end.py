"""The whole daemon: a real HTTP target fails and recovers; a real webhook receiver hears it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from tenacity import wait_none

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import TransitionKind
from opswatch.notifiers.outbox import RetryPolicy
from tests.conftest import free_port
from tests.peers import Receiver

FAST = RetryPolicy(attempts=2, total_seconds=5, wait=wait_none())


@pytest.fixture
async def target() -> AsyncIterator[Receiver]:
    """The watched service: a local HTTP server answering 200 until stopped."""
    service = Receiver()
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def webhook() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


def _environ(target: Receiver, webhook: Receiver, state: Path, **extra: str) -> dict[str, str]:
    return {
        "OPSWATCH_CHECKS": "http",
        "OPSWATCH_HTTP_TARGETS": f"api={target.url}/health",
        "OPSWATCH_HTTP_TIMEOUT": "500ms",
        "OPSWATCH_WEBHOOK_URL": f"{webhook.url}/hooks/T0/SECRET",
        "OPSWATCH_STATE_PATH": str(state),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        **extra,
    }


async def test_service_failure_and_recovery_notify_once_each(
    target: Receiver, webhook: Receiver, tmp_path: Path
) -> None:
    config = load_config(_environ(target, webhook, tmp_path / "s.sqlite3", OPSWATCH_INTERVAL="1s"))
    app = App(config, retry_policy=FAST)
    await app.start()
    try:
        await target.stop()
        (fired,) = await webhook.wait_for(1, timeout=15)
        assert fired.body["status"] == "firing"
        assert fired.body["alerts"][0]["labels"]["alertname"] == "http_down"

        await target.start()
        requests = await webhook.wait_for(2, timeout=15)
        assert requests[1].body["status"] == "resolved"
        assert requests[1].body["alerts"][0]["labels"]["alertname"] == "http_down"

        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{app.api.port}"
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with http.get(f"{base}/status") as response:
                status = await response.json()
            assert "http:api" in status["checks"]
            async with http.get(f"{base}/api/v1/alerts/history") as response:
                kinds = [t["kind"] for t in (await response.json())["transitions"]]
            assert kinds == ["resolved", "fired"]
    finally:
        await app.stop()
    assert len(webhook.requests) == 2


async def test_restart_neither_renotifies_a_firing_alert_nor_loses_a_resolution(
    target: Receiver, webhook: Receiver, tmp_path: Path
) -> None:
    environ = _environ(target, webhook, tmp_path / "s.sqlite3")
    await target.stop()
    first = App(load_config(environ), retry_policy=FAST)
    await first.open()
    assert await first.cycle.run("http:api") == []  # http_down waits for 2 cycles
    (fired,) = await first.cycle.run("http:api")
    assert fired.kind is TransitionKind.FIRED
    await first.stop()

    second = App(load_config(environ), retry_policy=FAST)
    await second.open()
    assert await second.cycle.run("http:api") == []  # still down: no new notification
    await second.stop()

    await target.start()  # recovered while the daemon was down
    third = App(load_config(environ), retry_policy=FAST)
    await third.open()
    (resolved,) = await third.cycle.run("http:api")
    assert resolved.kind is TransitionKind.RESOLVED
    assert await third.cycle.run("http:api") == []
    await third.stop()
    # both notifications were flushed at stop, each exactly once
    statuses = [r.body["status"] for r in webhook.requests]
    assert statuses == ["firing", "resolved"]


async def test_daemon_process_alerts_and_exits_cleanly_on_sigterm(
    webhook: Receiver, tmp_path: Path
) -> None:
    target = Receiver()
    target.port = free_port()  # nothing listens there yet: the service is down
    api_port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
        **_environ(target, webhook, tmp_path / "s.sqlite3"),
        "OPSWATCH_INTERVAL": "1s",
        "OPSWATCH_API_LISTEN": f"127.0.0.1:{api_port}",
        "OPSWATCH_LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "opswatch.daemon.cli",
        "run",
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        (fired,) = await webhook.wait_for(1, timeout=20)
        assert fired.body["status"] == "firing"
        await target.start()
        requests = await webhook.wait_for(2, timeout=20)
        assert requests[1].body["status"] == "resolved"
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{api_port}/status") as response,
        ):
            assert "http:api" in (await response.json())["checks"]
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
        await target.stop()
    assert process.returncode == 0, stderr.decode()
    events = [json.loads(line)["event"] for line in stdout.decode().splitlines()]
    assert events[0] == "api_listening"
    assert {"daemon_started", "collect_finished", "alert_fired", "alert_resolved"} <= set(events)
    assert "notification_delivered" in events
    assert events[-1] == "daemon_stopped"
    assert "SECRET" not in stdout.decode() + stderr.decode()
    assert len(webhook.requests) == 2
