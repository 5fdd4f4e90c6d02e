"""``GET /metrics``: scraped from a running daemon and read back with Prometheus' own parser."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PromSample

from opswatch.api.families import label_name, sample_families
from opswatch.api.metrics import CONTENT_TYPE, MetricsExporter
from opswatch.api.services import MetricsView
from opswatch.collectors.base import Collector
from opswatch.config import Env
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import Clock, Sample
from tests.collectors.conftest import rabbitmq_management  # noqa: F401 - a fixture
from tests.conftest import REQUIRE_SERVICES, ManualClock
from tests.peers import Receiver, Reply

WAIT_S = 10.0


def parse(text: str) -> dict[str, list[PromSample]]:
    """Family name -> its samples, through prometheus_client's parser (which rejects
    malformed exposition text)."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: dict[str, list[PromSample]], sample: str, **labels: str) -> float:
    family = sample.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
    family = family.removesuffix("_sum")
    matches = [
        s.value
        for s in families[family]
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) == 1, (sample, labels, families[family])
    return matches[0]


@pytest.fixture
async def target() -> AsyncIterator[Receiver]:
    service = Receiver()
    await service.start()
    yield service
    await service.stop()


async def test_a_scrape_of_the_running_daemon_reports_its_health_checks_and_samples(
    target: Receiver, tmp_path: Path
) -> None:
    config = load_config(
        {
            "OPSWATCH_CHECKS": "host,http",
            "OPSWATCH_HTTP_TARGETS": f"api={target.url}/health",
            "OPSWATCH_WEBHOOK_URL": f"{target.url}/hook",
            "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
            "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        }
    )
    app = App(config)
    await app.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await app.checks.wait_for_runs("host")
            await app.checks.wait_for_runs("http:api")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{app.api.port}/metrics") as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE
            assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
            families = parse(await response.text())
    finally:
        await app.stop()

    assert value(families, "opswatch_daemon_healthy") == 1
    assert value(families, "opswatch_check_runs_total", check="http:api") == 1
    assert value(families, "opswatch_check_errors_total", check="http:api") == 0
    assert value(families, "opswatch_check_duration_seconds_count", check="host") == 1
    assert value(families, "opswatch_check_duration_seconds_bucket", check="host", le="+Inf") == 1
    assert value(families, "opswatch_check_up", check="http:api") == 1
    assert value(families, "opswatch_http_up", check="http:api", target="api") == 1
    assert 0 <= value(families, "opswatch_host_cpu_percent", check="host") <= 100
    assert value(families, "opswatch_alerts", state="firing", severity="critical") == 0
    assert value(families, "opswatch_outbox_messages", state="pending") == 0
    (channel,) = families["opswatch_notify_channel_failing"]
    assert channel.labels["channel"].startswith("webhook")
    assert channel.value == 0
    assert value(families, "process_resident_memory_bytes") > 0
    # every label set of the host's disks is a valid, distinct series
    disks = families["opswatch_host_disk_used_percent"]
    assert len({tuple(sorted(s.labels.items())) for s in disks}) == len(disks) >= 1


class Broken:
    """A collector whose library raised."""

    name: ClassVar[str] = "broken"

    def __init__(self, check: str) -> None:
        self.check = check

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[Collector]:
        return []

    async def collect(self) -> list[Sample]:
        raise RuntimeError("socket exploded")

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {}


async def test_a_failing_check_counts_errors_and_its_alert_shows_by_state_and_severity(
    tmp_path: Path,
) -> None:
    base = load_config({"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3")})
    # a tcp check whose code raised: the daemon turns it into tcp.up = 0, and tcp_down fires
    app = App(dataclasses.replace(base, collectors=(Broken("tcp:db"),)))
    await app.open()
    try:
        for _ in range(3):
            await app.cycle.run("tcp:db")
        families = parse((await app.metrics.render()).decode())
    finally:
        await app.stop()
    assert value(families, "opswatch_check_runs_total", check="tcp:db") == 3
    assert value(families, "opswatch_check_errors_total", check="tcp:db") == 3
    assert value(families, "opswatch_check_up", check="tcp:db") == 0
    assert value(families, "opswatch_tcp_up", check="tcp:db", target="db") == 0
    assert value(families, "opswatch_alerts", state="firing", severity="critical") == 1
    assert value(families, "opswatch_alerts", state="firing", severity="warning") == 0


def test_label_names_are_sanitised_and_never_collide() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    labels = {
        "check": "mine",
        "__name__": "x",
        "1st": "a",
        "queue-name": "b",
        "queue.name": "c",
        "vhost": "/",
    }
    samples = (
        Sample("rabbitmq:main", "rabbitmq.queue-depth", 1.0, at, labels),
        Sample("rabbitmq:main", "rabbitmq.queue-depth", 2.0, at, labels),  # same series: last wins
    )
    registry = CollectorRegistry()
    registry.register(_Static(sample_families(samples)))
    registry_text = generate_latest(registry).decode()
    (sample,) = parse(registry_text)["opswatch_rabbitmq_queue_depth"]
    assert sample.value == 2.0
    assert sample.labels == {
        "check": "rabbitmq:main",
        "exported_check": "mine",
        "label__name__": "x",
        "_1st": "a",
        "queue_name": "b",
        "queue_name_2": "c",
        "vhost": "/",
    }
    assert label_name("ok_name") == "ok_name"


class _Static:
    """A custom collector that yields fixed families."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


async def test_recovery_outcomes_of_this_process_are_exported(tmp_path: Path) -> None:
    app = App(load_config({"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3")}))
    await app.open()
    try:
        app.recovery.outcomes.update({("systemd", "recovered"): 2, ("files", "failed"): 1})
        exporter = MetricsExporter(MetricsView(app.services), process=False)
        families = parse((await exporter.render()).decode())
    finally:
        await app.stop()
    assert value(families, "opswatch_recovery_total", action="systemd", outcome="recovered") == 2
    assert value(families, "opswatch_recovery_total", action="files", outcome="failed") == 1
    assert "process_resident_memory_bytes" not in families


def test_the_daemon_loads_prometheus_client_only_when_scraped() -> None:
    probe = (
        "import sys, opswatch.daemon.app, opswatch.daemon.cli; "
        "print('prometheus_client' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


class Scripted:
    """A collector answering each run with the next batch of ``(metric, labels, value)``."""

    name: ClassVar[str] = "scripted"

    def __init__(self, check: str, clock: Clock, *runs: list[tuple[str, dict[str, str], float]]):
        self.check = check
        self._clock = clock
        self._runs = deque(runs)

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[Collector]:
        return []

    async def collect(self) -> list[Sample]:
        at = self._clock()
        return [Sample(self.check, m, v, at, labels) for m, labels, v in self._runs.popleft()]

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {}


async def test_a_family_sampled_every_few_runs_stays_exposed_between_its_runs(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = load_config(
        {
            "OPSWATCH_CHECKS": "host",
            "OPSWATCH_HOST_TCP_STATES_INTERVAL": "5m",
            "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        },
        clock,
    )
    app = App(config, clock=clock)
    await app.open()
    try:
        await app.cycle.run("host")  # samples the TCP states
        clock.advance(30)
        await app.cycle.run("host")  # does not: they are 30 s old, not 5 min
        assert "host.tcp_connections" not in {
            s.metric for s in app.checks.statuses()["host"].samples
        }
        families = parse((await app.metrics.render()).decode())
    finally:
        await app.stop()
    states = {s.labels["state"] for s in families["opswatch_host_tcp_connections"]}
    assert {"established", "listen", "time_wait"} <= states


async def test_a_series_stays_until_sampled_again_and_goes_with_its_target(
    tmp_path: Path, clock: ManualClock
) -> None:
    up = ("tcp.up", {"target": "db"}, 1.0)
    disk = "tcp.queue_depth"
    scripted = Scripted(
        "tcp:db",
        clock,
        [up, (disk, {"queue": "a"}, 1.0), (disk, {"queue": "b"}, 2.0), ("tcp.slow", {}, 7.0)],
        [up, (disk, {"queue": "a"}, 3.0)],  # queue b deleted; tcp.slow not sampled this run
        [("tcp.up", {"target": "db"}, 0.0)],  # the target went away
    )
    base = load_config({"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3")}, clock)
    app = App(dataclasses.replace(base, collectors=(scripted,)), clock=clock)
    await app.open()
    try:
        renders = []
        for _ in range(3):
            await app.cycle.run("tcp:db")
            clock.advance(30)
            renders.append(parse((await app.metrics.render()).decode()))
    finally:
        await app.stop()
    first, second, third = renders
    assert len(first["opswatch_tcp_queue_depth"]) == 2
    (queue,) = second["opswatch_tcp_queue_depth"]
    assert (queue.labels["queue"], queue.value) == ("a", 3.0)
    assert value(second, "opswatch_tcp_slow", check="tcp:db") == 7.0  # its last value
    assert "opswatch_tcp_queue_depth" not in third
    assert "opswatch_tcp_slow" not in third
    assert value(third, "opswatch_tcp_up", check="tcp:db", target="db") == 0


def _promtool() -> str:
    """promtool (Debian's ``prometheus`` package, installed by .ci/run)."""
    executable = shutil.which("promtool")
    if executable is None:
        reason = "promtool is not installed (apt-get install prometheus)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason} and OPSWATCH_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(reason)
    return executable


APP_METRICS = """# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{{status="200"}} {count}
"""


@pytest.fixture
async def application() -> AsyncIterator[Receiver]:
    """An application's /metrics page (apart from ``target``, which the http check reads)."""
    service = Receiver()
    await service.start()
    yield service
    await service.stop()


async def test_metrics_pass_promtool_after_several_cycles_with_every_collector(
    *,
    target: Receiver,
    application: Receiver,
    tmp_path: Path,
    clock: ManualClock,
    postgres_dsn: str,
    redis_url: str,
    rabbitmq_management: str,  # noqa: F811 - the fixture imported above
) -> None:
    promtool = _promtool()
    queue = f"opswatch-test-{uuid.uuid4().hex[:8]}"
    queue_url = f"{rabbitmq_management}/api/queues/%2F/{queue}"
    (tmp_path / "backup.dump").write_text("x")
    cycles = 3
    application.script(
        *(
            Reply(
                body=APP_METRICS.format(count=10 * n),
                headers={"Content-Type": "text/plain; version=0.0.4"},
            )
            for n in range(cycles)
        )
    )
    environ = {
        "OPSWATCH_HTTP_TARGETS": f"api={target.url}/health",
        "OPSWATCH_POSTGRES_TARGETS": f"main={postgres_dsn}",
        "OPSWATCH_REDIS_TARGETS": f"cache={redis_url}",
        "OPSWATCH_RABBITMQ_TARGETS": f"mq={rabbitmq_management}",
        "OPSWATCH_PROCESS_TARGETS": f"me=pidfile:{tmp_path / 'me.pid'}",
        "OPSWATCH_TCP_TARGETS": "db=127.0.0.1:5432",
        "OPSWATCH_COMMAND_TARGETS": "true=/bin/true",
        "OPSWATCH_FILE_TARGETS": f"backups={tmp_path}/*.dump",
        "OPSWATCH_PROMETHEUS_TARGETS": f"app={application.url}/metrics",
        "OPSWATCH_PROMETHEUS_APP_RATES": "http_requests_total",
        "OPSWATCH_HOST_TCP_STATES_INTERVAL": "0",
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
    }
    (tmp_path / "me.pid").write_text(f"{os.getpid()}\n")
    config = load_config(environ, clock)
    kinds = {c.check.partition(":")[0] for c in config.collectors}
    assert kinds == {
        "host", "http", "postgres", "redis", "rabbitmq", "process", "tcp", "command", "file",
        "prometheus", "capacity",
    }  # fmt: skip
    app = App(config, clock=clock)
    async with aiohttp.ClientSession() as http, http.put(queue_url, json={"durable": False}):
        pass
    await app.open()
    try:
        for _ in range(cycles):
            for collector in config.collectors:
                await app.cycle.run(collector.check)
            clock.advance(30)
        text = await app.metrics.render()
    finally:
        await app.stop()
        async with aiohttp.ClientSession() as http, http.delete(queue_url):
            pass
    families = parse(text.decode())
    for family in (
        "opswatch_host_net_errors_per_second",
        "opswatch_redis_ops_per_second",
        "opswatch_postgres_deadlocks_per_second",
        "opswatch_rabbitmq_publish_per_second",
        "opswatch_process_matches",
        "opswatch_file_matches",
        "opswatch_prometheus_rate",
    ):
        assert family in families, family
    assert value(families, "opswatch_process_restarts_total", check="process:me") == 0
    assert value(families, "opswatch_prometheus_up", check="prometheus:app", target="app") == 1
    lint = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(WAIT_S):
        output, _ = await lint.communicate(text)
    assert lint.returncode == 0, output.decode()
