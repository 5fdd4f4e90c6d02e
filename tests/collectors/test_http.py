"""The http collector against real local aiohttp servers (plain and TLS)."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from opswatch.collectors.http import (
    HttpCollector,
    certificate_not_after,
    describe_error,
    parse_status_list,
)
from opswatch.config import ConfigError, Env
from opswatch.model import Sample
from tests.conftest import ManualClock, free_port

PASSWORD = "s3cret-pw"
TOKEN = "t0ken-value"

Factory = Callable[..., dict[str, HttpCollector]]


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path


def by_metric(samples: list[Sample]) -> dict[str, Sample]:
    metrics = [s.metric for s in samples]
    assert len(metrics) == len(set(metrics)), metrics
    return {s.metric: s for s in samples}


def make_cert(directory: Path, days: int) -> Cert:
    cert, key = directory / f"cert-{days}.pem", directory / f"key-{days}.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days)),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return Cert(cert, key)


@pytest.fixture(scope="session")
def ten_day_cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return make_cert(tmp_path_factory.mktemp("tls"), 10)


def make_app(never: asyncio.Event) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="service healthy")

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def no_content(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def slow(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(text="too late")

    async def private(request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        return web.Response(text="secret healthy")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/fail", fail)
    app.router.add_get("/no-content", no_content)
    app.router.add_get("/slow", slow)
    app.router.add_get("/private", private)
    app.router.add_get("/moved", moved)
    return app


async def serve(ssl_context: ssl.SSLContext | None) -> AsyncIterator[str]:
    never = asyncio.Event()
    runner = web.AppRunner(make_app(never))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    never.set()  # let a pending /slow handler finish so cleanup does not wait for it
    await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async for base in serve(None):
        yield base


@pytest.fixture
async def tls_server(ten_day_cert: Cert) -> AsyncIterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ten_day_cert.cert, ten_day_cert.key)
    async for base in serve(context):
        yield base


@pytest.fixture
async def make(clock: ManualClock) -> AsyncIterator[Factory]:
    """Build collectors from an environment; every one is closed after the test."""
    opened: list[HttpCollector] = []

    def factory(
        clock_: Callable[[], datetime] | None = None, **environ: str
    ) -> dict[str, HttpCollector]:
        collectors = HttpCollector.from_env(Env(environ), clock_ or clock)
        opened.extend(collectors)
        return {c.settings.target.name: c for c in collectors}

    yield factory
    for collector in opened:
        await collector.close()


async def test_healthy_target_is_up_with_status_latency_and_masked_labels(
    server: str, make: Factory, clock: ManualClock
) -> None:
    api = make(OPSWATCH_HTTP_TARGETS=f"api={server}/ok")["api"]

    samples = await api.collect()
    metrics = by_metric(samples)

    assert api.check == "http:api"
    assert set(metrics) == {"http.up", "http.status_code", "http.latency_seconds"}
    assert metrics["http.up"].value == 1.0
    assert metrics["http.status_code"].value == 200.0
    assert 0.0 < metrics["http.latency_seconds"].value < 5.0
    assert all(s.labels == {"target": "api", "url": f"{server}/ok"} for s in samples)
    assert all(s.at == clock.now and s.check == "http:api" for s in samples)


async def test_a_second_collect_reuses_the_collector_and_still_works(
    server: str, make: Factory
) -> None:
    api = make(OPSWATCH_HTTP_TARGETS=f"api={server}/ok")["api"]
    await api.collect()

    assert by_metric(await api.collect())["http.up"].value == 1.0


async def test_server_error_is_down_but_still_reports_status_and_latency(
    server: str, make: Factory
) -> None:
    api = make(OPSWATCH_HTTP_TARGETS=f"api={server}/fail")["api"]

    metrics = by_metric(await api.collect())

    assert metrics["http.up"].value == 0.0
    assert metrics["http.status_code"].value == 500.0
    assert "http.latency_seconds" in metrics


async def test_redirect_is_followed_and_the_final_status_counts(server: str, make: Factory) -> None:
    api = make(OPSWATCH_HTTP_TARGETS=f"api={server}/moved", OPSWATCH_HTTP_EXPECT_STATUS="200")[
        "api"
    ]

    metrics = by_metric(await api.collect())

    assert metrics["http.up"].value == 1.0
    assert metrics["http.status_code"].value == 200.0


async def test_expected_status_lists_global_and_per_target(server: str, make: Factory) -> None:
    collectors = make(
        OPSWATCH_HTTP_TARGETS=(
            f"only-200={server}/no-content,both={server}/no-content,err={server}/fail"
        ),
        OPSWATCH_HTTP_EXPECT_STATUS="200",
        OPSWATCH_HTTP_BOTH_EXPECT_STATUS="200,204",
        OPSWATCH_HTTP_ERR_EXPECT_STATUS="5xx",
    )

    up = {name: by_metric(await c.collect())["http.up"].value for name, c in collectors.items()}

    assert up == {"only-200": 0.0, "both": 1.0, "err": 1.0}


async def test_body_contains_decides_up_and_reports_body_matched(
    server: str, make: Factory
) -> None:
    collectors = make(
        OPSWATCH_HTTP_TARGETS=f"match={server}/ok,miss={server}/ok,my-api={server}/ok",
        OPSWATCH_HTTP_MATCH_BODY_CONTAINS="healthy",
        OPSWATCH_HTTP_MISS_BODY_CONTAINS="degraded",
        OPSWATCH_HTTP_MY_API_BODY_CONTAINS="service",
    )

    match = by_metric(await collectors["match"].collect())
    miss = by_metric(await collectors["miss"].collect())
    dashed = by_metric(await collectors["my-api"].collect())

    assert (match["http.up"].value, match["http.body_matched"].value) == (1.0, 1.0)
    assert (miss["http.up"].value, miss["http.body_matched"].value) == (0.0, 0.0)
    assert miss["http.status_code"].value == 200.0
    assert dashed["http.body_matched"].value == 1.0


async def test_unresolvable_host_gives_up_zero_without_raising(make: Factory) -> None:
    api = make(OPSWATCH_HTTP_TARGETS="api=http://no-such-host.invalid/health")["api"]

    samples = await api.collect()

    assert [(s.metric, s.value) for s in samples] == [("http.up", 0.0)]


async def test_slow_target_times_out_as_up_zero(server: str, make: Factory) -> None:
    api = make(OPSWATCH_HTTP_TARGETS=f"api={server}/slow", OPSWATCH_HTTP_TIMEOUT="200ms")["api"]

    with capture_logs() as logs:
        samples = await api.collect()

    assert [(s.metric, s.value) for s in samples] == [("http.up", 0.0)]
    assert logs[0]["error"] == "TimeoutError: no complete response within 0.2s"


async def test_tls_target_reports_certificate_days_left(tls_server: str, make: Factory) -> None:
    now = ManualClock(datetime.now(UTC))
    web_ = make(
        now, OPSWATCH_HTTP_TARGETS=f"web={tls_server}/ok", OPSWATCH_HTTP_WEB_TLS_VERIFY="false"
    )["web"]

    metrics = by_metric(await web_.collect())

    assert metrics["http.up"].value == 1.0
    assert 9.9 <= metrics["http.tls_days_left"].value <= 10.1
    assert web_.describe()["tls_verify"] == "false"


async def test_tls_target_with_an_untrusted_certificate_is_down_when_verifying(
    tls_server: str, make: Factory
) -> None:
    web_ = make(OPSWATCH_HTTP_TARGETS=f"web={tls_server}/ok")["web"]

    with capture_logs() as logs:
        samples = await web_.collect()

    assert [(s.metric, s.value) for s in samples] == [("http.up", 0.0)]
    assert "Certificate" in logs[0]["error"]


def test_certificate_expiry_is_read_from_der_in_both_time_encodings(tmp_path: Path) -> None:
    for days in (10, 40_000):  # UTCTime until 2049, GeneralizedTime after
        cert = make_cert(tmp_path, days)
        der = ssl.PEM_cert_to_DER_cert(cert.cert.read_text())
        end = subprocess.run(
            ["openssl", "x509", "-noout", "-enddate", "-in", str(cert.cert)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout  # notAfter=Nov 24 05:40:00 2136 GMT
        expected = datetime.strptime(end.strip(), "notAfter=%b %d %H:%M:%S %Y GMT")

        assert certificate_not_after(der) == expected.replace(tzinfo=UTC)

    with pytest.raises(ValueError, match=r"DER|certificate"):
        certificate_not_after(b"\x30\x03\x02\x01\x01")


async def test_password_and_token_never_reach_describe_labels_or_logs(
    server: str, make: Factory
) -> None:
    closed = free_port()
    collectors = make(
        OPSWATCH_HTTP_TARGETS=(
            f"api=http://user:{PASSWORD}@{server.removeprefix('http://')}/private?token={TOKEN},"
            f"down=http://user:{PASSWORD}@127.0.0.1:{closed}/x?token={TOKEN}"
        )
    )

    with capture_logs() as logs:
        api = await collectors["api"].collect()
        down = await collectors["down"].collect()
    samples = api + down
    described = [c.describe() for c in collectors.values()]

    assert by_metric(api)["http.up"].value == 1.0  # the credentials were sent as basic auth
    assert by_metric(down)["http.up"].value == 0.0
    assert logs  # the failure was logged, masked
    visible = repr(described) + repr([s.labels for s in samples]) + repr(logs)
    assert PASSWORD not in visible
    assert TOKEN not in visible
    assert (
        described[0]["url"] == f"http://user:***@{server.removeprefix('http://')}/private?token=***"
    )


def test_error_messages_lose_the_url_password_and_query() -> None:
    url = f"http://user:{PASSWORD}@example.org/x?token={TOKEN}"
    display = "http://user:***@example.org/x?token=***"
    exc = aiohttp.InvalidURL(url)

    message = describe_error(exc, url, display, 5.0)

    assert message == f"InvalidURL: {display}"
    assert PASSWORD not in describe_error(ValueError(f"pw={PASSWORD}"), url, display, 5.0)


def test_describe_shows_the_effective_settings(make: Factory) -> None:
    api = make(
        OPSWATCH_HTTP_TARGETS="api=http://127.0.0.1:8000/health",
        OPSWATCH_HTTP_API_TIMEOUT="1500ms",
        OPSWATCH_HTTP_API_BODY_CONTAINS="ok",
    )["api"]

    assert api.describe() == {
        "target": "api",
        "url": "http://127.0.0.1:8000/health",
        "timeout": "1.5s",
        "expect_status": "2xx,3xx",
        "tls_verify": "true",
        "body_contains": "ok",
    }


def test_status_lists_accept_codes_and_classes() -> None:
    assert parse_status_list("V", "200, 204") == {200, 204}
    assert parse_status_list("V", "2xx") == set(range(200, 300))


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, "OPSWATCH_HTTP_TARGETS"),
        ({"OPSWATCH_HTTP_TARGETS": "api"}, "OPSWATCH_HTTP_TARGETS"),
        ({"OPSWATCH_HTTP_TARGETS": "api=ftp://127.0.0.1/"}, "OPSWATCH_HTTP_TARGETS"),
        ({"OPSWATCH_HTTP_TARGETS": "a=http://h/,a=http://h/"}, "OPSWATCH_HTTP_TARGETS"),
        ({"OPSWATCH_HTTP_TARGETS": "my-api=http://h/,my_api=http://h/"}, "OPSWATCH_HTTP_TARGETS"),
        ({"OPSWATCH_HTTP_EXPECT_STATUS": "200,abc"}, "OPSWATCH_HTTP_EXPECT_STATUS"),
        ({"OPSWATCH_HTTP_EXPECT_STATUS": "600"}, "OPSWATCH_HTTP_EXPECT_STATUS"),
        ({"OPSWATCH_HTTP_API_EXPECT_STATUS": "99"}, "OPSWATCH_HTTP_API_EXPECT_STATUS"),
        ({"OPSWATCH_HTTP_API_EXPECT_STATUS": ","}, "OPSWATCH_HTTP_API_EXPECT_STATUS"),
        ({"OPSWATCH_HTTP_TIMEOUT": "fast"}, "OPSWATCH_HTTP_TIMEOUT"),
        ({"OPSWATCH_HTTP_API_TIMEOUT": "0s"}, "OPSWATCH_HTTP_API_TIMEOUT"),
        ({"OPSWATCH_HTTP_API_TLS_VERIFY": "maybe"}, "OPSWATCH_HTTP_API_TLS_VERIFY"),
    ],
)
def test_config_errors_name_the_exact_variable(
    clock: ManualClock, environ: dict[str, str], variable: str
) -> None:
    if "OPSWATCH_HTTP_TARGETS" not in environ and environ:
        environ = {"OPSWATCH_HTTP_TARGETS": "api=http://127.0.0.1/", **environ}

    with pytest.raises(ConfigError) as caught:
        HttpCollector.from_env(Env(environ), clock)

    assert caught.value.variable == variable
