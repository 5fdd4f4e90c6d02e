"""Rules from forecasts: the ``capacity`` check turns the forecasts of the history into
alerts through the normal tracker and commit path, tunable like every rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from opswatch.capacity.check import CHECK, NONE_HOURS, ForecastCheck
from opswatch.capacity.history import STEP
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import AlertState, CycleRecord, Rollup, Sample, Severity, TransitionKind
from tests.conftest import ManualClock

DAY = 86400
LABELS = {"mountpoint": "/data"}


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        "OPSWATCH_INTERVAL": "1h",
        **extra,
    }


async def _app(tmp_path: Path, clock: ManualClock, **extra: str) -> App:
    app = App(load_config(_environ(tmp_path, **extra), clock), clock=clock)
    await app.open()
    return app


@pytest.fixture
async def app(tmp_path: Path, clock: ManualClock) -> AsyncIterator[App]:
    daemon = await _app(tmp_path, clock)
    try:
        yield daemon
    finally:
        await daemon.stop()


async def _disk(app: App, clock: ManualClock, per_day: float, start: float) -> None:
    """Eight days of a disk's roll-ups rising ``per_day`` percent from ``start``, ending now."""
    sample = Sample("host", "host.disk_used_percent", start, clock.now, LABELS)
    await app.store.record(CycleRecord((), (), (), (), (sample,)), clock.now)
    (series,) = [s for s in await app.store.history_series() if s.labels == LABELS]
    end = int(clock.now.timestamp()) - int(clock.now.timestamp()) % STEP
    buckets = 8 * DAY // STEP
    rows = []
    for i in range(buckets):
        at = end - (buckets - i) * STEP
        value = start + per_day * (i + 1) * STEP / DAY
        rows.append(Rollup(series.id, at, value, value, value, value, 10))
    await app.store.history_store_rollups(rows, end)


def _check(app: App) -> ForecastCheck:
    check = app.cycle.collectors[CHECK]
    assert isinstance(check, ForecastCheck)
    return check


async def test_a_disk_forecast_full_within_48_hours_fires_a_warning_that_resolves(
    app: App, clock: ManualClock
) -> None:
    # 40 % a day, at 40 % now: full in 36 h
    await _disk(app, clock, per_day=40.0, start=-280.0)
    await _check(app).refresh(app.capacity)
    (fired,) = await app.cycle.run(CHECK)
    assert fired.kind is TransitionKind.FIRED
    alert = fired.alert
    assert (alert.rule, alert.severity) == ("disk_full_forecast", Severity.WARNING)
    assert alert.labels == {"mountpoint": "/data", "source": "host"}
    assert alert.value == pytest.approx(36.0, rel=0.01)
    assert alert.summary == "disk /data on host is forecast full in 36 h (threshold 48 h)"
    assert [a.rule for a in await app.store.load_active()] == ["disk_full_forecast"]
    # the growth stops: a flat disk has no forecast, and the alert resolves
    clock.advance(DAY)
    await _disk(app, clock, per_day=0.0, start=40.0)
    await _check(app).refresh(app.capacity)
    (resolved,) = await app.cycle.run(CHECK)
    assert resolved.kind is TransitionKind.RESOLVED
    assert resolved.alert.state is AlertState.RESOLVED
    assert await app.store.load_active() == []


async def test_under_6_hours_the_forecast_is_critical(app: App, clock: ManualClock) -> None:
    await _disk(app, clock, per_day=100.0, start=-720.0)  # at 80 %, full in under 5 h
    await _check(app).refresh(app.capacity)
    (fired,) = await app.cycle.run(CHECK)
    assert fired.alert.severity is Severity.CRITICAL


async def test_the_thresholds_are_tunable_like_every_rule(
    tmp_path: Path, clock: ManualClock
) -> None:
    app = await _app(tmp_path, clock, OPSWATCH_RULE_DISK_FULL_FORECAST_WARNING="100")
    try:
        await _disk(app, clock, per_day=20.0, start=-120.0)  # at 40 %: full in 72 h
        await _check(app).refresh(app.capacity)
        samples = await _check(app).collect()
        assert [s.value for s in samples] == [pytest.approx(72.0, rel=0.01)]
        (fired,) = await app.cycle.run(CHECK)  # under 100 h: a warning
        assert fired.alert.severity is Severity.WARNING
    finally:
        await app.stop()


async def test_a_series_without_a_forecast_reads_a_year_and_history_off_has_no_check(
    app: App, clock: ManualClock, tmp_path: Path
) -> None:
    await _disk(app, clock, per_day=0.0, start=40.0)
    await _check(app).refresh(app.capacity)
    (sample,) = await _check(app).collect()
    assert (sample.metric, sample.value) == ("capacity.disk_full_forecast", NONE_HOURS)
    config = load_config(_environ(tmp_path, OPSWATCH_HISTORY="off"), clock)
    assert CHECK not in {c.check for c in config.collectors}
    assert "disk_full_forecast" not in {r.name for r in config.rules}


async def test_a_one_off_8_gb_burst_on_a_slowly_growing_disk_raises_no_alert(
    app: App, clock: ManualClock
) -> None:
    """A 100 GB disk at 60 % growing 0.2 % a day, 8 GB copied two hours ago and deleted now:
    the last hour's slope says full in hours, the forecast says 200 days."""
    sample = Sample("host", "host.disk_used_percent", 60.0, clock.now, LABELS)
    await app.store.record(CycleRecord((), (), (), (), (sample,)), clock.now)
    (series,) = [s for s in await app.store.history_series() if s.labels == LABELS]
    end = int(clock.now.timestamp()) // STEP * STEP
    buckets = 8 * DAY // STEP
    rows = []
    for i in range(buckets):
        at = end - (buckets - i) * STEP
        value = 60.0 - 0.2 * (end - at) / DAY + (8.0 if end - at <= 2 * 3600 else 0.0)
        rows.append(Rollup(series.id, at, value, value, value, value, 10))
    await app.store.history_store_rollups(rows, end)
    await _check(app).refresh(app.capacity)
    assert await app.cycle.run(CHECK) == []
    (sample,) = await _check(app).collect()
    assert sample.value > 150 * 24
