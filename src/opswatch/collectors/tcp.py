"""TCP connect check: can a client open a connection to ``host:port``, and how fast?

Environment
-----------
``OPSWATCH_TCP_TARGETS``
    Comma-separated ``name=HOST:PORT`` items, e.g.
    ``db=127.0.0.1:5432,cache=[::1]:6379,web=example.com:443``. Names are lower-case
    (``[a-z][a-z0-9_-]*``); an IPv6 address goes in brackets.
``OPSWATCH_TCP_<NAME>_TIMEOUT``
    Connect timeout for one target (``<NAME>`` upper-cased, ``-`` -> ``_``), a duration such
    as ``3s`` or ``500ms``. Default ``5s``.

Samples (labels ``{target}``)
-----------------------------
``tcp.up``               1 when the connection opened within the timeout, else 0.
``tcp.connect_seconds``  time to connect (DNS resolution included); only when up.

The connection is closed right after it opens; nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from opswatch.collectors.base import Collector, up_sample
from opswatch.config import PREFIX, ConfigError, Env, target_variable
from opswatch.model import Clock, Sample

KIND = "tcp"
TARGETS_VAR = f"{PREFIX}TCP_TARGETS"
DEFAULT_TIMEOUT = 5.0


def parse_host_port(variable: str, spec: str) -> tuple[str, int]:
    """``host:port`` or ``[v6addr]:port`` -> ``(host, port)``, else :class:`ConfigError`."""
    host, sep, port_text = spec.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an unbracketed IPv6 address is ambiguous
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(
            variable, f"expected HOST:PORT such as 127.0.0.1:5432 or [::1]:5432, got {spec!r}"
        )
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class TcpTarget:
    name: str
    host: str
    port: int
    timeout: float


class TcpCollector:
    """Opens one TCP connection per cycle to one target."""

    name: ClassVar[str] = KIND

    def __init__(self, target: TcpTarget, clock: Clock) -> None:
        self.target = target
        self.check = f"{KIND}:{target.name}"
        self._clock = clock

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[Collector]:
        collectors: list[Collector] = []
        for name, spec in env.specs(TARGETS_VAR, what="HOST:PORT"):
            host, port = parse_host_port(TARGETS_VAR, spec)
            timeout = env.duration(
                target_variable(KIND, name, "TIMEOUT"), DEFAULT_TIMEOUT, minimum=0.001
            )
            collectors.append(cls(TcpTarget(name, host, port, timeout), clock))
        return collectors

    async def collect(self) -> list[Sample]:
        labels = {"target": self.target.name}
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.target.timeout):
                _, writer = await asyncio.open_connection(self.target.host, self.target.port)
        except (OSError, TimeoutError):
            return [up_sample(KIND, self.check, False, self._clock(), labels)]
        elapsed = time.perf_counter() - started
        writer.close()
        # The connection did open: a reset or a stall while closing says nothing about "up".
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self.target.timeout):
                await writer.wait_closed()
        at = self._clock()
        return [
            up_sample(KIND, self.check, True, at, labels),
            Sample(self.check, f"{KIND}.connect_seconds", elapsed, at, labels),
        ]

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        return {
            "address": f"{host}:{self.target.port}",
            "timeout": f"{self.target.timeout:g}s",
        }
