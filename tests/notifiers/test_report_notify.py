"""Reports through the real daemon's outbox to a local Slack receiver, a local SMTP server
(aiosmtpd) and a webhook; a report that cannot be delivered fires notifications_failing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller

from opswatch.daemon.app import App
from opswatch.model import Report, ReportLine, ReportSection, TransitionKind, Verdict
from opswatch.notifiers.render import RenderOptions
from opswatch.notifiers.slack import message
from opswatch.reports.settings import Schedule
from opswatch.reports.text import report_notification
from tests.conftest import ManualClock, free_port
from tests.notifiers.test_daemon_notify import (
    CHANNEL_NOT_FOUND,
    Daemon,
    alertnames,
    daemon,
    disks,
    hook,
    slack,
)
from tests.notifiers.test_email import Mailbox
from tests.peers import Receiver

__all__ = ["daemon", "hook", "slack"]  # the fixtures, shared with the daemon's notify tests

AT = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def daily(app: App) -> Schedule:
    (schedule, *_) = app.config.reports.schedules
    return schedule


async def test_the_report_reaches_slack_as_blocks_mail_as_text_and_html_and_a_webhook_as_json(
    daemon: Daemon,
    clock: ManualClock,
    slack: Receiver,
    hook: Receiver,
    mailbox: tuple[Mailbox, int],
) -> None:
    box, port = mailbox
    app = await daemon.open(
        OPSWATCH_SLACK_WEBHOOK_URL=slack.url + "/services/T0/B0/SECRETSLACK",
        OPSWATCH_WEBHOOK_URL=hook.url + "/hooks/SECRETPATH",
        OPSWATCH_EMAIL_SMTP_URL=f"smtp://127.0.0.1:{port}",
        OPSWATCH_EMAIL_FROM="opswatch@example.com",
        OPSWATCH_EMAIL_TO="ops@example.com",
        OPSWATCH_ROUTE_REPORT="slack,email,webhook",
    )
    clock.now = AT - timedelta(hours=2)
    await app.cycle.process("host", disks(clock, {"/": 87.0}), None, 0.0)  # firing from 06:00
    await app.outbox.deliver_due()  # the alert itself
    clock.now = AT

    await app.reports.send(daily(app), AT)
    await app.outbox.deliver_due()

    (_, slack_report) = await slack.wait_for(2)
    body = slack_report.body
    assert body["text"].startswith("[WARN] opswatch daily health report for ")
    header, summary, *sections = body["blocks"]
    assert header["type"] == "header"
    assert summary["text"]["text"].startswith(":warning: *WARN: ")
    assert "period: 2025-12-31T08:00:00Z - 2026-01-01T08:00:00Z (1 d)" in summary["text"]["text"]
    titles = [s["text"]["text"].split("\n")[0] for s in sections]
    assert titles[:3] == ["*Checks (availability over 1 d)*", "*Alerts (1)*", "*Recoveries (0)*"]
    assert ":warning: WARNING disk_full on host" in sections[1]["text"]["text"]
    assert sections[2]["text"]["text"].endswith("_no recovery ran_")

    (_, _, message) = box.messages[-1]
    assert message["Subject"].startswith("[WARN] opswatch daily health report")
    assert message["Message-ID"] == "<opswatch.report.daily.2026-01-01T08.00.00Z@example.com>"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "ALERTS (1)\r\n  [WARN] WARNING disk_full on host" in text.get_content()
    assert "<h3>Alerts (1)</h3>" in html.get_content()
    assert '<td style="color:#ecb22e"><strong>WARN</strong></td>' in html.get_content()

    (_, hook_report) = await hook.wait_for(2)
    assert hook_report.body["kind"] == "report"
    assert hook_report.headers["Idempotency-Key"] == "report:daily:2026-01-01T08:00:00Z"
    report = hook_report.body["report"]
    assert (report["kind"], report["verdict"]) == ("daily", "WARN")
    assert [s["title"] for s in report["sections"]][1] == "Alerts (1)"


async def test_an_undeliverable_report_fires_notifications_failing_on_another_channel(
    daemon: Daemon, clock: ManualClock, slack: Receiver, hook: Receiver
) -> None:
    app = await daemon.open(
        OPSWATCH_SLACK_TOKEN="xoxb-999-SECRETTOKEN",
        OPSWATCH_SLACK_CHANNEL="#reports",
        OPSWATCH_SLACK_API_URL=slack.url + "/api",
        OPSWATCH_WEBHOOK_URL=hook.url + "/hooks/SECRETPATH",
        OPSWATCH_ROUTE_REPORT="slack",
    )
    slack.script(CHANNEL_NOT_FOUND)  # permanent: the report cannot be delivered
    clock.now = AT

    await app.reports.send(daily(app), AT)
    await app.outbox.deliver_due()
    (meta,) = await app.cycle.run("notify")
    await app.outbox.deliver_due()

    assert (meta.kind, meta.alert.rule) == (TransitionKind.FIRED, "notifications_failing")
    assert meta.alert.labels["channel"] == "slack:reports"
    (alert,) = await hook.wait_for(1)
    assert alertnames(alert) == [("notifications_failing", "firing")]
    assert await app.store.outbox_counts() == {"failed": 1, "delivered": 1}


async def test_grouping_holds_alerts_but_never_merges_a_report_into_them(
    daemon: Daemon, clock: ManualClock, slack: Receiver
) -> None:
    app = await daemon.open(
        OPSWATCH_SLACK_WEBHOOK_URL=slack.url + "/services/T0/B0/SECRETSLACK",
        OPSWATCH_GROUP_WAIT="30s",
    )
    clock.now = AT
    await app.cycle.process("host", disks(clock, {"/": 87.0}), None, 0.0)
    await app.reports.send(daily(app), AT)

    await app.outbox.deliver_due()  # the report goes now; the alert is held for its group
    clock.advance(30)
    await app.outbox.deliver_due()

    report, alert = await slack.wait_for(2)
    assert report.body["text"].startswith("[WARN] opswatch daily health report")
    assert alert.body["text"] == "[FIRING:1] disk_full on host"


def test_a_long_report_section_is_split_into_slack_blocks_of_at_most_3000_characters() -> None:
    lines = tuple(ReportLine(Verdict.WARN, f"alert {n:02d} " + "x" * 100) for n in range(50))
    report = Report(
        "daily", "[WARN] report", AT - timedelta(days=1), AT, Verdict.WARN, "WARN: 50 alerts",
        (ReportSection("Alerts (50)", lines, "no alert"),),
    )  # fmt: skip

    body = message(report_notification(report), RenderOptions())

    texts = [b["text"]["text"] for b in body["blocks"][2:]]
    assert [len(t) <= 3000 for t in texts] == [True, True, True]
    assert texts[0].startswith("*Alerts (50)*\n:warning: alert 00 ")
    assert [t.count(":warning: alert") for t in texts] == [24, 25, 1]  # none cut, none lost
