"""``opswatch status`` against a running daemon: the summary, and its exit status."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from tenacity import wait_none

from opswatch.daemon.app import App
from opswatch.daemon.cli import main
from opswatch.daemon.configure import load_config
from opswatch.daemon.status import api_url, human_duration
from opswatch.notifiers.outbox import RetryPolicy
from tests.conftest import ManualClock, free_port
from tests.peers import Receiver

FAST = RetryPolicy(attempts=2, total_seconds=5, wait=wait_none())
WAIT_S = 15.0


@pytest.fixture
async def webhook() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


def _environ(tmp_path: Path, webhook: Receiver, port: int, target: str) -> dict[str, str]:
    return {
        "OPSWATCH_CHECKS": "host,http",
        "OPSWATCH_HTTP_TARGETS": f"api={target}",
        "OPSWATCH_HTTP_TIMEOUT": "500ms",
        "OPSWATCH_RETRY_INTERVAL": "500ms",
        "OPSWATCH_WEBHOOK_URL": f"{webhook.url}/hook",
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": f"127.0.0.1:{port}",
    }


def _use(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    """The CLI reads the same configuration as the daemon."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


@contextlib.asynccontextmanager
async def _running(environ: dict[str, str]) -> AsyncIterator[App]:
    """A started daemon, its log lines captured (stdout holds what the command printed)."""
    app = App(load_config(environ), retry_policy=FAST)
    with capture_logs():
        await app.start()
        try:
            yield app
        finally:
            await app.stop()


async def _status(*args: str) -> int:
    """``opswatch status`` in a thread: it blocks on HTTP while the daemon answers here.
    The daemon's log lines are captured, so stdout holds only what the command printed."""
    return await asyncio.to_thread(main, ["status", *args])


async def test_status_summarises_checks_alerts_and_outbox_of_a_healthy_daemon(
    webhook: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    environ = _environ(tmp_path, webhook, port, f"http://127.0.0.1:{free_port()}/")  # down
    _use(monkeypatch, environ)
    async with _running(environ) as app:
        await webhook.wait_for(1, timeout=WAIT_S)  # http_down fired and was delivered
        async with asyncio.timeout(WAIT_S):
            await app.checks.wait_for_runs("host")
        assert await _status() == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"opswatch at http://127.0.0.1:{port}: healthy, up ")
    (host,) = [line for line in lines if line.startswith("host ")]
    (api,) = [line for line in lines if line.startswith("http:api ")]
    assert host.split()[1] == "up"
    assert api.split()[1] == "DOWN"
    assert "ago" in api
    assert "ALERTS: 1 active" in lines
    (alert,) = [line for line in lines if "http_down" in line]
    assert alert.split()[:3] == ["CRITICAL", "http_down", "http:api"]
    assert " for " in alert
    assert lines[-1] == "OUTBOX: 0 pending, 0 failed"


async def test_status_exits_1_with_the_reason_when_the_daemon_is_unhealthy(
    webhook: Receiver,
    tmp_path: Path,
    clock: ManualClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    environ = _environ(tmp_path, webhook, port, f"{webhook.url}/health")
    app = App(load_config(environ), retry_policy=FAST, clock=clock)
    with capture_logs():
        await app.start()
        try:
            async with asyncio.timeout(WAIT_S):
                await app.checks.wait_for_runs("host")
                await app.checks.wait_for_runs("http:api")
            clock.advance(3600)  # no check has finished for an hour, as far as health can tell
            assert await _status("--url", f"http://127.0.0.1:{port}/") == 1
        finally:
            await app.stop()
    first = capsys.readouterr().out.splitlines()[0]
    assert "UNHEALTHY (check " in first
    assert "is late)" in first


def test_status_exits_1_and_says_so_when_nothing_answers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    monkeypatch.setenv("OPSWATCH_API_LISTEN", f"127.0.0.1:{port}")
    assert main(["status"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(
        f"opswatch status: cannot reach the daemon at http://127.0.0.1:{port}/healthz: "
    )


def test_status_exits_2_on_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_API_LISTEN", "nowhere")
    assert main(["status"]) == 2
    assert capsys.readouterr().err.startswith("opswatch: configuration error: OPSWATCH_API_LISTEN")


def test_the_api_address_is_reachable_from_this_host_even_when_listening_on_any() -> None:
    assert api_url(("0.0.0.0", 9184)) == "http://127.0.0.1:9184"
    assert api_url(("::", 9184)) == "http://[::1]:9184"
    assert api_url(("10.0.0.5", 80)) == "http://10.0.0.5:80"


def test_durations_read_like_a_person_would_say_them() -> None:
    assert [human_duration(s) for s in (0, 42, 312, 7380, 273600)] == [
        "0s",
        "42s",
        "5m 12s",
        "2h 3m",
        "3d 4h",
    ]


async def test_status_beyond_loopback_sends_the_read_token_and_says_when_it_is_missing(
    webhook: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    environ = {
        **_environ(tmp_path, webhook, port, f"{webhook.url}/health"),
        "OPSWATCH_API_LISTEN": f"0.0.0.0:{port}",
        "OPSWATCH_API_READ_TOKEN": "s3cret-read-token",
    }
    url = f"http://127.0.0.1:{port}"
    async with _running(environ):
        assert await _status("--url", url) == 1
        refused = capsys.readouterr().err
        monkeypatch.setenv("OPSWATCH_API_READ_TOKEN", "s3cret-read-token")
        assert await _status("--url", url) == 0
    assert "answered 401: a bearer token is required (set OPSWATCH_API_READ_TOKEN)" in refused
    assert capsys.readouterr().out.startswith(f"opswatch at {url}: healthy")
