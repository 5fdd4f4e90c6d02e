"""``GET /``, the status page: its content for a seeded state on a running daemon (real
SQLite store, injected clock), escaping, secrets, its size, and the page in headless
Chromium (a screenshot is kept under ``tests/artifacts/``)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from opswatch.alerts.silences import parse_matcher
from opswatch.api.pages import (
    BAR_DAYS,
    MAX_CHECKS,
    CheckLine,
    Incident,
    Spark,
    StatusView,
    listed,
    render,
)
from opswatch.capacity.history import STEP
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import (
    Alert,
    AlertState,
    CycleRecord,
    Forecast,
    Health,
    Labels,
    RecoveryOutcome,
    RecoveryResult,
    Rollup,
    Sample,
    Severity,
    TransitionKind,
)
from tests.conftest import REQUIRE_SERVICES, ManualClock, free_port

ARTIFACTS = Path(__file__).parents[1] / "artifacts"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
PASSWORD, TOKEN = "hunter2pw", "tok3n-in-query"
DAY = 86400


@dataclass
class Seeded:
    app: App
    base: str
    acked: str
    silence: str


async def _fire(app: App, clock: ManualClock, check: str) -> str:
    """Run ``check`` (its target refuses connections) until its alert fires."""
    for _ in range(6):
        for transition in await app.cycle.run(check):
            if transition.kind is TransitionKind.FIRED:
                return transition.alert.fingerprint
        clock.advance(60)
    raise AssertionError(f"{check} never fired")


async def _seed_rollups(
    app: App,
    check: str,
    metric: str,
    values: list[float],
    end: int,
    *,
    labels: Labels | None = None,
) -> None:
    """One roll-up per 5 minutes ending at ``end``, for the series of ``check`` ``metric``
    (with ``labels``, when given)."""
    (series,) = [
        s
        for s in await app.store.history_series(check)
        if s.metric == metric and labels in (None, dict(s.labels))
    ]
    start = end - len(values) * STEP
    rows = [Rollup(series.id, start + i * STEP, v, v, v, v, 10) for i, v in enumerate(values)]
    await app.store.history_store_rollups(rows, end)


@pytest.fixture
async def seeded(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Seeded]:
    """Three http targets that refuse connections: ``api`` acked, ``web`` silenced, ``old``
    fired and resolved by hand (an incident); 90 days of ``up`` for ``api`` with one bad day;
    a day of host CPU (written to the history: no host check runs)."""
    dead = f"127.0.0.1:{free_port()}"
    environ = {
        "OPSWATCH_CHECKS": "http",  # no host check: its rules would follow this machine
        "OPSWATCH_HTTP_TARGETS": (
            f"api=http://user:{PASSWORD}@{dead}/health?token={TOKEN},"
            f"web=http://{dead}/,old=http://{dead}/old"
        ),
        "OPSWATCH_HTTP_TIMEOUT": "500ms",
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        "OPSWATCH_INTERVAL": "1h",
    }
    app = App(load_config(environ, clock), clock=clock)
    await app.start()
    try:
        cpu_sample = Sample("host", "host.cpu_percent", 20.0, clock.now)
        await app.store.record(CycleRecord((), (), (), (), (cpu_sample,)), clock.now)
        fingerprints = {t: await _fire(app, clock, f"http:{t}") for t in ("api", "web", "old")}
        operator = app.services.operator
        assert operator is not None
        await operator.ack(
            fingerprints["api"], "alice", comment="on it", expires_at=clock.now + timedelta(hours=2)
        )
        clock.advance(600)
        await operator.resolve(fingerprints["old"], "carol", comment="moved")
        silence = await app.silences.create(
            [parse_matcher("target=web")], clock.now + timedelta(hours=4), "bob", "deploy"
        )
        end = int(clock.now.timestamp()) - int(clock.now.timestamp()) % STEP
        ups = [1.0] * (BAR_DAYS * DAY // STEP)
        start = end - len(ups) * STEP
        midnight = end - end % DAY - 3 * DAY  # three days ago, from midnight: 12 h down
        bad = (midnight - start) // STEP
        ups[bad : bad + DAY // STEP // 2] = [0.0] * (DAY // STEP // 2)
        await _seed_rollups(app, "http:api", "http.up", ups, end)
        cpu = [20.0 + (i % 12) for i in range(DAY // STEP)]
        await _seed_rollups(app, "host", "host.cpu_percent", cpu, end)
        yield Seeded(app, f"http://127.0.0.1:{app.api.port}", fingerprints["api"], silence.id)
    finally:
        await app.stop()


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, response.content_type, await response.text()


def _section(page: str, name: str) -> str:
    return page.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]


async def test_the_page_shows_checks_alerts_with_their_marks_an_incident_and_sparklines(
    seeded: Seeded,
) -> None:
    status, content_type, page = await _get(seeded.base + "/")
    assert (status, content_type) == (200, "text/html")
    assert '<meta http-equiv="refresh" content="30">' in page
    assert 'name="viewport"' in page
    alerts = _section(page, "alerts")
    assert "Active alerts (2)" in alerts
    assert alerts.count("http_down on http:") == 2
    assert "acked by alice until 2026-01-01T14:" in alerts
    assert f"silence {seeded.silence}" in alerts
    checks = _section(page, "checks")
    for check in ("capacity", "http:api", "http:web", "http:old"):
        assert f'<span class="name">{check}</span>' in checks
    assert checks.index("http:old") < checks.index("capacity")  # the checks down first
    assert checks.count('<svg class="bar"') == 4
    assert "<title>2025-12-29: 50.00%</title>" in checks
    incidents = _section(page, "incidents")
    assert "http_down on http:old" in incidents
    assert "resolved after 10 min (resolved by carol: moved)" in incidents
    assert incidents.count("ongoing") == 2
    assert '<a class="name" href="/charts/host/host.cpu_percent.svg">' in page
    spark = page.split('aria-label="host host.cpu_percent">', 1)[1].split("</svg>", 1)[0]
    assert spark.startswith("<polyline points=")
    assert spark.count(",") in {48, 49}  # half-hourly means of the day (the ends partial)


async def test_no_secret_of_a_target_url_reaches_the_page(seeded: Seeded) -> None:
    _, _, page = await _get(seeded.base + "/")
    assert "http:api" in page
    assert PASSWORD not in page
    assert TOKEN not in page


_HOSTILE = '<script>alert("x")</script>'


def _alert(i: int, summary: str = "disk / is 97% full", check: str = "host") -> Alert:
    at = datetime(2026, 1, 1, 11, tzinfo=UTC)
    return Alert(
        f"fp{i:014d}",
        "disk_full",
        check,
        {"mountpoint": "/"},
        AlertState.FIRING,
        Severity.CRITICAL,
        summary,
        97.0,
        at,
        at,
        acked_by=_HOSTILE if i == 0 else None,
    )


def _view(
    lines: list[CheckLine],
    alerts: list[Alert],
    *,
    hidden: int = 0,
    sparks: tuple[Spark, ...] = (),
    forecasts: tuple[Spark, ...] = (),
    incidents: tuple[Incident, ...] = (),
    recoveries: tuple[RecoveryResult, ...] = (),
) -> StatusView:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    return StatusView(
        now=now,
        health=Health(True, "ok", now, now),
        checks=lines,
        hidden_checks=hidden,
        alerts=[(a, [f"silence {_HOSTILE}"]) for a in alerts],
        incidents=incidents,
        recoveries=recoveries,
        history=True,
        sparks=sparks,
        forecasts=forecasts,
    )


def test_every_untrusted_value_is_escaped() -> None:
    labels = {"mountpoint": '"><img src=x onerror=alert(1)>'}
    spark = Spark(f"http:{_HOSTILE}", "http.latency_seconds", labels, ((0.0, 1.0), (1.0, 2.0)))
    result = RecoveryResult(
        "restart", "fp", RecoveryOutcome.FAILED, 1, 0.5, _HOSTILE, datetime(2026, 1, 1, tzinfo=UTC)
    )
    incident = Incident(_alert(1, _HOSTILE), datetime(2026, 1, 1, tzinfo=UTC), None, None)
    page = render(
        _view(
            [CheckLine(f"http:{_HOSTILE}", "error", _HOSTILE, 1)],
            [_alert(0, _HOSTILE, f"tcp:{_HOSTILE}")],
            sparks=(spark,),
            incidents=(incident,),
            recoveries=(result,),
        )
    )
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "/charts/http:%3Cscript%3E" in page  # the chart link's path is quoted, too


def _line(i: int, days: tuple[float | None, ...]) -> CheckLine:
    state = "down" if i % 50 == 0 else "up"
    return CheckLine(f"http:service-{i:04d}", state, None, 1 if state == "down" else 0, days)


def test_a_large_state_stays_under_100_kb_and_the_rest_of_the_checks_is_counted() -> None:
    days = tuple([None] * 30 + [1.0] * 40 + [0.995, 1.0, 0.9] + [1.0] * 17)
    shown, hidden = listed([_line(i, days) for i in range(1000)])
    assert (len(shown), hidden) == (MAX_CHECKS, 1000 - MAX_CHECKS)
    assert shown[0].state == "down"
    points = tuple((float(i * 1800), 20.0 + i % 7) for i in range(48))
    sparks = tuple(
        Spark("host", "host.disk_used_percent", {"mountpoint": f"/srv/{i}"}, points)
        for i in range(24)
    )
    at = datetime(2026, 1, 1, tzinfo=UTC)
    forecast = Forecast(
        "disk_full_forecast", "disk space", "host", "host.disk_used_percent", {}, at,
        58.0, 100.0, 1.0, 3e6, 3.6e6, 4e6,
    )  # fmt: skip
    trend = ((0.0, 50.0), (points[-1][0], 58.0))
    forecasts = tuple(
        Spark("host", "host.disk_used_percent", {}, points[:28], trend, forecast) for _ in range(8)
    )
    incidents = tuple(Incident(_alert(i), at, at + timedelta(hours=1), "by x") for i in range(20))
    page = render(
        _view(
            shown,
            [_alert(i) for i in range(40)],
            hidden=hidden,
            sparks=sparks,
            forecasts=forecasts,
            incidents=incidents,
        )
    )
    size = len(page.encode())
    assert size < 100 * 1024, size
    assert f"and {1000 - MAX_CHECKS} more" in page
    assert page.count('<svg class="bar"') == MAX_CHECKS


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        message = "chromium is not installed (apt-get install chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} and OPSWATCH_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)
    return found


async def _run_chromium(chromium: str, profile: Path, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(90):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_the_page_loads_in_headless_chromium_shows_the_alert_and_is_screenshot(
    seeded: Seeded, tmp_path: Path
) -> None:
    chromium = _chromium()
    dom = await _run_chromium(chromium, tmp_path / "profile", "--dump-dom", seeded.base + "/")
    assert "<title>opswatch status</title>" in dom
    assert "Active alerts (2)" in dom
    assert "acked by alice" in dom
    shot = tmp_path / "status-page.png"
    await _run_chromium(
        chromium,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=390,844",
        "--hide-scrollbars",
        seeded.base + "/",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 5000  # more than a blank page
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "status-page.png")


@pytest.fixture
async def plain(tmp_path: Path, clock: ManualClock) -> AsyncIterator[App]:
    """A daemon with its default checks (host), history on."""
    environ = {
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        "OPSWATCH_INTERVAL": "1h",
    }
    app = App(load_config(environ, clock), clock=clock)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def test_a_forecast_has_its_sparkline_with_the_trend_and_its_time_to_full(
    plain: App, clock: ManualClock
) -> None:
    labels = {"mountpoint": "/data"}
    sample = Sample("host", "host.disk_used_percent", 50.0, clock.now, labels)
    await plain.store.record(CycleRecord((), (), (), (), (sample,)), clock.now)
    end = int(clock.now.timestamp()) + 8 * DAY
    rising = [50.0 + (i + 1) * STEP / DAY for i in range(8 * DAY // STEP)]  # 1 % a day
    await _seed_rollups(plain, "host", "host.disk_used_percent", rising, end, labels=labels)
    clock.now += timedelta(days=8)
    _, _, page = await _get(f"http://127.0.0.1:{plain.api.port}/")
    forecasts = page.split("<h2>Forecasts</h2>", 1)[1]
    assert "host host.disk_used_percent" in forecasts
    assert "mountpoint=/data" in forecasts
    assert "disk space 58, +1/day, full in 42 d" in forecasts
    assert '<polyline class="trend" points=' in forecasts


async def test_a_day_that_settles_after_the_page_was_viewed_appears_on_the_bar(
    plain: App, clock: ManualClock
) -> None:
    await plain.cycle.run("host")
    base = f"http://127.0.0.1:{plain.api.port}/"
    midnight = int(clock.now.timestamp()) - int(clock.now.timestamp()) % DAY
    await _seed_rollups(plain, "host", "host.up", [1.0] * (DAY // STEP), midnight)
    _, _, before = await _get(base)
    assert "99.00%" not in before
    assert "100.00% over 1 d" in before
    clock.now += timedelta(days=1)  # 12:00 the next day: yesterday has settled
    day = [1.0] * (DAY // STEP)
    day[:3] = [0.0] * 3  # down 15 minutes
    await _seed_rollups(plain, "host", "host.up", day, midnight + DAY)
    _, _, after = await _get(base)
    assert "<title>2026-01-01: 98.96%</title>" in after
    assert "99.48% over 2 d" in after


async def test_with_the_state_store_down_the_page_shows_what_is_in_memory_and_why(
    seeded: Seeded,
) -> None:
    await seeded.app.store.close()
    status, _, page = await _get(seeded.base + "/")
    assert status == 200
    assert "the state store is unavailable: state store " in page
    assert "Active alerts (2)" in page
    assert '<span class="name">http:api</span>' in page
