"""The SQLite store: atomic cycle records, restart persistence, outbox bookkeeping."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opswatch.alerts.store import CycleRecord, SQLiteStore
from opswatch.model import (
    Alert,
    AlertState,
    Notification,
    Severity,
    Transition,
    TransitionKind,
    fingerprint,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _alert(rule: str = "disk_full", state: AlertState = AlertState.FIRING) -> Alert:
    labels = {"mountpoint": "/"}
    return Alert(
        fingerprint=fingerprint(rule, labels),
        rule=rule,
        check="host",
        labels=labels,
        state=state,
        severity=Severity.CRITICAL,
        summary="disk / is 95% full",
        value=95.0,
        started_at=NOW,
        last_seen_at=NOW,
        last_notified_at=NOW,
    )


def _notification(transition: Transition) -> Notification:
    return Notification(
        transitions=(transition,),
        title="[FIRING] disk_full",
        text="disk / is 95% full",
        severity=Severity.CRITICAL,
        idempotency_key=transition.key,
    )


async def test_alerts_history_and_outbox_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    alert = _alert()
    fired = Transition(alert, TransitionKind.FIRED, NOW)
    store = SQLiteStore(path)
    await store.open()
    await store.record(
        CycleRecord([alert], [], [fired], [("webhook:1", _notification(fired))]), NOW
    )
    await store.close()

    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        assert await reopened.load_active() == [alert]
        assert await reopened.history(10) == [fired]
        (item,) = await reopened.outbox_due(NOW, 10)
        assert item.channel == "webhook:1"
        assert item.notification == _notification(fired)
    finally:
        await reopened.close()


async def test_resolution_removes_the_active_alert_and_keeps_its_history(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        alert = _alert()
        await store.record(CycleRecord([alert], [], [], []), NOW)
        resolved = Transition(
            _alert(state=AlertState.RESOLVED), TransitionKind.RESOLVED, NOW + timedelta(minutes=5)
        )
        await store.record(CycleRecord([], [alert.fingerprint], [resolved], []), NOW)
        assert await store.load_active() == []
        assert [t.kind for t in await store.history(10, alert.fingerprint)] == [
            TransitionKind.RESOLVED
        ]
    finally:
        await store.close()


async def test_the_same_notification_is_enqueued_once_per_channel(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        fired = Transition(_alert(), TransitionKind.FIRED, NOW)
        rows = [("webhook:1", _notification(fired)), ("webhook:2", _notification(fired))]
        await store.record(CycleRecord([], [], [], rows), NOW)
        await store.record(CycleRecord([], [], [], rows), NOW)
        assert await store.outbox_counts() == {"pending": 2}
    finally:
        await store.close()


async def test_postponed_rows_are_not_due_until_their_time(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        fired = Transition(_alert(), TransitionKind.FIRED, NOW)
        await store.record(CycleRecord([], [], [], [("webhook:1", _notification(fired))]), NOW)
        (item,) = await store.outbox_due(NOW, 10)
        later = NOW + timedelta(seconds=30)
        await store.outbox_postpone(item.id, 1, later, "HTTP 503")
        assert await store.outbox_due(NOW, 10) == []
        assert await store.outbox_next_due() == later
        (again,) = await store.outbox_due(later, 10)
        assert again.attempts == 1
        await store.outbox_delivered(again.id, later)
        assert await store.outbox_counts() == {"delivered": 1}
        assert await store.outbox_next_due() is None
    finally:
        await store.close()


async def test_a_failed_write_rolls_back_the_whole_cycle(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        alert = _alert()
        fired = Transition(alert, TransitionKind.FIRED, NOW)
        # the outbox row is written last; one that cannot be encoded aborts the whole cycle
        unencodable: dict[str, str] = {"mountpoint": object()}  # type: ignore[dict-item]
        broken = Transition(replace(alert, labels=unencodable), TransitionKind.FIRED, NOW)
        with pytest.raises(TypeError):
            await store.record(
                CycleRecord([alert], [], [fired], [("webhook:1", _notification(broken))]), NOW
            )
        assert await store.load_active() == []
        assert await store.history(10) == []
        assert await store.outbox_counts() == {}
    finally:
        await store.close()
