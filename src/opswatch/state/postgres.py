"""Durable state in PostgreSQL: the same alerts, history and outbox as :class:`SQLiteStore`,
shared by several daemon replicas.

Same method names and semantics as ``opswatch.state.sqlite.SQLiteStore`` (both satisfy
``opswatch.state.StateStore``); what differs is what sharing needs:

* tables are prefixed ``opswatch_`` and live in ``schema`` when given (created if missing,
  made the connections' ``search_path``), else in the URL's or the server's search path;
* the schema is versioned in ``opswatch_schema``; every migration runs in its own
  transaction under a transaction-level advisory lock, so replicas starting together apply
  each migration once; a database migrated by a newer opswatch is refused;
* ``outbox_due`` *claims* the rows it returns (``claimed_by``/``claim_until``, taken with
  ``FOR UPDATE SKIP LOCKED`` under an advisory lock): another replica skips a claimed row,
  and every row of its channel, until the claim expires, so a row is never sent by two
  replicas at once and one channel's rows keep their order. A claim lives ``claim_ttl``
  (3 check intervals, from ``opswatch.state.open_store``) and is renewed while the replica
  lives: every third of a TTL by a task of the open store, and by every finished or
  postponed row. So the claims of a replica that died (``kill -9``, hung, cut off) lapse
  within a TTL and another replica sends those rows (again: delivery is at least once).
  Finishing or postponing a row releases its claim; ``close`` releases them all. A
  replica's own claims stay visible to it (its outbox delivers each channel in one pass at
  a time);
* ``opswatch_leases`` holds the per-check leases of ``opswatch.state.leases.PostgresLease``;
* recovery runs (budgets) and evidence are shared too, so a budget holds across replicas.

Row times (due, created, finished) are the caller's clock, as in SQLite; claim and lease
expiry use the server's clock, the one clock every replica shares.

asyncpg is imported by this module only: ``opswatch.state.open_store`` imports it when
``OPSWATCH_STATE_URL`` is set. Errors opening the store name the masked URL and the
exception class, never the driver's message (it may echo the URL).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from opswatch.codec import (
    alert_from_json,
    alert_to_json,
    maintenance_from_json,
    maintenance_to_json,
    notification_from_json,
    notification_to_json,
    pause_event_from_json,
    pause_event_to_json,
    pause_from_json,
    pause_scope,
    pause_to_json,
    ping_from_json,
    ping_to_json,
    silence_from_json,
    silence_to_json,
    transition_from_json,
    transition_to_json,
)
from opswatch.model import (
    Alert,
    CycleRecord,
    MaintenanceWindow,
    MetricSeries,
    Notification,
    OutboxItem,
    Pause,
    PauseEvent,
    Ping,
    RawPoint,
    RecoveryOutcome,
    RecoveryResult,
    Rollup,
    Sample,
    SeriesKey,
    Silence,
    Transition,
    series_key,
)
from opswatch.ports import LeaseError, StoreError, UnusableStateError

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: while the store is open, this replica's claims are renewed this many times per TTL
CLAIM_RENEWALS_PER_TTL = 3

#: Migrations, in order; the n-th (from 1) brings ``opswatch_schema.version`` to n.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE opswatch_alerts (
        fingerprint text PRIMARY KEY,
        data text NOT NULL
    );
    CREATE TABLE opswatch_history (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        fingerprint text NOT NULL,
        kind text NOT NULL,
        data text NOT NULL
    );
    CREATE INDEX opswatch_history_fingerprint ON opswatch_history (fingerprint, id);
    CREATE TABLE opswatch_outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        channel text NOT NULL,
        idempotency_key text NOT NULL,
        data text NOT NULL,
        fingerprints text[] NOT NULL,
        created_at timestamptz NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL,
        state text NOT NULL DEFAULT 'pending',
        last_error text,
        finished_at timestamptz,
        claimed_by text,
        claim_until timestamptz,
        UNIQUE (channel, idempotency_key)
    );
    CREATE INDEX opswatch_outbox_pending ON opswatch_outbox (next_attempt_at)
        WHERE state = 'pending';
    CREATE INDEX opswatch_outbox_claims ON opswatch_outbox (channel)
        WHERE state = 'pending' AND claimed_by IS NOT NULL;
    CREATE TABLE opswatch_leases (
        name text PRIMARY KEY,
        holder text NOT NULL,
        token text NOT NULL,
        expires_at timestamptz NOT NULL
    );
    """,
    # 2: recovery runs (results, budgets) and the evidence captured when an alert fired
    """
    CREATE TABLE opswatch_recovery_runs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        action text NOT NULL,
        budget_key text NOT NULL,
        fingerprint text NOT NULL,
        rule text NOT NULL,
        target text NOT NULL,
        outcome text NOT NULL,
        attempts integer NOT NULL,
        duration_s double precision NOT NULL,
        trial boolean NOT NULL DEFAULT false,
        detail text NOT NULL
    );
    CREATE INDEX opswatch_recovery_runs_at ON opswatch_recovery_runs (at);
    CREATE INDEX opswatch_recovery_runs_key ON opswatch_recovery_runs (budget_key, at);
    CREATE TABLE opswatch_evidence (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        fingerprint text NOT NULL,
        at timestamptz NOT NULL,
        data text NOT NULL
    );
    CREATE INDEX opswatch_evidence_fingerprint ON opswatch_evidence (fingerprint, id);
    """,
    # 3: silences (alerts/silences.py)
    """
    CREATE TABLE opswatch_silences (
        id text PRIMARY KEY,
        ends_at timestamptz NOT NULL,
        data text NOT NULL
    );
    CREATE INDEX opswatch_silences_ends_at ON opswatch_silences (ends_at);
    """,
    # 4: heartbeat pings (collectors/heartbeat.py)
    """
    CREATE TABLE opswatch_pings (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        heartbeat text NOT NULL,
        kind text NOT NULL,
        data text NOT NULL
    );
    CREATE INDEX opswatch_pings_heartbeat ON opswatch_pings (heartbeat, kind, id);
    """,
    # 5: pauses and their audit (alerts/pause.py); scope '*' is every check
    """
    CREATE TABLE opswatch_pauses (
        scope text PRIMARY KEY,
        data text NOT NULL
    );
    CREATE TABLE opswatch_pause_events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        data text NOT NULL
    );
    """,
    # 6: one-off maintenance windows (alerts/maintenance.py)
    """
    CREATE TABLE opswatch_maintenance_windows (
        id text PRIMARY KEY,
        ends_at timestamptz NOT NULL,
        data text NOT NULL
    );
    CREATE INDEX opswatch_maintenance_windows_ends_at ON opswatch_maintenance_windows (ends_at);
    """,
    # 7: metric history (capacity/): series, raw samples, 5-minute roll-ups
    """
    CREATE TABLE opswatch_metric_series (
        id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        check_name text NOT NULL,
        metric text NOT NULL,
        labels text NOT NULL,
        created bigint NOT NULL,
        UNIQUE (check_name, metric, labels)
    );
    CREATE TABLE opswatch_metric_samples (
        series integer NOT NULL,
        at bigint NOT NULL,
        value double precision NOT NULL,
        PRIMARY KEY (series, at)
    );
    CREATE INDEX opswatch_metric_samples_at ON opswatch_metric_samples USING brin (at);
    CREATE TABLE opswatch_metric_rollups (
        series integer NOT NULL,
        at bigint NOT NULL,
        min double precision NOT NULL,
        max double precision NOT NULL,
        mean double precision NOT NULL,
        p95 double precision NOT NULL,
        count integer NOT NULL,
        PRIMARY KEY (series, at)
    );
    CREATE INDEX opswatch_metric_rollups_at ON opswatch_metric_rollups USING brin (at);
    CREATE TABLE opswatch_metric_meta (
        name text PRIMARY KEY,
        value bigint NOT NULL
    );
    """,
)

_RECOVERY_COLUMNS = (
    "action, fingerprint, outcome, attempts, duration_s, detail, at, rule, target, "
    "budget_key, trial"
)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS opswatch_schema (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL
);
INSERT INTO opswatch_schema (version) VALUES (0) ON CONFLICT DO NOTHING;
"""

_UPSERT_ALERT = (
    "INSERT INTO opswatch_alerts (fingerprint, data) VALUES ($1, $2) "
    "ON CONFLICT (fingerprint) DO UPDATE SET data = excluded.data"
)
_INSERT_HISTORY = (
    "INSERT INTO opswatch_history (at, fingerprint, kind, data) VALUES ($1, $2, $3, $4)"
)
_UPSERT_SERIES = (
    "INSERT INTO opswatch_metric_series (check_name, metric, labels, created) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (check_name, metric, labels) "
    "DO UPDATE SET check_name = excluded.check_name RETURNING id"
)
_INSERT_SAMPLES = (
    "INSERT INTO opswatch_metric_samples (series, at, value) "
    "SELECT * FROM unnest($1::integer[], $2::bigint[], $3::double precision[]) "
    "ON CONFLICT (series, at) DO UPDATE SET value = excluded.value"
)
_ROLLUP_COLUMNS = "series, at, min, max, mean, p95, count"
_UPSERT_ROLLUPS = (
    f"INSERT INTO opswatch_metric_rollups ({_ROLLUP_COLUMNS}) "
    "SELECT * FROM unnest($1::integer[], $2::bigint[], $3::double precision[], "
    "$4::double precision[], $5::double precision[], $6::double precision[], $7::integer[]) "
    "ON CONFLICT (series, at) DO UPDATE SET min = excluded.min, max = excluded.max, "
    "mean = excluded.mean, p95 = excluded.p95, count = excluded.count"
)
# each history table's size, scaled by the share of its rows that are live (as far as the
# statistics know yet: a table they have not counted counts whole)
_HISTORY_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(t.relid) * CASE
    WHEN t.n_live_tup + t.n_dead_tup = 0 THEN 1.0
    ELSE t.n_live_tup::float8 / (t.n_live_tup + t.n_dead_tup) END), 0)::bigint
FROM pg_stat_user_tables AS t
WHERE t.relname IN ('opswatch_metric_series', 'opswatch_metric_samples',
    'opswatch_metric_rollups') AND t.schemaname = current_schema()
"""
_INSERT_OUTBOX = (
    "INSERT INTO opswatch_outbox "
    "(channel, idempotency_key, data, fingerprints, created_at, next_attempt_at) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (channel, idempotency_key) DO NOTHING"
)
_INSERT_OUTBOX_CLAIMED = (
    "INSERT INTO opswatch_outbox (channel, idempotency_key, data, fingerprints, created_at, "
    "next_attempt_at, claimed_by, claim_until) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, clock_timestamp() + make_interval(secs => $8)) "
    "ON CONFLICT (channel, idempotency_key) DO NOTHING RETURNING id"
)

# Claim the due rows (of channel $5 unless NULL; at most $3 unless NULL): not claimed by a
# live claim of another replica, and no other replica holds a live claim on the channel (its
# rows go out in order, from one replica).
_CLAIM_DUE = """
WITH picked AS MATERIALIZED (
    SELECT c.id FROM opswatch_outbox AS c
    WHERE c.state = 'pending' AND c.next_attempt_at <= $1
      AND ($5::text IS NULL OR c.channel = $5)
      AND NOT EXISTS (
          SELECT 1 FROM opswatch_outbox AS b
          WHERE b.channel = c.channel AND b.state = 'pending'
            AND b.claimed_by <> $2 AND b.claim_until > clock_timestamp())
    ORDER BY c.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE opswatch_outbox AS o
SET claimed_by = $2, claim_until = clock_timestamp() + make_interval(secs => $4)
FROM picked
WHERE o.id = picked.id
RETURNING o.id, o.channel, o.data, o.attempts, o.created_at
"""

# The earliest time a pending row (of channel $3 unless NULL) can be sent: its due time, or
# when another replica's claim on it expires.
_NEXT_DUE = """
SELECT min(CASE
    WHEN claimed_by IS NULL OR claimed_by = $1 OR claim_until <= clock_timestamp()
        THEN next_attempt_at
    ELSE greatest(next_attempt_at, claim_until)
END), clock_timestamp() + make_interval(secs => $2)
FROM opswatch_outbox WHERE state = 'pending' AND ($3::text IS NULL OR channel = $3)
"""

_EXTEND_CLAIMS = (
    "UPDATE opswatch_outbox SET claim_until = clock_timestamp() + make_interval(secs => $2) "
    "WHERE claimed_by = $1 AND state = 'pending'"
)

_ACQUIRE_LEASE = """
INSERT INTO opswatch_leases AS l (name, holder, token, expires_at)
VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder,
    expires_at = excluded.expires_at,
    token = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp()
                 THEN l.token ELSE excluded.token END
WHERE l.holder = excluded.holder OR l.expires_at <= clock_timestamp()
RETURNING token
"""


def _advisory_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory lock key for ``purpose`` in ``schema``."""
    digest = hashlib.sha256(f"opswatch:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresStore:
    """The state store in PostgreSQL, through a small asyncpg pool.

    ``replica`` names this process in outbox claims (``claimed_by``); ``claim_ttl`` is how
    long a claim protects a row from other replicas without news from this one (the daemon
    passes 3 check intervals, like a check's lease; the default is 3 of the default 30 s).
    While open, the store renews its claims every ``claim_ttl / CLAIM_RENEWALS_PER_TTL``
    seconds (``sleep`` waits between renewals). With ``poll_interval``,
    :meth:`outbox_next_due` answers at most that far ahead, so that an idle outbox still
    looks for rows another replica stored and could not send.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        display: str = "postgresql://***",
        replica: str = "opswatch",
        claim_ttl: float = 90.0,
        poll_interval: float | None = None,
        pool_size: int = 4,
        command_timeout: float = 10.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if schema is not None and not SCHEMA_NAME.match(schema):
            raise ValueError(f"schema must be a lower-case SQL identifier, got {schema!r}")
        if claim_ttl <= 0 or (poll_interval is not None and poll_interval <= 0):
            raise ValueError("claim_ttl and poll_interval must be positive")
        self.display = display
        self.schema = schema
        self.replica = replica
        self.claim_ttl = claim_ttl
        self.poll_interval = poll_interval
        self._url = url
        self._pool_size = pool_size
        self._command_timeout = command_timeout
        self._sleep = sleep
        self._pool: asyncpg.Pool | None = None
        #: metric series ids by (check, metric, sorted labels), as committed
        self._series: dict[SeriesKey, int] = {}
        self._renewer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.display!r}, schema={self.schema!r})"

    @property
    def pool(self) -> asyncpg.Pool:
        pool = self._pool
        if pool is None:
            raise StoreError(f"state store {self.display} is not open")
        return pool

    async def open(self) -> None:
        settings = {"application_name": "opswatch"}
        if self.schema is not None:
            settings["search_path"] = self.schema
        try:
            pool = await asyncpg.create_pool(
                self._url,
                # no floor to restore: asyncpg would retry it, and log a traceback per
                # attempt, through a whole outage (connections are made when needed)
                min_size=0,
                max_size=self._pool_size,
                timeout=self._command_timeout,
                command_timeout=self._command_timeout,
                server_settings=settings,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"cannot open state store {self.display}: {_describe(exc)}") from None
        try:
            async with pool.acquire() as conn:
                await self._migrate(conn)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await pool.close()
            raise StoreError(
                f"cannot migrate state store {self.display}: {_describe(exc)}"
            ) from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._renewer = asyncio.create_task(self._keep_claims_alive(), name="outbox-claims")

    async def _migrate(self, conn: PoolConnectionProxy[Record]) -> None:
        key = _advisory_key("migrate", self.schema or "")
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
            if self.schema is not None:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(_VERSION_TABLE)
        for number, script in enumerate(MIGRATIONS, start=1):
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
                version = await conn.fetchval("SELECT version FROM opswatch_schema FOR UPDATE")
                if version >= number:
                    continue
                await conn.execute(script)
                await conn.execute("UPDATE opswatch_schema SET version = $1", number)
        version = await conn.fetchval("SELECT version FROM opswatch_schema")
        if version > len(MIGRATIONS):
            raise UnusableStateError(
                f"state store {self.display}: schema version {version}, newer than this "
                f"opswatch knows ({len(MIGRATIONS)}): upgrade opswatch"
            )

    async def close(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.wait({renewer})
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            # rows this replica claimed but did not finish are free for the others at once
            await pool.execute(
                "UPDATE opswatch_outbox SET claimed_by = NULL, claim_until = NULL "
                "WHERE claimed_by = $1 AND state = 'pending'",
                self.replica,
            )
        finally:
            await pool.close()

    async def schema_version(self) -> int:
        version: int = await self.pool.fetchval("SELECT version FROM opswatch_schema")
        return version

    # -- alerts and history ----------------------------------------------------------------

    def poll(self, seconds: float) -> None:
        self.poll_interval = seconds

    def claim_for(self, seconds: float) -> None:
        self.claim_ttl = seconds

    async def load_active(self) -> list[Alert]:
        rows = await self.pool.fetch("SELECT data FROM opswatch_alerts ORDER BY fingerprint")
        return [alert_from_json(json.loads(row[0])) for row in rows]

    async def record(self, cycle: CycleRecord, now: datetime) -> None:
        # encoded first: a value that cannot be encoded writes nothing
        alerts = [(a.fingerprint, json.dumps(alert_to_json(a))) for a in cycle.active]
        resolved = [(fp,) for fp in cycle.resolved]
        history = [
            (t.at, t.alert.fingerprint, t.kind.value, json.dumps(transition_to_json(t)))
            for t in cycle.transitions
        ]
        outbox = [_outbox_row(channel, n, now, now) for channel, n in cycle.outbox]
        if not (alerts or resolved or history or outbox or cycle.samples):
            return
        new: dict[SeriesKey, int] = {}
        async with self.pool.acquire() as conn, conn.transaction():
            if cycle.samples:
                await self._record_samples(conn, cycle.samples, new)
            if alerts:
                await conn.executemany(_UPSERT_ALERT, alerts)
            if resolved:
                await conn.executemany(
                    "DELETE FROM opswatch_alerts WHERE fingerprint = $1", resolved
                )
            if history:
                await conn.executemany(_INSERT_HISTORY, history)
            if outbox:
                await conn.executemany(_INSERT_OUTBOX, outbox)
        self._series.update(new)  # only ids that were committed

    async def _record_samples(
        self,
        conn: PoolConnectionProxy[Record],
        samples: Sequence[Sample],
        new: dict[SeriesKey, int],
    ) -> None:
        """One batched insert of ``samples``; a series met for the first time is created."""
        ids: list[int] = []
        ats: list[int] = []
        values: list[float] = []
        for sample in samples:
            key = series_key(sample)
            series = self._series.get(key, new.get(key))
            if series is None:
                series = await conn.fetchval(
                    _UPSERT_SERIES,
                    key[0],
                    key[1],
                    json.dumps(dict(key[2]), separators=(",", ":")),
                    int(sample.at.timestamp()),
                )
                new[key] = series
            ids.append(series)
            ats.append(int(sample.at.timestamp()))
            values.append(sample.value)
        await conn.execute(_INSERT_SAMPLES, ids, ats, values)

    # -- metric history (see capacity/) ---------------------------------------------------

    async def history_series(self, check: str | None = None) -> list[MetricSeries]:
        rows = await self.pool.fetch(
            "SELECT id, check_name, metric, labels FROM opswatch_metric_series "
            "WHERE $1::text IS NULL OR check_name = $1 ORDER BY id",
            check,
        )
        return [MetricSeries(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def history_samples(
        self, since: int, until: int, series: Sequence[int] | None = None
    ) -> list[RawPoint]:
        rows = await self.pool.fetch(
            "SELECT series, at, value FROM opswatch_metric_samples "
            "WHERE at >= $1 AND at < $2 AND ($3::integer[] IS NULL OR series = ANY($3)) "
            "ORDER BY at, series",
            since,
            until,
            None if series is None else list(series),
        )
        return [RawPoint(r[0], r[1], r[2]) for r in rows]

    async def history_rollups(self, series: Sequence[int], since: int, until: int) -> list[Rollup]:
        rows = await self.pool.fetch(
            f"SELECT {_ROLLUP_COLUMNS} FROM opswatch_metric_rollups "
            "WHERE series = ANY($1) AND at >= $2 AND at < $3 ORDER BY series, at",
            list(series),
            since,
            until,
        )
        return [Rollup(*r) for r in rows]

    async def history_rollups_merged(
        self, series: Sequence[int], since: int, until: int, step: int
    ) -> list[Rollup]:
        rows = await self.pool.fetch(
            "SELECT series, at - at % $4 AS bucket, MIN(min), MAX(max), "
            "SUM(mean * count) / SUM(count), MAX(p95), SUM(count)::integer "
            "FROM opswatch_metric_rollups WHERE series = ANY($1) AND at >= $2 AND at < $3 "
            "GROUP BY series, bucket ORDER BY series, bucket",
            list(series),
            since,
            until,
            step,
        )
        return [Rollup(*r) for r in rows]

    async def history_rolled_until(self) -> int | None:
        value: int | None = await self.pool.fetchval(
            "SELECT value FROM opswatch_metric_meta WHERE name = 'rolled_until'"
        )
        return value

    async def history_store_rollups(self, rollups: Sequence[Rollup], rolled_until: int) -> None:
        fields = ("series", "at", "min", "max", "mean", "p95", "count")
        columns = [[getattr(r, name) for r in rollups] for name in fields]
        async with self.pool.acquire() as conn, conn.transaction():
            if rollups:
                await conn.execute(_UPSERT_ROLLUPS, *columns)
            await conn.execute(
                "INSERT INTO opswatch_metric_meta (name, value) VALUES ('rolled_until', $1) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                rolled_until,
            )

    async def history_prune(self, samples_before: int, rollups_before: int) -> tuple[int, int]:
        async with self.pool.acquire() as conn, conn.transaction():
            samples = await conn.fetchval(
                "WITH gone AS (DELETE FROM opswatch_metric_samples WHERE at < $1 RETURNING 1) "
                "SELECT count(*) FROM gone",
                samples_before,
            )
            rollups = await conn.fetchval(
                "WITH gone AS (DELETE FROM opswatch_metric_rollups WHERE at < $1 RETURNING 1) "
                "SELECT count(*) FROM gone",
                rollups_before,
            )
            forgotten = await conn.execute(
                "DELETE FROM opswatch_metric_series AS s WHERE created < $1 AND NOT EXISTS "
                "(SELECT 1 FROM opswatch_metric_rollups WHERE series = s.id)",
                rollups_before,
            )
        if forgotten != "DELETE 0":  # a deleted series must not be written to by a cached id
            self._series.clear()
        return int(samples), int(rollups)

    async def history_bytes(self) -> int:
        """The live rows' share of the history tables (a deleted row's space counts as free
        once deleted, as SQLite's free pages do, though PostgreSQL reuses it only later)."""
        size: int = await self.pool.fetchval(_HISTORY_BYTES)
        return size

    async def history(self, limit: int = 100, fingerprint: str | None = None) -> list[Transition]:
        """The newest transitions first."""
        if fingerprint is None:
            rows = await self.pool.fetch(
                "SELECT data FROM opswatch_history ORDER BY id DESC LIMIT $1", limit
            )
        else:
            rows = await self.pool.fetch(
                "SELECT data FROM opswatch_history WHERE fingerprint = $1 "
                "ORDER BY id DESC LIMIT $2",
                fingerprint,
                limit,
            )
        return [transition_from_json(json.loads(row[0])) for row in rows]

    async def history_since(self, since: datetime, limit: int) -> list[Transition]:
        rows = await self.pool.fetch(
            "SELECT data FROM opswatch_history WHERE at >= $1 ORDER BY id LIMIT $2", since, limit
        )
        return [transition_from_json(json.loads(row[0])) for row in rows]

    # -- silences (see alerts/silences.py) --------------------------------------------------

    async def silence_save(self, silence: Silence) -> None:
        await self.pool.execute(
            "INSERT INTO opswatch_silences (id, ends_at, data) VALUES ($1, $2, $3) "
            "ON CONFLICT (id) DO UPDATE SET ends_at = excluded.ends_at, data = excluded.data",
            silence.id,
            silence.ends_at,
            json.dumps(silence_to_json(silence)),
        )

    async def silences(self, ending_after: datetime) -> list[Silence]:
        rows = await self.pool.fetch(
            "SELECT data FROM opswatch_silences WHERE ends_at > $1 ORDER BY id", ending_after
        )
        return [silence_from_json(json.loads(row[0])) for row in rows]

    # -- heartbeat pings (see collectors/heartbeat.py) -------------------------------------

    async def ping_record(self, ping: Ping, keep: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO opswatch_pings (heartbeat, kind, data) VALUES ($1, $2, $3)",
                ping.heartbeat,
                ping.kind.value,
                json.dumps(ping_to_json(ping)),
            )
            await conn.execute(
                "DELETE FROM opswatch_pings WHERE heartbeat = $1 AND id <= (SELECT id FROM "
                "opswatch_pings WHERE heartbeat = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
                ping.heartbeat,
                keep,
            )

    async def pings(self, heartbeat: str, limit: int = 100) -> list[Ping]:
        rows = await self.pool.fetch(
            "SELECT data FROM opswatch_pings WHERE heartbeat = $1 ORDER BY id DESC LIMIT $2",
            heartbeat,
            limit,
        )
        return [ping_from_json(json.loads(row[0])) for row in rows]

    async def pings_latest(self, heartbeat: str) -> list[Ping]:
        rows = await self.pool.fetch(
            "SELECT data FROM opswatch_pings WHERE id IN (SELECT max(id) FROM opswatch_pings "
            "WHERE heartbeat = $1 GROUP BY kind) ORDER BY id",
            heartbeat,
        )
        return [ping_from_json(json.loads(row[0])) for row in rows]

    # -- pauses (see alerts/pause.py) -------------------------------------------------------

    async def pause_change(
        self, paused: Sequence[Pause], resumed: Sequence[str | None], event: PauseEvent
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if resumed:
                await conn.executemany(
                    "DELETE FROM opswatch_pauses WHERE scope = $1",
                    [(pause_scope(c),) for c in resumed],
                )
            if paused:
                await conn.executemany(
                    "INSERT INTO opswatch_pauses (scope, data) VALUES ($1, $2) "
                    "ON CONFLICT (scope) DO UPDATE SET data = excluded.data",
                    [(pause_scope(p.check), json.dumps(pause_to_json(p))) for p in paused],
                )
            await conn.execute(
                "INSERT INTO opswatch_pause_events (at, data) VALUES ($1, $2)",
                event.at,
                json.dumps(pause_event_to_json(event)),
            )

    async def pauses(self) -> list[Pause]:
        rows = await self.pool.fetch("SELECT data FROM opswatch_pauses ORDER BY scope")
        return [pause_from_json(json.loads(row[0])) for row in rows]

    async def pause_events(self, limit: int = 100) -> list[PauseEvent]:
        rows = await self.pool.fetch(
            "SELECT data FROM opswatch_pause_events ORDER BY id DESC LIMIT $1", limit
        )
        return [pause_event_from_json(json.loads(row[0])) for row in rows]

    # -- one-off maintenance windows (see alerts/maintenance.py) -----------------------------

    async def maintenance_save(self, window: MaintenanceWindow) -> None:
        await self.pool.execute(
            "INSERT INTO opswatch_maintenance_windows (id, ends_at, data) VALUES ($1, $2, $3) "
            "ON CONFLICT (id) DO UPDATE SET ends_at = excluded.ends_at, data = excluded.data",
            window.id,
            window.ends_at,
            json.dumps(maintenance_to_json(window)),
        )

    async def maintenance_delete(self, window_id: str) -> None:
        await self.pool.execute("DELETE FROM opswatch_maintenance_windows WHERE id = $1", window_id)

    async def maintenance_windows(self, ending_after: datetime) -> list[MaintenanceWindow]:
        rows = await self.pool.fetch(
            "SELECT data FROM opswatch_maintenance_windows WHERE ends_at > $1 ORDER BY id",
            ending_after,
        )
        return [maintenance_from_json(json.loads(row[0])) for row in rows]

    # -- recovery (see recovery/runner.py) and evidence (recovery/evidence.py) --------------

    async def recovery_record(self, result: RecoveryResult) -> None:
        await self.pool.execute(
            "INSERT INTO opswatch_recovery_runs (at, action, budget_key, fingerprint, rule, "
            "target, outcome, attempts, duration_s, trial, detail) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            result.at,
            result.action,
            result.key,
            result.fingerprint,
            result.rule,
            result.target,
            result.outcome.value,
            result.attempts,
            result.duration_s,
            result.trial,
            result.detail,
        )

    async def recovery_runs(self, since: datetime, key: str | None = None) -> list[RecoveryResult]:
        """Runs at or after ``since`` (of one budget key, or all), oldest first."""
        sql = f"SELECT {_RECOVERY_COLUMNS} FROM opswatch_recovery_runs WHERE at >= $1"
        if key is None:
            rows = await self.pool.fetch(sql + " ORDER BY id", since)
        else:
            rows = await self.pool.fetch(sql + " AND budget_key = $2 ORDER BY id", since, key)
        return [_recovery_result(row) for row in rows]

    async def recovery_history(self, limit: int = 100) -> list[RecoveryResult]:
        """The newest runs first."""
        rows = await self.pool.fetch(
            f"SELECT {_RECOVERY_COLUMNS} FROM opswatch_recovery_runs ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [_recovery_result(row) for row in rows]

    async def evidence_record(self, fingerprint: str, at: datetime, data: dict[str, Any]) -> None:
        await self.pool.execute(
            "INSERT INTO opswatch_evidence (fingerprint, at, data) VALUES ($1, $2, $3)",
            fingerprint,
            at,
            json.dumps(data),
        )

    async def evidence(self, fingerprint: str, limit: int = 10) -> list[dict[str, Any]]:
        """The snapshots taken when the alert ``fingerprint`` fired, newest first."""
        rows = await self.pool.fetch(
            "SELECT data FROM opswatch_evidence WHERE fingerprint = $1 ORDER BY id DESC LIMIT $2",
            fingerprint,
            limit,
        )
        return [dict(json.loads(row[0])) for row in rows]

    # -- outbox ----------------------------------------------------------------------------

    async def outbox_due(
        self, now: datetime, limit: int | None, channel: str | None = None
    ) -> list[OutboxItem]:
        """Pending rows whose next attempt is due, oldest first, at most ``limit`` (None: all),
        of ``channel`` only when given; claimed for this replica."""
        async with self.pool.acquire() as conn, conn.transaction():
            # one claimer at a time: the channel check below sees every committed claim
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", _advisory_key("claim", self.schema or "")
            )
            rows = await conn.fetch(_CLAIM_DUE, now, self.replica, limit, self.claim_ttl, channel)
        return [
            OutboxItem(
                id=row["id"],
                channel=row["channel"],
                notification=notification_from_json(json.loads(row["data"])),
                attempts=row["attempts"],
                created_at=row["created_at"],
            )
            for row in sorted(rows, key=lambda r: int(r["id"]))
        ]

    async def outbox_next_due(self, channel: str | None = None) -> datetime | None:
        """When the earliest pending row (of ``channel`` when given) becomes due for this
        replica, or None when nothing is pending; with ``poll_interval``, never later than
        that from now."""
        row = await self.pool.fetchrow(_NEXT_DUE, self.replica, self.poll_interval or 0.0, channel)
        assert row is not None  # an aggregate always gives a row
        due: datetime | None = row[0]
        if self.poll_interval is None:
            return due
        poll: datetime = row[1]
        return poll if due is None else min(due, poll)

    async def outbox_delivered(self, item_id: int, at: datetime) -> None:
        await self._outbox_finish(item_id, "delivered", at, None)

    async def outbox_failed(self, item_id: int, at: datetime, error: str) -> None:
        await self._outbox_finish(item_id, "failed", at, error)

    async def _outbox_finish(
        self, item_id: int, state: str, at: datetime, error: str | None
    ) -> None:
        await self._outbox_update(
            "UPDATE opswatch_outbox SET state = $2, finished_at = $3, last_error = $4, "
            "attempts = attempts + 1, claimed_by = NULL, claim_until = NULL WHERE id = $1",
            item_id,
            state,
            at,
            error,
        )

    async def outbox_postpone(
        self, item_id: int, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        await self._outbox_update(
            "UPDATE opswatch_outbox SET attempts = $2, next_attempt_at = $3, last_error = $4, "
            "claimed_by = NULL, claim_until = NULL WHERE id = $1",
            item_id,
            attempts,
            next_attempt_at,
            error,
        )

    async def _keep_claims_alive(self) -> None:
        """While the store is open: renew this replica's claims every third of a TTL. A
        failure is logged once per run of failures (``outbox_claims_not_renewed``, then
        ``outbox_claims_renewed``); the claims then lapse like a dead replica's unless a
        later renewal gets through in time."""
        failing = False
        while True:
            await self._sleep(self.claim_ttl / CLAIM_RENEWALS_PER_TTL)
            try:
                await self.pool.execute(_EXTEND_CLAIMS, self.replica, self.claim_ttl)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if not failing:  # one line (and traceback) per outage, not per attempt
                    log.warning(
                        "outbox_claims_not_renewed",
                        store=self.display,
                        error=_describe(exc),
                        exc_info=True,
                    )
                failing = True
                continue
            if failing:
                log.info("outbox_claims_renewed", store=self.display)
            failing = False

    async def _outbox_update(self, sql: str, *args: Any) -> None:
        """One row's outcome, and this replica's other claims renewed (it is alive)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(sql, *args)
            await conn.execute(_EXTEND_CLAIMS, self.replica, self.claim_ttl)

    async def outbox_channels(
        self, fingerprints: Sequence[str], since: datetime
    ) -> dict[str, frozenset[str]]:
        """The channels of every outbox row (any state) queued since ``since`` that carries a
        transition of each fingerprint: where those alerts were notified."""
        if not fingerprints:
            return {}
        rows = await self.pool.fetch(
            "SELECT DISTINCT fp, channel FROM opswatch_outbox, unnest(fingerprints) AS fp "
            "WHERE created_at >= $1 AND fingerprints && $2 AND fp = ANY($2)",
            since,
            list(fingerprints),
        )
        found: dict[str, set[str]] = {}
        for row in rows:
            found.setdefault(str(row[0]), set()).add(str(row[1]))
        return {fp: frozenset(channels) for fp, channels in found.items()}

    async def outbox_divert(
        self,
        item_id: int,
        copies: Sequence[tuple[str, Notification]],
        at: datetime,
        error: str,
    ) -> None:
        """In one transaction: queue ``copies`` (fallback channel, notification; a channel
        that already has the key keeps its row) and end row ``item_id`` as ``diverted``."""
        rows = [_outbox_row(channel, n, at, at) for channel, n in copies]
        async with self.pool.acquire() as conn, conn.transaction():
            if rows:
                await conn.executemany(_INSERT_OUTBOX, rows)
            await conn.execute(
                "UPDATE opswatch_outbox SET state = 'diverted', finished_at = $2, "
                "last_error = $3, attempts = attempts + 1, claimed_by = NULL, "
                "claim_until = NULL WHERE id = $1",
                item_id,
                at,
                error,
            )
            await conn.execute(_EXTEND_CLAIMS, self.replica, self.claim_ttl)

    async def outbox_merge(
        self,
        item_ids: Sequence[int],
        channel: str,
        notification: Notification,
        created_at: datetime,
        at: datetime,
    ) -> int | None:
        """In one transaction: queue ``notification`` for ``channel`` (dated ``created_at``)
        and end rows ``item_ids`` as ``merged``. Returns the new row's id, or ``None`` when
        the channel already had this very message (it is then not queued again). The new
        row is claimed by this replica: its outbox delivers it at once."""
        row = _outbox_row(channel, notification, created_at, at)
        async with self.pool.acquire() as conn, conn.transaction():
            new_id: int | None = await conn.fetchval(
                _INSERT_OUTBOX_CLAIMED, *row, self.replica, self.claim_ttl
            )
            await conn.execute(
                "UPDATE opswatch_outbox SET state = 'merged', finished_at = $2, last_error = $3, "
                "claimed_by = NULL, claim_until = NULL "
                "WHERE id = ANY($1::bigint[]) AND state = 'pending'",
                list(item_ids),
                at,
                f"merged into row {new_id}",
            )
        return new_id

    async def outbox_counts(self) -> dict[str, int]:
        """Rows per state (pending, delivered, failed); a claimed row is still pending."""
        rows = await self.pool.fetch("SELECT state, count(*) FROM opswatch_outbox GROUP BY state")
        return {str(row[0]): int(row[1]) for row in rows}

    # -- leases (for opswatch.state.leases.PostgresLease) ------------------------------------

    async def lease_acquire(self, name: str, holder: str, token: str, ttl: float) -> str | None:
        """Renew ``name`` for ``holder`` or take it when free or expired; the tenure's token
        (kept on renewal, ``token`` when taken), or None while another holder's is live."""
        try:
            held: str | None = await self.pool.fetchval(_ACQUIRE_LEASE, name, holder, token, ttl)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise LeaseError(f"postgres lease: {_describe(exc)}") from None
        return held

    async def lease_release(self, name: str, holder: str) -> None:
        try:
            await self.pool.execute(
                "DELETE FROM opswatch_leases WHERE name = $1 AND holder = $2", name, holder
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise LeaseError(f"postgres lease: {_describe(exc)}") from None


def _outbox_row(
    channel: str, notification: Notification, created_at: datetime, due: datetime
) -> tuple[str, str, str, list[str], datetime, datetime]:
    return (
        channel,
        notification.idempotency_key,
        json.dumps(notification_to_json(notification)),
        sorted({t.alert.fingerprint for t in notification.transitions}),
        created_at,
        due,
    )


def _recovery_result(row: Record) -> RecoveryResult:
    return RecoveryResult(
        action=row[0],
        fingerprint=row[1],
        outcome=RecoveryOutcome(row[2]),
        attempts=int(row[3]),
        duration_s=float(row[4]),
        detail=row[5],
        at=row[6],
        rule=row[7],
        target=row[8],
        key=row[9],
        trial=bool(row[10]),
    )


def _describe(exc: BaseException) -> str:
    """The exception class and SQLSTATE or errno, never the driver's message."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return f"{type(exc).__name__} (SQLSTATE {sqlstate})"
    errno = getattr(exc, "errno", None)
    if errno:
        return f"{type(exc).__name__} (errno {errno})"
    return type(exc).__name__
