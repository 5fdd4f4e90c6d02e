"""The whole daemon with recovery: a real child HTTP service is killed and restarted by a
``command`` action; one that never comes back is escalated and then budgeted, across a
restart; quiet self-healing; the API and the CLI. Checks are driven by hand (``run_check``),
recoveries awaited (``wait_for_recoveries``), verification never sleeps."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from tenacity import wait_none

from opswatch.alerts.silences import parse_matcher
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import (
    AlertState,
    Notification,
    RecoveryOutcome,
    Severity,
    Transition,
    TransitionKind,
    utcnow,
)
from opswatch.recovery.base import CommandResult
from opswatch.recovery.runner import RecoveryPolicy
from tests.peers import Receiver
from tests.recovery.conftest import ChildService, RecordingRunner

POLICY = RecoveryPolicy(attempts=3, total_seconds=60, wait=wait_none(), attempt_timeout=15)
CHECK = "http:api"
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


async def no_sleep(seconds: float) -> None:
    del seconds


class _Hook:
    """The webhook channel every test App notifies (so that outbox rows exist to read)."""

    receiver: Receiver | None = None

    @property
    def url(self) -> str:
        assert self.receiver is not None
        return self.receiver.url


HOOK = _Hook()


@pytest.fixture(autouse=True)
async def hook() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    HOOK.receiver = receiver
    yield receiver
    HOOK.receiver = None
    await receiver.stop()


def environ(state: Path, url: str, **extra: str) -> dict[str, str]:
    return {
        "OPSWATCH_CHECKS": "http",
        "OPSWATCH_HTTP_TARGETS": f"api={url}",
        "OPSWATCH_HTTP_TIMEOUT": "1s",
        "OPSWATCH_STATE_PATH": str(state),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        "OPSWATCH_WEBHOOK_URL": HOOK.url + "/hook",
        "OPSWATCH_SHUTDOWN_GRACE": "2s",
        "OPSWATCH_RECOVERY_VERIFY_FOR": "4s",
        **extra,
    }


def app(env: Mapping[str, str], commands: RecordingRunner | None = None) -> App:
    return App(
        load_config(env),
        recovery_policy=POLICY,
        recovery_sleep=no_sleep,
        command_runner=commands,
    )


async def fire(daemon: App) -> Transition:
    """Two runs with the target down: http_down fires on the second."""
    assert await daemon.cycle.run(CHECK) == []
    [fired] = await daemon.cycle.run(CHECK)
    assert fired.kind is TransitionKind.FIRED
    return fired


async def notifications(daemon: App) -> list[Notification]:
    """What the outbox holds, oldest first (the outbox is not running in these tests)."""
    return [item.notification for item in await daemon.store.outbox_due(FOREVER, 1000)]


def kinds(items: Sequence[Notification]) -> list[list[str]]:
    return [[t.kind.value for t in n.transitions] for n in items]


async def test_a_killed_service_is_restarted_by_a_command_and_resolves_as_auto_recovered(
    service: ChildService, tmp_path: Path
) -> None:
    service.start()
    env = environ(
        tmp_path / "s.sqlite3",
        service.url,
        OPSWATCH_RECOVERY_HTTP_DOWN="command:" + " ".join(service.start_argv),
        OPSWATCH_RECOVERY_ALLOW=sys.executable,
    )
    daemon = app(env)
    await daemon.open()
    try:
        assert await daemon.cycle.run(CHECK) == []
        service.kill()
        fired = await fire(daemon)
        assert fired.evidence[0].startswith("captured ")
        assert any("top processes by CPU" in line for line in fired.evidence)
        alert = daemon.tracker.get(fired.alert.fingerprint)
        assert alert is not None
        assert alert.state is AlertState.REMEDIATING
        await daemon.remediation.wait()

        assert service.up()
        assert daemon.tracker.active() == []
        (run,) = await daemon.store.recovery_history(10)
        assert (run.outcome, run.attempts, run.action) == (
            RecoveryOutcome.SUCCEEDED,
            1,
            "command",
        )
        history = await daemon.store.history(10)
        assert [t.kind for t in history] == [TransitionKind.RESOLVED, TransitionKind.FIRED]
        assert history[0].previous_state is AlertState.REMEDIATING
        sent = await notifications(daemon)
        assert kinds(sent) == [["fired"], ["resolved"]]
        assert "evidence:" in sent[0].text
        assert "auto-recovered in " in sent[1].text
        assert "after 1 command run" in sent[1].text
        assert await daemon.store.evidence(fired.alert.fingerprint)
        exposition = (await daemon.metrics.render()).decode()
        assert 'opswatch_recovery_total{action="command",outcome="succeeded"} 1.0' in exposition
    finally:
        await daemon.stop()


async def test_a_service_that_never_comes_back_escalates_then_the_budget_blocks_across_a_restart(
    service: ChildService, tmp_path: Path
) -> None:
    service.start()
    env = environ(
        tmp_path / "s.sqlite3",
        service.url,
        OPSWATCH_RECOVERY_HTTP_DOWN="command:/bin/true",
        OPSWATCH_RECOVERY_ALLOW="/bin/true",
    )
    first = app(env)
    await first.open()
    try:
        service.kill()
        fired = await fire(first)
        await first.remediation.wait()
        (run,) = await first.store.recovery_history(10)
        assert (run.outcome, run.attempts) == (RecoveryOutcome.FAILED, 3)
        assert "http_down still finds 4 s after the command run" in run.detail
        [escalated, _] = await first.store.history(10)
        assert escalated.kind is TransitionKind.ESCALATED
        assert escalated.alert.severity is Severity.EMERGENCY
        sent = await notifications(first)
        assert kinds(sent) == [["fired"], ["escalated"]]
        assert sent[1].severity is Severity.EMERGENCY
        assert "actions: recovery failed: http_down still finds 4 s" in sent[1].text
        # still down and critical: the escalated severity is kept, nothing is notified
        assert await first.cycle.run(CHECK) == []
    finally:
        await first.stop()

    second = app(env)  # a restart: the same state file
    await second.open()
    try:
        assert await second.cycle.run(CHECK) == []  # still escalated, still quiet
        service.start()
        [resolved] = await second.cycle.run(CHECK)
        assert resolved.kind is TransitionKind.RESOLVED
        service.kill()
        await fire(second)
        await second.remediation.wait()
        blocked, _ = await second.store.recovery_history(10)
        assert blocked.outcome is RecoveryOutcome.SKIPPED_BUDGET
        assert blocked.attempts == 0
        [escalated, *_] = await second.store.history(10)
        assert escalated.kind is TransitionKind.ESCALATED
        last = (await notifications(second))[-1]
        assert kinds([last]) == [["escalated"]]
        assert (
            "actions: recovery skipped: budget: budget of command:/bin/true @api exhausted "
            "(3 of 3/30m used)" in last.text
        )
    finally:
        await second.stop()
    assert fired.alert.fingerprint == escalated.alert.fingerprint


class Restarter(RecordingRunner):
    """The injected runner of a ``command`` binding: "restarting" brings the local peer back
    (or, with ``fix=False``, does nothing)."""

    def __init__(self, target: Receiver, *, fix: bool = True) -> None:
        super().__init__()
        self.target, self.fix = target, fix

    async def run(
        self,
        argv: Sequence[str],
        timeout: float,  # noqa: ASYNC109
        env: Mapping[str, str] | None = None,
        uid: int | None = None,
    ) -> CommandResult:
        result = await super().run(argv, timeout, env, uid)
        if self.fix:
            await self.target.start()
        return result


@pytest.fixture
async def target() -> AsyncIterator[Receiver]:
    peer = Receiver()
    await peer.start()
    yield peer
    await peer.stop()


def quiet_env(tmp_path: Path, target: Receiver, **extra: str) -> dict[str, str]:
    return environ(
        tmp_path / "s.sqlite3",
        target.url,
        OPSWATCH_RECOVERY_HTTP_DOWN_API="command:/usr/local/bin/restart-api",
        OPSWATCH_RECOVERY_ALLOW="/usr/local/bin/restart-api",
        OPSWATCH_RECOVERY_NOTIFY="on_failure",
        **extra,
    )


async def test_quiet_self_healing_notifies_nothing_when_recovery_works(
    target: Receiver, tmp_path: Path
) -> None:
    commands = Restarter(target)
    daemon = app(quiet_env(tmp_path, target), commands)
    await daemon.open()
    try:
        await target.stop()
        await fire(daemon)
        await daemon.remediation.wait()
        assert [c.argv for c in commands.calls] == [["/usr/local/bin/restart-api"]]
        assert commands.calls[0].env is not None
        assert commands.calls[0].env["OPSWATCH_ALERT_TARGET"] == "api"
        assert await notifications(daemon) == []
        kinds_seen = [t.kind for t in await daemon.store.history(10)]
        assert kinds_seen == [TransitionKind.RESOLVED, TransitionKind.FIRED]
    finally:
        await daemon.stop()


async def test_quiet_self_healing_still_notifies_a_failure(
    target: Receiver, tmp_path: Path
) -> None:
    commands = Restarter(target, fix=False)
    daemon = app(quiet_env(tmp_path, target), commands)
    await daemon.open()
    try:
        await target.stop()
        await fire(daemon)
        await daemon.remediation.wait()
        assert len(commands.calls) == 3
        sent = await notifications(daemon)
        assert kinds(sent) == [["escalated"]]
        assert sent[0].severity is Severity.EMERGENCY
        assert "recovery failed: http_down still finds" in sent[0].text
    finally:
        await daemon.stop()


async def test_quiet_self_healing_releases_the_held_alert_when_recovery_is_skipped(
    target: Receiver, tmp_path: Path
) -> None:
    commands = Restarter(target)
    daemon = app(quiet_env(tmp_path, target, OPSWATCH_RECOVERY_DRY_RUN="1"), commands)
    await daemon.open()
    try:
        await target.stop()
        fired = await fire(daemon)
        await daemon.remediation.wait()
        assert commands.calls == []
        sent = await notifications(daemon)
        assert kinds(sent) == [["fired"]]
        assert "recovery skipped: dry-run: would run /usr/local/bin/restart-api" in sent[0].text
        alert = daemon.tracker.get(fired.alert.fingerprint)
        assert alert is not None
        assert alert.state is AlertState.FIRING
    finally:
        await daemon.stop()


async def test_a_recovery_cut_short_by_a_stop_is_escalated_at_the_next_start(
    target: Receiver, tmp_path: Path
) -> None:
    class Hanging(RecordingRunner):
        async def run(
            self,
            argv: Sequence[str],
            timeout: float,  # noqa: ASYNC109
            env: Mapping[str, str] | None = None,
            uid: int | None = None,
        ) -> CommandResult:
            await super().run(argv, timeout, env, uid)
            raise TimeoutError  # stands in for "still running" until cancelled below

    env = quiet_env(tmp_path, target)
    first = app(env, Hanging())
    await first.open()
    await target.stop()
    await fire(first)
    await first.stop()  # cancels the recovery: the alert is stored REMEDIATING

    second = app(env)
    await second.open()
    try:
        [escalated, *_] = await second.store.history(10)
        assert escalated.kind is TransitionKind.ESCALATED
        last = (await notifications(second))[-1]
        assert kinds([last]) == [["escalated"]]
        assert "actions: recovery interrupted: opswatch stopped while it ran" in last.text
    finally:
        await second.stop()


async def test_the_run_endpoint_needs_the_bearer_token_and_is_absent_without_one(
    target: Receiver, tmp_path: Path
) -> None:
    commands = Restarter(target)
    for token in (None, "s3cret-token"):
        extra = {} if token is None else {"OPSWATCH_API_TOKEN": token}
        daemon = app(quiet_env(tmp_path, target, **extra), commands)
        await daemon.open()
        await daemon.api.start()
        base = f"http://127.0.0.1:{daemon.api.port}/api/v1/recovery"
        try:
            async with aiohttp.ClientSession() as http:
                run = f"{base}/http_down:api/run"
                body = {"dry_run": True}
                async with http.post(run, json=body) as response:
                    assert response.status == (404 if token is None else 401)
                if token is None:
                    continue
                async with http.post(run, json=body, headers=_bearer("wrong")) as response:
                    assert response.status == 403
                async with http.post(run, json=body, headers=_bearer(token)) as response:
                    assert response.status == 200
                    result = await response.json()
                assert result["outcome"] == "skipped: dry-run"
                assert result["detail"] == "would run /usr/local/bin/restart-api"
                async with http.post(
                    f"{base}/nope/run", json=body, headers=_bearer(token)
                ) as response:
                    assert response.status == 404
                async with http.get(f"{base}/actions") as response:
                    actions = await response.json()
                (binding,) = actions["bindings"]
                assert binding["id"] == "http_down:api"
                assert binding["budget"]["left"] == 3
                assert binding["budget"]["state"] == "closed"
                async with http.get(f"{base}/history") as response:
                    runs = (await response.json())["runs"]
                assert [r["outcome"] for r in runs] == ["skipped: dry-run"]
                assert commands.calls == []
        finally:
            await daemon.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_recover_command_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "restart-api"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
        **environ(
            tmp_path / "s.sqlite3",
            "http://127.0.0.1:9/",
            OPSWATCH_WEBHOOK_URL="http://127.0.0.1:9/hook",
            OPSWATCH_RECOVERY_HTTP_DOWN=f"command:{script} --now",
            OPSWATCH_RECOVERY_ALLOW=str(script),
        ),
    }

    def recover(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "opswatch.daemon.cli", "recover", *args]
        return subprocess.run(
            command, check=False, env=env, capture_output=True, text=True, timeout=60
        )

    dry = recover("http_down", "--target", "api", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith(f"skipped: dry-run: would run {script} --now")
    assert not marker.exists()
    real = recover("http_down")  # for real; no alert is active, so it is not verified
    assert real.returncode == 0, real.stderr
    assert real.stdout.startswith("succeeded: restart-api exited 0 (not verified")
    assert marker.exists()
    assert recover("disk_full").returncode == 2


async def test_an_operator_run_for_an_escalated_alert_is_verified_and_resolves_it(
    target: Receiver, tmp_path: Path
) -> None:
    class SecondTimeLucky(Restarter):
        async def run(
            self,
            argv: Sequence[str],
            timeout: float,  # noqa: ASYNC109
            env: Mapping[str, str] | None = None,
            uid: int | None = None,
        ) -> CommandResult:
            self.fix = bool(self.calls)
            return await super().run(argv, timeout, env, uid)

    commands = SecondTimeLucky(target)
    env = quiet_env(tmp_path, target, OPSWATCH_API_TOKEN="t0k")
    daemon = App(
        load_config(env),
        recovery_policy=dataclasses.replace(POLICY, attempts=1),
        recovery_sleep=no_sleep,
        command_runner=commands,
    )
    await daemon.open()
    await daemon.api.start()
    try:
        await target.stop()
        fired = await fire(daemon)
        await daemon.remediation.wait()
        alert = daemon.tracker.get(fired.alert.fingerprint)
        assert alert is not None
        assert alert.escalated
        url = f"http://127.0.0.1:{daemon.api.port}/api/v1/recovery/http_down:api/run"
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, headers=_bearer("t0k")) as response,
        ):
            assert response.status == 200
            result = await response.json()
        assert result["outcome"] == "succeeded"
        assert result["detail"] == "restart-api exited 0; verified"
        assert daemon.tracker.active() == []
        last = (await notifications(daemon))[-1]
        assert kinds([last]) == [["resolved"]]
        assert "actions: auto-recovered in " in last.text
    finally:
        await daemon.stop()


class _MuteAll:
    """A muter that mutes every alert (silences plug into the same stage)."""

    def muted(self, alert: object, now: datetime) -> bool:
        del alert, now
        return True

    def muting(self, alert: object, now: datetime) -> list[str]:
        del alert, now
        return ["every alert"]


async def test_a_muted_alert_is_neither_notified_nor_remediated(
    target: Receiver, tmp_path: Path
) -> None:
    commands = Restarter(target)
    env = environ(
        tmp_path / "s.sqlite3",
        target.url,
        OPSWATCH_RECOVERY_HTTP_DOWN_API="command:/usr/local/bin/restart-api",
        OPSWATCH_RECOVERY_ALLOW="/usr/local/bin/restart-api",
        OPSWATCH_API_TOKEN="t0k",
    )
    daemon = app(env, commands)
    daemon.book.pipeline = dataclasses.replace(daemon.book.pipeline, muter=_MuteAll())
    await daemon.open()
    await daemon.api.start()
    try:
        await target.stop()
        fired = await fire(daemon)
        await daemon.remediation.wait()
        assert commands.calls == []
        assert await notifications(daemon) == []
        alert = daemon.tracker.get(fired.alert.fingerprint)
        assert alert is not None
        assert alert.state is AlertState.FIRING
        url = f"http://127.0.0.1:{daemon.api.port}/api/v1/recovery/http_down:api/run"
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, headers=_bearer("t0k")) as response,
        ):
            assert response.status == 200
            result = await response.json()
        assert (result["outcome"], result["detail"]) == (
            "skipped: silenced",
            "the alert is muted: every alert",  # the muter's reason
        )
        assert commands.calls == []
        (run,) = await daemon.store.recovery_history(10)
        assert run.outcome is RecoveryOutcome.SKIPPED_SILENCED
    finally:
        await daemon.stop()


async def test_a_silenced_alert_is_remediated_only_once_its_silence_is_expired(
    target: Receiver, tmp_path: Path
) -> None:
    commands = Restarter(target)
    env = environ(
        tmp_path / "s.sqlite3",
        target.url,
        OPSWATCH_RECOVERY_HTTP_DOWN_API="command:/usr/local/bin/restart-api",
        OPSWATCH_RECOVERY_ALLOW="/usr/local/bin/restart-api",
    )
    daemon = app(env, commands)
    await daemon.open()
    try:
        silence = await daemon.silences.create(
            [parse_matcher("rule=http_down")], utcnow() + timedelta(hours=1), "ana", "deploy"
        )
        await target.stop()
        await fire(daemon)
        await daemon.remediation.wait()
        assert commands.calls == []
        assert await notifications(daemon) == []

        await daemon.silences.expire(silence, by="ana")
        [again] = await daemon.cycle.run(CHECK)
        assert (again.kind, again.note) == (
            TransitionKind.FIRED,
            "its firing was silenced until now",
        )
        await daemon.remediation.wait()
        assert len(commands.calls) == 1
        assert kinds(await notifications(daemon))[0] == ["fired"]
    finally:
        await daemon.stop()
