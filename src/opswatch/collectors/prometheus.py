"""Scrape an application's Prometheus ``/metrics``: error ratio, p95 latency, counter rates.

Environment
-----------
``OPSWATCH_PROMETHEUS_TARGETS`` (or ``..._FILE``)
    Comma-separated ``name=URL`` items, e.g. ``api=http://127.0.0.1:8000/metrics``. Basic-auth
    credentials may go in the URL; they are masked everywhere.
Per target (``<NAME>`` upper-cased, ``-`` -> ``_``), all optional:
``OPSWATCH_PROMETHEUS_<NAME>_ERROR_COUNTER``
    A request counter with a status label, e.g. ``http_requests_total`` (``_total`` may be
    left out). Enables ``prometheus.error_ratio``.
``OPSWATCH_PROMETHEUS_<NAME>_ERROR_LABEL``
    The label holding the HTTP status, default ``status`` (``code`` is common too). A value
    starting with ``5`` is an error.
``OPSWATCH_PROMETHEUS_<NAME>_LATENCY_HISTOGRAM``
    A histogram in seconds, e.g. ``http_request_duration_seconds``. Enables
    ``prometheus.p95_seconds``.
``OPSWATCH_PROMETHEUS_<NAME>_RATES``
    Comma-separated counters to expose as per-second rates, e.g.
    ``http_requests_total,jobs_processed_total``.
``OPSWATCH_PROMETHEUS_<NAME>_TIMEOUT``
    Scrape timeout, default ``5s``.

Samples (labels ``{target}``)
-----------------------------
``prometheus.up``              1 when the scrape returned 200 and the whole page parsed as the
                               text exposition format with at least one sample, else 0 (an
                               HTML landing page, a JSON health answer or an empty page is
                               not metrics; the Content-Type is not looked at).
``prometheus.scrape_seconds``  time to fetch the page; only when up.
``prometheus.error_ratio``     5xx increase / total increase of the error counter since the
                               previous successful scrape (0..1), all label sets summed;
                               absent when no request was counted in between.
``prometheus.p95_seconds``     the 95th percentile of the observations made since the previous
                               successful scrape, from the histogram's bucket increases, with
                               linear interpolation inside the bucket as PromQL's
                               ``histogram_quantile`` does (so at most the largest finite
                               bucket bound); absent when nothing was observed.
``prometheus.rate``            labels ``{target, counter}``: increase per second since the
                               previous successful scrape, by the injected clock.

The derived samples need two successful scrapes. A counter or histogram that went down (the
application restarted) gives none of its derived samples that run; the next one resumes. A
label set that appears between two scrapes counts from zero (lazily created series such as
the first ``status="500"``).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

import aiohttp
import structlog

from opswatch.collectors.base import Collector, up_sample
from opswatch.config import PREFIX, ConfigError, Env, Secret, target_variable
from opswatch.model import Clock, Sample

_log = structlog.get_logger(__name__)

KIND = "prometheus"
TARGETS_VAR = f"{PREFIX}PROMETHEUS_TARGETS"
DEFAULT_TIMEOUT = 5.0
P95 = 0.95
ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"
NOT_METRICS = "not the Prometheus text format (no sample parsed)"

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

#: A series' identity: its labels, sorted.
SeriesKey = tuple[tuple[str, str], ...]
#: Sample name -> series -> value, for the sample names a target needs.
Series = Mapping[str, Mapping[SeriesKey, float]]


# --- pure functions --------------------------------------------------------------------------


def counter_sample_names(counter: str) -> tuple[str, ...]:
    """The sample names a counter may be exposed under (``x`` and ``x_total``)."""
    base = counter.removesuffix("_total")
    return (base, f"{base}_total")


def parse_series(text: str, names: Iterable[str]) -> dict[str, dict[SeriesKey, float]]:
    """Keep the samples named in ``names`` from a text exposition.

    Raises ``ValueError`` unless the whole page parses as the exposition format and holds at
    least one sample: an HTML landing page, a JSON health answer or an empty page is not
    metrics.
    """
    # imported when a target is scraped, not when the registry loads (as asyncpg and redis)
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    wanted = set(names)
    series: dict[str, dict[SeriesKey, float]] = {}
    empty = True
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            empty = False
            if sample.name in wanted:
                key = tuple(sorted(sample.labels.items()))
                series.setdefault(sample.name, {})[key] = float(sample.value)
    if empty:
        raise ValueError("the page holds no sample")
    return series


def merged(series: Series, names: Iterable[str]) -> dict[SeriesKey, float]:
    """The series of several sample names (a counter's aliases) in one mapping."""
    result: dict[SeriesKey, float] = {}
    for name in names:
        result.update(series.get(name, {}))
    return result


def increases(
    previous: Mapping[SeriesKey, float], current: Mapping[SeriesKey, float]
) -> dict[SeriesKey, float] | None:
    """Per-series increase, or ``None`` on a reset (any series went down).

    A series absent before counts from zero; a series that vanished is ignored.
    """
    result: dict[SeriesKey, float] = {}
    for key, value in current.items():
        delta = value - previous.get(key, 0.0)
        if delta < 0:
            return None
        result[key] = delta
    return result


def error_ratio(
    previous: Mapping[SeriesKey, float], current: Mapping[SeriesKey, float], label: str
) -> float | None:
    """5xx increase / total increase; ``None`` on a reset or when nothing was counted."""
    deltas = increases(previous, current)
    if deltas is None:
        return None
    total = sum(deltas.values())
    if total <= 0:
        return None
    errors = sum(v for key, v in deltas.items() if dict(key).get(label, "").startswith("5"))
    return errors / total


def bucket_increases(
    previous: Mapping[SeriesKey, float], current: Mapping[SeriesKey, float]
) -> list[tuple[float, float]] | None:
    """``(upper bound, cumulative count increase)`` per ``le``, summed over every other label;
    ``None`` on a reset."""
    deltas = increases(previous, current)
    if deltas is None:
        return None
    by_bound: dict[float, float] = {}
    for key, delta in deltas.items():
        labels = dict(key)
        try:
            bound = float(labels["le"])  # float() reads "+Inf" too
        except (KeyError, ValueError):
            continue
        by_bound[bound] = by_bound.get(bound, 0.0) + delta
    return sorted(by_bound.items())


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """PromQL's ``histogram_quantile`` on cumulative ``(upper bound, count)`` buckets.

    ``None`` where PromQL gives NaN: no ``+Inf`` bucket, fewer than two buckets, or no
    observations. A quantile in the ``+Inf`` bucket gives the largest finite bound.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    # Cumulative counts must not decrease (float noise, scrape races): PromQL fixes it so too.
    counts: list[float] = []
    for _, count in ordered:
        counts.append(max(count, counts[-1]) if counts else count)
    observations = counts[-1]
    if observations <= 0:
        return None
    rank = q * observations
    b = next(i for i, count in enumerate(counts) if count >= rank)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start, end, count = 0.0, ordered[b][0], counts[b]
    if b > 0:
        start = ordered[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * (rank / count)


# --- configuration ---------------------------------------------------------------------------


def _metric_name(env: Env, variable: str) -> str | None:
    value = env.raw(variable)
    if value is not None and not _METRIC_NAME.match(value):
        raise ConfigError(
            variable, f"expected a metric name such as http_requests_total, got {value!r}"
        )
    return value


def _metric_names(env: Env, variable: str) -> tuple[str, ...]:
    value = env.raw(variable)
    if value is None:
        return ()
    names = tuple(item.strip() for item in value.split(",") if item.strip())
    for name in names:
        if not _METRIC_NAME.match(name):
            raise ConfigError(variable, f"expected comma-separated metric names, got {name!r}")
    if len(set(names)) != len(names):
        raise ConfigError(variable, "a metric is listed twice")
    return names


def _label_name(env: Env, variable: str, default: str) -> str:
    value = env.string(variable, default)
    if not _LABEL_NAME.match(value):
        raise ConfigError(variable, f"expected a label name such as status or code, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class PrometheusTarget:
    name: str
    url: Secret
    error_counter: str | None = None
    error_label: str = "status"
    latency_histogram: str | None = None
    rates: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, env: Env, name: str, url: Secret) -> PrometheusTarget:
        def variable(option: str) -> str:
            return target_variable(KIND, name, option)

        return cls(
            name=name,
            url=url,
            error_counter=_metric_name(env, variable("ERROR_COUNTER")),
            error_label=_label_name(env, variable("ERROR_LABEL"), "status"),
            latency_histogram=_metric_name(env, variable("LATENCY_HISTOGRAM")),
            rates=_metric_names(env, variable("RATES")),
            timeout=env.duration(variable("TIMEOUT"), DEFAULT_TIMEOUT, minimum=0.001),
        )

    def sample_names(self) -> dict[str, tuple[str, ...]]:
        """Configured metric -> the sample names it is read from."""
        names: dict[str, tuple[str, ...]] = {}
        for counter in (self.error_counter, *self.rates):
            if counter is not None:
                names[counter] = counter_sample_names(counter)
        if self.latency_histogram is not None:
            names[self.latency_histogram] = (
                f"{self.latency_histogram.removesuffix('_bucket')}_bucket",
            )
        return names


@dataclass(frozen=True, slots=True)
class Scrape:
    """One successful scrape: when (injected clock) and the series the target needs."""

    at: datetime
    series: Mapping[str, Mapping[SeriesKey, float]] = field(default_factory=dict)


def derived_samples(
    check: str, target: PrometheusTarget, previous: Scrape, current: Scrape
) -> list[Sample]:
    """Error ratio, p95 and rates from two scrapes (pure)."""
    labels = {"target": target.name}
    at = current.at
    names = target.sample_names()
    samples: list[Sample] = []

    def series(metric: str, scrape: Scrape) -> dict[SeriesKey, float]:
        return merged(scrape.series, names[metric])

    if target.error_counter is not None:
        ratio = error_ratio(
            series(target.error_counter, previous),
            series(target.error_counter, current),
            target.error_label,
        )
        if ratio is not None:
            samples.append(Sample(check, f"{KIND}.error_ratio", ratio, at, labels))
    if target.latency_histogram is not None:
        buckets = bucket_increases(
            series(target.latency_histogram, previous), series(target.latency_histogram, current)
        )
        p95 = None if buckets is None else histogram_quantile(P95, buckets)
        if p95 is not None:
            samples.append(Sample(check, f"{KIND}.p95_seconds", p95, at, labels))
    elapsed = (current.at - previous.at).total_seconds()
    for counter in target.rates:
        deltas = increases(series(counter, previous), series(counter, current))
        if deltas is None or elapsed <= 0:
            continue
        rate_labels = {"target": target.name, "counter": counter}
        samples.append(
            Sample(check, f"{KIND}.rate", sum(deltas.values()) / elapsed, at, rate_labels)
        )
    return samples


# --- the collector ---------------------------------------------------------------------------


class ScrapeError(Exception):
    """The page could not be fetched or parsed (the message holds no URL)."""


class PrometheusCollector:
    """Scrapes one ``/metrics`` page per cycle and compares it with the previous one."""

    name: ClassVar[str] = KIND

    def __init__(self, target: PrometheusTarget, clock: Clock) -> None:
        self.target = target
        self.check = f"{KIND}:{target.name}"
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._previous: Scrape | None = None
        self._missing_reported: set[str] = set()

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[Collector]:
        return [
            cls(PrometheusTarget.from_env(env, target.name, target.url), clock)
            for target in env.targets(TARGETS_VAR)
        ]

    async def collect(self) -> list[Sample]:
        labels = {"target": self.target.name}
        started = time.perf_counter()
        try:
            text = await self._fetch()
            elapsed = time.perf_counter() - started
            names = [n for aliases in self.target.sample_names().values() for n in aliases]
            series = await asyncio.to_thread(parse_series, text, names)
        except (ScrapeError, aiohttp.ClientError, TimeoutError) as exc:
            _log.debug("prometheus_scrape_failed", check=self.check, error=type(exc).__name__)
            return [up_sample(KIND, self.check, False, self._clock(), labels)]
        except ValueError:
            # the message quotes the page: say only what is wrong with it
            _log.debug("prometheus_scrape_failed", check=self.check, error=NOT_METRICS)
            return [up_sample(KIND, self.check, False, self._clock(), labels)]
        current = Scrape(self._clock(), series)
        self._report_missing(current)
        samples = [
            up_sample(KIND, self.check, True, current.at, labels),
            Sample(self.check, f"{KIND}.scrape_seconds", elapsed, current.at, labels),
        ]
        if self._previous is not None:
            samples += derived_samples(self.check, self.target, self._previous, current)
        self._previous = current
        return samples

    async def _fetch(self) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"Accept": ACCEPT})
        timeout = aiohttp.ClientTimeout(total=self.target.timeout)
        async with self._session.get(self.target.url.reveal(), timeout=timeout) as response:
            if response.status != 200:
                raise ScrapeError(f"HTTP {response.status}")
            return await response.text(errors="replace")

    def _report_missing(self, scrape: Scrape) -> None:
        """Log once per metric that a configured metric is not on the page (a typo?)."""
        for metric, aliases in self.target.sample_names().items():
            present = any(scrape.series.get(name) for name in aliases)
            if not present and metric not in self._missing_reported:
                self._missing_reported.add(metric)
                _log.warning("prometheus_metric_missing", check=self.check, metric=metric)
            elif present:
                self._missing_reported.discard(metric)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def describe(self) -> dict[str, str]:
        described = {"url": str(self.target.url), "timeout": f"{self.target.timeout:g}s"}
        if self.target.error_counter is not None:
            described["error_counter"] = self.target.error_counter
            described["error_label"] = self.target.error_label
        if self.target.latency_histogram is not None:
            described["latency_histogram"] = self.target.latency_histogram
        if self.target.rates:
            described["rates"] = ",".join(self.target.rates)
        return described
