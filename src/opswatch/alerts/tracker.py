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

from opswatch.alerts.flapping import FlapDetector
from opswatch.alerts.ladder import Ladder, Step
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
    of an unacknowledged alert; a severity left out gets no reminders. ``flapping`` follows
    each identity's state changes (:mod:`opswatch.alerts.flapping`); ``ladder`` raises the
    severity of unacknowledged alerts with time (:mod:`opswatch.alerts.ladder`)."""

    def __init__(
        self,
        repeat_interval: Mapping[Severity, float],
        *,
        flapping: FlapDetector | None = None,
        ladder: Ladder | None = None,
    ) -> None:
        self._repeat = _repeat_intervals(repeat_interval)
        self._flapping = flapping
        #: replaced by a reload
        self.ladder = ladder or Ladder()
        #: the last resolved version of each flapping identity that fires no more: what the
        #: end of its flapping notifies
        self._flap_last: dict[str, Alert] = {}
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
                if alert.flapping and self._flapping is not None:
                    self._flapping.seed(alert, alert.last_seen_at)

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

    def configure(
        self, repeat_interval: Mapping[Severity, float], ladder: Ladder | None = None
    ) -> None:
        """Swap the reminder intervals and the ladder (a reload); the alerts are kept."""
        self._repeat = _repeat_intervals(repeat_interval)
        self.ladder = ladder or Ladder()

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
        resolved = self._resolved(dataclasses.replace(alert, resolved_at=now))
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
        found = {finding.fingerprint for finding in evaluation.findings}
        gone = [
            alert
            for fp, alert in self._active.items()
            if fp not in found
            and alert.check == evaluation.check
            and alert.rule in evaluation.rules
            and fp not in remediating
        ]
        flaps = self._observe_flapping(evaluation, found, gone, now)
        for finding in evaluation.findings:
            flapping = self._flagged(finding.fingerprint, flaps)
            transition = self._apply(finding, now, muted, flapping)
            if transition is not None:
                transitions.append(transition)
        for alert in sorted(gone, key=lambda a: (a.started_at, a.fingerprint)):
            resolved = self._resolved(
                dataclasses.replace(
                    alert,
                    resolved_at=now,
                    value=evaluation.observed.get(alert.fingerprint, alert.value),
                    flapping=self._flagged(alert.fingerprint, flaps),
                )
            )
            transitions.append(
                Transition(resolved, TransitionKind.RESOLVED, now, previous_state=alert.state)
            )
        if flaps:
            transitions.extend(self._flap_transitions(flaps, now))
        return transitions

    # -- flapping (see alerts/flapping.py) --------------------------------------------------

    def _observe_flapping(
        self, evaluation: Evaluation, found: set[str], gone: list[Alert], now: datetime
    ) -> dict[str, bool]:
        """Feed this run's states to the detector, before the alerts change: which
        identities started (True) or stopped (False) flapping."""
        detector = self._flapping
        if detector is None or not detector.settings.enabled:
            return {}
        active = self._active
        changed = {
            f.fingerprint: f.rule for f in evaluation.findings if f.fingerprint not in active
        }
        changed.update((a.fingerprint, a.rule) for a in gone)
        ended = {a.fingerprint for a in gone}

        def firing(fingerprint: str) -> bool:
            return fingerprint in found or (fingerprint in active and fingerprint not in ended)

        return detector.observe(evaluation.check, evaluation.rules, changed, firing, now)

    def _flagged(self, fingerprint: str, flaps: Mapping[str, bool]) -> bool:
        """Whether this run's transitions of ``fingerprint`` are a flapping alert's (held
        from the channels): it flaps, or it stopped in this run (the end says its state)."""
        detector = self._flapping
        if detector is None:
            return False
        return detector.flapping(fingerprint) or flaps.get(fingerprint) is False

    def _flap_transitions(self, flaps: Mapping[str, bool], now: datetime) -> list[Transition]:
        """A FLAPPING_STARTED or FLAPPING_ENDED per identity whose flapping changed, with
        the alert as it is now (firing, or its last resolved version)."""
        assert self._flapping is not None
        transitions: list[Transition] = []
        for fingerprint, started in flaps.items():
            alert = self._active.get(fingerprint) or self._flap_last.get(fingerprint)
            if alert is None:
                continue
            if started:
                note = self._flapping.reason(fingerprint)
                transitions.append(
                    Transition(alert, TransitionKind.FLAPPING_STARTED, now, note=note)
                )
                continue
            self._flap_last.pop(fingerprint, None)
            calm = dataclasses.replace(alert, flapping=False)
            if fingerprint in self._active:
                self._put(calm)
            score = self._flapping.score(fingerprint)
            note = f"no longer flapping (score {score:.0f}%)"
            transitions.append(Transition(calm, TransitionKind.FLAPPING_ENDED, now, note=note))
        for fingerprint in [f for f in self._flap_last if not self._flapping.flapping(f)]:
            del self._flap_last[fingerprint]  # forgotten by the detector
        return transitions

    def _resolved(self, alert: Alert) -> Alert:
        """``alert`` resolves (``resolved_at`` set by the caller): recorded, no longer
        active; a flapping one is kept for the end of its flapping."""
        resolved = dataclasses.replace(alert, state=AlertState.RESOLVED)
        self._note(resolved)
        del self._active[alert.fingerprint]
        if resolved.flapping:
            self._flap_last[alert.fingerprint] = resolved
        return resolved

    def _apply(
        self, finding: Finding, now: datetime, muted: Callable[[Alert], bool], flapping: bool
    ) -> Transition | None:
        alert = self._active.get(finding.fingerprint)
        if alert is None:
            if flapping:  # a new episode of a flapping identity
                self._flap_last.pop(finding.fingerprint, None)
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
                flapping=flapping,
            )
            fired = self._put(dataclasses.replace(new, notified=not muted(new)))
            return Transition(fired, TransitionKind.FIRED, now)

        step = self.ladder.step(alert) if self.ladder else None
        counted = None if step is None else self._counted(alert, now, muted)
        seen = dataclasses.replace(
            alert,
            check=finding.check,
            labels=finding.labels,
            summary=finding.summary,
            value=finding.value,
            last_seen_at=now,
            flapping=flapping,
            ladder_s=alert.ladder_s if counted is None else counted,
        )
        if not alert.notified and not muted(seen):
            return self._unmuted(seen, now)
        severity = finding.severity
        if (alert.escalated or alert.climbed) and severity.rank <= alert.severity.rank:
            severity = alert.severity  # an escalated or climbed alert keeps its severity
        if severity != alert.severity:
            # a rise ends a non-sticky ack (reminders re-armed); a fall keeps the ack
            if severity.rank > alert.severity.rank and not alert.ack_sticky:
                seen = _without_ack(seen)
            # a change the muter holds back: the channels still know the severity before it
            heard = (alert.heard_severity or alert.severity) if muted(seen) else None
            changed = self._put(
                dataclasses.replace(
                    seen,
                    severity=severity,
                    last_notified_at=now,
                    ladder_s=0.0,
                    heard_severity=None if heard is severity else heard,
                )
            )
            return Transition(
                changed,
                TransitionKind.SEVERITY_CHANGED,
                now,
                previous_state=alert.state,
                previous_severity=alert.severity,
            )
        if alert.heard_severity is not None and not muted(seen):
            return self._unmuted_change(seen, alert.heard_severity, now)
        if step is not None and counted is not None and counted >= step.after_s:
            return self._climb(alert, seen, step, now)
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

    # -- the severity ladder (see alerts/ladder.py) -------------------------------------------

    def _counted(self, alert: Alert, now: datetime, muted: Callable[[Alert], bool]) -> float | None:
        """The seconds on ``alert``'s ladder step with this run's counted (``None``: this run
        does not count: not firing, acknowledged or muted)."""
        if alert.state is not AlertState.FIRING or alert.acked(now) or muted(alert):
            return None
        since = min((now - alert.last_seen_at).total_seconds(), self.ladder.gap_s)
        return alert.ladder_s + max(0.0, since)

    def _climb(self, alert: Alert, seen: Alert, step: Step, now: datetime) -> Transition:
        """``step`` is done: the CLIMBED transition to its severity."""
        climbed = self._put(
            dataclasses.replace(
                seen, severity=step.target, climbed=True, ladder_s=0.0, last_notified_at=now
            )
        )
        return Transition(
            climbed,
            TransitionKind.CLIMBED,
            now,
            previous_state=alert.state,
            previous_severity=alert.severity,
            note=f"unacknowledged: severity ladder step {step.text}",
        )

    def _unmuted_change(self, alert: Alert, heard: Severity, now: datetime) -> Transition:
        """The muting that held back ``alert``'s severity change ended while it still fires at
        the new severity: a SEVERITY_CHANGED from the one the channels heard, notified now."""
        changed = self._put(dataclasses.replace(alert, heard_severity=None, last_notified_at=now))
        return Transition(
            changed,
            TransitionKind.SEVERITY_CHANGED,
            now,
            previous_state=alert.state,
            previous_severity=heard,
            note="its severity changed while it was muted",
        )

    def _unmuted(self, alert: Alert, now: datetime) -> Transition:
        """The silence that muted ``alert``'s firing ended while it still fires: a FIRED now,
        so that it is notified (and remediated) as a firing the channels never heard of."""
        fired = self._put(
            dataclasses.replace(alert, notified=True, last_notified_at=now, heard_severity=None)
        )
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
        resolved = self._resolved(dataclasses.replace(alert, resolved_at=now))
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
                ladder_s=0.0,
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
