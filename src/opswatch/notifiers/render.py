"""Wording of notifications: the one place a group of transitions becomes a title and a text.

Pure: the same transitions and ``now`` always give the same :class:`Notification`. Every
notifier sends ``title``/``text`` as they are (or, like the webhook, a structured body built
from ``Notification.transitions``), so the wording is decided once, here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from opswatch.model import AlertState, Notification, Severity, Transition, TransitionKind

_MAX_RULES_IN_TITLE = 3


def render(transitions: Sequence[Transition], now: datetime) -> Notification:
    """One notification for a group of transitions (usually one collector run's)."""
    if not transitions:
        raise ValueError("render() needs at least one transition")
    ordered = sorted(transitions, key=lambda t: (is_resolved(t), -t.alert.severity.rank))
    return Notification(
        transitions=tuple(transitions),
        title=_title(transitions),
        text="\n\n".join(_describe(t, now) for t in ordered),
        severity=max((t.alert.severity for t in transitions), key=lambda s: s.rank),
        idempotency_key=idempotency_key(transitions),
    )


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
    rules = list(dict.fromkeys(t.alert.rule for t in (firing or transitions)))
    subject = ", ".join(rules[:_MAX_RULES_IN_TITLE])
    if len(rules) > _MAX_RULES_IN_TITLE:
        subject += f" +{len(rules) - _MAX_RULES_IN_TITLE} more"
    checks = {t.alert.check for t in (firing or transitions)}
    if len(checks) == 1:
        subject += f" on {next(iter(checks))}"
    return f"{status} {subject}"


def _describe(transition: Transition, now: datetime) -> str:
    alert = transition.alert
    header = f"{alert.severity.value.upper()} {alert.rule} on {alert.check}: {alert.summary}"
    lines = [header, f"  {_what_happened(transition, now)}"]
    label = "value at resolution" if is_resolved(transition) else "value"
    lines.append(f"  {label}: {format_value(alert.value)}")
    if alert.labels:
        lines.append(
            "  labels: " + ", ".join(f"{k}={alert.labels[k]}" for k in sorted(alert.labels))
        )
    lines.append(f"  started: {utc_iso(alert.started_at)}")
    if alert.acked_by:
        lines.append(f"  acknowledged by: {alert.acked_by}")
    return "\n".join(lines)


def _what_happened(transition: Transition, now: datetime) -> str:
    alert = transition.alert
    firing_for = format_duration((now - alert.started_at).total_seconds())
    match transition.kind:
        case TransitionKind.RESOLVED:
            ended = alert.resolved_at or transition.at
            lasted = format_duration((ended - alert.started_at).total_seconds())
            return f"resolved at {utc_iso(ended)} after {lasted}"
        case TransitionKind.REMINDER:
            return f"still firing, for {firing_for} now"
        case TransitionKind.ESCALATED:
            change = _severity_change(transition.previous_severity, alert.severity)
            return f"escalated {change}, firing for {firing_for}"
        case TransitionKind.SEVERITY_CHANGED:
            change = _severity_change(transition.previous_severity, alert.severity)
            return f"severity changed {change}, firing for {firing_for}"
        case _:
            return f"firing for {firing_for}"


def _severity_change(previous: Severity | None, current: Severity) -> str:
    if previous is None:
        return f"to {current.value}"
    return f"from {previous.value} to {current.value}"
