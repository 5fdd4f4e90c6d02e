"""A PostgreSQL state store that goes away (a restart, an outage) is ridden through: the
daemon keeps running, says so once, and resumes when the store is back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.conftest import free_port
from tests.pgcluster import private_cluster

WAIT_S = 60.0


async def _until(
    stream: asyncio.StreamReader, done: Callable[[str], bool], seen: list[str]
) -> bool:
    async with asyncio.timeout(WAIT_S):
        while line := (await stream.readline()).decode():
            seen.append(line)
            if done(line):
                return True
    return False


def _event(name: str) -> Callable[[str], bool]:
    def match(line: str) -> bool:
        try:
            event: object = json.loads(line).get("event")
        except ValueError:
            return False
        return event == name

    return match


async def _health(port: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
        return r.status


def _environ(dsn: str, port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
        "OPSWATCH_STATE_URL": dsn,
        "OPSWATCH_INTERVAL": "1s",
        "OPSWATCH_RETRY_INTERVAL": "1s",
        "OPSWATCH_API_LISTEN": f"127.0.0.1:{port}",
        "OPSWATCH_LOG_FORMAT": "json",
        "OPSWATCH_TCP_TARGETS": f"gone=127.0.0.1:{free_port()}",
    }


async def _daemon(environ: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "opswatch.daemon.cli",
        "run",
        env=environ,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _stop(process: asyncio.subprocess.Process, seen: list[str]) -> list[str]:
    """SIGTERM; returns the JSON events of the whole run after checking exit status 0."""
    assert process.stdout is not None
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    rest = await asyncio.wait_for(process.stdout.read(), WAIT_S)
    seen.extend(rest.decode().splitlines(keepends=True))
    code = await process.wait()
    assert code == 0, "".join(seen[-30:])
    return [json.loads(x).get("event") for x in seen if x.startswith("{")]


async def test_a_state_store_restart_is_ridden_through_and_reported_once(tmp_path: Path) -> None:
    with private_cluster() as cluster:
        port = free_port()
        process = await _daemon(_environ(cluster.dsn("pw"), port), tmp_path)
        assert process.stdout is not None
        seen: list[str] = []
        try:
            assert await _until(process.stdout, _event("daemon_ready"), seen), seen
            cluster.stop()
            assert await _until(process.stdout, _event("state_store_unavailable"), seen), seen
            assert await _health(port) == 503
            cluster.start()
            assert await _until(process.stdout, _event("state_store_available"), seen), seen
            assert process.returncode is None
        finally:
            events = await _stop(process, seen)
        assert events.count("state_store_unavailable") == 1
        assert "task_crashed" not in events
        # one line per outage: no library traceback per reconnection attempt either
        assert [x for x in seen if not x.startswith("{")] == []


async def test_a_start_while_the_state_store_is_down_waits_for_it(tmp_path: Path) -> None:
    with private_cluster() as cluster:
        cluster.stop()
        process = await _daemon(_environ(cluster.dsn("pw"), free_port()), tmp_path)
        assert process.stdout is not None
        seen: list[str] = []
        try:
            assert await _until(process.stdout, _event("state_store_unavailable"), seen), seen
            assert process.returncode is None
            cluster.start()
            assert await _until(process.stdout, _event("daemon_ready"), seen), seen
        finally:
            events = await _stop(process, seen)
        assert events.count("state_store_unavailable") == 1
        assert "state_store_available" in events


async def test_sigterm_while_waiting_for_the_state_store_exits_0(tmp_path: Path) -> None:
    with private_cluster() as cluster:
        cluster.stop()
        process = await _daemon(_environ(cluster.dsn("pw"), free_port()), tmp_path)
        assert process.stdout is not None
        seen: list[str] = []
        assert await _until(process.stdout, _event("state_store_unavailable"), seen), seen
        events = await _stop(process, seen)
        assert events[-1] == "daemon_stopped"
