"""``opswatch runbook RULE`` and ``opswatch runbook --export DIR``: Markdown from the
configuration and the state store, read directly (no daemon runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from opswatch.daemon.cli import main
from opswatch.model import CycleRecord, Severity
from opswatch.state.sqlite import SQLiteStore
from tests.notifiers.conftest import transition
from tests.runbooks.conftest import PASSWORD, environ


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in environ(tmp_path).items():
        monkeypatch.setenv(name, value)
    return tmp_path / "s.sqlite3"


async def _seed(path: Path) -> None:
    fired = transition(
        "http_down", check="http:api", severity=Severity.CRITICAL, summary="http:api is down"
    )
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.record(CycleRecord([fired.alert], [], [fired], []), fired.at)
    finally:
        await store.close()


async def test_runbook_prints_a_rules_markdown_with_what_the_store_holds(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(env)

    code = await _main_in_thread(["runbook", "http_down"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("# Runbook: http_down\n")
    assert "2026-01-01T12:00:00Z fired critical on http:api: http:api is down" in out
    assert "systemctl status nginx.service --no-pager" in out
    assert PASSWORD not in out


def test_export_writes_one_markdown_file_per_enabled_rule(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "wiki" / "runbooks"

    assert main(["runbook", "--export", str(target)]) == 0

    files = sorted(p.name for p in target.iterdir())
    assert "disk_full.md" in files
    assert "http_down.md" in files
    assert capsys.readouterr().out == f"wrote {len(files)} runbooks to {target}\n"
    texts = [p.read_text() for p in target.iterdir()]
    assert all(text.startswith("# Runbook: ") for text in texts)
    assert not any(PASSWORD in text for text in texts)


@pytest.mark.parametrize(
    ("argv", "code", "said"),
    [
        (["runbook", "no_such_rule"], 2, "no enabled rule 'no_such_rule'"),
        (["runbook"], 2, "give a RULE or --export DIR"),
        (["runbook", "cpu_high", "--export", "x"], 2, "give a RULE or --export DIR"),
    ],
)
def test_a_bad_argument_exits_2_with_one_line(
    env: Path, argv: list[str], code: int, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code

    captured = capsys.readouterr()
    assert captured.out == ""
    assert said in captured.err


def test_an_export_directory_that_cannot_be_written_exits_1(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    assert main(["runbook", "--export", str(blocker / "sub")]) == 1

    assert "cannot write" in capsys.readouterr().err


async def _main_in_thread(argv: list[str]) -> int:
    """``main`` runs its own event loop: not inside this test's."""
    return await asyncio.to_thread(main, argv)
