"""The collector registry: name (= module = env prefix) -> class. Explicit, no scanning.

Client libraries (asyncpg, redis) are imported by their collectors only when they run.
"""

from __future__ import annotations

from opswatch.collectors.base import Collector
from opswatch.collectors.host import HostCollector
from opswatch.collectors.http import HttpCollector
from opswatch.collectors.postgres import PostgresCollector
from opswatch.collectors.rabbitmq import RabbitmqCollector
from opswatch.collectors.redis import RedisCollector

COLLECTORS: dict[str, type[Collector]] = {
    "host": HostCollector,
    "http": HttpCollector,
    "postgres": PostgresCollector,
    "rabbitmq": RabbitmqCollector,
    "redis": RedisCollector,
}
