"""``GET /metrics``: the Prometheus text exposition of opswatch's own health and its samples.

Nothing here is updated in the daemon's hot path except :class:`CheckStats`, a few plain
numbers per check (runs, errors, a duration histogram's bucket counts). Everything else is
read from the daemon when Prometheus scrapes: :class:`~opswatch.api.families.OpswatchCollector`
is a custom collector on a dedicated :class:`~prometheus_client.CollectorRegistry` (never the
global one) that yields metric families built from :class:`MetricsSource` at that moment.
prometheus_client is imported at the first scrape (``api/families.py``), so a daemon nobody
scrapes does not carry it (1.6 MiB).

Families (all gauges unless named ``_total`` or a histogram):

* ``opswatch_build_info{version}``, ``opswatch_daemon_start_time_seconds``,
  ``opswatch_daemon_healthy`` (what ``/healthz`` says, 1 or 0);
* per check: ``opswatch_check_runs_total``, ``opswatch_check_errors_total`` (a collector
  raised or timed out), ``opswatch_check_duration_seconds`` (histogram of scheduled runs),
  ``opswatch_check_last_duration_seconds``, ``opswatch_check_last_run_timestamp_seconds``,
  ``opswatch_check_up`` (0 when any ``<kind>.up`` sample of its last run is 0);
* ``opswatch_alerts{state,severity}`` (every combination, zeros included);
* ``opswatch_outbox_messages{state}`` (pending, delivered, failed) and
  ``opswatch_notify_channel_failing{channel}``;
* one family per sample metric: ``host.cpu_percent`` becomes ``opswatch_host_cpu_percent``
  with the sample's labels (names sanitised) plus ``check``, named as Prometheus' conventions
  say (``_per_s`` as ``_per_second``, a ``_total`` as a counter, a ``.count`` as ``_matches``,
  see :func:`~opswatch.api.families.sample_family`). Each series keeps its last value until
  it is sampled again (:class:`CheckStats`), so a family sampled less often than the cycle
  (TCP states) never goes stale between its runs;
* ``opswatch_recovery_total{action,outcome}``: recovery runs finished by this process;
* ``opswatch_paused_since_timestamp_seconds{check,by}``: one series per pause in force (check
  ``*``: every check), its value when it began;
* the standard ``process_*`` families of this process.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from opswatch.model import Alert, CheckStatus, Health, Pause, Sample

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from opswatch.api.families import OpswatchCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The text exposition format every Prometheus version reads."""

#: upper bounds (seconds) of the check duration histogram
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(slots=True)
class CheckCounters:
    """Accumulated runs of one check since the daemon started."""

    runs: int = 0
    errors: int = 0
    duration_count: int = 0
    duration_sum: float = 0.0
    #: per bucket of :data:`DURATION_BUCKETS`, then +Inf: observations in it (not cumulative)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))


@dataclass(frozen=True, slots=True)
class LastSeries:
    """What ``/metrics`` exposes of one check: the last samples of each of its metrics, as of
    its run that finished at ``finished_at``."""

    finished_at: datetime
    by_metric: Mapping[str, tuple[Sample, ...]]

    def samples(self) -> Iterator[Sample]:
        for metric in sorted(self.by_metric):
            yield from self.by_metric[metric]


def _by_metric(samples: Sequence[Sample]) -> dict[str, tuple[Sample, ...]]:
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.metric, []).append(sample)
    return {metric: tuple(batch) for metric, batch in grouped.items()}


def _target_down(samples: Sequence[Sample]) -> bool:
    return any(s.metric.endswith(".up") and s.value == 0 for s in samples)


class CheckStats:
    """The only metric state the daemon updates as it runs: plain numbers and the last
    series of each check, no locks (one event loop), read at scrape time.

    A run replaces the series of every metric it sampled and keeps the others' last values
    (a family sampled every few runs, such as TCP states, stays exposed in between); a run
    whose target is down (any ``<kind>.up`` = 0) replaces them all, so the series of a
    target that went away vanish with it.
    """

    def __init__(self) -> None:
        self._checks: dict[str, CheckCounters] = {}
        self._series: dict[str, LastSeries] = {}

    def observe(self, status: CheckStatus, duration_s: float | None) -> None:
        """One processed run; ``duration_s`` is None for event-driven samples (no collect)."""
        counters = self._checks.get(status.check)
        if counters is None:
            counters = self._checks[status.check] = CheckCounters()
        counters.runs += 1
        if status.error is not None:
            counters.errors += 1
        if duration_s is not None:
            counters.duration_count += 1
            counters.duration_sum += duration_s
            counters.bucket_counts[bisect.bisect_left(DURATION_BUCKETS, duration_s)] += 1
        fresh = _by_metric(status.samples)
        previous = self._series.get(status.check)
        if previous is not None and not _target_down(status.samples):
            fresh = {**previous.by_metric, **fresh}
        self._series[status.check] = LastSeries(status.finished_at, fresh)

    def snapshot(self) -> Mapping[str, CheckCounters]:
        return self._checks

    def last_series(self, status: CheckStatus) -> Iterator[Sample]:
        """The series to expose for a check whose status is ``status``: the remembered ones
        when ``status`` is the run last observed, else (a standby replica's status) only the
        status's own samples."""
        remembered = self._series.get(status.check)
        if remembered is None or remembered.finished_at != status.finished_at:
            return iter(status.samples)
        return remembered.samples()

    def retain(self, checks: set[str]) -> None:
        """Forget the series of checks that no longer exist (removed by a reload)."""
        for check in set(self._series) - checks:
            del self._series[check]


class MetricsSource(Protocol):
    """What the exporter reads from the daemon (``App`` satisfies it)."""

    def health(self) -> Health: ...

    def check_statuses(self) -> Mapping[str, CheckStatus]: ...

    def active_alerts(self) -> list[Alert]: ...

    def check_stats(self) -> Mapping[str, CheckCounters]: ...

    def last_series(self) -> CheckStats:
        """The series remembered across runs (:meth:`CheckStats.last_series`)."""
        ...

    def notify_channels(self) -> Sequence[str]: ...

    def failing_channels(self) -> frozenset[str]: ...

    async def outbox_counts(self) -> Mapping[str, int]: ...

    def recovery_outcomes(self) -> Mapping[tuple[str, str], int]:
        """Recovery runs finished by this process, per (action, outcome)."""
        ...

    def pauses(self) -> Sequence[Pause]:
        """The pauses in force (:mod:`opswatch.alerts.pause`)."""
        ...


class MetricsExporter:
    """The dedicated registry behind ``GET /metrics``."""

    def __init__(self, source: MetricsSource, *, process: bool = True) -> None:
        self._source = source
        self._process = process
        self._built: tuple[CollectorRegistry, OpswatchCollector] | None = None

    async def render(self) -> bytes:
        """The exposition text (:data:`CONTENT_TYPE`); the first call loads prometheus_client."""
        from opswatch.api import families  # noqa: PLC0415 - deferred to the first scrape

        if self._built is None:
            self._built = families.build_registry(self._source, process=self._process)
        registry, collector = self._built
        await collector.refresh()
        return families.exposition(registry)


METRICS: web.AppKey[MetricsExporter] = web.AppKey("metrics")


async def metrics_handler(request: web.Request) -> web.Response:
    body = await request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
