"""The JSON codec: every field of stored alerts and transitions survives a round trip."""

from __future__ import annotations

import dataclasses
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
    NotificationKind,
    Severity,
    Transition,
    TransitionKind,
    fingerprint,
)
from opswatch.notifiers.render import as_fallback

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


def test_a_fallback_copy_keeps_its_note_in_a_field_and_round_trips() -> None:
    original = Notification((_escalation(),), "[FIRING:1] http_down", "x", Severity.EMERGENCY, "k")
    copy = as_fallback(original, "slack:ops", "HTTP 500")
    assert (
        copy.fallback_note
        == "Sent to the fallback channel: delivery to slack:ops failed (HTTP 500)."
    )
    assert copy.kind is NotificationKind.TRANSITIONS
    assert notification_from_json(json.loads(json.dumps(notification_to_json(copy)))) == copy


def test_fallback_rows_written_before_the_field_existed_still_decode_as_fallback() -> None:
    copy = as_fallback(Notification((_escalation(),), "t", "x", Severity.EMERGENCY, "k"), "c", "r")
    data = notification_to_json(copy)
    del data["fallback_note"], data["kind"]
    old = notification_from_json(data)
    assert old.fallback_note == copy.fallback_note
    plain = notification_to_json(Notification((_escalation(),), "t", "x", Severity.EMERGENCY, "k"))
    del plain["fallback_note"], plain["kind"]
    assert notification_from_json(plain).fallback_note is None


def test_flapping_and_ladder_fields_round_trip_and_older_rows_decode_without_them() -> None:
    escalation = _escalation()
    alert = dataclasses.replace(escalation.alert, flapping=True, ladder_s=1230.5, climbed=True)
    climb = dataclasses.replace(escalation, alert=alert, kind=TransitionKind.CLIMBED)
    assert transition_from_json(json.loads(json.dumps(transition_to_json(climb)))) == climb
    data = transition_to_json(climb)
    del data["alert"]["flapping"], data["alert"]["ladder_s"], data["alert"]["climbed"]
    old = transition_from_json(data).alert
    assert (old.flapping, old.ladder_s, old.climbed) == (False, 0.0, False)
