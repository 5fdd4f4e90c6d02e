"""Heartbeats: ``OPSWATCH_HEARTBEAT_TARGETS`` parsed (or refused naming the variable and the
heartbeat), and the pure verdict on a heartbeat's newest pings at an injected time: missed,
failed, stuck, resolved, and cron schedules in a time zone across both DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opswatch.collectors.heartbeat import (
    Cron,
    Heartbeat,
    Period,
    judge,
    parse_heartbeats,
    refuse_unpingable,
)
from opswatch.config import ConfigError, Env, Secret
from opswatch.daemon.configure import load_config
from opswatch.model import Ping, PingKind, Sample
from opswatch.rules.builtin import builtin_rules
from opswatch.rules.evaluator import RuleEvaluator
from tests.conftest import ManualClock

KEY = "0123456789abcdef0123"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOUR = 3600.0


def _parse(targets: str, **more: str) -> tuple[Heartbeat, ...]:
    return parse_heartbeats(Env({"OPSWATCH_HEARTBEAT_TARGETS": targets, **more}))


def test_a_period_or_a_cron_schedule_with_a_zone_then_the_grace_are_parsed() -> None:
    backup, batch, quarter = _parse(
        "backup=1d/1h, batch=cron:0 3 * * *;tz=Europe/Berlin/30m, quarter=cron:*/15 * * * */5m",
        OPSWATCH_HEARTBEAT_BACKUP_KEY=KEY,
    )
    assert (backup.name, backup.schedule, backup.grace) == ("backup", Period(86400, "1d"), HOUR)
    assert backup.key is not None
    assert backup.key.reveal() == KEY
    assert isinstance(batch.schedule, Cron)
    assert batch.schedule.text == "cron:0 3 * * *;tz=Europe/Berlin"
    assert (batch.grace, batch.key, batch.check) == (1800.0, None, "heartbeat:batch")
    assert quarter.schedule.text == "cron:*/15 * * * *;tz=UTC"
    assert quarter.grace == 300.0


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        ("backup=1d", "heartbeat 'backup': expected PERIOD/GRACE or cron:EXPR/GRACE"),
        ("backup=1x/1h", "heartbeat 'backup': period: expected a duration"),
        ("backup=30s/1h", "heartbeat 'backup': period: expected at least 60s"),
        ("backup=1d/soon", "heartbeat 'backup': grace: expected a duration"),
        ("batch=cron:0 3 * */30m", "heartbeat 'batch': expected a five-field cron expression"),
        ("batch=cron:0 25 * * */30m", "heartbeat 'batch': expected a five-field cron expression"),
        ("batch=cron:0 3 * * *;tz=Mars/Base/30m", "heartbeat 'batch': unknown time zone"),
        ("batch=cron:0 3 * * *;zone=UTC/30m", "heartbeat 'batch': unknown cron option"),
        ("1backup=1d/1h", "expected name=SCHEDULE/GRACE items"),
    ],
)
def test_a_malformed_heartbeat_is_refused_naming_the_variable_and_the_entry(
    targets: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(targets)
    assert caught.value.variable == "OPSWATCH_HEARTBEAT_TARGETS"
    assert problem in caught.value.problem


def test_a_short_key_is_refused_naming_its_variable_without_showing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        _parse("backup=1d/1h", OPSWATCH_HEARTBEAT_BACKUP_KEY="short-key")
    assert caught.value.variable == "OPSWATCH_HEARTBEAT_BACKUP_KEY"
    assert "short-key" not in str(caught.value)


def test_a_heartbeat_without_a_key_needs_the_write_token(clock: ManualClock) -> None:
    environ = {"OPSWATCH_CHECKS": "heartbeat", "OPSWATCH_HEARTBEAT_TARGETS": "backup=1d/1h"}
    with pytest.raises(ConfigError) as caught:
        load_config(environ, clock)
    assert caught.value.variable == "OPSWATCH_HEARTBEAT_BACKUP_KEY"
    assert "OPSWATCH_API_TOKEN" in caught.value.problem
    refuse_unpingable([], None)  # nothing to refuse without heartbeats
    config = load_config({**environ, "OPSWATCH_API_TOKEN": "t" * 20}, clock)
    assert [c.check for c in config.collectors] == ["heartbeat:backup", "capacity"]


# -- the verdict ----------------------------------------------------------------------------

DAILY = Heartbeat("backup", Period(86400, "1d"), HOUR, "1h", Secret(KEY))


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_a_heartbeat_never_pinged_is_late_one_period_and_grace_after_watching_began() -> None:
    assert judge(DAILY, [], T0, _at(25) - timedelta(seconds=1)).status == "new"
    verdict = judge(DAILY, [], T0, _at(25) + timedelta(seconds=90))
    assert (verdict.status, verdict.overdue_s, verdict.deadline) == ("late", 90.0, _at(25))
    assert "never pinged" in verdict.reason


def test_a_missed_ping_is_late_after_the_period_and_grace_since_the_last_success() -> None:
    ok = Ping("backup", PingKind.SUCCESS, _at(2), 0, "done", duration_s=12.5)
    up = judge(DAILY, [ok], T0, _at(26))
    assert (up.status, up.overdue_s, up.failed) == ("up", -HOUR, False)
    assert up.reason.endswith("succeeded (exit status 0, ran 12.5s): done")
    late = judge(DAILY, [ok], T0, _at(27) + timedelta(minutes=1))
    assert (late.status, late.overdue_s) == ("late", 60.0)
    assert "last run ended 2026-01-01T14:00:00Z" in late.reason


def test_a_failed_run_is_failed_until_the_next_success_and_counts_as_a_run() -> None:
    ok = Ping("backup", PingKind.SUCCESS, _at(1))
    failed = Ping("backup", PingKind.FAIL, _at(2), 3, "disk full\nmore")
    verdict = judge(DAILY, [ok, failed], T0, _at(3))
    assert (verdict.status, verdict.failed, verdict.overdue_s < 0) == ("failed", True, True)
    assert verdict.reason.endswith("failed (exit status 3): disk full")
    again = Ping("backup", PingKind.SUCCESS, _at(4))
    assert judge(DAILY, [again, failed], T0, _at(4)).status == "up"


def test_a_run_that_started_and_did_not_end_within_the_grace_is_stuck() -> None:
    ok = Ping("backup", PingKind.SUCCESS, _at(1))
    start = Ping("backup", PingKind.START, _at(2))
    running = judge(DAILY, [ok, start], T0, _at(3))
    assert (running.status, running.running, running.overdue_s) == ("running", start, 0.0)
    stuck = judge(DAILY, [ok, start], T0, _at(3) + timedelta(seconds=5))
    assert (stuck.status, stuck.overdue_s) == ("stuck", 5.0)
    assert "the run started at 2026-01-01T14:00:00Z has not ended" in stuck.reason
    ended = Ping("backup", PingKind.SUCCESS, _at(4), duration_s=7200.0)
    assert judge(DAILY, [ended, start], T0, _at(4)).status == "up"


@pytest.mark.parametrize(
    ("last_run", "due"),
    [
        # Berlin leaves CET (UTC+1) for CEST (UTC+2) on 2026-03-29: 03:00 is 01:00 UTC then
        (datetime(2026, 3, 28, 2, 5, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        # and back on 2026-10-25: 03:00 is 02:00 UTC that day
        (datetime(2026, 10, 24, 1, 5, tzinfo=UTC), datetime(2026, 10, 25, 2, 0, tzinfo=UTC)),
        # a run that ended before its time (at 02:59 local) is due again that same day
        (datetime(2026, 1, 5, 1, 59, tzinfo=UTC), datetime(2026, 1, 5, 2, 0, tzinfo=UTC)),
    ],
)
def test_a_cron_heartbeat_is_due_at_the_next_scheduled_time_in_its_zone(
    last_run: datetime, due: datetime
) -> None:
    (batch,) = _parse("batch=cron:0 3 * * *;tz=Europe/Berlin/30m", OPSWATCH_HEARTBEAT_BATCH_KEY=KEY)
    ok = Ping("batch", PingKind.SUCCESS, last_run)
    grace = timedelta(minutes=30)
    verdict = judge(batch, [ok], T0, due + grace)
    assert (verdict.due_at, verdict.deadline, verdict.status) == (due, due + grace, "up")
    assert judge(batch, [ok], T0, due + grace + timedelta(seconds=1)).status == "late"


def test_check_config_shows_each_heartbeat_with_its_key_masked(clock: ManualClock) -> None:
    environ = {
        "OPSWATCH_CHECKS": "heartbeat",
        "OPSWATCH_HEARTBEAT_TARGETS": "backup=1d/1h, batch=cron:0 3 * * */30m",
        "OPSWATCH_HEARTBEAT_BACKUP_KEY": KEY,
        "OPSWATCH_API_TOKEN": "t" * 20,
    }
    described = load_config(environ, clock).describe()
    assert described["collectors"]["heartbeat:backup"] == {
        "check": "heartbeat:backup",
        "schedule": "1d",
        "grace": "1h",
        "key": "***",
    }
    assert described["collectors"]["heartbeat:batch"]["key"] == "none: the write token"
    assert described["collectors"]["heartbeat:batch"]["schedule"] == "cron:0 3 * * *;tz=UTC"
    assert KEY not in repr(described)
    assert {"heartbeat_missing", "heartbeat_failed"} <= {r["name"] for r in described["rules"]}


def test_the_missing_rule_is_tunable_like_every_rule() -> None:
    env = Env({"OPSWATCH_RULE_HEARTBEAT_MISSING_CRITICAL": "300"})
    evaluator = RuleEvaluator(builtin_rules(env, 30.0))
    labels, notes = {"target": "backup"}, {"reason": "no ping by …"}

    def findings(overdue: float) -> list[str]:
        sample = Sample("heartbeat:backup", "heartbeat.overdue_seconds", overdue, T0, labels, notes)
        return [f.summary for f in evaluator.evaluate("heartbeat:backup", [sample]).findings]

    assert findings(299.0) == []
    assert findings(301.0) == ["heartbeat backup: no ping by …"]
    assert findings(-5.0) == []  # the next good ping: resolved in the same run
