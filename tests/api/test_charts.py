"""``GET /charts/{check}/{metric}.svg`` on a running daemon (real SQLite store, injected
clock), and the SVG pieces of the status page."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from opswatch.api.charts import availability_bar, chart, sparkline
from opswatch.capacity.history import STEP
from opswatch.capacity.resources import SeriesHistory
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import CycleRecord, MetricSeries, RawPoint, Rollup, Sample
from tests.api.errorshape import message
from tests.conftest import ManualClock

SVG = "{http://www.w3.org/2000/svg}"


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


async def _get(app: App, path: str) -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{app.api.port}{path}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
        if response.status >= 400:  # the error shape: its message
            return response.status, response.content_type, message(response.status, text)
        return response.status, response.content_type, text


async def _two_disks(app: App, clock: ManualClock) -> None:
    """Two days of 5-minute roll-ups of two disks' usage, rising."""
    for mountpoint in ("/", "/data"):
        sample = Sample(
            "host", "host.disk_used_percent", 50.0, clock.now, {"mountpoint": mountpoint}
        )
        await app.store.record(CycleRecord((), (), (), (), (sample,)), clock.now)
    epoch = int(clock.now.timestamp())
    count = 2 * 86400 // STEP
    rows = [
        Rollup(s.id, epoch + i * STEP, 40.0 + i / 100, 42.0 + i / 100, 41.0 + i / 100, 42.0, 10)
        for s in await app.store.history_series("host")
        for i in range(count)
    ]
    await app.store.history_store_rollups(rows, epoch + count * STEP)
    clock.now += timedelta(seconds=count * STEP)


async def test_a_chart_is_valid_svg_with_a_line_a_band_and_a_legend_per_series(
    app: App, clock: ManualClock
) -> None:
    await _two_disks(app, clock)
    status, content_type, text = await _get(app, "/charts/host/host.disk_used_percent.svg?since=2d")
    assert (status, content_type) == (200, "image/svg+xml")
    root = ET.fromstring(text.encode())
    assert root.tag == f"{SVG}svg"
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    assert all(len(line.attrib["points"].split()) >= 100 for line in lines)
    assert len(root.findall(f"{SVG}polygon")) == 2  # the min-max bands
    texts = [t.text or "" for t in root.findall(f"{SVG}text")]
    assert "mountpoint=/" in texts
    assert "mountpoint=/data" in texts
    assert texts[0].startswith("host host.disk_used_percent since ")


async def test_a_recent_range_draws_the_raw_samples(app: App, clock: ManualClock) -> None:
    for _ in range(3):
        await app.cycle.run("host")
        clock.advance(30)
    status, _, text = await _get(app, "/charts/host/host.cpu_percent.svg?since=10m")
    assert status == 200
    (line,) = ET.fromstring(text.encode()).findall(f"{SVG}polyline")
    assert len(line.attrib["points"].split()) >= 2


async def test_an_unknown_series_answers_404_naming_it(app: App) -> None:
    await app.cycle.run("host")
    assert await _get(app, "/charts/host/host.nothing.svg") == (
        404,
        "application/json",
        "no metric history for check 'host' metric 'host.nothing' "
        "(GET /api/v1/metrics/host lists its series)",
    )
    status, _, text = await _get(app, "/charts/http:gone/http.up.svg")
    assert status == 404
    assert "check 'http:gone' metric 'http.up'" in text


async def test_a_bad_since_is_refused_naming_it(app: App) -> None:
    status, _, text = await _get(app, "/charts/host/host.cpu_percent.svg?since=soon")
    assert status == 400
    assert text.startswith("since: expected a duration")


async def test_with_history_off_a_chart_answers_404_saying_so(
    tmp_path: Path, clock: ManualClock
) -> None:
    daemon = App(load_config(_environ(tmp_path, OPSWATCH_HISTORY="off"), clock), clock=clock)
    await daemon.start()
    try:
        assert await _get(daemon, "/charts/host/host.cpu_percent.svg") == (
            404,
            "application/json",
            "metric history is off (OPSWATCH_HISTORY=off)",
        )
        status, _, page = await _get(daemon, "/")
        assert status == 200
        assert "Key metrics" not in page
        assert "<svg" not in page
    finally:
        await daemon.stop()


def test_a_chart_escapes_its_labels_and_stays_valid_xml() -> None:
    hostile = '</text><script>alert("x")</script>&'
    series = MetricSeries(1, "http:a", "http.latency_seconds", {"target": hostile})
    history = SeriesHistory(series, [RawPoint(1, 0, 0.1), RawPoint(1, 30, 0.2)], ())
    text = chart(f"title {hostile}", [history])
    root = ET.fromstring(text.encode())
    assert root.find(f".//{SVG}script") is None
    assert [t.text for t in root.findall(f"{SVG}text")][-1] == f"target={hostile}"


def test_a_sparkline_spans_its_box_highest_at_the_top() -> None:
    svg = sparkline([(0.0, 1.0), (10.0, 3.0), (20.0, 2.0)], "x", width=100, height=20)
    root = ET.fromstring(svg.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))
    (line,) = root.findall(f"{SVG}polyline")
    points = [tuple(map(float, p.split(","))) for p in line.attrib["points"].split()]
    assert points == [(1.0, 18.0), (50.0, 2.0), (99.0, 10.0)]
    assert "polyline" not in sparkline([], "empty")


def test_an_availability_bar_draws_runs_and_titles_only_the_bad_days() -> None:
    days: list[float | None] = [None, None, 1.0, 1.0, 0.995, 0.5, 1.0]
    svg = availability_bar(days, datetime(2026, 1, 1, tzinfo=UTC))
    root = ET.fromstring(svg.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))
    shapes = [(p.attrib["class"], p.findtext(f"{SVG}title")) for p in root.findall(f"{SVG}path")]
    assert shapes == [
        ("n", None),
        ("g", None),
        ("w", "2026-01-05: 99.50%"),
        ("b", "2026-01-06: 50.00%"),
        ("g", None),
    ]
