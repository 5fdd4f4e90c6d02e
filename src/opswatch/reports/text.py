"""A report worded as plain text (``opswatch report``, the text part of every channel) and
as the notification the outbox sends."""

from __future__ import annotations

from opswatch.model import Notification, NotificationKind, Report, Severity, Verdict
from opswatch.notifiers.render import report_period, utc_iso

#: the severity a report's notification carries (its channels' colour)
SEVERITIES = {
    Verdict.PASS: Severity.INFO,
    Verdict.WARN: Severity.WARNING,
    Verdict.FAIL: Severity.CRITICAL,
}


def as_text(report: Report) -> str:
    lines = [report.title, report_period(report), f"SUMMARY {report.summary}"]
    for section in report.sections:
        lines += ["", section.title.upper()]
        if not section.lines:
            lines.append(f"  {section.empty}")
        lines += [f"  [{line.verdict.value}] {line.text}" for line in section.lines]
    return "\n".join(lines)


def report_notification(report: Report) -> Notification:
    """The outbox's message for ``report``; its idempotency key names the report's kind and
    period, so every replica that queues it queues the same row (a channel keeps one)."""
    return Notification(
        transitions=(),
        title=report.title,
        text=as_text(report),
        severity=SEVERITIES[report.verdict],
        idempotency_key=f"report:{report.kind}:{utc_iso(report.until)}",
        kind=NotificationKind.REPORT,
        report=report,
    )
