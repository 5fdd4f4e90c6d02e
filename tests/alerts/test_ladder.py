"""The severity ladder: parsing (every error names its variable), then the whole daemon on a
disk at 87 % (disk_full warning) with runs every 30 s and a manual clock: the climb at the
right minute, routed by the new severity; frozen by an ack; muted time not counted; the time
already climbed kept across a restart (SQLite store); distinct from a recovery's escalation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from opswatch.alerts.ladder import LADDER_VAR, Ladder, parse_steps
from opswatch.config import ConfigError, Env
from opswatch.model import Alert, Severity, TransitionKind
from tests.alerts.conftest import HostDaemon, MakeDaemon

WARN = 87.0  # disk_full warning (85), below critical (90)
LADDER = "warning>critical:30m, critical>emergency:2h"
#: warnings go nowhere: what a channel gets, it gets by the climbed severity
QUIET_WARNINGS = {"OPSWATCH_LADDER": LADDER, "OPSWATCH_ROUTE_WARNING": "none"}
K = TransitionKind
RULES = ("disk_full", "cpu_high")


def test_a_ladder_is_parsed_into_climbing_steps() -> None:
    warning, critical = parse_steps(LADDER_VAR, LADDER)
    assert (warning.source, warning.target, warning.after_s) == (
        Severity.WARNING,
        Severity.CRITICAL,
        1800.0,
    )
    assert (critical.source, critical.target, critical.after_s) == (
        Severity.CRITICAL,
        Severity.EMERGENCY,
        7200.0,
    )


def test_a_rule_s_own_ladder_replaces_the_global_one_and_none_turns_it_off() -> None:
    environ = {
        "OPSWATCH_LADDER": LADDER,
        "OPSWATCH_LADDER_CPU_HIGH": "warning>emergency:5m",
        "OPSWATCH_LADDER_DISK_FULL": "none",
    }
    ladder = Ladder.from_env(Env(environ), environ, RULES, 30.0)
    assert [s.text for s in ladder.rules["cpu_high"]] == ["warning>emergency:5m"]
    assert ladder.rules["disk_full"] == ()
    assert ladder.default == parse_steps(LADDER_VAR, LADDER)
    assert ladder.gap_s == 60.0
    assert not Ladder.from_env(Env({}), {}, RULES, 30.0)  # unset: no ladder, nothing to do


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("OPSWATCH_LADDER", "warning>critical", "expected FROM>TO:DURATION items"),
        ("OPSWATCH_LADDER", "warning>urgent:5m", "unknown severity 'urgent'"),
        ("OPSWATCH_LADDER", "critical>warning:5m", "does not climb"),
        ("OPSWATCH_LADDER", "warning>critical:5m,warning>emergency:1h", "two steps climb"),
        ("OPSWATCH_LADDER", "warning>critical:soon", "expected a duration"),
        ("OPSWATCH_LADDER_DISK_FULL", ",", "expected FROM>TO:DURATION items, or none"),
        ("OPSWATCH_LADDER_NO_SUCH_RULE", LADDER, "names no rule"),
    ],
)
def test_a_malformed_ladder_names_its_variable(variable: str, value: str, problem: str) -> None:
    environ = {variable: value}
    with pytest.raises(ConfigError) as error:
        Ladder.from_env(Env(environ), environ, RULES, 30.0)
    assert error.value.variable == variable
    assert problem in error.value.problem


async def runs_until_climbed(daemon: HostDaemon, limit: int) -> int:
    """Runs at 87 % until one climbs; returns how many runs that took (the firing's too)."""
    for count in range(1, limit + 1):
        if K.CLIMBED in await daemon.run(WARN):
            return count
    raise AssertionError(f"no climb in {limit} runs")


def alert_of(daemon: HostDaemon) -> Alert:
    (alert,) = daemon.app.tracker.active()
    return alert


async def test_an_unacknowledged_alert_climbs_at_the_right_minute_routed_by_its_new_severity(
    make: MakeDaemon,
) -> None:
    daemon = await make(**QUIET_WARNINGS)
    fired_at = daemon.clock.now
    assert await runs_until_climbed(daemon, 200) == 61  # the firing, then 60 runs: 30 min
    climbed_at = daemon.clock.now - timedelta(seconds=30)
    assert climbed_at - fired_at == timedelta(minutes=30)
    alert = alert_of(daemon)
    assert (alert.severity, alert.climbed, alert.escalated) == (Severity.CRITICAL, True, False)
    (request,) = daemon.hook.requests  # the warning went nowhere; the climb to critical
    firing = [a for a in request.body["alerts"] if a["status"] == "firing"]
    assert [(a["labels"]["severity"], a["annotations"]["transition"]) for a in firing] == [
        ("critical", "climbed")
    ]
    assert firing[0]["annotations"]["actions"] == (
        "unacknowledged: severity ladder step warning>critical:30m"
    )
    history = await daemon.app.store.history(10, alert.fingerprint)
    climb = next(t for t in history if t.kind is K.CLIMBED)
    assert climb.previous_severity is Severity.WARNING

    assert await runs_until_climbed(daemon, 400) == 240  # then 2 h at critical
    assert alert_of(daemon).severity is Severity.EMERGENCY
    assert await daemon.run(WARN) == []  # a climbed alert keeps its severity; no more steps


async def test_an_ack_freezes_the_climb_and_an_unack_resumes_it(make: MakeDaemon) -> None:
    daemon = await make(**QUIET_WARNINGS)
    for _ in range(21):  # fired, then 10 min
        await daemon.run(WARN)
    operator = daemon.app.services.operator
    assert operator is not None
    fingerprint = alert_of(daemon).fingerprint
    await operator.ack(fingerprint, "ana", comment="looking")
    for _ in range(120):  # an hour acknowledged: nothing climbs
        assert await daemon.run(WARN) == []
    assert alert_of(daemon).ladder_s == 600.0
    await operator.unack(fingerprint, "ana")
    assert await runs_until_climbed(daemon, 100) == 40  # the 20 min left


async def test_time_under_a_silence_does_not_count(make: MakeDaemon) -> None:
    daemon = await make(**QUIET_WARNINGS)
    for _ in range(21):  # fired, then 10 min
        await daemon.run(WARN)
    await daemon.daemon.silence(hours=0.5)
    for _ in range(60):  # muted for 30 min
        assert await daemon.run(WARN) == []
    assert alert_of(daemon).ladder_s == 600.0
    assert await runs_until_climbed(daemon, 100) == 40


async def test_a_restart_keeps_the_time_already_climbed_but_not_the_downtime(
    make: MakeDaemon,
) -> None:
    daemon = await make(**QUIET_WARNINGS)
    fired_at = daemon.clock.now
    for _ in range(41):  # fired, then 20 min
        await daemon.run(WARN)
    await daemon.daemon.stop()
    daemon.clock.advance(3600)  # an hour down
    await daemon.daemon.open()
    assert alert_of(daemon).ladder_s == 1200.0  # from the store
    runs = await runs_until_climbed(daemon, 100)
    # the first run after the restart counts one gap (two intervals), not the hour
    assert runs == 19
    climbed_at = daemon.clock.now - timedelta(seconds=30)
    assert climbed_at - fired_at == timedelta(minutes=30, hours=1, seconds=-30)


async def test_the_ladder_is_distinct_from_the_raise_after_a_failed_recovery(
    make: MakeDaemon,
) -> None:
    daemon = await make(**QUIET_WARNINGS)
    await daemon.run(WARN)
    for _ in range(20):
        await daemon.run(WARN)
    fingerprint = alert_of(daemon).fingerprint
    escalated = daemon.app.tracker.escalate(fingerprint, daemon.clock.now, "recovery failed: x")
    assert escalated is not None
    await daemon.app.book.commit("recovery", [escalated], daemon.clock.now)
    alert = alert_of(daemon)
    assert (alert.severity, alert.escalated, alert.climbed, alert.ladder_s) == (
        Severity.CRITICAL,
        True,
        False,
        0.0,  # the new severity starts its own step
    )
    assert await runs_until_climbed(daemon, 300) == 240  # critical>emergency: 2 h from now
    assert alert_of(daemon).severity is Severity.EMERGENCY


async def test_a_reload_swaps_the_ladder_and_the_flapping_settings_and_check_config_shows_them(
    make: MakeDaemon,
) -> None:
    daemon = await make()
    app = daemon.app
    assert not app.tracker.ladder
    environ = {
        **daemon.daemon.environ,
        "OPSWATCH_LADDER": LADDER,
        "OPSWATCH_FLAPPING_WINDOW": "10",
    }
    app.reloader.enable()  # as start() does
    assert await app.reload(environ)
    assert [s.text for s in app.tracker.ladder.default] == [
        "warning>critical:30m",
        "critical>emergency:2h",
    ]
    assert app.flapping.settings.window == 10
    described = app.config.describe()
    assert described["ladder"] == {
        "default": ["warning>critical:30m", "critical>emergency:2h"],
        "rules": {},
    }
    assert described["flapping"] == {"enabled": True, "window": 10, "high": 20.0, "low": 10.0}
