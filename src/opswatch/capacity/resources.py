"""The resources forecast, and the service the API and the forecast rules read them from.

Each :class:`Resource` names the metric of its usage and its limit: a percentage of a disk,
of memory, of PostgreSQL's ``max_connections`` or Redis' ``maxmemory`` is full at 100; a
RabbitMQ queue at the ``rabbitmq_queue_deep`` critical threshold; a database's size has no
limit of its own (its growth per day is reported, no time to exhaustion).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from opswatch.capacity.advice import BY_METRIC as TRIGGERS
from opswatch.capacity.advice import WEEK, advise
from opswatch.capacity.forecast import DAY, ForecastSettings, exhaustion, trend_of
from opswatch.capacity.history import STEP, HistorySettings
from opswatch.model import Advice, Clock, Forecast, MetricSeries, RawPoint, Rollup
from opswatch.ports import HistoryStore


@dataclass(frozen=True, slots=True)
class Resource:
    rule: str
    resource: str
    metric: str
    limit: float | None


RESOURCES: tuple[Resource, ...] = (
    Resource("disk_full_forecast", "disk space", "host.disk_used_percent", 100.0),
    Resource("inodes_full_forecast", "inodes", "host.inodes_used_percent", 100.0),
    Resource("memory_full_forecast", "memory", "host.memory_percent", 100.0),
    Resource("swap_full_forecast", "swap", "host.swap_percent", 100.0),
    Resource(
        "postgres_connections_forecast",
        "PostgreSQL connections",
        "postgres.connections_percent",
        100.0,
    ),
    Resource(
        "postgres_database_growth", "PostgreSQL database size", "postgres.database_size_bytes", None
    ),
    Resource("redis_memory_forecast", "Redis memory", "redis.memory_percent", 100.0),
    Resource(
        "rabbitmq_queue_forecast", "RabbitMQ queue depth", "rabbitmq.messages_ready", 100000.0
    ),
)
_BY_METRIC = {r.metric: r for r in RESOURCES}


@dataclass(frozen=True, slots=True)
class SeriesHistory:
    """One series and its points: raw samples, or roll-ups merged ``step`` seconds wide."""

    series: MetricSeries
    raw: Sequence[RawPoint]
    rollups: Sequence[Rollup]


class Capacity:
    """The metric history and the forecasts, as the API and the forecast job read them."""

    def __init__(
        self,
        store: HistoryStore,
        history: HistorySettings,
        forecast: ForecastSettings,
        clock: Clock,
    ) -> None:
        self.store = store
        self.history = history
        self.forecast = forecast
        self.clock = clock

    async def series(
        self, check: str, metric: str | None, since: datetime, step: int | None
    ) -> list[SeriesHistory]:
        """The history of ``check`` (of one ``metric``, when given) since ``since``: raw
        samples when ``step`` is None, else the roll-ups merged into ``step``-wide points."""
        chosen = [s for s in await self.store.history_series(check) if metric in (None, s.metric)]
        begin, until = int(since.timestamp()), int(self.clock().timestamp()) + 1
        if not chosen:
            return []
        ids = [s.id for s in chosen]
        if step is None:
            points = await self.store.history_samples(begin, until, ids)
            return [SeriesHistory(s, [p for p in points if p.series == s.id], ()) for s in chosen]
        rollups = await self.store.history_rollups(ids, begin - begin % step, until)
        return [
            SeriesHistory(s, (), merge([r for r in rollups if r.series == s.id], step))
            for s in chosen
        ]

    async def forecasts(self) -> list[Forecast]:
        """A forecast for every series of a resource whose trend is known, soonest first."""
        now = self.clock()
        found = [
            forecast
            for s, rollups in await self._rollups(_BY_METRIC, self.forecast.window)
            if (forecast := self._forecast(s, rollups, now)) is not None
        ]
        return sorted(found, key=lambda f: (f.likely_s is None, f.likely_s or 0.0, f.rule))

    async def advice(self) -> list[Advice]:
        """A recommendation for every series whose scaling trigger held (see
        :mod:`opswatch.capacity.advice`), by resource."""
        now = self.clock()
        found = [
            advice
            for s, rollups in await self._rollups(TRIGGERS, WEEK)
            if (advice := advise(TRIGGERS[s.metric], s, rollups, now)) is not None
        ]
        return sorted(found, key=lambda a: (a.resource, a.check))

    async def _rollups(
        self, metrics: Collection[str], window: float
    ) -> list[tuple[MetricSeries, list[Rollup]]]:
        """The series of ``metrics`` with their roll-ups of the last ``window`` seconds."""
        at = self.clock().timestamp()
        series = [s for s in await self.store.history_series() if s.metric in metrics]
        if not series:
            return []
        since = int(at - window) - STEP
        rollups = await self.store.history_rollups([s.id for s in series], since, int(at) + 1)
        by_series: dict[int, list[Rollup]] = {}
        for rollup in rollups:
            by_series.setdefault(rollup.series, []).append(rollup)
        return [(s, by_series.get(s.id, [])) for s in series]

    def _forecast(
        self, series: MetricSeries, rollups: Sequence[Rollup], now: datetime
    ) -> Forecast | None:
        resource = _BY_METRIC[series.metric]
        trend = trend_of(rollups, self.forecast, now.timestamp())
        if trend is None or trend.slope <= 0:
            return None
        found = None if resource.limit is None else exhaustion(trend, resource.limit)
        if resource.limit is not None and found is None:
            return None
        return Forecast(
            rule=resource.rule,
            resource=resource.resource,
            check=series.check,
            metric=series.metric,
            labels=series.labels,
            at=now,
            value=trend.level,
            limit=resource.limit,
            per_day=trend.slope * DAY,
            earliest_s=None if found is None else found.earliest,
            likely_s=None if found is None else found.likely,
            latest_s=None if found is None else found.latest,
        )


def merge(rollups: Sequence[Rollup], step: int) -> list[Rollup]:
    """One series' roll-ups (in time order) merged into ``step``-wide buckets: the lowest
    min, the highest max and p95, the count-weighted mean, the summed count."""
    if step == STEP:
        return list(rollups)
    merged: list[Rollup] = []
    for rollup in rollups:
        at = rollup.at - rollup.at % step
        last = merged[-1] if merged else None
        if last is None or last.at != at:
            merged.append(
                Rollup(
                    rollup.series, at, rollup.min, rollup.max, rollup.mean, rollup.p95, rollup.count
                )
            )
            continue
        count = last.count + rollup.count
        merged[-1] = Rollup(
            last.series,
            at,
            min(last.min, rollup.min),
            max(last.max, rollup.max),
            (last.mean * last.count + rollup.mean * rollup.count) / count,
            max(last.p95, rollup.p95),
            count,
        )
    return merged
