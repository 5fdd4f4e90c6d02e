"""Flapping: the score and its thresholds (pure), then the whole daemon (``App``) on a 1-0-1-0
disk series every 30 s with a local webhook: one flapping notification instead of one per
change, the end of flapping in both states, recovery paused meanwhile, a restart in between.
Samples go to ``App.cycle.process``, the outbox is driven pass by pass, the clock is manual."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opswatch.alerts.flapping import FlapDetector, FlapSettings, flap_score
from opswatch.config import ConfigError, Env
from opswatch.model import RecoveryOutcome, TransitionKind
from opswatch.notifiers.render import render
from tests.alerts.conftest import FREE, FULL, HostDaemon, MakeDaemon

K = TransitionKind
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def states_of(series: str) -> list[bool]:
    return [c == "1" for c in series]


def test_a_1_0_1_0_series_reaches_the_high_threshold_at_its_fourth_state_change() -> None:
    settings = FlapSettings()
    scores = [flap_score(states_of("0" + "1010"[:n]), settings.window) for n in range(1, 5)]
    assert [s >= settings.high for s in scores] == [False, False, False, True]
    assert scores == sorted(scores)  # every change adds to it


def test_recent_changes_weigh_more_than_old_ones() -> None:
    recent = flap_score(states_of("0" * 16 + "0101"), 20)
    old = flap_score(states_of("0101" + "1" * 16), 20)
    assert recent > old > 0
    assert flap_score(states_of("01" * 10), 20) == pytest.approx(100.0)
    assert flap_score(states_of("1" * 20), 20) == 0.0


def observe(detector: FlapDetector, series: str, now: datetime = T0) -> list[dict[str, bool]]:
    """Feed one identity's states (the first is its state before) to ``detector``."""
    previous, events = series[0] == "1", []
    for index, char in enumerate(series[1:]):
        state = char == "1"
        changed = {"fp": "disk_full"} if state != previous else {}
        at = now + timedelta(seconds=30 * index)
        firing = {"fp"} if state else set()
        events.append(
            detector.observe("host", frozenset({"disk_full"}), changed, firing.__contains__, at)
        )
        previous = state
    return events


def test_hysteresis_keeps_an_identity_flapping_until_it_is_quiet_below_the_low_threshold() -> None:
    detector = FlapDetector(FlapSettings())
    events = observe(detector, "0" + "1010" * 3 + "1" * 20)
    started = [i for i, e in enumerate(events) if e.get("fp") is True]
    ended = [i for i, e in enumerate(events) if e.get("fp") is False]
    assert started == [3]  # the fourth state change
    assert ended == [29]  # once, 17 runs after its last change
    assert detector.score("fp") < FlapSettings().low


def test_an_alert_that_fires_resolves_and_fires_again_minutes_apart_is_not_flapping() -> None:
    detector = FlapDetector(FlapSettings())
    events = observe(detector, "0" + "1" * 6 + "0" * 6 + "1" * 6)
    assert not any(events)
    assert not detector.flapping("fp")


def test_identities_quiet_for_a_whole_window_are_forgotten() -> None:
    detector = FlapDetector(FlapSettings(window=10))
    fired = {f"fp{n}": "r" for n in range(1000)}  # a thousand alerts fire, then keep firing
    detector.observe("host", frozenset({"r"}), fired, lambda _: True, T0)
    assert len(detector) == 1000
    for run in range(1, 10):
        detector.observe("host", frozenset({"r"}), {}, lambda _: True, T0 + timedelta(minutes=run))
    assert len(detector) == 0


def test_identities_no_longer_evaluated_are_forgotten_after_a_day() -> None:
    detector = FlapDetector(FlapSettings())
    observe(detector, "01010")
    assert detector.flapping("fp")
    detector.observe("other", frozenset({"r"}), {}, lambda _: False, T0 + timedelta(days=2))
    assert len(detector) == 0


async def test_loading_the_alerts_again_keeps_a_flapping_identity_s_recent_states(
    flapping: HostDaemon,
) -> None:
    await flapping.flap(5)
    app = flapping.app
    (alert,) = app.tracker.active()
    score = app.flapping.score(alert.fingerprint)
    app.tracker.load([alert])  # as a reload's adopt() does
    assert app.flapping.score(alert.fingerprint) == score < 100


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OPSWATCH_FLAPPING_HIGH": "lots"}, "OPSWATCH_FLAPPING_HIGH"),
        ({"OPSWATCH_FLAPPING_HIGH": "30", "OPSWATCH_FLAPPING_LOW": "30"}, "OPSWATCH_FLAPPING_LOW"),
        ({"OPSWATCH_FLAPPING_WINDOW": "2"}, "OPSWATCH_FLAPPING_WINDOW"),
        ({"OPSWATCH_FLAPPING": "sometimes"}, "OPSWATCH_FLAPPING"),
    ],
)
def test_malformed_flapping_settings_name_their_variable(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as error:
        FlapSettings.from_env(Env(environ))
    assert error.value.variable == variable


# -- the daemon ---------------------------------------------------------------------------


@pytest.fixture
async def flapping(make: MakeDaemon) -> HostDaemon:
    return await make()


async def test_a_1_0_1_0_series_at_30_s_sends_one_flapping_notification_not_one_per_change(
    flapping: HostDaemon,
) -> None:
    runs = await flapping.flap(12)
    assert runs[:4] == [[K.FIRED], [K.RESOLVED], [K.FIRED], [K.RESOLVED, K.FLAPPING_STARTED]]
    assert runs[4:] == [[K.FIRED], [K.RESOLVED]] * 4  # in history, sent nowhere
    assert flapping.told() == [
        ("fired", "firing"),
        ("resolved", "resolved"),
        ("fired", "firing"),
        ("flapping_started", "resolved"),
    ]
    (last,) = flapping.hook.requests[-1].body["alerts"]
    assert last["annotations"]["actions"].startswith("the alert is flapping: 4 state changes")
    history = await flapping.app.store.history(100)
    assert [t.kind for t in history].count(K.FIRED) == 6  # every change is kept
    (started,) = [t for t in history if t.kind is K.FLAPPING_STARTED]
    notification = render([started], started.at)
    assert notification.title == "[FLAPPING] disk_full on host"
    assert "started flapping (resolved at 2026-01-01T12:01:30Z after 30 s)" in notification.text


async def test_the_end_of_flapping_while_firing_sends_one_firing_notification(
    flapping: HostDaemon,
) -> None:
    await flapping.flap(8)
    quiet = [await flapping.run(FULL) for _ in range(25)]
    ended = [n for n, kinds in enumerate(quiet) if K.FLAPPING_ENDED in kinds]
    assert ended == [17]  # 17 runs (8.5 min) after its last change
    assert quiet[0] == [K.FIRED]
    assert flapping.told()[4:] == [("flapping_ended", "firing")]
    (alert,) = flapping.app.tracker.active()
    assert not alert.flapping
    assert len(flapping.app.flapping) == 0  # quiet for a window: forgotten
    assert await flapping.run(FREE) == [K.RESOLVED]  # notified like any resolution
    assert flapping.told()[-1] == ("resolved", "resolved")


async def test_the_end_of_flapping_after_it_resolved_sends_its_resolution(
    flapping: HostDaemon,
) -> None:
    await flapping.flap(8)  # ends on a resolution, held
    quiet = [await flapping.run(FREE) for _ in range(25)]
    assert sum(1 for kinds in quiet if kinds == [K.FLAPPING_ENDED]) == 1
    assert flapping.told()[4:] == [("flapping_ended", "resolved")]
    assert flapping.app.tracker.active() == []


async def test_a_flapping_alert_stays_flapping_across_a_restart(
    flapping: HostDaemon,
) -> None:
    await flapping.flap(5)  # flapping, firing
    (alert,) = flapping.app.tracker.active()
    assert alert.flapping
    await flapping.daemon.stop()
    await flapping.daemon.open()
    (loaded,) = flapping.app.tracker.active()
    assert loaded.flapping
    runs = [await flapping.run(FULL) for _ in range(3)]
    assert runs == [[], [], []]
    assert len(flapping.hook.requests) == 4  # nothing new: still flapping


async def test_recovery_pauses_while_an_alert_flaps_and_resumes_when_it_stops(
    make: MakeDaemon,
) -> None:
    f = await make(
        OPSWATCH_RECOVERY_DISK_FULL="systemd:restart:app.service",
        OPSWATCH_RECOVERY_DRY_RUN="1",
        OPSWATCH_RECOVERY_FLAP_COUNT="100",  # the score alone says flapping here
    )
    await f.flap(5)
    runs = list(reversed(await f.app.store.recovery_history(10)))
    assert [r.outcome for r in runs] == [
        RecoveryOutcome.SKIPPED_DRY_RUN,
        RecoveryOutcome.SKIPPED_DRY_RUN,
        RecoveryOutcome.SKIPPED_FLAPPING,
    ]
    assert runs[-1].detail.startswith("the alert is flapping: 5 state changes in its last")
    for _ in range(25):
        if K.FLAPPING_ENDED in await f.run(FULL):
            break
    runs = await f.app.store.recovery_history(10)
    assert runs[0].outcome is RecoveryOutcome.SKIPPED_DRY_RUN  # recovery resumed
    assert len(runs) == 4
