"""PostgreSQL collector: connections, long queries and transactions, locks, deadlocks, cache
hit ratio, database sizes, replication lag and transaction-id age, one instance per target.

``OPSWATCH_POSTGRES_TARGETS`` is a ``name=postgresql://user:pass@host:port/db`` list and
``OPSWATCH_POSTGRES_TIMEOUT`` bounds each run (default 5s). Each target gets a small asyncpg
pool (0 to 2 connections) created on the first run; a run costs two round trips (a ``SELECT
1`` ping and one prepared statistics query). asyncpg is imported only when a run starts, so
importing the registry stays cheap.

An unreachable target (refused, auth failure, missing database, timeout) gives
``postgres.up = 0`` and never raises. Log lines name only the exception class and the
SQLSTATE or errno: driver messages may echo the DSN.

The monitoring role needs ``pg_monitor`` (or superuser) to see other roles' sessions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from opswatch.collectors.base import (
    CollectorError,
    Counters,
    OutageLog,
    counter_deltas,
    describe_service,
    service_targets,
    up_sample,
)
from opswatch.config import Env, Target
from opswatch.model import Clock, Sample

if TYPE_CHECKING:
    import asyncpg

#: ``application_name`` of opswatch's sessions, excluded from query and transaction ages
APPLICATION_NAME = "opswatch"

# One prepared statement, one row. Ages use now() (this statement's start) and are floored at
# zero; opswatch's own sessions are counted in ``connections`` (they use slots) but not in
# the activity figures. ``connections`` counts client backends, the ones max_connections caps.
STATS_QUERY = """
WITH activity AS (
    SELECT state, query_start, xact_start, state_change,
           (pid = pg_backend_pid() OR application_name = 'opswatch') AS own
    FROM pg_stat_activity
    WHERE backend_type = 'client backend'
), sizes AS (
    SELECT array_agg(datname::text) AS names, array_agg(pg_database_size(oid)) AS bytes
    FROM pg_database
    WHERE datallowconn AND NOT datistemplate AND has_database_privilege(oid, 'CONNECT')
)
SELECT
    count(*) AS connections,
    current_setting('max_connections')::int AS max_connections,
    count(*) FILTER (WHERE NOT own AND state = 'active') AS active_backends,
    count(*) FILTER (WHERE NOT own AND state LIKE 'idle in transaction%')
        AS idle_in_transaction_backends,
    greatest(0, coalesce(extract(epoch FROM max(now() - query_start)
        FILTER (WHERE NOT own AND state = 'active')), 0))::float8 AS longest_query_seconds,
    greatest(0, coalesce(extract(epoch FROM max(now() - xact_start)
        FILTER (WHERE NOT own)), 0))::float8 AS longest_transaction_seconds,
    greatest(0, coalesce(extract(epoch FROM max(now() - state_change)
        FILTER (WHERE NOT own AND state LIKE 'idle in transaction%')), 0))::float8
        AS longest_idle_in_transaction_seconds,
    (SELECT count(*) FROM pg_locks WHERE NOT granted) AS waiting_locks,
    (SELECT coalesce(sum(deadlocks), 0)::float8 FROM pg_stat_database) AS deadlocks,
    (SELECT coalesce(sum(blks_hit), 0)::float8 FROM pg_stat_database) AS blocks_hit,
    (SELECT coalesce(sum(blks_read), 0)::float8 FROM pg_stat_database) AS blocks_read,
    (SELECT max(age(datfrozenxid)) FROM pg_database) AS xid_age,
    pg_is_in_recovery() AS in_recovery,
    CASE WHEN pg_is_in_recovery() THEN
        CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8
        ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END
    END AS replication_lag_seconds,
    (SELECT names FROM sizes) AS database_names,
    (SELECT bytes FROM sizes) AS database_bytes
FROM activity
"""


@dataclass(frozen=True, slots=True)
class PostgresStats:
    """One statistics query's row, typed."""

    connections: int
    max_connections: int
    active_backends: int
    idle_in_transaction_backends: int
    longest_query_seconds: float
    longest_transaction_seconds: float
    longest_idle_in_transaction_seconds: float
    waiting_locks: int
    deadlocks: float
    blocks_hit: float
    blocks_read: float
    xid_age: int
    in_recovery: bool
    replication_lag_seconds: float | None
    database_sizes: Mapping[str, int]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PostgresStats:
        names = row["database_names"] or []
        sizes = row["database_bytes"] or []
        lag = row["replication_lag_seconds"]
        return cls(
            connections=int(row["connections"]),
            max_connections=int(row["max_connections"]),
            active_backends=int(row["active_backends"]),
            idle_in_transaction_backends=int(row["idle_in_transaction_backends"]),
            longest_query_seconds=float(row["longest_query_seconds"]),
            longest_transaction_seconds=float(row["longest_transaction_seconds"]),
            longest_idle_in_transaction_seconds=float(row["longest_idle_in_transaction_seconds"]),
            waiting_locks=int(row["waiting_locks"]),
            deadlocks=float(row["deadlocks"]),
            blocks_hit=float(row["blocks_hit"]),
            blocks_read=float(row["blocks_read"]),
            xid_age=int(row["xid_age"] or 0),
            in_recovery=bool(row["in_recovery"]),
            replication_lag_seconds=None if lag is None else max(0.0, float(lag)),
            database_sizes={
                str(name): int(size)
                for name, size in zip(names, sizes, strict=True)
                if size is not None
            },
        )

    def counters(self, at: datetime) -> Counters:
        return Counters(
            at,
            {
                "deadlocks": self.deadlocks,
                "blocks_hit": self.blocks_hit,
                "blocks_read": self.blocks_read,
            },
        )


def build_samples(
    check: str,
    target: str,
    *,
    at: datetime,
    ping_seconds: float,
    stats: PostgresStats,
    previous: Counters | None,
) -> list[Sample]:
    """Every sample of one successful run. Rates and the hit ratio come from the counter
    deltas since ``previous`` (absent on the first run and after a counter reset)."""
    labels = {"target": target}

    def sample(metric: str, value: float, extra: Mapping[str, str] | None = None) -> Sample:
        return Sample(check, f"postgres.{metric}", float(value), at, {**labels, **(extra or {})})

    percent = 100.0 * stats.connections / stats.max_connections if stats.max_connections else 0.0
    samples = [
        up_sample("postgres", check, True, at, labels),
        sample("ping_seconds", ping_seconds),
        sample("connections", stats.connections),
        sample("max_connections", stats.max_connections),
        sample("connections_percent", percent),
        sample("active_backends", stats.active_backends),
        sample("idle_in_transaction_backends", stats.idle_in_transaction_backends),
        sample("longest_query_seconds", stats.longest_query_seconds),
        sample("longest_transaction_seconds", stats.longest_transaction_seconds),
        sample("longest_idle_in_transaction_seconds", stats.longest_idle_in_transaction_seconds),
        sample("waiting_locks", stats.waiting_locks),
        sample("xid_age", stats.xid_age),
    ]
    deltas = counter_deltas(previous, stats.counters(at))
    deadlocks_per_s = deltas.rate("deadlocks")
    if deadlocks_per_s is not None:
        samples.append(sample("deadlocks_per_s", deadlocks_per_s))
    hit_ratio = deltas.ratio("blocks_hit", "blocks_read")
    if hit_ratio is not None:
        samples.append(sample("cache_hit_ratio", hit_ratio))
    samples.extend(
        sample("database_size_bytes", size, {"database": name})
        for name, size in sorted(stats.database_sizes.items())
    )
    if stats.in_recovery and stats.replication_lag_seconds is not None:
        samples.append(sample("replication_lag_seconds", stats.replication_lag_seconds))
    return samples


async def _no_reset(_connection: object) -> None:
    """Pool release hook: opswatch changes no session state, so skip asyncpg's RESET ALL
    round trip (an open transaction is still rolled back by asyncpg itself)."""


class PostgresCollector:
    name: ClassVar[str] = "postgres"

    def __init__(self, target: Target, *, timeout: float, clock: Clock) -> None:
        self.target = target
        self.check = f"{self.name}:{target.name}"
        self._timeout = timeout
        self._clock = clock
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._previous: Counters | None = None
        self._outage = OutageLog(self.check)

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[PostgresCollector]:
        targets, timeout = service_targets(
            env, cls.name, schemes=("postgresql", "postgres"), example="postgresql://..."
        )
        return [cls(target, timeout=timeout, clock=clock) for target in targets]

    def describe(self) -> dict[str, str]:
        return describe_service(self.check, self.target, self._timeout)

    async def collect(self) -> list[Sample]:
        import asyncpg  # noqa: PLC0415 - heavy; only when this collector runs

        at = self._clock()
        try:
            async with asyncio.timeout(self._timeout):
                ping_seconds, stats = await self._measure()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._outage.failed(exc)
            return [up_sample(self.name, self.check, False, at, {"target": self.target.name})]
        self._outage.succeeded()
        samples = build_samples(
            self.check,
            self.target.name,
            at=at,
            ping_seconds=ping_seconds,
            stats=stats,
            previous=self._previous,
        )
        self._previous = stats.counters(at)
        return samples

    async def _measure(self) -> tuple[float, PostgresStats]:
        pool = await self._get_pool()
        async with pool.acquire() as connection:
            started = time.perf_counter()
            await connection.execute("SELECT 1")
            ping_seconds = time.perf_counter() - started
            row = await connection.fetchrow(STATS_QUERY)
        if row is None:  # cannot happen: an aggregate without GROUP BY gives one row
            raise CollectorError("the statistics query returned no row")
        return ping_seconds, PostgresStats.from_row(dict(row.items()))

    async def _get_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        import asyncpg  # noqa: PLC0415

        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.target.url.reveal(),
                min_size=0,
                max_size=2,
                timeout=self._timeout,
                command_timeout=self._timeout,
                reset=_no_reset,
                server_settings={
                    "application_name": APPLICATION_NAME,
                    "statement_timeout": str(round(self._timeout * 1000)),
                },
            )
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await pool.close()
        except TimeoutError:
            pool.terminate()
