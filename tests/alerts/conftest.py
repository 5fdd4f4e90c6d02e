"""Daemons for the alert tests: a real ``App`` on a real store notifying a local webhook, its
runs driven by the test with a manual clock, its outbox pass by pass: no sleeps. ``Daemon``
takes any environment and hands each run its samples; ``HostDaemon`` (over the silence
tests' daemon) feeds one host check's disk by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from tenacity import wait_none

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import Sample, TransitionKind
from opswatch.notifiers.outbox import RetryPolicy
from tests.conftest import ManualClock
from tests.notifiers.test_silenced_notify import Daemon as SilenceDaemon
from tests.peers import Receiver

FAST = RetryPolicy(attempts=2, total_seconds=5, wait=wait_none())


class Daemon:
    """``environ`` over a SQLite state in ``tmp_path`` and the webhook ``hook``; the checks
    are never collected (the test hands each run its samples)."""

    def __init__(self, environ: dict[str, str], clock: ManualClock, hook: Receiver) -> None:
        self.environ = {
            "OPSWATCH_API_LISTEN": "127.0.0.1:0",
            "OPSWATCH_SHUTDOWN_GRACE": "2s",
            "OPSWATCH_WEBHOOK_URL": hook.url + "/hook",
            **environ,
        }
        self.clock = clock
        self.hook = hook
        self._app: App | None = None

    @property
    def app(self) -> App:
        assert self._app is not None, "the daemon is not open"
        return self._app

    async def open(self) -> App:
        config = load_config(self.environ, self.clock)
        self._app = App(config, clock=self.clock, retry_policy=FAST)
        await self._app.open()
        return self._app

    async def stop(self) -> None:
        if self._app is not None:
            await self._app.stop()
            self._app = None

    async def run(self, check: str, *samples: tuple[str, float]) -> list[TransitionKind]:
        """One run of ``check`` with these ``(metric, value)`` samples (labelled as the check's
        up sample), then one outbox pass."""
        labels = self.app.checks.up_labels(check)
        batch = [Sample(check, m, v, self.clock.now, labels) for m, v in samples]
        transitions = await self.app.cycle.process(check, batch, None, 0.0)
        await self.app.outbox.deliver_due()
        return [t.kind for t in transitions]

    def sent(self) -> list[tuple[str, str]]:
        """Every alert the webhook got: (its status, its rule)."""
        return [
            (alert["status"], alert["labels"]["alertname"])
            for request in self.hook.requests
            for alert in request.body["alerts"]
        ]

    def muted_by(self) -> dict[str, list[str]]:
        """Each active alert's rule and why it is muted now."""
        now = self.clock.now
        return {a.rule: self.app.mutes.muting(a, now) for a in self.app.tracker.active()}


#: ``/`` this full fires disk_full critical; free, it resolves
FULL, FREE = 97.0, 50.0


class HostDaemon:
    """The daemon of the silence tests (host check, a webhook), one disk run per call: the
    run, its recoveries, then the clock 30 s on."""

    def __init__(self, daemon: SilenceDaemon, clock: ManualClock, hook: Receiver) -> None:
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
    made: list[SilenceDaemon] = []

    async def open_daemon(**extra: str) -> HostDaemon:
        daemon = SilenceDaemon(tmp_path, clock, hook)
        daemon.environ.update(extra)
        await daemon.open()
        made.append(daemon)
        return HostDaemon(daemon, clock, hook)

    yield open_daemon
    for daemon in made:
        await daemon.stop()
