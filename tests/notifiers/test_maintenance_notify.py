"""The four golden cases of a recurring maintenance window, through the real daemon (``App``,
its commit path and outbox) and a local webhook, on SQLite and on the shared PostgreSQL: each
on a plain night (the first Sunday of the month), across both 2026 DST changes in
Europe/Berlin, across midnight and across a month end. Samples go to ``App.cycle.process``
at the times a manual clock says; the outbox is driven pass by pass: no sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opswatch.model import TransitionKind
from tests.conftest import ManualClock
from tests.notifiers.conftest import ReceiverFactory
from tests.notifiers.test_silenced_notify import Daemon
from tests.peers import Receiver
from tests.pgschema import fresh_schema

MINUTE = timedelta(minutes=1)
FIRED, RESOLVED = [TransitionKind.FIRED], [TransitionKind.RESOLVED]


@dataclass(frozen=True)
class Night:
    """A window (``cron`` in ``tz`` for ``duration``), where it opens and closes (UTC), and
    the times inside it the check runs at (around the change of that night)."""

    cron: str
    tz: str
    duration: str
    opens: datetime
    closes: datetime
    inside: tuple[datetime, ...]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


NIGHTS = {
    # the runbooks' first Sunday 02:00-06:00 (1-7 AND Sunday: 2026-02-01)
    "first-sunday": Night(
        "0 2 1-7 * SUN",
        "UTC",
        "4h",
        utc(2026, 2, 1, 2),
        utc(2026, 2, 1, 6),
        (utc(2026, 2, 1, 2, 1), utc(2026, 2, 1, 4), utc(2026, 2, 1, 5, 59)),
    ),
    # the last Sunday of March: 02:00 CET does not exist, it opens at 03:00 CEST (01:00 UTC)
    "spring-dst": Night(
        "0 2 25-31 * SUN",
        "Europe/Berlin",
        "4h",
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 5),
        (utc(2026, 3, 29, 1, 1), utc(2026, 3, 29, 2), utc(2026, 3, 29, 4, 59)),
    ),
    # the last Sunday of October: 02:00 happens twice; it opens at the first (00:00 UTC), and
    # the second (01:00 UTC) neither reopens nor stretches it: 4 h, until 04:00 UTC
    "autumn-dst": Night(
        "0 2 25-31 * SUN",
        "Europe/Berlin",
        "4h",
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 4),
        (
            utc(2026, 10, 25, 0, 1),
            utc(2026, 10, 25, 0, 59),
            utc(2026, 10, 25, 1, 1),
            utc(2026, 10, 25, 3, 59),
        ),
    ),
    # 23:00-02:00 CEST: 21:00-00:00 UTC, over the local midnight
    "midnight": Night(
        "0 23 * * *",
        "Europe/Berlin",
        "3h",
        utc(2026, 6, 15, 21),
        utc(2026, 6, 16, 0),
        (utc(2026, 6, 15, 21, 1), utc(2026, 6, 15, 22, 0), utc(2026, 6, 15, 23, 59)),
    ),
    # the last day of February 22:00 CET for 4 h: into 1 March
    "month-end": Night(
        "0 22 L * *",
        "Europe/Berlin",
        "4h",
        utc(2026, 2, 28, 21),
        utc(2026, 3, 1, 1),
        (utc(2026, 2, 28, 21, 1), utc(2026, 2, 28, 23, 0), utc(2026, 3, 1, 0, 59)),
    ),
}


class WindowDaemon(Daemon):
    """The silences' test daemon, on the store ``environ`` names, without reminders."""

    def __init__(
        self, tmp_path: Path, environ: dict[str, str], clock: ManualClock, hook: Receiver
    ) -> None:
        super().__init__(tmp_path, clock, hook)
        # no reminder in these nights: what is sent is what the window lets through
        repeat = {f"OPSWATCH_REPEAT_{s}": "2d" for s in ("WARNING", "CRITICAL", "EMERGENCY")}
        self.environ.update(repeat, **environ)

    async def run_at(self, at: datetime, used: float) -> list[TransitionKind]:
        """One host run at ``at`` with ``/`` this full, then one outbox pass."""
        self.clock.now = at
        return await self.cycle(used)


@pytest.fixture(params=["sqlite", "postgres"])
async def store_environ(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {"OPSWATCH_STATE_PATH": str(tmp_path / "state.sqlite3")}
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    async with fresh_schema(dsn) as schema:
        yield {"OPSWATCH_STATE_URL": dsn, "OPSWATCH_STATE_SCHEMA": schema}


@pytest.fixture(params=sorted(NIGHTS))
def night(request: pytest.FixtureRequest) -> Night:
    return NIGHTS[request.param]


@pytest.fixture
async def hook(receiver_factory: ReceiverFactory) -> Receiver:
    return await receiver_factory()


@pytest.fixture
async def daemon(
    tmp_path: Path, store_environ: dict[str, str], night: Night, clock: ManualClock, hook: Receiver
) -> AsyncIterator[WindowDaemon]:
    clock.now = night.opens - timedelta(hours=1)
    spec = f"cron={night.cron}; duration={night.duration}; tz={night.tz}; match=rule=disk_full"
    environ = {**store_environ, "OPSWATCH_MAINTENANCE_DISK": f"{spec}; match=check=~ho.*"}
    daemon = WindowDaemon(tmp_path, environ, clock, hook)
    await daemon.open()
    yield daemon
    await daemon.stop()


def statuses(hook: Receiver) -> list[list[str]]:
    return [[a["status"] for a in r.body["alerts"]] for r in hook.requests]


async def test_an_alert_that_began_inside_and_still_fires_is_notified_once_after_the_end(
    daemon: WindowDaemon, night: Night, hook: Receiver
) -> None:
    assert await daemon.run_at(night.opens - MINUTE, 50.0) == []
    assert await daemon.run_at(night.opens, 97.0) == FIRED  # in history, muted
    app = daemon.app
    assert app is not None
    (alert,) = app.tracker.active()
    assert not alert.notified
    assert app.mutes.muting(alert, night.opens) == ["maintenance disk"]
    for at in night.inside:
        assert await daemon.run_at(at, 97.0) == []
    assert await daemon.run_at(night.closes - timedelta(seconds=1), 97.0) == []
    assert hook.requests == []

    assert await daemon.run_at(night.closes, 97.0) == FIRED  # the first run after the end
    assert statuses(hook) == [["firing"]]
    assert await daemon.run_at(night.closes + timedelta(seconds=30), 97.0) == []
    assert len(hook.requests) == 1
    history = await app.store.history(fingerprint=alert.fingerprint)
    assert history[0].note == "its firing was silenced until now"


async def test_an_alert_that_fired_and_resolved_inside_sends_nothing(
    daemon: WindowDaemon, night: Night, hook: Receiver
) -> None:
    assert await daemon.run_at(night.inside[0], 97.0) == FIRED
    assert await daemon.run_at(night.inside[-1], 50.0) == RESOLVED
    assert await daemon.run_at(night.closes, 50.0) == []
    assert await daemon.run_at(night.closes + timedelta(hours=3), 50.0) == []
    assert hook.requests == []


async def test_an_alert_firing_and_notified_before_that_still_fires_sends_nothing_new(
    daemon: WindowDaemon, night: Night, hook: Receiver
) -> None:
    assert await daemon.run_at(night.opens - 10 * MINUTE, 97.0) == FIRED
    assert statuses(hook) == [["firing"]]
    for at in night.inside:
        assert await daemon.run_at(at, 97.0) == []
    assert await daemon.run_at(night.closes, 97.0) == []
    assert await daemon.run_at(night.closes + timedelta(seconds=30), 97.0) == []
    assert statuses(hook) == [["firing"]]


async def test_an_alert_that_fired_before_and_recovered_inside_sends_its_resolution(
    daemon: WindowDaemon, night: Night, hook: Receiver
) -> None:
    assert await daemon.run_at(night.opens - 10 * MINUTE, 97.0) == FIRED
    assert await daemon.run_at(night.inside[1], 50.0) == RESOLVED
    # at once, to the channel that was paged for the firing
    assert statuses(hook) == [["firing"], ["resolved"]]
    assert await daemon.run_at(night.closes, 50.0) == []
    assert statuses(hook) == [["firing"], ["resolved"]]


async def test_a_firing_held_by_a_window_survives_a_restart_and_is_notified_after_it(
    daemon: WindowDaemon, night: Night, hook: Receiver
) -> None:
    assert await daemon.run_at(night.inside[0], 97.0) == FIRED
    await daemon.stop()
    await daemon.open()  # the unnotified firing comes back from the store
    assert await daemon.run_at(night.inside[-1], 97.0) == []
    assert hook.requests == []
    assert await daemon.run_at(night.closes, 97.0) == FIRED
    assert statuses(hook) == [["firing"]]


async def test_a_reload_swaps_the_windows_on_the_same_muter(
    tmp_path: Path, clock: ManualClock, hook: Receiver
) -> None:
    night = NIGHTS["first-sunday"]
    spec = f"cron={night.cron}; duration={night.duration}; match=rule=disk_full"
    environ = {
        "OPSWATCH_STATE_PATH": str(tmp_path / "state.sqlite3"),
        "OPSWATCH_MAINTENANCE_DISK": spec,
    }
    daemon = WindowDaemon(tmp_path, environ, clock, hook)
    app = await daemon.open()
    try:
        assert await daemon.run_at(night.inside[0], 97.0) == FIRED
        (alert,) = app.tracker.active()
        app.reloader.enable()  # as start() does
        other = "cron=0 3 * * *; duration=1h; match=rule=disk_full"
        assert await app.reload(
            {
                **daemon.environ,
                "OPSWATCH_MAINTENANCE_DISK": "",
                "OPSWATCH_MAINTENANCE_NIGHTLY": other,
            }
        )
        assert [w.name for w in app.maintenance.muter.recurring] == ["nightly"]
        assert app.book.pipeline.muter is app.mutes
        # 02:01 UTC: the first Sunday's window is gone, the nightly one opens at 03:00
        assert app.mutes.muting(alert, night.inside[0]) == []
        assert app.mutes.muting(alert, night.inside[0] + timedelta(hours=1)) == [
            "maintenance nightly"
        ]
    finally:
        await daemon.stop()
