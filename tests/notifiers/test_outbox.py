"""The outbox against a real SQLite store and real local HTTP receivers."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, MutableMapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from structlog.testing import capture_logs
from tenacity import wait_fixed, wait_none

from opswatch.config import Secret, mask_url
from opswatch.model import CycleRecord, Notification, OutboxItem, Transition, TransitionKind, utcnow
from opswatch.notifiers.base import Notifier
from opswatch.notifiers.outbox import Outbox, RetryPolicy
from opswatch.notifiers.render import render
from opswatch.notifiers.webhook import WebhookNotifier
from opswatch.state.sqlite import SQLiteStore
from tests.conftest import ManualClock
from tests.notifiers.conftest import ReceiverFactory, transition
from tests.peers import Receiver, Reply

TINY = RetryPolicy(
    attempts=3, total_seconds=5, wait=wait_none(), row_backoff_base=10, row_backoff_max=40
)


class Sleeps:
    """tenacity's injected sleep: records the wait instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def webhook_for(receiver: Receiver, path: str = "/hook", timeout: float = 5.0) -> WebhookNotifier:
    url = receiver.url + path
    return WebhookNotifier(Secret(url, mask_url(url, hide_path=True)), timeout=timeout)


@pytest.fixture
async def webhook(receiver: Receiver) -> AsyncIterator[WebhookNotifier]:
    notifier = webhook_for(receiver)
    yield notifier
    await notifier.close()


def outbox_for(
    store: SQLiteStore,
    clock: ManualClock,
    *notifiers: Notifier,
    policy: RetryPolicy = TINY,
    sleep: Sleeps | None = None,
) -> Outbox:
    channels = {n.channel: n for n in notifiers}
    if sleep is None:
        return Outbox(store, channels, policy, clock)
    return Outbox(store, channels, policy, clock, sleep=sleep)


async def enqueue(
    store: SQLiteStore, clock: ManualClock, channel: str, *transitions: Transition
) -> Notification:
    """What the daemon does: the transitions and their outbox row in one transaction."""
    group = transitions or (transition(at=clock.now),)
    notification = render(group, clock.now)
    await store.record(
        CycleRecord(active=[], resolved=[], transitions=group, outbox=[(channel, notification)]),
        clock.now,
    )
    return notification


def rows(state_path: Path) -> list[dict[str, Any]]:
    """The outbox table as the next start would see it."""
    with sqlite3.connect(state_path) as db:
        db.row_factory = sqlite3.Row
        found = db.execute(
            "SELECT id, channel, state, attempts, next_attempt_at, last_error FROM outbox "
            "ORDER BY id"
        ).fetchall()
    return [dict(row) for row in found]


def events(logs: Sequence[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def keys(requests: Sequence[Any]) -> list[str]:
    return [r.headers["Idempotency-Key"] for r in requests]


async def test_delivers_exactly_once_after_two_server_errors_and_logs_each_retry(
    store: SQLiteStore, clock: ManualClock, receiver: Receiver, webhook: WebhookNotifier
) -> None:
    receiver.script(500, 503, 200)
    notification = await enqueue(store, clock, webhook.channel)
    outbox = outbox_for(store, clock, webhook)

    with capture_logs() as logs:
        finished = await outbox.deliver_due()

    assert finished == 1
    assert keys(receiver.requests) == [notification.idempotency_key] * 3
    assert await store.outbox_counts() == {"delivered": 1}
    retries = events(logs, "notify_retry")
    assert [(r["channel"], r["attempt"]) for r in retries] == [
        (webhook.channel, 1),
        (webhook.channel, 2),
    ]
    assert "HTTP 500" in retries[0]["error"]
    assert "HTTP 503" in retries[1]["error"]
    (delivered,) = events(logs, "notification_delivered")
    assert delivered["attempts"] == 3
    assert delivered["key"] == notification.idempotency_key
    assert delivered["duration_ms"] > 0  # three HTTP exchanges were timed
    assert await outbox.deliver_due() == 0
    assert len(receiver.requests) == 3


async def test_postpones_the_row_while_the_receiver_is_down_and_delivers_it_once_back(
    store: SQLiteStore,
    clock: ManualClock,
    receiver: Receiver,
    webhook: WebhookNotifier,
    state_path: Path,
) -> None:
    await receiver.stop()
    await enqueue(store, clock, webhook.channel)
    outbox = outbox_for(store, clock, webhook)

    with capture_logs() as logs:
        assert await outbox.deliver_due() == 0

    (row,) = rows(state_path)
    assert row["state"] == "pending"
    assert row["attempts"] == 1
    assert row["next_attempt_at"] == (clock.now + timedelta(seconds=10)).timestamp()
    assert "cannot connect" in row["last_error"]
    assert len(events(logs, "notify_retry")) == 2
    (postponed,) = events(logs, "notification_postponed")
    assert postponed["retry_in_s"] == 10
    assert outbox.failing_channels() == {webhook.channel}

    await receiver.start()
    assert await outbox.deliver_due() == 0, "not due yet"
    clock.advance(10)
    assert await outbox.deliver_due() == 1

    assert len(await receiver.wait_for(1)) == 1
    assert rows(state_path)[0]["state"] == "delivered"
    assert outbox.failing_channels() == frozenset()


async def test_row_backoff_doubles_with_each_failed_pass_up_to_the_cap(
    store: SQLiteStore,
    clock: ManualClock,
    receiver: Receiver,
    webhook: WebhookNotifier,
    state_path: Path,
) -> None:
    await receiver.stop()
    await enqueue(store, clock, webhook.channel)
    outbox = outbox_for(store, clock, webhook)
    rests = []

    for _ in range(4):
        await outbox.deliver_due()
        (row,) = rows(state_path)
        rests.append(row["next_attempt_at"] - clock.now.timestamp())
        clock.advance(rests[-1])

    assert rests == [10, 20, 40, 40]
    assert rows(state_path)[0]["attempts"] == 4


def test_row_backoff_honours_retry_after_up_to_the_cap() -> None:
    assert TINY.row_backoff(1, retry_after=25) == 25
    assert TINY.row_backoff(1, retry_after=3600) == 40
    assert TINY.row_backoff(3, retry_after=1) == 40
    assert RetryPolicy().row_backoff(1) == 30
    assert RetryPolicy().row_backoff(10_000) == 900


def test_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="positive"):
        RetryPolicy(row_backoff_base=0)


async def test_client_error_fails_the_row_without_a_retry_and_logs_an_error(
    store: SQLiteStore,
    clock: ManualClock,
    receiver: Receiver,
    webhook: WebhookNotifier,
    state_path: Path,
) -> None:
    receiver.script(400)
    await enqueue(store, clock, webhook.channel)
    outbox = outbox_for(store, clock, webhook)

    with capture_logs() as logs:
        assert await outbox.deliver_due() == 1

    assert len(receiver.requests) == 1
    (row,) = rows(state_path)
    assert row["state"] == "failed"
    assert "HTTP 400" in row["last_error"]
    assert events(logs, "notify_retry") == []
    (failed,) = events(logs, "notification_failed")
    assert failed["log_level"] == "error"
    assert failed["permanent"] is True
    assert "HTTP 400" in failed["error"]
    assert outbox.failing_channels() == {webhook.channel}


async def test_429_waits_at_least_as_long_as_retry_after_says(
    store: SQLiteStore, clock: ManualClock, receiver: Receiver, webhook: WebhookNotifier
) -> None:
    receiver.script(Reply(429, headers={"Retry-After": "7"}), 200)
    await enqueue(store, clock, webhook.channel)
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=3, total_seconds=60, wait=wait_none())
    outbox = outbox_for(store, clock, webhook, policy=policy, sleep=sleeps)

    with capture_logs() as logs:
        assert await outbox.deliver_due() == 1

    assert sleeps.waits == [7.0]
    assert events(logs, "notify_retry")[0]["wait_s"] == 7.0
    assert len(receiver.requests) == 2


async def test_policy_wait_longer_than_retry_after_wins(
    store: SQLiteStore, clock: ManualClock, receiver: Receiver, webhook: WebhookNotifier
) -> None:
    receiver.script(Reply(429, headers={"Retry-After": "2"}), 500, 200)
    await enqueue(store, clock, webhook.channel)
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=3, total_seconds=60, wait=wait_fixed(5))
    outbox = outbox_for(store, clock, webhook, policy=policy, sleep=sleeps)

    assert await outbox.deliver_due() == 1

    assert sleeps.waits == [5.0, 5.0]


async def test_retry_after_beyond_the_pass_budget_postpones_the_row_until_then(
    store: SQLiteStore,
    clock: ManualClock,
    receiver: Receiver,
    webhook: WebhookNotifier,
    state_path: Path,
) -> None:
    receiver.script(Reply(429, headers={"Retry-After": "30"}))
    await enqueue(store, clock, webhook.channel)
    sleeps = Sleeps()
    outbox = outbox_for(store, clock, webhook, sleep=sleeps)

    assert await outbox.deliver_due() == 0

    assert sleeps.waits == [], "never sleeps past the pass budget"
    assert len(receiver.requests) == 1
    assert rows(state_path)[0]["next_attempt_at"] == (clock.now + timedelta(seconds=30)).timestamp()


async def test_a_channel_that_asked_to_wait_is_left_alone_until_then_even_for_new_rows(
    store: SQLiteStore, clock: ManualClock, receiver: Receiver, webhook: WebhookNotifier
) -> None:
    receiver.script(Reply(429, headers={"Retry-After": "30"}))
    first = await enqueue(store, clock, webhook.channel)
    outbox = outbox_for(store, clock, webhook)
    await outbox.deliver_due()

    clock.advance(1)
    second = await enqueue(store, clock, webhook.channel, transition("other", at=clock.now))
    assert await outbox.deliver_due() == 0
    assert len(receiver.requests) == 1

    clock.advance(29)
    assert await outbox.deliver_due() == 2
    assert keys(receiver.requests[1:]) == [first.idempotency_key, second.idempotency_key]


async def test_pending_rows_survive_a_restart_and_are_delivered_once(
    state_path: Path,
    clock: ManualClock,
    receiver: Receiver,
    receiver_factory: ReceiverFactory,
) -> None:
    await receiver.stop()
    first_store = SQLiteStore(state_path)
    await first_store.open()
    first_webhook = webhook_for(receiver)
    notification = await enqueue(first_store, clock, first_webhook.channel)
    await outbox_for(first_store, clock, first_webhook).deliver_due()
    await first_webhook.close()
    await first_store.close()

    await receiver.start()
    second_store = SQLiteStore(state_path)
    await second_store.open()
    second_webhook = webhook_for(receiver)
    outbox = outbox_for(second_store, clock, second_webhook)
    try:
        assert await outbox.deliver_due() == 0, "the backoff is durable"
        clock.advance(10)
        assert await outbox.deliver_due() == 1
        assert await outbox.deliver_due() == 0
    finally:
        await second_webhook.close()
        await second_store.close()

    assert keys(receiver.requests) == [notification.idempotency_key]


class IdleSignallingStore:
    """The real store, plus an event set when ``run()`` asks when to wake up next (it is then
    about to wait): lets a test enqueue strictly after ``run()`` went idle."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.idle = asyncio.Event()

    async def outbox_due(
        self, now: datetime, limit: int | None, channel: str | None = None
    ) -> list[OutboxItem]:
        return await self.store.outbox_due(now, limit, channel)

    async def outbox_next_due(self, channel: str | None = None) -> datetime | None:
        next_due = await self.store.outbox_next_due(channel)
        self.idle.set()
        return next_due

    async def outbox_delivered(self, item_id: int, at: datetime) -> None:
        await self.store.outbox_delivered(item_id, at)

    async def outbox_postpone(
        self, item_id: int, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        await self.store.outbox_postpone(item_id, attempts, next_attempt_at, error)

    async def outbox_failed(self, item_id: int, at: datetime, error: str) -> None:
        await self.store.outbox_failed(item_id, at, error)

    async def outbox_divert(
        self, item_id: int, copies: Sequence[tuple[str, Notification]], at: datetime, error: str
    ) -> None:
        await self.store.outbox_divert(item_id, copies, at, error)

    async def outbox_merge(
        self,
        item_ids: Sequence[int],
        channel: str,
        notification: Notification,
        created_at: datetime,
        at: datetime,
    ) -> int | None:
        return await self.store.outbox_merge(item_ids, channel, notification, created_at, at)


async def test_run_delivers_a_row_shortly_after_wake(
    store: SQLiteStore, clock: ManualClock, receiver: Receiver, webhook: WebhookNotifier
) -> None:
    signalling = IdleSignallingStore(store)
    outbox = Outbox(signalling, {webhook.channel: webhook}, TINY, clock)
    task = asyncio.create_task(outbox.run())
    async with asyncio.timeout(5):
        await signalling.idle.wait()
    assert receiver.requests == []

    notification = await enqueue(store, clock, webhook.channel)
    outbox.wake()

    assert keys(await receiver.wait_for(1)) == [notification.idempotency_key]
    await outbox.flush(1.0)
    assert task.done()
    assert task.exception() is None
    assert await store.outbox_counts() == {"delivered": 1}


async def test_run_retries_a_postponed_row_when_it_falls_due(
    store: SQLiteStore, receiver: Receiver, webhook: WebhookNotifier
) -> None:
    receiver.script(500, 500, 500)
    policy = RetryPolicy(attempts=3, total_seconds=5, wait=wait_none(), row_backoff_base=0.05)
    outbox = Outbox(store, {webhook.channel: webhook}, policy, utcnow)
    await enqueue(store, ManualClock(utcnow()), webhook.channel)

    task = asyncio.create_task(outbox.run())
    try:
        assert len(await receiver.wait_for(4)) == 4
    finally:
        await outbox.flush(1.0)
    assert await store.outbox_counts() == {"delivered": 1}
    assert task.done()


async def test_fails_rows_of_a_channel_that_is_not_configured_any_more(
    store: SQLiteStore, clock: ManualClock, state_path: Path
) -> None:
    await enqueue(store, clock, "webhook:0badc0de")
    outbox = Outbox(store, {}, TINY, clock)

    with capture_logs() as logs:
        assert await outbox.deliver_due() == 1

    (row,) = rows(state_path)
    assert row["state"] == "failed"
    assert "webhook:0badc0de is not configured" in row["last_error"]
    assert events(logs, "notification_failed")[0]["channel"] == "webhook:0badc0de"


async def test_a_hanging_channel_does_not_hold_up_another(
    store: SQLiteStore, clock: ManualClock, receiver_factory: ReceiverFactory
) -> None:
    slow, fast = await receiver_factory(), await receiver_factory()
    slow.script(Reply.HANG)
    slow_hook, fast_hook = webhook_for(slow, timeout=30), webhook_for(fast)
    await enqueue(store, clock, slow_hook.channel)
    await enqueue(store, clock, fast_hook.channel)
    outbox = outbox_for(store, clock, slow_hook, fast_hook)

    delivering = asyncio.create_task(outbox.deliver_due())
    await fast.wait_for(1)
    await slow.wait_for(1)
    await slow.stop()
    await delivering

    assert await store.outbox_counts() in ({"delivered": 2}, {"delivered": 1, "pending": 1})
    await slow_hook.close()
    await fast_hook.close()


async def test_a_healthy_channel_delivers_within_a_second_while_another_is_stuck_sending(
    store: SQLiteStore, clock: ManualClock, receiver_factory: ReceiverFactory
) -> None:
    stuck, healthy = await receiver_factory(), await receiver_factory()
    stuck.script(Reply.HANG)  # blocks until released: that channel's pass does not end
    stuck_hook, healthy_hook = webhook_for(stuck, timeout=30), webhook_for(healthy)
    outbox = outbox_for(store, clock, stuck_hook, healthy_hook)
    task = asyncio.create_task(outbox.run())
    await enqueue(store, clock, stuck_hook.channel)
    outbox.wake()
    await stuck.wait_for(1)

    queued = time.monotonic()
    notification = await enqueue(
        store, clock, healthy_hook.channel, transition("other", at=clock.now)
    )
    outbox.wake()
    assert keys(await healthy.wait_for(1, timeout=1.0)) == [notification.idempotency_key]
    delay_ms = (time.monotonic() - queued) * 1000
    print(f"healthy channel delivered {delay_ms:.1f} ms after it was queued")  # noqa: T201

    assert not task.done()
    assert len(stuck.requests) == 1  # still in its first send
    await stuck.stop()
    await outbox.flush(5.0)
    assert task.done()
    await stuck_hook.close()
    await healthy_hook.close()


async def test_later_rows_of_a_channel_wait_behind_a_postponed_one_and_keep_their_order(
    store: SQLiteStore, clock: ManualClock, receiver: Receiver, webhook: WebhookNotifier
) -> None:
    receiver.script(500, 500, 500)
    written = [
        await enqueue(store, clock, webhook.channel, transition(f"rule_{n}", at=clock.now))
        for n in range(3)
    ]
    outbox = outbox_for(store, clock, webhook)

    assert await outbox.deliver_due() == 0
    assert keys(receiver.requests) == [written[0].idempotency_key] * 3

    clock.advance(10)
    assert await outbox.deliver_due() == 3
    assert keys(receiver.requests[3:]) == [n.idempotency_key for n in written]


async def test_an_older_postponed_row_goes_out_before_a_newer_due_one(
    store: SQLiteStore, clock: ManualClock, receiver: Receiver, webhook: WebhookNotifier
) -> None:
    await receiver.stop()
    fired = await enqueue(store, clock, webhook.channel)
    outbox = outbox_for(store, clock, webhook)
    await outbox.deliver_due()

    await receiver.start()
    clock.advance(1)
    resolved = await enqueue(
        store, clock, webhook.channel, transition(kind=TransitionKind.RESOLVED, at=clock.now)
    )
    assert await outbox.deliver_due() == 2

    assert keys(receiver.requests) == [fired.idempotency_key, resolved.idempotency_key]


async def test_flush_delivers_what_is_due(
    store: SQLiteStore, clock: ManualClock, receiver: Receiver, webhook: WebhookNotifier
) -> None:
    await enqueue(store, clock, webhook.channel)

    assert await outbox_for(store, clock, webhook).flush(5.0) == 1
    assert len(receiver.requests) == 1


async def test_flush_gives_up_at_its_deadline_and_leaves_the_row_pending(
    store: SQLiteStore, clock: ManualClock, receiver: Receiver, state_path: Path
) -> None:
    receiver.script(Reply.HANG)
    webhook = webhook_for(receiver, timeout=30)
    await enqueue(store, clock, webhook.channel)
    outbox = outbox_for(store, clock, webhook)
    task = asyncio.create_task(outbox.run())
    await receiver.wait_for(1)

    with capture_logs() as logs:
        assert await outbox.flush(0.1) == 0

    assert task.done()
    assert events(logs, "outbox_flush_timeout")
    (row,) = rows(state_path)
    assert (row["state"], row["attempts"]) == ("pending", 0)
    await receiver.stop()
    await webhook.close()


async def test_cancelling_a_pass_propagates_and_keeps_the_row(
    store: SQLiteStore, clock: ManualClock, receiver: Receiver
) -> None:
    receiver.script(Reply.HANG)
    webhook = webhook_for(receiver, timeout=30)
    await enqueue(store, clock, webhook.channel)
    delivering = asyncio.create_task(outbox_for(store, clock, webhook).deliver_due())
    await receiver.wait_for(1)

    delivering.cancel()

    with pytest.raises(asyncio.CancelledError):
        await delivering
    assert await store.outbox_counts() == {"pending": 1}
    await receiver.stop()
    await webhook.close()


class BrokenNotifier:
    """A plugin with a bug: lets a non-NotifyError escape from send()."""

    name: ClassVar[str] = "broken"
    channel = "broken:1"

    @classmethod
    def from_env(cls, env: Any) -> Sequence[Notifier]:
        return []

    async def send(self, notification: Notification) -> None:
        raise KeyError("oops")

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {}


async def test_a_notifier_bug_keeps_the_row_and_spares_other_channels(
    store: SQLiteStore,
    clock: ManualClock,
    receiver: Receiver,
    webhook: WebhookNotifier,
    state_path: Path,
) -> None:
    broken = BrokenNotifier()
    await enqueue(store, clock, broken.channel)
    await enqueue(store, clock, webhook.channel)
    outbox = outbox_for(store, clock, broken, webhook)

    with capture_logs() as logs:
        assert await outbox.deliver_due() == 1

    assert [r["state"] for r in rows(state_path)] == ["pending", "delivered"]
    (crash,) = events(logs, "notifier_crashed")
    assert crash["error_type"] == "KeyError"
    assert outbox.failing_channels() == {broken.channel}


async def test_the_secret_url_appears_in_no_log_line_and_no_stored_error(
    store: SQLiteStore,
    clock: ManualClock,
    receiver: Receiver,
    state_path: Path,
) -> None:
    webhook = webhook_for(receiver, "/hooks/T000/SECRETPATH")
    full_url = f"{receiver.url}/hooks/T000/SECRETPATH"
    receiver.script(Reply(500, body=f"upstream {full_url} broke"), Reply(429), 400)
    outbox = outbox_for(store, clock, webhook)

    with capture_logs() as logs:
        await enqueue(store, clock, webhook.channel)
        await outbox.deliver_due()
        await receiver.stop()
        await enqueue(store, clock, webhook.channel, transition("other", at=clock.now))
        await outbox.deliver_due()
        await receiver.start()
        clock.advance(10)
        await outbox.deliver_due()
    await webhook.close()

    assert events(logs, "notification_failed")
    assert events(logs, "notification_postponed")
    assert events(logs, "notification_delivered")
    everything = repr(logs) + repr(rows(state_path)) + repr(webhook.describe())
    assert "SECRETPATH" not in everything
    assert full_url not in everything
    assert "/hooks/T000" not in everything
