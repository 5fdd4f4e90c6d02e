"""The durable outbox: the notify area's only retry loop.

Rows are written by the daemon in the same transaction as the alert transitions they
describe (``store.record``), so a notification is stored if and only if its transition is.
This module delivers them:

* one *pass* per row is a tenacity loop: transient :class:`NotifyError` only, at most
  ``attempts`` tries and ``total_seconds`` (a sleep that would cross that budget ends the pass),
  the policy's backoff but never less than the peer's ``Retry-After``, one log line per retry;
* a row whose pass ends in a transient error is postponed in the store with a row-level
  exponential backoff (durable across restarts); a permanent error fails it;
* channels are independent: :meth:`Outbox.run` gives each channel its own delivery task,
  with its own wake-up, timer, backoff and ``Retry-After`` rest, so a channel that retries
  for a minute never delays another channel's messages (a configured channel's task runs
  from the start; a channel found with rows and no notifier gets one that fails its rows);
* one channel's rows go out in the order they were written, one pass at a time: when a row
  is postponed, the channel's later rows wait behind it, and when a later row is due, the
  channel's older pending rows are sent first (so a new alert probes a channel that was
  down at once, rather than after its backoff), except when the receiver asked for a pause
  with ``Retry-After``: then the channel rests until then;
* fallback (``DeliveryOptions.fallback``): a row that fails permanently, or whose channel has
  been failing for ``fallback_after`` seconds, is diverted: in one transaction a copy marked
  as a fallback is queued for the fallback channel (once: the copy keeps the idempotency key,
  and a channel's rows are unique by key) and the row ends as ``diverted``;
* grouping (``DeliveryOptions.group_wait`` > 0): a channel's fresh rows (never attempted) are
  held until the oldest of them is ``group_wait`` old, then all of them, however many,
  are replaced in one transaction by one merged row (the others end as ``merged``) which is
  delivered like any row. Holding is a postponement in the store, so a restart neither
  loses nor re-sends a group;
* every outcome is reported to a :class:`~opswatch.notifiers.health.ChannelHealth`, which
  the daemon turns into the ``notifications_failing`` meta-alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)
from tenacity.wait import WaitBaseT, wait_base

from opswatch.model import Clock, NotificationKind, OutboxItem, utcnow
from opswatch.notifiers.base import Notifier, NotifyError
from opswatch.notifiers.health import ChannelHealth
from opswatch.notifiers.render import (
    RenderOptions,
    as_fallback,
    format_duration,
    is_fallback,
    merge,
)
from opswatch.ports import OutageReport, OutboxStore
from opswatch.retrying import log_retries

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]

#: ``outbox_due(_ALL_PENDING, ...)`` lists every pending row, due or not, oldest first.
_ALL_PENDING = datetime(9999, 1, 1, tzinfo=UTC)
#: The shortest wait of ``run()`` after a pass that found nothing to do (clock rounding).
_IDLE_FLOOR_S = 0.05


@dataclass(frozen=True)
class DeliveryOptions:
    """What the outbox does beyond retrying: fallback, grouping, wording of merged rows,
    and the health board it reports to (see the module docstring)."""

    fallback: frozenset[str] = frozenset()
    fallback_after: float = 900.0
    group_wait: float = 0.0
    render: RenderOptions = field(default_factory=RenderOptions)
    health: ChannelHealth = field(default_factory=ChannelHealth)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one pass tries, and how long a row rests after a pass that did not get through.

    ``attempts`` and ``total_seconds`` cap one pass; ``wait`` is tenacity's wait between its
    attempts. After a failed pass the row waits ``row_backoff_base`` seconds, doubling with
    each failed pass up to ``row_backoff_max`` (a peer's longer ``Retry-After`` wins, up to
    the same cap). ``batch`` caps the rows of a channel read per pass (a group being merged
    is read whole).
    """

    attempts: int = 5
    total_seconds: float = 60.0
    wait: WaitBaseT = field(default_factory=lambda: wait_exponential_jitter(initial=1, max=30))
    row_backoff_base: float = 30.0
    row_backoff_max: float = 900.0
    batch: int = 100

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.total_seconds <= 0 or self.row_backoff_base <= 0:
            raise ValueError("RetryPolicy.total_seconds and row_backoff_base must be positive")
        if self.row_backoff_max < self.row_backoff_base:
            raise ValueError("RetryPolicy.row_backoff_max must be at least row_backoff_base")
        if self.batch < 1:
            raise ValueError("RetryPolicy.batch must be at least 1")

    def row_backoff(self, failed_passes: int, retry_after: float | None = None) -> float:
        """Seconds a row rests after its ``failed_passes``-th failed pass (1, 2, ...)."""
        exponent = min(max(failed_passes - 1, 0), 40)
        backoff = min(self.row_backoff_max, self.row_backoff_base * 2.0**exponent)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.row_backoff_max))
        return backoff


class wait_retry_after(wait_base):  # noqa: N801 - named like tenacity's own waits
    """The wrapped wait, but never shorter than the failed attempt's ``retry_after`` hint."""

    def __init__(self, base: WaitBaseT) -> None:
        self.base = base

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = float(self.base(retry_state))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        if isinstance(error, NotifyError) and error.retry_after is not None:
            return max(wait, error.retry_after)
        return wait


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, NotifyError) and not error.permanent


def _groupable(item: OutboxItem) -> bool:
    """A fresh row (never attempted, not a fallback copy, not a report): grouping may hold
    and merge it."""
    notification = item.notification
    return (
        item.attempts == 0
        and not is_fallback(notification)
        and notification.kind is NotificationKind.TRANSITIONS
    )


class Outbox:
    """Delivers the store's pending outbox rows through the configured notifiers.

    ``notifiers`` maps each channel (``Notifier.channel``) to its notifier. The daemon calls
    :meth:`wake` after each ``store.record`` that enqueued rows, runs :meth:`run` as a task
    (one delivery task per channel) and, on shutdown, awaits :meth:`flush` (which also ends
    :meth:`run`).
    """

    def __init__(
        self,
        store: OutboxStore,
        notifiers: Mapping[str, Notifier],
        policy: RetryPolicy | None = None,
        clock: Clock = utcnow,
        *,
        sleep: Sleep = asyncio.sleep,
        options: DeliveryOptions | None = None,
        outage: OutageReport | None = None,
    ) -> None:
        self._store = store
        #: where a store that fails a pass is reported (the daemon's StoreOutage)
        self._outage = outage
        self._store_failing = False
        self._notifiers = dict(notifiers)
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._options = options or DeliveryOptions()
        self.health = self._options.health
        #: run()'s own wake-up: look for rows of channels that have no delivery task yet
        self._wake = asyncio.Event()
        #: each channel's delivery task waits on its own event and passes under its own lock
        self._channel_wakes: dict[str, asyncio.Event] = {}
        self._channel_locks: dict[str, asyncio.Lock] = {}
        #: channels whose peer asked us to wait (Retry-After): no probing before then
        self._resting_until: dict[str, datetime] = {}
        self._stopping = False
        self._run_task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """New rows were enqueued: every channel delivers now rather than at its next due
        time."""
        self._wake.set()
        for event in self._channel_wakes.values():
            event.set()

    def channels(self) -> list[str]:
        """The configured channels, in configuration order."""
        return list(self._notifiers)

    def failing_channels(self) -> frozenset[str]:
        """Channels whose last delivery attempt failed (or, after a restart, that still have
        rows an earlier process could not deliver)."""
        return self.health.failing()

    async def run(self) -> None:
        """Deliver every channel in its own task (see :meth:`_serve`), until cancelled or
        :meth:`flush`; when woken, also give a task to any channel found with due rows and
        no notifier (its rows fail)."""
        if self._run_task is not None:
            raise RuntimeError("Outbox.run() is already running")
        self._run_task = asyncio.current_task()
        served: set[str] = set()
        try:
            async with asyncio.TaskGroup() as workers:
                while not self._stopping:
                    self._wake.clear()
                    try:
                        unconfigured = await self._unconfigured_due()
                    except Exception as exc:  # noqa: BLE001 - any store driver's outage; logged there
                        self._store_failed(exc)
                        unconfigured = []
                    for channel in (*self._notifiers, *unconfigured):
                        if channel not in served:
                            served.add(channel)
                            workers.create_task(self._serve(channel), name=f"outbox:{channel}")
                    await self._wake.wait()
        finally:
            self._run_task = None

    async def deliver_due(self) -> int:
        """One pass of every channel with due rows, concurrently; returns how many rows were
        finished (delivered or failed). Postponed rows are not counted."""
        channels = dict.fromkeys((*self._notifiers, *await self._unconfigured_due()))
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._pass(channel)) for channel in channels]
        return sum(task.result() for task in tasks)

    async def _serve(self, channel: str) -> None:
        """One channel's delivery task: a pass, then sleep until woken or until the channel's
        next row is due."""
        wake = self._channel_wakes.setdefault(channel, asyncio.Event())
        failures = 0
        while not self._stopping:
            wake.clear()
            try:
                finished = await self._pass(channel)
                if self._stopping:
                    break
                timeout = await self._seconds_until_next_due(channel)
            except Exception as exc:  # noqa: BLE001 - a store outage (logged): retry later
                failures += 1
                self._store_failed(exc)
                timeout = min(self._policy.row_backoff_base, 2.0 ** min(failures, 5))
            else:
                if failures:
                    failures = 0
                    self._store_recovered()
                if timeout is not None and finished == 0:
                    timeout = max(timeout, _IDLE_FLOOR_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)

    def _store_failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        first = not self._store_failing
        self._store_failing = True
        if self._outage is not None:  # the daemon's StoreOutage says it, once per outage
            self._outage.failed(error)
        elif first:  # one line per outage, not per channel and pass
            log.warning("outbox_store_failed", error=error, exc_info=True)

    def _store_recovered(self) -> None:
        if self._store_failing:
            self._store_failing = False
            if self._outage is not None:
                self._outage.succeeded()

    async def _pass(self, channel: str) -> int:
        """One pass over ``channel``'s due rows (with its older pending ones, in order);
        returns how many rows were finished."""
        async with self._channel_locks.setdefault(channel, asyncio.Lock()):
            batch = self._policy.batch
            due = await self._store.outbox_due(self._clock(), batch, channel)
            if not due:
                return 0
            pending = await self._store.outbox_due(_ALL_PENDING, batch, channel)
            rows: dict[int, OutboxItem] = {item.id: item for item in (*pending, *due)}
            for item in rows.values():
                if item.attempts > 0:  # left failing by this or an earlier process
                    self.health.failing_before(channel, item.created_at)
            return await self._deliver_channel(channel, [rows[i] for i in sorted(rows)])

    async def _unconfigured_due(self) -> list[str]:
        """Channels without a notifier that have due rows (among the oldest ``batch``)."""
        due = await self._store.outbox_due(self._clock(), self._policy.batch)
        return sorted({item.channel for item in due} - self._notifiers.keys())

    async def flush(self, deadline_s: float) -> int:
        """Shutdown: one last pass bounded by ``deadline_s``, then stop :meth:`run`. Rows left
        (or interrupted mid-send) stay pending for the next start."""
        self._stopping = True
        self.wake()
        finished = 0
        deadline = asyncio.timeout(deadline_s)
        try:
            async with deadline:
                finished = await self.deliver_due()
        except TimeoutError:
            if not deadline.expired():
                self._cancel_run()
                raise
            log.warning("outbox_flush_timeout", deadline_s=deadline_s)
        except Exception as exc:  # noqa: BLE001 - a store outage (logged): rows stay pending
            self._store_failed(exc)
        except BaseException:
            self._cancel_run()
            raise
        task = self._run_task
        if task is not None and task is not asyncio.current_task():
            if deadline.expired():
                self._cancel_run()  # run() is in the middle of a pass: interrupt it
            # otherwise run() sees _stopping and returns on its own
            await asyncio.wait({task})
        return finished

    def _cancel_run(self) -> None:
        task = self._run_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _seconds_until_next_due(self, channel: str) -> float | None:
        next_due = await self._store.outbox_next_due(channel)
        if next_due is None:
            return None
        return max(0.0, (next_due - self._clock()).total_seconds())

    async def _deliver_channel(self, channel: str, items: Sequence[OutboxItem]) -> int:
        notifier = self._notifiers.get(channel)
        resting_until = self._resting_until.get(channel)
        if resting_until is not None and resting_until > self._clock():
            for item in items:
                await self._store.outbox_postpone(
                    item.id, item.attempts, resting_until, "the receiver asked to wait"
                )
            return 0
        self._resting_until.pop(channel, None)
        if notifier is not None and self._options.group_wait > 0:
            items = await self._group(channel, items)
        finished = 0
        for index, item in enumerate(items):
            if notifier is None:
                error = f"channel {channel} is not configured (any more)"
                await self._store.outbox_failed(item.id, self._clock(), error)
                log.error(
                    "notification_failed",
                    channel=channel,
                    key=item.notification.idempotency_key,
                    row=item.id,
                    permanent=True,
                    error=error,
                )
                finished += 1
                continue
            next_attempt_at = await self._deliver_row(notifier, item)
            if next_attempt_at is None:
                finished += 1
                continue
            for later in items[index + 1 :]:
                await self._store.outbox_postpone(
                    later.id, later.attempts, next_attempt_at, f"waiting behind row {item.id}"
                )
            break
        return finished

    async def _group(self, channel: str, items: Sequence[OutboxItem]) -> list[OutboxItem]:
        """Hold the channel's fresh rows until the oldest is ``group_wait`` old, then merge
        all of them (however many: one message per group) into one row. Returns the rows to
        deliver now, in order."""
        fresh = [i for i in items if _groupable(i)]
        rest = [i for i in items if not _groupable(i)]
        if not fresh:
            return rest
        oldest = min(i.created_at for i in fresh)
        release = oldest + timedelta(seconds=self._options.group_wait)
        now = self._clock()
        if release > now:
            for item in fresh:
                await self._store.outbox_postpone(
                    item.id, 0, release, f"held for grouping until {release.isoformat()}"
                )
            return rest
        # the pass read at most a batch of rows: read the whole group
        everything = await self._store.outbox_due(_ALL_PENDING, None, channel)
        fresh = [i for i in everything if _groupable(i)]
        oldest = min(i.created_at for i in fresh)
        fresh_ids = {i.id for i in fresh}
        if len(fresh) == 1:
            return [*rest, *fresh]
        merged = merge([i.notification for i in fresh], self._options.render)
        ids = sorted(fresh_ids)
        new_id = await self._store.outbox_merge(ids, channel, merged, oldest, now)
        log.info(
            "notifications_grouped",
            channel=channel,
            rows=ids,
            row=new_id,
            key=merged.idempotency_key,
            alerts=len(merged.transitions),
        )
        if new_id is None:  # the very same message was queued before
            return rest
        return [*rest, OutboxItem(new_id, channel, merged, 0, oldest)]

    async def _deliver_row(self, notifier: Notifier, item: OutboxItem) -> datetime | None:
        """One pass for one row. Returns when the row is due again if it was postponed."""
        policy = self._policy
        channel = item.channel
        key = item.notification.idempotency_key
        started = time.monotonic()
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.total_seconds),
            wait=wait_retry_after(policy.wait),
            retry=retry_if_exception(_is_transient),
            reraise=True,
            before_sleep=log_retries("notify_retry", channel=channel, key=key),
            sleep=self._sleep,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await notifier.send(item.notification)
        except NotifyError as error:
            self.health.failed(channel, self._clock())
            return await self._after_failure(item, error, attempts)
        except Exception as error:  # a notifier bug must not stop the outbox
            # A plugin let a library error through: treat it as transient (the row is kept),
            # log its type with the traceback, and keep delivering other rows and channels.
            self.health.failed(channel, self._clock())
            log.error(
                "notifier_crashed",
                channel=channel,
                key=key,
                row=item.id,
                error_type=type(error).__name__,
                exc_info=True,
            )
            crash = NotifyError(f"{channel}: unexpected {type(error).__name__}", permanent=False)
            return await self._after_failure(item, crash, attempts)
        self.health.delivered(channel)
        await self._store.outbox_delivered(item.id, self._clock())
        log.info(
            "notification_delivered",
            channel=channel,
            key=key,
            row=item.id,
            attempts=attempts,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return None

    async def _after_failure(
        self, item: OutboxItem, error: NotifyError, attempts: int
    ) -> datetime | None:
        now = self._clock()
        key = item.notification.idempotency_key
        fallback = self._fallback_for(item, error, now)
        if fallback:
            reason = (
                "permanent error"
                if error.permanent
                else "failing for " + format_duration(self._failing_for(item, now))
            )
            copy = as_fallback(item.notification, item.channel, f"{reason}: {error}")
            await self._store.outbox_divert(
                item.id, [(c, copy) for c in fallback], now, f"diverted to fallback: {error}"
            )
            log.error(
                "notification_diverted",
                channel=item.channel,
                fallback=list(fallback),
                key=key,
                row=item.id,
                attempts=attempts,
                permanent=error.permanent,
                error=str(error),
            )
            return None  # the copies are due now: run() goes on at once
        if error.permanent:
            await self._store.outbox_failed(item.id, now, str(error))
            log.error(
                "notification_failed",
                channel=item.channel,
                key=key,
                row=item.id,
                attempts=attempts,
                permanent=True,
                error=str(error),
            )
            return None
        failed_passes = item.attempts + 1
        delay = self._policy.row_backoff(failed_passes, error.retry_after)
        next_attempt_at = now + timedelta(seconds=delay)
        if error.retry_after is not None:
            self._resting_until[item.channel] = next_attempt_at
        await self._store.outbox_postpone(item.id, failed_passes, next_attempt_at, str(error))
        log.warning(
            "notification_postponed",
            channel=item.channel,
            key=key,
            row=item.id,
            attempts=attempts,
            failed_passes=failed_passes,
            retry_in_s=delay,
            next_attempt_at=next_attempt_at.isoformat(),
            error=str(error),
        )
        return next_attempt_at

    def _fallback_for(self, item: OutboxItem, error: NotifyError, now: datetime) -> list[str]:
        """The fallback channels ``item`` goes to now, or none (not due, none configured, or
        ``item`` is itself a fallback copy)."""
        targets = sorted(self._options.fallback - {item.channel})
        if not targets or is_fallback(item.notification):
            return []
        if error.permanent or self._failing_for(item, now) >= self._options.fallback_after:
            return targets
        return []

    def _failing_for(self, item: OutboxItem, now: datetime) -> float:
        """Seconds the row's channel has been failing: since its first failure in a row, or
        since the row was queued if the row failed before (an earlier process's failures)."""
        since = [self.health.failing_since(item.channel) or now]
        if item.attempts > 0:
            since.append(item.created_at)
        return (now - min(since)).total_seconds()
