"""Reload (SIGHUP): the environment file is re-read and validated; a good configuration swaps
collectors, rules and notifiers and keeps alert state; a bad one is refused."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs
from tenacity import wait_none

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.daemon.reload import keep_restart_only, restart_only_changes
from opswatch.daemon.sdnotify import SystemdNotifier
from opswatch.notifiers.outbox import RetryPolicy
from tests.conftest import free_port
from tests.peers import Receiver

FAST = RetryPolicy(attempts=2, total_seconds=5, wait=wait_none())
WAIT_S = 15.0

# --- what a reload may change ----------------------------------------------------------


def test_a_reload_cannot_move_the_state_store_or_lease_and_says_so() -> None:
    old = load_config({"OPSWATCH_STATE_URL": "postgresql://u:pw@db1/opswatch"}).settings
    new = load_config(
        {
            "OPSWATCH_STATE_URL": "postgresql://u:pw@db2/opswatch",
            "OPSWATCH_LEASE_URL": "redis://127.0.0.1:6379/1",
            "OPSWATCH_INTERVAL": "10s",
        }
    ).settings
    assert restart_only_changes(old, new) == ["OPSWATCH_STATE_URL", "OPSWATCH_LEASE_URL"]
    kept = keep_restart_only(old, new)
    assert (kept.state_url, kept.lease_url, kept.interval) == (old.state_url, None, 10.0)


# --- the running daemon, in process ---------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield str(path), sock


def _received(sock: socket.socket) -> list[bytes]:
    sock.settimeout(0)
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096))
        except BlockingIOError:
            return messages


@pytest.fixture
async def services() -> AsyncIterator[tuple[Receiver, Receiver, Receiver]]:
    """Two watched HTTP services and a webhook receiver."""
    peers = (Receiver(), Receiver(), Receiver())
    for peer in peers:
        await peer.start()
    yield peers
    for peer in peers:
        await peer.stop()


def _http(checks: Iterable[str]) -> list[str]:
    """The http checks (a daemon with channels also runs its ``notify`` health check)."""
    return sorted(c for c in checks if c.startswith("http:"))


def _environ(tmp_path: Path, webhook: Receiver, targets: str, **extra: str) -> dict[str, str]:
    return {
        "OPSWATCH_CHECKS": "http",
        "OPSWATCH_HTTP_TARGETS": targets,
        "OPSWATCH_HTTP_TIMEOUT": "500ms",
        "OPSWATCH_WEBHOOK_URL": f"{webhook.url}/hook",
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        "OPSWATCH_RETRY_INTERVAL": "500ms",
        **extra,
    }


async def test_a_good_reload_swaps_checks_and_interval_and_keeps_a_firing_alert(
    services: tuple[Receiver, Receiver, Receiver],
    tmp_path: Path,
    notify_socket: tuple[str, socket.socket],
) -> None:
    api, web, webhook = services
    await api.stop()  # "api" is down from the start: its alert fires before the reload
    first = _environ(tmp_path, webhook, f"api={api.url}/,web={web.url}/")
    path, systemd = notify_socket
    app = App(load_config(first), retry_policy=FAST, systemd=SystemdNotifier(path))
    await app.start()
    try:
        (fired,) = await webhook.wait_for(1, timeout=WAIT_S)
        assert fired.body["alerts"][0]["labels"]["alertname"] == "http_down"
        old_web = app.config.collectors[1]
        _received(systemd)

        second = _environ(
            tmp_path, webhook, f"api={api.url}/,db={web.url}/db", OPSWATCH_INTERVAL="5s"
        )
        with capture_logs() as logs:
            assert await app.reload(second)
            async with asyncio.timeout(WAIT_S):
                await app.checks.wait_for_runs("http:db")
                await app.checks.wait_for_runs("http:api", 3)  # two runs before, one after
        assert app.config.settings.interval == 5
        assert _http(app.checks.statuses()) == ["http:api", "http:db"]
        assert old_web not in app.config.collectors
        assert [a.rule for a in app.tracker.active()] == ["http_down"]  # still firing
        reloading, *rest = _received(systemd)
        assert reloading.startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        assert rest == [b"STATUS=reloaded", b"READY=1"]
        (finished,) = [e for e in logs if e["event"] == "reload_finished"]
        assert _http(finished["checks"]) == ["http:api", "http:db"]
        assert finished["interval_s"] == 5
        assert app.checks.health().healthy
    finally:
        await app.stop()
    assert len(webhook.requests) == 1  # the firing alert was not notified again


async def test_a_bad_reload_is_refused_logged_and_the_running_config_stays(
    services: tuple[Receiver, Receiver, Receiver], tmp_path: Path
) -> None:
    api, _, webhook = services
    environ = _environ(tmp_path, webhook, f"api={api.url}/")
    app = App(load_config(environ), retry_policy=FAST)
    await app.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await app.checks.wait_for_runs("http:api")
        before = app.config
        with capture_logs() as logs:
            assert not await app.reload({**environ, "OPSWATCH_INTERVAL": "banana"})
        (failed,) = [e for e in logs if e["event"] == "reload_failed"]
        assert failed["error"].startswith("OPSWATCH_INTERVAL: expected a duration")
        assert failed["log_level"] == "error"
        assert app.config is before
        assert app.scheduler.running
        async with asyncio.timeout(WAIT_S):  # the old checks still run
            await app.cycle.run("http:api")
        assert app.checks.health().healthy
    finally:
        await app.stop()


async def test_a_reload_that_removes_a_target_resolves_its_alert_once(
    services: tuple[Receiver, Receiver, Receiver], tmp_path: Path
) -> None:
    api, web, webhook = services
    await api.stop()
    app = App(
        load_config(_environ(tmp_path, webhook, f"api={api.url}/,web={web.url}/")),
        retry_policy=FAST,
    )
    await app.start()
    try:
        await webhook.wait_for(1, timeout=WAIT_S)
        assert await app.reload(_environ(tmp_path, webhook, f"web={web.url}/"))
        requests = await webhook.wait_for(2, timeout=WAIT_S)
        assert requests[1].body["status"] == "resolved"
        assert app.tracker.active() == []
    finally:
        await app.stop()
    assert len(webhook.requests) == 2


# --- the daemon process: env file, SIGHUP ---------------------------------------------------


class Daemon:
    """``opswatch run`` as a child process whose JSON log lines are read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            async with self._arrived:
                self.events.append(json.loads(line))
                self._arrived.notify_all()

    async def wait_for(self, event: str, **fields: Any) -> dict[str, Any]:
        """The first log line named ``event`` with ``fields`` (bound it with asyncio.timeout)."""

        def seen() -> list[dict[str, Any]]:
            return [
                e
                for e in self.events
                if e["event"] == event and all(e.get(k) == v for k, v in fields.items())
            ]

        async with self._arrived:
            await self._arrived.wait_for(lambda: bool(seen()))
        return seen()[0]

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), timeout=WAIT_S)
        await asyncio.wait_for(self._reader, timeout=WAIT_S)
        return code


async def test_sighup_rereads_the_env_file_and_a_malformed_one_is_refused(
    services: tuple[Receiver, Receiver, Receiver], tmp_path: Path
) -> None:
    api, web, webhook = services
    env_file = tmp_path / "env"
    env_file.write_text(
        f"# opswatch test configuration\nOPSWATCH_HTTP_TARGETS=api={api.url}/\n"
        "OPSWATCH_INTERVAL=30s\n"
    )
    port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
        "OPSWATCH_ENV_FILE": str(env_file),
        "OPSWATCH_CHECKS": "http",
        "OPSWATCH_WEBHOOK_URL": f"{webhook.url}/hook",
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": f"127.0.0.1:{port}",
        "OPSWATCH_LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "opswatch.daemon.cli",
        "run",
        env=environ,
        stdout=asyncio.subprocess.PIPE,
    )
    daemon = Daemon(process)
    try:
        async with asyncio.timeout(WAIT_S):
            started = await daemon.wait_for("daemon_started")
            await daemon.wait_for("daemon_ready")
        assert _http(started["checks"]) == ["http:api"]
        assert started["interval_s"] == 30

        env_file.write_text(
            f"OPSWATCH_HTTP_TARGETS=api={api.url}/,web={web.url}/\nOPSWATCH_INTERVAL=10s\n"
        )
        process.send_signal(signal.SIGHUP)
        async with asyncio.timeout(WAIT_S):
            finished = await daemon.wait_for("reload_finished")
        assert _http(finished["checks"]) == ["http:api", "http:web"]
        assert finished["interval_s"] == 10
        async with asyncio.timeout(WAIT_S):
            await daemon.wait_for("collect_finished", check="http:web")
        assert _http((await _get(port, "/status"))["checks"]) == ["http:api", "http:web"]

        env_file.write_text("OPSWATCH_INTERVAL=10s\nthis line has no equals sign\n")
        process.send_signal(signal.SIGHUP)
        async with asyncio.timeout(WAIT_S):
            failed = await daemon.wait_for("reload_failed")
        assert failed["error"] == (f"OPSWATCH_ENV_FILE: {env_file} line 2: expected NAME=value")
        assert process.returncode is None
        assert _http((await _get(port, "/status"))["checks"]) == ["http:api", "http:web"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 200
    finally:
        code = await daemon.stop()
    assert code == 0
    assert daemon.events[-1]["event"] == "daemon_stopped"


async def _get(port: int, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        body: dict[str, Any] = await response.json()
        return body
