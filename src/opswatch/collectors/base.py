"""The collector contract.

A collector module owns one class with ``name`` (= module name = registry key = env prefix),
a ``from_env`` that reads its variables and returns one instance per target, and one async
``collect``. ``collect`` raises :class:`CollectorError` (or lets a library error escape) when
the target cannot be measured at all; the daemon's job wrapper turns that into
``<kind>.up = 0``. A collector that can tell "target down" from "collector broken" should
instead return its own ``<kind>.up = 0`` sample with labels, and never crash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol, runtime_checkable

import structlog

from opswatch.config import PREFIX, ConfigError, Env, Target
from opswatch.model import Clock, Labels, Sample
from opswatch.ports import PingStore

log = structlog.get_logger(__name__)


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


@runtime_checkable
class StoreCheck(Protocol):
    """A check that measures what the state store holds (a heartbeat's pings), so that every
    replica and a restart see the same: the daemon hands it the store before it runs."""

    check: str

    def use_store(self, store: PingStore) -> None: ...


def up_sample(kind: str, check: str, up: bool, at: datetime, labels: Labels) -> Sample:
    """The ``<kind>.up`` sample every collector emits so that an outage is data."""
    return Sample(check=check, metric=f"{kind}.up", value=1.0 if up else 0.0, at=at, labels=labels)


# --- shared by the service collectors ----------------------------------------------------

#: per-run deadline of a service collector unless ``OPSWATCH_<KIND>_TIMEOUT`` says otherwise
DEFAULT_SERVICE_TIMEOUT = 5.0


def service_targets(
    env: Env, kind: str, *, schemes: tuple[str, ...], example: str
) -> tuple[tuple[Target, ...], float]:
    """A service collector's targets and per-run timeout: ``OPSWATCH_<KIND>_TARGETS``, a
    ``name=URL`` list that must not be empty (``example`` shows a URL in the error), and
    ``OPSWATCH_<KIND>_TIMEOUT`` (default 5s, at least 0.1s)."""
    variable = f"{PREFIX}{kind.upper()}_TARGETS"
    targets = env.targets(variable, schemes=schemes)
    if not targets:
        raise ConfigError(variable, f"set at least one name={example} target")
    timeout = env.duration(f"{PREFIX}{kind.upper()}_TIMEOUT", DEFAULT_SERVICE_TIMEOUT, minimum=0.1)
    return targets, timeout


def describe_service(check: str, target: Target, timeout: float) -> dict[str, str]:
    """``describe()`` of a service collector: the URL masked."""
    return {
        "check": check,
        "target": target.name,
        "url": str(target.url),
        "timeout": f"{timeout:g}s",
    }


@dataclass(frozen=True, slots=True)
class Counters:
    """Cumulative counters read at one instant of the injected clock."""

    at: datetime
    values: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class CounterDeltas:
    """How much each counter grew over ``elapsed`` seconds; a counter without a delta (first
    run, clock not moving forward, counter reset) is absent from ``increases``."""

    elapsed: float = 0.0
    increases: Mapping[str, float] = field(default_factory=dict)

    def rate(self, key: str) -> float | None:
        """The increase per second, or ``None`` without a delta."""
        if key not in self.increases:
            return None
        return self.increases[key] / self.elapsed

    def ratio(self, part: str, rest: str) -> float | None:
        """``part / (part + rest)`` of the increases (a hit ratio from hits and misses), or
        ``None`` without both deltas or when neither grew."""
        if part not in self.increases or rest not in self.increases:
            return None
        total = self.increases[part] + self.increases[rest]
        return self.increases[part] / total if total > 0 else None


def counter_deltas(previous: Counters | None, current: Counters) -> CounterDeltas:
    """The increase of each counter since ``previous``.

    Nothing on the first run or when the clock did not move forward; a counter that went
    down (a stats reset or a restart) is left out for this run.
    """
    if previous is None:
        return CounterDeltas()
    elapsed = (current.at - previous.at).total_seconds()
    if elapsed <= 0:
        return CounterDeltas(elapsed)
    return CounterDeltas(
        elapsed,
        {
            key: value - previous.values[key]
            for key, value in current.values.items()
            if key in previous.values and value >= previous.values[key]
        },
    )


def error_fields(exc: BaseException) -> dict[str, str]:
    """What may be logged about a failure: the exception class and a code (SQLSTATE, HTTP
    status or errno), never the message (drivers echo DSNs and addresses in it)."""
    fields = {"error": type(exc).__name__}
    code = (
        getattr(exc, "sqlstate", None)
        or getattr(exc, "status", None)
        or getattr(exc, "errno", None)
    )
    if code is not None:
        fields["code"] = str(code)
    return fields


class OutageLog:
    """One log line per outage of a target: ``collector_target_down`` (with
    :func:`error_fields`) when it goes down, ``collector_target_up`` when it is back."""

    def __init__(self, check: str) -> None:
        self.check = check
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            log.warning("collector_target_down", check=self.check, **error_fields(exc))
        self.down = True

    def succeeded(self) -> None:
        if self.down:
            log.info("collector_target_up", check=self.check)
        self.down = False
