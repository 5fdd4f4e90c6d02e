"""Recovery test helpers: a recording command runner and a real child HTTP service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from opswatch.recovery.base import CommandResult
from tests.conftest import free_port, port_open

START_SERVICE = str(Path(__file__).with_name("start_service.py"))


@dataclass
class Call:
    argv: list[str]
    timeout: float
    env: Mapping[str, str] | None
    uid: int | None


@dataclass
class RecordingRunner:
    """An injected CommandRunner: records each call and answers from ``results``."""

    results: list[CommandResult] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    async def run(
        self,
        argv: Sequence[str],
        timeout: float,  # noqa: ASYNC109
        env: Mapping[str, str] | None = None,
        uid: int | None = None,
    ) -> CommandResult:
        self.calls.append(Call(list(argv), timeout, env, uid))
        return self.results.pop(0) if self.results else CommandResult(0, "", "")


@pytest.fixture
def commands() -> RecordingRunner:
    return RecordingRunner()


@dataclass
class ChildService:
    """A real HTTP service in a child process (``python -m http.server``), started by the
    same script a ``command`` recovery action runs, killed by the test."""

    port: int
    pidfile: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def start_argv(self) -> list[str]:
        return [sys.executable, START_SERVICE, str(self.port), str(self.pidfile)]

    def start(self) -> None:
        subprocess.run(self.start_argv, check=True, timeout=15)

    def kill(self) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pidfile.unlink(missing_ok=True)

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None

    def up(self) -> bool:
        return port_open("127.0.0.1", self.port)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ChildService]:
    child = ChildService(free_port(), tmp_path / "service.pid")
    yield child
    child.kill()
