"""``opswatch report [--since 24h|7d]``: the health report of the period, read from the state
store directly (the daemon may be running or not), as text. A period of 7 days or more is
the weekly capacity review (with the scaling advice). Exit 0, or 1 when its summary is FAIL."""

from __future__ import annotations

from datetime import timedelta

from opswatch.config import Env
from opswatch.daemon.app import App
from opswatch.daemon.configure import AppConfig
from opswatch.model import Clock, Verdict, utcnow
from opswatch.reports.build import build_report
from opswatch.reports.text import as_text

SINCE_OPTION = "--since"
WEEK = 7 * 86400.0


def since_seconds(value: str) -> float:
    """The ``--since`` duration (``24h``, ``7d``); a :class:`ConfigError` naming the option."""
    return Env({SINCE_OPTION: value}).duration(SINCE_OPTION, 86400.0, minimum=60.0)


async def report(config: AppConfig, since: float, clock: Clock = utcnow) -> tuple[int, str]:
    """``(exit status, text)`` of the report over the last ``since`` seconds."""
    app = App(config, clock=clock)
    await app.store.open()
    try:
        await app.silences.load()
        now = clock()
        kind = "weekly" if since >= WEEK else "daily"
        built = await build_report(app.reports.sources, kind, now - timedelta(seconds=since), now)
    finally:
        await app.store.close()
    return (1 if built.verdict is Verdict.FAIL else 0), as_text(built)
