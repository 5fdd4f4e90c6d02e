"""The collector contract.

A collector module owns one class with ``name`` (= module name = registry key = env prefix),
a ``from_env`` that reads its variables and returns one instance per target, and one async
``collect``. ``collect`` raises :class:`CollectorError` (or lets a library error escape) when
the target cannot be measured at all; the daemon's job wrapper turns that into
``<kind>.up = 0``. A collector that can tell "target down" from "collector broken" should
instead return its own ``<kind>.up = 0`` sample with labels, and never crash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import ClassVar, Protocol, runtime_checkable

from opswatch.config import Env
from opswatch.model import Clock, Labels, Sample


class CollectorError(Exception):
    """A collector could not measure its target. The message must hold no secret."""


class Collector(Protocol):
    name: ClassVar[str]
    #: instance name used as ``Sample.check`` and job id, e.g. ``host`` or ``http:api``
    check: str

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[Collector]: ...

    async def collect(self) -> list[Sample]: ...

    async def close(self) -> None: ...

    def describe(self) -> dict[str, str]:
        """Effective configuration for ``check-config`` and ``/status``: no secrets."""
        ...


#: how an event-driven collector hands fresh samples to the daemon
Emit = Callable[[list[Sample]], Awaitable[None]]


@runtime_checkable
class EventSource(Protocol):
    """A collector that can also report a change the moment it happens (a watched process's
    exit), instead of at the next scheduled run. ``watch`` runs until cancelled."""

    check: str

    @property
    def supports_watch(self) -> bool: ...

    async def watch(self, emit: Emit) -> None: ...


def up_sample(kind: str, check: str, up: bool, at: datetime, labels: Labels) -> Sample:
    """The ``<kind>.up`` sample every collector emits so that an outage is data."""
    return Sample(check=check, metric=f"{kind}.up", value=1.0 if up else 0.0, at=at, labels=labels)
