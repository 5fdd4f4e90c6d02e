"""File freshness check: do files matching a glob exist, and how old is the newest one?

Meant for backups, exports and heartbeat files written by cron jobs.

Environment
-----------
``OPSWATCH_FILE_TARGETS``
    Comma-separated ``name=GLOB`` items with absolute patterns, e.g.
    ``backups=/var/backups/db/*.dump,reports=/srv/reports/**/*.csv``. ``**`` matches any
    number of directories. A comma followed by ``name=`` (or a newline) starts the next item,
    so a pattern may hold other commas. Names are lower-case (``[a-z][a-z0-9_-]*``). Only
    regular files count (directories and dangling links do not); names starting with a dot are
    not matched by ``*``, as in the shell.

Samples (labels ``{target}``)
-----------------------------
``file.up``                  1 when at least one file matches, else 0.
``file.count``               number of matching files (also when 0).
``file.newest_age_seconds``  clock now minus the modification time of the newest file.
``file.newest_size_bytes``   size of the newest file.

Cost: the glob walks the matched directories once per cycle, in a worker thread; keep
``**`` patterns to small trees.
"""

from __future__ import annotations

import asyncio
import glob
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from opswatch.collectors.base import Collector, up_sample
from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Clock, Sample

KIND = "file"
TARGETS_VAR = f"{PREFIX}FILE_TARGETS"


@dataclass(frozen=True, slots=True)
class FileStats:
    """What one glob found: the count and the newest regular file's mtime and size."""

    count: int
    newest_mtime: float | None = None
    newest_size: int | None = None


def scan(pattern: str) -> FileStats:
    """Stat every regular file matching ``pattern`` (blocking: call it in a thread).

    Files that vanish or cannot be stat'ed between the glob and the stat are skipped.
    """
    count = 0
    newest: os.stat_result | None = None
    for path in glob.iglob(pattern, recursive=True):
        try:
            info = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        count += 1
        if newest is None or info.st_mtime > newest.st_mtime:
            newest = info
    if newest is None:
        return FileStats(count=0)
    return FileStats(count=count, newest_mtime=newest.st_mtime, newest_size=newest.st_size)


class FileCollector:
    """Globs one pattern per cycle."""

    name: ClassVar[str] = KIND

    def __init__(self, target: str, pattern: str, clock: Clock) -> None:
        self.target = target
        self.pattern = pattern
        self.check = f"{KIND}:{target}"
        self._clock = clock

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[Collector]:
        collectors: list[Collector] = []
        for name, pattern in env.specs(TARGETS_VAR, what="GLOB"):
            if not os.path.isabs(pattern):
                raise ConfigError(
                    TARGETS_VAR, f"target {name!r}: expected an absolute pattern, got {pattern!r}"
                )
            collectors.append(cls(name, pattern, clock))
        return collectors

    async def collect(self) -> list[Sample]:
        stats = await asyncio.to_thread(scan, self.pattern)
        return file_samples(self.check, self.target, stats, self._clock())

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {"pattern": self.pattern}


def file_samples(check: str, target: str, stats: FileStats, at: datetime) -> list[Sample]:
    """The samples for one scan, ages measured from ``at`` (the injected clock's now)."""
    labels = {"target": target}
    samples = [
        up_sample(KIND, check, stats.count > 0, at, labels),
        Sample(check, f"{KIND}.count", float(stats.count), at, labels),
    ]
    if stats.newest_mtime is not None and stats.newest_size is not None:
        age = at.timestamp() - stats.newest_mtime
        samples.append(Sample(check, f"{KIND}.newest_age_seconds", age, at, labels))
        samples.append(
            Sample(check, f"{KIND}.newest_size_bytes", float(stats.newest_size), at, labels)
        )
    return samples
