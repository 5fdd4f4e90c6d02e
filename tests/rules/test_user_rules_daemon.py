"""User rules through the real daemon (App, its cycle, tracker and SQLite store): a RabbitMQ
queue on the local broker, a Prometheus-scraped counter and a Nagios plugin's perfdata."""

from __future__ import annotations

import asyncio
import re
import stat
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from opswatch.collectors.rabbitmq import basic_auth, split_credentials
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import Alert, Severity
from tests.collectors.conftest import rabbitmq_management
from tests.conftest import ManualClock
from tests.peers import Receiver, Reply

__all__ = ["rabbitmq_management"]  # the broker fixture, shared with the collector's tests


def firing(app: App, rule: str) -> list[Alert]:
    return [alert for alert in app.tracker.active() if alert.rule == rule]


async def test_a_queue_rule_fires_on_the_real_broker_with_its_labels(
    tmp_path: Path, clock: ManualClock, rabbitmq_management: str
) -> None:
    base, user, password = split_credentials(rabbitmq_management)
    queue = f"orders.opswatch-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": basic_auth(user or "guest", password)}
    config = load_config(
        {
            "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
            "OPSWATCH_CHECKS": "rabbitmq",
            "OPSWATCH_RABBITMQ_TARGETS": f"mq={rabbitmq_management}",
            "OPSWATCH_RABBITMQ_QUEUES_INCLUDE": f"^{re.escape(queue)}$",
            "OPSWATCH_RULE_ORDERS_DEEP": (
                'rabbitmq.messages_ready{queue=~"orders\\\\..*"} > 2 labels team=payments '
                'summary="{queue} holds {value:.0f} messages"'
            ),
        },
        clock,
    )
    assert config.rules_matching_nothing == []
    assert not config.unknown_variables
    app = App(config, clock=clock)
    await app.open()
    queue_url = f"{base}/api/queues/%2F/{quote(queue, safe='')}"
    async with aiohttp.ClientSession(headers=headers, raise_for_status=True) as session:
        async with session.put(queue_url, json={"durable": False, "auto_delete": False}):
            pass
        try:
            for number in range(3):
                async with session.post(
                    f"{base}/api/exchanges/%2F/amq.default/publish",
                    json={
                        "properties": {},
                        "routing_key": queue,
                        "payload": f"order {number}",
                        "payload_encoding": "string",
                    },
                ) as response:
                    body: Any = await response.json()
                    assert body == {"routed": True}
            # the broker refreshes queue statistics every ~5 s: run the check until it shows
            async with asyncio.timeout(30):
                while not firing(app, "orders_deep"):
                    await app.cycle.run("rabbitmq:mq")
                    clock.advance(30)
                    await asyncio.sleep(0.5)
        finally:
            await app.stop()
            async with session.delete(queue_url):
                pass
    (alert,) = firing(app, "orders_deep")
    assert alert.labels["team"] == "payments"
    assert alert.labels["queue"] == queue
    assert alert.summary == f"{queue} holds 3 messages"
    assert alert.severity == Severity.WARNING


def metrics_page(failed: int) -> Reply:
    return Reply(
        body=(f'# TYPE jobs_failed_total counter\njobs_failed_total{{queue="mail"}} {failed}\n')
    )


async def test_a_rule_on_a_scraped_counter_fires_and_resolves(
    tmp_path: Path, clock: ManualClock
) -> None:
    app_metrics = Receiver()
    await app_metrics.start()
    app_metrics.script(metrics_page(10), metrics_page(70), metrics_page(70))
    config = load_config(
        {
            "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
            "OPSWATCH_CHECKS": "prometheus",
            "OPSWATCH_PROMETHEUS_TARGETS": f"jobs={app_metrics.url}/metrics",
            "OPSWATCH_PROMETHEUS_JOBS_RATES": "jobs_failed_total",
            "OPSWATCH_RULE_JOBS_FAILING": 'prometheus.rate{counter="jobs_failed_total"} > 1 '
            "severity=critical labels team=jobs",
        },
        clock,
    )
    app = App(config, clock=clock)
    await app.open()
    try:
        await app.cycle.run("prometheus:jobs")  # the first scrape: no rate yet
        assert firing(app, "jobs_failing") == []
        clock.advance(30)
        await app.cycle.run("prometheus:jobs")  # 60 failures in 30 s: 2/s
        (alert,) = firing(app, "jobs_failing")
        assert (alert.severity, alert.value) == (Severity.CRITICAL, 2.0)
        assert alert.labels == {"target": "jobs", "counter": "jobs_failed_total", "team": "jobs"}
        clock.advance(30)
        await app.cycle.run("prometheus:jobs")  # no new failures
        assert firing(app, "jobs_failing") == []
    finally:
        await app.stop()
        await app_metrics.stop()


async def test_a_rule_on_a_plugins_perfdata_fires(tmp_path: Path, clock: ManualClock) -> None:
    plugin = tmp_path / "check_queue"
    plugin.write_text("#!/bin/sh\necho 'QUEUE OK - 42 waiting | waiting=42;100;200 age=3s'\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = load_config(
        {
            "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
            "OPSWATCH_CHECKS": "command",
            "OPSWATCH_COMMAND_TARGETS": f"mailq={plugin}",
            "OPSWATCH_RULE_MAILQ_WAITING": 'command.perf{label="waiting"} > 40',
        },
        clock,
    )
    app = App(config, clock=clock)
    await app.open()
    try:
        await app.cycle.run("command:mailq")
    finally:
        await app.stop()
    (alert,) = firing(app, "mailq_waiting")
    assert alert.value == 42
    assert alert.labels["label"] == "waiting"
    assert alert.summary == 'command.perf{label="waiting"} is 42 (threshold 40)'
