"""Scaling advice from the roll-ups: a trigger that held long enough, or a week whose 95th
percentile is past it, becomes one recommendation with its evidence; anything less, none."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opswatch.capacity.advice import BY_METRIC, advise
from opswatch.capacity.forecast import ForecastSettings
from opswatch.capacity.history import STEP, HistorySettings
from opswatch.capacity.resources import Capacity
from opswatch.model import CycleRecord, MetricSeries, Rollup, Sample
from opswatch.state.sqlite import SQLiteStore

DAY = 86400
NOW = datetime(2026, 3, 1, tzinfo=UTC)
END = int(NOW.timestamp())


def _week(level: Callable[[int], float], spread: float = 0.0) -> list[Rollup]:
    """Seven days of 5-minute roll-ups ending now: mean ``level(t)``, min and max ``spread``
    around it."""
    rows = []
    for i in range(7 * DAY // STEP):
        at = END - 7 * DAY + i * STEP
        mean = level(at)
        rows.append(Rollup(1, at, mean - spread, mean + spread, mean, mean + spread, 10))
    return rows


def _advise(metric: str, rows: list[Rollup], **labels: str) -> str | None:
    series = MetricSeries(1, "host", metric, labels)
    advice = advise(BY_METRIC[metric], series, rows, NOW)
    return None if advice is None else advice.recommendation


def test_busy_rising_cpu_is_advised_with_its_percentiles_stretch_and_trend() -> None:
    def cpu(at: int) -> float:  # 88 % a week ago rising 3 % a week, 45 minutes at 99 %
        if END - 3 * 3600 <= at < END - 3 * 3600 + 45 * 60:
            return 99.0
        return 88.0 + 3.0 * (at - (END - 7 * DAY)) / (7 * DAY)

    text = _advise("host.cpu_percent", _week(cpu, spread=1.0))
    assert text is not None
    assert text.startswith("CPU p95 91 % over 7 days (91 % over 24 h), peak 100 %")
    assert "above 80 % for 1440 min in a row in the last day" in text
    assert "rising 3 %/week" in text
    assert text.endswith(": add a core or move the batch job")


def test_a_short_spike_or_a_calm_host_gets_no_advice() -> None:
    def spike(at: int) -> float:  # 40 %, but 99 % for 5 minutes
        return 99.0 if END - 3600 <= at < END - 3600 + STEP else 40.0

    assert _advise("host.cpu_percent", _week(spike)) is None
    assert _advise("host.memory_percent", _week(lambda at: 50.0, spread=5)) is None


def test_a_sustained_stretch_alone_is_enough() -> None:
    def memory(at: int) -> float:  # 60 %, and 90 % for the last 20 minutes
        return 90.0 if at >= END - 20 * 60 else 60.0

    text = _advise("host.memory_percent", _week(memory))
    assert text is not None
    assert "above 85 % for 20 min in a row" in text
    assert text.endswith("add memory, or find the process that grows")


def test_a_low_redis_hit_ratio_and_a_full_disk_name_their_series() -> None:
    ratio = _advise("redis.keyspace_hit_ratio", _week(lambda at: 0.5), target="cache")
    assert ratio is not None
    assert ratio.startswith("Redis hit ratio (cache) p5 50% over 7 days")
    assert "below 60% for" in ratio
    disk = _advise("host.disk_used_percent", _week(lambda at: 95.0), mountpoint="/var")
    assert disk is not None
    assert disk.startswith("disk (/var) p95 95 %")


async def test_the_service_advises_from_the_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        labels = {"target": "main"}
        sample = Sample("postgres:main", "postgres.connections_percent", 92.0, NOW, labels)
        await store.record(CycleRecord((), (), (), (), (sample,)), NOW)
        (series,) = await store.history_series()
        rows = [
            Rollup(series.id, r.at, r.min, r.max, r.mean, r.p95, r.count)
            for r in _week(lambda at: 92.0)
        ]
        await store.history_store_rollups(rows, END)
        capacity = Capacity(store, HistorySettings(), ForecastSettings(), lambda: NOW)
        (advice,) = await capacity.advice()
    finally:
        await store.close()
    assert (advice.check, advice.trigger) == ("postgres:main", "postgres.connections_percent > 80")
    assert advice.week == pytest.approx(92.0)
    assert advice.recommendation.endswith(
        "add a pooler (PgBouncer) in front of it, or raise max_connections"
    )
