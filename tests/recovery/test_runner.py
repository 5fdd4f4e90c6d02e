"""The runner: attempts, verification, the budget (persisted, half-open), the host cap,
flapping, dry-run and the per-target lock. A real SQLite store; systemctl is the injected
runner; ``verify`` is scripted; no test sleeps."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from tenacity import wait_none

from opswatch.daemon.configure import load_config
from opswatch.model import (
    Alert,
    AlertState,
    CycleRecord,
    RecoveryOutcome,
    RecoveryResult,
    Severity,
    Transition,
    TransitionKind,
)
from opswatch.recovery.base import CommandResult
from opswatch.recovery.config import Binding, Budget, RecoverySettings
from opswatch.recovery.runner import RecoveryPolicy, RecoveryRunner, budget_state
from opswatch.recovery.systemd import SystemdAction
from opswatch.state.sqlite import SQLiteStore
from tests.conftest import ManualClock
from tests.recovery.conftest import RecordingRunner

POLICY = RecoveryPolicy(attempts=3, total_seconds=60, wait=wait_none(), attempt_timeout=5)
BINDING = Binding(
    "http_down", None, "OPSWATCH_RECOVERY_HTTP_DOWN", SystemdAction("restart", "x.service")
)
RESTART = ["systemctl", "restart", "x.service"]


def alert(clock: ManualClock, fingerprint: str = "f00d") -> Alert:
    return Alert(
        fingerprint=fingerprint,
        rule="http_down",
        check="http:api",
        labels={"target": "api"},
        state=AlertState.FIRING,
        severity=Severity.CRITICAL,
        summary="http:api is down",
        value=0.0,
        started_at=clock.now,
        last_seen_at=clock.now,
    )


class Sleeps:
    """The injected sleeper: records, never waits."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


def verifier(*answers: bool) -> Callable[[], Awaitable[bool]]:
    """``verify()`` answering ``answers`` in turn, then the last one for ever."""
    queue = list(answers)

    async def verify() -> bool:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return verify


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "state.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


def runner(
    store: SQLiteStore,
    clock: ManualClock,
    commands: RecordingRunner,
    sleeps: Sleeps | None = None,
    policy: RecoveryPolicy = POLICY,
    **settings: Any,
) -> RecoveryRunner:
    configured = dataclasses.replace(
        RecoverySettings(bindings=(BINDING,), verify_every_s=2, verify_for_s=10), **settings
    )
    return RecoveryRunner(
        configured,
        store,
        clock=clock,
        commands=commands,
        policy=policy,
        sleep=sleeps or Sleeps(),
    )


async def run(r: RecoveryRunner, clock: ManualClock, verify: object = None) -> RecoveryResult:
    ctx = r.context(BINDING, alert(clock))
    return await r.run(BINDING, ctx, verify or verifier(True))  # type: ignore[arg-type]


async def test_a_verified_restart_succeeds_after_one_attempt(
    store: SQLiteStore, clock: ManualClock, commands: RecordingRunner
) -> None:
    result = await run(runner(store, clock, commands), clock, verifier(False, True))
    assert [c.argv for c in commands.calls] == [RESTART]
    assert result.outcome is RecoveryOutcome.SUCCEEDED
    assert result.attempts == 1
    assert result.key == "systemd:x.service"
    assert await store.recovery_history() == [result]


async def test_verification_reruns_the_check_every_interval_through_the_injected_sleeper(
    store: SQLiteStore, clock: ManualClock, commands: RecordingRunner
) -> None:
    sleeps = Sleeps()
    calls = 0

    async def verify() -> bool:
        nonlocal calls
        calls += 1
        return False

    r = runner(store, clock, commands, sleeps, dataclasses.replace(POLICY, attempts=1))
    result = await run(r, clock, verify)
    assert result.outcome is RecoveryOutcome.FAILED
    assert calls == 6  # at once, then every 2 s for 10 s
    assert sleeps.slept == [2, 2, 2, 2, 2]
    assert "http_down still finds 10 s after the restart" in result.detail


async def test_a_service_that_never_comes_back_gets_three_attempts_then_fails(
    store: SQLiteStore, clock: ManualClock, commands: RecordingRunner
) -> None:
    with structlog.testing.capture_logs() as logs:
        result = await run(runner(store, clock, commands), clock, verifier(False))
    assert [c.argv for c in commands.calls] == [RESTART] * 3
    assert result.outcome is RecoveryOutcome.FAILED
    assert result.attempts == 3
    retries = [e for e in logs if e["event"] == "recovery_retry"]
    assert [e["attempt"] for e in retries] == [1, 2]


async def test_a_permanent_error_is_not_retried(
    store: SQLiteStore, clock: ManualClock, commands: RecordingRunner
) -> None:
    commands.results = [CommandResult(5, "", "Unit x.service not found.")]
    result = await run(runner(store, clock, commands), clock)
    assert len(commands.calls) == 1
    assert result.outcome is RecoveryOutcome.FAILED
    assert result.detail == "systemctl restart x.service failed: Unit x.service not found."


async def test_an_attempt_that_hangs_is_cut_by_the_attempt_timeout(
    store: SQLiteStore, clock: ManualClock
) -> None:
    class Hanging(RecordingRunner):
        async def run(
            self,
            argv: Sequence[str],
            timeout: float,  # noqa: ASYNC109
            env: Mapping[str, str] | None = None,
            uid: int | None = None,
        ) -> CommandResult:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    policy = dataclasses.replace(POLICY, attempts=2, attempt_timeout=0.05)
    r = runner(store, clock, Hanging(), policy=policy)
    result = await run(r, clock)
    assert result.outcome is RecoveryOutcome.FAILED
    assert result.attempts == 2
    assert result.detail == "systemd timed out after 0.05s"


async def test_dry_run_runs_nothing_and_says_what_it_would_run(
    store: SQLiteStore, clock: ManualClock, commands: RecordingRunner
) -> None:
    result = await run(runner(store, clock, commands, dry_run=True), clock)
    assert commands.calls == []
    assert result.outcome is RecoveryOutcome.SKIPPED_DRY_RUN
    assert result.detail == "would systemctl restart x.service"


async def test_the_budget_blocks_runs_even_for_a_new_runner_on_the_same_store(
    tmp_path: Path, clock: ManualClock, commands: RecordingRunner
) -> None:
    first = SQLiteStore(tmp_path / "state.sqlite3")
    await first.open()
    failed = await run(runner(first, clock, commands), clock, verifier(False))
    assert failed.attempts == 3
    await first.close()

    clock.advance(60)
    second = SQLiteStore(tmp_path / "state.sqlite3")
    await second.open()
    try:
        blocked = await run(runner(second, clock, commands), clock)
        assert blocked.outcome is RecoveryOutcome.SKIPPED_BUDGET
        assert "budget of systemd:x.service exhausted (3 of 3/30m used)" in blocked.detail
        assert len(commands.calls) == 3
    finally:
        await second.close()


async def test_after_the_cooldown_one_trial_is_allowed_and_its_success_closes_the_breaker(
    store: SQLiteStore, clock: ManualClock, commands: RecordingRunner
) -> None:
    r = runner(store, clock, commands, cooldown_s=600.0)
    await run(r, clock, verifier(False))  # 3 attempts: budget used up
    clock.advance(599)
    assert (await run(r, clock)).outcome is RecoveryOutcome.SKIPPED_BUDGET
    clock.advance(1)
    trial = await run(r, clock, verifier(False))
    assert (trial.outcome, trial.attempts, trial.trial) == (RecoveryOutcome.FAILED, 1, True)
    clock.advance(600)
    closing = await run(r, clock, verifier(True))
    assert (closing.outcome, closing.trial) == (RecoveryOutcome.SUCCEEDED, True)
    clock.advance(1)
    after = await run(r, clock, verifier(True))
    assert after.outcome is RecoveryOutcome.SUCCEEDED
    assert not after.trial


def test_budget_state_is_closed_open_then_half_open(clock: ManualClock) -> None:
    budget = Budget(3, 1800.0, "3/30m")

    def ran(attempts: int, **fields: object) -> RecoveryResult:
        return dataclasses.replace(
            RecoveryResult("systemd", "f", RecoveryOutcome.FAILED, attempts, 1.0, "", clock.now),
            key="k",
            **fields,  # type: ignore[arg-type]
        )

    runs = [ran(2)]
    assert budget_state(budget, 600, "k", runs, clock.now).allowed == 1
    runs.append(ran(1))
    state = budget_state(budget, 600, "k", runs, clock.now)
    assert (state.state, state.allowed) == ("open", 0)
    assert state.next_trial_at == clock.now + timedelta(seconds=600)
    assert budget_state(budget, 600, "k", runs, clock.advance(600)).state == "half-open"
    assert budget_state(budget, 600, "k", runs, clock.advance(1200)).state == "closed"
    assert budget_state(budget, 600, "other", runs, clock.now).allowed == 3


async def test_the_host_wide_cap_counts_every_action(
    store: SQLiteStore, clock: ManualClock, commands: RecordingRunner
) -> None:
    r = runner(store, clock, commands, max_per_hour=2)
    await run(r, clock, verifier(False))  # 2 attempts: the cap is the lower limit
    other = dataclasses.replace(BINDING, action=SystemdAction("restart", "y.service"))
    capped = await r.run(other, r.context(other, alert(clock, "beef")), verifier(True))
    assert capped.outcome is RecoveryOutcome.SKIPPED_BUDGET
    assert capped.detail == "host-wide cap reached (2 executions in the last hour)"
    assert len(commands.calls) == 2


async def test_a_flapping_alert_is_not_remediated(
    store: SQLiteStore, clock: ManualClock, commands: RecordingRunner
) -> None:
    fired = alert(clock)
    for _ in range(3):
        clock.advance(300)
        await store.record(
            CycleRecord([], [], [Transition(fired, TransitionKind.FIRED, clock.now)], []),
            clock.now,
        )
    result = await run(runner(store, clock, commands), clock)
    assert result.outcome is RecoveryOutcome.SKIPPED_FLAPPING
    assert result.detail == "the alert fired 3 times in 30 min 0 s"
    assert commands.calls == []


async def test_never_two_runs_at_once_on_the_same_target(
    store: SQLiteStore, clock: ManualClock, commands: RecordingRunner
) -> None:
    release, entered = asyncio.Event(), asyncio.Event()

    async def slow_verify() -> bool:
        entered.set()
        await release.wait()
        return True

    r = runner(store, clock, commands)
    first = asyncio.create_task(run(r, clock, slow_verify))
    await entered.wait()
    second = await run(r, clock)
    release.set()
    assert second.outcome is RecoveryOutcome.SKIPPED_BUSY
    assert (await first).outcome is RecoveryOutcome.SUCCEEDED
    assert len(commands.calls) == 1


async def test_a_failing_command_that_prints_its_secret_env_value_is_reported_masked(
    store: SQLiteStore, clock: ManualClock, tmp_path: Path
) -> None:
    marker = "Zq8-command-env-secret"
    script = tmp_path / "restart-api"
    script.write_text('#!/bin/sh\necho "login refused for key $API_KEY" >&2\nexit 1\n')
    script.chmod(0o755)
    config = load_config(
        {
            "OPSWATCH_STATE_PATH": str(tmp_path / "unused.sqlite3"),
            "OPSWATCH_RECOVERY_ALLOW": str(script),
            "OPSWATCH_RECOVERY_HTTP_DOWN": f"command:{script}",
            "OPSWATCH_RECOVERY_COMMAND_ENV": f"APP_ENV=prod,API_KEY={marker}",
        }
    )
    (binding,) = config.recovery.bindings
    recovery = RecoveryRunner(
        dataclasses.replace(config.recovery, bindings=(binding,)),
        store,
        clock=clock,
        policy=dataclasses.replace(POLICY, attempts=1),
        sleep=Sleeps(),
    )
    with structlog.testing.capture_logs() as logs:
        result = await recovery.run(binding, recovery.context(binding, alert(clock)), None)
    assert result.outcome is RecoveryOutcome.FAILED
    assert result.detail == "restart-api exited 1: login refused for key ***"
    assert [r.detail for r in await store.recovery_history()] == [result.detail]
    (finished,) = [e for e in logs if e["event"] == "recovery_finished"]
    assert finished["detail"] == result.detail
    assert marker not in repr(logs)
