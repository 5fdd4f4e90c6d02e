"""A real daemon (``App`` on a real store) notifying a local webhook, its runs driven by the
test through ``App.cycle.process`` with a manual clock, its outbox pass by pass: no sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tenacity import wait_none

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import Sample, TransitionKind
from opswatch.notifiers.outbox import RetryPolicy
from tests.conftest import ManualClock
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


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()
