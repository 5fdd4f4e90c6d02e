"""``opswatch maintenance list|add|delete`` against a running daemon's API (on a free port),
with a recurring window from the environment; ``check-config`` lists the windows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from opswatch.daemon.app import App
from opswatch.daemon.cli import main
from opswatch.daemon.configure import load_config
from opswatch.model import utcnow
from tests.conftest import free_port

TOKEN = "cli-s3cret-token"
WINDOW = "cron=0 2 1-7 * SUN; duration=4h; tz=Europe/Berlin; match=check=~postgres:.*"


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    environ = {
        "OPSWATCH_CHECKS": "host",
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": f"127.0.0.1:{free_port()}",
        "OPSWATCH_API_TOKEN": TOKEN,
        "OPSWATCH_MAINTENANCE_DB": WINDOW,
    }
    for name, value in environ.items():  # the CLI reads the same configuration
        monkeypatch.setenv(name, value)
    return environ


@pytest.fixture
async def daemon(environ: dict[str, str]) -> AsyncIterator[App]:
    app = App(load_config(environ))
    with capture_logs():
        await app.open()
        await app.api.start()
        app._serving = True
    yield app
    with capture_logs():  # main() configured logging onto a stream captured by then closed
        await app.stop()


async def _maintenance(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["maintenance", *args])
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    return code, out, err


ADD = ("add", "--name", "db-upgrade", "--match", "check=~postgres:.*", "--comment", "upgrade")


async def test_list_shows_the_recurring_window_and_its_next_occurrences(
    daemon: App, capsys: pytest.CaptureFixture[str]
) -> None:
    del daemon
    code, out, _ = await _maintenance(capsys, "list", "--next", "2")
    assert code == 0
    header, first, second = out.splitlines()
    assert header == (
        "db  recurring  closed  cron=0 2 1-7 * SUN; duration=4h; tz=Europe/Berlin; "
        "match=check=~postgres:.*"
    )
    for line in (first, second):  # UTC, then the window's own zone
        assert line.startswith("  20")
        assert "(Sun " in line
        assert " 02:00 CE" in line
        assert " 06:00 CE" in line


async def test_add_list_and_delete_a_one_off_window(
    daemon: App, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await _maintenance(capsys, *ADD, "--duration", "2h", "--author", "ana")
    assert code == 0
    words = out.split()
    assert (words[0], words[2], words[3], words[5]) == (
        "maintenance",
        "db-upgrade",
        "from",
        "until",
    )
    window_id = words[1]
    (window,) = daemon.maintenance.muter.one_off(utcnow())
    assert (window.id, window.created_by, window.comment) == (window_id, "ana", "upgrade")
    assert window.ends_at - window.starts_at == timedelta(hours=2)

    code, out, _ = await _maintenance(capsys, "list", "--next", "1")
    lines = out.splitlines()
    assert (
        lines[2]
        == f"db-upgrade  one-off {window_id}  open  match=check=~postgres:.*  by ana: upgrade"
    )

    code, out, _ = await _maintenance(capsys, "delete", window_id, "--author", "bob")
    assert (code, out) == (0, f"maintenance {window_id} db-upgrade deleted\n")
    assert daemon.maintenance.muter.one_off(utcnow()) == []


async def test_refusals_print_one_line_and_exit_non_zero(
    daemon: App, capsys: pytest.CaptureFixture[str]
) -> None:
    del daemon
    code, _, err = await _maintenance(capsys, "delete", "nope")
    assert (code, err) == (
        1,
        "opswatch: the daemon answered 404: no one-off maintenance window 'nope'\n",
    )
    code, _, err = await _maintenance(capsys, *ADD, "--end", "2020-01-01T00:00:00+00:00")
    assert code == 1
    assert err.startswith("opswatch: the daemon answered 400: ends_at: must be after starts_at")
    code, _, err = await _maintenance(capsys, *ADD, "--duration", "1h", "--start", "now")
    assert code == 2
    assert err.startswith("opswatch: --start: expected an ISO 8601 time with a timezone")
    code, _, err = await _maintenance(capsys, "list", "--next", "99")
    assert code == 2
    assert err.startswith("opswatch: --next: expected a whole number from 1 to 50")


async def test_the_cli_says_so_when_the_daemon_does_not_answer(
    environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await _maintenance(capsys, "list")
    assert code == 1
    assert err.startswith(f"opswatch: http://{environ['OPSWATCH_API_LISTEN']}/api/v1/maintenance")


def test_check_config_shows_the_windows(
    environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    del environ
    assert main(["check-config"]) == 0
    (window,) = json.loads(capsys.readouterr().out)["maintenance"]
    assert (window["name"], window["cron"], window["tz"]) == (
        "db",
        "0 2 1-7 * SUN",
        "Europe/Berlin",
    )
    assert len(window["next"]) == 3


def test_a_malformed_window_stops_with_exit_2_and_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "OPSWATCH_MAINTENANCE_DB", "cron=0 2 * * *; duration=4h; tz=Mars/Base; match=rule=x"
    )
    assert main(["check-config"]) == 2
    assert capsys.readouterr().err == (
        "opswatch: configuration error: OPSWATCH_MAINTENANCE_DB: tz: unknown time zone "
        "'Mars/Base' (an IANA name: UTC, Europe/Berlin)\n"
    )
