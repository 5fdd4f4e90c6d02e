"""AlertTracker: dedup, reminders, severity changes, resolution, acks, restarts."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from opswatch.alerts.tracker import AlertTracker
from opswatch.model import (
    Alert,
    AlertState,
    Evaluation,
    Finding,
    Sample,
    Severity,
    Transition,
    TransitionKind,
    fingerprint,
)
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.rules.threshold import Level, ThresholdRule
from tests.conftest import ManualClock

W, C = Severity.WARNING, Severity.CRITICAL
DISK = {"mountpoint": "/var"}
DISK_FP = fingerprint("disk_full", DISK)
HOUR = 3600.0


def finding(severity: Severity = W, value: float = 87.0, labels: dict[str, str] = DISK) -> Finding:
    return Finding(
        rule="disk_full",
        check="host",
        fingerprint=fingerprint("disk_full", labels),
        severity=severity,
        summary=f"disk {labels['mountpoint']} is {value:.1f}% full",
        value=value,
        labels=labels,
    )


def run(
    *findings: Finding,
    check: str = "host",
    rules: frozenset[str] = frozenset({"disk_full"}),
    observed: dict[str, float] | None = None,
) -> Evaluation:
    return Evaluation(check, tuple(findings), rules, observed or {})


def tracker() -> AlertTracker:
    return AlertTracker({W: 4 * HOUR, C: HOUR})


def kinds(transitions: list[Transition]) -> list[TransitionKind]:
    return [t.kind for t in transitions]


def test_a_new_finding_fires_an_alert(clock: ManualClock) -> None:
    alerts = tracker()
    [fired] = alerts.update(run(finding()), clock.now)
    assert fired.kind is TransitionKind.FIRED
    assert fired.previous_state is None
    assert fired.at == clock.now
    assert fired.alert == Alert(
        fingerprint=DISK_FP,
        rule="disk_full",
        check="host",
        labels=DISK,
        state=AlertState.FIRING,
        severity=W,
        summary="disk /var is 87.0% full",
        value=87.0,
        started_at=clock.now,
        last_seen_at=clock.now,
        last_notified_at=clock.now,
    )
    assert alerts.get(DISK_FP) == fired.alert


def test_the_same_finding_for_ten_cycles_fires_once(clock: ManualClock) -> None:
    alerts = tracker()
    transitions: list[Transition] = []
    for cycle in range(10):
        transitions += alerts.update(run(finding(value=87 + cycle / 10)), clock.now)
        clock.advance(30)
    assert kinds(transitions) == [TransitionKind.FIRED]
    alert = alerts.get(DISK_FP)
    assert alert is not None
    assert alert.value == pytest.approx(87.9)
    assert alert.last_seen_at == clock.now - timedelta(seconds=30)
    assert alert.started_at == clock.now - timedelta(seconds=300)


def test_reminds_after_the_repeat_interval_and_not_before(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(C)), clock.now)
    clock.advance(HOUR - 1)
    assert alerts.update(run(finding(C)), clock.now) == []
    clock.advance(1)
    [reminder] = alerts.update(run(finding(C)), clock.now)
    assert reminder.kind is TransitionKind.REMINDER
    assert reminder.previous_state is AlertState.FIRING
    assert reminder.alert.last_notified_at == clock.now
    clock.advance(HOUR - 1)
    assert alerts.update(run(finding(C)), clock.now) == []


def test_a_severity_without_a_repeat_interval_gets_no_reminders(clock: ManualClock) -> None:
    alerts = AlertTracker({C: HOUR})
    alerts.update(run(finding(W)), clock.now)
    clock.advance(100 * HOUR)
    assert alerts.update(run(finding(W)), clock.now) == []


def test_a_severity_change_is_a_transition_and_restarts_the_reminder_clock(
    clock: ManualClock,
) -> None:
    alerts = tracker()
    start = clock.now
    alerts.update(run(finding(W)), clock.now)
    clock.advance(600)
    [up] = alerts.update(run(finding(C, 92)), clock.now)
    assert up.kind is TransitionKind.SEVERITY_CHANGED
    assert up.previous_severity is W
    assert up.previous_state is AlertState.FIRING
    assert up.alert.severity is C
    assert up.alert.started_at == start
    assert up.alert.last_notified_at == clock.now
    clock.advance(HOUR - 1)
    assert alerts.update(run(finding(C, 92)), clock.now) == []
    [down] = alerts.update(run(finding(W, 86)), clock.now)
    assert (down.kind, down.previous_severity, down.alert.severity) == (
        TransitionKind.SEVERITY_CHANGED,
        C,
        W,
    )


def test_resolves_with_the_value_at_resolution(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(value=87)), clock.now)
    seen = clock.now
    clock.advance(30)
    [resolved] = alerts.update(run(observed={DISK_FP: 41.5}), clock.now)
    assert resolved.kind is TransitionKind.RESOLVED
    assert resolved.previous_state is AlertState.FIRING
    assert resolved.alert.state is AlertState.RESOLVED
    assert resolved.alert.resolved_at == clock.now
    assert resolved.alert.last_seen_at == seen
    assert resolved.alert.value == 41.5
    assert alerts.get(DISK_FP) is None
    assert alerts.active() == []


def test_resolves_with_the_last_value_when_nothing_was_observed(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(value=87)), clock.now)
    [resolved] = alerts.update(run(), clock.now)
    assert resolved.alert.value == 87


def test_a_failed_collector_run_does_not_resolve(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding()), clock.now)
    clock.advance(30)
    assert alerts.update(run(rules=frozenset()), clock.now) == []
    assert alerts.get(DISK_FP) is not None


def test_another_checks_run_does_not_resolve(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding()), clock.now)
    assert alerts.update(run(check="host:other"), clock.now) == []
    assert alerts.get(DISK_FP) is not None


def test_a_vanished_series_resolves(clock: ManualClock) -> None:
    rule = ThresholdRule(
        "disk_full", "host.disk_used_percent", ">", (Level(W, 85, 82),), "disk {mountpoint}"
    )
    evaluator, alerts = RuleEvaluator([rule]), tracker()

    def disk(mountpoint: str, value: float) -> Sample:
        return Sample(
            "host", "host.disk_used_percent", value, clock.now, {"mountpoint": mountpoint}
        )

    fired = alerts.update(evaluator.evaluate("host", [disk("/", 50), disk("/mnt", 95)]), clock.now)
    assert kinds(fired) == [TransitionKind.FIRED]
    clock.advance(30)
    [gone] = alerts.update(evaluator.evaluate("host", [disk("/", 50)]), clock.now)
    assert gone.kind is TransitionKind.RESOLVED
    assert gone.alert.labels == {"mountpoint": "/mnt"}
    assert gone.alert.value == 95


def test_a_for_two_alert_keeps_firing_across_a_restart_without_a_transition(
    clock: ManualClock,
) -> None:
    def down_rule() -> ThresholdRule:
        return ThresholdRule("http_down", "http.up", "<", (Level(C, 1, 1),), "down", for_cycles=2)

    def up(value: float) -> list[Sample]:
        return [Sample("http:api", "http.up", value, clock.now, {"target": "api"})]

    evaluator, alerts = RuleEvaluator([down_rule()]), tracker()
    transitions: list[Transition] = []
    for _ in range(2):
        transitions += alerts.update(evaluator.evaluate("http:api", up(0)), clock.now)
        clock.advance(30)
    assert kinds(transitions) == [TransitionKind.FIRED]
    stored = alerts.active()

    # restart: fresh objects, state reloaded from the store
    evaluator, alerts = RuleEvaluator([down_rule()]), tracker()
    evaluator.seed(stored)
    alerts.load(stored)
    assert alerts.update(evaluator.evaluate("http:api", up(0)), clock.now) == []
    alert = alerts.get(stored[0].fingerprint)
    assert alert is not None
    assert alert.started_at == stored[0].started_at
    assert alert.last_seen_at == clock.now
    clock.advance(30)
    [resolved] = alerts.update(evaluator.evaluate("http:api", up(1)), clock.now)
    assert resolved.kind is TransitionKind.RESOLVED


def test_acknowledging_suppresses_reminders(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(C)), clock.now)
    acked = alerts.acknowledge(DISK_FP, "alice", clock.now)
    assert acked is not None
    assert acked.acked_by == "alice"
    clock.advance(10 * HOUR)
    assert alerts.update(run(finding(C)), clock.now) == []
    alert = alerts.get(DISK_FP)
    assert alert is not None
    assert alert.acked_by == "alice"


def test_a_rise_in_severity_clears_the_acknowledgement_and_a_fall_keeps_it(
    clock: ManualClock,
) -> None:
    alerts = tracker()
    alerts.update(run(finding(W)), clock.now)
    alerts.acknowledge(DISK_FP, "alice", clock.now)
    [up] = alerts.update(run(finding(C)), clock.now)
    assert up.alert.acked_by is None
    alerts.acknowledge(DISK_FP, "bob", clock.now)
    [down] = alerts.update(run(finding(W)), clock.now)
    assert down.alert.acked_by == "bob"


def test_acknowledging_an_unknown_alert_returns_none(clock: ManualClock) -> None:
    assert tracker().acknowledge("0" * 16, "alice", clock.now) is None


def test_active_lists_the_most_severe_then_the_oldest_first(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(W, labels={"mountpoint": "/a"})), clock.now)
    clock.advance(30)
    alerts.update(
        run(
            finding(W, labels={"mountpoint": "/a"}),
            finding(C, labels={"mountpoint": "/b"}),
            finding(W, labels={"mountpoint": "/c"}),
        ),
        clock.now,
    )
    assert [a.labels["mountpoint"] for a in alerts.active()] == ["/b", "/a", "/c"]


def test_load_takes_active_alerts_and_ignores_resolved_ones(clock: ManualClock) -> None:
    alerts = tracker()
    [fired] = alerts.update(run(finding()), clock.now)
    old = dataclasses.replace(
        fired.alert, fingerprint="f" * 16, state=AlertState.RESOLVED, resolved_at=clock.now
    )
    fresh = tracker()
    fresh.load([fired.alert, old])
    assert fresh.active() == [fired.alert]
    assert fresh.take().alerts == []


def test_a_loaded_remediating_alert_keeps_its_state_and_resolves_from_it(
    clock: ManualClock,
) -> None:
    alerts = tracker()
    [fired] = alerts.update(run(finding()), clock.now)
    fresh = tracker()
    fresh.load([dataclasses.replace(fired.alert, state=AlertState.REMEDIATING)])
    assert fresh.update(run(finding()), clock.now) == []
    alert = fresh.get(DISK_FP)
    assert alert is not None
    assert alert.state is AlertState.REMEDIATING
    [resolved] = fresh.update(run(), clock.now)
    assert resolved.previous_state is AlertState.REMEDIATING


def test_take_hands_over_each_changed_alert_once(clock: ManualClock) -> None:
    alerts = tracker()
    a, b = {"mountpoint": "/a"}, {"mountpoint": "/b"}
    alerts.update(run(finding(labels=a), finding(labels=b)), clock.now)
    assert [x.labels for x in alerts.take().alerts] == [a, b]
    assert alerts.take().alerts == []
    clock.advance(30)
    alerts.update(run(finding(labels=a)), clock.now)  # /a seen again, /b resolved
    changed = alerts.take().alerts
    assert [(x.labels, x.state, x.last_seen_at) for x in changed] == [
        (a, AlertState.FIRING, clock.now),
        (b, AlertState.RESOLVED, clock.now - timedelta(seconds=30)),
    ]
    alerts.acknowledge(fingerprint("disk_full", a), "alice", clock.now)
    assert [x.acked_by for x in alerts.take().alerts] == ["alice"]


def test_a_resolved_episode_and_the_next_one_are_both_handed_over(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding()), clock.now)
    clock.advance(30)
    alerts.update(run(), clock.now)
    clock.advance(30)
    alerts.update(run(finding()), clock.now)
    changed = alerts.take().alerts
    assert [(x.state, x.started_at) for x in changed] == [
        (AlertState.RESOLVED, clock.now - timedelta(seconds=60)),
        (AlertState.FIRING, clock.now),
    ]


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("inf"), float("nan")])
def test_rejects_a_repeat_interval_that_is_not_positive_and_finite(seconds: float) -> None:
    with pytest.raises(ValueError, match="repeat interval"):
        AlertTracker({W: seconds})


def test_take_hands_over_only_the_named_alerts_and_keeps_the_others(clock: ManualClock) -> None:
    alerts = tracker()
    a, b = {"mountpoint": "/a"}, {"mountpoint": "/b"}
    alerts.update(run(finding(labels=a), finding(labels=b)), clock.now)
    taken = alerts.take({fingerprint("disk_full", a)})
    assert [x.labels for x in taken.alerts] == [a]
    assert [x.labels for x in alerts.take().alerts] == [b]


def test_restore_undoes_a_firing_a_resolution_and_a_seen_update(clock: ManualClock) -> None:
    alerts = tracker()
    a, b = {"mountpoint": "/a"}, {"mountpoint": "/b"}
    alerts.update(run(finding(labels=a)), clock.now)
    alerts.take()
    before = alerts.active()
    clock.advance(30)
    alerts.update(run(finding(labels=b)), clock.now)  # /b fires, /a resolves
    alerts.restore(alerts.take())
    assert alerts.active() == before
    clock.advance(30)
    alerts.update(run(finding(labels=a)), clock.now)  # /a seen again: last_seen_at moves
    alerts.restore(alerts.take())
    assert alerts.active() == before


def test_restore_leaves_an_alert_changed_again_since(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding()), clock.now)
    first = alerts.take()
    alerts.acknowledge(DISK_FP, "alice", clock.now)  # a later change, someone else's write
    alerts.restore(first)
    alert = alerts.get(DISK_FP)
    assert alert is not None
    assert alert.acked_by == "alice"
