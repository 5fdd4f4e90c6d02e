"""Evidence: what the host looked like when an alert fired, kept in its history.

At most once per collector run that fired alerts: the top processes by CPU (measured over a
short window) and by resident memory (psutil, in a worker thread), and for an alert of a
``postgres:<target>`` check the longest-running statements of that server
(``pg_stat_activity``, opswatch's own sessions excluded). Query texts are shortened; a
capture is bounded by a timeout and a failure is logged and leaves the evidence partial,
never delays an alert by more than that.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil
import structlog

from opswatch.config import PREFIX, Env, Secret
from opswatch.model import Alert, Clock, utcnow

log = structlog.get_logger(__name__)

TOP = 5
_CMDLINE_CHARS = 80
_QUERY_CHARS = 160

LONGEST_QUERIES = """
SELECT pid, coalesce(usename::text, '') AS usename, coalesce(datname::text, '') AS datname,
       coalesce(state, '') AS state,
       greatest(0, extract(epoch FROM now() - coalesce(query_start, backend_start)))::float8
           AS seconds,
       left(coalesce(query, ''), $1) AS query
FROM pg_stat_activity
WHERE backend_type = 'client backend'
  AND pid <> pg_backend_pid()
  AND coalesce(application_name, '') <> 'opswatch'
  AND state IS DISTINCT FROM 'idle'
ORDER BY coalesce(query_start, backend_start) ASC NULLS LAST
LIMIT $2
"""


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    name: str
    user: str
    cpu_percent: float
    rss_bytes: int
    cmdline: str

    def line(self) -> str:
        return (
            f"{self.cpu_percent:5.1f}% cpu {self.rss_bytes / 1048576:8.1f} MiB  "
            f"pid {self.pid} {self.user}  {self.cmdline or self.name}"
        )


@dataclass(frozen=True, slots=True)
class QueryInfo:
    pid: int
    user: str
    database: str
    state: str
    seconds: float
    query: str

    def line(self) -> str:
        text = " ".join(self.query.split())
        where = f"{self.user}@{self.database}"
        return f"{self.seconds:7.0f} s  pid {self.pid} {where} {self.state}: {text}"


@dataclass(frozen=True, slots=True)
class Evidence:
    at: datetime
    top_cpu: tuple[ProcessInfo, ...] = ()
    top_memory: tuple[ProcessInfo, ...] = ()
    queries: tuple[QueryInfo, ...] = ()
    errors: tuple[str, ...] = ()

    def lines(self) -> tuple[str, ...]:
        """Plain-text lines for a notification."""
        lines = [f"captured {self.at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"]
        if self.top_cpu:
            lines.append("top processes by CPU:")
            lines.extend("  " + p.line() for p in self.top_cpu)
        if self.top_memory:
            lines.append("top processes by memory:")
            lines.extend("  " + p.line() for p in self.top_memory)
        if self.queries:
            lines.append("longest queries:")
            lines.extend("  " + q.line() for q in self.queries)
        lines.extend(f"not captured: {error}" for error in self.errors)
        return tuple(lines)

    def to_json(self) -> dict[str, Any]:
        def process(p: ProcessInfo) -> dict[str, Any]:
            return {
                "pid": p.pid,
                "name": p.name,
                "user": p.user,
                "cpu_percent": round(p.cpu_percent, 1),
                "rss_bytes": p.rss_bytes,
                "cmdline": p.cmdline,
            }

        return {
            "at": self.at.isoformat(),
            "top_cpu": [process(p) for p in self.top_cpu],
            "top_memory": [process(p) for p in self.top_memory],
            "queries": [
                {
                    "pid": q.pid,
                    "user": q.user,
                    "database": q.database,
                    "state": q.state,
                    "seconds": round(q.seconds, 1),
                    "query": q.query,
                }
                for q in self.queries
            ],
            "errors": list(self.errors),
        }


@dataclass(frozen=True, slots=True)
class EvidenceSettings:
    enabled: bool = True
    #: ``OPSWATCH_POSTGRES_TARGETS``, for the longest queries of a postgres alert
    postgres: Mapping[str, Secret] = field(default_factory=dict)
    #: CPU use is measured over this window; it delays a firing alert's notification as much
    cpu_window_s: float = 0.1
    timeout_s: float = 3.0

    @classmethod
    def from_env(cls, env: Env, *, enabled: bool) -> EvidenceSettings:
        if not enabled:
            return cls(enabled=False)
        targets = env.targets(f"{PREFIX}POSTGRES_TARGETS", schemes=("postgresql", "postgres"))
        return cls(postgres={t.name: t.url for t in targets})


class EvidenceCollector:
    def __init__(self, settings: EvidenceSettings, clock: Clock = utcnow) -> None:
        self.settings = settings
        self._clock = clock

    async def capture(self, alerts: Sequence[Alert]) -> dict[str, Evidence]:
        """Evidence for each of ``alerts`` (the process tables are measured once)."""
        if not alerts or not self.settings.enabled:
            return {}
        at = self._clock()
        errors: list[str] = []
        cpu: tuple[ProcessInfo, ...] = ()
        memory: tuple[ProcessInfo, ...] = ()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                cpu, memory = await asyncio.to_thread(top_processes, self.settings.cpu_window_s)
        except (TimeoutError, psutil.Error, OSError) as exc:
            errors.append(f"processes: {type(exc).__name__}")
            log.warning("evidence_failed", part="processes", error=type(exc).__name__)
        queries: dict[str, tuple[tuple[QueryInfo, ...], str | None]] = {}
        for target in {_postgres_target(a) for a in alerts} - {None}:
            assert target is not None
            queries[target] = await self._queries(target)
        captured = {}
        for alert in alerts:
            found, error = queries.get(_postgres_target(alert) or "", ((), None))
            captured[alert.fingerprint] = Evidence(
                at, cpu, memory, found, tuple(errors) + ((error,) if error else ())
            )
        return captured

    async def _queries(self, target: str) -> tuple[tuple[QueryInfo, ...], str | None]:
        dsn = self.settings.postgres.get(target)
        if dsn is None:
            return (), None
        import asyncpg  # noqa: PLC0415 - only when a postgres alert fires

        try:
            async with asyncio.timeout(self.settings.timeout_s):
                return await longest_queries(dsn.reveal(), TOP), None
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("evidence_failed", part=f"postgres:{target}", error=type(exc).__name__)
            return (), f"postgres:{target} queries: {type(exc).__name__}"


def _postgres_target(alert: Alert) -> str | None:
    kind, _, target = alert.check.partition(":")
    return target if kind == "postgres" and target else None


def top_processes(window_s: float) -> tuple[tuple[ProcessInfo, ...], tuple[ProcessInfo, ...]]:
    """Blocking: (top by CPU over ``window_s``, top by RSS), :data:`TOP` each."""
    attrs = ["name", "username", "cmdline", "memory_info", "cpu_times"]
    before: dict[int, tuple[psutil.Process, float, dict[str, Any]]] = {}
    for process in psutil.process_iter(attrs):
        info = process.info
        times = info.get("cpu_times")
        if times is None:
            continue
        before[process.pid] = (process, times.user + times.system, info)
    started = time.monotonic()
    time.sleep(window_s)
    elapsed = max(time.monotonic() - started, 1e-6)
    rows: list[ProcessInfo] = []
    for pid, (process, cpu_before, info) in before.items():
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        memory = info.get("memory_info")
        cmdline = " ".join(info.get("cmdline") or ())
        rows.append(
            ProcessInfo(
                pid=pid,
                name=info.get("name") or "?",
                user=info.get("username") or "?",
                cpu_percent=max(0.0, (times.user + times.system - cpu_before) / elapsed * 100),
                rss_bytes=int(memory.rss) if memory is not None else 0,
                cmdline=cmdline[:_CMDLINE_CHARS],
            )
        )
    own = os.getpid()
    by_cpu = sorted((r for r in rows if r.pid != own), key=lambda r: -r.cpu_percent)[:TOP]
    by_memory = sorted(rows, key=lambda r: -r.rss_bytes)[:TOP]
    return tuple(by_cpu), tuple(by_memory)


async def longest_queries(dsn: str, limit: int) -> tuple[QueryInfo, ...]:
    import asyncpg  # noqa: PLC0415 - only when a postgres alert fires

    connection = await asyncpg.connect(dsn, server_settings={"application_name": "opswatch"})
    try:
        rows = await connection.fetch(LONGEST_QUERIES, _QUERY_CHARS, limit)
    finally:
        await connection.close()
    return tuple(
        QueryInfo(
            pid=row["pid"],
            user=row["usename"],
            database=row["datname"],
            state=row["state"],
            seconds=row["seconds"],
            query=row["query"],
        )
        for row in rows
    )
