"""Faster than polling: a failing check is re-run soon; a watched process's exit is an event.

Both tests run the real daemon at the default 30 s interval and expect the alert long before a
second scheduled run could happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tenacity import wait_none

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.notifiers.outbox import RetryPolicy
from tests.peers import Receiver

FAST = RetryPolicy(attempts=2, total_seconds=5, wait=wait_none())


@pytest.fixture
async def webhook() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_a_down_target_is_confirmed_after_the_retry_interval_not_the_interval(
    webhook: Receiver, tmp_path: Path
) -> None:
    target = Receiver()
    await target.start()
    await target.stop()  # its port is now closed: the service is down from the start
    config = load_config(
        {
            "OPSWATCH_CHECKS": "http",
            "OPSWATCH_HTTP_TARGETS": f"api={target.url}/health",
            "OPSWATCH_RETRY_INTERVAL": "500ms",
            "OPSWATCH_WEBHOOK_URL": webhook.url,
            "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
            "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        }
    )
    assert config.settings.interval == 30
    app = App(config, retry_policy=FAST)
    started = time.monotonic()
    await app.start()
    try:
        (fired,) = await webhook.wait_for(1, timeout=10)
    finally:
        await app.stop()
    assert fired.body["alerts"][0]["labels"]["alertname"] == "http_down"
    assert time.monotonic() - started < 10  # two failed runs 0.5 s apart, not 30 s


async def test_a_watched_process_exit_alerts_within_the_second(
    webhook: Receiver, tmp_path: Path
) -> None:
    child = await asyncio.create_subprocess_exec("sleep", "600")
    pidfile = tmp_path / "worker.pid"
    pidfile.write_text(f"{child.pid}\n")
    config = load_config(
        {
            "OPSWATCH_CHECKS": "process",
            "OPSWATCH_PROCESS_TARGETS": f"worker=pidfile:{pidfile}",
            "OPSWATCH_WEBHOOK_URL": webhook.url,
            "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
            "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        }
    )
    app = App(config, retry_policy=FAST)
    await app.start()
    try:
        async with asyncio.timeout(10):  # the first scheduled run sees the process alive
            await app.checks.wait_for_runs("process:worker")
        killed = time.monotonic()
        child.kill()
        await child.wait()
        (fired,) = await webhook.wait_for(1, timeout=5)
        latency = time.monotonic() - killed
    finally:
        await app.stop()
        if child.returncode is None:
            child.kill()
    assert fired.body["alerts"][0]["labels"]["alertname"] == "process_down"
    assert latency < 2.0  # an event, not the next 30 s cycle
