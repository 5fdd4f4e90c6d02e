"""``opswatch capacity`` against a running daemon: one line per forecast, soonest first."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from opswatch.capacity.history import STEP
from opswatch.daemon.app import App
from opswatch.daemon.cli import main
from opswatch.daemon.configure import load_config
from opswatch.model import CycleRecord, Rollup, Sample
from tests.conftest import ManualClock

DAY = 86400


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        "OPSWATCH_INTERVAL": "1h",
        **extra,
    }


async def _seed_rising_disk(app: App, clock: ManualClock) -> None:
    """Eight days of /data rising 2 % a day to 60 % now: full in 20 days."""
    labels = {"mountpoint": "/data"}
    sample = Sample("host", "host.disk_used_percent", 60.0, clock.now, labels)
    await app.store.record(CycleRecord((), (), (), (), (sample,)), clock.now)
    (series,) = [s for s in await app.store.history_series() if s.labels == labels]
    end = int(clock.now.timestamp()) // STEP * STEP
    buckets = 8 * DAY // STEP
    rows = []
    for i in range(buckets):
        value = 60.0 - 2.0 * (buckets - i - 1) * STEP / DAY
        rows.append(Rollup(series.id, end - (buckets - i) * STEP, value, value, value, value, 10))
    await app.store.history_store_rollups(rows, end)


async def _cli(monkeypatch: pytest.MonkeyPatch, url: str) -> int:
    for name in [n for n in os.environ if n.startswith("OPSWATCH_")]:
        monkeypatch.delenv(name)
    return await asyncio.to_thread(main, ["capacity", "--url", url])


async def test_the_forecasts_are_printed_one_line_each_with_their_range(
    tmp_path: Path,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = App(load_config(_environ(tmp_path), clock), clock=clock)
    with capture_logs():  # stdout holds only what the command printed
        await app.start()
        try:
            await _seed_rising_disk(app, clock)
            assert await _cli(monkeypatch, f"http://127.0.0.1:{app.api.port}") == 0
        finally:
            await app.stop()
    header, line, _, advice = capsys.readouterr().out.splitlines()
    assert advice == "no scaling advice: no trigger held over the last day and week"
    assert header.split()[:2] == ["RESOURCE", "WHERE"]
    assert line.startswith("disk space")
    assert "host mountpoint=/data" in line
    assert "+2" in line
    assert "20d 0h - 20d 0h - 20d 0h" in line


async def test_a_daemon_without_history_or_unreachable_exits_1(
    tmp_path: Path,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = App(load_config(_environ(tmp_path, OPSWATCH_HISTORY="off"), clock), clock=clock)
    await app.start()
    try:
        assert await _cli(monkeypatch, f"http://127.0.0.1:{app.api.port}") == 1
    finally:
        await app.stop()
    assert "keeps no metric history (OPSWATCH_HISTORY=off)" in capsys.readouterr().err
    assert await _cli(monkeypatch, f"http://127.0.0.1:{app.api.port}") == 1
    assert "cannot reach the daemon" in capsys.readouterr().err
