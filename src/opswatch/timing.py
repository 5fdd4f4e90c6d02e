"""Every duration derived from the check interval, computed once (and again by a reload).

``OPSWATCH_INTERVAL`` sets the pace; what follows from it lives here so that no part of the
daemon computes its own copy (and a reload changes all of them together):

* ``lease_ttl``: a replica's check lease outlives ``LEASE_INTERVALS`` intervals without
  renewal, so a killed replica's checks are taken over within about three intervals;
* ``outbox_poll``: how often an idle outbox of a shared store looks for rows another replica
  stored but could not send;
* ``health_allowance``: a check that has not finished for two intervals plus its timeout is
  late, and ``/healthz`` turns unhealthy;
* ``misfire_grace``: how late (wall time) a scheduled run may start and still run.

``check_timeout`` and ``retry_interval`` have their own variables, with defaults derived from
the interval in :class:`opswatch.config.Settings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from opswatch.config import Settings

#: a lease lasts this many check intervals without renewal
LEASE_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class Timing:
    interval: float
    check_timeout: float
    retry_interval: float
    lease_ttl: float
    outbox_poll: float
    health_allowance: float
    misfire_grace: int

    @classmethod
    def of(cls, settings: Settings) -> Timing:
        interval = settings.interval
        return cls(
            interval=interval,
            check_timeout=settings.check_timeout,
            retry_interval=settings.retry_interval,
            lease_ttl=LEASE_INTERVALS * interval,
            outbox_poll=interval,
            health_allowance=2 * interval + settings.check_timeout,
            misfire_grace=max(1, int(interval)),
        )
