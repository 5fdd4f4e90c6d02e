"""The daemon speaks sd_notify on a real datagram socket: READY after the first cycle,
WATCHDOG only while healthy, STOPPING on shutdown."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.daemon.sdnotify import SystemdNotifier
from tests.conftest import ManualClock


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield path, sock
    sock.close()


async def _next(sock: socket.socket, within: float = 5.0) -> bytes:
    async with asyncio.timeout(within):
        return await asyncio.get_running_loop().sock_recv(sock, 4096)


async def _until(sock: socket.socket, wanted: bytes) -> list[bytes]:
    received = [await _next(sock)]
    while wanted not in received[-1].split(b"\n"):
        received.append(await _next(sock))
    return received


async def test_ready_follows_the_first_cycle_and_watchdog_stops_when_checks_are_late(
    notify_socket: tuple[str, socket.socket], tmp_path: Path
) -> None:
    path, sock = notify_socket
    # real time, so that APScheduler does not count the first run as misfired
    clock = ManualClock(datetime.now(UTC))
    config = load_config(
        {"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"), "OPSWATCH_API_LISTEN": "127.0.0.1:0"}
    )
    app = App(config, clock=clock, systemd=SystemdNotifier(path, watchdog_interval=0.02))
    await app.start()
    try:
        before_ready = await _until(sock, b"READY=1")
        assert "host" in app.checks.statuses()  # READY=1 came after the first cycle
        assert all(b"READY=1" not in m for m in before_ready[:-1])
        await _until(sock, b"WATCHDOG=1")  # the heartbeat runs while healthy

        clock.advance(3600)  # every check is now an hour late: the daemon is stuck
        assert not app.checks.health().healthy
        # drain what was sent before the heartbeat saw it; a heartbeat that ignored health
        # would keep the socket busy every 20 ms, and this bounded drain would not end quiet
        late = []
        for _ in range(10):
            try:
                late.append(await _next(sock, within=0.1))
            except TimeoutError:
                break
        assert len(late) < 10, "WATCHDOG=1 kept coming while the daemon was unhealthy"
        with pytest.raises(TimeoutError):  # five heartbeats pass without a WATCHDOG=1
            await _next(sock, within=0.1)
    finally:
        await app.stop()
    assert b"STOPPING=1" in await _next(sock)
