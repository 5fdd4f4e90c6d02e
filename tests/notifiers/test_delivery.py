"""Outbox fallback, grouping and channel health against a real store and local receivers."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from tenacity import wait_none

from opswatch.config import Secret, mask_url
from opswatch.model import CycleRecord
from opswatch.notifiers.health import ChannelHealth, ChannelHealthCheck
from opswatch.notifiers.outbox import DeliveryOptions, Outbox, RetryPolicy
from opswatch.notifiers.render import render
from opswatch.notifiers.webhook import WebhookNotifier
from opswatch.state.sqlite import SQLiteStore
from tests.conftest import ManualClock
from tests.notifiers.conftest import ReceiverFactory, transition
from tests.notifiers.test_outbox import enqueue, events, rows
from tests.peers import Receiver

TINY = RetryPolicy(
    attempts=2, total_seconds=5, wait=wait_none(), row_backoff_base=10, row_backoff_max=40
)


def webhook(receiver: Receiver, path: str) -> WebhookNotifier:
    url = receiver.url + path
    return WebhookNotifier(Secret(url, mask_url(url, hide_path=True)), timeout=5)


@pytest.fixture
async def primary(
    receiver_factory: ReceiverFactory,
) -> AsyncIterator[tuple[Receiver, WebhookNotifier]]:
    receiver = await receiver_factory()
    notifier = webhook(receiver, "/primary/SECRETA")
    yield receiver, notifier
    await notifier.close()


@pytest.fixture
async def spare(
    receiver_factory: ReceiverFactory,
) -> AsyncIterator[tuple[Receiver, WebhookNotifier]]:
    receiver = await receiver_factory()
    notifier = webhook(receiver, "/spare/SECRETB")
    yield receiver, notifier
    await notifier.close()


def outbox(
    store: SQLiteStore,
    clock: ManualClock,
    *notifiers: WebhookNotifier,
    fallback: WebhookNotifier | None = None,
    fallback_after: float = 900,
    group_wait: float = 0,
    health: ChannelHealth | None = None,
) -> Outbox:
    options = DeliveryOptions(
        fallback=frozenset() if fallback is None else frozenset({fallback.channel}),
        fallback_after=fallback_after,
        group_wait=group_wait,
        health=health or ChannelHealth(n.channel for n in notifiers),
    )
    return Outbox(store, {n.channel: n for n in notifiers}, TINY, clock, options=options)


async def test_a_permanent_failure_sends_the_message_to_the_fallback_once_marked_as_such(
    store: SQLiteStore,
    clock: ManualClock,
    state_path: Path,
    primary: tuple[Receiver, WebhookNotifier],
    spare: tuple[Receiver, WebhookNotifier],
) -> None:
    (broken, slack), (backup, hook) = primary, spare
    broken.script(404)
    notification = await enqueue(store, clock, slack.channel)
    box = outbox(store, clock, slack, hook, fallback=hook)

    with capture_logs() as logs:
        await box.deliver_due()
        await box.deliver_due()
        await box.deliver_due()

    assert len(broken.requests) == 1  # permanent: not retried
    (copy,) = await backup.wait_for(1)
    assert copy.body["alerts"][0]["labels"]["alertname"] == "cpu_high"
    assert copy.headers["Idempotency-Key"] == notification.idempotency_key
    note = copy.body["commonAnnotations"]["fallback"]
    assert note.startswith(f"Sent to the fallback channel: delivery to {slack.channel} failed")
    assert "(permanent error: webhook" in note
    assert "HTTP 404" in note
    assert "SECRETA" not in note
    assert [r["state"] for r in rows(state_path)] == ["diverted", "delivered"]
    assert rows(state_path)[1]["channel"] == hook.channel
    (diverted,) = events(logs, "notification_diverted")
    assert diverted["channel"] == slack.channel
    assert diverted["fallback"] == [hook.channel]
    assert box.failing_channels() == {slack.channel}
    stored = await store.outbox_due(clock.now, 10)
    assert stored == []


async def test_a_channel_failing_longer_than_fallback_after_goes_to_the_fallback(
    store: SQLiteStore,
    clock: ManualClock,
    state_path: Path,
    primary: tuple[Receiver, WebhookNotifier],
    spare: tuple[Receiver, WebhookNotifier],
) -> None:
    (broken, slack), (backup, hook) = primary, spare
    await broken.stop()
    await enqueue(store, clock, slack.channel)
    box = outbox(store, clock, slack, hook, fallback=hook, fallback_after=25)

    await box.deliver_due()  # fails at t=0: retried later
    clock.advance(10)
    await box.deliver_due()  # fails at t=10: still within 25 s
    assert backup.requests == []
    assert rows(state_path)[0]["state"] == "pending"
    clock.advance(20)
    await box.deliver_due()  # fails at t=30: failing for 30 s > 25 s: diverted
    await box.deliver_due()  # the copy is due at once

    assert len(await backup.wait_for(1)) == 1
    assert [r["state"] for r in rows(state_path)] == ["diverted", "delivered"]
    await broken.start()
    clock.advance(3600)
    await box.deliver_due()
    assert broken.requests == []  # the primary never gets it late as well
    assert len(backup.requests) == 1


async def test_no_fallback_configured_keeps_the_permanent_failure_as_failed(
    store: SQLiteStore,
    clock: ManualClock,
    state_path: Path,
    primary: tuple[Receiver, WebhookNotifier],
) -> None:
    broken, slack = primary
    broken.script(404)
    await enqueue(store, clock, slack.channel)

    await outbox(store, clock, slack).deliver_due()

    assert [r["state"] for r in rows(state_path)] == ["failed"]


async def test_a_fallback_that_already_has_the_message_does_not_get_it_twice(
    store: SQLiteStore,
    clock: ManualClock,
    state_path: Path,
    primary: tuple[Receiver, WebhookNotifier],
    spare: tuple[Receiver, WebhookNotifier],
) -> None:
    (broken, slack), (backup, hook) = primary, spare
    broken.script(404)
    notification = render([transition(at=clock.now)], clock.now)
    await store.record(
        CycleRecord(
            [],
            [],
            notification.transitions,
            [(slack.channel, notification), (hook.channel, notification)],
        ),
        clock.now,
    )
    box = outbox(store, clock, slack, hook, fallback=hook)

    await box.deliver_due()
    await box.deliver_due()

    assert len(backup.requests) == 1
    assert sorted(r["state"] for r in rows(state_path)) == ["delivered", "diverted"]


async def test_group_wait_holds_new_rows_then_sends_them_as_one_message(
    store: SQLiteStore,
    clock: ManualClock,
    state_path: Path,
    primary: tuple[Receiver, WebhookNotifier],
) -> None:
    receiver, hook = primary
    box = outbox(store, clock, hook, group_wait=60)
    for rule in ("a", "b", "c"):
        await enqueue(
            store, clock, hook.channel, transition(rule, at=clock.now, started_at=clock.now)
        )
        assert await box.deliver_due() == 0
        clock.advance(20)
    assert receiver.requests == []
    assert [r["state"] for r in rows(state_path)] == ["pending"] * 3

    with capture_logs() as logs:
        await box.deliver_due()  # t = 60: the oldest row's wait is over

    (request,) = await receiver.wait_for(1)
    assert [a["labels"]["alertname"] for a in request.body["alerts"]] == ["a", "b", "c"]
    assert [r["state"] for r in rows(state_path)] == ["merged"] * 3 + ["delivered"]
    (grouped,) = events(logs, "notifications_grouped")
    assert grouped["alerts"] == 3
    await box.deliver_due()
    assert len(receiver.requests) == 1


async def test_a_held_storm_of_200_rows_goes_out_as_one_message(
    store: SQLiteStore,
    clock: ManualClock,
    state_path: Path,
    primary: tuple[Receiver, WebhookNotifier],
) -> None:
    receiver, hook = primary
    box = outbox(store, clock, hook, group_wait=60)
    for n in range(200):
        await enqueue(store, clock, hook.channel, transition(f"disk_{n}", at=clock.now))
    assert TINY.batch < 200  # more rows than a pass reads
    for _ in range(3):
        assert await box.deliver_due() == 0
    assert receiver.requests == []

    clock.advance(60)
    with capture_logs() as logs:
        assert await box.deliver_due() == 1

    (request,) = await receiver.wait_for(1)
    assert len(request.body["alerts"]) == 200
    (grouped,) = events(logs, "notifications_grouped")
    assert grouped["alerts"] == 200
    assert [r["state"] for r in rows(state_path)] == ["merged"] * 200 + ["delivered"]
    clock.advance(60)
    assert await box.deliver_due() == 0
    assert len(receiver.requests) == 1


async def test_a_held_group_survives_a_restart_and_is_sent_once(
    state_path: Path,
    clock: ManualClock,
    primary: tuple[Receiver, WebhookNotifier],
) -> None:
    receiver, hook = primary
    first = SQLiteStore(state_path)
    await first.open()
    await enqueue(first, clock, hook.channel, transition("a", at=clock.now))
    await enqueue(first, clock, hook.channel, transition("b", at=clock.now))
    await outbox(first, clock, hook, group_wait=30).deliver_due()
    await first.close()  # killed while the group was held

    clock.advance(30)
    second = SQLiteStore(state_path)
    await second.open()
    try:
        box = outbox(second, clock, hook, group_wait=30)
        await box.deliver_due()
        await box.deliver_due()
    finally:
        await second.close()

    (request,) = await receiver.wait_for(1)
    assert len(request.body["alerts"]) == 2


async def test_channel_health_turns_into_channel_up_samples(
    store: SQLiteStore,
    clock: ManualClock,
    primary: tuple[Receiver, WebhookNotifier],
) -> None:
    receiver, hook = primary
    health = ChannelHealth([hook.channel, "slack:never-used"])
    check = ChannelHealthCheck(health, clock)
    box = outbox(store, clock, hook, health=health)

    unknown = {s.labels["channel"]: s.value for s in await check.collect()}
    assert len(unknown) == 2
    assert all(math.isnan(value) for value in unknown.values())  # not known yet

    await receiver.stop()
    await enqueue(store, clock, hook.channel)
    await box.deliver_due()
    first, _never_used = await check.collect()
    assert (first.metric, first.labels["channel"], first.value) == (
        "notify.channel_up",
        hook.channel,
        0.0,
    )
    assert health.failing_since(hook.channel) == clock.now

    await receiver.start()
    clock.advance(10)
    await box.deliver_due()
    assert (await check.collect())[0].value == 1.0
    assert box.failing_channels() == frozenset()


async def test_after_a_restart_a_channel_with_rows_it_failed_before_counts_as_failing(
    store: SQLiteStore,
    clock: ManualClock,
    primary: tuple[Receiver, WebhookNotifier],
) -> None:
    receiver, hook = primary
    await receiver.stop()
    await enqueue(store, clock, hook.channel)
    started = clock.now
    await outbox(store, clock, hook).deliver_due()

    restarted = outbox(store, clock, hook)  # a new process: nothing known yet
    assert restarted.failing_channels() == frozenset()
    clock.advance(1)
    await enqueue(store, clock, hook.channel, transition("other", at=clock.now))
    await restarted.deliver_due()

    assert restarted.failing_channels() == {hook.channel}
    assert restarted.health.failing_since(hook.channel) == started
