"""Reloading a muter's state from the shared store, for ever: what silences, maintenance
windows and pauses made on one replica become on every other within a check interval."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("opswatch")


async def follow(
    load: Callable[[], Awaitable[None]],
    every: Callable[[], float],
    failed_event: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Call ``load()`` every ``every()`` seconds, for ever. A store that fails keeps what is
    in memory (``failed_event`` per failed load, with a traceback for the first of an
    outage)."""
    failing = False
    while True:
        await sleep(every())
        try:
            await load()
        except Exception as exc:  # a store outage: the outage's own reports say more
            log.warning(
                failed_event,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=not failing,  # one traceback per outage
            )
            failing = True
        else:
            failing = False
