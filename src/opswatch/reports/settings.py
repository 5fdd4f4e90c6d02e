"""When the reports run and where they go.

* ``OPSWATCH_REPORT_DAILY``: a five-field cron schedule of the daily health report (default
  ``0 8 * * *``), or ``off``;
* ``OPSWATCH_REPORT_WEEKLY``: the weekly capacity review (default ``0 8 * * 1``, Monday), or
  ``off``;
* ``OPSWATCH_REPORT_TZ``: the IANA time zone both schedules are read in (default ``UTC``);
* ``OPSWATCH_ROUTE_REPORT``: the channels (:func:`opswatch.notifiers.routing.report_route`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.notifiers.base import Notifier
from opswatch.notifiers.routing import ChannelRef, report_route

DAILY_VAR = f"{PREFIX}REPORT_DAILY"
WEEKLY_VAR = f"{PREFIX}REPORT_WEEKLY"
TZ_VAR = f"{PREFIX}REPORT_TZ"
_OFF = "off"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One report: its kind (``daily``, ``weekly``), cron schedule, zone and the period it
    covers (the last ``period`` seconds before its time)."""

    kind: str
    cron: str
    tz: ZoneInfo
    period: float

    def latest(self, now: datetime) -> datetime:
        """The latest time of the schedule at or before ``now`` (aware, in the zone)."""
        minute = now.astimezone(self.tz).replace(second=0, microsecond=0)
        found: datetime = croniter(self.cron, minute + timedelta(seconds=1)).get_prev(datetime)
        return found

    def after(self, moment: datetime) -> datetime:
        """The first time of the schedule after ``moment``."""
        found: datetime = croniter(self.cron, moment.astimezone(self.tz)).get_next(datetime)
        return found


@dataclass(frozen=True, slots=True)
class ReportSettings:
    schedules: tuple[Schedule, ...] = ()
    channels: frozenset[str] = frozenset()

    @classmethod
    def from_env(
        cls, env: Env, notifiers: Sequence[Notifier], known_names: Collection[str]
    ) -> ReportSettings:
        tz = _zone(env)
        schedules = [
            schedule
            for variable, kind, default, period in (
                (DAILY_VAR, "daily", "0 8 * * *", 86400.0),
                (WEEKLY_VAR, "weekly", "0 8 * * 1", 7 * 86400.0),
            )
            if (schedule := _schedule(env, variable, kind, default, period=period, tz=tz))
            is not None
        ]
        refs = [ChannelRef(n.name, n.channel) for n in notifiers]
        return cls(tuple(schedules), report_route(env, refs, known_names))

    @property
    def enabled(self) -> bool:
        return bool(self.schedules and self.channels)

    def describe(self) -> dict[str, Any]:
        return {
            "schedules": {s.kind: f"{s.cron} ({s.tz.key})" for s in self.schedules},
            "channels": sorted(self.channels),
        }


def _zone(env: Env) -> ZoneInfo:
    name = env.string(TZ_VAR, "UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(TZ_VAR, f"unknown time zone {name!r} (an IANA name, e.g. UTC)") from None


def _schedule(
    env: Env, variable: str, kind: str, default: str, *, period: float, tz: ZoneInfo
) -> Schedule | None:
    value = " ".join(env.string(variable, default).split())
    if value.lower() == _OFF:
        return None
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ConfigError(
            variable,
            f"expected a five-field cron schedule (e.g. {default!r}) or off, got {value!r}",
        )
    return Schedule(kind, value, tz, period)
