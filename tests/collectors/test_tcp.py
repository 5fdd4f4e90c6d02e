"""The TCP collector against real local listeners."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from opswatch.collectors.tcp import TcpCollector, TcpTarget, parse_host_port
from opswatch.config import ConfigError, Env
from opswatch.model import Sample
from tests.conftest import ManualClock


def by_metric(samples: list[Sample]) -> dict[str, Sample]:
    return {s.metric: s for s in samples}


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    yield port
    server.close()
    await server.wait_closed()


@pytest.fixture
def full_backlog_port() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops new SYNs, so connects hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port: int = server.getsockname()[1]
    clients = []
    for _ in range(3):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))  # EINPROGRESS: the handshake stays pending
        clients.append(client)
    yield port
    for client in clients:
        client.close()
    server.close()


async def test_reports_up_and_connect_time_when_port_accepts(
    listener: int, clock: ManualClock
) -> None:
    collector = TcpCollector(TcpTarget("db", "127.0.0.1", listener, 2.0), clock)

    samples = by_metric(await collector.collect())

    assert samples["tcp.up"].value == 1.0
    assert samples["tcp.up"].labels == {"target": "db"}
    assert samples["tcp.up"].check == "tcp:db"
    assert samples["tcp.up"].at == clock.now
    assert 0.0 <= samples["tcp.connect_seconds"].value < 2.0


async def test_reports_down_when_connect_exceeds_timeout(
    full_backlog_port: int, clock: ManualClock
) -> None:
    collector = TcpCollector(TcpTarget("slow", "127.0.0.1", full_backlog_port, 0.2), clock)

    samples = await asyncio.wait_for(collector.collect(), 2)

    assert by_metric(samples)["tcp.up"].value == 0.0


async def test_reports_down_when_host_does_not_resolve(clock: ManualClock) -> None:
    collector = TcpCollector(TcpTarget("x", "no-such-host.invalid", 80, 2.0), clock)

    samples = by_metric(await collector.collect())

    assert samples["tcp.up"].value == 0.0


def test_builds_one_collector_per_target_with_per_target_timeout(clock: ManualClock) -> None:
    env = Env(
        {
            "OPSWATCH_TCP_TARGETS": "db=127.0.0.1:5432, my-cache=[::1]:6379,web=example.com:443",
            "OPSWATCH_TCP_MY_CACHE_TIMEOUT": "500ms",
        }
    )

    collectors = TcpCollector.from_env(env, clock)

    assert [c.check for c in collectors] == ["tcp:db", "tcp:my-cache", "tcp:web"]
    assert [c.describe() for c in collectors] == [
        {"address": "127.0.0.1:5432", "timeout": "5s"},
        {"address": "[::1]:6379", "timeout": "0.5s"},
        {"address": "example.com:443", "timeout": "5s"},
    ]


def test_builds_nothing_when_no_targets_are_configured(clock: ManualClock) -> None:
    assert TcpCollector.from_env(Env({}), clock) == []


@pytest.mark.parametrize(
    "value",
    [
        "db=127.0.0.1",
        "db=127.0.0.1:0",
        "db=127.0.0.1:65536",
        "db=127.0.0.1:http",
        "db=:5432",
        "db=::1:5432",
        "127.0.0.1:5432",
        "Bad Name=127.0.0.1:5432",
        "db=127.0.0.1:5432,db=127.0.0.1:5433",
    ],
)
def test_rejects_malformed_targets_naming_the_variable(value: str, clock: ManualClock) -> None:
    with pytest.raises(ConfigError) as excinfo:
        TcpCollector.from_env(Env({"OPSWATCH_TCP_TARGETS": value}), clock)

    assert excinfo.value.variable == "OPSWATCH_TCP_TARGETS"


def test_rejects_malformed_timeout_naming_the_per_target_variable(clock: ManualClock) -> None:
    env = Env({"OPSWATCH_TCP_TARGETS": "db=127.0.0.1:5432", "OPSWATCH_TCP_DB_TIMEOUT": "soon"})

    with pytest.raises(ConfigError) as excinfo:
        TcpCollector.from_env(env, clock)

    assert excinfo.value.variable == "OPSWATCH_TCP_DB_TIMEOUT"


def test_parses_ipv6_addresses_in_brackets() -> None:
    assert parse_host_port("V", "[2001:db8::1]:443") == ("2001:db8::1", 443)
