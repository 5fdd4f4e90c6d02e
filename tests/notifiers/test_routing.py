"""Routing by labels and severity: a pure function of transitions, route table and history."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from opswatch.config import ConfigError, Env
from opswatch.model import Severity, TransitionKind
from opswatch.notifiers.routing import META_RULE, ChannelRef, RouteTable, channels_for, plan
from tests.notifiers.conftest import transition

HOOK, SLACK, MAIL = "webhook:aaaa0001", "slack:ops", "email:bbbb0002"
CONFIGURED = (ChannelRef("webhook", HOOK), ChannelRef("slack", SLACK), ChannelRef("email", MAIL))
NAMES = ("email", "slack", "webhook")


def table(**environ: str) -> RouteTable:
    return RouteTable.from_env(Env(environ), CONFIGURED, NAMES)


def test_by_default_warning_and_above_go_everywhere_and_info_to_webhooks_only() -> None:
    routes = table()

    assert routes.route(Severity.INFO) == {HOOK}
    for severity in (Severity.WARNING, Severity.CRITICAL, Severity.EMERGENCY):
        assert routes.route(severity) == {HOOK, SLACK, MAIL}
    assert routes.fallback == frozenset()


def test_routes_accept_notifier_names_channel_ids_and_none() -> None:
    routes = table(
        OPSWATCH_ROUTE_INFO="none",
        OPSWATCH_ROUTE_WARNING="slack",
        OPSWATCH_ROUTE_CRITICAL=f"Slack, {MAIL}",
        OPSWATCH_FALLBACK_CHANNEL="webhook",
    )

    assert routes.route(Severity.INFO) == frozenset()
    assert routes.route(Severity.WARNING) == {SLACK}
    assert routes.route(Severity.CRITICAL) == {SLACK, MAIL}
    assert routes.route(Severity.EMERGENCY) == {HOOK, SLACK, MAIL}
    assert routes.fallback == {HOOK}
    assert routes.describe()["critical"] == [SLACK, MAIL]


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("OPSWATCH_ROUTE_WARNING", "pager", "unknown channel 'pager'"),
        ("OPSWATCH_ROUTE_CRITICAL", "slack,webhook:ffff", "unknown channel 'webhook:ffff'"),
        ("OPSWATCH_FALLBACK_CHANNEL", "none", "unknown channel 'none'"),
        ("OPSWATCH_ROUTE_EMERGENCY", "teams", "unknown channel 'teams'"),
    ],
)
def test_an_unknown_channel_name_is_a_config_error_naming_the_variable(
    variable: str, value: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        table(**{variable: value})

    assert caught.value.variable == variable
    assert problem in caught.value.problem


def test_a_known_notifier_that_is_not_configured_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'email' is not configured") as caught:
        RouteTable.from_env(Env({"OPSWATCH_ROUTE_CRITICAL": "email"}), CONFIGURED[:2], NAMES)

    assert caught.value.variable == "OPSWATCH_ROUTE_CRITICAL"


def test_a_firing_goes_to_the_route_of_its_severity() -> None:
    fired = transition(severity=Severity.INFO)

    assert channels_for(fired, table(), {}) == {HOOK}


def test_an_escalation_goes_to_the_critical_route_even_from_info() -> None:
    routes = table(OPSWATCH_ROUTE_WARNING="webhook", OPSWATCH_ROUTE_CRITICAL="slack,email")
    escalated = transition(severity=Severity.WARNING, kind=TransitionKind.ESCALATED)
    notified = {escalated.alert.fingerprint: frozenset({HOOK})}

    assert channels_for(escalated, routes, notified) == {HOOK, SLACK, MAIL}


def test_a_resolution_follows_the_channels_its_alert_was_notified_on() -> None:
    resolved = transition(severity=Severity.INFO, kind=TransitionKind.RESOLVED)
    notified = {resolved.alert.fingerprint: frozenset({HOOK, SLACK})}

    assert channels_for(resolved, table(), notified) == {HOOK, SLACK}


def test_a_reminder_follows_its_firing_even_after_the_route_changed() -> None:
    reminder = transition(kind=TransitionKind.REMINDER)
    notified = {reminder.alert.fingerprint: frozenset({MAIL})}

    assert channels_for(reminder, table(OPSWATCH_ROUTE_WARNING="slack"), notified) == {MAIL}


def test_a_resolution_without_history_goes_to_the_route_of_its_severity() -> None:
    resolved = transition(kind=TransitionKind.RESOLVED, severity=Severity.INFO)

    assert channels_for(resolved, table(), {}) == {HOOK}


def test_a_channel_no_longer_configured_is_dropped_from_the_history() -> None:
    resolved = transition(kind=TransitionKind.RESOLVED, severity=Severity.INFO)
    notified = {resolved.alert.fingerprint: frozenset({"slack:gone"})}

    assert channels_for(resolved, table(), notified) == {HOOK}


def test_a_severity_change_adds_the_new_route_to_where_the_alert_already_went() -> None:
    routes = table(OPSWATCH_ROUTE_WARNING="webhook", OPSWATCH_ROUTE_CRITICAL="email")
    raised = transition(kind=TransitionKind.SEVERITY_CHANGED, severity=Severity.CRITICAL)
    lowered = transition(kind=TransitionKind.SEVERITY_CHANGED, severity=Severity.WARNING)
    notified = {raised.alert.fingerprint: frozenset({HOOK})}

    assert channels_for(raised, routes, notified) == {HOOK, MAIL}
    # back down to warning: still where the critical went (the highest severity's route)
    assert channels_for(lowered, routes, {raised.alert.fingerprint: frozenset({HOOK, MAIL})}) == {
        HOOK,
        MAIL,
    }


def test_the_notifications_failing_alert_never_goes_to_the_broken_channel() -> None:
    failing = transition(
        META_RULE, check="notify", severity=Severity.CRITICAL, labels={"channel": SLACK}
    )

    assert channels_for(failing, table(), {}) == {HOOK, MAIL}


def test_the_notifications_failing_alert_goes_to_the_fallback_when_its_route_is_broken() -> None:
    failing = transition(
        META_RULE, check="notify", severity=Severity.CRITICAL, labels={"channel": SLACK}
    )
    routes = table(OPSWATCH_ROUTE_CRITICAL="slack", OPSWATCH_FALLBACK_CHANNEL="email")

    assert channels_for(failing, routes, {}) == {MAIL}


def test_the_notifications_failing_alert_goes_to_every_other_channel_without_a_fallback() -> None:
    failing = transition(
        META_RULE, check="notify", severity=Severity.CRITICAL, labels={"channel": SLACK}
    )

    assert channels_for(failing, table(OPSWATCH_ROUTE_CRITICAL="slack"), {}) == {HOOK, MAIL}


def test_plan_gives_each_channel_one_message_with_every_transition_routed_to_it() -> None:
    routes = table(OPSWATCH_ROUTE_WARNING="webhook,slack")
    warnings = [transition("disk_full", labels={"mountpoint": f"/d{n}"}) for n in range(200)]
    critical = transition("http_down", check="api", severity=Severity.CRITICAL)

    messages = plan([*warnings, critical], routes, {})

    assert messages == [
        ((HOOK, SLACK), (*warnings, critical)),
        ((MAIL,), (critical,)),
    ]


def test_plan_of_nothing_routed_is_no_message() -> None:
    routes = table(OPSWATCH_ROUTE_INFO="none")

    assert plan([transition(severity=Severity.INFO)], routes, {}) == []


def test_plan_keeps_configuration_order_and_shares_a_message_between_equal_channels() -> None:
    notified: Mapping[str, frozenset[str]] = {}
    group = [transition(severity=Severity.CRITICAL)]

    assert plan(group, table(), notified) == [((HOOK, SLACK, MAIL), tuple(group))]


def test_a_label_route_takes_the_alerts_it_matches_and_the_rest_keep_their_severity_route() -> None:
    routes = table(
        OPSWATCH_ROUTE_MATCH_PAYMENTS="team=payments -> slack",
        OPSWATCH_ROUTE_CRITICAL="email",
    )
    payments = transition("orders_deep", labels={"team": "payments"}, severity=Severity.CRITICAL)
    other = transition("orders_deep", labels={"team": "search"}, severity=Severity.CRITICAL)

    assert channels_for(payments, routes, {}) == {SLACK}
    assert channels_for(other, routes, {}) == {MAIL}


def test_label_routes_are_tried_in_the_order_of_their_names_and_the_first_match_wins() -> None:
    routes = table(
        OPSWATCH_ROUTE_MATCH_20_TEAM="team=payments -> slack",
        OPSWATCH_ROUTE_MATCH_10_DISKS=f"rule=~disk_.*, check!=lab -> {MAIL}, webhook",
    )
    disk = transition("disk_data", labels={"team": "payments"})
    lab = transition("disk_data", check="lab", labels={"team": "payments"})

    assert channels_for(disk, routes, {}) == {MAIL, HOOK}
    assert channels_for(lab, routes, {}) == {SLACK}
    assert routes.describe()["match"] == [
        {"name": "10_disks", "match": ["rule=~disk_.*", "check!=lab"], "channels": [HOOK, MAIL]},
        {"name": "20_team", "match": ["team=payments"], "channels": [SLACK]},
    ]


def test_a_resolution_still_follows_where_a_label_routed_alert_was_notified() -> None:
    routes = table(OPSWATCH_ROUTE_MATCH_PAYMENTS="team=payments -> none")
    resolved = transition(labels={"team": "payments"}, kind=TransitionKind.RESOLVED)

    assert channels_for(resolved, routes, {resolved.alert.fingerprint: frozenset({SLACK})}) == {
        SLACK
    }


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("team=payments slack", "expected 'MATCHER, ... -> CHANNEL, ...'"),
        (" -> slack", "expected 'MATCHER, ... -> CHANNEL, ...'"),
        ("team -> slack", "matcher 'team': expected name=value"),
        ("team=~( -> slack", "matcher 'team=~(': invalid regex"),
        ("team=payments -> pager", "unknown channel 'pager'"),
    ],
)
def test_a_malformed_label_route_is_a_config_error_naming_the_variable(
    value: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        table(OPSWATCH_ROUTE_MATCH_PAYMENTS=value)

    assert caught.value.variable == "OPSWATCH_ROUTE_MATCH_PAYMENTS"
    assert problem in caught.value.problem
