"""Silences through the real daemon (``App``) and a local webhook: a silenced alert is tracked
but not notified; notified at the first run after its silence ends (a restart and a reload
in between); a resolution inside a silence follows its notified firing, one whose firing was
never notified sends nothing. Samples go to ``App.cycle.process``, the outbox is driven pass
by pass with a manual clock: no sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from tenacity import wait_none

from opswatch.alerts.silences import parse_matcher
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import Sample, Severity, Silence, TransitionKind
from opswatch.notifiers.outbox import RetryPolicy
from tests.conftest import ManualClock
from tests.notifiers.conftest import ReceiverFactory
from tests.peers import Receiver

FAST = RetryPolicy(attempts=2, total_seconds=5, wait=wait_none())


class Daemon:
    def __init__(self, tmp_path: Path, clock: ManualClock, hook: Receiver) -> None:
        self.environ = {
            "OPSWATCH_CHECKS": "host",
            "OPSWATCH_STATE_PATH": str(tmp_path / "state.sqlite3"),
            "OPSWATCH_API_LISTEN": "127.0.0.1:0",
            "OPSWATCH_SHUTDOWN_GRACE": "2s",
            "OPSWATCH_WEBHOOK_URL": hook.url + "/hook",
        }
        self.clock = clock
        self.app: App | None = None

    async def open(self) -> App:
        self.app = App(load_config(self.environ, self.clock), clock=self.clock, retry_policy=FAST)
        await self.app.open()
        return self.app

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    async def cycle(self, used: float) -> list[TransitionKind]:
        """One host run with ``/`` this full, then one outbox pass."""
        app = self.app
        assert app is not None
        samples = [
            Sample("host", "host.disk_used_percent", used, self.clock.now, {"mountpoint": "/"})
        ]
        transitions = await app.cycle.process("host", samples, None, 0.0)
        await app.outbox.deliver_due()
        return [t.kind for t in transitions]

    async def silence(self, hours: float = 1.0) -> Silence:
        assert self.app is not None
        return await self.app.silences.create(
            [parse_matcher("rule=disk_full"), parse_matcher("check=~ho.*")],
            self.clock.now + timedelta(hours=hours),
            "ana",
            "disk swap",
        )


@pytest.fixture
async def hook(receiver_factory: ReceiverFactory) -> Receiver:
    return await receiver_factory()


@pytest.fixture
async def daemon(tmp_path: Path, clock: ManualClock, hook: Receiver) -> AsyncIterator[Daemon]:
    daemon = Daemon(tmp_path, clock, hook)
    await daemon.open()
    yield daemon
    await daemon.stop()


def statuses(hook: Receiver) -> list[list[str]]:
    return [[a["status"] for a in r.body["alerts"]] for r in hook.requests]


async def test_a_silenced_alert_is_tracked_not_notified_then_notified_when_the_silence_ends(
    daemon: Daemon, clock: ManualClock, hook: Receiver
) -> None:
    silence = await daemon.silence()
    assert await daemon.cycle(97.0) == [TransitionKind.FIRED]  # in history, not notified
    app = daemon.app
    assert app is not None
    (alert,) = app.tracker.active()
    assert not alert.notified
    clock.advance(30)
    assert await daemon.cycle(97.0) == []
    assert hook.requests == []

    clock.advance(3600)  # the silence ended; the alert still fires
    assert app.silences.muter.muting(alert, clock.now) == []
    assert await daemon.cycle(97.0) == [TransitionKind.FIRED]
    assert statuses(hook) == [["firing"]]
    clock.advance(30)
    assert await daemon.cycle(97.0) == []  # notified once
    assert len(hook.requests) == 1
    history = await app.store.history(fingerprint=alert.fingerprint)
    assert history[0].note == "its firing was silenced until now"
    assert silence.id not in {
        s.id for s in app.silences.muter.listed(clock.now) if s.ends_at > clock.now
    }


async def test_a_held_firing_survives_a_restart_and_is_notified_when_its_silence_expires(
    daemon: Daemon, clock: ManualClock, hook: Receiver
) -> None:
    silence = await daemon.silence(hours=5)
    await daemon.cycle(97.0)
    await daemon.stop()
    app = await daemon.open()  # the silence and the unnotified firing come from the store
    clock.advance(30)
    assert await daemon.cycle(97.0) == []
    assert hook.requests == []

    loaded = app.silences.muter.get(silence.id)
    assert loaded is not None
    await app.silences.expire(loaded, by="bob")
    assert await daemon.cycle(97.0) == [TransitionKind.FIRED]
    assert statuses(hook) == [["firing"]]


async def test_a_reload_keeps_the_silences_muter_on_the_new_pipeline(daemon: Daemon) -> None:
    app = daemon.app
    assert app is not None
    before = app.book.pipeline
    app.reloader.enable()  # as start() does
    assert await app.reload(daemon.environ)
    assert app.book.pipeline is not before
    assert app.book.pipeline.muter is app.mutes


async def test_a_resolution_inside_a_silence_reaches_the_channels_its_firing_was_paged(
    daemon: Daemon, clock: ManualClock, hook: Receiver
) -> None:
    assert await daemon.cycle(97.0) == [TransitionKind.FIRED]
    assert statuses(hook) == [["firing"]]
    await daemon.silence()
    clock.advance(30)
    assert await daemon.cycle(50.0) == [TransitionKind.RESOLVED]
    assert statuses(hook) == [["firing"], ["resolved"]]


async def test_an_alert_firing_and_resolving_inside_a_silence_sends_nothing_ever(
    daemon: Daemon, clock: ManualClock, hook: Receiver
) -> None:
    await daemon.silence()
    assert await daemon.cycle(97.0) == [TransitionKind.FIRED]
    clock.advance(30)
    assert await daemon.cycle(50.0) == [TransitionKind.RESOLVED]
    clock.advance(7200)
    assert await daemon.cycle(50.0) == []
    assert hook.requests == []


async def test_a_firing_held_past_its_silence_that_resolves_first_sends_nothing(
    daemon: Daemon, clock: ManualClock, hook: Receiver
) -> None:
    await daemon.silence()
    await daemon.cycle(97.0)
    clock.advance(3600)  # the silence ended, and the disk was freed before the next run
    assert await daemon.cycle(50.0) == [TransitionKind.RESOLVED]
    assert hook.requests == []


def told(hook: Receiver) -> list[tuple[str, str]]:
    """Each webhook message's firing (transition, severity), in order (a severity change
    also resolves the old severity's series)."""
    return [
        (a["annotations"]["transition"], a["labels"]["severity"])
        for r in hook.requests
        for a in r.body["alerts"]
        if a["status"] == "firing"
    ]


async def test_a_severity_rise_inside_a_silence_is_notified_when_the_silence_ends(
    daemon: Daemon, clock: ManualClock, hook: Receiver
) -> None:
    app = daemon.app
    assert app is not None
    assert await daemon.cycle(86.0) == [TransitionKind.FIRED]  # warning, paged
    await daemon.silence()
    clock.advance(30)
    assert await daemon.cycle(95.0) == [TransitionKind.SEVERITY_CHANGED]  # critical, muted
    clock.advance(30)
    assert await daemon.cycle(95.0) == []
    assert told(hook) == [("fired", "warning")]

    clock.advance(3600)  # the silence ended: the channels learn of the rise, once
    assert await daemon.cycle(95.0) == [TransitionKind.SEVERITY_CHANGED]
    assert told(hook) == [("fired", "warning"), ("severity_changed", "critical")]
    clock.advance(30)
    assert await daemon.cycle(95.0) == []
    history = await app.store.history(limit=1)
    assert history[0].note == "its severity changed while it was muted"
    assert history[0].previous_severity is Severity.WARNING


async def test_a_severity_that_rose_and_fell_back_inside_a_silence_sends_nothing_after(
    daemon: Daemon, clock: ManualClock, hook: Receiver
) -> None:
    assert await daemon.cycle(86.0) == [TransitionKind.FIRED]
    await daemon.silence()
    for used in (95.0, 86.0):
        clock.advance(30)
        assert await daemon.cycle(used) == [TransitionKind.SEVERITY_CHANGED]
    clock.advance(3600)
    assert await daemon.cycle(86.0) == []  # the channels heard warning: nothing is new
    assert told(hook) == [("fired", "warning")]
