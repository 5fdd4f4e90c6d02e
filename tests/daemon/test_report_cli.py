"""``opswatch report [--since 24h|7d]``: the report read from the state file, as text."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

import pytest

from opswatch.daemon.cli import main
from opswatch.model import CycleRecord, Severity, utcnow
from opswatch.state.sqlite import SQLiteStore
from tests.notifiers.conftest import transition


async def _cli(monkeypatch: pytest.MonkeyPatch, state: Path, *args: str) -> int:
    for name in [n for n in os.environ if n.startswith("OPSWATCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(state))
    monkeypatch.setenv("OPSWATCH_LOG_LEVEL", "error")
    return await asyncio.to_thread(main, ["report", *args])


async def _seed(state: Path) -> None:
    """A critical disk alert firing for 3 hours."""
    store = SQLiteStore(state)
    await store.open()
    try:
        started = utcnow() - timedelta(hours=3)
        fired = transition("disk_full", severity=Severity.CRITICAL, started_at=started)
        await store.record(CycleRecord([fired.alert], [], [fired], []), started)
    finally:
        await store.close()


async def test_the_report_prints_the_day_and_exits_1_on_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s.sqlite3"
    await _seed(state)

    code = await _cli(monkeypatch, state)

    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0].startswith("[FAIL] opswatch daily health report for ")
    assert out[1].endswith("(1 d)")
    assert out[2].startswith("SUMMARY FAIL: 2 checks (1 pass, 0 warn, 1 fail), 1 alerts")
    assert "  [FAIL] host: critical: disk_full firing, 100.00 % available (from alerts)" in out
    assert any(
        line.startswith("  [FAIL] CRITICAL disk_full on host: CPU busy (started ") for line in out
    )


async def test_since_7d_prints_the_weekly_review_and_a_bad_since_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s.sqlite3"

    weekly = await _cli(monkeypatch, state, "--since", "7d")
    out = capsys.readouterr().out.splitlines()
    bad = await _cli(monkeypatch, state, "--since", "a week")
    err = capsys.readouterr().err

    assert weekly == 0
    assert out[0].startswith("[PASS] opswatch weekly capacity review for ")
    assert out[1].endswith("(7 d)")
    assert "SCALING ADVICE" in out
    assert bad == 2
    assert err.strip() == (
        "opswatch: --since: expected a duration such as 30s, 500ms, 5m or 1h, got 'a week'"
    )
