"""Each action against the real thing it acts on (or a stand-in at the process boundary:
the injected runner for systemctl, a local server on a unix socket for the Docker engine)."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from opswatch.config import Env
from opswatch.recovery.base import ActionContext, CommandResult, RecoveryError
from opswatch.recovery.command import CommandAction
from opswatch.recovery.docker import DockerAction
from opswatch.recovery.process import ProcessAction
from opswatch.recovery.systemd import SystemdAction
from opswatch.recovery.webhook import WebhookAction
from tests.peers import Receiver
from tests.recovery.conftest import RecordingRunner

VAR = "OPSWATCH_RECOVERY_HTTP_DOWN"


def context(commands: RecordingRunner | None = None) -> ActionContext:
    ctx = ActionContext(rule="http_down", target="api", check="http:api", fingerprint="f00d")
    return ctx if commands is None else dataclasses.replace(ctx, commands=commands)


# -- systemd ---------------------------------------------------------------------------------


async def test_systemd_restart_runs_systemctl_with_exactly_that_argv(
    commands: RecordingRunner,
) -> None:
    action = SystemdAction.parse(VAR, "restart:x.service", Env({}))
    detail = await action.run(context(commands))
    assert [call.argv for call in commands.calls] == [["systemctl", "restart", "x.service"]]
    assert detail == "systemctl restart x.service: done"
    assert action.plan(context()) == "systemctl restart x.service"


async def test_systemd_a_unit_that_fails_to_start_is_transient_and_a_missing_one_permanent(
    commands: RecordingRunner,
) -> None:
    action = SystemdAction("restart", "x.service")
    commands.results = [
        CommandResult(1, "", "Job for x.service failed because the control process exited."),
        CommandResult(5, "", "Failed to restart x.service: Unit x.service not found."),
    ]
    with pytest.raises(RecoveryError, match="control process exited") as failed:
        await action.run(context(commands))
    assert failed.value.transient
    with pytest.raises(RecoveryError, match="not found") as missing:
        await action.run(context(commands))
    assert not missing.value.transient


# -- docker ----------------------------------------------------------------------------------


@pytest.fixture
async def engine() -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in for the Docker engine on a unix socket: 204 for container ``api``, 404
    otherwise. (A short directory: unix socket paths are limited to 107 bytes.)"""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path_qs}")
        if request.match_info["id"] == "api":
            return web.Response(status=204)
        return web.json_response({"message": "No such container: nope"}, status=404)

    app = web.Application()
    app.router.add_post("/containers/{id}/{verb}", handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        path = os.path.join(directory, "docker.sock")
        await web.UnixSite(runner, path).start()
        yield path, seen
        await runner.cleanup()


async def test_docker_restart_posts_to_the_engine_socket(engine: tuple[str, list[str]]) -> None:
    socket, seen = engine
    action = DockerAction.parse(
        VAR, "restart:api", Env({"OPSWATCH_RECOVERY_DOCKER_SOCKET": socket})
    )
    assert await action.run(context()) == "docker restart api: done"
    assert seen == ["POST /containers/api/restart?t=10"]


async def test_docker_a_missing_container_is_permanent_and_no_engine_transient(
    engine: tuple[str, list[str]], tmp_path: Path
) -> None:
    socket, _ = engine
    with pytest.raises(RecoveryError, match="HTTP 404: No such container") as missing:
        await DockerAction("restart", "nope", socket).run(context())
    assert not missing.value.transient
    with pytest.raises(RecoveryError, match="cannot reach the Docker engine") as absent:
        await DockerAction("restart", "api", str(tmp_path / "none.sock")).run(context())
    assert absent.value.transient


# -- command ---------------------------------------------------------------------------------


async def test_command_runs_the_allowed_program_with_the_alert_in_its_environment(
    tmp_path: Path,
) -> None:
    out = tmp_path / "env.txt"
    script = tmp_path / "restart-api"
    script.write_text(f"#!/bin/sh\nenv > {out}\necho restarted\n")
    script.chmod(0o755)
    env = Env(
        {
            "OPSWATCH_RECOVERY_ALLOW": f"/bin/true,{script}",
            "OPSWATCH_RECOVERY_COMMAND_ENV": "APP_ENV=prod",
        }
    )
    action = CommandAction.parse(VAR, f"{script} --graceful", env)
    assert await action.run(context()) == "restart-api exited 0"
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert seen["OPSWATCH_ALERT_RULE"] == "http_down"
    assert seen["OPSWATCH_ALERT_TARGET"] == "api"
    assert seen["APP_ENV"] == "prod"


async def test_command_refuses_a_program_swapped_for_a_link_outside_the_allow_list(
    tmp_path: Path,
) -> None:
    program = tmp_path / "restart-api"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    action = CommandAction.parse(VAR, str(program), Env({"OPSWATCH_RECOVERY_ALLOW": str(program)}))
    program.unlink()
    program.symlink_to("/bin/false")
    with pytest.raises(RecoveryError, match="resolves outside") as raised:
        await action.run(context())
    assert not raised.value.transient


async def test_command_a_nonzero_exit_is_a_transient_failure_with_its_reason() -> None:
    action = CommandAction.parse(VAR, "/bin/false", Env({"OPSWATCH_RECOVERY_ALLOW": "/bin/false"}))
    with pytest.raises(RecoveryError, match="false exited 1") as raised:
        await action.run(context())
    assert raised.value.transient


# -- process ---------------------------------------------------------------------------------


SPAWN = """
import subprocess, sys
code = "import signal, time\\n"
if sys.argv[2] == "stubborn":
    code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
code += "print('ready', flush=True)\\ntime.sleep(60)\\n"
victim = subprocess.Popen([sys.executable, "-c", code, sys.argv[1]], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, start_new_session=True)
victim.stdout.readline()
print(victim.pid)
"""


def _spawn(marker: str, *, ignore_term: bool = False) -> int:
    """A process that is not ours (its parent exits at once), as a runaway would be; its
    SIGTERM handler is in place when this returns its pid."""
    import subprocess

    mode = "stubborn" if ignore_term else "polite"
    out = subprocess.run(
        [sys.executable, "-c", SPAWN, marker, mode], capture_output=True, check=True, timeout=10
    )
    return int(out.stdout)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_process_terminates_a_runaway_and_kills_one_that_ignores_sigterm() -> None:
    marker = f"opswatch-test-runaway-{uuid.uuid4().hex}"
    polite = _spawn(f"{marker}-1")
    stubborn = _spawn(f"{marker}-2", ignore_term=True)
    action = ProcessAction("cmdline", rf"{marker}-\d", grace=0.3)
    detail = await action.run(context())
    assert detail == "1 process terminated, 1 killed after 0.3s"
    assert _gone(polite)
    assert _gone(stubborn)


async def test_process_refuses_a_pattern_that_matches_too_many() -> None:
    marker = f"opswatch-test-many-{uuid.uuid4().hex}"
    spawned = [_spawn(f"{marker}-{i}") for i in range(3)]
    try:
        with pytest.raises(RecoveryError, match="3 processes match") as raised:
            await ProcessAction("cmdline", marker, max_matches=2).run(context())
        assert not raised.value.transient
        assert not any(_gone(pid) for pid in spawned)
    finally:
        for pid in spawned:
            os.kill(pid, signal.SIGKILL)


async def test_process_never_matches_opswatch_itself() -> None:
    me = psutil.Process().name()
    action = ProcessAction("name", me, max_matches=1000)
    assert os.getpid() not in {p.pid for p in action._matches()}


# -- webhook ---------------------------------------------------------------------------------


async def test_webhook_posts_the_alert_and_never_shows_its_secret_url() -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        url = f"{receiver.url}/api/job/SECRET/run"
        action = WebhookAction.parse(VAR, url, Env({}))
        detail = await action.run(context())
        (request,) = receiver.requests
        assert request.path == "/api/job/SECRET/run"
        assert request.body["rule"] == "http_down"
        assert request.body["target"] == "api"
        assert "SECRET" not in detail + str(action.describe()) + action.plan(context())
        receiver.script(503)
        with pytest.raises(RecoveryError) as raised:
            await action.run(context())
        assert raised.value.transient
        assert "SECRET" not in str(raised.value)
    finally:
        await receiver.stop()
