"""``GET /api/v1/metrics/{check}`` and ``GET /api/v1/capacity`` on a running daemon whose
history was written by its own check runs and by the roll-up job, on an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from opswatch.capacity.history import STEP
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import CycleRecord, Rollup, Sample
from tests.api.errorshape import message
from tests.api.test_openapi import _conforms, _document
from tests.conftest import ManualClock


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        "OPSWATCH_INTERVAL": "1h",
        **extra,
    }


@pytest.fixture
async def app(tmp_path: Path, clock: ManualClock) -> AsyncIterator[App]:
    daemon = App(load_config(_environ(tmp_path), clock), clock=clock)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


async def _get(app: App, path: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{app.api.port}{path}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        if response.status >= 400:  # the error shape: its message
            return response.status, message(response.status, await response.text())
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def test_a_check_run_writes_its_samples_and_the_api_answers_them_raw(
    app: App, clock: ManualClock
) -> None:
    await app.cycle.run("host")
    clock.advance(30)
    await app.cycle.run("host")
    status, body = await _get(app, "/api/v1/metrics/host?metric=host.cpu_percent&since=10m")
    assert status == 200
    (series,) = body["series"]
    assert (body["check"], body["step"], series["metric"]) == ("host", "raw", "host.cpu_percent")
    assert [at for at, _ in series["points"]][-1] == int(clock.now.timestamp())
    assert len(series["points"]) >= 2
    status, every = await _get(app, "/api/v1/metrics/host")
    metrics = {s["metric"] for s in every["series"]}
    assert {"host.cpu_percent", "host.memory_percent", "host.disk_used_percent"} <= metrics
    assert "host.up" in metrics


async def test_a_longer_range_answers_rollups_merged_into_the_step(
    app: App, clock: ManualClock
) -> None:
    start = clock.now
    for i in range(24):  # two hours of one sample per 5 minutes, rising by one
        at = start + timedelta(seconds=i * STEP)
        sample = Sample("tcp:db", "tcp.connect_seconds", float(i), at, {"target": "db"})
        await app.store.record(CycleRecord((), (), (), (), (sample,)), at)
    # a bucket is rolled up once it has settled: an interval (1 h here) and a timeout after
    clock.now = start + timedelta(hours=3, minutes=15)
    await app.history.run_once()
    status, body = await _get(app, "/api/v1/metrics/tcp:db?since=4h&step=1h")
    assert status == 200
    assert body["step"] == 3600
    (series,) = body["series"]
    first, second = series["points"]
    epoch = int(start.timestamp())
    assert first == [epoch, 0.0, 11.0, 5.5, 11.0, 12]
    assert second[0] == epoch + 3600
    assert (second[1], second[2], second[5]) == (12.0, 23.0, 12)
    doc = await _document(f"http://127.0.0.1:{app.api.port}")
    answer = doc["paths"]["/api/v1/metrics/{check}"]["get"]["responses"]["200"]["content"]
    assert _conforms(doc, answer["application/json"]["schema"], body) == []


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("since=yesterday", "since: expected a duration"),
        ("since=2026-01-01T00:00:00", "since: expected a duration"),
        ("step=7m", "step: expected raw or a multiple of 5m"),
        ("step=0", "step: expected raw or a multiple of 5m"),
    ],
)
async def test_a_bad_query_is_refused_naming_the_parameter(
    app: App, query: str, problem: str
) -> None:
    await app.cycle.run("host")
    status, text = await _get(app, f"/api/v1/metrics/host?{query}")
    assert status == 400
    assert text.startswith(problem)


async def test_a_check_without_history_answers_404(app: App) -> None:
    status, text = await _get(app, "/api/v1/metrics/http:nowhere")
    assert (status, text) == (404, "no metric history for check 'http:nowhere'")


async def test_with_history_off_nothing_is_written_and_the_routes_say_so(
    tmp_path: Path, clock: ManualClock
) -> None:
    daemon = App(load_config(_environ(tmp_path, OPSWATCH_HISTORY="off"), clock), clock=clock)
    await daemon.start()
    try:
        await daemon.cycle.run("host")
        assert await daemon.store.history_series() == []
        status, text = await _get(daemon, "/api/v1/metrics/host")
        assert (status, text) == (404, "metric history is off (OPSWATCH_HISTORY=off)")
        assert await _get(daemon, "/api/v1/capacity") == (
            200,
            {"history": False, "forecasts": [], "advice": []},
        )
    finally:
        await daemon.stop()


async def test_the_capacity_route_lists_a_disk_filling_up_with_its_time_to_full(
    app: App, clock: ManualClock
) -> None:
    labels = {"mountpoint": "/data"}
    sample = Sample("host", "host.disk_used_percent", 50.0, clock.now, labels)
    await app.store.record(CycleRecord((), (), (), (), (sample,)), clock.now)
    (series,) = [s for s in await app.store.history_series() if s.labels == labels]
    epoch = int(clock.now.timestamp())
    days = 8 * 86400 // STEP
    # one percent a day, from 50 %: at 58 % after 8 days, full 42 days later
    rows = [
        Rollup(series.id, epoch + i * STEP, v, v, v, v, 10)
        for i in range(days)
        for v in [50.0 + (i + 1) * STEP / 86400]
    ]
    await app.store.history_store_rollups(rows, epoch + days * STEP)
    clock.now += timedelta(seconds=days * STEP)
    status, body = await _get(app, "/api/v1/capacity")
    assert status == 200
    (disk,) = [f for f in body["forecasts"] if f["labels"] == labels]
    assert (disk["rule"], disk["check"], disk["limit"]) == ("disk_full_forecast", "host", 100.0)
    assert disk["per_day"] == pytest.approx(1.0)
    assert disk["likely_s"] == pytest.approx(42 * 86400, rel=0.001)
    doc = await _document(f"http://127.0.0.1:{app.api.port}")
    schema = doc["paths"]["/api/v1/capacity"]["get"]["responses"]["200"]["content"]
    assert _conforms(doc, schema["application/json"]["schema"], body) == []
