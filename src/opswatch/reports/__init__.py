"""Scheduled reports: the daily health report and the weekly capacity review.

:mod:`~opswatch.reports.settings` reads when they run and where they go,
:mod:`~opswatch.reports.build` gathers a period's state into a :class:`~opswatch.model.Report`,
:mod:`~opswatch.reports.text` words it as text and as a notification, and
:mod:`~opswatch.reports.job` sends it through the outbox at its time.
"""
