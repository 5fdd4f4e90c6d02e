"""Durable state in one SQLite file: active alerts, transition history and the outbox.

``sqlite3`` is blocking, so every call runs on one dedicated worker thread that owns the
connection (never on the event loop). A cycle's alert changes, history rows and outbox rows
are written in one transaction, so a notification is stored if and only if its transition is.
The schema is versioned with ``PRAGMA user_version``; migrations run at ``open()``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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
from opswatch.ports import StoreError, UnusableStateError

T = TypeVar("T")

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE alerts (
        fingerprint TEXT PRIMARY KEY,
        data TEXT NOT NULL
    );
    CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX history_fingerprint ON history (fingerprint, id);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        last_error TEXT,
        finished_at TEXT,
        UNIQUE (channel, idempotency_key)
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    """,
    # 2: recovery runs (results, budgets) and the evidence captured when an alert fired
    """
    CREATE TABLE recovery_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        at_epoch REAL NOT NULL,
        action TEXT NOT NULL,
        budget_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        rule TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        duration_s REAL NOT NULL,
        trial INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL
    );
    CREATE INDEX recovery_runs_at ON recovery_runs (at_epoch);
    CREATE TABLE evidence (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        fingerprint TEXT NOT NULL,
        at TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX evidence_fingerprint ON evidence (fingerprint, id);
    """,
    # 3: silences (alerts/silences.py)
    """
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        ends_at_epoch REAL NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX silences_ends_at ON silences (ends_at_epoch);
    """,
    # 4: heartbeat pings (collectors/heartbeat.py)
    """
    CREATE TABLE pings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        heartbeat TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX pings_heartbeat ON pings (heartbeat, kind, id);
    """,
    # 5: pauses and their audit (alerts/pause.py); scope '*' is every check
    """
    CREATE TABLE pauses (
        scope TEXT PRIMARY KEY,
        data TEXT NOT NULL
    );
    CREATE TABLE pause_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        data TEXT NOT NULL
    );
    """,
    # 6: one-off maintenance windows (alerts/maintenance.py)
    """
    CREATE TABLE maintenance_windows (
        id TEXT PRIMARY KEY,
        ends_at_epoch REAL NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX maintenance_windows_ends_at ON maintenance_windows (ends_at_epoch);
    """,
    # 7: metric history (capacity/): series, raw samples in time order, 5-minute roll-ups
    """
    CREATE TABLE metric_series (
        id INTEGER PRIMARY KEY,
        check_name TEXT NOT NULL,
        metric TEXT NOT NULL,
        labels TEXT NOT NULL,
        created INTEGER NOT NULL,
        UNIQUE (check_name, metric, labels)
    );
    CREATE TABLE metric_samples (
        at INTEGER NOT NULL,
        series INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (at, series)
    ) WITHOUT ROWID;
    CREATE TABLE metric_rollups (
        series INTEGER NOT NULL,
        at INTEGER NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        mean REAL NOT NULL,
        p95 REAL NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (series, at)
    ) WITHOUT ROWID;
    CREATE TABLE metric_meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
)


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opswatch-sqlite")
        self._db: sqlite3.Connection | None = None
        #: metric series ids by (check, metric, sorted labels); used on the worker thread only
        self._series: dict[SeriesKey, int] = {}

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise StoreError(f"state store {self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, db)

    async def open(self) -> None:
        """Open the file, or create it complete when there is none. A file that is corrupt,
        foreign, stamped by a newer opswatch or cannot be written raises
        :class:`UnusableStateError`, with nothing created or changed."""
        self._db = await asyncio.get_running_loop().run_in_executor(
            self._executor, _connect, self.path
        )

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=True)

    def poll(self, seconds: float) -> None:
        """One daemon wakes its own outbox for every row: nothing to poll for."""
        del seconds

    def claim_for(self, seconds: float) -> None:
        """One daemon claims nothing: no other replica could take its rows."""
        del seconds

    async def load_active(self) -> list[Alert]:
        def load(db: sqlite3.Connection) -> list[Alert]:
            rows = db.execute("SELECT data FROM alerts ORDER BY fingerprint").fetchall()
            return [alert_from_json(json.loads(row[0])) for row in rows]

        return await self._call(load)

    async def record(self, cycle: CycleRecord, now: datetime) -> None:
        new: dict[SeriesKey, int] = {}

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(
                    "INSERT INTO alerts (fingerprint, data) VALUES (?, ?) "
                    "ON CONFLICT (fingerprint) DO UPDATE SET data = excluded.data",
                    [(a.fingerprint, json.dumps(alert_to_json(a))) for a in cycle.active],
                )
                db.executemany(
                    "DELETE FROM alerts WHERE fingerprint = ?", [(fp,) for fp in cycle.resolved]
                )
                db.executemany(
                    "INSERT INTO history (at, fingerprint, kind, data) VALUES (?, ?, ?, ?)",
                    [
                        (
                            t.at.isoformat(),
                            t.alert.fingerprint,
                            t.kind.value,
                            json.dumps(transition_to_json(t)),
                        )
                        for t in cycle.transitions
                    ],
                )
                db.executemany(
                    _OUTBOX_INSERT, [_outbox_row(c, n, now, now) for c, n in cycle.outbox]
                )
                if cycle.samples:
                    db.executemany(_SAMPLE_INSERT, self._sample_rows(db, cycle.samples, new))
            self._series.update(new)  # only ids that were committed

        await self._call(write)

    def _sample_rows(
        self, db: sqlite3.Connection, samples: Sequence[Sample], new: dict[SeriesKey, int]
    ) -> list[tuple[int, int, float]]:
        rows = []
        for sample in samples:
            key = series_key(sample)
            series = self._series.get(key) or new.get(key)
            if series is None:
                labels = json.dumps(dict(key[2]), separators=(",", ":"))
                at = int(sample.at.timestamp())
                db.execute(
                    "INSERT INTO metric_series (check_name, metric, labels, created) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (key[0], key[1], labels, at),
                )
                (series,) = db.execute(
                    "SELECT id FROM metric_series WHERE check_name = ? AND metric = ? "
                    "AND labels = ?",
                    (key[0], key[1], labels),
                ).fetchone()
                new[key] = series
            rows.append((int(sample.at.timestamp()), series, sample.value))
        return rows

    async def history(self, limit: int = 100, fingerprint: str | None = None) -> list[Transition]:
        """The newest transitions first."""

        def read(db: sqlite3.Connection) -> list[Transition]:
            if fingerprint is None:
                rows = db.execute(
                    "SELECT data FROM history ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT data FROM history WHERE fingerprint = ? ORDER BY id DESC LIMIT ?",
                    (fingerprint, limit),
                ).fetchall()
            return [transition_from_json(json.loads(row[0])) for row in rows]

        return await self._call(read)

    async def history_since(self, since: datetime, limit: int) -> list[Transition]:
        """Oldest first (``at`` is stored as UTC ISO 8601 text, which sorts as time)."""

        def read(db: sqlite3.Connection) -> list[Transition]:
            rows = db.execute(
                "SELECT data FROM history WHERE at >= ? ORDER BY id LIMIT ?",
                (since.astimezone(UTC).isoformat(), limit),
            ).fetchall()
            return [transition_from_json(json.loads(row[0])) for row in rows]

        return await self._call(read)

    # -- metric history (see capacity/) ---------------------------------------------------

    async def history_series(self, check: str | None = None) -> list[MetricSeries]:
        def read(db: sqlite3.Connection) -> list[MetricSeries]:
            rows = db.execute(
                "SELECT id, check_name, metric, labels FROM metric_series "
                "WHERE ? IS NULL OR check_name = ? ORDER BY id",
                (check, check),
            ).fetchall()
            return [MetricSeries(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

        return await self._call(read)

    async def history_samples(
        self, since: int, until: int, series: Sequence[int] | None = None
    ) -> list[RawPoint]:
        def read(db: sqlite3.Connection) -> list[RawPoint]:
            sql = "SELECT series, at, value FROM metric_samples WHERE at >= ? AND at < ?"
            args: tuple[object, ...] = (since, until)
            if series is not None:
                sql += f" AND series IN ({','.join('?' * len(series))})"
                args += tuple(series)
            return [RawPoint(*row) for row in db.execute(sql + " ORDER BY at, series", args)]

        return await self._call(read)

    async def history_rollups(self, series: Sequence[int], since: int, until: int) -> list[Rollup]:
        def read(db: sqlite3.Connection) -> list[Rollup]:
            found: list[Rollup] = []
            for one in series:
                found.extend(
                    Rollup(*row)
                    for row in db.execute(
                        f"SELECT {_ROLLUP_COLUMNS} FROM metric_rollups "
                        "WHERE series = ? AND at >= ? AND at < ? ORDER BY at",
                        (one, since, until),
                    )
                )
            return found

        return await self._call(read)

    async def history_rollups_merged(
        self, series: Sequence[int], since: int, until: int, step: int
    ) -> list[Rollup]:
        def read(db: sqlite3.Connection) -> list[Rollup]:
            found: list[Rollup] = []
            for one in series:
                found.extend(
                    Rollup(*row)
                    for row in db.execute(
                        f"SELECT {_MERGED_COLUMNS} FROM metric_rollups "
                        "WHERE series = ? AND at >= ? AND at < ? GROUP BY 2 ORDER BY 2",
                        (step, one, since, until),
                    )
                )
            return found

        return await self._call(read)

    async def history_rolled_until(self) -> int | None:
        def read(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT value FROM metric_meta WHERE name = 'rolled_until'").fetchone()
            return None if row is None else int(row[0])

        return await self._call(read)

    async def history_store_rollups(self, rollups: Sequence[Rollup], rolled_until: int) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(
                    f"INSERT OR REPLACE INTO metric_rollups ({_ROLLUP_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(r.series, r.at, r.min, r.max, r.mean, r.p95, r.count) for r in rollups],
                )
                db.execute(
                    "INSERT OR REPLACE INTO metric_meta (name, value) VALUES ('rolled_until', ?)",
                    (rolled_until,),
                )

        await self._call(write)

    async def history_prune(self, samples_before: int, rollups_before: int) -> tuple[int, int]:
        def write(db: sqlite3.Connection) -> tuple[int, int]:
            with _transaction(db):
                samples = db.execute(
                    "DELETE FROM metric_samples WHERE at < ?", (samples_before,)
                ).rowcount
                ids = [
                    (row[0], rollups_before) for row in db.execute("SELECT id FROM metric_series")
                ]
                # one seek per series: the roll-ups are kept in (series, at) order
                rollups = db.executemany(
                    "DELETE FROM metric_rollups WHERE series = ? AND at < ?", ids
                ).rowcount
                forgotten = db.execute(
                    "DELETE FROM metric_series WHERE created < ? AND NOT EXISTS "
                    "(SELECT 1 FROM metric_rollups WHERE series = metric_series.id)",
                    (rollups_before,),
                ).rowcount
            if forgotten:  # a deleted series must not be written to by a cached id
                self._series.clear()
            return samples, rollups

        return await self._call(write)

    async def history_bytes(self) -> int:
        def read(db: sqlite3.Connection) -> int:
            (pages,) = db.execute("PRAGMA page_count").fetchone()
            (free,) = db.execute("PRAGMA freelist_count").fetchone()
            (size,) = db.execute("PRAGMA page_size").fetchone()
            return int((pages - free) * size)

        return await self._call(read)

    # -- silences (see alerts/silences.py) --------------------------------------------------

    async def silence_save(self, silence: Silence) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO silences (id, ends_at_epoch, data) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET ends_at_epoch = excluded.ends_at_epoch, "
                "data = excluded.data",
                (silence.id, silence.ends_at.timestamp(), json.dumps(silence_to_json(silence))),
            )

        await self._call(write)

    async def silences(self, ending_after: datetime) -> list[Silence]:
        def read(db: sqlite3.Connection) -> list[Silence]:
            rows = db.execute(
                "SELECT data FROM silences WHERE ends_at_epoch > ? ORDER BY id",
                (ending_after.timestamp(),),
            ).fetchall()
            return [silence_from_json(json.loads(row[0])) for row in rows]

        return await self._call(read)

    # -- heartbeat pings (see collectors/heartbeat.py) -------------------------------------

    async def ping_record(self, ping: Ping, keep: int) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute(
                    "INSERT INTO pings (heartbeat, kind, data) VALUES (?, ?, ?)",
                    (ping.heartbeat, ping.kind.value, json.dumps(ping_to_json(ping))),
                )
                db.execute(
                    "DELETE FROM pings WHERE heartbeat = ? AND id <= (SELECT id FROM pings "
                    "WHERE heartbeat = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (ping.heartbeat, ping.heartbeat, keep),
                )

        await self._call(write)

    # -- pauses (see alerts/pause.py) -------------------------------------------------------

    async def pause_change(
        self, paused: Sequence[Pause], resumed: Sequence[str | None], event: PauseEvent
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(
                    "DELETE FROM pauses WHERE scope = ?", [(pause_scope(c),) for c in resumed]
                )
                db.executemany(
                    "INSERT INTO pauses (scope, data) VALUES (?, ?) "
                    "ON CONFLICT (scope) DO UPDATE SET data = excluded.data",
                    [(pause_scope(p.check), json.dumps(pause_to_json(p))) for p in paused],
                )
                db.execute(
                    "INSERT INTO pause_events (at, data) VALUES (?, ?)",
                    (event.at.isoformat(), json.dumps(pause_event_to_json(event))),
                )

        await self._call(write)

    async def pings(self, heartbeat: str, limit: int = 100) -> list[Ping]:
        def read(db: sqlite3.Connection) -> list[Ping]:
            rows = db.execute(
                "SELECT data FROM pings WHERE heartbeat = ? ORDER BY id DESC LIMIT ?",
                (heartbeat, limit),
            ).fetchall()
            return [ping_from_json(json.loads(row[0])) for row in rows]

        return await self._call(read)

    async def pings_latest(self, heartbeat: str) -> list[Ping]:
        def read(db: sqlite3.Connection) -> list[Ping]:
            rows = db.execute(
                "SELECT data FROM pings WHERE id IN "
                "(SELECT max(id) FROM pings WHERE heartbeat = ? GROUP BY kind) ORDER BY id",
                (heartbeat,),
            ).fetchall()
            return [ping_from_json(json.loads(row[0])) for row in rows]

        return await self._call(read)

    async def pauses(self) -> list[Pause]:
        def read(db: sqlite3.Connection) -> list[Pause]:
            rows = db.execute("SELECT data FROM pauses ORDER BY scope").fetchall()
            return [pause_from_json(json.loads(row[0])) for row in rows]

        return await self._call(read)

    async def pause_events(self, limit: int = 100) -> list[PauseEvent]:
        def read(db: sqlite3.Connection) -> list[PauseEvent]:
            rows = db.execute(
                "SELECT data FROM pause_events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
            return [pause_event_from_json(json.loads(row[0])) for row in rows]

        return await self._call(read)

    # -- one-off maintenance windows (see alerts/maintenance.py) -----------------------------

    async def maintenance_save(self, window: MaintenanceWindow) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO maintenance_windows (id, ends_at_epoch, data) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET ends_at_epoch = excluded.ends_at_epoch, "
                "data = excluded.data",
                (window.id, window.ends_at.timestamp(), json.dumps(maintenance_to_json(window))),
            )

        await self._call(write)

    async def maintenance_delete(self, window_id: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM maintenance_windows WHERE id = ?", (window_id,))

        await self._call(write)

    async def maintenance_windows(self, ending_after: datetime) -> list[MaintenanceWindow]:
        def read(db: sqlite3.Connection) -> list[MaintenanceWindow]:
            rows = db.execute(
                "SELECT data FROM maintenance_windows WHERE ends_at_epoch > ? ORDER BY id",
                (ending_after.timestamp(),),
            ).fetchall()
            return [maintenance_from_json(json.loads(row[0])) for row in rows]

        return await self._call(read)

    # -- recovery (see recovery/runner.py) and evidence (recovery/evidence.py) --------------

    async def recovery_record(self, result: RecoveryResult) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO recovery_runs (at, at_epoch, action, budget_key, fingerprint, rule, "
                "target, outcome, attempts, duration_s, trial, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    result.at.isoformat(),
                    result.at.timestamp(),
                    result.action,
                    result.key,
                    result.fingerprint,
                    result.rule,
                    result.target,
                    result.outcome.value,
                    result.attempts,
                    result.duration_s,
                    1 if result.trial else 0,
                    result.detail,
                ),
            )

        await self._call(write)

    async def recovery_runs(self, since: datetime, key: str | None = None) -> list[RecoveryResult]:
        """Runs at or after ``since`` (of one budget key, or all), oldest first."""

        def read(db: sqlite3.Connection) -> list[RecoveryResult]:
            sql = f"SELECT {_RECOVERY_COLUMNS} FROM recovery_runs WHERE at_epoch >= ?"
            args: tuple[object, ...] = (since.timestamp(),)
            if key is not None:
                sql += " AND budget_key = ?"
                args += (key,)
            return [_recovery_result(row) for row in db.execute(sql + " ORDER BY id", args)]

        return await self._call(read)

    async def recovery_history(self, limit: int = 100) -> list[RecoveryResult]:
        """The newest runs first."""

        def read(db: sqlite3.Connection) -> list[RecoveryResult]:
            rows = db.execute(
                f"SELECT {_RECOVERY_COLUMNS} FROM recovery_runs ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [_recovery_result(row) for row in rows]

        return await self._call(read)

    async def evidence_record(self, fingerprint: str, at: datetime, data: dict[str, Any]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO evidence (fingerprint, at, data) VALUES (?, ?, ?)",
                (fingerprint, at.isoformat(), json.dumps(data)),
            )

        await self._call(write)

    async def evidence(self, fingerprint: str, limit: int = 10) -> list[dict[str, Any]]:
        """The snapshots taken when the alert ``fingerprint`` fired, newest first."""

        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT data FROM evidence WHERE fingerprint = ? ORDER BY id DESC LIMIT ?",
                (fingerprint, limit),
            ).fetchall()
            return [dict(json.loads(row[0])) for row in rows]

        return await self._call(read)

    async def outbox_due(
        self, now: datetime, limit: int | None, channel: str | None = None
    ) -> list[OutboxItem]:
        """Pending rows whose next attempt is due, oldest first, at most ``limit`` (None: all),
        of ``channel`` only when given."""

        def read(db: sqlite3.Connection) -> list[OutboxItem]:
            rows = db.execute(
                "SELECT id, channel, data, attempts, created_at FROM outbox "
                "WHERE state = 'pending' AND next_attempt_at <= ? "
                "AND (? IS NULL OR channel = ?) ORDER BY id LIMIT ?",
                (now.timestamp(), channel, channel, -1 if limit is None else limit),
            ).fetchall()
            return [
                OutboxItem(
                    id=row[0],
                    channel=row[1],
                    notification=notification_from_json(json.loads(row[2])),
                    attempts=row[3],
                    created_at=datetime.fromisoformat(row[4]),
                )
                for row in rows
            ]

        return await self._call(read)

    async def outbox_next_due(self, channel: str | None = None) -> datetime | None:
        """When the earliest pending row (of ``channel`` when given) becomes due, or None when
        nothing is pending."""

        def read(db: sqlite3.Connection) -> float | None:
            row = db.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending' "
                "AND (? IS NULL OR channel = ?)",
                (channel, channel),
            ).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        epoch = await self._call(read)
        return None if epoch is None else datetime.fromtimestamp(epoch, UTC)

    async def outbox_delivered(self, item_id: int, at: datetime) -> None:
        await self._outbox_finish(item_id, "delivered", at, None)

    async def outbox_failed(self, item_id: int, at: datetime, error: str) -> None:
        await self._outbox_finish(item_id, "failed", at, error)

    async def _outbox_finish(
        self, item_id: int, state: str, at: datetime, error: str | None
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET state = ?, finished_at = ?, last_error = ?, "
                "attempts = attempts + 1 WHERE id = ?",
                (state, at.isoformat(), error, item_id),
            )

        await self._call(write)

    async def outbox_postpone(
        self, item_id: int, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
                (attempts, next_attempt_at.timestamp(), error, item_id),
            )

        await self._call(write)

    async def outbox_counts(self) -> dict[str, int]:
        """Rows per state (pending, delivered, failed)."""

        def read(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
            return {str(state): int(count) for state, count in rows}

        return await self._call(read)

    # -- notification routing, fallback and grouping (see notifiers/outbox.py, routing.py) --

    async def outbox_channels(
        self, fingerprints: Sequence[str], since: datetime
    ) -> dict[str, frozenset[str]]:
        """The channels of every outbox row (any state) queued since ``since`` that carries a
        transition of each fingerprint: where those alerts were notified."""
        if not fingerprints:
            return {}

        def read(db: sqlite3.Connection) -> dict[str, frozenset[str]]:
            marks = ",".join("?" * len(fingerprints))
            rows = db.execute(
                "SELECT DISTINCT json_extract(t.value, '$.alert.fingerprint') AS fp, o.channel "
                "FROM outbox AS o, json_each(o.data, '$.transitions') AS t "
                f"WHERE o.created_at >= ? AND fp IN ({marks})",
                (since.isoformat(), *fingerprints),
            ).fetchall()
            found: dict[str, set[str]] = {}
            for fp, channel in rows:
                found.setdefault(str(fp), set()).add(str(channel))
            return {fp: frozenset(channels) for fp, channels in found.items()}

        return await self._call(read)

    async def outbox_divert(
        self,
        item_id: int,
        copies: Sequence[tuple[str, Notification]],
        at: datetime,
        error: str,
    ) -> None:
        """In one transaction: queue ``copies`` (fallback channel, notification; a channel
        that already has the key keeps its row) and end row ``item_id`` as ``diverted``."""

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(_OUTBOX_INSERT, [_outbox_row(c, n, at, at) for c, n in copies])
                db.execute(
                    "UPDATE outbox SET state = 'diverted', finished_at = ?, last_error = ?, "
                    "attempts = attempts + 1 WHERE id = ?",
                    (at.isoformat(), error, item_id),
                )

        await self._call(write)

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
        the channel already had this very message (it is then not queued again)."""

        def write(db: sqlite3.Connection) -> int | None:
            with _transaction(db):
                cursor = db.execute(
                    _OUTBOX_INSERT, _outbox_row(channel, notification, created_at, at)
                )
                new_id = cursor.lastrowid if cursor.rowcount == 1 else None
                db.executemany(
                    "UPDATE outbox SET state = 'merged', finished_at = ?, last_error = ? "
                    "WHERE id = ? AND state = 'pending'",
                    [(at.isoformat(), f"merged into row {new_id}", i) for i in item_ids],
                )
            return new_id

        return await self._call(write)


#: a metric history sample; a second one of the series in the same second replaces it
_SAMPLE_INSERT = (
    "INSERT INTO metric_samples (at, series, value) VALUES (?, ?, ?) "
    "ON CONFLICT (at, series) DO UPDATE SET value = excluded.value"
)
_ROLLUP_COLUMNS = "series, at, min, max, mean, p95, count"
#: roll-ups merged into buckets of the first parameter's width (``history_rollups_merged``)
_MERGED_COLUMNS = (
    "series, at - at % ?, MIN(min), MAX(max), SUM(mean * count) / SUM(count), MAX(p95), SUM(count)"
)

#: a pending outbox row; a channel that already has the idempotency key keeps its row
_OUTBOX_INSERT = (
    "INSERT OR IGNORE INTO outbox "
    "(channel, idempotency_key, data, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)"
)


def _outbox_row(
    channel: str, notification: Notification, created_at: datetime, due_at: datetime
) -> tuple[str, str, str, str, float]:
    return (
        channel,
        notification.idempotency_key,
        json.dumps(notification_to_json(notification)),
        created_at.isoformat(),
        due_at.timestamp(),
    )


_RECOVERY_COLUMNS = (
    "action, fingerprint, outcome, attempts, duration_s, detail, at, rule, target, "
    "budget_key, trial"
)


def _recovery_result(row: Sequence[Any]) -> RecoveryResult:
    return RecoveryResult(
        action=row[0],
        fingerprint=row[1],
        outcome=RecoveryOutcome(row[2]),
        attempts=int(row[3]),
        duration_s=float(row[4]),
        detail=row[5],
        at=datetime.fromisoformat(row[6]),
        rule=row[7],
        target=row[8],
        key=row[9],
        trial=bool(row[10]),
    )


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (the connection is in autocommit)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


#: ``PRAGMA application_id`` of an opswatch state file ("opsw"); files from before it have 0
APPLICATION_ID = 0x6F707377

#: the first bytes of every SQLite database file
_MAGIC = b"SQLite format 3\x00"


def _connect(path: Path) -> sqlite3.Connection:
    """The open, checked and migrated state file at ``path`` (created when there is none)."""
    try:
        if _inspect(path):
            _create(path)
        db = sqlite3.connect(
            f"{path.absolute().as_uri()}?mode=rw",
            uri=True,
            check_same_thread=False,
            isolation_level=None,
        )
    except (OSError, sqlite3.Error) as exc:
        raise _refuse(path, _problem(exc)) from None
    try:
        db.execute("PRAGMA busy_timeout=5000")
        _verify(db, path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        _migrate(db)
    except sqlite3.Error as exc:
        db.close()
        raise _refuse(path, _problem(exc)) from None
    except BaseException:
        db.close()
        raise
    return db


def _refuse(path: Path, problem: str) -> UnusableStateError:
    return UnusableStateError(f"state file {path}: {problem}")


def _problem(exc: OSError | sqlite3.Error) -> str:
    """What went wrong, in one line without the path (the caller names it)."""
    if isinstance(exc, OSError):
        return f"cannot open it: {exc.strerror or exc}"
    kind = {"SQLITE_CORRUPT": "corrupt", "SQLITE_NOTADB": "not an SQLite database"}
    return f"{kind.get(exc.sqlite_errorname, 'cannot use it')}: {exc}"


def _inspect(path: Path) -> bool:
    """What the file system says of ``path`` before SQLite touches it: True when there is no
    file yet (a first start), UnusableStateError when what is there cannot be an opswatch state."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _refuse(path, f"cannot create its directory {path.parent}: {exc.strerror}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise _refuse(
            path, f"its directory {path.parent} is not writable (SQLite writes its -wal beside it)"
        )
    try:
        info = path.stat()
    except FileNotFoundError:
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            raise _refuse(
                path, f"missing, but its write-ahead log {wal} is there: was it removed?"
            ) from None
        return True
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(path, "not a regular file")
    if not os.access(path, os.R_OK | os.W_OK):
        raise _refuse(path, "not writable")
    if info.st_size == 0:
        raise _refuse(
            path,
            "empty (0 bytes): not an opswatch state file, which is created complete; "
            "move it away to start afresh",
        )
    with path.open("rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise _refuse(path, "not an SQLite database (bad header)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise _refuse(path, f"not an SQLite database (bad header: page size {page_size})")
    if info.st_size % page_size:
        raise _refuse(
            path, f"truncated: {info.st_size} bytes is not a whole number of {page_size}-byte pages"
        )
    return False


def _create(path: Path) -> None:
    """A new state file, migrated in a temporary file renamed onto ``path``: so the path never
    holds an empty or half-made file of ours, and one found there is never taken for new."""
    new = path.with_name(path.name + ".new")
    for leftover in (new, new.with_name(new.name + "-wal"), new.with_name(new.name + "-shm")):
        leftover.unlink(missing_ok=True)  # a start killed while creating it
    db = sqlite3.connect(new, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        _migrate(db)
    finally:
        db.close()  # the last connection: the WAL is checkpointed into the file and removed
    new.replace(path)


def _verify(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a foreign, newer or corrupt database. ``PRAGMA quick_check`` reads every page
    once (O(N)): b-tree structure, page and cell bounds, record formats, the free list, NOT
    NULL; unlike ``integrity_check`` (O(N log N)) it does not look up every index entry in its
    table. ``bench/bench_integrity.py`` measures what it costs on a large file."""
    (application_id,) = db.execute("PRAGMA application_id").fetchone()
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if application_id not in (0, APPLICATION_ID):
        raise _refuse(
            path, f"not an opswatch state file (SQLite application_id {application_id:#x})"
        )
    if version == 0:
        raise _refuse(
            path, "not an opswatch state file (an SQLite database without its schema version)"
        )
    if version > len(_MIGRATIONS):
        raise _refuse(
            path,
            f"schema version {version}, newer than this opswatch knows ({len(_MIGRATIONS)}): "
            "upgrade opswatch",
        )
    (report,) = db.execute("PRAGMA quick_check(1)").fetchone()
    if report != "ok":
        problem = next(
            (line for line in str(report).splitlines() if not line.startswith("***")), report
        )
        raise _refuse(path, f"corrupt: {problem} (PRAGMA quick_check)")


def _migrate(db: sqlite3.Connection) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
        with _transaction(db):
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
    (application_id,) = db.execute("PRAGMA application_id").fetchone()
    if application_id != APPLICATION_ID:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
