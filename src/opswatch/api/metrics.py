"""``GET /metrics``: the Prometheus text exposition of opswatch's own health and its samples.

Nothing here is updated in the daemon's hot path except :class:`CheckStats`, a few plain
numbers per check (runs, errors, a duration histogram's bucket counts). Everything else is
read from the daemon when Prometheus scrapes: :class:`OpswatchCollector` is a custom
collector on a dedicated :class:`~prometheus_client.CollectorRegistry` (never the global
one) that yields metric families built from :class:`MetricsSource` at that moment.

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
  with the sample's labels (names sanitised) plus ``check``;
* whatever an optional :data:`FamilySource` adds (recovery outcomes, see
  :func:`recovery_families`);
* the standard ``process_*`` families of this process.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from opswatch import __version__
from opswatch.api.routes import CheckStatus, Health
from opswatch.model import Alert, AlertState, Sample, Severity

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""``text/plain; version=0.0.4; charset=utf-8``: what every Prometheus version reads."""

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

#: families opswatch names itself; a sample family with one of these names gets a prefix
_OWN_PREFIXES = (
    "opswatch_build_",
    "opswatch_daemon_",
    "opswatch_check_",
    "opswatch_alerts",
    "opswatch_outbox_",
    "opswatch_notify_",
    "opswatch_recovery_",
)
_METRIC_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(slots=True)
class CheckCounters:
    """Accumulated runs of one check since the daemon started."""

    runs: int = 0
    errors: int = 0
    duration_count: int = 0
    duration_sum: float = 0.0
    #: per bucket of :data:`DURATION_BUCKETS`, then +Inf: observations in it (not cumulative)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))


class CheckStats:
    """The only metric state the daemon updates as it runs: plain numbers, no locks (one
    event loop), read at scrape time."""

    def __init__(self) -> None:
        self._checks: dict[str, CheckCounters] = {}

    def observe(self, check: str, duration_s: float | None, failed: bool) -> None:
        """One processed run; ``duration_s`` is None for event-driven samples (no collect)."""
        counters = self._checks.get(check)
        if counters is None:
            counters = self._checks[check] = CheckCounters()
        counters.runs += 1
        if failed:
            counters.errors += 1
        if duration_s is not None:
            counters.duration_count += 1
            counters.duration_sum += duration_s
            counters.bucket_counts[bisect.bisect_left(DURATION_BUCKETS, duration_s)] += 1

    def snapshot(self) -> Mapping[str, CheckCounters]:
        return self._checks


class MetricsSource(Protocol):
    """What the exporter reads from the daemon (``App`` satisfies it)."""

    def health(self) -> Health: ...

    def check_statuses(self) -> Mapping[str, CheckStatus]: ...

    def active_alerts(self) -> list[Alert]: ...

    def check_stats(self) -> Mapping[str, CheckCounters]: ...

    def notify_channels(self) -> Sequence[str]: ...

    def failing_channels(self) -> frozenset[str]: ...

    async def outbox_counts(self) -> Mapping[str, int]: ...


#: an optional extra producer of families, called at each scrape (e.g. recovery outcomes)
FamilySource = Callable[[], Iterable[Metric]]


def sample_family_name(metric: str) -> str:
    """``host.cpu_percent`` -> ``opswatch_host_cpu_percent`` (invalid characters as ``_``)."""
    name = "opswatch_" + _METRIC_INVALID.sub("_", metric)
    if name.startswith(_OWN_PREFIXES):
        name = "opswatch_sample_" + name.removeprefix("opswatch_")
    return name


def label_name(name: str) -> str:
    """A valid Prometheus label name: invalid characters as ``_``, never a leading digit, never
    the reserved ``__`` prefix, never ``check`` (which opswatch sets)."""
    label = _LABEL_INVALID.sub("_", name) or "_"
    if label[0].isdigit():
        label = "_" + label
    if label.startswith("__"):
        label = "label" + label
    if label == "check":
        label = "exported_check"
    return label


def sample_labels(sample: Sample) -> dict[str, str]:
    """The sample's labels, sanitised, with ``check`` first; sanitised names that collide get
    a numeric suffix."""
    labels = {"check": sample.check}
    for key in sorted(sample.labels):
        name = base = label_name(key)
        suffix = 2
        while name in labels:
            name = f"{base}_{suffix}"
            suffix += 1
        labels[name] = sample.labels[key]
    return labels


def sample_families(statuses: Iterable[CheckStatus]) -> list[Metric]:
    """One gauge family per sample metric, over the last run of every check. A series that
    appears twice (same family, same labels) keeps its last value."""
    families: dict[str, dict[tuple[tuple[str, str], ...], tuple[dict[str, str], float]]] = {}
    metrics: dict[str, str] = {}
    for status in statuses:
        for sample in status.samples:
            name = sample_family_name(sample.metric)
            metrics.setdefault(name, sample.metric)
            labels = sample_labels(sample)
            families.setdefault(name, {})[tuple(labels.items())] = (labels, sample.value)
    result: list[Metric] = []
    for name in sorted(families):
        family = Metric(name, f"opswatch sample {metrics[name]}", "gauge")
        for labels, value in families[name].values():
            family.add_sample(name, labels, value)
        result.append(family)
    return result


def recovery_families(outcomes: Mapping[tuple[str, str], int]) -> list[Metric]:
    """``opswatch_recovery_total{action,outcome}`` from counts per (action, outcome): a helper
    for the recovery area's :data:`FamilySource`."""
    family = CounterMetricFamily(
        "opswatch_recovery",
        "Recovery actions finished, by action and outcome.",
        labels=["action", "outcome"],
    )
    for (action, outcome), count in sorted(outcomes.items()):
        family.add_metric([action, outcome], count)
    return [family]


def _timestamp(status: CheckStatus) -> float:
    return status.finished_at.timestamp()


def _check_up(status: CheckStatus) -> float | None:
    ups = [s.value for s in status.samples if s.metric.endswith(".up")]
    if not ups:
        return None
    return 0.0 if any(v == 0 or math.isnan(v) for v in ups) else 1.0


class OpswatchCollector:
    """A prometheus_client custom collector: every :meth:`collect` reads the daemon anew.

    The outbox counts live in the state store (an ``await``); :meth:`refresh` reads them
    before a scrape and :meth:`collect` uses the last values read.
    """

    def __init__(self, source: MetricsSource) -> None:
        self._source = source
        self._outbox: Mapping[str, int] = {}
        self._extra: list[FamilySource] = []

    def add(self, extra: FamilySource) -> None:
        self._extra.append(extra)

    async def refresh(self) -> None:
        self._outbox = dict(await self._source.outbox_counts())

    def collect(self) -> Iterator[Metric]:
        source = self._source
        yield from self._daemon(source.health())
        statuses = dict(source.check_statuses())
        yield from self._checks(source.check_stats(), statuses)
        yield self._alerts(source.active_alerts())
        yield from self._notify(source.notify_channels(), source.failing_channels())
        yield from sample_families(statuses[c] for c in sorted(statuses))
        for extra in self._extra:
            yield from extra()

    def _daemon(self, health: Health) -> Iterator[Metric]:
        info = GaugeMetricFamily("opswatch_build_info", "opswatch version.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        yield GaugeMetricFamily(
            "opswatch_daemon_start_time_seconds",
            "When the daemon started (Unix time).",
            value=health.started_at.timestamp(),
        )
        yield GaugeMetricFamily(
            "opswatch_daemon_healthy",
            "1 while /healthz answers 200 (scheduler running, no check late), else 0.",
            value=1.0 if health.healthy else 0.0,
        )

    def _checks(
        self, stats: Mapping[str, CheckCounters], statuses: Mapping[str, CheckStatus]
    ) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "opswatch_check_runs", "Runs of each check (scheduled and events).", labels=["check"]
        )
        errors = CounterMetricFamily(
            "opswatch_check_errors",
            "Runs whose collector raised or timed out (its up sample was set to 0).",
            labels=["check"],
        )
        duration = HistogramMetricFamily(
            "opswatch_check_duration_seconds",
            "Wall time of each scheduled run: collect, rules, alert state, store write.",
            labels=["check"],
        )
        for check in sorted(stats):
            counters = stats[check]
            runs.add_metric([check], counters.runs)
            errors.add_metric([check], counters.errors)
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(
                (*DURATION_BUCKETS, math.inf), counters.bucket_counts, strict=True
            ):
                cumulative += count
                buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
            duration.add_metric([check], buckets, counters.duration_sum)
        yield from (runs, errors, duration)
        last = GaugeMetricFamily(
            "opswatch_check_last_duration_seconds",
            "Wall time of each check's last run.",
            labels=["check"],
        )
        finished = GaugeMetricFamily(
            "opswatch_check_last_run_timestamp_seconds",
            "When each check's last run finished (Unix time).",
            labels=["check"],
        )
        up = GaugeMetricFamily(
            "opswatch_check_up",
            "1 when every <kind>.up sample of the check's last run is 1, else 0.",
            labels=["check"],
        )
        for check in sorted(statuses):
            status = statuses[check]
            last.add_metric([check], status.duration_s)
            finished.add_metric([check], _timestamp(status))
            value = _check_up(status)
            if value is not None:
                up.add_metric([check], value)
        yield from (last, finished, up)

    def _alerts(self, alerts: Sequence[Alert]) -> Metric:
        family = GaugeMetricFamily(
            "opswatch_alerts", "Active alerts by state and severity.", labels=["state", "severity"]
        )
        counts = {
            (state.value, severity.value): 0
            for state in AlertState
            if state is not AlertState.RESOLVED
            for severity in Severity
        }
        for alert in alerts:
            key = (alert.state.value, alert.severity.value)
            counts[key] = counts.get(key, 0) + 1
        for (state, severity), count in counts.items():
            family.add_metric([state, severity], count)
        return family

    def _notify(self, channels: Sequence[str], failing: frozenset[str]) -> Iterator[Metric]:
        outbox = GaugeMetricFamily(
            "opswatch_outbox_messages",
            "Notifications in the durable outbox by state (pending, delivered, failed).",
            labels=["state"],
        )
        for state in sorted({"pending", "delivered", "failed", *self._outbox}):
            outbox.add_metric([state], self._outbox.get(state, 0))
        yield outbox
        failing_family = GaugeMetricFamily(
            "opswatch_notify_channel_failing",
            "1 when the channel's last delivery attempt failed, else 0.",
            labels=["channel"],
        )
        for channel in sorted({*channels, *failing}):
            failing_family.add_metric([channel], 1.0 if channel in failing else 0.0)
        yield failing_family


class MetricsExporter:
    """The dedicated registry behind ``GET /metrics``."""

    def __init__(self, source: MetricsSource, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = OpswatchCollector(source)
        self.registry.register(self.collector)
        if process:
            ProcessCollector(registry=self.registry)

    def add(self, extra: FamilySource) -> None:
        """Add a producer of families read at every scrape (e.g. the recovery runner's)."""
        self.collector.add(extra)

    async def render(self) -> bytes:
        """The exposition text (:data:`CONTENT_TYPE`)."""
        await self.collector.refresh()
        body: bytes = generate_latest(self.registry)
        return body


METRICS: web.AppKey[MetricsExporter] = web.AppKey("metrics")


async def metrics_handler(request: web.Request) -> web.Response:
    body = await request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def add_metrics_route(app: web.Application, exporter: MetricsExporter) -> None:
    app[METRICS] = exporter
    app.router.add_get("/metrics", metrics_handler)
