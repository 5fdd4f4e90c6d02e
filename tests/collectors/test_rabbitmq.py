"""RabbitMQ collector: parsers on captured management API payloads, then a real broker."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from structlog.testing import capture_logs

from opswatch.collectors.rabbitmq import (
    RabbitmqCollector,
    basic_auth,
    build_samples,
    parse_nodes,
    parse_queues,
    split_credentials,
)
from opswatch.config import ConfigError, Env
from opswatch.model import Sample
from tests.conftest import ManualClock

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

# Captured once from the local RabbitMQ 3.10.8 while a script published into and fetched from
# "orders" (GET /api/queues?columns=..., the columns the collector asks for).
QUEUES_PAYLOAD = json.loads(
    '[{"consumers":0,"messages_ready":0,"messages_unacknowledged":0,"name":"idle-empty",'
    '"vhost":"/"},{"consumers":0,"message_stats":{"deliver_get_details":{"rate":8.2},'
    '"publish_details":{"rate":8.2}},"messages_ready":5,"messages_unacknowledged":0,'
    '"name":"orders","vhost":"/"}]'
)
# Same broker, GET /api/nodes?columns=...
NODES_PAYLOAD = json.loads(
    '[{"fd_total":1024,"sockets_total":832,"mem_limit":10110425497,"mem_alarm":false,'
    '"disk_free_alarm":false,"name":"rabbit@localhost","mem_used":138522624,"fd_used":37,'
    '"sockets_used":0}]'
)


def series(samples: Sequence[Sample], metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.metric == metric}


def queue_value(samples: Sequence[Sample], metric: str, queue: str) -> float | None:
    found = [s.value for s in samples if s.metric == metric and s.labels.get("queue") == queue]
    return found[0] if found else None


def make_collector(url: str, clock: ManualClock, include: str = "") -> RabbitmqCollector:
    env = Env(
        {"OPSWATCH_RABBITMQ_TARGETS": f"broker={url}", "OPSWATCH_RABBITMQ_QUEUES_INCLUDE": include}
    )
    [collector] = RabbitmqCollector.from_env(env, clock)
    return collector


# --- pure: configuration and parsers -------------------------------------------------------


def test_from_env_reads_targets_and_the_queue_filter(clock: ManualClock) -> None:
    env = Env(
        {
            "OPSWATCH_RABBITMQ_TARGETS": "broker=http://watch:Pa55w0rd@mq:15672/rabbit/",
            "OPSWATCH_RABBITMQ_QUEUES_INCLUDE": "^orders",
        }
    )
    [collector] = RabbitmqCollector.from_env(env, clock)
    assert collector.describe() == {
        "check": "rabbitmq:broker",
        "target": "broker",
        "url": "http://watch:***@mq:15672/rabbit/",
        "timeout": "5s",
        "queues_include": "^orders",
    }


def test_from_env_names_the_variable_of_a_bad_regex(clock: ManualClock) -> None:
    env = Env(
        {
            "OPSWATCH_RABBITMQ_TARGETS": "broker=http://mq:15672",
            "OPSWATCH_RABBITMQ_QUEUES_INCLUDE": "orders(",
        }
    )
    with pytest.raises(ConfigError) as raised:
        RabbitmqCollector.from_env(env, clock)
    assert raised.value.variable == "OPSWATCH_RABBITMQ_QUEUES_INCLUDE"


def test_from_env_names_the_variable_when_no_target_is_set(clock: ManualClock) -> None:
    with pytest.raises(ConfigError) as raised:
        RabbitmqCollector.from_env(Env({}), clock)
    assert raised.value.variable == "OPSWATCH_RABBITMQ_TARGETS"


def test_credentials_are_taken_out_of_the_url() -> None:
    assert split_credentials("https://us%40er:p%3Ass@mq.example:443/api-proxy/") == (
        "https://mq.example:443/api-proxy",
        "us@er",
        "p:ss",
    )
    assert split_credentials("http://[::1]:15672") == ("http://[::1]:15672", None, "")


def test_basic_auth_header_encodes_user_and_password() -> None:
    assert basic_auth("guest", "guest") == "Basic Z3Vlc3Q6Z3Vlc3Q="


def test_parses_depths_consumers_and_rates_of_captured_queues() -> None:
    orders, idle = sorted(parse_queues(QUEUES_PAYLOAD), key=lambda q: q.name, reverse=True)
    assert (orders.vhost, orders.name, orders.messages_ready, orders.consumers) == (
        "/",
        "orders",
        5,
        0,
    )
    assert (orders.publish_per_s, orders.deliver_per_s) == (8.2, 8.2)
    # a queue that never saw traffic has no message_stats: its rates are 0
    assert (idle.name, idle.publish_per_s, idle.deliver_per_s) == ("idle-empty", 0.0, 0.0)


def test_the_include_regex_limits_the_queues() -> None:
    assert [q.name for q in parse_queues(QUEUES_PAYLOAD, re.compile("^ord"))] == ["orders"]
    assert parse_queues(QUEUES_PAYLOAD, re.compile("^nothing$")) == []


def test_parses_alarms_and_resource_use_of_captured_nodes() -> None:
    [node] = parse_nodes(NODES_PAYLOAD)
    assert (node.name, node.running, node.mem_alarm, node.disk_free_alarm) == (
        "rabbit@localhost",
        True,
        False,
        False,
    )
    assert node.mem_used_percent == pytest.approx(100 * 138522624 / 10110425497)
    assert node.fd_used_percent == pytest.approx(100 * 37 / 1024)
    assert node.sockets_used_percent == 0.0


def test_a_stopped_cluster_node_reports_only_that_it_is_down() -> None:
    samples = build_samples(
        "rabbitmq:b", "b", T0, [], parse_nodes([{"name": "rabbit@two", "running": False}])
    )
    assert [(s.metric, s.value) for s in samples] == [
        ("rabbitmq.up", 1.0),
        ("rabbitmq.node_running", 0.0),
    ]


def test_malformed_payloads_give_no_samples_rather_than_errors() -> None:
    assert parse_queues({"error": "not_authorised"}) == []
    assert parse_queues([None, {"vhost": "/"}, "x"]) == []
    assert parse_nodes("nonsense") == []


def test_builds_queue_and_node_samples_with_their_labels() -> None:
    samples = build_samples(
        "rabbitmq:b", "b", T0, parse_queues(QUEUES_PAYLOAD), parse_nodes(NODES_PAYLOAD)
    )
    orders = (("queue", "orders"), ("target", "b"), ("vhost", "/"))
    assert series(samples, "rabbitmq.messages_ready")[orders] == 5
    assert series(samples, "rabbitmq.messages_unacked")[orders] == 0
    assert series(samples, "rabbitmq.publish_per_s")[orders] == 8.2
    assert series(samples, "rabbitmq.messages_ready_without_consumers")[orders] == 5
    node = (("node", "rabbit@localhost"), ("target", "b"))
    assert series(samples, "rabbitmq.mem_alarm") == {node: 0.0}
    assert series(samples, "rabbitmq.disk_free_alarm") == {node: 0.0}
    assert series(samples, "rabbitmq.up") == {(("target", "b"),): 1.0}


def test_messages_without_consumers_is_zero_when_a_consumer_is_attached() -> None:
    payload = [{**QUEUES_PAYLOAD[1], "consumers": 2}]
    samples = build_samples("rabbitmq:b", "b", T0, parse_queues(payload), [])
    assert [s.value for s in samples if s.metric.endswith("_without_consumers")] == [0.0]


# --- against a real broker ------------------------------------------------------------------


@pytest.fixture
async def management(rabbitmq_management: str) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    base, user, password = split_credentials(rabbitmq_management)
    headers = {"Authorization": basic_auth(user or "guest", password)}
    async with aiohttp.ClientSession(headers=headers, raise_for_status=True) as session:
        yield session, base


async def test_sees_published_messages_waiting_in_a_queue_without_consumers(
    management: tuple[aiohttp.ClientSession, str], rabbitmq_management: str, clock: ManualClock
) -> None:
    session, base = management
    queue = f"opswatch-test-{uuid.uuid4().hex[:8]}"
    queue_url = f"{base}/api/queues/%2F/{quote(queue, safe='')}"
    published = 3
    collector = make_collector(rabbitmq_management, clock, include=f"^{re.escape(queue)}$")
    async with session.put(queue_url, json={"durable": False, "auto_delete": False}):
        pass
    try:
        for number in range(published):
            async with session.post(
                f"{base}/api/exchanges/%2F/amq.default/publish",
                json={
                    "properties": {},
                    "routing_key": queue,
                    "payload": f"message {number}",
                    "payload_encoding": "string",
                },
            ) as response:
                body: Any = await response.json()
                assert body == {"routed": True}
        # the broker refreshes queue statistics every ~5 s: wait for it, under a deadline
        async with asyncio.timeout(30):
            while True:
                samples = await collector.collect()
                ready = queue_value(samples, "rabbitmq.messages_ready", queue)
                if ready is not None and ready >= published:
                    break
                await asyncio.sleep(0.5)
    finally:
        await collector.close()
        async with session.delete(queue_url):
            pass
    assert queue_value(samples, "rabbitmq.consumers", queue) == 0
    assert (
        queue_value(samples, "rabbitmq.messages_ready_without_consumers", queue) or 0
    ) >= published
    assert queue_value(samples, "rabbitmq.messages_unacked", queue) == 0
    assert {s.labels.get("queue") for s in samples if "queue" in s.labels} == {queue}
    assert [s.value for s in samples if s.metric == "rabbitmq.up"] == [1.0]
    assert [s.value for s in samples if s.metric == "rabbitmq.mem_alarm"] == [0.0]


async def test_wrong_password_gives_up_zero_and_stays_out_of_logs(
    rabbitmq_management: str, clock: ManualClock
) -> None:
    base, user, _ = split_credentials(rabbitmq_management)
    password = "s3cret-Pa55word"
    scheme, rest = base.split("://", 1)
    collector = make_collector(f"{scheme}://{user or 'guest'}:{password}@{rest}", clock)
    try:
        with capture_logs() as logs:
            samples = await collector.collect()
    finally:
        await collector.close()
    assert [(s.metric, s.value) for s in samples] == [("rabbitmq.up", 0.0)]
    assert [(e["event"], e["error"], e["code"]) for e in logs] == [
        ("collector_target_down", "ClientResponseError", "401")
    ]
    assert password not in repr(logs)
    assert password not in repr(collector.describe())
