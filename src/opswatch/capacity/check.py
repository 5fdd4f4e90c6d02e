"""Rules from forecasts: the ``capacity`` check and its rules (``disk_full_forecast`` ...).

A job of its own (:meth:`ForecastCheck.follow`, every :data:`EVERY` seconds) computes the
forecasts from the history; the ``capacity`` check (it satisfies the collector contract; the
daemon adds it while history is on) hands the last ones to the rules at every run, one
sample per series of a resource: ``capacity.<rule>``, the likely hours to its limit,
or :data:`NONE_HOURS` (a year) when there is no forecast, so the alert resolves. The rules are
built-in threshold rules, tuned like every rule (``OPSWATCH_RULE_DISK_FULL_FORECAST_WARNING``
in hours), and fire through the normal tracker, routing and recovery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar

import structlog

from opswatch.capacity.forecast import HORIZON
from opswatch.capacity.resources import RESOURCES, Capacity
from opswatch.config import Env
from opswatch.model import Clock, Sample, Severity, utcnow
from opswatch.rules.builtin import RuleSpec
from opswatch.rules.threshold import Level

log = structlog.get_logger("opswatch")

CHECK = "capacity"
#: how often the forecasts are computed (seconds)
EVERY = 900.0
#: the value of a series without a forecast (hours): beyond every threshold
NONE_HOURS = HORIZON / 3600

W, C = Severity.WARNING, Severity.CRITICAL
_SUMMARY = {
    "disk_full_forecast": "disk {mountpoint} on {source}",
    "inodes_full_forecast": "inodes on {mountpoint} of {source}",
    "memory_full_forecast": "memory of {source}",
    "swap_full_forecast": "swap of {source}",
    "postgres_connections_forecast": "PostgreSQL {target} connections",
    "redis_memory_forecast": "Redis {target} memory",
    "rabbitmq_queue_forecast": "RabbitMQ {target} queue {queue}",
}


def metric(rule: str) -> str:
    """The sample of a rule's series: its value is in hours (the unit stays out of the name,
    which ``/metrics`` exposes and Prometheus wants in base units)."""
    return f"{CHECK}.{rule}"


#: warning when the likely time to the limit is under 48 h, critical under 6 h
FORECAST_RULES: tuple[RuleSpec, ...] = tuple(
    RuleSpec(
        r.rule,
        metric(r.rule),
        "<",
        (Level(W, 48, 60), Level(C, 6, 8)),
        f"{_SUMMARY[r.rule]} is forecast full in {{value:.0f}} h (threshold {{threshold:g}} h)",
    )
    for r in RESOURCES
    if r.limit is not None
)


class ForecastCheck:
    """The ``capacity`` check: the last forecasts as samples (no I/O in its run)."""

    name: ClassVar[str] = CHECK

    def __init__(self, clock: Clock = utcnow) -> None:
        self.check = CHECK
        self._clock = clock
        self._hours: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[ForecastCheck]:
        return []

    async def refresh(self, capacity: Capacity) -> None:
        """Compute the forecasts now: every series of a resource with a limit gets its
        likely hours, or :data:`NONE_HOURS`."""
        rules = {r.metric: r.rule for r in RESOURCES if r.limit is not None}
        hours = {
            (rules[s.metric], tuple(sorted({**s.labels, "source": s.check}.items()))): NONE_HOURS
            for s in await capacity.store.history_series()
            if s.metric in rules
        }
        for forecast in await capacity.forecasts():
            if forecast.likely_s is not None:
                labels = {**forecast.labels, "source": forecast.check}
                hours[forecast.rule, tuple(sorted(labels.items()))] = forecast.likely_s / 3600
        self._hours = hours

    async def collect(self) -> list[Sample]:
        now = self._clock()
        return [
            Sample(CHECK, metric(rule), value, now, dict(labels))
            for (rule, labels), value in sorted(self._hours.items())
        ]

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {"rules": ",".join(spec.name for spec in FORECAST_RULES)}


async def follow(
    capacity: Capacity,
    target: Callable[[], object],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Refresh the ``capacity`` check in use (``target()``: a reload replaces it) now and
    every :data:`EVERY` seconds, for ever; a failure is logged (``forecast_failed``, one
    traceback per outage) and the last forecasts kept."""
    failing = False
    while True:
        check = target()
        if isinstance(check, ForecastCheck):
            try:
                await check.refresh(capacity)
            except Exception as exc:  # a store outage: keep the last forecasts
                log.warning(
                    "forecast_failed", error=f"{type(exc).__name__}: {exc}", exc_info=not failing
                )
                failing = True
            else:
                failing = False
        await sleep(EVERY)
