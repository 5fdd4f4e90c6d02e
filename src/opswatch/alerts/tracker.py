"""Turn each run's findings into alert lifecycle transitions: dedup, severity, reminders.

The tracker holds the active (unresolved) alerts in memory; time comes in as ``now``.

Persistence: every call that changes an alert's stored fields (``update``, ``acknowledge``,
the recovery calls) records it, and :meth:`AlertTracker.take` hands over the changes of the
alerts a caller names, once (the latest version of each, resolved ones included), so the
commit path (:mod:`opswatch.alerts.book`) writes them with their transitions in one
transaction. Every alert with a finding this run is among them, since its ``last_seen_at``
moved. A write that fails hands its :class:`Changes` back to :meth:`AlertTracker.restore`, so
memory is never ahead of the store.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta

from opswatch.model import (
    Alert,
    AlertState,
    Evaluation,
    Finding,
    Severity,
    Transition,
    TransitionKind,
)

_Key = tuple[str, datetime]


@dataclasses.dataclass(frozen=True, slots=True)
class Changes:
    """Changed alerts taken for one write: the latest version of each (``alerts``) and, to
    undo them when the write fails, what the tracker held before the first of the changes."""

    alerts: list[Alert]
    before: dict[_Key, Alert | None]

    def __bool__(self) -> bool:
        return bool(self.alerts)


class AlertTracker:
    """Alert lifecycle. ``repeat_interval`` gives, per severity, the seconds between reminders
    of an unacknowledged alert; a severity left out gets no reminders."""

    def __init__(self, repeat_interval: Mapping[Severity, float]) -> None:
        self._repeat = _repeat_intervals(repeat_interval)
        self._active: dict[str, Alert] = {}
        # (fingerprint, started_at) -> latest version: a resolved episode and the next one
        # of the same fingerprint are two records
        self._changed: dict[_Key, Alert] = {}
        # the active version each changed key had before its first change since taken
        self._before: dict[_Key, Alert | None] = {}

    def load(self, alerts: Iterable[Alert]) -> None:
        """Take over the active alerts from the store at start-up (resolved ones are ignored).
        Loading is not a change: nothing is handed to :meth:`take_changed` for it."""
        for alert in alerts:
            if alert.state != AlertState.RESOLVED:
                self._active[alert.fingerprint] = alert

    def active(self) -> list[Alert]:
        """Active alerts, the most severe first, then the oldest first."""
        return sorted(
            self._active.values(),
            key=lambda a: (-a.severity.rank, a.started_at, a.fingerprint),
        )

    def each(self) -> Iterable[Alert]:
        """Active alerts in no particular order (a muter asks for them per finding)."""
        return self._active.values()

    def get(self, fingerprint: str) -> Alert | None:
        """The active alert with ``fingerprint``, if any."""
        return self._active.get(fingerprint)

    def pending(self, fingerprint: str) -> bool:
        """Whether ``fingerprint`` has changes not yet taken for a write (a check's run between
        its update and its commit): an operator action waits for that commit."""
        return any(key[0] == fingerprint for key in self._changed)

    def take(self, fingerprints: Collection[str] | None = None) -> Changes:
        """The changes of the alerts with ``fingerprints`` (default: all), latest version of
        each in the order first changed, then forget them. Changes of other alerts stay for
        their own writer: a check's run never writes another's half-made alert."""
        keys = [k for k in self._changed if fingerprints is None or k[0] in fingerprints]
        alerts = [self._changed.pop(k) for k in keys]
        return Changes(alerts, {k: self._before.pop(k) for k in keys})

    def restore(self, changes: Changes) -> None:
        """Undo ``changes`` whose write failed: each alert goes back to what it was before
        them, unless a later change (already someone else's) replaced it meanwhile."""
        for alert in reversed(changes.alerts):  # the newest first: an episode, then its end
            key = (alert.fingerprint, alert.started_at)
            current = self._active.get(alert.fingerprint)
            resolved = alert.state is AlertState.RESOLVED
            if current is not (None if resolved else alert):
                continue
            before = changes.before[key]
            if before is None:
                self._active.pop(alert.fingerprint, None)
            else:
                self._active[alert.fingerprint] = before

    def replace_check(self, check: str, alerts: Iterable[Alert]) -> None:
        """Forget the alerts of ``check`` and hold ``alerts`` instead (a replica taking a check
        over or leaving it; nothing is recorded as changed)."""
        for fingerprint in [f for f, a in self._active.items() if a.check == check]:
            del self._active[fingerprint]
        self.load(alerts)

    def retain(self, keep: Callable[[Alert], bool]) -> None:
        """Forget the active alerts ``keep`` rejects (a reload removed their rule or check)."""
        for fingerprint in [f for f, a in self._active.items() if not keep(a)]:
            del self._active[fingerprint]

    def configure(self, repeat_interval: Mapping[Severity, float]) -> None:
        """Swap the reminder intervals (a reload); the alerts are kept."""
        self._repeat = _repeat_intervals(repeat_interval)

    def acknowledge(self, fingerprint: str, by: str, now: datetime) -> Alert | None:
        """Acknowledge an active alert by ``by``, until it resolves or its severity rises
        (see :meth:`ack`). Returns the updated alert, or ``None`` when no such alert is
        active."""
        transition = self.ack(fingerprint, by, now)
        return None if transition is None else transition.alert

    # -- operator actions (see alerts/operator.py): each returns its history transition --

    def ack(
        self,
        fingerprint: str,
        by: str,
        now: datetime,
        *,
        comment: str | None = None,
        expires_at: datetime | None = None,
        sticky: bool = False,
    ) -> Transition | None:
        """Acknowledge an active alert: no reminders while the ack holds. It ends when the
        alert resolves, at ``expires_at`` (the next cycle then sends a reminder) and, unless
        ``sticky``, when the severity rises. Acking again replaces author, comment, expiry
        and stickiness (a later expiry extends it). ``None`` when no such alert is active."""
        alert = self._active.get(fingerprint)
        if alert is None:
            return None
        acked = self._put(
            dataclasses.replace(
                alert,
                acked_by=by,
                ack_comment=comment,
                acked_at=now,
                ack_expires_at=expires_at,
                ack_sticky=sticky,
            )
        )
        until = "" if expires_at is None else f" until {expires_at.isoformat()}"
        note = f"acknowledged by {by}{until}" + (f": {comment}" if comment else "")
        return Transition(
            acked, TransitionKind.ACKNOWLEDGED, now, previous_state=alert.state, note=note
        )

    def unack(
        self, fingerprint: str, by: str, now: datetime, *, comment: str | None = None
    ) -> Transition | None:
        """Remove the acknowledgement of an active alert (reminders resume on their usual
        schedule). ``None`` when no such alert is active."""
        alert = self._active.get(fingerprint)
        if alert is None:
            return None
        unacked = self._put(_without_ack(alert))
        note = f"unacknowledged by {by}" + (f": {comment}" if comment else "")
        return Transition(
            unacked, TransitionKind.UNACKNOWLEDGED, now, previous_state=alert.state, note=note
        )

    def resolve(
        self, fingerprint: str, by: str, now: datetime, *, comment: str | None = None
    ) -> Transition | None:
        """An operator resolves an active alert (its condition is gone or was wrong): a
        RESOLVED transition noted ``resolved by <by>: <comment>``. The next finding of the
        same series opens a new alert. ``None`` when no such alert is active."""
        alert = self._active.get(fingerprint)
        if alert is None:
            return None
        resolved = dataclasses.replace(alert, state=AlertState.RESOLVED, resolved_at=now)
        self._note(resolved)
        del self._active[fingerprint]
        note = f"resolved by {by}" + (f": {comment}" if comment else "")
        return Transition(
            resolved, TransitionKind.RESOLVED, now, previous_state=alert.state, note=note
        )

    def update(
        self,
        evaluation: Evaluation,
        now: datetime,
        *,
        remediating: Collection[str] = (),
        muted: Callable[[Alert], bool] = lambda alert: False,
    ) -> list[Transition]:
        """Apply one run's evaluation; returns the transitions in a stable order: one per
        finding that fired, changed severity or is due a reminder, then one per resolution.

        ``remediating``: fingerprints whose recovery is in progress: a run that no longer
        finds them does not resolve them (the recovery's verification does, see
        :meth:`recovered`).

        ``muted``: whether a silence mutes an alert now. A firing it mutes is kept
        ``notified=False`` (no reminders); the first run it no longer mutes the alert gives a
        FIRED again, notified like a new firing (see :meth:`_unmuted`)."""
        transitions: list[Transition] = []
        found: set[str] = set()
        for finding in evaluation.findings:
            found.add(finding.fingerprint)
            transition = self._apply(finding, now, muted)
            if transition is not None:
                transitions.append(transition)

        gone = [
            alert
            for fp, alert in self._active.items()
            if fp not in found
            and alert.check == evaluation.check
            and alert.rule in evaluation.rules
            and fp not in remediating
        ]
        for alert in sorted(gone, key=lambda a: (a.started_at, a.fingerprint)):
            resolved = dataclasses.replace(
                alert,
                state=AlertState.RESOLVED,
                resolved_at=now,
                value=evaluation.observed.get(alert.fingerprint, alert.value),
            )
            self._note(resolved)
            del self._active[alert.fingerprint]
            transitions.append(
                Transition(resolved, TransitionKind.RESOLVED, now, previous_state=alert.state)
            )
        return transitions

    def _apply(
        self, finding: Finding, now: datetime, muted: Callable[[Alert], bool]
    ) -> Transition | None:
        alert = self._active.get(finding.fingerprint)
        if alert is None:
            new = Alert(
                fingerprint=finding.fingerprint,
                rule=finding.rule,
                check=finding.check,
                labels=finding.labels,
                state=AlertState.FIRING,
                severity=finding.severity,
                summary=finding.summary,
                value=finding.value,
                started_at=now,
                last_seen_at=now,
                last_notified_at=now,
            )
            fired = self._put(dataclasses.replace(new, notified=not muted(new)))
            return Transition(fired, TransitionKind.FIRED, now)

        seen = dataclasses.replace(
            alert,
            check=finding.check,
            labels=finding.labels,
            summary=finding.summary,
            value=finding.value,
            last_seen_at=now,
        )
        if not alert.notified and not muted(seen):
            return self._unmuted(seen, now)
        severity = finding.severity
        if alert.escalated and severity.rank <= alert.severity.rank:
            severity = alert.severity  # an escalated alert keeps its raised severity
        if severity != alert.severity:
            # a rise ends a non-sticky ack (reminders re-armed); a fall keeps the ack
            if severity.rank > alert.severity.rank and not alert.ack_sticky:
                seen = _without_ack(seen)
            changed = self._put(dataclasses.replace(seen, severity=severity, last_notified_at=now))
            return Transition(
                changed,
                TransitionKind.SEVERITY_CHANGED,
                now,
                previous_state=alert.state,
                previous_severity=alert.severity,
            )
        if alert.acked_by is not None and not alert.acked(now):
            # the ack expired: it ends, and the reminders it held back resume with one now
            seen = _without_ack(seen)
            remediating = alert.state is AlertState.REMEDIATING  # its outcome will be notified
            if self._repeat.get(alert.severity) is not None and not remediating:
                reminded = self._put(dataclasses.replace(seen, last_notified_at=now))
                return Transition(
                    reminded,
                    TransitionKind.REMINDER,
                    now,
                    previous_state=alert.state,
                    note=f"acknowledgement by {alert.acked_by} expired",
                )
        if self._reminder_due(alert, now):
            reminded = self._put(dataclasses.replace(seen, last_notified_at=now))
            return Transition(reminded, TransitionKind.REMINDER, now, previous_state=alert.state)
        self._put(seen)
        return None

    def _unmuted(self, alert: Alert, now: datetime) -> Transition:
        """The silence that muted ``alert``'s firing ended while it still fires: a FIRED now,
        so that it is notified (and remediated) as a firing the channels never heard of."""
        fired = self._put(dataclasses.replace(alert, notified=True, last_notified_at=now))
        return Transition(
            fired,
            TransitionKind.FIRED,
            now,
            previous_state=alert.state,
            note="its firing was silenced until now",
        )

    # -- recovery (see recovery/runner.py): FIRING -> REMEDIATING -> RESOLVED or ESCALATED --

    def begin_remediation(self, fingerprint: str) -> Alert | None:
        """A recovery starts for the active alert: REMEDIATING (no reminders until it ends;
        the caller passes it in ``update(remediating=...)`` while the recovery runs)."""
        alert = self._active.get(fingerprint)
        if alert is None:
            return None
        return self._put(dataclasses.replace(alert, state=AlertState.REMEDIATING))

    def end_remediation(self, fingerprint: str) -> Alert | None:
        """The recovery did nothing (skipped): back to FIRING, resolved by the rule as usual."""
        alert = self._active.get(fingerprint)
        if alert is None or alert.state is not AlertState.REMEDIATING:
            return alert
        return self._put(dataclasses.replace(alert, state=AlertState.FIRING))

    def recovered(self, fingerprint: str, now: datetime, note: str) -> Transition | None:
        """A verified recovery: the alert resolves, the transition carries ``note``."""
        alert = self._active.get(fingerprint)
        if alert is None:
            return None
        resolved = dataclasses.replace(alert, state=AlertState.RESOLVED, resolved_at=now)
        self._note(resolved)
        del self._active[fingerprint]
        return Transition(
            resolved, TransitionKind.RESOLVED, now, previous_state=alert.state, note=note
        )

    def escalate(self, fingerprint: str, now: datetime, note: str) -> Transition | None:
        """A failed (or refused) recovery: severity one step up (kept against lower findings
        until the alert resolves), FIRING, reminders re-armed; the transition carries
        ``note``."""
        alert = self._active.get(fingerprint)
        if alert is None:
            return None
        kept = alert if alert.ack_sticky else _without_ack(alert)  # a rise, as above
        escalated = self._put(
            dataclasses.replace(
                kept,
                state=AlertState.FIRING,
                severity=alert.severity.raised(),
                escalated=True,
                last_notified_at=now,
            )
        )
        return Transition(
            escalated,
            TransitionKind.ESCALATED,
            now,
            previous_state=alert.state,
            previous_severity=alert.severity,
            note=note,
        )

    def mark_escalated(self, fingerprint: str) -> None:
        """Restore the escalation of a loaded alert (the store keeps it in recovery history)."""
        alert = self._active.get(fingerprint)
        if alert is not None and not alert.escalated:
            self._active[fingerprint] = dataclasses.replace(alert, escalated=True)

    def _reminder_due(self, alert: Alert, now: datetime) -> bool:
        interval = self._repeat.get(alert.severity)
        if interval is None or alert.acked(now) or not alert.notified:
            return False
        if alert.state is AlertState.REMEDIATING:  # its outcome will be notified
            return False
        last = alert.last_notified_at or alert.started_at
        return now - last >= interval

    def _put(self, alert: Alert) -> Alert:
        self._note(alert)
        self._active[alert.fingerprint] = alert
        return alert

    def _note(self, alert: Alert) -> None:
        """Record ``alert`` (its new version) as changed, before it replaces the active one."""
        key = (alert.fingerprint, alert.started_at)
        if key not in self._before:
            held = self._active.get(alert.fingerprint)
            self._before[key] = (
                held if held is not None and held.started_at == alert.started_at else None
            )
        self._changed[key] = alert


def _without_ack(alert: Alert) -> Alert:
    return dataclasses.replace(
        alert,
        acked_by=None,
        ack_comment=None,
        acked_at=None,
        ack_expires_at=None,
        ack_sticky=False,
    )


def _repeat_intervals(repeat_interval: Mapping[Severity, float]) -> dict[Severity, timedelta]:
    for severity, seconds in repeat_interval.items():
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"repeat interval for {severity} must be positive, got {seconds}")
    return {severity: timedelta(seconds=s) for severity, s in repeat_interval.items()}
