"""Wording of notifications: titles, per-alert text, severity and the idempotency key."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from opswatch.model import Severity, TransitionKind
from opswatch.notifiers.render import format_duration, format_value, render
from tests.notifiers.conftest import T0, transition

LATER = T0 + timedelta(minutes=12)


def test_title_counts_firing_alerts_and_names_the_rule_and_check() -> None:
    group = [
        transition(labels={"cpu": "0"}),
        transition(labels={"cpu": "1"}),
    ]

    assert render(group, LATER).title == "[FIRING:2] cpu_high on host"


def test_title_of_an_all_resolved_group_says_resolved() -> None:
    group = [transition("http_down", check="api", kind=TransitionKind.RESOLVED, at=LATER)]

    assert render(group, LATER).title == "[RESOLVED] http_down on api"


def test_title_of_a_mixed_group_counts_only_firing_alerts_and_lists_their_rules() -> None:
    group = [
        transition("disk_full", check="host"),
        transition("http_down", check="api"),
        transition("cpu_high", kind=TransitionKind.RESOLVED, at=LATER),
    ]

    assert render(group, LATER).title == "[FIRING:2] disk_full, http_down"


def test_title_shortens_a_long_list_of_rules() -> None:
    group = [transition(f"rule_{n}") for n in range(5)]

    assert render(group, LATER).title == "[FIRING:5] rule_0, rule_1, rule_2 +2 more on host"


def test_severity_is_the_highest_in_the_group() -> None:
    group = [
        transition("a", severity=Severity.WARNING),
        transition("b", severity=Severity.CRITICAL),
        transition("c", severity=Severity.INFO),
    ]

    assert render(group, LATER).severity is Severity.CRITICAL


def test_text_of_a_firing_alert_has_severity_summary_value_labels_and_start() -> None:
    group = [transition(severity=Severity.CRITICAL, value=97.25, labels={"z": "1", "a": "2"})]

    text = render(group, LATER).text

    assert "CRITICAL cpu_high on host: CPU busy" in text
    assert "value: 97.25" in text
    assert "labels: a=2, z=1" in text
    assert "started: 2026-01-01T12:00:00Z" in text
    assert "firing for 12 min" in text


def test_text_of_a_resolution_gives_the_value_at_resolution_and_how_long_it_lasted() -> None:
    resolved_at = T0 + timedelta(hours=2, minutes=5)
    group = [transition(kind=TransitionKind.RESOLVED, at=resolved_at, value=12.0)]

    text = render(group, resolved_at).text

    assert "resolved at 2026-01-01T14:05:00Z after 2 h 5 min" in text
    assert "value at resolution: 12" in text


def test_reminder_says_how_long_the_alert_has_been_firing() -> None:
    now = T0 + timedelta(days=1, hours=3)
    group = [transition(kind=TransitionKind.REMINDER, at=now)]

    assert "still firing, for 1 d 3 h now" in render(group, now).text


def test_escalation_names_the_old_and_new_severity() -> None:
    group = [
        transition(
            kind=TransitionKind.ESCALATED,
            severity=Severity.CRITICAL,
            previous_severity=Severity.WARNING,
            at=LATER,
        )
    ]

    assert "escalated from warning to critical" in render(group, LATER).text


def test_text_lists_firing_alerts_before_resolved_ones() -> None:
    group = [
        transition("gone", kind=TransitionKind.RESOLVED, at=LATER),
        transition("here"),
    ]

    text = render(group, LATER).text

    assert text.index("here") < text.index("gone")


def test_idempotency_key_is_32_hex_and_ignores_the_order_of_transitions() -> None:
    first, second = transition("a"), transition("b")

    key = render([first, second], LATER).idempotency_key

    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert render([second, first], LATER).idempotency_key == key
    assert render([first], LATER).idempotency_key != key


def test_idempotency_key_differs_for_a_later_transition_of_the_same_alert() -> None:
    fired = transition()
    resolved = transition(kind=TransitionKind.RESOLVED, at=LATER)

    assert render([fired], LATER).idempotency_key != render([resolved], LATER).idempotency_key


def test_render_keeps_the_transitions_it_was_given() -> None:
    group = (transition("a"), transition("b"))

    assert render(group, LATER).transitions == group


def test_render_refuses_an_empty_group() -> None:
    with pytest.raises(ValueError, match="at least one"):
        render([], LATER)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(-5, "0 s"), (45, "45 s"), (720, "12 min"), (7500, "2 h 5 min"), (7200, "2 h"),
     (97200, "1 d 3 h"), (86400 * 3, "3 d")],
)  # fmt: skip
def test_durations_read_like_a_person_would_say_them(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12.0, "12"), (97.3, "97.3"), (1234567.891, "1234567.89"), (0.004217, "0.00422"),
     (float("nan"), "nan"), (-3.5, "-3.5")],
)  # fmt: skip
def test_values_are_printed_without_float_noise(value: float, expected: str) -> None:
    assert format_value(value) == expected
