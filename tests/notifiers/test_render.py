"""Wording of notifications: titles, per-alert text, severity and the idempotency key."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest

from opswatch.config import ConfigError, Env
from opswatch.model import Severity, TransitionKind
from opswatch.notifiers.render import (
    RenderOptions,
    as_fallback,
    fallback_note,
    format_duration,
    format_value,
    is_fallback,
    merge,
    render,
    views,
)
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


def test_a_reminder_after_hours_says_since_when_and_for_how_long_it_has_been_firing() -> None:
    now = T0 + timedelta(hours=4, minutes=2)
    group = [transition(kind=TransitionKind.REMINDER, at=now, started_at=T0)]

    text = render(group, now).text

    assert "still firing, for 4 h 2 min now" in text
    assert "started: 2026-01-01T12:00:00Z" in text
    (alert,) = views(group, now)
    assert (alert.duration, alert.started) == ("4 h 2 min", "2026-01-01T12:00:00Z")


def test_a_resolved_view_lasts_until_its_resolution_not_until_now() -> None:
    resolved_at = T0 + timedelta(minutes=30)
    group = [transition(kind=TransitionKind.RESOLVED, at=resolved_at, value=1.5)]

    (alert,) = views(group, resolved_at + timedelta(hours=5))

    assert alert.resolved
    assert alert.duration == "30 min"
    assert (alert.value_label, alert.value) == ("value at resolution", "1.5")


def test_a_runbook_template_adds_a_link_per_alert() -> None:
    options = RenderOptions.from_env(
        Env({"OPSWATCH_RUNBOOK_URL": "https://wiki.example/runbooks/{rule}?src=opswatch"})
    )

    text = render([transition("disk_full")], T0, options).text

    assert "runbook: https://wiki.example/runbooks/disk_full?src=opswatch" in text
    assert "runbook" not in render([transition("disk_full")], T0).text


@pytest.mark.parametrize(
    "template", ["https://wiki.example/{rule}/{check}", "not a url {rule}", "https://x/{"]
)
def test_a_bad_runbook_template_is_a_config_error(template: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RenderOptions.from_env(Env({"OPSWATCH_RUNBOOK_URL": template}))

    assert caught.value.variable == "OPSWATCH_RUNBOOK_URL"


def test_merge_keeps_the_latest_transition_of_each_alert_and_words_it_as_of_then() -> None:
    fired = render([transition("a"), transition("b")], T0)
    resolved = render([transition("a", kind=TransitionKind.RESOLVED, at=LATER)], LATER)

    merged = merge([fired, resolved])

    assert [(t.alert.rule, t.kind) for t in merged.transitions] == [
        ("a", TransitionKind.RESOLVED),
        ("b", TransitionKind.FIRED),
    ]
    assert merged.title == "[FIRING:1] b on host"
    assert "firing for 12 min" in merged.text  # b, as of the latest transition
    assert merged.idempotency_key == merge([fired, resolved]).idempotency_key


def test_a_fallback_copy_is_marked_and_keeps_the_idempotency_key() -> None:
    original = render([transition()], T0)

    copy = as_fallback(original, "slack:ops", "permanent error: channel_not_found")

    assert is_fallback(copy)
    assert not is_fallback(original)
    assert copy.title == "[fallback] " + original.title
    assert copy.idempotency_key == original.idempotency_key
    assert fallback_note(copy) == (
        "Sent to the fallback channel: delivery to slack:ops failed "
        "(permanent error: channel_not_found)."
    )
    assert copy.text.endswith(original.text)


def test_what_recovery_did_and_the_evidence_are_part_of_the_text() -> None:
    recovered = dataclasses.replace(
        transition(kind=TransitionKind.RESOLVED, at=LATER),
        note="auto-recovered in 12 s after 1 restart",
        evidence=("top: postgres 93% CPU", "top: java 4% CPU"),
    )

    text = render([recovered], LATER).text

    assert "  actions: auto-recovered in 12 s after 1 restart" in text
    assert "  evidence:\n    top: postgres 93% CPU\n    top: java 4% CPU" in text


_LINKS = {"OPSWATCH_EXTERNAL_URL": "https://ops.example/opswatch/", "OPSWATCH_API_TOKEN": "t" * 20}


def test_with_an_external_url_every_alert_links_to_the_daemons_runbook_page() -> None:
    options = RenderOptions.from_env(Env(_LINKS))

    (fired,) = views([transition("disk_full")], T0, options)
    (resolved,) = views(
        [transition("disk_full", kind=TransitionKind.RESOLVED, at=LATER)], LATER, options
    )

    assert fired.runbook == "https://ops.example/opswatch/runbooks/disk_full"
    assert resolved.runbook == fired.runbook  # a resolution links too (unlike the ack link)
    assert resolved.ack_url is None


def test_a_configured_runbook_template_wins_over_the_daemons_page() -> None:
    options = RenderOptions.from_env(
        Env({**_LINKS, "OPSWATCH_RUNBOOK_URL": "https://wiki.example/runbooks/{rule}"})
    )

    text = render([transition("disk_full")], T0, options).text

    assert "runbook: https://wiki.example/runbooks/disk_full" in text
    assert "ops.example/opswatch/runbooks" not in text
