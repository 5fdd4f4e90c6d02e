"""The real command runner: no shell, a clean environment, the process group killed on
timeout; and the small shared helpers."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import psutil
import pytest

from opswatch import redact
from opswatch.config import Secret
from opswatch.recovery.base import CommandResult, RecoveryError, SubprocessRunner, plural


async def test_runs_argv_without_a_shell_and_captures_output() -> None:
    result = await SubprocessRunner().run(["/bin/echo", "$HOME", "a;b"], timeout=5)
    assert result == CommandResult(0, "$HOME a;b\n", "")


async def test_passes_a_clean_environment_plus_the_given_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPSWATCH_SECRET_OF_THE_DAEMON", "hunter2")
    result = await SubprocessRunner().run(["/usr/bin/env"], timeout=5, env={"EXTRA": "1"})
    lines = set(result.stdout.splitlines())
    assert "EXTRA=1" in lines
    assert not any("hunter2" in line for line in lines)
    assert any(line.startswith("PATH=") for line in lines)


async def test_reports_the_exit_status_and_the_last_line_of_stderr() -> None:
    result = await SubprocessRunner().run(
        [sys.executable, "-c", "import sys; print('one', file=sys.stderr); "
         "print('the reason', file=sys.stderr); sys.exit(3)"],
        timeout=5,
    )  # fmt: skip
    assert result.exit_code == 3
    assert result.tail() == "the reason"


async def test_kills_the_whole_process_group_on_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(RecoveryError, match="timed out after 1s") as raised:
        await SubprocessRunner().run([sys.executable, "-c", script], timeout=1)
    assert raised.value.transient
    assert await _dies(int(pidfile.read_text()))


async def _dies(pid: int) -> bool:
    """Whether ``pid`` is gone within 2 s (a SIGKILL is delivered asynchronously)."""
    async with asyncio.timeout(2):
        while not _gone(pid):  # noqa: ASYNC110 - nothing to await: not our child
            await asyncio.sleep(0.01)
    return True


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_program_that_does_not_exist_is_a_permanent_error() -> None:
    with pytest.raises(RecoveryError, match="no such program") as raised:
        await SubprocessRunner().run(["/nonexistent/restart-it"], timeout=5)
    assert not raised.value.transient


async def test_a_child_left_holding_stdout_does_not_hang_the_run() -> None:
    script = "import subprocess, sys; subprocess.Popen(['sleep', '30']); print('started')"
    result = await SubprocessRunner().run([sys.executable, "-c", script], timeout=5)
    assert result.exit_code == 0
    for process in psutil.process_iter(["cmdline"]):
        if process.info["cmdline"] == ["sleep", "30"] and process.ppid() in (1, os.getpid()):
            process.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_runs_as_the_given_uid() -> None:
    result = await SubprocessRunner().run(["/usr/bin/id", "-u"], timeout=5, uid=65534)
    assert result.stdout.strip() == "65534"


def test_plural_words_counts() -> None:
    assert plural(1, "restart") == "1 restart"
    assert plural(3, "restart") == "3 restarts"
    assert plural(2, "process") == "2 processes"


def test_the_tail_is_scrubbed_before_it_is_shortened() -> None:
    secret = "Vb3-secret-at-the-cut"
    redact.register([Secret(secret)])
    line = "x" * 190 + secret
    result = CommandResult(1, "", f"first line\n{line}\n")
    assert result.tail() == "x" * 190 + "***"
    assert result.tail(limit=100) == "x" * 99 + "…"
