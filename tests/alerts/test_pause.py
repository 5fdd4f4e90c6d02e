"""Pause and resume through the real daemon: a paused check's alerts are tracked, stored and
listed (``paused by WHO``) but neither notified nor remediated; resume notifies what still
fires at the next run; a restart keeps the pause; replicas on PostgreSQL share it; every
pause and resume is audited in the store and the log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from opswatch.alerts.pause import PausedEverywhereError, PauseError, PauseMuter, Pauses
from opswatch.daemon.app import App
from opswatch.model import (
    Alert,
    AlertState,
    Pause,
    PauseAction,
    PauseEvent,
    Severity,
    TransitionKind,
)
from opswatch.state.postgres import PostgresStore
from tests.conftest import ManualClock, passes
from tests.peers import Receiver
from tests.pgschema import fresh_schema

from .conftest import Daemon

FIRED, RESOLVED = TransitionKind.FIRED, TransitionKind.RESOLVED
DISK_FULL = ("host.disk_used_percent", 97.0)
DISK_OK = ("host.disk_used_percent", 50.0)
API_DOWN = ("http.up", 0.0)


@pytest.fixture
async def daemon(tmp_path: Path, clock: ManualClock, hook: Receiver) -> AsyncIterator[Daemon]:
    environ = {
        "OPSWATCH_CHECKS": "host,http",
        "OPSWATCH_HTTP_TARGETS": "api=http://127.0.0.1:9/health",
        "OPSWATCH_RULE_HTTP_DOWN_FOR_CYCLES": "1",
        "OPSWATCH_STATE_PATH": str(tmp_path / "state.sqlite3"),
    }
    daemon = Daemon(environ, clock, hook)
    await daemon.open()
    yield daemon
    await daemon.stop()


async def test_a_pause_survives_a_restart_and_resume_notifies_what_still_fires_at_the_next_run(
    daemon: Daemon, clock: ManualClock
) -> None:
    await daemon.app.pauses.pause([], by="ana", comment="deploy")
    await daemon.stop()
    app = await daemon.open()  # the pause comes from the store
    assert [(p.check, p.by, p.comment) for p in app.pauses.muter.pauses()] == [
        (None, "ana", "deploy")
    ]
    assert await daemon.run("host", DISK_FULL) == [FIRED]  # collected, tracked, stored
    assert daemon.muted_by() == {"disk_full": ["paused by ana"]}
    clock.advance(30)
    assert await daemon.run("host", DISK_FULL) == []
    assert daemon.sent() == []
    (stored,) = await app.store.load_active()
    assert not stored.notified

    await app.pauses.resume([], by="bob", comment="deploy done")
    assert daemon.muted_by() == {"disk_full": []}
    clock.advance(30)
    assert await daemon.run("host", DISK_FULL) == [FIRED]  # the next run notifies it
    assert daemon.sent() == [("firing", "disk_full")]
    clock.advance(30)
    assert await daemon.run("host", DISK_FULL) == []  # once
    assert len(daemon.sent()) == 1


async def test_a_pause_of_one_check_mutes_that_check_only(
    daemon: Daemon, clock: ManualClock
) -> None:
    await daemon.app.pauses.pause(["http:api"], by="ana")
    assert await daemon.run("http:api", API_DOWN) == [FIRED]
    assert await daemon.run("host", DISK_FULL) == [FIRED]
    assert daemon.sent() == [("firing", "disk_full")]
    assert daemon.muted_by() == {"http_down": ["paused by ana"], "disk_full": []}


async def test_an_alert_that_fires_and_resolves_while_paused_sends_nothing(
    daemon: Daemon, clock: ManualClock
) -> None:
    await daemon.app.pauses.pause([], by="ana")
    assert await daemon.run("host", DISK_FULL) == [FIRED]
    clock.advance(30)
    assert await daemon.run("host", DISK_OK) == [RESOLVED]
    await daemon.app.pauses.resume([], by="ana")
    clock.advance(30)
    assert await daemon.run("host", DISK_OK) == []
    assert daemon.sent() == []


async def test_a_paused_alert_is_not_remediated(
    tmp_path: Path, clock: ManualClock, hook: Receiver
) -> None:
    environ = {
        "OPSWATCH_CHECKS": "host",
        "OPSWATCH_STATE_PATH": str(tmp_path / "state.sqlite3"),
        "OPSWATCH_RECOVERY_ALLOW": "/bin/true",
        "OPSWATCH_RECOVERY_DISK_FULL": "command:/bin/true",
    }
    daemon = Daemon(environ, clock, hook)
    app = await daemon.open()
    try:
        await app.pauses.pause(["host"], by="ana")
        await daemon.run("host", DISK_FULL)
        assert app.remediation.in_progress == set()
        (alert,) = app.tracker.active()
        assert alert.state is AlertState.FIRING
    finally:
        await daemon.stop()


async def test_every_pause_and_resume_is_audited_in_the_store_and_the_log(
    daemon: Daemon, clock: ManualClock
) -> None:
    pauses, start = daemon.app.pauses, clock.now
    with capture_logs() as logs:
        await pauses.pause(["http:api", "http:api"], by="ana", comment="flaky")
        clock.advance(60)
        await pauses.resume(["http:api"], by="bob", comment="fixed")
    assert await pauses.events() == [
        PauseEvent(PauseAction.RESUMED, ("http:api",), "bob", "fixed", clock.now),
        PauseEvent(PauseAction.PAUSED, ("http:api",), "ana", "flaky", start),
    ]
    assert [(e["event"], e["checks"], e["by"], e["comment"]) for e in logs] == [
        ("monitoring_paused", ["http:api"], "ana", "flaky"),
        ("monitoring_resumed", ["http:api"], "bob", "fixed"),
    ]


async def test_unknown_checks_and_resuming_some_checks_while_all_are_paused_are_refused(
    daemon: Daemon,
) -> None:
    pauses = daemon.app.pauses
    unknown = r"checks: no check 'http:web' \(configured: capacity, host, "
    with pytest.raises(PauseError, match=unknown):
        await pauses.pause(["http:web"], by="ana")
    await pauses.pause([], by="ana")
    with pytest.raises(PausedEverywhereError, match=r"every check is paused \(by ana since"):
        await pauses.resume(["host"], by="bob")
    assert [p.check for p in await daemon.app.store.pauses()] == [None]
    assert len(await pauses.events()) == 1  # a refused change is no event


async def test_a_paused_check_that_a_reload_removed_can_still_be_resumed(daemon: Daemon) -> None:
    app = daemon.app
    await app.pauses.pause(["http:api"], by="ana")
    app.reloader.enable()  # as start() does
    assert await app.reload({**daemon.environ, "OPSWATCH_CHECKS": "host"})
    with pytest.raises(PauseError, match="checks: no check 'http:api'"):
        await app.pauses.pause(["http:api"], by="ana")
    assert await app.pauses.resume(["http:api"], by="bob") == []


def test_the_muter_names_each_pause_that_holds_an_alert(clock: ManualClock) -> None:
    every = Pause(None, "ana", None, clock.now)
    api = Pause("http:api", "bob", "deploy", clock.now)
    muter = PauseMuter([api, every])
    held = Alert(
        "fp", "http_down", "http:api", {}, AlertState.FIRING, Severity.CRITICAL, "s", 0.0,
        clock.now, clock.now,
    )  # fmt: skip
    assert muter.muting(held, clock.now) == ["paused by ana", "paused by bob"]
    assert muter.pauses() == [every, api]
    assert PauseMuter([api]).muting(held, clock.now) == ["paused by bob"]
    assert not PauseMuter([api]).muted(replace(held, check="host"), clock.now)
    assert not PauseMuter().muted(held, clock.now)


async def test_replicas_on_postgresql_share_a_pause_and_send_nothing_for_it(
    postgres_dsn: str, clock: ManualClock, hook: Receiver
) -> None:
    async with fresh_schema(postgres_dsn) as schema:
        environ = {
            "OPSWATCH_CHECKS": "host",
            "OPSWATCH_STATE_URL": postgres_dsn,
            "OPSWATCH_STATE_SCHEMA": schema,
        }
        one, two = Daemon(environ, clock, hook), Daemon(environ, clock, hook)
        await one.open()
        replica: App = await two.open()
        try:
            await one.app.pauses.pause([], by="ana", comment="failover")
            follow = replica.pauses.follow
            waits = await passes(lambda sleep: follow(lambda: replica.timing.interval, sleep), 2)
            assert waits == [30.0, 30.0]
            await one.app.leases.release_all()  # the other replica runs the check now
            assert await two.run("host", DISK_FULL) == [FIRED]
            assert two.muted_by() == {"disk_full": ["paused by ana"]}
            assert hook.requests == []
        finally:
            await one.stop()
            await two.stop()


async def test_the_pauses_follow_rides_through_a_store_outage(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = PostgresStore("postgresql://127.0.0.1:9/none")  # never opened: every read fails
    pauses = Pauses(store, clock, lambda: ["host"])
    pauses.muter.replace([Pause(None, "ana", None, clock.now)])
    with capture_logs() as logs:
        await passes(lambda sleep: pauses.follow(lambda: 30.0, sleep), 3)
    assert [e["event"] for e in logs] == ["pauses_refresh_failed"] * 2
    assert [p.by for p in pauses.muter.pauses()] == ["ana"]  # kept in memory
