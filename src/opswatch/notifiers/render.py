"""Wording of notifications: the one place a group of transitions becomes words.

Pure: the same transitions, ``now`` and options always give the same :class:`Notification`.
Plain-text channels send ``title``/``text`` as they are; structured channels (Slack blocks,
the HTML part of a mail) lay out the :class:`AlertView` of each transition (:func:`views`),
and the webhook builds its JSON from ``Notification.transitions``. So the wording (what
happened, for how long, the value, the runbook link) is decided once, here.

Times are UTC ISO 8601 (``2026-01-01T12:00:00Z``) beside a relative form (``for 12 min``);
``now`` is the moment the group was rendered (the cycle's time), so a notification that is
retried an hour later still says what was true when it happened.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import (
    AlertState,
    Notification,
    Report,
    Severity,
    Transition,
    TransitionKind,
)
from opswatch.notifiers.acklinks import AckLinks

_MAX_RULES_IN_TITLE = 3
_MAX_EVIDENCE_LINES = 20
RUNBOOK_VAR = f"{PREFIX}RUNBOOK_URL"
#: the daemon's own runbook page of a rule, below ``OPSWATCH_EXTERNAL_URL`` (api/runbooks.py)
RUNBOOK_PAGE = "/runbooks/{rule}"
FALLBACK_MARK = "[fallback] "


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """What the wording needs beyond the transitions: the runbook URL template
    (``OPSWATCH_RUNBOOK_URL``, e.g. ``https://wiki.example/runbooks/{rule}``) and the signer
    of one-click ack links (``OPSWATCH_EXTERNAL_URL``, :mod:`opswatch.notifiers.acklinks`).
    Without a template, the runbook link is the daemon's own page
    (``<OPSWATCH_EXTERNAL_URL>/runbooks/<rule>``) when the external URL is set."""

    runbook_template: str | None = None
    ack_links: AckLinks | None = None

    @classmethod
    def from_env(cls, env: Env) -> RenderOptions:
        template = env.raw(RUNBOOK_VAR)
        links = AckLinks.from_env(env)
        if template is None:
            return cls(ack_links=links)
        try:
            example = template.format(rule="cpu_high")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                RUNBOOK_VAR, f"expected a URL template with only {{rule}} in it, got {template!r}"
            ) from None
        parts = urlsplit(example)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(RUNBOOK_VAR, f"expected an http(s) URL template, got {template!r}")
        return cls(template, links)

    def runbook(self, rule: str) -> str | None:
        if self.runbook_template is not None:
            return self.runbook_template.format(rule=quote(rule, safe=""))
        if self.ack_links is not None:
            return self.ack_links.base_url + RUNBOOK_PAGE.format(rule=quote(rule, safe=""))
        return None

    def ack_url(self, transition: Transition, now: datetime) -> str | None:
        """The one-click ack link of a firing transition (None: resolved, or no links)."""
        if self.ack_links is None or is_resolved(transition):
            return None
        return self.ack_links.url(transition.alert, now)


@dataclass(frozen=True, slots=True)
class AlertView:
    """One transition worded for people: every field is display-ready text."""

    resolved: bool
    severity: Severity
    kind: TransitionKind
    rule: str
    check: str
    summary: str
    #: ``firing for 12 min``, ``resolved at ... after 2 h``, ``still firing, for 1 d now``
    happened: str
    #: ``value`` or ``value at resolution``
    value_label: str
    value: str
    labels: tuple[tuple[str, str], ...]
    started: str
    #: how long it has been firing (until resolution for a resolved one): ``12 min``
    duration: str
    runbook: str | None
    acked_by: str | None
    fingerprint: str
    #: what automatic recovery did ("auto-recovered in 12 s after 1 restart"), if anything
    actions: str | None = None
    #: the snapshot taken when the alert fired (top processes, longest queries)
    evidence: tuple[str, ...] = ()
    #: the one-click ack link (``OPSWATCH_EXTERNAL_URL``) of a firing alert
    ack_url: str | None = None


def render(
    transitions: Sequence[Transition],
    now: datetime,
    options: RenderOptions | None = None,
) -> Notification:
    """One notification for a group of transitions (usually one collector run's)."""
    if not transitions:
        raise ValueError("render() needs at least one transition")
    options = options or RenderOptions()
    return Notification(
        transitions=tuple(transitions),
        title=_title(transitions),
        text="\n\n".join(_describe(v) for v in views(transitions, now, options)),
        severity=max((t.alert.severity for t in transitions), key=lambda s: s.rank),
        idempotency_key=idempotency_key(transitions),
    )


def views(
    transitions: Iterable[Transition], now: datetime, options: RenderOptions | None = None
) -> list[AlertView]:
    """The transitions worded, firing ones first, the most severe first."""
    options = options or RenderOptions()
    ordered = sorted(transitions, key=lambda t: (is_resolved(t), -t.alert.severity.rank))
    return [view(t, now, options) for t in ordered]


def view(transition: Transition, now: datetime, options: RenderOptions | None = None) -> AlertView:
    alert = transition.alert
    resolved = is_resolved(transition)
    ended = (alert.resolved_at or transition.at) if resolved else now
    options = options or RenderOptions()
    return AlertView(
        resolved=resolved,
        severity=alert.severity,
        kind=transition.kind,
        rule=alert.rule,
        check=alert.check,
        summary=alert.summary,
        happened=_what_happened(transition, now),
        value_label="value at resolution" if resolved else "value",
        value=format_value(alert.value),
        labels=tuple((k, alert.labels[k]) for k in sorted(alert.labels)),
        started=utc_iso(alert.started_at),
        duration=format_duration((ended - alert.started_at).total_seconds()),
        runbook=options.runbook(alert.rule),
        acked_by=alert.acked_by,
        fingerprint=alert.fingerprint,
        actions=transition.note,
        evidence=transition.evidence[:_MAX_EVIDENCE_LINES],
        ack_url=options.ack_url(transition, now),
    )


def rendered_at(notification: Notification) -> datetime:
    """The moment a stored notification describes: its latest transition's time (every
    transition of one cycle carries the cycle's time)."""
    return max(t.at for t in notification.transitions)


def merge(
    notifications: Sequence[Notification], options: RenderOptions | None = None
) -> Notification:
    """One notification for several (``OPSWATCH_GROUP_WAIT``): the latest transition of each
    alert, worded as of the latest of them."""
    latest: dict[str, Transition] = {}
    for transition in sorted((t for n in notifications for t in n.transitions), key=lambda t: t.at):
        latest[transition.alert.fingerprint] = transition
    if not latest:
        raise ValueError("merge() needs at least one notification")
    group = list(latest.values())
    return render(group, max(t.at for t in group), options)


def as_fallback(notification: Notification, failed_channel: str, reason: str) -> Notification:
    """The notification marked as sent to the fallback channel because ``failed_channel``
    failed. The idempotency key stays: a fallback channel that already has the message
    (same key) does not get it twice."""
    note = f"Sent to the fallback channel: delivery to {failed_channel} failed ({reason})."
    return dataclasses.replace(
        notification,
        title=FALLBACK_MARK + notification.title,
        text=f"{note}\n\n{notification.text}",
        fallback_note=note,
    )


def is_fallback(notification: Notification) -> bool:
    return notification.fallback_note is not None


def fallback_note(notification: Notification) -> str | None:
    """The sentence saying why a fallback copy was sent, or None."""
    return notification.fallback_note


def idempotency_key(transitions: Sequence[Transition]) -> str:
    """sha256 of the sorted transition keys, 32 hex: the same group always gets the same key."""
    canonical = "\n".join(sorted(t.key for t in transitions))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def is_resolved(transition: Transition) -> bool:
    return transition.kind is TransitionKind.RESOLVED or (
        transition.alert.state is AlertState.RESOLVED
    )


def utc_iso(moment: datetime) -> str:
    """``2026-01-01T12:00:00Z`` (UTC, whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_period(report: Report) -> str:
    """``period: 2026-01-01T08:00:00Z - 2026-01-02T08:00:00Z (1 d)``."""
    lasted = format_duration((report.until - report.since).total_seconds())
    return f"period: {utc_iso(report.since)} - {utc_iso(report.until)} ({lasted})"


def format_value(value: float) -> str:
    """A measurement for humans: ``97.3``, ``12``, ``0.0042``, ``1234567.89``."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 5 min``, ``3 d 4 h`` (negative counts as zero)."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def _title(transitions: Sequence[Transition]) -> str:
    firing = [t for t in transitions if not is_resolved(t)]
    status = f"[FIRING:{len(firing)}]" if firing else "[RESOLVED]"
    if all(t.kind is TransitionKind.FLAPPING_STARTED for t in transitions):
        status = "[FLAPPING]"
    rules = list(dict.fromkeys(t.alert.rule for t in (firing or transitions)))
    subject = ", ".join(rules[:_MAX_RULES_IN_TITLE])
    if len(rules) > _MAX_RULES_IN_TITLE:
        subject += f" +{len(rules) - _MAX_RULES_IN_TITLE} more"
    checks = {t.alert.check for t in (firing or transitions)}
    if len(checks) == 1:
        subject += f" on {next(iter(checks))}"
    return f"{status} {subject}"


def _describe(v: AlertView) -> str:
    lines = [
        f"{v.severity.value.upper()} {v.rule} on {v.check}: {v.summary}",
        f"  {v.happened}",
        f"  {v.value_label}: {v.value}",
    ]
    if v.labels:
        lines.append("  labels: " + ", ".join(f"{k}={value}" for k, value in v.labels))
    lines.append(f"  started: {v.started}")
    if v.acked_by:
        lines.append(f"  acknowledged by: {v.acked_by}")
    if v.actions:
        lines.append(f"  actions: {v.actions}")
    if v.runbook:
        lines.append(f"  runbook: {v.runbook}")
    if v.ack_url:
        lines.append(f"  acknowledge: {v.ack_url}")
    if v.evidence:
        lines.append("  evidence:")
        lines.extend(f"    {line}" for line in v.evidence)
    return "\n".join(lines)


def _what_happened(transition: Transition, now: datetime) -> str:
    alert = transition.alert
    firing_for = format_duration((now - alert.started_at).total_seconds())
    match transition.kind:
        case TransitionKind.RESOLVED:
            return _resolved(transition)
        case TransitionKind.REMINDER:
            return f"still firing, for {firing_for} now"
        case TransitionKind.ESCALATED:
            change = _severity_change(transition.previous_severity, alert.severity)
            return f"escalated {change}, firing for {firing_for}"
        case TransitionKind.SEVERITY_CHANGED:
            change = _severity_change(transition.previous_severity, alert.severity)
            return f"severity changed {change}, firing for {firing_for}"
        case TransitionKind.CLIMBED:
            change = _severity_change(transition.previous_severity, alert.severity)
            return f"climbed the severity ladder {change}, unacknowledged, firing for {firing_for}"
        case TransitionKind.FLAPPING_STARTED:
            return f"started flapping ({_state_now(transition, firing_for)}); notifications held"
        case TransitionKind.FLAPPING_ENDED:
            return f"stopped flapping; {_state_now(transition, firing_for)}"
        case _:
            return f"firing for {firing_for}"


def _state_now(transition: Transition, firing_for: str) -> str:
    """``resolved at ... after 2 min`` or ``firing for 12 min``: the state a flapping
    alert is in at the start or end of its flapping."""
    if transition.alert.state is AlertState.RESOLVED:
        return _resolved(transition)
    return f"firing for {firing_for}"


def _resolved(transition: Transition) -> str:
    alert = transition.alert
    ended = alert.resolved_at or transition.at
    lasted = format_duration((ended - alert.started_at).total_seconds())
    return f"resolved at {utc_iso(ended)} after {lasted}"


def _severity_change(previous: Severity | None, current: Severity) -> str:
    if previous is None:
        return f"to {current.value}"
    return f"from {previous.value} to {current.value}"
