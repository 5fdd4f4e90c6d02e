"""The collector registry: name (= module = env prefix) -> class. Explicit, no scanning."""

from __future__ import annotations

from opswatch.collectors.base import Collector

COLLECTORS: dict[str, type[Collector]] = {}
