"""Maintenance windows: recurring ones from the configuration, one-off ones through the API.

A recurring window is a cron expression, a duration, an IANA time zone and matchers
(``OPSWATCH_MAINTENANCE_DB="cron=0 2 1-7 * SUN; duration=4h; tz=UTC; match=check=~postgres:.*"``):
it opens at each time the expression gives in its zone and stays open for its duration. The
matchers are the silences' (:func:`~opswatch.alerts.silences.parse_matcher`): a window mutes
the alerts that *all* of them match while it is open, as ``maintenance NAME``.

Cron, as :mod:`croniter` reads it with ``day_or=False``: a day of the month and a day of the
week given together must *both* match, so ``1-7 * SUN`` is the first Sunday of the month (in
classic cron the two are ORed: every one of the first seven days, and every Sunday). Times
are those of the window's zone; across a DST change:

* a start in the hour the clocks skip (02:30 on 2026-03-29 in Europe/Berlin) opens at the
  first minute after the gap (03:00 CEST), as cron runs such jobs;
* a start in the hour that happens twice (02:30 on 2026-10-25 in Europe/Berlin) opens once,
  at the first of the two;
* the duration is elapsed time: a 4 h window lasts 4 h, also on those nights.

"Is a window open now" is croniter's backwards search: the latest start at or before now
(:meth:`RecurringWindow.latest_start`), open while now is before its end. The muter keeps, per
window, the span over which its answer stays the same, so a check run asks croniter only when
a window opens or closes; with no window at all it asks nothing.

What happens at the end is the silences' (:class:`~opswatch.alerts.tracker.AlertTracker`
``update`` and ``Alert.notified``): an alert that began inside and still fires is notified
once at the first run after the end; one that fired and resolved inside sends nothing; one
that was firing and notified before sends nothing new; one that fired before and resolved
inside sends its resolution at once, to the channels its firing reached.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from opswatch.alerts.follow import follow
from opswatch.alerts.silences import SilenceError, matches_all, parse_matcher
from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Alert, Clock, MaintenanceWindow, Matcher
from opswatch.ports import MaintenanceStore

log = structlog.get_logger("opswatch")

#: ``OPSWATCH_MAINTENANCE_<NAME>``: one recurring window each
VARIABLE_PREFIX = f"{PREFIX}MAINTENANCE_"
_VARIABLE_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
#: the name of a one-off window (API, CLI)
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_FIELDS = ("cron", "duration", "tz", "match")
_MINUTE = timedelta(minutes=1)


class MaintenanceError(ValueError):
    """A one-off window that cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True)
class Span:
    """A window's occurrence: open from ``starts_at`` until ``ends_at`` (exclusive)."""

    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class RecurringWindow:
    """A window that opens at each time ``cron`` gives in ``tz``, for ``duration``."""

    name: str
    cron: str
    duration: timedelta
    tz: ZoneInfo
    matchers: tuple[Matcher, ...]

    def latest_start(self, now: datetime) -> datetime:
        """The latest start at or before ``now`` (UTC), by croniter's backwards search."""
        # occurrences fall on whole minutes, and get_prev is strict: search from the next one
        base = now.astimezone(UTC).replace(second=0, microsecond=0) + _MINUTE
        found = croniter(self.cron, base.astimezone(self.tz), day_or=False)
        start: datetime = found.get_prev(datetime)
        before: datetime = found.get_prev(datetime)
        if _wall(before) == _wall(start):  # the clocks went back: the first of the two
            start = before
        return start.astimezone(UTC)

    def next_spans(self, now: datetime, count: int) -> list[Span]:
        """The ``count`` next occurrences that have not ended at ``now`` (the open one first)."""
        latest = self.latest_start(now)
        spans = [Span(latest, latest + self.duration)] if now < latest + self.duration else []
        found = croniter(self.cron, now.astimezone(self.tz), day_or=False)
        wall = _wall(latest.astimezone(self.tz))
        while len(spans) < count:
            start: datetime = found.get_next(datetime)
            if _wall(start) == wall:  # the second of a wall time the clocks repeat
                continue
            wall = _wall(start)
            spans.append(Span(start.astimezone(UTC), start.astimezone(UTC) + self.duration))
        return spans

    def state_at(self, now: datetime) -> tuple[bool, Span]:
        """Whether the window is open at ``now``, and the span over which that answer holds."""
        start = self.latest_start(now)
        end = start + self.duration
        if now < end:
            return True, Span(start, end)
        found = croniter(self.cron, now.astimezone(self.tz), day_or=False)
        following: datetime = found.get_next(datetime)
        return False, Span(end, following.astimezone(UTC))

    def describe(self, now: datetime, count: int = 3) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "duration_s": self.duration.total_seconds(),
            "tz": self.tz.key,
            "matchers": [m.text for m in self.matchers],
            "next": [
                {"starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat()}
                for s in self.next_spans(now, count)
            ],
        }


def _wall(at: datetime) -> datetime:
    """The local wall-clock time of ``at`` (without its offset)."""
    return at.replace(tzinfo=None, fold=0)


def windows_from_env(env: Env, variables: Iterable[str]) -> tuple[RecurringWindow, ...]:
    """Every ``OPSWATCH_MAINTENANCE_<NAME>`` among ``variables`` (the environment's names),
    by name; a malformed one raises :class:`ConfigError` naming the variable and the field."""
    windows = []
    for variable in sorted(v for v in variables if v.startswith(VARIABLE_PREFIX)):
        suffix = variable.removeprefix(VARIABLE_PREFIX)
        if not _VARIABLE_NAME.match(suffix):
            raise ConfigError(variable, "expected OPSWATCH_MAINTENANCE_<NAME>, NAME in A-Z0-9_")
        spec = env.raw(variable)
        if spec is not None:
            windows.append(parse_window(variable, suffix.lower(), spec))
    return tuple(windows)


def parse_window(variable: str, name: str, spec: str) -> RecurringWindow:
    """``cron=EXPR; duration=4h; tz=ZONE; match=M`` (``match=`` repeatable, ``tz`` default
    UTC) as a window; errors name ``variable`` and the field."""
    values: dict[str, str] = {}
    matchers: list[Matcher] = []
    for item in spec.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in _FIELDS:
            raise ConfigError(
                variable, f"expected cron=, duration=, tz= and match= fields, got {item.strip()!r}"
            )
        if key == "match":
            try:
                matchers.append(parse_matcher(value, "match"))
            except SilenceError as exc:
                raise ConfigError(variable, str(exc)) from None
        elif key in values:
            raise ConfigError(variable, f"{key}: given twice")
        else:
            values[key] = value
    for required in ("cron", "duration"):
        if not values.get(required):
            raise ConfigError(variable, f"{required}: required")
    if not matchers:
        raise ConfigError(variable, "match: at least one matcher is required")
    tz = _zone(variable, values.get("tz") or "UTC")
    try:
        seconds = Env({variable: values["duration"]}).duration(variable, 0.0, minimum=60.0)
    except ConfigError as exc:
        raise ConfigError(variable, f"duration: {exc.problem}") from None
    cron = _cron(variable, values["cron"], tz)
    return RecurringWindow(name, cron, timedelta(seconds=seconds), tz, tuple(matchers))


def _zone(variable: str, name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            variable, f"tz: unknown time zone {name!r} (an IANA name: UTC, Europe/Berlin)"
        ) from None


def _cron(variable: str, expression: str, tz: ZoneInfo) -> str:
    """``expression`` checked: five fields that croniter reads and that ever match."""
    expression = " ".join(expression.split())
    if len(expression.split(" ")) != 5:
        raise ConfigError(
            variable,
            f"cron: expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {expression!r}",
        )
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=tz), day_or=False).get_next(datetime)
    except CroniterBadDateError:
        raise ConfigError(variable, f"cron: {expression!r} never matches") from None
    except (CroniterBadCronError, CroniterError, ValueError) as exc:
        raise ConfigError(variable, f"cron: {expression!r}: {exc}") from None
    return expression


def one_off_open(window: MaintenanceWindow, now: datetime) -> bool:
    return window.starts_at <= now < window.ends_at


class MaintenanceMuter:
    """The windows as a muter (:class:`~opswatch.notifiers.pipeline.Muter`): an alert is muted
    while a window that matches it is open, with the reason ``maintenance NAME``."""

    def __init__(
        self,
        recurring: Sequence[RecurringWindow] = (),
        one_off: Iterable[MaintenanceWindow] = (),
    ) -> None:
        self.recurring: tuple[RecurringWindow, ...] = tuple(recurring)
        self._one_off: dict[str, MaintenanceWindow] = {w.id: w for w in one_off}
        # per recurring window: whether open, over which span (croniter asked at its ends)
        self._states: dict[str, tuple[bool, Span]] = {}

    def muted(self, alert: Alert, now: datetime) -> bool:
        return bool(self.muting(alert, now))

    def muting(self, alert: Alert, now: datetime) -> list[str]:
        """``maintenance NAME`` per open window matching ``alert``."""
        if not self.recurring and not self._one_off:
            return []
        return [
            f"maintenance {name}"
            for name, matchers in self.open_windows(now)
            if matches_all(matchers, alert)
        ]

    def open_windows(self, now: datetime) -> list[tuple[str, tuple[Matcher, ...]]]:
        """The name and matchers of every window open at ``now``."""
        opened = [(w.name, w.matchers) for w in self.recurring if self.is_open(w, now)]
        opened += [(w.name, w.matchers) for w in self._one_off.values() if one_off_open(w, now)]
        return opened

    def is_open(self, window: RecurringWindow, now: datetime) -> bool:
        known = self._states.get(window.name)
        if known is None or not known[1].starts_at <= now < known[1].ends_at:
            known = self._states[window.name] = window.state_at(now)
        return known[0]

    def configure(self, recurring: Sequence[RecurringWindow]) -> None:
        """Swap the recurring windows (a reload)."""
        self.recurring = tuple(recurring)
        self._states = {}

    def get(self, window_id: str) -> MaintenanceWindow | None:
        return self._one_off.get(window_id)

    def put(self, window: MaintenanceWindow) -> None:
        self._one_off[window.id] = window

    def drop(self, window_id: str) -> None:
        self._one_off.pop(window_id, None)

    def one_off(self, now: datetime) -> list[MaintenanceWindow]:
        """The one-off windows that have not ended, the soonest starting first."""
        return sorted(
            (w for w in self._one_off.values() if w.ends_at > now),
            key=lambda w: (w.starts_at, w.id),
        )

    async def refresh(self, store: MaintenanceStore, now: datetime) -> None:
        """Replace the one-off windows by the store's (those another replica wrote too)."""
        self._one_off = {w.id: w for w in await store.maintenance_windows(now)}


@dataclass
class Maintenance:
    """Creates and deletes one-off windows, in the store first, then in the muter, with an
    audit line (``maintenance_created``, ``maintenance_deleted``: who and why)."""

    store: MaintenanceStore
    clock: Clock
    muter: MaintenanceMuter = field(default_factory=MaintenanceMuter)

    def now(self) -> datetime:
        return self.clock()

    async def load(self) -> None:
        await self.muter.refresh(self.store, self.clock())

    async def follow(
        self,
        every: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Reload the one-off windows every ``every()`` seconds, for ever (replicas)."""
        await follow(self.load, every, "maintenance_refresh_failed", sleep)

    async def create(
        self,
        name: str,
        matchers: Collection[Matcher],
        ends_at: datetime,
        *,
        created_by: str,
        comment: str,
        starts_at: datetime | None = None,
    ) -> MaintenanceWindow:
        now = self.clock()
        window = MaintenanceWindow(
            id=uuid.uuid4().hex,
            name=name,
            matchers=tuple(matchers),
            starts_at=now if starts_at is None else starts_at,
            ends_at=ends_at,
            created_by=created_by,
            comment=comment,
            created_at=now,
        )
        _check(window, now)
        await self.store.maintenance_save(window)
        self.muter.put(window)
        log.info(
            "maintenance_created",
            window=window.id,
            name=name,
            matchers=[m.text for m in window.matchers],
            starts_at=window.starts_at.isoformat(),
            ends_at=window.ends_at.isoformat(),
            created_by=created_by,
            comment=comment,
        )
        return window

    async def delete(self, window: MaintenanceWindow, *, by: str) -> None:
        """Remove ``window`` (an open one ends now: what it held is notified at the next run)."""
        await self.store.maintenance_delete(window.id)
        self.muter.drop(window.id)
        log.info(
            "maintenance_deleted",
            window=window.id,
            name=window.name,
            by=by,
            created_by=window.created_by,
            comment=window.comment,
        )


def _check(window: MaintenanceWindow, now: datetime) -> None:
    if not _NAME.match(window.name):
        raise MaintenanceError(f"name: expected [a-z][a-z0-9_-]*, got {window.name[:40]!r}")
    if not window.matchers:
        raise MaintenanceError("matchers: at least one matcher is required")
    if window.ends_at <= window.starts_at:
        raise MaintenanceError("ends_at: must be after starts_at")
    if window.ends_at <= now:
        raise MaintenanceError("ends_at: must be in the future")
