"""Heartbeats, a dead-man switch for the jobs cron runs: each job pings the daemon, and a
ping that does not come is an alert.

``OPSWATCH_HEARTBEAT_TARGETS="backup=1d/1h, batch=cron:0 3 * * *;tz=UTC/30m"``: a name, then a
period (``1d``) or a five-field cron schedule (``cron:EXPR``, ``;tz=ZONE`` an IANA time zone,
default UTC), then ``/`` and the grace. A job pings ``POST /ping/{name}`` when it succeeded
(also ``/ping/{name}/start`` when it starts, ``/ping/{name}/fail`` or ``/ping/{name}/{exit
status}`` when it ends; the body is its output), authenticated by the heartbeat's key
``OPSWATCH_HEARTBEAT_<NAME>_KEY`` (or ``_FILE``) in ``?key=``, or by the write token.

Pings are kept in the state store (:class:`~opswatch.ports.PingStore`), so every replica and
a restart see them. Each heartbeat is a check, ``heartbeat:<name>``, whose run reads its
newest pings and judges them (:func:`judge`) into two samples that built-in rules watch:

* ``heartbeat.overdue_seconds``: how long past its deadline the next run's end is (negative:
  not yet due). The deadline is the schedule's next time after the last run's end (success or
  failure), plus the grace; and for a run that started and has not ended, its start plus the
  grace. ``heartbeat_missing`` fires above 0. A heartbeat never pinged counts from the
  daemon's start.
* ``heartbeat.failed``: 1 while the last run's end was a failure. ``heartbeat_failed`` fires.

A ping runs the check at once, so the next good ping resolves the alerts without waiting for
the next interval.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import ClassVar, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from croniter import croniter

from opswatch.collectors.base import CollectorError, error_fields
from opswatch.config import PREFIX, ConfigError, Env, Secret, parse_duration, target_variable
from opswatch.model import Clock, Ping, PingKind, Sample
from opswatch.ports import PingStore

log = structlog.get_logger(__name__)

T = TypeVar("T")

KIND = "heartbeat"
TARGETS = f"{PREFIX}HEARTBEAT_TARGETS"
#: the most output kept of one ping (bytes of its body); the rest is cut off
MAX_OUTPUT = 10 * 1024
#: pings kept per heartbeat (older ones are dropped)
KEPT_PINGS = 100
#: the shortest period (and cron schedules run at most every minute)
MIN_PERIOD = 60.0


@dataclass(frozen=True, slots=True)
class Period:
    """Runs every ``seconds``."""

    seconds: float
    text: str

    def next_after(self, at: datetime) -> datetime:
        return at + timedelta(seconds=self.seconds)


@dataclass(frozen=True, slots=True)
class Cron:
    """Runs at the times of a five-field cron expression in the time zone ``tz``."""

    expression: str
    tz: ZoneInfo

    @property
    def text(self) -> str:
        return f"cron:{self.expression};tz={self.tz.key}"

    def next_after(self, at: datetime) -> datetime:
        later: datetime = croniter(self.expression, at.astimezone(self.tz)).get_next(datetime)
        return later.astimezone(UTC)


Schedule = Period | Cron


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One watched job: its schedule, its grace and its ping key (``None``: only the write
    token authenticates its pings)."""

    name: str
    schedule: Schedule
    grace: float
    grace_text: str
    key: Secret | None = None

    @property
    def check(self) -> str:
        return f"{KIND}:{self.name}"


def parse_heartbeats(env: Env) -> tuple[Heartbeat, ...]:
    """``OPSWATCH_HEARTBEAT_TARGETS`` with each heartbeat's key; a :class:`ConfigError` names
    the variable and the heartbeat."""
    heartbeats = []
    for name, spec in env.specs(TARGETS, what="SCHEDULE/GRACE"):
        schedule_text, slash, grace_text = spec.rpartition("/")
        if not slash or not schedule_text.strip():
            raise ConfigError(
                TARGETS,
                f"heartbeat {name!r}: expected PERIOD/GRACE or cron:EXPR/GRACE, got {spec!r}",
            )
        try:
            grace = parse_duration("grace", grace_text.strip(), minimum=0.0)
        except ConfigError as exc:
            raise ConfigError(TARGETS, f"heartbeat {name!r}: grace: {exc.problem}") from None
        key_variable = target_variable(KIND, name, "KEY")
        key = env.secret(key_variable)
        if key is not None and len(key.reveal()) < 16:
            raise ConfigError(
                key_variable, "expected at least 16 characters (openssl rand -hex 16)"
            )
        schedule = _schedule(name, schedule_text.strip())
        heartbeats.append(Heartbeat(name, schedule, grace, grace_text.strip(), key))
    return tuple(heartbeats)


def refuse_unpingable(checks: Sequence[object], token: Secret | None) -> None:
    """Without the write token, every heartbeat needs its key: its pings could not be
    authenticated otherwise."""
    if token is not None:
        return
    for check in checks:
        if isinstance(check, HeartbeatCheck) and check.heartbeat.key is None:
            name = check.heartbeat.name
            raise ConfigError(
                target_variable(KIND, name, "KEY"),
                f"required for heartbeat {name!r} unless {PREFIX}API_TOKEN is set",
            )


def _schedule(name: str, text: str) -> Schedule:
    if not text.startswith("cron:"):
        try:
            seconds = parse_duration("period", text, minimum=MIN_PERIOD)
        except ConfigError as exc:
            raise ConfigError(TARGETS, f"heartbeat {name!r}: period: {exc.problem}") from None
        return Period(seconds, text)
    expression, _, options = text.removeprefix("cron:").partition(";")
    expression = " ".join(expression.split())
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ConfigError(
            TARGETS,
            f"heartbeat {name!r}: expected a five-field cron expression such as "
            f"'0 3 * * *', got {expression!r}",
        )
    zone = "UTC"
    for option in filter(None, (o.strip() for o in options.split(";"))):
        option_name, _, value = option.partition("=")
        if option_name.strip() != "tz" or not value.strip():
            raise ConfigError(
                TARGETS, f"heartbeat {name!r}: unknown cron option {option!r} (only tz=ZONE)"
            )
        zone = value.strip()
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            TARGETS, f"heartbeat {name!r}: unknown time zone {zone!r} (an IANA name)"
        ) from None
    return Cron(expression, tz)


# -- judging the pings ----------------------------------------------------------------------


class HeartbeatStatus(StrEnum):
    """What a heartbeat's pings say: never pinged yet, in time, a run under way, no run
    ended by the deadline, a run not ended within the grace, the last run failed."""

    NEW = "new"
    UP = "up"
    RUNNING = "running"
    LATE = "late"
    STUCK = "stuck"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the newest pings of a heartbeat say at ``now``."""

    status: HeartbeatStatus
    #: when the next run is expected to end, and the end of its grace
    due_at: datetime
    deadline: datetime
    #: seconds past the deadline (negative: not yet due)
    overdue_s: float
    failed: bool
    #: the start ping of a run that has not ended
    running: Ping | None
    last_success: Ping | None
    last_fail: Ping | None
    last_start: Ping | None
    reason: str


def _newest(pings: Sequence[Ping], kind: PingKind) -> Ping | None:
    return max((p for p in pings if p.kind is kind), key=lambda p: p.at, default=None)


def judge(heartbeat: Heartbeat, latest: Sequence[Ping], since: datetime, now: datetime) -> Verdict:
    """The verdict on ``latest`` (the newest ping of each kind) at ``now``; ``since``: when
    watching began (the reference of a heartbeat never pinged)."""
    success = _newest(latest, PingKind.SUCCESS)
    fail = _newest(latest, PingKind.FAIL)
    start = _newest(latest, PingKind.START)
    ended = max((p for p in (success, fail) if p is not None), key=lambda p: p.at, default=None)
    reference = since if ended is None else ended.at
    due = heartbeat.schedule.next_after(reference)
    grace = timedelta(seconds=heartbeat.grace)
    deadline = due + grace
    running = start if start is not None and (ended is None or start.at > ended.at) else None
    late_s = (now - deadline).total_seconds()
    stuck_s = None if running is None else (now - running.at - grace).total_seconds()
    failed = ended is not None and ended.kind is PingKind.FAIL
    if running is not None and stuck_s is not None and stuck_s > 0:
        status = HeartbeatStatus.STUCK
        reason = (
            f"the run started at {_stamp(running.at)} has not ended (grace {heartbeat.grace_text})"
        )
    elif late_s > 0:
        status = HeartbeatStatus.LATE
        last = "never pinged" if ended is None else f"last run ended {_stamp(ended.at)}"
        reason = (
            f"no ping by {_stamp(deadline)} ({last}; due {_stamp(due)}, "
            f"grace {heartbeat.grace_text})"
        )
    elif failed and ended is not None:
        status, reason = (
            HeartbeatStatus.FAILED,
            f"the run ended {_stamp(ended.at)} failed{_details(ended)}",
        )
    elif running is not None:
        status, reason = HeartbeatStatus.RUNNING, f"running since {_stamp(running.at)}"
    elif ended is None:
        status, reason = HeartbeatStatus.NEW, f"never pinged; due by {_stamp(deadline)}"
    else:
        status, reason = (
            HeartbeatStatus.UP,
            f"the run ended {_stamp(ended.at)} succeeded{_details(ended)}",
        )
    return Verdict(
        status=status,
        due_at=due,
        deadline=deadline,
        overdue_s=late_s if stuck_s is None else max(late_s, stuck_s),
        failed=failed,
        running=running,
        last_success=success,
        last_fail=fail,
        last_start=start,
        reason=reason,
    )


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _details(ping: Ping) -> str:
    """`` (exit status 3, ran 12.5s): first line of output``"""
    parts = []
    if ping.exit_status is not None:
        parts.append(f"exit status {ping.exit_status}")
    if ping.duration_s is not None:
        parts.append(f"ran {ping.duration_s:.1f}s")
    text = f" ({', '.join(parts)})" if parts else ""
    line = next((line.strip() for line in ping.output.splitlines() if line.strip()), "")
    return f"{text}: {line[:200]}" if line else text


# -- the check ------------------------------------------------------------------------------


class HeartbeatCheck:
    """The check ``heartbeat:<name>``: reads its newest pings from the state store (handed by
    the daemon through :meth:`use_store`) and judges them."""

    name: ClassVar[str] = KIND

    def __init__(self, heartbeat: Heartbeat, clock: Clock) -> None:
        self.heartbeat = heartbeat
        self.check = heartbeat.check
        self._clock = clock
        self._store: PingStore | None = None
        #: the reference of a heartbeat never pinged
        self.since = clock()

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[HeartbeatCheck]:
        return [cls(heartbeat, clock) for heartbeat in parse_heartbeats(env)]

    def use_store(self, store: PingStore) -> None:
        self._store = store

    async def verdict(self) -> Verdict:
        if self._store is None:
            raise CollectorError(f"{self.check}: no state store to read pings from")
        latest = await self._store.pings_latest(self.heartbeat.name)
        return judge(self.heartbeat, latest, self.since, self._clock())

    async def collect(self) -> list[Sample]:
        verdict = await self.verdict()
        now = self._clock()
        labels = {"target": self.heartbeat.name}
        notes = {"reason": verdict.reason}
        return [
            Sample(self.check, f"{KIND}.overdue_seconds", verdict.overdue_s, now, labels, notes),
            Sample(self.check, f"{KIND}.failed", float(verdict.failed), now, labels, notes),
        ]

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {
            "check": self.check,
            "schedule": self.heartbeat.schedule.text,
            "grace": self.heartbeat.grace_text,
            "key": "none: the write token" if self.heartbeat.key is None else "***",
        }


# -- receiving pings ------------------------------------------------------------------------

#: runs a check now (the daemon's event path), so a ping resolves its alert at once
Recheck = Callable[[str], Awaitable[None]]


class PingStoreError(Exception):
    """The state store did not take or give a heartbeat's pings (the API answers 503); the
    message names no secret."""


class HeartbeatDesk:
    """Where pings arrive (:mod:`opswatch.api.pings`) and heartbeats are read
    (:mod:`opswatch.api.heartbeats`): the configured heartbeats (a reload changes them),
    the store, and the recheck of a pinged heartbeat."""

    def __init__(
        self,
        checks: Callable[[], Mapping[str, object]],
        store: PingStore,
        clock: Clock,
        recheck: Recheck,
    ) -> None:
        self._checks = checks
        self._store = store
        self._clock = clock
        self._recheck = recheck

    def checks(self) -> dict[str, HeartbeatCheck]:
        """The configured heartbeat checks by heartbeat name."""
        found = (c for c in self._checks().values() if isinstance(c, HeartbeatCheck))
        return {c.heartbeat.name: c for c in found}

    def now(self) -> datetime:
        return self._clock()

    async def ping(
        self, heartbeat: Heartbeat, kind: PingKind, exit_status: int | None, body: bytes
    ) -> Ping:
        """Record a ping (with the duration of its run when it ends one), then run the
        heartbeat's check."""
        now = self._clock()
        duration = None
        if kind is not PingKind.START:
            latest = await self._stored(self._store.pings_latest(heartbeat.name))
            verdict = judge(heartbeat, latest, now, now)
            if verdict.running is not None:
                duration = round((now - verdict.running.at).total_seconds(), 3)
        ping = Ping(
            heartbeat=heartbeat.name,
            kind=kind,
            at=now,
            exit_status=exit_status,
            output=body[:MAX_OUTPUT].decode("utf-8", errors="replace"),
            truncated=len(body) > MAX_OUTPUT,
            duration_s=duration,
        )
        await self._stored(self._store.ping_record(ping, KEPT_PINGS))
        await self._recheck(heartbeat.check)
        return ping

    async def pings(self, name: str, limit: int) -> list[Ping]:
        return await self._stored(self._store.pings(name, limit))

    async def verdict(self, check: HeartbeatCheck) -> Verdict:
        return await self._stored(check.verdict())

    async def _stored(self, call: Awaitable[T]) -> T:
        """``call`` to the store, its failure (whatever the driver raised) a
        :class:`PingStoreError`."""
        try:
            return await call
        except Exception as exc:  # noqa: BLE001 - any store driver's outage, logged here
            log.warning("heartbeat_store_failed", **error_fields(exc))
            raise PingStoreError("the state store did not answer; try again") from None
