"""The vocabulary every stage speaks: samples, findings, alerts, transitions, notifications.

This module imports nothing of opswatch's. Every type is a frozen, slotted dataclass or a
``StrEnum`` so that values passed between stages cannot be changed behind a stage's back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

Labels = Mapping[str, str]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The default clock: timezone-aware UTC now."""
    return datetime.now(UTC)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)

    def raised(self) -> Severity:
        """One step up, capped at emergency (used when a recovery fails)."""
        return _SEVERITY_ORDER[min(self.rank + 1, len(_SEVERITY_ORDER) - 1)]


_SEVERITY_ORDER = (Severity.INFO, Severity.WARNING, Severity.CRITICAL, Severity.EMERGENCY)


class AlertState(StrEnum):
    FIRING = "firing"
    REMEDIATING = "remediating"
    RESOLVED = "resolved"


class TransitionKind(StrEnum):
    FIRED = "fired"
    SEVERITY_CHANGED = "severity_changed"
    REMINDER = "reminder"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    #: an operator's acknowledgement and its removal: kept in history, never notified
    ACKNOWLEDGED = "acknowledged"
    UNACKNOWLEDGED = "unacknowledged"
    #: the alert's identity started or stopped flapping (alerts/flapping.py): while it
    #: flaps, these are the only transitions of it that are notified
    FLAPPING_STARTED = "flapping_started"
    FLAPPING_ENDED = "flapping_ended"
    #: the severity ladder raised an unacknowledged alert (alerts/ladder.py)
    CLIMBED = "climbed"


#: transitions recorded in the alert history but sent to no channel
UNNOTIFIED_KINDS = frozenset({TransitionKind.ACKNOWLEDGED, TransitionKind.UNACKNOWLEDGED})
#: the transitions of a flapping alert (``Alert.flapping``) that are notified
FLAPPING_KINDS = frozenset({TransitionKind.FLAPPING_STARTED, TransitionKind.FLAPPING_ENDED})


def fingerprint(rule: str, labels: Labels) -> str:
    """Stable identity of an alert: the rule name and its sorted labels, hashed to 16 hex."""
    canonical = rule + "\x00" + "\x00".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement. ``check`` names the collector instance (``http:api``); ``metric`` is
    namespaced by collector kind (``http.up``, ``host.cpu_percent``)."""

    check: str
    metric: str
    value: float
    at: datetime
    labels: Labels = field(default_factory=dict)
    #: text about the measurement that is not part of the series' identity (a plugin's own
    #: first line): usable in a rule's summary like a label, never in a fingerprint
    annotations: Labels = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict that something is wrong with one series right now."""

    rule: str
    check: str
    fingerprint: str
    severity: Severity
    summary: str
    value: float
    labels: Labels = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the rules concluded about one collector run.

    ``rules`` are the rules that saw samples in this run: only their alerts may be resolved by
    it (a collector that failed outright says nothing about its other series). ``observed``
    holds the latest value of every evaluated series by fingerprint, firing or not, so that a
    resolution can report the value at resolution.
    """

    check: str
    findings: tuple[Finding, ...]
    rules: frozenset[str]
    observed: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    fingerprint: str
    rule: str
    check: str
    labels: Labels
    state: AlertState
    severity: Severity
    summary: str
    value: float
    started_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None = None
    last_notified_at: datetime | None = None
    acked_by: str | None = None
    #: raised one step because its recovery failed: a finding at or below this severity
    #: keeps it (only a higher one changes it) until the alert resolves
    escalated: bool = False
    #: False while its firing was muted by a silence and so never notified: the first run
    #: the silence lets it through notifies it (a FIRED), and its resolution before that
    #: notifies nobody
    notified: bool = True
    #: the acknowledgement (``acked_by`` set): why, since when, until when (``None``: until
    #: the alert resolves) and whether it outlives a severity rise
    ack_comment: str | None = None
    acked_at: datetime | None = None
    ack_expires_at: datetime | None = None
    ack_sticky: bool = False
    #: set while a muter holds back a change of its severity: the severity the channels
    #: last heard; the first run it is no longer muted notifies the change from it
    heard_severity: Severity | None = None
    #: its identity is flapping (alerts/flapping.py): its firings, resolutions and reminders
    #: are kept in history, not notified
    flapping: bool = False
    #: seconds counted on its current step of the severity ladder (alerts/ladder.py)
    ladder_s: float = 0.0
    #: raised by the severity ladder: kept against findings at or below it until it resolves
    climbed: bool = False

    def acked(self, now: datetime) -> bool:
        """Whether an acknowledgement holds at ``now`` (an expired one does not)."""
        if self.acked_by is None:
            return False
        return self.ack_expires_at is None or now < self.ack_expires_at


@dataclass(frozen=True, slots=True)
class Transition:
    alert: Alert
    kind: TransitionKind
    at: datetime
    previous_state: AlertState | None = None
    previous_severity: Severity | None = None
    #: one human line from recovery ("auto-recovered in 12 s after 1 restart", "recovery
    #: failed: ..."), rendered into the notification
    note: str | None = None
    #: a snapshot taken when the alert fired (top processes, longest queries), rendered
    evidence: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Idempotency key of this transition: fingerprint, kind and epoch."""
        return f"{self.alert.fingerprint}:{self.kind.value}:{self.at.timestamp():.6f}"


class NotificationKind(StrEnum):
    """What an outbox row carries: alert transitions, or a scheduled report (a digest may
    follow)."""

    TRANSITIONS = "transitions"
    REPORT = "report"


class Verdict(StrEnum):
    """A report line's state, and the report's summary (the morning check's PASS/WARN/FAIL)."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"

    @property
    def rank(self) -> int:
        return tuple(Verdict).index(self)


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One line of a report's section: its state and its words."""

    verdict: Verdict
    text: str


@dataclass(frozen=True, slots=True)
class ReportSection:
    title: str
    lines: tuple[ReportLine, ...]
    #: what the section says when it has no line ("no alert in the period")
    empty: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """A scheduled report (:mod:`opswatch.reports`): what it covers, its summary line and its
    sections, worded once; each channel lays them out in its medium."""

    kind: str
    title: str
    since: datetime
    until: datetime
    verdict: Verdict
    summary: str
    sections: tuple[ReportSection, ...]


@dataclass(frozen=True, slots=True)
class Notification:
    """What a notifier sends: rendered once, from transitions, never from raw samples."""

    transitions: tuple[Transition, ...]
    title: str
    text: str
    severity: Severity
    idempotency_key: str
    #: what the message is about (every outbox row so far: transitions of alerts)
    kind: NotificationKind = NotificationKind.TRANSITIONS
    #: set on a copy sent to the fallback channel: why (the failed channel and its error)
    fallback_note: str | None = None
    #: the report a ``REPORT`` notification carries (``transitions`` is empty)
    report: Report | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One notification waiting in the durable outbox for one channel."""

    id: int
    channel: str
    notification: Notification
    attempts: int
    created_at: datetime


class RecoveryOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED_BUDGET = "skipped: budget"
    SKIPPED_SILENCED = "skipped: silenced"
    SKIPPED_DRY_RUN = "skipped: dry-run"
    SKIPPED_FLAPPING = "skipped: flapping"
    SKIPPED_BUSY = "skipped: busy"


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    action: str
    fingerprint: str
    outcome: RecoveryOutcome
    attempts: int
    duration_s: float
    detail: str
    at: datetime
    rule: str = ""
    target: str = ""
    #: the budget and lock key: ``<action>:<what it acts on>``
    key: str = ""
    #: a half-open trial run after the budget was exhausted
    trial: bool = False


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """What one commit changes, written in one transaction: alerts still open, alerts
    resolved (their fingerprints), the transitions for history and the outbox rows."""

    active: Sequence[Alert]
    resolved: Sequence[str]
    transitions: Sequence[Transition]
    outbox: Sequence[tuple[str, Notification]]
    #: the run's samples kept in the metric history (:mod:`opswatch.capacity.history`)
    samples: Sequence[Sample] = ()


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """The last run of one check (``/status``, ``/metrics``, health)."""

    check: str
    finished_at: datetime
    duration_s: float
    error: str | None
    samples: Sequence[Sample]


@dataclass(frozen=True, slots=True)
class Health:
    """What ``/healthz`` answers and the systemd watchdog follows."""

    healthy: bool
    reason: str
    started_at: datetime
    last_run_at: datetime | None


@dataclass(frozen=True, slots=True)
class BudgetState:
    """The breaker of one key. ``allowed``: executions allowed now (0: open)."""

    key: str
    used: int
    limit: int
    allowed: int
    state: str  # closed | open | half-open
    trial: bool = False
    next_trial_at: datetime | None = None


class MatchOp(StrEnum):
    """How a silence's matcher compares: equal, not equal, fully anchored regex, its negation."""

    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """``name op value``: ``name`` is ``rule``, ``check`` or a label's name."""

    name: str
    op: MatchOp
    value: str

    @property
    def text(self) -> str:
        return f"{self.name}{self.op.value}{self.value}"


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes the alerts that all its matchers match from ``starts_at`` until ``ends_at``
    (:mod:`opswatch.alerts.silences`)."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    updated_at: datetime


class PingKind(StrEnum):
    """What a job's ping says: it ran fine, it starts, or it failed."""

    SUCCESS = "success"
    START = "start"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Ping:
    """One call of a job to ``/ping/{name}`` (:mod:`opswatch.collectors.heartbeat`)."""

    heartbeat: str
    kind: PingKind
    at: datetime
    #: the job's exit status when it sent one (``/ping/{name}/{exit_status}``)
    exit_status: int | None = None
    #: the job's output (the request body), cut to the first 10 KiB
    output: str = ""
    truncated: bool = False
    #: seconds since the start ping of its run (a success or fail after a start)
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    """Notifications and recovery paused for one check (``check``) or every check (``None``)
    since ``since``, by ``by`` (:mod:`opswatch.alerts.pause`); collection goes on."""

    check: str | None
    by: str
    comment: str | None
    since: datetime


class PauseAction(StrEnum):
    PAUSED = "paused"
    RESUMED = "resumed"


@dataclass(frozen=True, slots=True)
class PauseEvent:
    """One pause or resume, for the audit: what (``checks``, empty: every check), who, why."""

    action: PauseAction
    checks: tuple[str, ...]
    by: str
    comment: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A one-off maintenance window made through the API: mutes the alerts that all its
    matchers match from ``starts_at`` until ``ends_at``, as ``maintenance NAME``
    (:mod:`opswatch.alerts.maintenance`; the recurring ones come from the configuration)."""

    id: str
    name: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime


#: a series' identity as the history keeps it: check, metric and its labels sorted
SeriesKey = tuple[str, str, tuple[tuple[str, str], ...]]


def series_key(sample: Sample) -> SeriesKey:
    return sample.check, sample.metric, tuple(sorted(sample.labels.items()))


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """One series of the metric history: its id in the store and what it is."""

    id: int
    check: str
    metric: str
    labels: Labels


@dataclass(frozen=True, slots=True)
class RawPoint:
    """One stored sample of a series; ``at`` in whole seconds since the epoch."""

    series: int
    at: int
    value: float


@dataclass(frozen=True, slots=True)
class Rollup:
    """One series' samples of one bucket (``at``, its start in epoch seconds) summarized."""

    series: int
    at: int
    min: float
    max: float
    mean: float
    p95: float
    count: int


@dataclass(frozen=True, slots=True)
class Forecast:
    """When one series of a resource (a disk, a pool) reaches its limit, from its trend
    (:mod:`opswatch.capacity.forecast`): in seconds from ``at``; ``latest`` None: maybe
    never. ``limit`` None: a resource without one (a database's size): its growth only."""

    rule: str
    resource: str
    check: str
    metric: str
    labels: Labels
    at: datetime
    value: float
    limit: float | None
    per_day: float
    earliest_s: float | None
    likely_s: float | None
    latest_s: float | None


@dataclass(frozen=True, slots=True)
class Advice:
    """A scaling recommendation for one series, with its evidence
    (:mod:`opswatch.capacity.advice`): the utilisation over the last day and week, how long
    the trigger held, the trend."""

    resource: str
    check: str
    metric: str
    labels: Labels
    at: datetime
    trigger: str
    #: the 95th percentile of the 5-minute means (the 5th for a "below" trigger)
    day: float
    week: float
    #: the highest 5-minute maximum (the lowest minimum for a "below" trigger) in the week
    peak: float
    #: the longest stretch the trigger held in the last day (seconds)
    sustained_s: float
    #: the trend of the daily means, per week (None: under three days of history)
    per_week: float | None
    recommendation: str
