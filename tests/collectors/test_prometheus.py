"""The Prometheus scrape collector: the quantile and ratio math on captured text, and scrapes
of a local aiohttp server whose /metrics page changes between scrapes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from opswatch.collectors.prometheus import (
    PrometheusCollector,
    PrometheusTarget,
    Scrape,
    SeriesKey,
    bucket_increases,
    derived_samples,
    error_ratio,
    histogram_quantile,
    increases,
    parse_series,
)
from opswatch.config import ConfigError, Env, Secret
from opswatch.model import Sample
from tests.conftest import ManualClock

INF = float("inf")


def page(ok: int, errors: int, buckets: tuple[int, int, int, int], jobs: int = 0) -> str:
    """A /metrics page as prometheus_client renders it (captured shape, values filled in)."""
    b01, b05, b1, inf = buckets
    return f"""\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{{generation="0"}} 2321.0
# HELP http_requests_total Total HTTP requests
# TYPE http_requests_total counter
http_requests_total{{method="GET",path="/api",status="200"}} {ok}.0
http_requests_total{{method="GET",path="/api",status="404"}} 3.0
http_requests_total{{method="POST",path="/api",status="503"}} {errors}.0
# HELP http_requests_created Total HTTP requests
# TYPE http_requests_created gauge
http_requests_created{{method="GET",path="/api",status="200"}} 1.7e+09
# HELP http_request_duration_seconds Request latency
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{{le="0.1",path="/api"}} {b01}.0
http_request_duration_seconds_bucket{{le="0.5",path="/api"}} {b05}.0
http_request_duration_seconds_bucket{{le="1.0",path="/api"}} {b1}.0
http_request_duration_seconds_bucket{{le="+Inf",path="/api"}} {inf}.0
http_request_duration_seconds_count{{path="/api"}} {inf}.0
http_request_duration_seconds_sum{{path="/api"}} 12.5
# HELP jobs_processed_total Jobs
# TYPE jobs_processed_total counter
jobs_processed_total {jobs}.0
"""


API = PrometheusTarget(
    name="api",
    url=Secret("http://127.0.0.1:1/metrics"),
    error_counter="http_requests_total",
    latency_histogram="http_request_duration_seconds",
    rates=("http_requests_total", "jobs_processed"),
)


def values(samples: list[Sample]) -> dict[str, float]:
    return {
        s.metric + (f"[{s.labels['counter']}]" if "counter" in s.labels else ""): s.value
        for s in samples
    }


def names_of(target: PrometheusTarget) -> list[str]:
    return [n for aliases in target.sample_names().values() for n in aliases]


# --- pure math ------------------------------------------------------------------------------


def test_quantile_interpolates_linearly_inside_the_bucket() -> None:
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 98.0), (INF, 100.0)]

    assert histogram_quantile(0.95, buckets) == pytest.approx(0.8125)  # 0.5 + 0.5 * 5/8
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)


def test_quantile_in_the_inf_bucket_is_the_largest_finite_bound() -> None:
    assert histogram_quantile(0.95, [(0.1, 50.0), (1.0, 60.0), (INF, 100.0)]) == 1.0


@pytest.mark.parametrize(
    "buckets",
    [
        [(0.1, 0.0), (INF, 0.0)],  # no observations
        [(INF, 10.0)],  # a single bucket
        [(0.1, 5.0), (1.0, 10.0)],  # no +Inf bucket
        [],
    ],
)
def test_quantile_is_absent_where_promql_gives_nan(buckets: list[tuple[float, float]]) -> None:
    assert histogram_quantile(0.95, buckets) is None


def test_quantile_tolerates_non_monotonic_buckets_as_promql_does() -> None:
    assert histogram_quantile(0.5, [(1.0, 10.0), (2.0, 9.0), (INF, 20.0)]) == pytest.approx(1.0)


def test_error_ratio_counts_5xx_deltas_over_all_deltas() -> None:
    before = parse_series(page(ok=100, errors=1, buckets=(0, 0, 0, 0)), ["http_requests_total"])
    after = parse_series(page(ok=190, errors=11, buckets=(0, 0, 0, 0)), ["http_requests_total"])

    ratio = error_ratio(before["http_requests_total"], after["http_requests_total"], "status")

    assert ratio == pytest.approx(10 / 100)


def test_error_ratio_is_absent_without_requests_and_on_reset() -> None:
    series: dict[SeriesKey, float] = {(("status", "200"),): 5.0, (("status", "500"),): 1.0}
    reset: dict[SeriesKey, float] = {(("status", "200"),): 1.0, (("status", "500"),): 1.0}

    assert error_ratio(series, series, "status") is None
    assert error_ratio(series, reset, "status") is None


def test_series_that_appear_between_scrapes_count_from_zero() -> None:
    before: dict[SeriesKey, float] = {(("code", "200"),): 10.0}
    after: dict[SeriesKey, float] = {(("code", "200"),): 18.0, (("code", "502"),): 2.0}

    assert error_ratio(before, after, "code") == pytest.approx(0.2)
    assert increases(before, {}) == {}


def test_bucket_increases_sum_every_label_set_by_bound() -> None:
    def key(le: str, path: str) -> SeriesKey:
        return (("le", le), ("path", path))

    before = {key("0.5", "/a"): 1.0, key("+Inf", "/a"): 2.0, key("0.5", "/b"): 0.0}
    after = {key("0.5", "/a"): 4.0, key("+Inf", "/a"): 6.0, key("0.5", "/b"): 3.0}

    assert bucket_increases(before, after) == [(0.5, 6.0), (INF, 4.0)]


def test_derives_ratio_p95_and_rates_from_two_captured_pages(clock: ManualClock) -> None:
    names = names_of(API)
    first = Scrape(clock.now, parse_series(page(100, 1, (10, 20, 30, 40), jobs=5), names))
    second = Scrape(
        clock.advance(20),
        parse_series(page(180, 21, (60, 110, 128, 140), jobs=45), names),
    )

    samples = derived_samples("prometheus:api", API, first, second)

    assert values(samples) == pytest.approx(
        {
            "prometheus.error_ratio": 20 / 100,
            "prometheus.p95_seconds": 0.5 + 0.5 * (95 - 90) / (98 - 90),
            "prometheus.rate[http_requests_total]": 100 / 20,
            "prometheus.rate[jobs_processed]": 40 / 20,
        }
    )
    assert {s.labels["target"] for s in samples} == {"api"}


def test_reset_suppresses_only_the_metrics_that_went_down(clock: ManualClock) -> None:
    names = names_of(API)
    first = Scrape(clock.now, parse_series(page(100, 1, (10, 20, 30, 40), jobs=50), names))
    second = Scrape(clock.advance(10), parse_series(page(110, 1, (10, 20, 30, 40), 2), names))

    assert values(derived_samples("prometheus:api", API, first, second)) == {
        "prometheus.error_ratio": 0.0,
        "prometheus.rate[http_requests_total]": 1.0,
    }


# --- scraping a real local server -----------------------------------------------------------


@dataclass
class MetricsApp:
    """What the local server serves; tests change it between scrapes."""

    body: str = ""
    status: int = 200
    release: asyncio.Event = field(default_factory=asyncio.Event)
    hang: bool = False
    requests: int = 0


@pytest.fixture
async def app_server() -> AsyncIterator[tuple[MetricsApp, str]]:
    state = MetricsApp()

    async def metrics(request: web.Request) -> web.Response:
        state.requests += 1
        if state.hang:
            await state.release.wait()
        return web.Response(text=state.body, status=state.status)

    application = web.Application()
    application.router.add_get("/metrics", metrics)
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    yield state, str(server.make_url("/metrics"))
    state.release.set()
    await server.close()


def collector_for(url: str, clock: ManualClock, timeout: float = 5.0) -> PrometheusCollector:
    target = PrometheusTarget(
        name="api",
        url=Secret(url),
        error_counter="http_requests_total",
        latency_histogram="http_request_duration_seconds",
        rates=("jobs_processed_total",),
        timeout=timeout,
    )
    return PrometheusCollector(target, clock)


async def test_first_scrape_reports_up_and_scrape_time_only(
    app_server: tuple[MetricsApp, str], clock: ManualClock
) -> None:
    state, url = app_server
    state.body = page(100, 1, (10, 20, 30, 40))
    collector = collector_for(url, clock)

    samples = await collector.collect()
    await collector.close()

    got = values(samples)
    assert set(got) == {"prometheus.up", "prometheus.scrape_seconds"}
    assert got["prometheus.up"] == 1.0
    assert 0.0 < got["prometheus.scrape_seconds"] < 5.0
    assert all(s.check == "prometheus:api" and s.at == clock.now for s in samples)


async def test_second_scrape_reports_error_ratio_p95_and_rate(
    app_server: tuple[MetricsApp, str], clock: ManualClock
) -> None:
    state, url = app_server
    collector = collector_for(url, clock)
    state.body = page(100, 1, (10, 20, 30, 40), jobs=0)
    await collector.collect()

    state.body = page(190, 11, (60, 100, 128, 140), jobs=300)
    clock.advance(30)
    got = values(await collector.collect())
    await collector.close()

    assert got["prometheus.error_ratio"] == pytest.approx(10 / 100)
    assert got["prometheus.p95_seconds"] == pytest.approx(0.5 + 0.5 * (95 - 80) / (98 - 80))
    assert got["prometheus.rate[jobs_processed_total]"] == pytest.approx(10.0)


async def test_no_ratio_or_p95_without_requests_in_between(
    app_server: tuple[MetricsApp, str], clock: ManualClock
) -> None:
    state, url = app_server
    state.body = page(100, 1, (10, 20, 30, 40), jobs=7)
    collector = collector_for(url, clock)
    await collector.collect()

    clock.advance(30)
    got = values(await collector.collect())
    await collector.close()

    assert "prometheus.error_ratio" not in got
    assert "prometheus.p95_seconds" not in got
    assert got["prometheus.rate[jobs_processed_total]"] == 0.0


async def test_counter_reset_gives_no_derived_samples_that_run_then_resumes(
    app_server: tuple[MetricsApp, str], clock: ManualClock
) -> None:
    state, url = app_server
    collector = collector_for(url, clock)
    state.body = page(1000, 50, (500, 900, 990, 1000), jobs=400)
    await collector.collect()

    state.body = page(10, 0, (5, 9, 10, 10), jobs=3)  # the application restarted
    clock.advance(30)
    after_reset = values(await collector.collect())
    state.body = page(100, 10, (55, 99, 108, 110), jobs=33)
    clock.advance(30)
    resumed = values(await collector.collect())
    await collector.close()

    assert set(after_reset) == {"prometheus.up", "prometheus.scrape_seconds"}
    assert resumed["prometheus.error_ratio"] == pytest.approx(0.1)
    assert resumed["prometheus.rate[jobs_processed_total]"] == pytest.approx(1.0)


async def test_a_failed_scrape_is_down_and_the_next_compares_with_the_last_good_one(
    app_server: tuple[MetricsApp, str], clock: ManualClock
) -> None:
    state, url = app_server
    collector = collector_for(url, clock)
    state.body = page(100, 0, (0, 0, 0, 0), jobs=0)
    await collector.collect()

    state.status = 503
    clock.advance(30)
    failed = values(await collector.collect())
    state.status = 200
    state.body = page(200, 0, (0, 0, 0, 0), jobs=60)
    clock.advance(30)
    recovered = values(await collector.collect())
    await collector.close()

    assert failed == {"prometheus.up": 0.0}
    assert recovered["prometheus.rate[jobs_processed_total]"] == pytest.approx(1.0)
    assert recovered["prometheus.error_ratio"] == 0.0


async def test_unparseable_page_is_down(
    app_server: tuple[MetricsApp, str], clock: ManualClock
) -> None:
    state, url = app_server
    state.body = "<html><body>Not Found</body></html>"
    collector = collector_for(url, clock)

    got = values(await collector.collect())
    await collector.close()

    assert got == {"prometheus.up": 0.0}


LANDING_PAGE = """<!DOCTYPE html>
<html><head><title>My app</title></head><body><h1>Welcome</h1></body></html>
"""


@pytest.mark.parametrize(
    "body",
    [LANDING_PAGE, '{"status": "ok"}', "OK\n", "", "# HELP x only comments\n"],
    ids=["html", "json", "text", "empty", "comments"],
)
async def test_a_page_that_is_not_metrics_is_down_with_nothing_configured(
    app_server: tuple[MetricsApp, str], clock: ManualClock, body: str
) -> None:
    state, url = app_server
    state.body = body
    collector = PrometheusCollector(PrometheusTarget(name="site", url=Secret(url)), clock)

    with capture_logs() as logs:
        got = values(await collector.collect())
    await collector.close()

    assert got == {"prometheus.up": 0.0}
    (failed,) = [e for e in logs if e["event"] == "prometheus_scrape_failed"]
    assert failed["error"].startswith("not the Prometheus text format")


async def test_a_metrics_page_is_up_with_nothing_configured(
    app_server: tuple[MetricsApp, str], clock: ManualClock
) -> None:
    state, url = app_server
    state.body = "# TYPE up gauge\nup 1\n"
    collector = PrometheusCollector(PrometheusTarget(name="site", url=Secret(url)), clock)

    got = values(await collector.collect())
    await collector.close()

    assert got["prometheus.up"] == 1.0


async def test_scrape_exceeding_timeout_is_down(
    app_server: tuple[MetricsApp, str], clock: ManualClock
) -> None:
    state, url = app_server
    state.hang = True
    collector = collector_for(url, clock, timeout=0.2)

    got = values(await asyncio.wait_for(collector.collect(), 5))
    await collector.close()

    assert got == {"prometheus.up": 0.0}
    assert state.requests == 1


async def test_warns_once_when_a_configured_metric_is_not_exposed(
    app_server: tuple[MetricsApp, str], clock: ManualClock
) -> None:
    state, url = app_server
    state.body = "# TYPE up gauge\nup 1\n"
    collector = collector_for(url, clock)

    with capture_logs() as logs:
        await collector.collect()
        await collector.collect()
    await collector.close()

    missing = [e["metric"] for e in logs if e["event"] == "prometheus_metric_missing"]
    assert sorted(missing) == [
        "http_request_duration_seconds",
        "http_requests_total",
        "jobs_processed_total",
    ]


# --- configuration --------------------------------------------------------------------------


def test_builds_targets_with_per_target_options_and_masks_credentials(
    clock: ManualClock,
) -> None:
    env = Env(
        {
            "OPSWATCH_PROMETHEUS_TARGETS": (
                "api=http://user:hunter2@127.0.0.1:8000/metrics,worker=http://10.0.0.5:9100/metrics"
            ),
            "OPSWATCH_PROMETHEUS_API_ERROR_COUNTER": "http_requests_total",
            "OPSWATCH_PROMETHEUS_API_ERROR_LABEL": "code",
            "OPSWATCH_PROMETHEUS_API_LATENCY_HISTOGRAM": "http_request_duration_seconds",
            "OPSWATCH_PROMETHEUS_API_RATES": "http_requests_total, jobs_total",
            "OPSWATCH_PROMETHEUS_API_TIMEOUT": "2s",
        }
    )

    collectors = PrometheusCollector.from_env(env, clock)

    assert [c.check for c in collectors] == ["prometheus:api", "prometheus:worker"]
    assert collectors[0].describe() == {
        "url": "http://user:***@127.0.0.1:8000/metrics",
        "timeout": "2s",
        "error_counter": "http_requests_total",
        "error_label": "code",
        "latency_histogram": "http_request_duration_seconds",
        "rates": "http_requests_total,jobs_total",
    }
    assert collectors[1].describe() == {"url": "http://10.0.0.5:9100/metrics", "timeout": "5s"}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("ERROR_COUNTER", "http requests"),
        ("ERROR_LABEL", "status-code"),
        ("LATENCY_HISTOGRAM", "1st_histogram"),
        ("RATES", "a_total,b-total"),
        ("RATES", "a_total,a_total"),
        ("TIMEOUT", "fast"),
    ],
)
def test_rejects_malformed_options_naming_the_variable(
    option: str, value: str, clock: ManualClock
) -> None:
    variable = f"OPSWATCH_PROMETHEUS_MY_API_{option}"
    env = Env(
        {"OPSWATCH_PROMETHEUS_TARGETS": "my-api=http://127.0.0.1:8000/metrics", variable: value}
    )

    with pytest.raises(ConfigError) as excinfo:
        PrometheusCollector.from_env(env, clock)

    assert excinfo.value.variable == variable


def test_rejects_a_target_that_is_not_an_http_url(clock: ManualClock) -> None:
    env = Env({"OPSWATCH_PROMETHEUS_TARGETS": "api=127.0.0.1:8000/metrics"})

    with pytest.raises(ConfigError) as excinfo:
        PrometheusCollector.from_env(env, clock)

    assert excinfo.value.variable == "OPSWATCH_PROMETHEUS_TARGETS"
