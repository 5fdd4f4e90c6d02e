"""RabbitMQ collector: queue depths, consumers and message rates, node alarms and resource
use, from the management API (two GETs per run and target).

``OPSWATCH_RABBITMQ_TARGETS`` is a ``name=http://user:pass@host:15672`` list (basic auth
from the URL's userinfo; a path prefix is kept for a proxied API), ``OPSWATCH_RABBITMQ_TIMEOUT``
bounds each run (default 5s) and ``OPSWATCH_RABBITMQ_QUEUES_INCLUDE`` (optional regex, searched
in the queue name; anchor it with ``^...$``) limits the queues reported.

Requests ask only for the columns used (``?columns=``), which keeps the payload small on
brokers with many queues. Message rates are the broker's own ``message_stats`` rate details
(``deliver_per_s`` is ``deliver_get``: deliveries with or without ack plus ``basic.get``);
absent details (no traffic yet, ``rates_mode=none``) count as 0. The parsers are pure.
``messages_ready_without_consumers`` (ready messages of a queue with no consumer, else 0)
makes "work piling up with nobody consuming" a plain threshold rule.

An unreachable API (refused, 401, timeout, a non-JSON answer) gives ``rabbitmq.up = 0`` and
never raises; log lines name only the exception class and HTTP status.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote, urlsplit, urlunsplit

from opswatch.collectors.base import OutageLog, describe_service, service_targets, up_sample
from opswatch.config import PREFIX, ConfigError, Env, Target
from opswatch.model import Clock, Sample

if TYPE_CHECKING:
    import aiohttp

QUEUE_COLUMNS = (
    "name",
    "vhost",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
    "message_stats.publish_details.rate",
    "message_stats.deliver_get_details.rate",
)
NODE_COLUMNS = (
    "name",
    "running",
    "mem_alarm",
    "disk_free_alarm",
    "mem_used",
    "mem_limit",
    "fd_used",
    "fd_total",
    "sockets_used",
    "sockets_total",
)


@dataclass(frozen=True, slots=True)
class QueueStats:
    vhost: str
    name: str
    messages_ready: float
    messages_unacked: float
    consumers: float
    publish_per_s: float
    deliver_per_s: float


@dataclass(frozen=True, slots=True)
class NodeStats:
    name: str
    running: bool
    mem_alarm: bool | None
    disk_free_alarm: bool | None
    mem_used_percent: float | None
    fd_used_percent: float | None
    sockets_used_percent: float | None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _rate(stats: Any, key: str) -> float:
    details = stats.get(key) if isinstance(stats, dict) else None
    return _number(details.get("rate")) if isinstance(details, dict) else 0.0


def _percent(used: Any, total: Any) -> float | None:
    if isinstance(used, int | float) and isinstance(total, int | float) and total > 0:
        return 100.0 * float(used) / float(total)
    return None


def parse_queues(payload: Any, include: re.Pattern[str] | None = None) -> list[QueueStats]:
    """Queues from ``GET /api/queues``; entries without a name are skipped."""
    queues: list[QueueStats] = []
    for item in payload if isinstance(payload, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        name: str = item["name"]
        if include is not None and include.search(name) is None:
            continue
        stats = item.get("message_stats")
        queues.append(
            QueueStats(
                vhost=str(item.get("vhost", "/")),
                name=name,
                messages_ready=_number(item.get("messages_ready")),
                messages_unacked=_number(item.get("messages_unacknowledged")),
                consumers=_number(item.get("consumers")),
                publish_per_s=_rate(stats, "publish_details"),
                deliver_per_s=_rate(stats, "deliver_get_details"),
            )
        )
    return queues


def parse_nodes(payload: Any) -> list[NodeStats]:
    """Cluster nodes from ``GET /api/nodes``; a stopped node reports only ``running``."""
    nodes: list[NodeStats] = []
    for item in payload if isinstance(payload, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        mem_alarm = item.get("mem_alarm")
        disk_alarm = item.get("disk_free_alarm")
        nodes.append(
            NodeStats(
                name=item["name"],
                running=item.get("running", True) is not False,
                mem_alarm=mem_alarm if isinstance(mem_alarm, bool) else None,
                disk_free_alarm=disk_alarm if isinstance(disk_alarm, bool) else None,
                mem_used_percent=_percent(item.get("mem_used"), item.get("mem_limit")),
                fd_used_percent=_percent(item.get("fd_used"), item.get("fd_total")),
                sockets_used_percent=_percent(item.get("sockets_used"), item.get("sockets_total")),
            )
        )
    return nodes


def build_samples(
    check: str,
    target: str,
    at: datetime,
    queues: Sequence[QueueStats],
    nodes: Sequence[NodeStats],
) -> list[Sample]:
    """Every sample of one successful run."""
    samples = [up_sample("rabbitmq", check, True, at, {"target": target})]
    for queue in queues:
        labels = {"target": target, "vhost": queue.vhost, "queue": queue.name}
        samples.extend(
            Sample(check, f"rabbitmq.{metric}", value, at, labels)
            for metric, value in (
                ("messages_ready", queue.messages_ready),
                ("messages_unacked", queue.messages_unacked),
                ("consumers", queue.consumers),
                ("publish_per_s", queue.publish_per_s),
                ("deliver_per_s", queue.deliver_per_s),
                # derived so that "messages and nobody consuming" is a plain threshold rule
                (
                    "messages_ready_without_consumers",
                    0.0 if queue.consumers else queue.messages_ready,
                ),
            )
        )
    for node in nodes:
        labels = {"target": target, "node": node.name}
        values: tuple[tuple[str, float | bool | None], ...] = (
            ("node_running", node.running),
            ("mem_alarm", node.mem_alarm),
            ("disk_free_alarm", node.disk_free_alarm),
            ("mem_used_percent", node.mem_used_percent),
            ("fd_used_percent", node.fd_used_percent),
            ("sockets_used_percent", node.sockets_used_percent),
        )
        samples.extend(
            Sample(check, f"rabbitmq.{metric}", float(value), at, labels)
            for metric, value in values
            if value is not None
        )
    return samples


def split_credentials(url: str) -> tuple[str, str | None, str]:
    """``(base URL without userinfo, user, password)``; user is ``None`` without userinfo."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    user = None if parts.username is None else unquote(parts.username)
    return base, user, unquote(parts.password or "")


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value (aiohttp's ``BasicAuth`` is deprecated in 3.14 and
    its replacement does not exist before it)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class RabbitmqCollector:
    name: ClassVar[str] = "rabbitmq"

    def __init__(
        self,
        target: Target,
        *,
        timeout: float,
        clock: Clock,
        include: re.Pattern[str] | None = None,
    ) -> None:
        self.target = target
        self.check = f"{self.name}:{target.name}"
        self._timeout = timeout
        self._clock = clock
        self._include = include
        self._base, self._user, self._password = split_credentials(target.url.reveal())
        self._session: aiohttp.ClientSession | None = None
        self._outage = OutageLog(self.check)

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[RabbitmqCollector]:
        targets, timeout = service_targets(
            env, cls.name, schemes=("http", "https"), example="http://user:pass@host:15672"
        )
        include_variable = f"{PREFIX}RABBITMQ_QUEUES_INCLUDE"
        pattern = env.raw(include_variable)
        try:
            include = None if pattern is None else re.compile(pattern)
        except re.error as exc:
            raise ConfigError(include_variable, f"not a regular expression: {exc}") from None
        return [cls(target, timeout=timeout, clock=clock, include=include) for target in targets]

    def describe(self) -> dict[str, str]:
        described = describe_service(self.check, self.target, self._timeout)
        if self._include is not None:
            described["queues_include"] = self._include.pattern
        return described

    async def collect(self) -> list[Sample]:
        import aiohttp  # noqa: PLC0415 - only when this collector runs

        at = self._clock()
        try:
            async with asyncio.timeout(self._timeout):
                # both requests finish (or time out) before either result is used
                results: tuple[Any, Any] = await asyncio.gather(
                    self._get_json("/api/queues", QUEUE_COLUMNS),
                    self._get_json("/api/nodes", NODE_COLUMNS),
                    return_exceptions=True,
                )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        except (OSError, TimeoutError, ValueError, aiohttp.ClientError) as exc:
            self._outage.failed(exc)
            return [up_sample(self.name, self.check, False, at, {"target": self.target.name})]
        self._outage.succeeded()
        return build_samples(
            self.check,
            self.target.name,
            at,
            parse_queues(results[0], self._include),
            parse_nodes(results[1]),
        )

    async def _get_json(self, path: str, columns: Sequence[str]) -> Any:
        session = self._get_session()
        async with session.get(
            f"{self._base}{path}", params={"columns": ",".join(columns)}, raise_for_status=True
        ) as response:
            return await response.json()

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp  # noqa: PLC0415

        if self._session is None:
            headers = {"User-Agent": "opswatch"}
            if self._user is not None:
                headers["Authorization"] = basic_auth(self._user, self._password)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit=2),
                headers=headers,
            )
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
