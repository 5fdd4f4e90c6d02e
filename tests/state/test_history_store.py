"""The metric history in both stores: samples written with the cycle's record, roll-ups and
pruning by the history job on an injected clock, and a size that stays flat once the
retention passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from opswatch.capacity.history import STEP, HistorySettings
from opswatch.capacity.resources import merge
from opswatch.capacity.rollup import HistoryJob
from opswatch.model import CycleRecord, Rollup, Sample
from opswatch.ports import StateStore
from opswatch.state.sqlite import SQLiteStore
from tests.conftest import ManualClock
from tests.state import test_stores

START = datetime(2026, 1, 1, tzinfo=UTC)

# both stores over one state, as the stores' own tests have them
make_store = test_stores.make_store
store = test_stores.store


def _cycle(*samples: Sample) -> CycleRecord:
    return CycleRecord((), (), (), (), samples)


def _disk(at: datetime, value: float, mount: str = "/") -> Sample:
    return Sample("host", "host.disk_used_percent", value, at, {"mountpoint": mount})


async def test_samples_are_written_with_the_cycle_and_read_back_per_series(
    store: StateStore,
) -> None:
    at = START
    await store.record(_cycle(_disk(at, 41.5), _disk(at, 7.0, "/var")), at)
    later = at + timedelta(seconds=30)
    await store.record(_cycle(_disk(later, 42.0)), later)
    series = await store.history_series("host")
    assert [(s.metric, dict(s.labels)) for s in series] == [
        ("host.disk_used_percent", {"mountpoint": "/"}),
        ("host.disk_used_percent", {"mountpoint": "/var"}),
    ]
    epoch = int(at.timestamp())
    root = series[0].id
    points = await store.history_samples(epoch, epoch + 60, [root])
    assert [(p.at - epoch, p.value) for p in points] == [(0, 41.5), (30, 42.0)]
    assert await store.history_series("http:api") == []


async def test_a_second_sample_of_a_series_in_the_same_second_replaces_the_first(
    store: StateStore,
) -> None:
    await store.record(_cycle(_disk(START, 1.0)), START)
    await store.record(_cycle(_disk(START, 2.0)), START)
    epoch = int(START.timestamp())
    assert [p.value for p in await store.history_samples(epoch, epoch + 1)] == [2.0]


async def test_a_failed_record_writes_no_sample_and_no_series(store: StateStore) -> None:
    unencodable: dict[str, str] = {"mountpoint": object()}  # type: ignore[dict-item]
    bad = Sample("host", "host.disk_used_percent", 1.0, START, unencodable)
    with pytest.raises(TypeError):
        await store.record(_cycle(_disk(START, 1.0, "/a"), bad), START)
    assert await store.history_series() == []
    await store.record(_cycle(_disk(START, 1.0, "/a")), START)  # the series is made anew
    epoch = int(START.timestamp())
    (point,) = await store.history_samples(epoch, epoch + 1)
    assert [s.id for s in await store.history_series()] == [point.series]


def _job(store: StateStore, clock: ManualClock, **settings: float) -> HistoryJob:
    return HistoryJob(store, HistorySettings(**settings), clock, settle=30)  # type: ignore[arg-type]


async def _fill(store: StateStore, clock: ManualClock, seconds: int, every: int = 30) -> None:
    """Samples of two series every ``every`` seconds for ``seconds`` from the clock's now."""
    for _ in range(seconds // every):
        now = clock.now
        value = (now - START).total_seconds() / 3600
        await store.record(_cycle(_disk(now, value), _disk(now, 100 - value, "/var")), now)
        clock.advance(every)


async def test_the_job_rolls_up_closed_buckets_once_with_min_max_mean_p95_and_count(
    store: StateStore,
) -> None:
    clock = ManualClock(START)
    await _fill(store, clock, 900)  # 15 minutes: three buckets, the last one still open
    job = _job(store, clock)
    done = await job.run_once()
    assert done.rollups == 2 * 2  # the third bucket has not settled
    root = (await store.history_series())[0].id
    epoch = int(START.timestamp())
    rollups = await store.history_rollups([root], epoch, epoch + 3600)
    assert [r.at - epoch for r in rollups] == [0, STEP]
    first = rollups[0]
    values = [i * 30 / 3600 for i in range(10)]
    assert first.count == 10
    assert (first.min, first.max) == (values[0], values[-1])
    assert first.mean == pytest.approx(sum(values) / 10)
    assert first.p95 == pytest.approx(values[8] + 0.55 * (values[9] - values[8]))
    assert await store.history_rolled_until() == epoch + 2 * STEP
    clock.advance(STEP)
    await _fill(store, clock, 0)
    again = await job.run_once()
    assert again.rollups == 2  # only the bucket that has closed since


async def test_raw_samples_and_rollups_past_their_retention_are_pruned(
    store: StateStore,
) -> None:
    clock = ManualClock(START)
    job = _job(store, clock, raw_retention=3600.0, retention=2 * 3600.0)
    for _hour in range(4):
        await _fill(store, clock, 3600, every=60)
        await job.run_once()
    now = int(clock.now.timestamp())
    samples = await store.history_samples(0, now + 1)
    assert min(p.at for p in samples) >= now - 3600
    series = [s.id for s in await store.history_series()]
    rollups = await store.history_rollups(series, 0, now)
    assert min(r.at for r in rollups) >= now - 2 * 3600
    # two series, two hours back to the last settled bucket
    assert len(rollups) == 2 * (2 * 3600 - STEP) // STEP


async def test_a_series_with_nothing_left_is_forgotten(store: StateStore) -> None:
    clock = ManualClock(START)
    await store.record(_cycle(_disk(START, 1.0, "/gone")), START)
    await _fill(store, clock, 600)
    clock.advance(3 * 86400)
    job = _job(store, clock, raw_retention=3600.0, retention=86400.0)
    await _fill(store, clock, 600)
    await job.run_once()
    assert {s.labels["mountpoint"] for s in await store.history_series()} == {"/", "/var"}
    await _fill(store, clock, 600)  # the cached ids of the kept series still work
    assert len(await store.history_series()) == 2


async def test_the_size_cap_prunes_the_oldest_rollups_first(store: StateStore) -> None:
    clock = ManualClock(START)
    # three days of roll-ups, written directly (raw samples would take long to make)
    await store.record(_cycle(_disk(START, 1.0)), START)
    series = (await store.history_series())[0].id
    epoch = int(START.timestamp())
    rows = [Rollup(series, epoch + i * STEP, 1, 2, 1.5, 2, 10) for i in range(3 * 86400 // STEP)]
    await store.history_store_rollups(rows, epoch + 3 * 86400)
    clock.now = START + timedelta(days=3)
    capped = HistoryJob(
        store,
        HistorySettings(raw_retention=3600.0, retention=30 * 86400.0, max_bytes=1),
        clock,
        settle=30,
    )
    first = await capped.run_once()
    assert first.pruned_rollups == 86400 // STEP  # the oldest day, and only it
    left = await store.history_rollups([series], 0, epoch + 4 * 86400)
    assert min(r.at for r in left) == epoch + 86400
    with capture_logs() as logs:
        for _ in range(4):  # never the roll-ups within the raw retention
            await capped.run_once()
    left = await store.history_rollups([series], 0, epoch + 4 * 86400)
    assert left
    assert min(r.at for r in left) >= epoch + 3 * 86400 - 3600
    events = [e["event"] for e in logs]
    assert events.count("history_capped") == 2  # the second day, then the third up to 1 h ago
    assert events.count("history_over_cap") == 1  # once, not at every run


async def test_the_store_stops_growing_once_the_retention_has_passed(
    store: StateStore,
) -> None:
    """Day after day at a steady rate the history holds the same rows each day, and an SQLite
    file reuses the pages of the rows pruned: its size is the same after the fourth day as
    after the second (PostgreSQL's autovacuum does the same for its tables)."""
    clock = ManualClock(START)
    job = _job(store, clock, raw_retention=3600.0, retention=86400.0)
    sizes = []
    for _day in range(4):
        for _hour in range(24):
            await _fill(store, clock, 3600, every=300)
            await job.run_once()
        now = int(clock.now.timestamp())
        series = [s.id for s in await store.history_series()]
        rows = (
            len(await store.history_samples(0, now)),
            len(await store.history_rollups(series, 0, now)),
        )
        sizes.append((rows, _file_bytes(store)))
    assert sizes[1] == sizes[2] == sizes[3], sizes
    assert sizes[3][0] == (2 * 3600 // 300, 2 * (86400 - 300) // 300)


def _file_bytes(store: StateStore) -> int:
    """The SQLite file's size (0 for PostgreSQL)."""
    if isinstance(store, SQLiteStore):
        return store.path.stat().st_size
    return 0


async def test_rollups_merged_in_the_store_match_the_merge_done_in_python(
    store: StateStore,
) -> None:
    await store.record(_cycle(_disk(START, 1.0), _disk(START, 2.0, "/var")), START)
    series = [s.id for s in await store.history_series()]
    epoch = int(START.timestamp())
    rows = [
        Rollup(s, epoch + i * STEP, i - 1.5, i + 0.25 * s, i + 0.5, i + 0.75, 1 + i % 3)
        for s in series
        for i in range(3 * 86400 // STEP)
    ]
    await store.history_store_rollups(rows, epoch + 3 * 86400)
    since, until = epoch + 3600, epoch + 2 * 86400 + 7200
    merged = await store.history_rollups_merged(series, since, until, 86400)
    expected = [
        m
        for s in series
        for m in merge([r for r in rows if r.series == s and since <= r.at < until], 86400)
    ]
    assert [(r.series, r.at, r.min, r.max, r.p95, r.count) for r in merged] == [
        (r.series, r.at, r.min, r.max, r.p95, r.count) for r in expected
    ]
    assert [r.mean for r in merged] == pytest.approx([r.mean for r in expected])
    assert [r.at - epoch for r in merged[:3]] == [0, 86400, 2 * 86400]
