"""Scaling advice: the operations write-ups' triggers as sustained conditions over the
history, with utilisation percentiles over the last day and week, turned into concrete
recommendations with their evidence.

A trigger holds for a series when, in the last day, its 5-minute buckets were wholly past
the threshold (every sample: the bucket's min above it, or its max below) for at least the
trigger's duration in a row, or when the week's 95th percentile of the 5-minute means is past
it. The evidence names the day's and the week's percentile, the peak, the longest stretch and
the trend of the daily means (Theil-Sen, per week).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from opswatch.capacity.forecast import DAY, theil_sen
from opswatch.capacity.history import STEP
from opswatch.capacity.rollup import percentile
from opswatch.model import Advice, MetricSeries, Rollup

WEEK = 7 * DAY


@dataclass(frozen=True, slots=True)
class Trigger:
    metric: str
    op: Literal[">", "<"]
    threshold: float
    #: how long it must hold in a row (seconds; at least one 5-minute bucket)
    sustained: float
    #: what is measured, and the label that tells which one (None: one per host)
    what: str
    label: str | None
    #: how a value is shown: a percentage, seconds, a ratio as a percentage
    unit: Literal["%", "s", "ratio"]
    advice: str


TRIGGERS: tuple[Trigger, ...] = (
    Trigger("host.cpu_percent", ">", 80, 600, "CPU", None, "%", "add a core or move the batch job"),
    Trigger(
        "host.memory_percent",
        ">",
        85,
        300,
        "memory",
        None,
        "%",
        "add memory, or find the process that grows",
    ),
    Trigger(
        "host.disk_used_percent",
        ">",
        90,
        STEP,
        "disk",
        "mountpoint",
        "%",
        "grow the volume or clean it up (a files: cleanup binding can keep it down)",
    ),
    Trigger(
        "prometheus.p95_seconds",
        ">",
        2,
        600,
        "p95 latency",
        "target",
        "s",
        "scale the application out, or profile its slowest requests",
    ),
    Trigger(
        "http.latency_seconds",
        ">",
        2,
        600,
        "latency",
        "check",
        "s",
        "scale the service out, or find what makes it slow",
    ),
    Trigger(
        "postgres.connections_percent",
        ">",
        80,
        STEP,
        "PostgreSQL connections",
        "target",
        "%",
        "add a pooler (PgBouncer) in front of it, or raise max_connections",
    ),
    Trigger(
        "redis.keyspace_hit_ratio",
        "<",
        0.6,
        600,
        "Redis hit ratio",
        "target",
        "ratio",
        "raise maxmemory, or review what is cached and how long it lives",
    ),
)
BY_METRIC = {t.metric: t for t in TRIGGERS}


def advise(
    trigger: Trigger, series: MetricSeries, rollups: Sequence[Rollup], now: datetime
) -> Advice | None:
    """The advice for one series from its roll-ups of the last week (in time order), or
    None when its trigger does not hold."""
    at = int(now.timestamp())
    week = [r for r in rollups if r.at >= at - WEEK]
    day = [r for r in week if r.at >= at - DAY]
    if not day:
        return None
    above = trigger.op == ">"
    q = 0.95 if above else 0.05
    day_level = percentile([r.mean for r in day], q)
    week_level = percentile([r.mean for r in week], q)
    peak = max(r.max for r in week) if above else min(r.min for r in week)
    sustained = _longest(day, trigger)
    if sustained < max(trigger.sustained, STEP) and not _past(week_level, trigger):
        return None
    per_week = _per_week(week, at)
    labels = {**series.labels, "check": series.check}
    what = (
        trigger.what
        if trigger.label is None
        else f"{trigger.what} ({labels.get(trigger.label, '?')})"
    )
    side = "above" if above else "below"
    evidence = (
        f"{what} p{round(q * 100)} {_show(week_level, trigger)} over 7 days "
        f"({_show(day_level, trigger)} over 24 h), {'peak' if above else 'lowest'} "
        f"{_show(peak, trigger)}, {side} {_show(trigger.threshold, trigger)} for "
        f"{round(sustained / 60)} min in a row in the last day"
    )
    if per_week is not None:
        trend = "rising" if per_week > 0 else "falling"
        evidence += f", {trend} {_show(abs(per_week), trigger)}/week"
    return Advice(
        resource=what,
        check=series.check,
        metric=series.metric,
        labels=series.labels,
        at=now,
        trigger=f"{trigger.metric} {trigger.op} {trigger.threshold:g}",
        day=day_level,
        week=week_level,
        peak=peak,
        sustained_s=float(sustained),
        per_week=per_week,
        recommendation=f"{evidence}: {trigger.advice}",
    )


def _past(value: float, trigger: Trigger) -> bool:
    return value > trigger.threshold if trigger.op == ">" else value < trigger.threshold


def _longest(rollups: Sequence[Rollup], trigger: Trigger) -> int:
    """The longest run of consecutive buckets wholly past the threshold (seconds)."""
    longest = run = 0
    previous: int | None = None
    for rollup in rollups:
        whole = rollup.min if trigger.op == ">" else rollup.max
        if not _past(whole, trigger):
            run, previous = 0, None
            continue
        run = run + STEP if previous is not None and rollup.at == previous + STEP else STEP
        previous = rollup.at
        longest = max(longest, run)
    return longest


def _per_week(week: Sequence[Rollup], at: int) -> float | None:
    """The Theil-Sen slope of the daily means (days counted back from ``at``), per week."""
    days: dict[int, list[Rollup]] = {}
    for rollup in week:
        days.setdefault((at - rollup.at - 1) // DAY, []).append(rollup)
    if len(days) < 3:
        return None
    points = [
        (float(at - index * DAY), sum(r.mean * r.count for r in rows) / sum(r.count for r in rows))
        for index, rows in days.items()
    ]
    slope, _, _ = theil_sen(sorted(points))
    return slope * WEEK


def _show(value: float, trigger: Trigger) -> str:
    if trigger.unit == "ratio":
        return f"{value:.0%}"
    if trigger.unit == "s":
        return f"{value:.2f} s"
    return f"{value:.0f} %"
