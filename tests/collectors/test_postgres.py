"""PostgreSQL collector: pure sample building, then a real server (skipped when absent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from structlog.testing import capture_logs

from opswatch.collectors.postgres import PostgresCollector, PostgresStats, build_samples
from opswatch.config import ConfigError, Env
from opswatch.model import Sample
from tests.conftest import ManualClock, free_port

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def values(samples: Sequence[Sample], metric: str) -> list[float]:
    return [s.value for s in samples if s.metric == metric]


def value(samples: Sequence[Sample], metric: str) -> float:
    [found] = values(samples, metric)
    return found


BASE = PostgresStats(
    connections=40,
    max_connections=100,
    active_backends=3,
    idle_in_transaction_backends=1,
    longest_query_seconds=12.5,
    longest_transaction_seconds=30.0,
    longest_idle_in_transaction_seconds=20.0,
    waiting_locks=2,
    deadlocks=10.0,
    blocks_hit=9_000.0,
    blocks_read=1_000.0,
    xid_age=123_456,
    in_recovery=False,
    replication_lag_seconds=None,
    database_sizes={"test": 8_000_000, "app": 1_000},
)


def stats(**overrides: Any) -> PostgresStats:
    return replace(BASE, **overrides)


def with_password(dsn: str, password: str) -> str:
    parts = urlsplit(dsn)
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def make_collector(dsn: str, clock: ManualClock, name: str = "main") -> PostgresCollector:
    [collector] = PostgresCollector.from_env(
        Env({"OPSWATCH_POSTGRES_TARGETS": f"{name}={dsn}", "OPSWATCH_POSTGRES_TIMEOUT": "5s"}),
        clock,
    )
    return collector


@pytest.fixture
async def collector(postgres_dsn: str, clock: ManualClock) -> AsyncIterator[PostgresCollector]:
    collector = make_collector(postgres_dsn, clock)
    yield collector
    await collector.close()


# --- pure: configuration and sample building ----------------------------------------------


def test_from_env_gives_one_collector_per_target(clock: ManualClock) -> None:
    env = Env(
        {
            "OPSWATCH_POSTGRES_TARGETS": "main=postgresql://a@db1/app, replica=postgres://b@db2/app",
            "OPSWATCH_POSTGRES_TIMEOUT": "2s",
        }
    )
    collectors = PostgresCollector.from_env(env, clock)
    assert [c.check for c in collectors] == ["postgres:main", "postgres:replica"]
    assert collectors[0].describe()["timeout"] == "2s"


def test_from_env_names_the_variable_when_no_target_is_set(clock: ManualClock) -> None:
    with pytest.raises(ConfigError) as raised:
        PostgresCollector.from_env(Env({}), clock)
    assert raised.value.variable == "OPSWATCH_POSTGRES_TARGETS"


def test_from_env_rejects_a_url_of_another_scheme(clock: ManualClock) -> None:
    with pytest.raises(ConfigError) as raised:
        PostgresCollector.from_env(Env({"OPSWATCH_POSTGRES_TARGETS": "x=http://db/app"}), clock)
    assert raised.value.variable == "OPSWATCH_POSTGRES_TARGETS"


def test_builds_gauges_and_database_sizes_labelled_by_target() -> None:
    samples = build_samples(
        "postgres:main", "main", at=T0, ping_seconds=0.002, stats=stats(), previous=None
    )
    assert value(samples, "postgres.up") == 1.0
    assert value(samples, "postgres.connections_percent") == 40.0
    assert value(samples, "postgres.longest_query_seconds") == 12.5
    assert value(samples, "postgres.xid_age") == 123_456
    sizes = {s.labels["database"]: s.value for s in samples if s.metric.endswith("size_bytes")}
    assert sizes == {"app": 1_000, "test": 8_000_000}
    assert all(s.labels["target"] == "main" and s.check == "postgres:main" for s in samples)


def test_first_run_has_no_deadlock_rate_nor_hit_ratio() -> None:
    samples = build_samples(
        "postgres:m", "m", at=T0, ping_seconds=0.0, stats=stats(), previous=None
    )
    assert values(samples, "postgres.deadlocks_per_s") == []
    assert values(samples, "postgres.cache_hit_ratio") == []


def test_deadlock_rate_and_hit_ratio_come_from_deltas_over_the_clock() -> None:
    previous = stats().counters(T0)
    later = stats(deadlocks=16.0, blocks_hit=9_900.0, blocks_read=1_100.0)
    samples = build_samples(
        "postgres:m",
        "m",
        at=T0 + timedelta(seconds=30),
        ping_seconds=0.0,
        stats=later,
        previous=previous,
    )
    assert value(samples, "postgres.deadlocks_per_s") == pytest.approx(0.2)
    assert value(samples, "postgres.cache_hit_ratio") == pytest.approx(0.9)


def test_a_stats_reset_gives_no_rate_for_that_run() -> None:
    previous = stats().counters(T0)
    reset = stats(deadlocks=0.0, blocks_hit=5.0, blocks_read=0.0)
    samples = build_samples(
        "postgres:m",
        "m",
        at=T0 + timedelta(seconds=30),
        ping_seconds=0,
        stats=reset,
        previous=previous,
    )
    assert values(samples, "postgres.deadlocks_per_s") == []
    assert values(samples, "postgres.cache_hit_ratio") == []


def test_no_hit_ratio_when_no_block_was_touched() -> None:
    samples = build_samples(
        "postgres:m",
        "m",
        at=T0 + timedelta(seconds=30),
        ping_seconds=0,
        stats=stats(),
        previous=stats().counters(T0),
    )
    assert values(samples, "postgres.cache_hit_ratio") == []
    assert value(samples, "postgres.deadlocks_per_s") == 0.0


def test_replication_lag_only_on_a_server_in_recovery() -> None:
    primary = build_samples("postgres:m", "m", at=T0, ping_seconds=0, stats=stats(), previous=None)
    replica = build_samples(
        "postgres:m",
        "m",
        at=T0,
        ping_seconds=0,
        stats=stats(in_recovery=True, replication_lag_seconds=4.5),
        previous=None,
    )
    assert values(primary, "postgres.replication_lag_seconds") == []
    assert value(replica, "postgres.replication_lag_seconds") == 4.5


# --- against a real server ------------------------------------------------------------------


async def test_reports_up_and_every_gauge_from_a_live_server(
    collector: PostgresCollector, postgres_dsn: str
) -> None:
    samples = await collector.collect()
    assert value(samples, "postgres.up") == 1.0
    for metric in (
        "ping_seconds",
        "connections",
        "max_connections",
        "connections_percent",
        "active_backends",
        "idle_in_transaction_backends",
        "longest_query_seconds",
        "longest_transaction_seconds",
        "longest_idle_in_transaction_seconds",
        "waiting_locks",
        "xid_age",
    ):
        assert len(values(samples, f"postgres.{metric}")) == 1, metric
    database = urlsplit(postgres_dsn).path.lstrip("/")
    sizes = {s.labels["database"]: s.value for s in samples if s.metric.endswith("size_bytes")}
    assert sizes[database] > 0
    assert values(samples, "postgres.replication_lag_seconds") == []  # a primary


async def deadlocks(dsn: str) -> float:
    """The database's deadlock counter as the statistics show it now."""
    connection = await asyncpg.connect(dsn)
    try:
        found = await connection.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    return float(found)


async def cause_a_deadlock(dsn: str) -> None:
    """Two sessions that each hold an advisory lock the other one asks for: the server ends
    one of them with a deadlock (after deadlock_timeout) and counts it; both then flush their
    statistics (PostgreSQL 15+ reports them lazily)."""
    key = free_port()  # an advisory lock key nobody else uses
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        for connection, own in ((first, key), (second, key + 1)):
            await connection.execute("BEGIN")
            await connection.execute("SELECT pg_advisory_xact_lock($1)", own)
        results = await asyncio.gather(
            first.execute("SELECT pg_advisory_xact_lock($1)", key + 1),
            second.execute("SELECT pg_advisory_xact_lock($1)", key),
            return_exceptions=True,
        )
        assert sum(isinstance(r, asyncpg.DeadlockDetectedError) for r in results) == 1, results
        for connection in (first, second):
            await connection.execute("ROLLBACK")
            if connection.get_server_version().major >= 15:
                await connection.execute("SELECT pg_stat_force_next_flush()")
    finally:
        await first.close()
        await second.close()


async def test_second_run_reports_the_deadlock_rate_over_the_injected_clock(
    collector: PostgresCollector, clock: ManualClock, postgres_dsn: str
) -> None:
    before = await deadlocks(postgres_dsn)
    first = await collector.collect()
    await cause_a_deadlock(postgres_dsn)
    clock.advance(40)
    second = await collector.collect()
    after = await deadlocks(postgres_dsn)
    assert values(first, "postgres.deadlocks_per_s") == []
    assert after > before  # our deadlock was counted: the rate below is not 0 / 40
    assert value(second, "postgres.deadlocks_per_s") == pytest.approx((after - before) / 40)
    assert all(s.at == clock.now for s in second)


async def test_connections_rise_by_the_number_of_extra_connections_opened(
    collector: PostgresCollector, postgres_dsn: str
) -> None:
    extra = 3
    before = value(await collector.collect(), "postgres.connections")
    connections = [await asyncpg.connect(postgres_dsn) for _ in range(extra)]
    try:
        after = value(await collector.collect(), "postgres.connections")
    finally:
        for connection in connections:
            await connection.close()
    assert after >= before + extra


async def test_sees_a_running_query_in_longest_query_seconds(
    collector: PostgresCollector, postgres_dsn: str
) -> None:
    watcher = await asyncpg.connect(postgres_dsn)
    sleeper = await asyncpg.connect(postgres_dsn)
    query = asyncio.create_task(sleeper.execute("SELECT pg_sleep(30)"))
    try:
        async with asyncio.timeout(10):  # poll until the server shows the query as active
            while not await watcher.fetchval(
                "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                sleeper.get_server_pid(),
            ):
                pass
        samples = await collector.collect()
    finally:
        query.cancel()  # asyncpg sends the server a cancel request
        await asyncio.wait([query])
        await sleeper.close()
        await watcher.close()
    assert value(samples, "postgres.longest_query_seconds") > 0
    assert value(samples, "postgres.active_backends") >= 1


async def test_counts_a_session_left_idle_in_transaction(
    collector: PostgresCollector, postgres_dsn: str
) -> None:
    idle = await asyncpg.connect(postgres_dsn)
    try:
        await idle.execute("BEGIN")
        await idle.execute("SELECT 1")
        samples = await collector.collect()
        await idle.execute("ROLLBACK")
    finally:
        await idle.close()
    assert value(samples, "postgres.idle_in_transaction_backends") >= 1
    assert value(samples, "postgres.longest_idle_in_transaction_seconds") > 0
    assert value(samples, "postgres.longest_transaction_seconds") > 0


async def test_leaves_opswatch_sessions_out_of_query_ages(
    collector: PostgresCollector, postgres_dsn: str
) -> None:
    before = value(await collector.collect(), "postgres.idle_in_transaction_backends")
    own = await asyncpg.connect(postgres_dsn, server_settings={"application_name": "opswatch"})
    try:
        await own.execute("BEGIN")
        samples = await collector.collect()
        await own.execute("ROLLBACK")
    finally:
        await own.close()
    assert value(samples, "postgres.idle_in_transaction_backends") == before


async def test_a_rejected_login_gives_up_zero_without_raising(
    postgres_dsn: str, clock: ManualClock
) -> None:
    parts = urlsplit(postgres_dsn)
    missing = urlunsplit(parts._replace(path="/opswatch_no_such_database"))
    collector = make_collector(missing, clock)
    try:
        samples = await collector.collect()
    finally:
        await collector.close()
    assert [(s.metric, s.value) for s in samples] == [("postgres.up", 0.0)]


async def test_logs_an_outage_once_not_on_every_run(clock: ManualClock) -> None:
    collector = make_collector(f"postgresql://postgres@127.0.0.1:{free_port()}/test", clock)
    try:
        with capture_logs() as logs:
            for _ in range(3):
                await collector.collect()
    finally:
        await collector.close()
    assert [(e["event"], e["check"], e["error"]) for e in logs] == [
        ("collector_target_down", "postgres:main", "ConnectionRefusedError")
    ]


async def test_password_never_appears_in_describe_nor_in_any_log_line(
    postgres_dsn: str, clock: ManualClock
) -> None:
    password = "s3cret-Pa55word"
    down = with_password(f"postgresql://postgres@127.0.0.1:{free_port()}/test", password)
    missing = with_password(
        urlunsplit(urlsplit(postgres_dsn)._replace(path="/opswatch_no_such_database")), password
    )
    live = with_password(postgres_dsn, password)  # trust auth ignores the password
    env = Env({"OPSWATCH_POSTGRES_TARGETS": f"down={down},missing={missing},live={live}"})
    collectors = PostgresCollector.from_env(env, clock)
    try:
        with capture_logs() as logs:
            runs = [await c.collect() for c in collectors]
    finally:
        for c in collectors:
            await c.close()
    assert [value(run, "postgres.up") for run in runs] == [0.0, 0.0, 1.0]
    assert len(logs) == 2  # one line per target that is down: the check is not vacuous
    described = repr([c.describe() for c in collectors])
    assert password not in described
    assert password not in repr(logs)
    assert all(password not in repr(s.labels) for run in runs for s in run)
