"""The collector registry: name (= module = env prefix) -> class. Explicit, no scanning."""

from __future__ import annotations

from opswatch.collectors.base import Collector
from opswatch.collectors.host import HostCollector
from opswatch.collectors.http import HttpCollector

COLLECTORS: dict[str, type[Collector]] = {
    "host": HostCollector,
    "http": HttpCollector,
}
