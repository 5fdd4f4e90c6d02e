"""A period's state gathered into a :class:`~opswatch.model.Report`.

Everything comes from the state store (so the daemon and ``opswatch report`` say the same):

* **checks**: one line per check, its state now (the most severe alert firing on it: FAIL at
  critical and above, WARN below, PASS with none) and its availability over the period: the
  mean of its ``*.up`` series in the metric history (raw samples within the raw retention, the
  roll-ups beyond it), else the share of the period no ``*_down`` alert of the check fired;
* **alerts** of the period (fired in it, or firing into it) with their time to resolve, or
  how long they have been firing;
* **recoveries** run in the period, the quiet self-healing ones included (every run is
  stored, notified or not; one whose alert reached no channel says so);
* **heartbeats** (the ``heartbeat:*`` checks) and their state;
* **muting in force**: the silences now, and each firing alert that is muted with why
  (maintenance windows and pauses name themselves there);
* **capacity risks**: the resources forecast soonest to their limit (and, in the weekly
  review, the scaling advice);
* a PASS/WARN/FAIL **summary** line: the worst line's state, with the counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from opswatch.alerts.muting import MuteStack
from opswatch.capacity.resources import Capacity
from opswatch.model import (
    Alert,
    Matcher,
    RecoveryOutcome,
    RecoveryResult,
    Report,
    ReportLine,
    ReportSection,
    Severity,
    Transition,
    TransitionKind,
    Verdict,
)
from opswatch.notifiers.render import format_duration, utc_iso
from opswatch.ports import ReportStore

#: the most transitions of a period read (a storm of flapping alerts stays bounded)
MAX_TRANSITIONS = 10_000
#: the most lines of the alerts and recoveries sections
MAX_LINES = 50
#: capacity risks listed: the daily report, the weekly review
TOP_RISKS = {"daily": 5, "weekly": 10}
#: a forecast this close to its limit is a WARN line, this close a FAIL line (seconds)
RISK_WARN_S = 7 * 86400.0
RISK_FAIL_S = 48 * 3600.0
HEARTBEAT_PREFIX = "heartbeat:"
TITLES = {"daily": "daily health report", "weekly": "weekly capacity review"}


@runtime_checkable
class OpenWindows(Protocol):
    """A muter that says which of its windows are open now (the maintenance windows): the
    report lists them, whether they mute an alert or not."""

    def open_windows(self, now: datetime) -> list[tuple[str, tuple[Matcher, ...]]]: ...


@dataclass(frozen=True)
class ReportSources:
    """Where a report reads from: the store, the configured checks, the daemon's muter, the
    forecasts (None: no metric history) and the name of this host."""

    store: ReportStore
    checks: Sequence[str]
    muter: MuteStack
    capacity: Capacity | None
    host: str


@dataclass(frozen=True, slots=True)
class _Episode:
    """One alert from its start to its end (None: still firing) as the period saw it."""

    alert: Alert
    resolved_at: datetime | None
    note: str | None


async def build_report(
    sources: ReportSources, kind: str, since: datetime, until: datetime
) -> Report:
    """The report of ``kind`` (``daily``, ``weekly``) over ``[since, until)``."""
    store = sources.store
    active = await store.load_active()
    episodes = _episodes(await store.history_since(since, MAX_TRANSITIONS), active, until)
    runs = [r for r in await store.recovery_runs(since) if r.at < until]
    checks = list(dict.fromkeys([*sources.checks, *(a.check for a in active)]))
    availability = await _availability(sources, checks, since, until)
    sections = [
        _checks(checks, active, availability, episodes, since=since, until=until),
        _alerts(episodes, sources.muter, until),
        _recoveries(runs, await _told(store, runs, since)),
        _heartbeats(checks, active),
        await _muting(sources, active, until),
    ]
    risks, advice = await _capacity(sources, kind)
    sections += [s for s in (advice, risks) if s is not None]
    verdict = max(
        (line.verdict for s in sections for line in s.lines), default=Verdict.PASS, key=_rank
    )
    summary = _summary(verdict, sections[0], episodes, runs, risks)
    title = f"[{verdict.value}] opswatch {TITLES.get(kind, kind)} for {sources.host}"
    return Report(kind, title, since, until, verdict, summary, tuple(sections))


def _episodes(
    transitions: Sequence[Transition], active: Sequence[Alert], until: datetime
) -> list[_Episode]:
    """The alerts of the period: each firing (by fingerprint and start) with its end."""
    found: dict[tuple[str, datetime], _Episode] = {}
    for t in transitions:
        if t.at >= until or t.kind in (TransitionKind.ACKNOWLEDGED, TransitionKind.UNACKNOWLEDGED):
            continue
        key = (t.alert.fingerprint, t.alert.started_at)
        ended = (t.alert.resolved_at or t.at) if t.kind is TransitionKind.RESOLVED else None
        earlier = found.get(key)
        note = t.note or (earlier.note if earlier is not None else None)
        found[key] = _Episode(t.alert, ended, note)
    for alert in active:
        key = (alert.fingerprint, alert.started_at)
        if alert.started_at < until and key not in found:
            found[key] = _Episode(alert, None, None)
        elif key in found and found[key].resolved_at is None:
            found[key] = _Episode(alert, None, found[key].note)
    return sorted(found.values(), key=lambda e: (e.alert.started_at, e.alert.rule))


async def _availability(
    sources: ReportSources, checks: Sequence[str], since: datetime, until: datetime
) -> dict[str, float]:
    """Each check's share of ``up`` over the period from the metric history (checks without
    an ``up`` series in it are left out)."""
    capacity = sources.capacity
    if capacity is None or not capacity.history.enabled:
        return {}
    series = {
        s.id: s.check
        for s in await sources.store.history_series()
        if s.metric.endswith(".up") and s.check in checks
    }
    if not series:
        return {}
    start, end = int(since.timestamp()), int(until.timestamp())
    sums: dict[str, list[float]] = {}
    if (until - since).total_seconds() <= capacity.history.raw_retention:
        for point in await sources.store.history_samples(start, end, list(series)):
            if math.isfinite(point.value):
                total = sums.setdefault(series[point.series], [0.0, 0.0])
                total[0] += point.value
                total[1] += 1
    else:
        for rollup in await sources.store.history_rollups(list(series), start, end):
            if math.isfinite(rollup.mean):
                total = sums.setdefault(series[rollup.series], [0.0, 0.0])
                total[0] += rollup.mean * rollup.count
                total[1] += rollup.count
    return {check: up / count for check, (up, count) in sums.items() if count}


def _state(alerts: Iterable[Alert]) -> tuple[Verdict, str]:
    worst = max(alerts, key=lambda a: a.severity.rank, default=None)
    if worst is None:
        return Verdict.PASS, "ok"
    verdict = Verdict.FAIL if worst.severity.rank >= Severity.CRITICAL.rank else Verdict.WARN
    return verdict, f"{worst.severity.value}: {worst.rule} firing"


def _down_share(
    check: str, episodes: Sequence[_Episode], since: datetime, until: datetime
) -> float:
    """The share of the period without a ``*_down`` alert of ``check`` firing."""
    spans = sorted(
        (max(e.alert.started_at, since), min(e.resolved_at or until, until))
        for e in episodes
        if e.alert.check == check and e.alert.rule.endswith("_down")
    )
    down, reached = 0.0, since
    for began, end in spans:
        start = max(began, reached)
        if end > start:
            down += (end - start).total_seconds()
            reached = end
    period = (until - since).total_seconds()
    return 1.0 - down / period if period > 0 else 1.0


def _checks(
    checks: Sequence[str],
    active: Sequence[Alert],
    availability: dict[str, float],
    episodes: Sequence[_Episode],
    *,
    since: datetime,
    until: datetime,
) -> ReportSection:
    hours = format_duration((until - since).total_seconds())
    lines = []
    for check in checks:
        verdict, state = _state(a for a in active if a.check == check)
        if check in availability:
            share, source = availability[check], "from up samples"
        else:
            share, source = _down_share(check, episodes, since, until), "from alerts"
        lines.append(
            ReportLine(verdict, f"{check}: {state}, {share * 100:.2f} % available ({source})")
        )
    return ReportSection(f"Checks (availability over {hours})", tuple(lines), "no check")


def _alerts(episodes: Sequence[_Episode], muter: MuteStack, until: datetime) -> ReportSection:
    lines = []
    for e in episodes:
        alert = e.alert
        head = f"{alert.severity.value.upper()} {alert.rule} on {alert.check}: {alert.summary}"
        started = utc_iso(alert.started_at)
        if e.resolved_at is not None:
            lasted = format_duration((e.resolved_at - alert.started_at).total_seconds())
            verdict, what = Verdict.PASS, f"started {started}, resolved in {lasted}"
        else:
            lasted = format_duration((until - alert.started_at).total_seconds())
            verdict = _state([alert])[0]
            what = f"started {started}, still firing after {lasted}"
            reasons = muter.muting(alert, until)
            if reasons:
                what += f" (muted: {', '.join(reasons)})"
            if alert.acked(until):
                what += f" (acknowledged by {alert.acked_by})"
        if e.note:
            what += f"; {e.note}"
        lines.append(ReportLine(verdict, f"{head} ({what})"))
    return _capped("Alerts", lines, "no alert in the period")


async def _told(
    store: ReportStore, runs: Sequence[RecoveryResult], since: datetime
) -> frozenset[str]:
    """The alerts of ``runs`` that were notified anywhere (since a day before the period)."""
    if not runs:
        return frozenset()
    fingerprints = sorted({r.fingerprint for r in runs})
    channels = await store.outbox_channels(fingerprints, since - timedelta(days=1))
    return frozenset(fp for fp, where in channels.items() if where)


def _recoveries(runs: Sequence[RecoveryResult], told: frozenset[str]) -> ReportSection:
    lines = []
    for run in runs:
        if run.outcome is RecoveryOutcome.SUCCEEDED:
            verdict = Verdict.PASS
        elif run.outcome is RecoveryOutcome.FAILED:
            verdict = Verdict.FAIL
        else:
            verdict = Verdict.WARN
        target = f" {run.target}" if run.target else ""
        lines.append(
            ReportLine(
                verdict,
                f"{utc_iso(run.at)} {run.action}{target} for {run.rule or run.fingerprint}: "
                f"{run.outcome.value} after {run.attempts} attempt(s) in "
                f"{format_duration(run.duration_s)}: {run.detail}"
                + ("" if run.fingerprint in told else " (quiet: never notified)"),
            )
        )
    return _capped("Recoveries", lines, "no recovery ran")


def _heartbeats(checks: Sequence[str], active: Sequence[Alert]) -> ReportSection:
    lines = []
    for check in checks:
        if check.startswith(HEARTBEAT_PREFIX):
            verdict, state = _state(a for a in active if a.check == check)
            name = check.removeprefix(HEARTBEAT_PREFIX)
            lines.append(ReportLine(verdict, f"{name}: {'on time' if state == 'ok' else state}"))
    return ReportSection("Heartbeats", tuple(lines), "no heartbeat configured")


async def _muting(sources: ReportSources, active: Sequence[Alert], now: datetime) -> ReportSection:
    lines = []
    for silence in await sources.store.silences(now):
        if silence.starts_at <= now:
            matchers = ", ".join(m.text for m in silence.matchers)
            lines.append(
                ReportLine(
                    Verdict.PASS,
                    f"silence {silence.id} ({matchers}) until {utc_iso(silence.ends_at)} "
                    f"by {silence.created_by}: {silence.comment}",
                )
            )
    for muter in sources.muter.muters():
        if isinstance(muter, OpenWindows):
            for name, window in muter.open_windows(now):
                where = ", ".join(m.text for m in window) or "everything"
                lines.append(ReportLine(Verdict.PASS, f"maintenance {name} open ({where})"))
    for alert in active:
        reasons = [r for r in sources.muter.muting(alert, now) if not r.startswith("silence ")]
        if reasons:
            lines.append(
                ReportLine(Verdict.PASS, f"{alert.rule} on {alert.check}: {', '.join(reasons)}")
            )
    return ReportSection("Silences and maintenance in force", tuple(lines), "nothing is muted")


async def _capacity(
    sources: ReportSources, kind: str
) -> tuple[ReportSection | None, ReportSection | None]:
    """The capacity risks and (weekly) the scaling advice; None without a history."""
    capacity = sources.capacity
    if capacity is None or not capacity.history.enabled:
        return None, None
    forecasts = [f for f in await capacity.forecasts() if f.likely_s is not None]
    lines = []
    for f in forecasts[: TOP_RISKS.get(kind, TOP_RISKS["daily"])]:
        likely = f.likely_s or 0.0
        verdict = Verdict.PASS
        if likely < RISK_WARN_S:
            verdict = Verdict.FAIL if likely < RISK_FAIL_S else Verdict.WARN
        labels = ",".join(f"{k}={v}" for k, v in sorted(f.labels.items()))
        where = f.check + (f" {labels}" if labels else "")
        lines.append(
            ReportLine(
                verdict,
                f"{f.resource} on {where}: {f.value:.4g} now, {f.per_day:+.3g}/day, full in "
                f"{format_duration(likely)} (earliest {format_duration(f.earliest_s or 0.0)})",
            )
        )
    risks = ReportSection("Capacity risks", tuple(lines), "no resource is forecast to fill")
    if kind != "weekly":
        return risks, None
    advice = tuple(ReportLine(Verdict.WARN, a.recommendation) for a in await capacity.advice())
    return risks, ReportSection("Scaling advice", advice, "no scaling trigger held")


def _capped(title: str, lines: Sequence[ReportLine], empty: str) -> ReportSection:
    shown = list(lines[:MAX_LINES])
    if len(lines) > MAX_LINES:
        worst = max((line.verdict for line in lines[MAX_LINES:]), key=_rank)
        shown.append(ReportLine(worst, f"and {len(lines) - MAX_LINES} more"))
    return ReportSection(f"{title} ({len(lines)})", tuple(shown), empty)


def _summary(
    verdict: Verdict,
    checks: ReportSection,
    episodes: Sequence[_Episode],
    runs: Sequence[RecoveryResult],
    risks: ReportSection | None,
) -> str:
    counts = {v: sum(1 for line in checks.lines if line.verdict is v) for v in Verdict}
    firing = sum(1 for e in episodes if e.resolved_at is None)
    failed = sum(1 for r in runs if r.outcome is RecoveryOutcome.FAILED)
    parts = [
        f"{len(checks.lines)} checks ({counts[Verdict.PASS]} pass, {counts[Verdict.WARN]} warn, "
        f"{counts[Verdict.FAIL]} fail)",
        f"{len(episodes)} alerts ({firing} still firing)",
        f"{len(runs)} recoveries ({failed} failed)",
    ]
    if risks is not None:
        near = sum(1 for line in risks.lines if line.verdict is not Verdict.PASS)
        parts.append(f"{near} capacity risks within {format_duration(RISK_WARN_S)}")
    return f"{verdict.value}: " + ", ".join(parts)


def _rank(verdict: Verdict) -> int:
    return verdict.rank


def period(until: datetime, seconds: float) -> tuple[datetime, datetime]:
    """``[until - seconds, until)``."""
    return until - timedelta(seconds=seconds), until
