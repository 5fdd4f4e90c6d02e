"""The daemon of the alert tests: a host check fed by hand, a local webhook, a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from opswatch.daemon.app import App
from opswatch.model import TransitionKind
from tests.conftest import ManualClock
from tests.notifiers.test_silenced_notify import Daemon
from tests.peers import Receiver

#: ``/`` this full fires disk_full critical; free, it resolves
FULL, FREE = 97.0, 50.0


class HostDaemon:
    """The daemon of the silence tests (host check, a webhook), one disk run per call: the
    run, its recoveries, then the clock 30 s on."""

    def __init__(self, daemon: Daemon, clock: ManualClock, hook: Receiver) -> None:
        self.daemon, self.clock, self.hook = daemon, clock, hook

    @property
    def app(self) -> App:
        assert self.daemon.app is not None
        return self.daemon.app

    async def run(self, used: float) -> list[TransitionKind]:
        kinds = await self.daemon.cycle(used)
        await self.app.remediation.wait()
        self.clock.advance(30)
        return kinds

    async def flap(self, changes: int) -> list[list[TransitionKind]]:
        """A 1-0-1-0 series of ``changes`` runs, starting full."""
        return [await self.run(FULL if n % 2 == 0 else FREE) for n in range(changes)]

    def told(self) -> list[tuple[str, str]]:
        """Each webhook message's (transition, status), in order."""
        return [
            (a["annotations"]["transition"], a["status"])
            for r in self.hook.requests
            for a in r.body["alerts"]
        ]


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


MakeDaemon = Callable[..., Awaitable[HostDaemon]]


@pytest.fixture
async def make(tmp_path: Path, clock: ManualClock, hook: Receiver) -> AsyncIterator[MakeDaemon]:
    """Opens the daemon with extra variables (stopped at the end of the test)."""
    made: list[Daemon] = []

    async def open_daemon(**extra: str) -> HostDaemon:
        daemon = Daemon(tmp_path, clock, hook)
        daemon.environ.update(extra)
        await daemon.open()
        made.append(daemon)
        return HostDaemon(daemon, clock, hook)

    yield open_daemon
    for daemon in made:
        await daemon.stop()
