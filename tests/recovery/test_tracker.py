"""The tracker's side of recovery: REMEDIATING, recovered, escalated (and kept)."""

from __future__ import annotations

import dataclasses

from opswatch.alerts.tracker import AlertTracker
from opswatch.model import AlertState, Evaluation, Finding, Severity, TransitionKind
from tests.conftest import ManualClock

FP = "f00d"


def run(*findings: Finding) -> Evaluation:
    return Evaluation("http:api", tuple(findings), frozenset({"http_down"}))


def down(severity: Severity = Severity.CRITICAL) -> Finding:
    return Finding("http_down", "http:api", FP, severity, "http:api is down", 0.0, {})


def fired(clock: ManualClock) -> AlertTracker:
    tracker = AlertTracker({Severity.CRITICAL: 3600, Severity.EMERGENCY: 1800})
    [transition] = tracker.update(run(down()), clock.now)
    assert transition.kind is TransitionKind.FIRED
    return tracker


def test_a_remediating_alert_is_not_resolved_by_a_run_while_its_recovery_runs(
    clock: ManualClock,
) -> None:
    tracker = fired(clock)
    remediating = tracker.begin_remediation(FP)
    assert remediating is not None
    assert remediating.state is AlertState.REMEDIATING
    assert tracker.update(run(), clock.advance(5), remediating={FP}) == []
    resolved = tracker.recovered(FP, clock.advance(1), "auto-recovered in 6 s after 1 restart")
    assert resolved is not None
    assert resolved.kind is TransitionKind.RESOLVED
    assert resolved.previous_state is AlertState.REMEDIATING
    assert resolved.note == "auto-recovered in 6 s after 1 restart"
    assert tracker.get(FP) is None


def test_a_remediating_alert_gets_no_reminders(clock: ManualClock) -> None:
    tracker = fired(clock)
    tracker.begin_remediation(FP)
    assert tracker.update(run(down()), clock.advance(7200), remediating={FP}) == []


def test_a_failed_recovery_escalates_and_a_later_critical_finding_keeps_it(
    clock: ManualClock,
) -> None:
    tracker = fired(clock)
    tracker.begin_remediation(FP)
    escalated = tracker.escalate(FP, clock.advance(30), "recovery failed: still down")
    assert escalated is not None
    assert escalated.kind is TransitionKind.ESCALATED
    assert (escalated.previous_severity, escalated.alert.severity) == (
        Severity.CRITICAL,
        Severity.EMERGENCY,
    )
    assert escalated.alert.state is AlertState.FIRING
    assert escalated.note == "recovery failed: still down"
    assert tracker.update(run(down()), clock.advance(30)) == []
    alert = tracker.get(FP)
    assert alert is not None
    assert alert.severity is Severity.EMERGENCY
    [resolved] = tracker.update(run(), clock.advance(30))
    assert resolved.kind is TransitionKind.RESOLVED


def test_an_escalation_survives_a_reload_of_the_tracker(clock: ManualClock) -> None:
    tracker = fired(clock)
    tracker.escalate(FP, clock.now, "recovery failed")
    reloaded = AlertTracker({Severity.CRITICAL: 3600})
    reloaded.load(tracker.active())
    assert reloaded.update(run(down()), clock.advance(30)) == []
    restarted = AlertTracker({Severity.CRITICAL: 3600})
    restarted.load([dataclasses.replace(a, escalated=False) for a in tracker.active()])
    restarted.mark_escalated(FP)
    assert restarted.update(run(down()), clock.advance(30)) == []
