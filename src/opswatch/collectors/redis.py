"""Redis collector: memory, clients, rejected connections, evictions, hit ratio, persistence
and replication link, from one ``PING`` and one ``INFO`` per run and target.

``OPSWATCH_REDIS_TARGETS`` is a ``name=redis://[user:pass@]host:port/db`` list (``rediss://``
for TLS) and ``OPSWATCH_REDIS_TIMEOUT`` bounds each run (default 5s). Each target keeps one
redis.asyncio client with library retries off (the daemon decides what to retry). redis is
imported only when a run starts.

``INFO`` is read as text and parsed by :meth:`RedisInfo.parse`, a pure function. Counters
(rejected connections, evicted keys, keyspace hits and misses) become rates and a hit ratio
over the injected clock: nothing on the first run or after a counter reset (a restart).

An unreachable target (refused, auth failure, timeout) gives ``redis.up = 0`` and never
raises. Log lines name only the exception class and errno: messages may echo addresses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from opswatch.collectors.base import (
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
    from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class RedisInfo:
    """The fields of ``INFO`` this collector uses; ``None`` where the server omits one."""

    used_memory: float | None
    maxmemory: float | None
    fragmentation_ratio: float | None
    connected_clients: float | None
    blocked_clients: float | None
    ops_per_sec: float | None
    rejected_connections: float | None
    evicted_keys: float | None
    keyspace_hits: float | None
    keyspace_misses: float | None
    last_bgsave_ok: bool | None
    last_save_time: float | None
    server_time: float | None
    role: str
    master_link_up: bool | None

    @classmethod
    def parse(cls, text: str) -> RedisInfo:
        """Parse ``INFO`` output (``key:value`` lines, ``# Section`` headers, CRLF or LF)."""
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition(":")
            if sep and key and not key.startswith("#"):
                fields[key] = value

        def number(key: str) -> float | None:
            try:
                return float(fields[key])
            except (KeyError, ValueError):
                return None

        server_usec = number("server_time_usec")
        bgsave = fields.get("rdb_last_bgsave_status")
        role = fields.get("role", "master")
        link = fields.get("master_link_status")
        return cls(
            used_memory=number("used_memory"),
            maxmemory=number("maxmemory"),
            fragmentation_ratio=number("mem_fragmentation_ratio"),
            connected_clients=number("connected_clients"),
            blocked_clients=number("blocked_clients"),
            ops_per_sec=number("instantaneous_ops_per_sec"),
            rejected_connections=number("rejected_connections"),
            evicted_keys=number("evicted_keys"),
            keyspace_hits=number("keyspace_hits"),
            keyspace_misses=number("keyspace_misses"),
            last_bgsave_ok=None if bgsave is None else bgsave == "ok",
            last_save_time=number("rdb_last_save_time"),
            server_time=None if server_usec is None else server_usec / 1_000_000,
            role=role,
            master_link_up=None if role != "slave" or link is None else link == "up",
        )

    def counters(self, at: datetime) -> Counters:
        values = {
            "rejected_connections": self.rejected_connections,
            "evicted_keys": self.evicted_keys,
            "keyspace_hits": self.keyspace_hits,
            "keyspace_misses": self.keyspace_misses,
        }
        return Counters(at, {key: value for key, value in values.items() if value is not None})


def build_samples(
    check: str,
    target: str,
    *,
    at: datetime,
    ping_seconds: float,
    info: RedisInfo,
    previous: Counters | None,
) -> list[Sample]:
    """Every sample of one successful run; rates and the keyspace hit ratio from the counter
    deltas since ``previous`` (the hit ratio is absent when there was no lookup)."""
    labels = {"target": target}
    samples = [
        up_sample("redis", check, True, at, labels),
        Sample(check, "redis.ping_seconds", ping_seconds, at, labels),
    ]

    def add(metric: str, value: float | None) -> None:
        if value is not None:
            samples.append(Sample(check, f"redis.{metric}", float(value), at, labels))

    add("used_memory_bytes", info.used_memory)
    add("maxmemory_bytes", info.maxmemory)
    if info.maxmemory and info.used_memory is not None:
        add("memory_percent", 100.0 * info.used_memory / info.maxmemory)
    add("fragmentation_ratio", info.fragmentation_ratio)
    add("connected_clients", info.connected_clients)
    add("blocked_clients", info.blocked_clients)
    add("ops_per_s", info.ops_per_sec)
    deltas = counter_deltas(previous, info.counters(at))
    add("rejected_connections_per_s", deltas.rate("rejected_connections"))
    add("evicted_keys_per_s", deltas.rate("evicted_keys"))
    add("keyspace_hit_ratio", deltas.ratio("keyspace_hits", "keyspace_misses"))
    if info.last_bgsave_ok is not None:
        add("last_bgsave_ok", 1.0 if info.last_bgsave_ok else 0.0)
    if info.last_save_time is not None:
        now = info.server_time if info.server_time is not None else at.timestamp()
        add("last_bgsave_age_seconds", max(0.0, now - info.last_save_time))
    if info.master_link_up is not None:
        add("master_link_up", 1.0 if info.master_link_up else 0.0)
    return samples


def _raw_reply(response: Any, **_options: Any) -> Any:
    """Response callback that keeps ``INFO`` as the server's text (parsed by us)."""
    return response


class RedisCollector:
    name: ClassVar[str] = "redis"

    def __init__(self, target: Target, *, timeout: float, clock: Clock) -> None:
        self.target = target
        self.check = f"{self.name}:{target.name}"
        self._timeout = timeout
        self._clock = clock
        self._client: Redis | None = None
        self._previous: Counters | None = None
        self._outage = OutageLog(self.check)

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[RedisCollector]:
        targets, timeout = service_targets(
            env, cls.name, schemes=("redis", "rediss"), example="redis://..."
        )
        return [cls(target, timeout=timeout, clock=clock) for target in targets]

    def describe(self) -> dict[str, str]:
        return describe_service(self.check, self.target, self._timeout)

    async def collect(self) -> list[Sample]:
        from redis.exceptions import RedisError  # noqa: PLC0415 - heavy; only when running

        at = self._clock()
        try:
            async with asyncio.timeout(self._timeout):
                client = self._get_client()
                started = time.perf_counter()
                await client.ping()
                ping_seconds = time.perf_counter() - started
                raw: object = await client.execute_command("INFO")  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError, RedisError) as exc:
            self._outage.failed(exc)
            return [up_sample(self.name, self.check, False, at, {"target": self.target.name})]
        self._outage.succeeded()
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        info = RedisInfo.parse(text)
        samples = build_samples(
            self.check,
            self.target.name,
            at=at,
            ping_seconds=ping_seconds,
            info=info,
            previous=self._previous,
        )
        self._previous = info.counters(at)
        return samples

    def _get_client(self) -> Redis:
        from redis.asyncio import Redis  # noqa: PLC0415
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415

        if self._client is None:
            client = Redis.from_url(
                self.target.url.reveal(),
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 0),
                client_name="opswatch",
                max_connections=2,
            )
            client.set_response_callback("INFO", _raw_reply)
            self._client = client
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
