"""When the reports run (cron, time zone, off), where they go, and the job that queues them:
a manual clock, a real SQLite store, and two daemons on one store for replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from opswatch.config import ConfigError, Env
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import NotificationKind
from opswatch.notifiers import NOTIFIERS
from opswatch.reports.job import TICK
from opswatch.reports.settings import ReportSettings, Schedule
from tests.conftest import ManualClock
from tests.daemon.test_replicas import _environ, _two_apps, schema, target, webhook
from tests.peers import Receiver
from tests.reports.test_build import environ

__all__ = ["schema", "target", "webhook"]  # the replicas' fixtures

SLACK = "http://127.0.0.1:9/services/T0/B0/SECRET"
HOOK = "http://127.0.0.1:9/hook"


def settings(**values: str) -> ReportSettings:
    return load_config(
        {"OPSWATCH_STATE_PATH": "/nonexistent/s.sqlite3", **values}, ManualClock(T0)
    ).reports


T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # a Thursday


class Stop(BaseException):
    """Ends a job's endless loop from its injected sleep."""


def test_by_default_daily_at_8_utc_weekly_on_monday_to_slack_and_mail_not_webhooks() -> None:
    chosen = settings(OPSWATCH_SLACK_WEBHOOK_URL=SLACK, OPSWATCH_WEBHOOK_URL=HOOK)

    assert [(s.kind, s.cron, s.tz.key) for s in chosen.schedules] == [
        ("daily", "0 8 * * *", "UTC"),
        ("weekly", "0 8 * * 1", "UTC"),
    ]
    assert [c.split(":")[0] for c in chosen.channels] == ["slack"]
    assert chosen.enabled
    assert chosen.describe() == {
        "schedules": {"daily": "0 8 * * * (UTC)", "weekly": "0 8 * * 1 (UTC)"},
        "channels": sorted(chosen.channels),
    }


def test_the_schedules_the_zone_and_the_route_are_configurable_and_off_turns_one_off() -> None:
    chosen = settings(
        OPSWATCH_SLACK_WEBHOOK_URL=SLACK,
        OPSWATCH_WEBHOOK_URL=HOOK,
        OPSWATCH_REPORT_DAILY="30 6 * * 1-5",
        OPSWATCH_REPORT_WEEKLY="off",
        OPSWATCH_REPORT_TZ="Europe/Berlin",
        OPSWATCH_ROUTE_REPORT="webhook",
    )

    assert [(s.kind, s.cron, s.tz.key) for s in chosen.schedules] == [
        ("daily", "30 6 * * 1-5", "Europe/Berlin")
    ]
    assert [c.split(":")[0] for c in chosen.channels] == ["webhook"]
    assert not settings(OPSWATCH_SLACK_WEBHOOK_URL=SLACK, OPSWATCH_ROUTE_REPORT="none").enabled
    assert not settings().enabled  # no channel at all


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OPSWATCH_REPORT_DAILY", "8 o'clock", "five-field cron schedule"),
        ("OPSWATCH_REPORT_WEEKLY", "0 8 * * 1 2026", "five-field cron schedule"),
        ("OPSWATCH_REPORT_DAILY", "61 8 * * *", "five-field cron schedule"),
        ("OPSWATCH_REPORT_TZ", "Mars/Olympus", "unknown time zone"),
        ("OPSWATCH_ROUTE_REPORT", "pager", "unknown channel 'pager'"),
        ("OPSWATCH_ROUTE_REPORT", "email", "'email' is not configured"),
    ],
)
def test_a_bad_report_variable_stops_start_up_naming_it(
    variable: str, value: str, message: str
) -> None:
    env = Env({"OPSWATCH_SLACK_WEBHOOK_URL": SLACK, variable: value})
    notifiers = [n for name in sorted(NOTIFIERS) for n in NOTIFIERS[name].from_env(env)]

    with pytest.raises(ConfigError, match=message) as caught:
        ReportSettings.from_env(env, notifiers, tuple(NOTIFIERS))

    assert caught.value.variable == variable


def test_a_schedule_is_read_in_its_zone_across_summer_time() -> None:
    berlin = Schedule("daily", "0 8 * * *", ZoneInfo("Europe/Berlin"), 86400.0)
    at = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)  # 08:00 in Berlin in summer (UTC+2)

    assert berlin.latest(at) == at
    assert berlin.latest(at - timedelta(seconds=1)) == at - timedelta(days=1)
    assert berlin.after(at - timedelta(seconds=1)) == at
    assert berlin.after(at) == at + timedelta(days=1)
    assert berlin.latest(datetime(2026, 1, 15, 7, 0, 30, tzinfo=UTC)) == datetime(
        2026, 1, 15, 7, 0, tzinfo=UTC
    )  # winter: UTC+1
    monday = Schedule("weekly", "0 8 * * 1", ZoneInfo("UTC"), 7 * 86400.0)
    assert monday.latest(T0) == datetime(2025, 12, 29, 8, 0, tzinfo=UTC)


@pytest.fixture
async def app(tmp_path: Path, clock: ManualClock) -> AsyncIterator[App]:
    clock.now = datetime(2026, 1, 5, 7, 59, tzinfo=UTC)  # a Monday, a minute before 08:00
    daemon = App(
        load_config(environ(tmp_path, OPSWATCH_SLACK_WEBHOOK_URL=SLACK), clock), clock=clock
    )
    await daemon.open()
    try:
        yield daemon
    finally:
        await daemon.stop()


async def test_the_reports_are_queued_at_their_time_once_each_one_row_per_channel(
    app: App, clock: ManualClock
) -> None:
    assert await app.reports.run_once() == []  # 07:59: yesterday's was sent before

    clock.advance(TICK)
    sent = await app.reports.run_once()
    clock.advance(TICK)
    again = await app.reports.run_once()

    assert sent == ["report:daily:2026-01-05T08:00:00Z", "report:weekly:2026-01-05T08:00:00Z"]
    assert again == []
    rows = await app.store.outbox_due(clock.now, None)
    assert [(r.channel.split(":")[0], r.notification.kind) for r in rows] == [
        ("slack", NotificationKind.REPORT),
        ("slack", NotificationKind.REPORT),
    ]
    daily, weekly = (r.notification.report for r in rows)
    assert daily is not None
    assert weekly is not None
    assert (daily.since, daily.until) == (
        datetime(2026, 1, 4, 8, 0, tzinfo=UTC),
        datetime(2026, 1, 5, 8, 0, tzinfo=UTC),
    )
    assert weekly.since == datetime(2025, 12, 29, 8, 0, tzinfo=UTC)


async def test_two_replicas_on_one_store_queue_each_report_once(
    app: App, tmp_path: Path, clock: ManualClock
) -> None:
    other = App(
        load_config(environ(tmp_path, OPSWATCH_SLACK_WEBHOOK_URL=SLACK), clock), clock=clock
    )
    await other.open()
    try:
        clock.advance(TICK)
        assert len(await app.reports.run_once()) == 2
        assert len(await other.reports.run_once()) == 2  # queued again: the key keeps one
    finally:
        await other.stop()

    assert len(await app.store.outbox_due(clock.now, None)) == 2


async def test_a_report_more_than_an_hour_late_is_skipped_and_said(
    app: App, clock: ManualClock
) -> None:
    await app.reports.run_once()
    clock.advance(2 * 3600)  # the daemon was stuck past 08:00 for two hours

    with capture_logs() as logs:
        assert await app.reports.run_once() == []

    skipped = [e for e in logs if e["event"] == "report_skipped"]
    assert [e["kind"] for e in skipped] == ["daily", "weekly"]
    assert await app.store.outbox_due(clock.now, None) == []


async def test_the_job_runs_a_tick_at_a_time_on_the_leading_replica(
    app: App, clock: ManualClock
) -> None:
    ticks: list[float] = []
    leading = [False, True]

    async def sleep(seconds: float) -> None:
        if len(ticks) == 2:
            raise Stop  # end the endless loop
        ticks.append(seconds)
        clock.advance(seconds)

    async def lead() -> bool:
        return leading.pop(0)

    await app.reports.run_once()  # 07:59
    with pytest.raises(Stop):
        await app.reports.run(lead, sleep)

    assert ticks == [TICK, TICK]
    assert len(await app.store.outbox_due(clock.now, None)) == 2  # sent at the second tick


async def test_replicas_on_postgres_leave_the_reports_to_one_and_queue_each_once(
    postgres_dsn: str, schema: str, target: Receiver, webhook: Receiver
) -> None:
    a, b = await _two_apps(
        _environ(postgres_dsn, schema, target, webhook, OPSWATCH_ROUTE_REPORT="webhook")
    )
    try:
        leads = [await a._lead_reports(), await b._lead_reports()]
        (schedule, *_) = a.config.reports.schedules
        at = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        keys = [await a.reports.send(schedule, at), await b.reports.send(schedule, at)]
        counts = await a.store.outbox_counts()
    finally:
        await a.stop()
        await b.stop()

    assert leads == [True, False]
    assert keys == ["report:daily:2026-01-05T08:00:00Z"] * 2
    assert counts == {"pending": 1}  # one row, delivered once by the stop's flush
    (report,) = webhook.requests
    assert report.body["kind"] == "report"


async def test_a_store_that_fails_the_job_is_logged_once_and_the_report_sent_at_the_next_tick(
    app: App, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await app.reports.run_once()  # 07:59
    store = app.reports.sources.store
    record = store.record
    failures = [RuntimeError("disk I/O error")] * 2

    async def failing(*args: object) -> None:  # the store's outage, then it works again
        if failures:
            raise failures.pop()
        await record(*args)  # type: ignore[arg-type]

    ticks: list[float] = []

    async def sleep(seconds: float) -> None:
        if len(ticks) == 4:
            raise Stop
        ticks.append(seconds)
        clock.advance(seconds)

    async def lead() -> bool:
        return True

    monkeypatch.setattr(store, "record", failing)
    with capture_logs() as logs, pytest.raises(Stop):
        await app.reports.run(lead, sleep)

    failed = [e for e in logs if e["event"] == "report_job_failed"]
    assert [e["exc_info"] for e in failed] == [True, False]  # one traceback per outage
    assert [e["event"] for e in logs if e["event"] == "report_queued"] == ["report_queued"] * 2
    assert len(await app.store.outbox_due(clock.now, None)) == 2
