"""The history's scheduled job: roll raw samples up into 5-minute buckets (min, max, mean,
p95, count), prune what is past retention, and keep the history under its size cap.

It runs beside the checks (every :data:`EVERY` seconds, on one replica), never inside a
check's cycle. A bucket is rolled up once it has closed and ``settle`` seconds have passed
(a run's samples carry the time they were taken, a little before they are written).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from opswatch.capacity.history import STEP, HistorySettings
from opswatch.model import Clock, RawPoint, Rollup
from opswatch.ports import HistoryStore

log = structlog.get_logger("opswatch")

#: how often the job runs (seconds)
EVERY = 300.0
#: how far the size cap moves the roll-ups' cut-off per step (seconds)
CAP_STEP = 86400


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated between the closest
    ranks (PostgreSQL's ``percentile_cont``)."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def roll_up(points: Sequence[RawPoint], step: int = STEP) -> list[Rollup]:
    """One roll-up per series and ``step``-wide bucket of ``points``."""
    buckets: dict[tuple[int, int], list[float]] = {}
    for point in points:
        buckets.setdefault((point.series, point.at - point.at % step), []).append(point.value)
    return [
        Rollup(
            series,
            at,
            min(values),
            max(values),
            math.fsum(values) / len(values),
            percentile(values, 0.95),
            len(values),
        )
        for (series, at), values in sorted(buckets.items())
    ]


@dataclass(frozen=True, slots=True)
class HistoryPass:
    """What one run of the job did."""

    rollups: int
    pruned_samples: int
    pruned_rollups: int
    bytes: int


class HistoryJob:
    """Roll-up, retention and the size cap of the metric history in ``store``."""

    def __init__(
        self, store: HistoryStore, settings: HistorySettings, clock: Clock, settle: float
    ) -> None:
        self.store = store
        self.settings = settings
        self._clock = clock
        self._settle = settle
        #: how far the size cap has pruned the roll-ups (epoch seconds)
        self._capped_before = 0
        #: the cap is reached with only raw samples left (logged once until it is not)
        self._over_cap = False

    async def run_once(self) -> HistoryPass:
        now = int(self._clock().timestamp())
        until = (now - int(self._settle)) // STEP * STEP
        rolled_until = await self.store.history_rolled_until()
        since = until - int(self.settings.raw_retention) // STEP * STEP
        if rolled_until is not None:
            since = max(since, rolled_until)
        written = 0
        for start in range(since, until, STEP):  # a bucket at a time: bounded memory
            rollups = roll_up(await self.store.history_samples(start, start + STEP))
            await self.store.history_store_rollups(rollups, start + STEP)
            written += len(rollups)
        samples_before = now - int(self.settings.raw_retention)
        rollups_before = max(now - int(self.settings.retention), self._capped_before)
        pruned = await self.store.history_prune(samples_before, rollups_before)
        size = await self.store.history_bytes()
        cap = self.settings.max_bytes
        if cap is not None and size > cap:
            pruned = await self._cap(rollups_before, samples_before, size, cap, pruned)
        else:
            self._over_cap = False
        return HistoryPass(written, pruned[0], pruned[1], size)

    async def _cap(
        self, cutoff: int, floor: int, size: int, cap: int, pruned: tuple[int, int]
    ) -> tuple[int, int]:
        """Prune the oldest day of roll-ups that has any (never those within the raw
        retention): one step per run, so the store's measure of its size can follow."""
        samples, rollups = pruned
        while cutoff < floor:
            cutoff = min(cutoff + CAP_STEP, floor)
            more = await self.store.history_prune(0, cutoff)
            self._capped_before = cutoff
            if more[1]:
                log.info(
                    "history_capped",
                    bytes=size,
                    max_bytes=cap,
                    pruned_rollups=more[1],
                    rollups_before=cutoff,
                )
                return samples, rollups + more[1]
        if not self._over_cap:  # once, until the history fits again
            log.warning("history_over_cap", bytes=size, max_bytes=cap)
        self._over_cap = True
        return samples, rollups

    async def run(
        self,
        lead: Callable[[], Awaitable[bool]],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Every :data:`EVERY` seconds, for ever, on the replica that ``lead()`` says; a
        failed run is logged (``history_job_failed``, one traceback per outage) and retried
        at the next."""
        failing = False
        while True:
            await sleep(EVERY)
            try:
                if await lead():
                    done = await self.run_once()
                    log.debug("history_job_finished", rollups=done.rollups, bytes=done.bytes)
            except Exception as exc:  # a store outage: the next run tries again
                log.warning(
                    "history_job_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=not failing,
                )
                failing = True
            else:
                failing = False
