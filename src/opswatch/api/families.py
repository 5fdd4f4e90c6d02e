"""The Prometheus families behind ``GET /metrics`` (see :mod:`opswatch.api.metrics`).

Imported at the first scrape only: this is the one module that loads prometheus_client.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from opswatch import __version__
from opswatch.api.metrics import DURATION_BUCKETS, CheckCounters, MetricsSource
from opswatch.codec import pause_scope
from opswatch.model import Alert, AlertState, CheckStatus, Health, Pause, Sample, Severity

#: families opswatch names itself; a sample family with one of these names gets a prefix
_OWN_PREFIXES = (
    "opswatch_build_",
    "opswatch_daemon_",
    "opswatch_check_",
    "opswatch_alerts",
    "opswatch_outbox_",
    "opswatch_notify_",
    "opswatch_recovery_",
    "opswatch_paused_",
)
_METRIC_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")


#: name suffixes of opswatch's sample metrics that Prometheus' conventions spell otherwise:
#: units are never abbreviated, ``_count`` belongs to histograms and summaries (both ``.count``
#: samples, of the process and file collectors, count the things their target matched)
_SUFFIXES = {"_per_s": "_per_second", "_count": "_matches"}
COUNTER_SUFFIX = "_total"


def sample_family(metric: str) -> tuple[str, str]:
    """``(family name, type)`` of a sample metric: ``host.cpu_percent`` ->
    ``("opswatch_host_cpu_percent", "gauge")`` (invalid characters as ``_``),
    ``host.net_errors_per_s`` -> ``opswatch_host_net_errors_per_second``, ``process.count``
    -> ``opswatch_process_matches``; a metric named ``..._total`` is a counter, whose family
    name drops the suffix (the exposition adds it back to its sample)."""
    name = "opswatch_" + _METRIC_INVALID.sub("_", metric)
    if name.startswith(_OWN_PREFIXES):
        name = "opswatch_sample_" + name.removeprefix("opswatch_")
    if name.endswith(COUNTER_SUFFIX):
        return name.removesuffix(COUNTER_SUFFIX), "counter"
    for suffix, replacement in _SUFFIXES.items():
        if name.endswith(suffix):
            return name.removesuffix(suffix) + replacement, "gauge"
    return name, "gauge"


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


def sample_families(samples: Iterable[Sample]) -> list[Metric]:
    """One family per sample metric (see :func:`sample_family`). A series that appears
    twice (same family, same labels) keeps its last value."""
    families: dict[str, dict[tuple[tuple[str, str], ...], tuple[dict[str, str], float]]] = {}
    kinds: dict[str, tuple[str, str]] = {}
    for sample in samples:
        name, kind = sample_family(sample.metric)
        kinds.setdefault(name, (sample.metric, kind))
        labels = sample_labels(sample)
        families.setdefault(name, {})[tuple(labels.items())] = (labels, sample.value)
    result: list[Metric] = []
    for name in sorted(families):
        metric, kind = kinds[name]
        family = Metric(name, f"opswatch sample {metric}", kind)
        sample_name = name + COUNTER_SUFFIX if kind == "counter" else name
        for labels, value in families[name].values():
            family.add_sample(sample_name, labels, value)
        result.append(family)
    return result


def recovery_families(outcomes: Mapping[tuple[str, str], int]) -> list[Metric]:
    """``opswatch_recovery_total{action,outcome}`` from counts per (action, outcome)."""
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

    async def refresh(self) -> None:
        self._outbox = dict(await self._source.outbox_counts())

    def collect(self) -> Iterator[Metric]:
        source = self._source
        yield from self._daemon(source.health())
        statuses = dict(source.check_statuses())
        yield from self._checks(source.check_stats(), statuses)
        yield self._alerts(source.active_alerts())
        yield from self._notify(source.notify_channels(), source.failing_channels())
        series = source.last_series()
        series.retain(set(statuses))
        yield from sample_families(
            sample for check in sorted(statuses) for sample in series.last_series(statuses[check])
        )
        yield from recovery_families(source.recovery_outcomes())
        yield pause_family(source.pauses())

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


def pause_family(pauses: Sequence[Pause]) -> Metric:
    """One series per pause in force: which check (``*``: every check), by whom, since when."""
    family = GaugeMetricFamily(
        "opswatch_paused_since_timestamp_seconds",
        "When each pause in force began (Unix time); check * is every check.",
        labels=["check", "by"],
    )
    for pause in pauses:
        family.add_metric([pause_scope(pause.check), pause.by], pause.since.timestamp())
    return family


def build_registry(
    source: MetricsSource, *, process: bool
) -> tuple[CollectorRegistry, OpswatchCollector]:
    """A dedicated registry (never the global one) holding opswatch's collector and, with
    ``process``, the standard ``process_*`` families."""
    registry = CollectorRegistry(auto_describe=False)
    collector = OpswatchCollector(source)
    registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
    return registry, collector


def exposition(registry: CollectorRegistry) -> bytes:
    body: bytes = generate_latest(registry)
    return body
