"""Which samples the metric history keeps, and for how long.

The cycle hands every run's samples to :meth:`SeriesFilter.keep`; the kept ones go into the
run's own transaction (:meth:`opswatch.alerts.book.AlertBook.commit`), one batched insert.
Roll-ups and pruning are a scheduled job (:mod:`opswatch.capacity.rollup`), never the cycle.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Sample

#: every host series, every ``up``, every percentage, duration and size, queue depth, and
#: the Redis hit ratio (a scaling trigger, :mod:`opswatch.capacity.advice`)
DEFAULT_METRICS = (
    "host.*",
    "*.up",
    "*_percent",
    "*_seconds",
    "*_bytes",
    "rabbitmq.messages_ready",
    "redis.keyspace_hit_ratio",
)
#: a glob of metric names: letters, digits, ``._-`` and the glob characters ``*?[]!``
_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]+$")
#: the width of a roll-up bucket (seconds)
STEP = 300


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """``OPSWATCH_HISTORY*``: on or off, which metrics, retention, size cap."""

    enabled: bool = True
    metrics: tuple[str, ...] = DEFAULT_METRICS
    #: raw samples are kept this long (seconds)
    raw_retention: float = 48 * 3600.0
    #: roll-ups are kept this long (seconds)
    retention: float = 90 * 86400.0
    #: past this many bytes the oldest roll-ups are pruned first (None: no cap)
    max_bytes: int | None = 1024 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Env) -> HistorySettings:
        enabled = env.boolean(f"{PREFIX}HISTORY", True)
        raw_retention = env.duration(f"{PREFIX}HISTORY_RAW_RETENTION", 48 * 3600.0, minimum=3600)
        retention = env.duration(f"{PREFIX}HISTORY_RETENTION", 90 * 86400.0, minimum=86400)
        if retention < raw_retention:
            raise ConfigError(
                f"{PREFIX}HISTORY_RETENTION",
                f"must be at least OPSWATCH_HISTORY_RAW_RETENTION ({raw_retention:g}s)",
            )
        max_mb = env.integer(f"{PREFIX}HISTORY_MAX_MB", 1024, minimum=0)
        return cls(
            enabled=enabled,
            metrics=_globs(env, f"{PREFIX}HISTORY_METRICS"),
            raw_retention=raw_retention,
            retention=retention,
            max_bytes=max_mb * 1024 * 1024 or None,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "metrics": list(self.metrics),
            "raw_retention_s": self.raw_retention,
            "retention_s": self.retention,
            "max_mb": None if self.max_bytes is None else self.max_bytes // (1024 * 1024),
        }


def _globs(env: Env, name: str) -> tuple[str, ...]:
    value = env.raw(name)
    if value is None:
        return DEFAULT_METRICS
    globs = tuple(item.strip() for item in value.split(",") if item.strip())
    for glob in globs:
        if not _GLOB.match(glob):
            raise ConfigError(
                name, f"expected comma-separated metric globs such as host.*,*.up; got {glob!r}"
            )
    if not globs:
        raise ConfigError(name, "expected at least one metric glob (OPSWATCH_HISTORY=off: none)")
    return globs


class SeriesFilter:
    """Picks the samples the history keeps: a metric matching one of the globs, with a
    finite value. Each metric name is matched once and remembered."""

    def __init__(self, settings: HistorySettings) -> None:
        self.settings = settings
        self._kept: dict[str, bool] = {}

    def keep(self, samples: Sequence[Sample]) -> list[Sample]:
        if not self.settings.enabled:
            return []
        return [s for s in samples if self._wanted(s.metric) and math.isfinite(s.value)]

    def _wanted(self, metric: str) -> bool:
        wanted = self._kept.get(metric)
        if wanted is None:
            wanted = any(fnmatchcase(metric, glob) for glob in self.settings.metrics)
            self._kept[metric] = wanted
        return wanted
