"""The report's sections for a seeded state: a real SQLite store, a daemon (``App``) built
on it and a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from opswatch.codec import notification_from_json, notification_to_json
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import (
    Alert,
    CycleRecord,
    Matcher,
    MatchOp,
    RecoveryOutcome,
    RecoveryResult,
    Report,
    ReportLine,
    ReportSection,
    Sample,
    Severity,
    TransitionKind,
    Verdict,
)
from opswatch.notifiers.render import render
from opswatch.reports.build import build_report
from opswatch.reports.text import as_text, report_notification
from tests.capacity.test_check import _disk
from tests.conftest import ManualClock
from tests.notifiers.conftest import transition

DAY = timedelta(days=1)


def environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        "OPSWATCH_INTERVAL": "1h",
        "OPSWATCH_HTTP_TARGETS": "api=http://127.0.0.1:9/health",
        "OPSWATCH_SHUTDOWN_GRACE": "0.1s",  # a stop flushes no undeliverable report for long
        **extra,
    }


@pytest.fixture
async def app(tmp_path: Path, clock: ManualClock) -> AsyncIterator[App]:
    daemon = App(load_config(environ(tmp_path), clock), clock=clock)
    await daemon.open()
    try:
        yield daemon
    finally:
        await daemon.stop()


async def seed(app: App, clock: ManualClock) -> None:
    """A day: http:api down for its last hour (critical http_down firing, acked), cpu_high
    fired and resolved after 12 min, a heartbeat missing, two recoveries, one silence, and
    ``up`` every 5 minutes."""
    now = clock.now
    store = app.store
    ups = [
        Sample("http:api", "http.up", 0.0 if now - at <= timedelta(hours=1) else 1.0, at)
        for at in (now - DAY + timedelta(minutes=5 * i) for i in range(288))
    ]
    await store.record(CycleRecord((), (), (), (), ups), now)
    cpu_start = now - timedelta(hours=9)
    fired = transition("cpu_high", started_at=cpu_start, summary="CPU 97 %")
    resolved = transition(
        "cpu_high",
        kind=TransitionKind.RESOLVED,
        started_at=cpu_start,
        at=cpu_start + timedelta(minutes=12),
        summary="CPU 97 %",
    )
    down = transition(
        "http_down",
        check="http:api",
        severity=Severity.CRITICAL,
        labels={"target": "api"},
        started_at=now - timedelta(hours=1),
        summary="api is down",
    )
    beat = transition(
        "heartbeat_missing",
        check="heartbeat:backup",
        labels={"heartbeat": "backup"},
        started_at=now - timedelta(hours=2),
        summary="backup is 2 h late",
    )
    for t in (fired, resolved, down, beat):
        active = [] if t.kind is TransitionKind.RESOLVED else [t.alert]
        gone = [t.alert.fingerprint] if t.kind is TransitionKind.RESOLVED else []
        told = [("slack:ops", render([t], t.at))] if t is down else []  # cpu_high: quiet
        await store.record(CycleRecord(active, gone, [t], told), t.at)
    for outcome, at, alert in (
        (RecoveryOutcome.SUCCEEDED, 5, fired.alert),
        (RecoveryOutcome.FAILED, 1, down.alert),
    ):
        await store.recovery_record(
            RecoveryResult(
                action="systemd",
                fingerprint=alert.fingerprint,
                outcome=outcome,
                attempts=1,
                duration_s=12.0,
                detail="restarted nginx" if outcome is RecoveryOutcome.SUCCEEDED else "exit 1",
                at=now - timedelta(hours=at),
                rule=alert.rule,
                target="nginx.service",
            )
        )
    await app.silences.create(
        [Matcher("rule", MatchOp.EQUAL, "heartbeat_missing")],
        now + timedelta(hours=3),
        "alice",
        "backup server moved",
    )


async def daily(app: App, clock: ManualClock) -> Report:
    return await build_report(app.reports.sources, "daily", clock.now - DAY, clock.now)


def lines(report: Report, title: str) -> list[str]:
    (section,) = [s for s in report.sections if s.title.startswith(title)]
    return [f"[{line.verdict.value}] {line.text}" for line in section.lines]


async def test_the_daily_report_of_a_seeded_day_has_every_section_in_text(
    app: App, clock: ManualClock
) -> None:
    await seed(app, clock)

    report = await daily(app, clock)
    text = as_text(report)

    assert report.verdict is Verdict.FAIL
    assert report.title.startswith("[FAIL] opswatch daily health report for ")
    assert text.splitlines()[1] == "period: 2025-12-31T12:00:00Z - 2026-01-01T12:00:00Z (1 d)"
    assert text.splitlines()[2] == (
        "SUMMARY FAIL: 4 checks (2 pass, 1 warn, 1 fail), 3 alerts (2 still firing), "
        "2 recoveries (1 failed), 0 capacity risks within 7 d"
    )
    assert lines(report, "Checks") == [
        "[PASS] host: ok, 100.00 % available (from alerts)",
        "[FAIL] http:api: critical: http_down firing, 95.83 % available (from up samples)",
        "[PASS] capacity: ok, 100.00 % available (from alerts)",
        "[WARN] heartbeat:backup: warning: heartbeat_missing firing, 100.00 % available "
        "(from alerts)",
    ]
    assert lines(report, "Alerts") == [
        "[PASS] WARNING cpu_high on host: CPU 97 % (started 2026-01-01T03:00:00Z, resolved in "
        "12 min)",
        "[WARN] WARNING heartbeat_missing on heartbeat:backup: backup is 2 h late (started "
        "2026-01-01T10:00:00Z, still firing after 2 h (muted: silence "
        + report.sections[4].lines[0].text.split()[1]
        + "))",
        "[FAIL] CRITICAL http_down on http:api: api is down (started 2026-01-01T11:00:00Z, "
        "still firing after 1 h)",
    ]
    assert lines(report, "Recoveries") == [
        "[PASS] 2026-01-01T07:00:00Z systemd nginx.service for cpu_high: succeeded after 1 "
        "attempt(s) in 12 s: restarted nginx (quiet: never notified)",
        "[FAIL] 2026-01-01T11:00:00Z systemd nginx.service for http_down: failed after 1 "
        "attempt(s) in 12 s: exit 1",
    ]
    assert lines(report, "Heartbeats") == ["[WARN] backup: warning: heartbeat_missing firing"]
    (silence,) = lines(report, "Silences")
    assert silence.endswith(
        "(rule=heartbeat_missing) until 2026-01-01T15:00:00Z by alice: backup server moved"
    )
    assert "CAPACITY RISKS\n  no resource is forecast to fill" in text


async def test_without_an_up_series_availability_is_the_share_without_a_down_alert(
    tmp_path: Path, clock: ManualClock
) -> None:
    app = App(load_config(environ(tmp_path, OPSWATCH_HISTORY="off"), clock), clock=clock)
    await app.open()
    try:
        start = clock.now - timedelta(hours=14)
        for t in (
            transition("http_down", check="http:api", started_at=start),
            transition(
                "http_down",
                check="http:api",
                kind=TransitionKind.RESOLVED,
                started_at=start,
                at=start + timedelta(hours=6),
            ),
        ):
            await app.store.record(CycleRecord([], [], [t], []), t.at)

        report = await daily(app, clock)
    finally:
        await app.stop()

    assert lines(report, "Checks")[1] == "[PASS] http:api: ok, 75.00 % available (from alerts)"
    assert lines(report, "Alerts") == [
        "[PASS] WARNING http_down on http:api: CPU busy (started 2025-12-31T22:00:00Z, "
        "resolved in 6 h)"
    ]
    assert [s.title for s in report.sections][-1] == "Silences and maintenance in force"


async def test_the_weekly_review_lists_the_capacity_risks_and_the_scaling_advice(
    app: App, clock: ManualClock
) -> None:
    await _disk(app, clock, per_day=4.0, start=60.0)  # 92 % now, full in 2 days

    report = await build_report(app.reports.sources, "weekly", clock.now - 7 * DAY, clock.now)

    (risk,) = lines(report, "Capacity risks")
    assert risk.startswith("[WARN] disk space on host mountpoint=/data: ")
    assert risk.endswith("92 now, +4/day, full in 2 d (earliest 2 d)")
    assert report.title.startswith("[WARN] opswatch weekly capacity review for ")
    (advice,) = lines(report, "Scaling advice")
    assert advice.startswith("[WARN] ")
    assert "disk" in advice.lower()
    assert report.summary.endswith("1 capacity risks within 7 d")


def test_a_report_survives_its_outbox_row(clock: ManualClock) -> None:
    report = Report(
        "daily",
        "[WARN] opswatch daily health report for web1",
        clock.now - DAY,
        clock.now,
        Verdict.WARN,
        "WARN: 1 checks",
        (ReportSection("Checks", (ReportLine(Verdict.WARN, "host: warning"),), "no check"),),
    )
    notification = report_notification(report)

    assert notification_from_json(notification_to_json(notification)) == notification
    assert notification.idempotency_key == "report:daily:2026-01-01T12:00:00Z"


class Windows:
    """A muter with windows (as the maintenance windows are): one open, ``db``, matching the
    ``postgres:*`` checks."""

    def open_windows(self, now: datetime) -> list[tuple[str, tuple[Matcher, ...]]]:
        return [("db", (Matcher("check", MatchOp.REGEX, "postgres:.*"),))]

    def muted(self, alert: Alert, now: datetime) -> bool:
        return bool(self.muting(alert, now))

    def muting(self, alert: Alert, now: datetime) -> list[str]:
        return ["maintenance db"] if alert.check.startswith("postgres:") else []


async def test_open_maintenance_windows_are_listed_and_the_alerts_they_mute_name_them(
    app: App, clock: ManualClock
) -> None:
    app.mutes.add(Windows())
    down = transition(
        "postgres_down",
        check="postgres:main",
        severity=Severity.CRITICAL,
        started_at=clock.now - timedelta(minutes=10),
    )
    await app.store.record(CycleRecord([down.alert], [], [down], []), clock.now)

    report = await daily(app, clock)

    assert lines(report, "Silences") == [
        "[PASS] maintenance db open (check=~postgres:.*)",
        "[PASS] postgres_down on postgres:main: maintenance db",
    ]
    (alert,) = lines(report, "Alerts")
    assert alert.endswith("still firing after 10 min (muted: maintenance db))")
