"""``opswatch test-rules --history 24h``: the configured rules replayed on the stored metric
history, to see when each would have fired and resolved (a new threshold tried on yesterday).

The store is read, never written; nothing is notified. The runs of each check are rebuilt
from the stored series and fed in time order through :class:`~opswatch.daemon.rule_tests.
Replay` (a fresh evaluator and alert tracker on the runs' own times), like ``test-rules FILE``.

A period within ``OPSWATCH_HISTORY_RAW_RETENTION`` replays the raw samples: the runs as the
daemon judged them. A longer one replays the 5-minute roll-ups, then the raw samples not yet
rolled up. A roll-up stands for its ``count`` samples, spread evenly over its bucket, each
with the roll-up's **max for a ``>`` rule and min for a ``<`` rule** (the worst sample of the
bucket), and its mean for the rest (rates, increases, ages, ratios and absences, whose value
is no single sample's). A breach the daemon saw for N runs is then a breach for at least N
runs of the replay: it fires whenever the daemon would have (within 5 minutes) and resolves
no earlier; a spike shorter than its bucket may fire where the daemon did not. An upper bound
is what trying a threshold needs: the mean would hide a 4-minute spike to 100 %.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from opswatch.capacity.history import STEP, HistorySettings
from opswatch.daemon.configure import AppConfig
from opswatch.daemon.rule_tests import Replay
from opswatch.model import Labels, MetricSeries, RawPoint, Rollup, Sample, Severity
from opswatch.model import TransitionKind as Kind
from opswatch.ports import HistoryStore
from opswatch.rules.base import AnyRule
from opswatch.rules.query import ExprRule
from opswatch.rules.threshold import ThresholdRule
from opswatch.state import open_store

Stat = Literal["max", "min", "mean"]
#: raw samples are read an hour at a time, roll-ups a day at a time (bounded memory)
RAW_CHUNK = 3600
ROLLUP_CHUNK = 86400
#: the transitions shown
SHOWN = frozenset({Kind.FIRED, Kind.SEVERITY_CHANGED, Kind.RESOLVED})
_Point = RawPoint | Rollup
OFF = "metric history is off (OPSWATCH_HISTORY=off): nothing to replay"


class NothingToReplayError(Exception):
    """History off, an empty store or no sample in the period: ``str()`` says which."""


def stat_of(rule: AnyRule) -> Stat:
    """The value of a roll-up that stands for the samples of its bucket for ``rule``."""
    if isinstance(rule, ThresholdRule):
        op = rule.op
    elif (
        isinstance(rule, ExprRule)
        and not rule.expr.absent
        and rule.expr.right is None
        and rule.expr.left.function == "value"
    ):  # max, min, sum and avg rise with each of their series: the worst stays the worst
        op = rule.expr.op or ">"
    else:
        return "mean"
    return "max" if op == ">" else "min"


@dataclass(frozen=True, slots=True)
class Event:
    """One transition of the replay."""

    at: datetime
    rule: str
    kind: Kind
    check: str
    labels: Labels
    severity: Severity
    value: float


@dataclass(slots=True)
class Replayed:
    """What the replay saw and found."""

    since: datetime
    until: datetime
    rollups: bool
    series: int
    first: datetime | None = None
    runs: int = 0
    events: list[Event] = field(default_factory=list)
    #: (rule, fingerprint) of the alerts still firing at the end
    firing: list[tuple[str, str]] = field(default_factory=list)


async def replay_stored(config: AppConfig, period: float, now: datetime) -> Replayed:
    """:func:`replay` on the configured store, opened for the replay (an SQLite file that
    does not exist is not created)."""
    if not config.history.enabled:
        raise NothingToReplayError(OFF)
    settings = config.settings
    if settings.state_url is None and not settings.state_path.exists():
        raise NothingToReplayError(f"no state file at {settings.state_path}: nothing to replay")
    store = open_store(settings)
    await store.open()
    try:
        return await replay(store, config.history, config.rules, period, now)
    finally:
        await store.close()


async def replay(
    store: HistoryStore,
    history: HistorySettings,
    rules: Sequence[AnyRule],
    period: float,
    now: datetime,
) -> Replayed:
    """Replay the last ``period`` seconds before ``now``; raises :class:`NothingToReplayError`."""
    if not history.enabled:
        raise NothingToReplayError(OFF)
    series = {s.id: s for s in await store.history_series()}
    if not series:
        raise NothingToReplayError("the metric history is empty: nothing to replay")
    until = int(now.timestamp()) + 1
    since = until - 1 - int(period)
    rollups = period > history.raw_retention
    found = Replayed(_time(since), now, rollups, len(series))
    by_stat: dict[Stat, list[AnyRule]] = {}
    for rule in rules:
        by_stat.setdefault(stat_of(rule) if rollups else "mean", []).append(rule)
    replays = {stat: Replay(chosen) for stat, chosen in by_stat.items()}
    async for at, check, points in _runs(store, series, since, until, rollups):
        when = _time(at)
        found.first = found.first or when
        found.runs += 1
        for stat, one in replays.items():
            samples = [
                Sample(s.check, s.metric, _value(p, stat), when, s.labels) for s, p in points
            ]
            found.events.extend(
                Event(
                    when,
                    t.alert.rule,
                    t.kind,
                    t.alert.check,
                    t.alert.labels,
                    t.alert.severity,
                    t.alert.value,
                )
                for t in one.run(check, samples, when)
                if t.kind in SHOWN
            )
    if found.first is None:
        raise NothingToReplayError(
            f"no metric history stored in the last {_span(period)}: nothing to replay"
        )
    found.firing = [(a.rule, a.fingerprint) for one in replays.values() for a in one.active()]
    return found


async def _runs(
    store: HistoryStore, series: dict[int, MetricSeries], since: int, until: int, rollups: bool
) -> AsyncIterator[tuple[float, str, list[tuple[MetricSeries, _Point]]]]:
    """The runs of every check in time order: (time, check, its series' points)."""
    raw_since = since
    if rollups:
        rolled = await store.history_rolled_until()
        raw_since = max(since, rolled or since)
        ids = list(series)
        for start in range(since, raw_since, ROLLUP_CHUNK):
            stored = await store.history_rollups(ids, start, min(start + ROLLUP_CHUNK, raw_since))
            for (at, check), points in _by_run(series, stored):
                count = max(p.count for _, p in points if isinstance(p, Rollup))
                for i in range(count):  # the bucket's runs, spread evenly
                    yield at + i * STEP / count, check, points
    for start in range(raw_since, until, RAW_CHUNK):
        stored_raw = await store.history_samples(start, min(start + RAW_CHUNK, until))
        for (at, check), points in _by_run(series, stored_raw):
            yield at, check, points


def _by_run(
    series: dict[int, MetricSeries], points: Sequence[_Point]
) -> list[tuple[tuple[int, str], list[tuple[MetricSeries, _Point]]]]:
    """``points`` grouped by (time, check), in time order (a series created since the
    replay began is left out)."""
    runs: dict[tuple[int, str], list[tuple[MetricSeries, _Point]]] = {}
    for point in points:
        one = series.get(point.series)
        if one is not None:
            runs.setdefault((point.at, one.check), []).append((one, point))
    return sorted(runs.items(), key=lambda run: run[0])


def _value(point: _Point, stat: Stat) -> float:
    if isinstance(point, RawPoint):
        return point.value
    if stat == "max":
        return point.max
    return point.min if stat == "min" else point.mean


def _time(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def _span(seconds: float) -> str:
    """``3d 4h``, ``24h``, ``5h 12m``, ``12m`` (days from two on)."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days == 1:
        days, hours = 0, hours + 24
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def shortfall(found: Replayed, period: float) -> str | None:
    """One line when the store holds less than the period asked for (None: it holds it)."""
    if found.first is None or (found.first - found.since).total_seconds() <= STEP:
        return None
    held = (found.until - found.first).total_seconds()
    return (
        f"the store holds {_span(held)} of metric history (since {_stamp(found.first)}), "
        f"less than the {_span(period)} asked for: replaying that"
    )


def report(found: Replayed, rules: Sequence[AnyRule]) -> str:
    """Per rule that fired, its transitions in time order, and a summary line."""
    source = "5-minute roll-ups (max for > rules, min for < rules)" if found.rollups else "raw"
    lines = [
        f"replayed {_stamp(found.first or found.since)} .. {_stamp(found.until)} from {source} "
        f"samples: {found.runs} runs of {found.series} series through {len(rules)} rules"
    ]
    order = {rule.name: index for index, rule in enumerate(rules)}
    events = sorted(found.events, key=lambda e: (order.get(e.rule, len(order)), e.at))
    shown: str | None = None
    for event in events:
        if event.rule != shown:
            shown = event.rule
            lines.append(f"{event.rule}:")
        labels = ", ".join(f'{k}="{v}"' for k, v in sorted(event.labels.items()))
        lines.append(
            f"  {_stamp(event.at)}  {event.kind.value:<16} {event.severity.value:<9} "
            f"{event.check} {{{labels}}}  {event.value:.6g}"
        )
    fired = sum(1 for e in found.events if e.kind is Kind.FIRED)
    resolved = sum(1 for e in found.events if e.kind is Kind.RESOLVED)
    names = {e.rule for e in found.events}
    lines.append(
        f"summary: {len(names)} of {len(rules)} rules would have fired: {fired} fired, "
        f"{resolved} resolved, {len(found.firing)} still firing at the end"
    )
    return "\n".join(lines)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
