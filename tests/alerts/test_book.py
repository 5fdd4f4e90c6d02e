"""The one commit path: an alert change, its transitions and its outbox rows are written
together or not at all, and memory is never ahead of the store."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from tenacity import wait_none

from opswatch.alerts.book import AlertBook
from opswatch.alerts.tracker import AlertTracker
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import Evaluation, Finding, Severity, TransitionKind, fingerprint, utcnow
from opswatch.notifiers.outbox import RetryPolicy
from opswatch.notifiers.pipeline import NotifyPipeline
from opswatch.notifiers.routing import RouteTable
from opswatch.state.outage import StoreOutage
from opswatch.state.sqlite import SQLiteStore
from tests.conftest import ManualClock
from tests.peers import Receiver

FAST = RetryPolicy(attempts=2, total_seconds=5, wait=wait_none())
CHANNEL = "webhook:test"
C = Severity.CRITICAL


def _finding(check: str) -> Finding:
    labels = {"target": check}
    return Finding(
        rule="tcp_down",
        check=check,
        fingerprint=fingerprint("tcp_down", labels),
        severity=C,
        summary=f"{check} is down",
        value=0.0,
        labels=labels,
    )


def _run(check: str, *findings: Finding) -> Evaluation:
    return Evaluation(check, tuple(findings), frozenset({"tcp_down"}), {})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "s.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


def _book(store: SQLiteStore, tracker: AlertTracker) -> AlertBook:
    routes = RouteTable((CHANNEL,), {s: frozenset({CHANNEL}) for s in Severity})
    outage = StoreOutage(utcnow, 3600.0, lambda: None)
    return AlertBook(store, tracker, NotifyPipeline(routes), lambda: None, outage)


async def test_another_checks_commit_never_writes_a_half_made_alert(
    store: SQLiteStore, clock: ManualClock
) -> None:
    """The kill-after-detection defect: check a fired (not yet committed: its run awaits
    evidence); check b commits meanwhile; the daemon dies before a's commit. The store must
    hold nothing of a's alert, so that the restarted daemon fires and notifies it once."""
    tracker = AlertTracker({C: 3600.0})
    book = _book(store, tracker)
    (fired_a,) = tracker.update(_run("tcp:a", _finding("tcp:a")), clock.now)
    (fired_b,) = tracker.update(_run("tcp:b", _finding("tcp:b")), clock.now)
    assert await book.commit("tcp:b", [fired_b], clock.now, touched=[fired_b.alert.fingerprint])
    # killed here: a's commit never happens
    assert [a.check for a in await store.load_active()] == ["tcp:b"]
    assert [t.alert.check for t in await store.history()] == ["tcp:b"]
    assert [
        i.notification.transitions[0].alert.check for i in await store.outbox_due(clock.now, 10)
    ] == ["tcp:b"]

    restarted = AlertTracker({C: 3600.0})
    restarted.load(await store.load_active())
    clock.advance(30)
    (again,) = restarted.update(_run("tcp:a", _finding("tcp:a")), clock.now)
    assert again.kind is TransitionKind.FIRED
    assert fired_a.alert.fingerprint == again.alert.fingerprint


async def test_a_failed_write_leaves_the_tracker_as_before(
    store: SQLiteStore, clock: ManualClock
) -> None:
    tracker = AlertTracker({C: 3600.0})
    book = _book(store, tracker)
    await store._call(lambda db: db.execute("PRAGMA query_only = ON"))
    (fired,) = tracker.update(_run("tcp:a", _finding("tcp:a")), clock.now)
    with capture_logs() as logs:
        assert not await book.commit("tcp:a", [fired], clock.now)
    assert tracker.active() == []
    (failed,) = [e for e in logs if e["event"] == "state_write_failed"]
    assert failed["check"] == "tcp:a"
    assert "readonly" in failed["error"]

    await store._call(lambda db: db.execute("PRAGMA query_only = OFF"))
    clock.advance(30)
    (again,) = tracker.update(_run("tcp:a", _finding("tcp:a")), clock.now)
    assert again.kind is TransitionKind.FIRED
    assert await book.commit("tcp:a", [again], clock.now)
    assert [t.kind for t in await store.history()] == [TransitionKind.FIRED]


async def test_a_failed_resolution_write_keeps_the_alert_active(
    store: SQLiteStore, clock: ManualClock
) -> None:
    tracker = AlertTracker({C: 3600.0})
    book = _book(store, tracker)
    (fired,) = tracker.update(_run("tcp:a", _finding("tcp:a")), clock.now)
    assert await book.commit("tcp:a", [fired], clock.now)
    await store._call(lambda db: db.execute("PRAGMA query_only = ON"))
    clock.advance(30)
    (resolved,) = tracker.update(_run("tcp:a"), clock.now)
    assert not await book.commit("tcp:a", [resolved], clock.now)
    assert [a.fingerprint for a in tracker.active()] == [fired.alert.fingerprint]


async def test_a_full_state_disk_while_a_target_fails_notifies_firing_then_resolution_once(
    tmp_path: Path,
) -> None:
    """Issue: with the state file unwritable while a target went down, the alert stayed in
    memory, was never stored or notified, and its resolution was notified later. Now the
    firing is stored and notified once the store takes writes again, then the resolution."""
    target, webhook = Receiver(), Receiver()
    await target.start()
    await webhook.start()
    environ = {
        "OPSWATCH_CHECKS": "http",
        "OPSWATCH_HTTP_TARGETS": f"api={target.url}/health",
        "OPSWATCH_HTTP_TIMEOUT": "500ms",
        "OPSWATCH_WEBHOOK_URL": f"{webhook.url}/hook",
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        "OPSWATCH_INTERVAL": "1h",
    }
    app = App(load_config(environ), retry_policy=FAST)
    store = app.store
    assert isinstance(store, SQLiteStore)
    await app.start()
    try:
        await app.checks.wait_for_runs("http:api", 1)
        await target.stop()
        await store._call(lambda db: db.execute("PRAGMA query_only = ON"))
        with capture_logs() as logs:
            for _ in range(3):
                assert await app.cycle.run("http:api") == []
        assert app.tracker.active() == []
        assert webhook.requests == []
        events = [e["event"] for e in logs]
        assert events.count("state_store_unavailable") == 1  # per outage, not per attempt
        assert events.count("state_write_failed") == 1
        health = app.checks.health()
        assert not health.healthy
        assert health.reason.startswith("state store unavailable since ")

        await store._call(lambda db: db.execute("PRAGMA query_only = OFF"))
        with capture_logs() as logs:
            (fired,) = await app.cycle.run("http:api")
        assert [e["event"] for e in logs].count("state_store_available") == 1
        assert app.checks.health().healthy
        assert fired.kind is TransitionKind.FIRED
        await target.start()
        (resolved,) = await app.cycle.run("http:api")
        assert resolved.kind is TransitionKind.RESOLVED
        sent = await webhook.wait_for(2, timeout=15)
        assert [r.body["status"] for r in sent] == ["firing", "resolved"]
        history = await store.history()
        assert [t.kind for t in history] == [TransitionKind.RESOLVED, TransitionKind.FIRED]
    finally:
        await app.stop()
        await target.stop()
        await webhook.stop()
    assert len(webhook.requests) == 2


def test_sqlite_query_only_is_what_a_full_disk_looks_like_to_a_write() -> None:
    """The tests above refuse writes with ``PRAGMA query_only``: a write then fails with an
    OperationalError, as on a full disk (SQLITE_FULL) or a read-only file."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x)")
    db.execute("PRAGMA query_only = ON")
    with pytest.raises(sqlite3.OperationalError):
        db.execute("INSERT INTO t VALUES (1)")


def test_an_outage_longer_than_the_limit_gives_up_once(clock: ManualClock) -> None:
    gave_up: list[bool] = []
    outage = StoreOutage(clock, 60.0, lambda: gave_up.append(True))
    with capture_logs() as logs:
        outage.failed("OSError: disk full")
        clock.advance(59)
        outage.failed("OSError: disk full")
        assert gave_up == []
        clock.advance(1)
        outage.failed("OSError: disk full")
        outage.failed("OSError: disk full")
    assert gave_up == [True]
    assert [e["event"] for e in logs] == ["state_store_unavailable", "state_store_gave_up"]
    outage.succeeded()
    assert not outage.down
