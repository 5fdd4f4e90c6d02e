"""The daemon's cycle: broken collectors are data, health reports a stalled scheduler."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from structlog.testing import capture_logs

from opswatch.collectors.base import Collector
from opswatch.config import Env
from opswatch.daemon.app import App
from opswatch.daemon.cli import main
from opswatch.daemon.configure import AppConfig, load_config
from opswatch.model import Clock, Sample
from tests.conftest import ManualClock


class Broken:
    """A collector whose library raised (the daemon must survive it)."""

    name: ClassVar[str] = "broken"

    def __init__(self, check: str, error: BaseException | None) -> None:
        self.check = check
        self.error = error
        self.release = asyncio.Event()

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[Collector]:
        return []

    async def collect(self) -> list[Sample]:
        if self.error is not None:
            raise self.error
        await self.release.wait()  # hangs until the test releases it
        return []

    async def close(self) -> None:
        self.release.set()

    def describe(self) -> dict[str, str]:
        return {}


def _config(tmp_path: Path, collectors: Sequence[Collector], **environ: str) -> AppConfig:
    base = load_config({"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"), **environ})
    return dataclasses.replace(base, collectors=tuple(collectors))


async def test_a_raising_collector_gives_up_zero_and_a_logged_traceback(
    tmp_path: Path, clock: ManualClock
) -> None:
    broken = Broken("broken:db", RuntimeError("socket exploded"))
    app = App(_config(tmp_path, [broken]), clock=clock)
    await app.open()
    try:
        with capture_logs() as logs:
            await app.cycle.run("broken:db")
        (status,) = app.checks.statuses().values()
        (sample,) = status.samples
        assert (sample.metric, sample.value, dict(sample.labels)) == (
            "broken.up",
            0.0,
            {"target": "db"},
        )
        assert status.error == "RuntimeError: socket exploded"
        failed = [entry for entry in logs if entry["event"] == "collect_failed"]
        assert failed[0]["check"] == "broken:db"
        assert failed[0]["exc_info"] is True
        (finished,) = [entry for entry in logs if entry["event"] == "collect_finished"]
        assert finished["error"] == "RuntimeError: socket exploded"
    finally:
        await app.stop()


async def test_a_hanging_collector_times_out_as_down(tmp_path: Path, clock: ManualClock) -> None:
    hanging = Broken("broken:slow", None)
    config = _config(tmp_path, [hanging], OPSWATCH_INTERVAL="1s", OPSWATCH_CHECK_TIMEOUT="100ms")
    app = App(config, clock=clock)
    await app.open()
    try:
        await asyncio.wait_for(app.cycle.run("broken:slow"), timeout=5)
        status = app.checks.statuses()["broken:slow"]
        assert status.error == "timed out after 0.1s"
        assert [s.value for s in status.samples] == [0.0]
    finally:
        await app.stop()


async def test_health_turns_unhealthy_when_a_check_is_late(
    tmp_path: Path, clock: ManualClock
) -> None:
    app = App(_config(tmp_path, [Broken("broken:x", RuntimeError("x"))]), clock=clock)
    await app.start()
    try:
        await app.cycle.run("broken:x")
        assert app.checks.health().healthy
        clock.advance(2 * 30 + 10 + 1)  # two intervals and the check timeout
        health = app.checks.health()
        assert not health.healthy
        assert health.reason == "check broken:x is late"
    finally:
        await app.stop()
    assert not app.checks.health().healthy  # a stopped scheduler is never healthy


def test_once_prints_host_samples_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(tmp_path / "never.sqlite3"))
    monkeypatch.setenv("OPSWATCH_RULE_DISK_FULL_WARNING", "0.001")
    monkeypatch.setenv("OPSWATCH_RULE_DISK_FULL_WARNING_CLEAR", "0")
    assert main(["once"]) == 0
    out = capsys.readouterr().out
    assert "host.cpu_percent" in out
    assert "disk_full" in out  # a 0.001 % threshold fires at once: debounce is lifted
    assert not (tmp_path / "never.sqlite3").exists()
