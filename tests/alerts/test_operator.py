"""Operator actions in the tracker (ack, unack, manual resolve) with a manual clock, and
through the commit path into a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from opswatch.alerts.book import AlertBook
from opswatch.alerts.operator import Operator, Outcome
from opswatch.alerts.tracker import AlertTracker
from opswatch.codec import alert_from_json, alert_to_json
from opswatch.model import (
    AlertState,
    Sample,
    Severity,
    Transition,
    TransitionKind,
    utcnow,
)
from opswatch.notifiers.pipeline import NotifyPipeline
from opswatch.notifiers.routing import RouteTable
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.rules.threshold import Level, ThresholdRule
from opswatch.state.outage import StoreOutage
from opswatch.state.sqlite import SQLiteStore
from tests.alerts.test_tracker import DISK_FP, HOUR, finding, run, tracker
from tests.conftest import ManualClock

W, C = Severity.WARNING, Severity.CRITICAL
CYCLE = 30
WAIT_S = 10.0


def test_an_ack_holds_back_reminders_and_records_who_and_why(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(C)), clock.now)
    acked = alerts.ack(DISK_FP, "alice", clock.now, comment="on it")
    assert acked is not None
    assert acked.kind is TransitionKind.ACKNOWLEDGED
    assert acked.note == "acknowledged by alice: on it"
    assert (acked.alert.acked_by, acked.alert.ack_comment) == ("alice", "on it")
    assert acked.alert.acked_at == clock.now
    for _ in range(4):
        clock.advance(HOUR)
        assert alerts.update(run(finding(C)), clock.now) == []


def test_an_expired_ack_sends_a_reminder_within_one_cycle_of_its_expiry(
    clock: ManualClock,
) -> None:
    alerts = tracker()  # critical: a reminder every hour
    alerts.update(run(finding(C)), clock.now)
    expiry = clock.now + timedelta(minutes=20)
    alerts.ack(DISK_FP, "alice", clock.now, expires_at=expiry)
    reminders: list[Transition] = []
    while not reminders:
        clock.advance(CYCLE)
        reminders = alerts.update(run(finding(C)), clock.now)
    (reminder,) = reminders
    assert reminder.kind is TransitionKind.REMINDER
    assert expiry <= reminder.at < expiry + timedelta(seconds=CYCLE)  # not the 1 h schedule
    assert reminder.note == "acknowledgement by alice expired"
    assert reminder.alert.acked_by is None
    assert reminder.alert.ack_expires_at is None
    clock.advance(CYCLE)  # then the usual schedule again
    assert alerts.update(run(finding(C)), clock.now) == []
    clock.advance(HOUR)
    assert [t.kind for t in alerts.update(run(finding(C)), clock.now)] == [TransitionKind.REMINDER]


def test_a_reminder_due_during_the_ack_fires_at_the_first_cycle_after_expiry(
    clock: ManualClock,
) -> None:
    alerts = tracker()
    alerts.update(run(finding(C)), clock.now)
    expiry = clock.now + timedelta(hours=3)
    alerts.ack(DISK_FP, "alice", clock.now, expires_at=expiry)
    sent: list[Transition] = []
    while clock.now < expiry + timedelta(minutes=5):
        clock.advance(CYCLE)
        sent.extend(alerts.update(run(finding(C)), clock.now))
    assert [t.at for t in sent] == [expiry]  # 3 reminders were due meanwhile: one, at expiry


def test_re_acking_extends_the_ack(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(C)), clock.now)
    alerts.ack(DISK_FP, "alice", clock.now, expires_at=clock.now + timedelta(hours=1))
    clock.advance(50 * 60)
    later = clock.now + timedelta(hours=2)
    again = alerts.ack(DISK_FP, "bob", clock.now, comment="still on it", expires_at=later)
    assert again is not None
    assert (again.alert.acked_by, again.alert.ack_expires_at) == ("bob", later)
    clock.advance(HOUR)  # past alice's expiry, inside bob's
    assert alerts.update(run(finding(C)), clock.now) == []
    assert alerts.get(DISK_FP).acked_by == "bob"  # type: ignore[union-attr]


def test_a_rise_ends_a_non_sticky_ack_and_keeps_a_sticky_one(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(W)), clock.now)
    alerts.ack(DISK_FP, "alice", clock.now, comment="known")
    (rise,) = alerts.update(run(finding(C)), clock.now)
    assert rise.kind is TransitionKind.SEVERITY_CHANGED
    assert (rise.alert.acked_by, rise.alert.ack_comment, rise.alert.acked_at) == (None,) * 3

    alerts.update(run(finding(W)), clock.now)
    alerts.ack(DISK_FP, "bob", clock.now, comment="disk swap at 14:00", sticky=True)
    (rise,) = alerts.update(run(finding(C)), clock.now)
    assert (rise.alert.acked_by, rise.alert.ack_sticky) == ("bob", True)
    clock.advance(3 * HOUR)
    assert alerts.update(run(finding(C)), clock.now) == []  # still no reminders


def test_an_escalation_ends_a_non_sticky_ack_and_keeps_a_sticky_one(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(W)), clock.now)
    alerts.ack(DISK_FP, "alice", clock.now)
    escalated = alerts.escalate(DISK_FP, clock.now, "recovery failed")
    assert escalated is not None
    assert escalated.alert.acked_by is None
    alerts.ack(DISK_FP, "bob", clock.now, sticky=True)
    escalated = alerts.escalate(DISK_FP, clock.now, "recovery failed")
    assert escalated is not None
    assert escalated.alert.acked_by == "bob"


def test_every_ack_ends_when_the_alert_resolves(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(C)), clock.now)
    alerts.ack(DISK_FP, "alice", clock.now, sticky=True)
    clock.advance(CYCLE)
    (resolved,) = alerts.update(run(), clock.now)
    assert resolved.kind is TransitionKind.RESOLVED
    clock.advance(CYCLE)
    (fired,) = alerts.update(run(finding(C)), clock.now)
    assert fired.kind is TransitionKind.FIRED
    assert (fired.alert.acked_by, fired.alert.ack_sticky) == (None, False)
    clock.advance(HOUR)
    assert [t.kind for t in alerts.update(run(finding(C)), clock.now)] == [TransitionKind.REMINDER]


def test_unack_resumes_the_reminders_that_were_due(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(C)), clock.now)
    alerts.ack(DISK_FP, "alice", clock.now)
    clock.advance(2 * HOUR)
    assert alerts.update(run(finding(C)), clock.now) == []
    unacked = alerts.unack(DISK_FP, "bob", clock.now, comment="handing over")
    assert unacked is not None
    assert unacked.kind is TransitionKind.UNACKNOWLEDGED
    assert unacked.note == "unacknowledged by bob: handing over"
    assert unacked.alert.acked_by is None
    clock.advance(CYCLE)
    assert [t.kind for t in alerts.update(run(finding(C)), clock.now)] == [TransitionKind.REMINDER]


def test_operator_actions_on_an_unknown_alert_return_none(clock: ManualClock) -> None:
    alerts = tracker()
    assert alerts.ack("0" * 16, "alice", clock.now) is None
    assert alerts.unack("0" * 16, "alice", clock.now) is None
    assert alerts.resolve("0" * 16, "alice", clock.now) is None


def test_a_manual_resolve_resolves_with_a_note_and_the_next_finding_opens_a_new_alert(
    clock: ManualClock,
) -> None:
    """The evaluator still holds the series active after a manual resolve: its next finding
    must open a new alert (a new episode), not be lost."""
    rule = ThresholdRule("http_down", "http.up", "<", (Level(C, 1, 1),), "down")
    evaluator = RuleEvaluator([rule])
    alerts = AlertTracker({C: HOUR})

    def down() -> list[Sample]:
        return [Sample("http:api", "http.up", 0.0, clock.now, {"target": "api"})]

    (fired,) = alerts.update(evaluator.evaluate("http:api", down()), clock.now)
    clock.advance(CYCLE)
    resolved = alerts.resolve(fired.alert.fingerprint, "alice", clock.now, comment="was wrong")
    assert resolved is not None
    assert resolved.kind is TransitionKind.RESOLVED
    assert resolved.note == "resolved by alice: was wrong"
    assert resolved.alert.state is AlertState.RESOLVED
    assert resolved.alert.resolved_at == clock.now
    assert alerts.active() == []
    clock.advance(CYCLE)
    (again,) = alerts.update(evaluator.evaluate("http:api", down()), clock.now)
    assert again.kind is TransitionKind.FIRED
    assert again.alert.fingerprint == fired.alert.fingerprint
    assert again.alert.started_at == clock.now


def test_the_codec_keeps_ack_fields_and_decodes_rows_without_them(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(C)), clock.now)
    acked = alerts.ack(
        DISK_FP,
        "alice",
        clock.now,
        comment="c",
        expires_at=clock.now + timedelta(hours=1),
        sticky=True,
    )
    assert acked is not None
    data = json.loads(json.dumps(alert_to_json(acked.alert)))
    assert alert_from_json(data) == acked.alert
    for key in ("ack_comment", "acked_at", "ack_expires_at", "ack_sticky"):
        del data[key]  # a row written before these fields existed
    old = alert_from_json(data)
    assert (old.acked_by, old.ack_comment, old.ack_expires_at, old.ack_sticky) == (
        "alice",
        None,
        None,
        False,
    )


# -- through the commit path -------------------------------------------------------------

CHANNEL = "webhook:test"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "s.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


def _operator(store: SQLiteStore, alerts: AlertTracker, clock: ManualClock) -> Operator:
    routes = RouteTable((CHANNEL,), {s: frozenset({CHANNEL}) for s in Severity})
    outage = StoreOutage(utcnow, 3600.0, lambda: None)
    book = AlertBook(store, alerts, NotifyPipeline(routes), lambda: None, outage)
    return Operator(book, clock, busy_wait_s=0.0)


async def test_ack_and_unack_are_stored_in_history_and_notified_nowhere(
    store: SQLiteStore, clock: ManualClock
) -> None:
    alerts = tracker()
    operator = _operator(store, alerts, clock)
    (fired,) = alerts.update(run(finding(C)), clock.now)
    assert await operator._book.commit("host", [fired], clock.now)
    queued = len(await store.outbox_due(clock.now, 100))
    assert queued == 1
    expiry = clock.now + timedelta(hours=2)
    done = await operator.ack(DISK_FP, "alice", comment="on it", expires_at=expiry, sticky=True)
    assert done.outcome is Outcome.DONE
    (stored,) = await store.load_active()
    assert (stored.acked_by, stored.ack_comment, stored.ack_expires_at, stored.ack_sticky) == (
        "alice",
        "on it",
        expiry,
        True,
    )
    clock.advance(60)
    assert (await operator.unack(DISK_FP, "bob", comment="mine now")).outcome is Outcome.DONE
    (stored,) = await store.load_active()
    assert stored.acked_by is None
    history = await store.history()
    assert [(t.kind, t.note) for t in history[:2]] == [
        (TransitionKind.UNACKNOWLEDGED, "unacknowledged by bob: mine now"),
        (TransitionKind.ACKNOWLEDGED, f"acknowledged by alice until {expiry.isoformat()}: on it"),
    ]
    assert len(await store.outbox_due(clock.now, 100)) == queued  # nothing more to send
    assert (await operator.ack("0" * 16, "alice")).outcome is Outcome.UNKNOWN


async def test_a_manual_resolve_is_stored_and_notified_to_the_firings_channels(
    store: SQLiteStore, clock: ManualClock
) -> None:
    alerts = tracker()
    operator = _operator(store, alerts, clock)
    (fired,) = alerts.update(run(finding(C)), clock.now)
    assert await operator._book.commit("host", [fired], clock.now)
    clock.advance(60)
    done = await operator.resolve(DISK_FP, "alice", comment="false alarm")
    assert done.outcome is Outcome.DONE
    assert await store.load_active() == []
    items = await store.outbox_due(clock.now, 100)
    assert [(i.channel, i.notification.transitions[0].kind) for i in items] == [
        (CHANNEL, TransitionKind.FIRED),
        (CHANNEL, TransitionKind.RESOLVED),
    ]
    assert "resolved by alice: false alarm" in items[1].notification.text


async def test_an_alert_its_run_has_not_committed_yet_is_refused_as_busy_after_the_wait(
    store: SQLiteStore, clock: ManualClock
) -> None:
    """A run fired the alert and awaits evidence before its commit: an ack now must not write
    the run's half-made alert; it is refused, and accepted once the run committed."""
    alerts = tracker()
    operator = _operator(store, alerts, clock)
    (fired,) = alerts.update(run(finding(C)), clock.now)
    assert (await operator.ack(DISK_FP, "alice")).outcome is Outcome.BUSY
    assert (await operator.resolve(DISK_FP, "alice")).outcome is Outcome.BUSY
    assert await store.load_active() == []
    assert await store.history() == []
    assert await operator._book.commit("host", [fired], clock.now)
    assert (await operator.ack(DISK_FP, "alice")).outcome is Outcome.DONE
    assert [t.kind for t in await store.history()] == [
        TransitionKind.ACKNOWLEDGED,
        TransitionKind.FIRED,
    ]


async def test_an_action_on_a_busy_alert_waits_for_the_runs_commit(
    store: SQLiteStore, clock: ManualClock
) -> None:
    alerts = tracker()
    operator = _operator(store, alerts, clock)
    waiting = Operator(operator._book, clock, busy_wait_s=WAIT_S)
    (fired,) = alerts.update(run(finding(C)), clock.now)
    acking = asyncio.create_task(waiting.ack(DISK_FP, "alice"))
    await asyncio.sleep(0)  # the ack is waiting now
    assert not acking.done()
    assert await operator._book.commit("host", [fired], clock.now)
    assert (await asyncio.wait_for(acking, WAIT_S)).outcome is Outcome.DONE
    assert [t.kind for t in await store.history()] == [
        TransitionKind.ACKNOWLEDGED,
        TransitionKind.FIRED,
    ]


def test_an_ack_expiring_during_a_recovery_sends_no_reminder(clock: ManualClock) -> None:
    alerts = tracker()
    alerts.update(run(finding(C)), clock.now)
    alerts.ack(DISK_FP, "alice", clock.now, expires_at=clock.now + timedelta(minutes=5))
    alerts.begin_remediation(DISK_FP)
    clock.advance(10 * 60)
    assert alerts.update(run(finding(C)), clock.now, remediating={DISK_FP}) == []
    alert = alerts.get(DISK_FP)
    assert alert is not None
    assert alert.acked_by is None  # the ack ended all the same
