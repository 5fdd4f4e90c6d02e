"""``opswatch silence add|list|expire`` against a running daemon's API (on a free port)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from opswatch.daemon.app import App
from opswatch.daemon.cli import main
from opswatch.daemon.configure import load_config
from opswatch.model import Sample, utcnow
from tests.conftest import free_port

TOKEN = "cli-s3cret-token"


@pytest.fixture
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    environ = {
        "OPSWATCH_CHECKS": "host",
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": f"127.0.0.1:{free_port()}",
        "OPSWATCH_API_TOKEN": TOKEN,
    }
    for name, value in environ.items():  # the CLI reads the same configuration
        monkeypatch.setenv(name, value)
    app = App(load_config(environ))
    with capture_logs():
        await app.open()
        await app.api.start()
        app._serving = True
        samples = [
            Sample("host", "host.disk_used_percent", v, utcnow(), {"mountpoint": m})
            for m, v in {"/srv": 97.0, "/": 97.0}.items()
        ]
        await app.cycle.process("host", samples, None, 0.0)
    yield app
    with capture_logs():  # main() configured logging onto a stream captured by then closed
        await app.stop()


async def _silence(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["silence", *args])
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    return code, out, err


ADD = ("add", "--match", "rule=disk_full", "--match", "mountpoint=~/s.*", "--comment", "swap")


async def test_add_dry_run_list_and_expire_a_silence(
    daemon: App, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await _silence(capsys, *ADD, "--duration", "2h", "--author", "ana", "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        "would silence 1 active alert(s)",
        "  disk_full  host  mountpoint=/srv",
    ]
    assert daemon.silences.muter.listed(utcnow()) == []

    code, out, _ = await _silence(capsys, *ADD, "--duration", "2h", "--author", "ana")
    assert code == 0
    words = out.split()
    assert words[0] == "silence"
    assert words[2:4] == ["active", "until"]
    silence_id = words[1]
    (silence,) = daemon.silences.muter.listed(utcnow())
    assert (silence.id, silence.created_by, silence.comment) == (silence_id, "ana", "swap")

    code, out, _ = await _silence(capsys, "list")
    header, row = out.splitlines()
    assert header.split() == ["ID", "STATE", "ENDS", "BY", "MATCHERS", "COMMENT"]
    assert row.split()[:2] == [silence_id, "active"]
    assert row.split()[3:] == ["ana", "rule=disk_full,mountpoint=~/s.*", "swap"]

    code, out, _ = await _silence(capsys, "expire", silence_id, "--author", "bob")
    assert code == 0
    assert out.startswith(f"silence {silence_id} expired at ")
    code, out, _ = await _silence(capsys, "list")
    assert out.splitlines()[1].split()[1] == "expired"


async def test_refusals_print_one_line_and_exit_non_zero(
    daemon: App, capsys: pytest.CaptureFixture[str]
) -> None:
    del daemon
    code, _, err = await _silence(capsys, "expire", "nope")
    assert (code, err) == (1, "opswatch: the daemon answered 404: no silence 'nope'\n")
    code, _, err = await _silence(
        capsys, "add", "--match", "disk_full", "--duration", "1h", "--comment", "c"
    )
    assert code == 1
    assert err.startswith("opswatch: the daemon answered 400: matchers 'disk_full': expected")
    code, _, err = await _silence(capsys, *ADD, "--duration", "soon")
    assert code == 2
    assert err.startswith("opswatch: --duration: expected a duration such as 30s")
    code, _, err = await _silence(capsys, *ADD, "--end", "2030-01-01T00:00:00")
    assert code == 2
    assert err.startswith("opswatch: --end: expected an ISO 8601 time with a timezone")
    code, out, _ = await _silence(capsys, "list")
    assert (code, out) == (0, "no silences\n")
