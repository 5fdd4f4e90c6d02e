"""The JSON codec: every field of stored alerts and transitions survives a round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from opswatch.codec import (
    notification_from_json,
    notification_to_json,
    transition_from_json,
    transition_to_json,
)
from opswatch.model import (
    Alert,
    AlertState,
    Notification,
    Severity,
    Transition,
    TransitionKind,
    fingerprint,
)

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _escalation() -> Transition:
    labels = {"target": "api"}
    alert = Alert(
        fingerprint=fingerprint("http_down", labels),
        rule="http_down",
        check="http:api",
        labels=labels,
        state=AlertState.FIRING,
        severity=Severity.EMERGENCY,
        summary="http:api is down",
        value=0.0,
        started_at=AT,
        last_seen_at=AT,
        last_notified_at=AT,
        acked_by="ops",
        escalated=True,
    )
    return Transition(
        alert,
        TransitionKind.ESCALATED,
        AT,
        previous_state=AlertState.REMEDIATING,
        previous_severity=Severity.CRITICAL,
        note="recovery failed: exit status 1",
        evidence=("top cpu: python 97%",),
    )


def test_a_transition_with_recovery_note_and_evidence_round_trips_through_json() -> None:
    transition = _escalation()
    assert transition_from_json(json.loads(json.dumps(transition_to_json(transition)))) == (
        transition
    )


def test_a_notification_round_trips_through_json() -> None:
    notification = Notification((_escalation(),), "t", "x", Severity.EMERGENCY, "k")
    encoded = json.dumps(notification_to_json(notification))
    assert notification_from_json(json.loads(encoded)) == notification


def test_rows_written_before_recovery_existed_still_decode() -> None:
    data = transition_to_json(_escalation())
    del data["note"], data["evidence"], data["alert"]["escalated"]
    old = transition_from_json(data)
    assert (old.note, old.evidence, old.alert.escalated) == (None, (), False)
