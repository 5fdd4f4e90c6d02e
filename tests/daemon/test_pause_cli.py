"""``opswatch pause|resume [CHECK...]`` against a running daemon's API (on a free port), and
what ``opswatch status`` says of a pause."""

from __future__ import annotations

import asyncio

import pytest

from opswatch.daemon.app import App
from opswatch.daemon.cli import main
from opswatch.model import utcnow

from .test_silence_cli import TOKEN, daemon

__all__ = ["daemon"]  # the running daemon the CLI talks to


async def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    return code, out, err


async def test_pause_and_resume_one_check_then_every_check(
    daemon: App, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await _main(capsys, "pause", "host", "--author", "ana", "--comment", "swap")
    assert code == 0
    (pause,) = daemon.pauses.muter.pauses()
    assert (pause.check, pause.by, pause.comment) == ("host", "ana", "swap")
    assert out == f"paused: host by ana since {pause.since.isoformat()}: swap\n"
    (alert, _) = daemon.tracker.active()
    assert daemon.mutes.muting(alert, utcnow()) == ["paused by ana"]

    code, out, _ = await _main(capsys, "status")
    assert out.splitlines()[1] == f"paused: host by ana since {pause.since.isoformat()}: swap"

    code, out, _ = await _main(capsys, "pause", "--author", "bob")
    assert code == 0
    assert out.splitlines()[0].startswith("paused: every check by bob since ")
    code, out, _ = await _main(capsys, "resume", "--author", "carl")
    assert (code, out) == (0, "nothing is paused\n")
    events = await daemon.pauses.events()
    assert [(e.action.value, e.checks, e.by) for e in events] == [
        ("resumed", (), "carl"),
        ("paused", (), "bob"),
        ("paused", ("host",), "ana"),
    ]


async def test_a_refused_pause_prints_the_daemons_one_line_and_exits_1(
    daemon: App, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = await _main(capsys, "pause", "http:nope", "--author", "ana")
    assert code == 1
    assert err.startswith("opswatch: the daemon answered 400: checks: no check 'http:nope'")
    monkeypatch.setenv("OPSWATCH_API_TOKEN", "wrong-token")
    code, _, err = await _main(capsys, "resume")
    assert (code, err) == (1, "opswatch: the daemon answered 403: this needs the write token\n")
    assert daemon.pauses.muter.pauses() == []
