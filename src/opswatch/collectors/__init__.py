"""The collector registry: name (= module = env prefix) -> class. Explicit, no scanning.

Client libraries (asyncpg, redis) are imported by their collectors only when they run.
"""

from __future__ import annotations

from opswatch.collectors.base import Collector
from opswatch.collectors.command import CommandCollector
from opswatch.collectors.file import FileCollector
from opswatch.collectors.heartbeat import HeartbeatCheck
from opswatch.collectors.host import HostCollector
from opswatch.collectors.http import HttpCollector
from opswatch.collectors.postgres import PostgresCollector
from opswatch.collectors.process import ProcessCollector
from opswatch.collectors.prometheus import PrometheusCollector
from opswatch.collectors.rabbitmq import RabbitmqCollector
from opswatch.collectors.redis import RedisCollector
from opswatch.collectors.tcp import TcpCollector

COLLECTORS: dict[str, type[Collector]] = {
    "command": CommandCollector,
    "file": FileCollector,
    "heartbeat": HeartbeatCheck,
    "host": HostCollector,
    "http": HttpCollector,
    "postgres": PostgresCollector,
    "process": ProcessCollector,
    "prometheus": PrometheusCollector,
    "rabbitmq": RabbitmqCollector,
    "redis": RedisCollector,
    "tcp": TcpCollector,
}
