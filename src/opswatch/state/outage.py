"""Whether the state store takes writes, since when, and when to stop waiting for it.

Every writer that reaches the store (the commit path, the outbox) reports each attempt here.
An outage is logged once when it starts (``state_store_unavailable``) and once when it ends
(``state_store_available`` with its duration), never per attempt; while it lasts ``/healthz``
answers 503 with the reason and the systemd watchdog is withheld. Nothing is lost meanwhile:
a failed commit leaves the tracker as it was (the next run finds the condition again) and
outbox rows stay in the store. After ``give_up_after`` seconds of outage the daemon stops
with one line (``state_store_gave_up``) and exit status 1, so that systemd restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

import structlog

from opswatch.model import Clock
from opswatch.ports import StateStore, StoreError, UnusableStateError

log = structlog.get_logger("opswatch")


class StoreOutage:
    def __init__(self, clock: Clock, give_up_after: float, on_give_up: Callable[[], None]) -> None:
        self._clock = clock
        self.give_up_after = give_up_after
        self._on_give_up = on_give_up
        self.since: datetime | None = None
        self.reason = ""
        self._gave_up = False

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, error: str) -> None:
        now = self._clock()
        if self.since is None:
            self.since = now
            log.error("state_store_unavailable", error=error)
        self.reason = error
        lasted = (now - self.since).total_seconds()
        if lasted >= self.give_up_after and not self._gave_up:
            self._gave_up = True
            log.critical(
                "state_store_gave_up",
                error=error,
                outage_s=round(lasted, 1),
                limit_s=self.give_up_after,
            )
            self._on_give_up()

    def succeeded(self) -> None:
        if self.since is None:
            return
        lasted = (self._clock() - self.since).total_seconds()
        log.info("state_store_available", outage_s=round(lasted, 1))
        self.since = None
        self.reason = ""


async def open_when_reachable(
    store: StateStore, outage: StoreOutage, stop: asyncio.Event, max_delay: float
) -> bool:
    """Open ``store``, waiting for it while it cannot be reached (a start during an outage:
    one ``state_store_unavailable`` line, retries with backoff up to ``max_delay`` apart).
    Returns False when the wait ended first (SIGTERM, or the outage outlived the give-up
    time). A store that is reachable but unusable (corrupt, newer) raises at once."""
    delay = min(1.0, max_delay)
    while True:
        try:
            await store.open()
        except UnusableStateError:
            raise
        except StoreError as exc:
            outage.failed(str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return False
            delay = min(2 * delay, max_delay)
            continue
        outage.succeeded()
        return True
