"""``opswatch heartbeats [NAME]`` against a running daemon's API (on a free port)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from opswatch.daemon.app import App
from opswatch.daemon.cli import main
from opswatch.daemon.configure import load_config
from tests.conftest import ManualClock, free_port

TOKEN = "cli-s3cret-token"
KEY = "cli-backup-key-0123456789"


@pytest.fixture
async def daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> AsyncIterator[App]:
    environ = {
        "OPSWATCH_CHECKS": "heartbeat",
        "OPSWATCH_HEARTBEAT_TARGETS": "backup=1d/1h, batch=cron:0 3 * * *;tz=UTC/30m",
        "OPSWATCH_HEARTBEAT_BACKUP_KEY": KEY,
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": f"127.0.0.1:{free_port()}",
        "OPSWATCH_API_TOKEN": TOKEN,
    }
    for name, value in environ.items():  # the CLI reads the same configuration
        monkeypatch.setenv(name, value)
    app = App(load_config(environ, clock), clock=clock)
    with capture_logs():
        await app.open()
        await app.api.start()
        app._serving = True
    yield app
    with capture_logs():  # main() configured logging onto a stream captured by then closed
        await app.stop()


async def _heartbeats(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["heartbeats", *args])
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    assert KEY not in out + err
    return code, out, err


async def test_heartbeats_lists_each_with_its_status_and_exits_3_when_one_failed(
    daemon: App, capsys: pytest.CaptureFixture[str], clock: ManualClock
) -> None:
    code, out, _ = await _heartbeats(capsys)
    assert code == 0
    header, backup, batch = out.splitlines()
    assert header.split()[:3] == ["NAME", "STATUS", "SCHEDULE"]
    assert backup.split()[:4] == ["backup", "new", "1d", "1h"]
    assert batch.split()[:2] == ["batch", "new"]

    url = f"http://127.0.0.1:{daemon.api.port}/ping/backup/1?key={KEY}"
    async with aiohttp.ClientSession() as http, http.post(url, data=b"tar: oops\n") as r:
        assert r.status == 200
    clock.advance(30)

    code, out, _ = await _heartbeats(capsys)
    assert code == 3
    assert out.splitlines()[1].split()[:2] == ["backup", "failed"]
    code, out, _ = await _heartbeats(capsys, "backup", "--limit", "5")
    assert code == 3
    assert out.splitlines()[-1] == "2026-01-01T12:00:00+00:00  fail  1  -  tar: oops"


async def test_an_unknown_heartbeat_or_an_absent_daemon_exits_1_with_one_line(
    daemon: App, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await _heartbeats(capsys, "nosuch")
    assert (code, err) == (1, "opswatch: the daemon answered 404: no heartbeat 'nosuch'\n")
    code, _, err = await _heartbeats(capsys, "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert err.startswith("opswatch: http://127.0.0.1:")
