"""``process``: terminate a runaway process, then kill it if it ignores that.

Binding: ``process:name:<exact name>``, ``process:cmdline:<regex>`` (searched in the command
line joined by spaces) or ``process:pidfile:<absolute path>``, e.g.
``OPSWATCH_RECOVERY_CPU_HIGH=process:cmdline:report-builder``. Every matching process gets
SIGTERM; those still alive after ``OPSWATCH_RECOVERY_PROCESS_GRACE`` (default 10s) get
SIGKILL. opswatch itself, its parent and pid 1 never match; more than
``OPSWATCH_RECOVERY_PROCESS_MAX`` (default 5) matches is refused (a pattern that broad is a
mistake). No match is not an error: the process may have exited; verification decides.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from typing import ClassVar, Literal

import psutil

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.recovery.base import ActionContext, RecoveryError, plural

GRACE_VAR = f"{PREFIX}RECOVERY_PROCESS_GRACE"
MAX_VAR = f"{PREFIX}RECOVERY_PROCESS_MAX"
MatchKind = Literal["name", "cmdline", "pidfile"]
_KILL_WAIT_S = 2.0
_POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class ProcessAction:
    name: ClassVar[str] = "process"
    noun: ClassVar[str] = "kill"

    kind: MatchKind
    pattern: str
    grace: float = 10.0
    max_matches: int = 5

    @classmethod
    def parse(cls, variable: str, args: str, env: Env) -> ProcessAction:
        kind, sep, pattern = args.partition(":")
        if not sep or not pattern:
            raise ConfigError(
                variable,
                "expected process:name:<name>, process:cmdline:<regex> or "
                "process:pidfile:<absolute path>",
            )
        if kind == "cmdline":
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(variable, f"bad regular expression: {exc}") from None
        elif kind == "pidfile":
            if not os.path.isabs(pattern):
                raise ConfigError(variable, f"expected an absolute pidfile path, got {pattern!r}")
        elif kind != "name":
            raise ConfigError(variable, f"unknown process matcher {kind!r}")
        return cls(
            kind,  # type: ignore[arg-type]  # checked above
            pattern,
            env.duration(GRACE_VAR, 10.0, minimum=0.0),
            env.integer(MAX_VAR, 5, minimum=1),
        )

    def target(self, ctx: ActionContext) -> str:
        del ctx
        return f"{self.kind}:{self.pattern}"

    def plan(self, ctx: ActionContext) -> str:
        pids = sorted(p.pid for p in self._matches())
        return (
            f"terminate processes matching {self.target(ctx)} (now pids "
            f"{', '.join(map(str, pids)) or 'none'}), kill after {self.grace:g}s"
        )

    async def run(self, ctx: ActionContext) -> str:
        del ctx
        return await asyncio.to_thread(self._terminate)

    def describe(self) -> dict[str, str]:
        return {
            "action": self.name,
            "match": f"{self.kind}:{self.pattern}",
            "grace": f"{self.grace:g}s",
            "max": str(self.max_matches),
        }

    def _matches(self) -> list[psutil.Process]:
        protected = {os.getpid(), os.getppid(), 1}
        if self.kind == "pidfile":
            pid = _read_pidfile(self.pattern)
            if pid is None or pid in protected:
                return []
            try:
                return [psutil.Process(pid)]
            except psutil.NoSuchProcess:
                return []
        regex = re.compile(self.pattern) if self.kind == "cmdline" else None
        found: list[psutil.Process] = []
        for process in psutil.process_iter(["name", "cmdline"]):
            if process.pid in protected:
                continue
            if regex is None:
                matched = process.info["name"] == self.pattern
            else:
                matched = regex.search(" ".join(process.info["cmdline"] or ())) is not None
            if matched:
                found.append(process)
        return found

    def _terminate(self) -> str:
        matched = self._matches()
        if not matched:
            return f"no process matches {self.kind}:{self.pattern}"
        if len(matched) > self.max_matches:
            raise RecoveryError(
                f"{len(matched)} processes match {self.kind}:{self.pattern}, more than "
                f"{MAX_VAR}={self.max_matches}: refusing",
                transient=False,
            )
        for process in matched:
            _signal(process, "terminate")
        alive = _wait_gone(matched, self.grace)
        for process in alive:
            _signal(process, "kill")
        survivors = _wait_gone(alive, _KILL_WAIT_S)
        if survivors:
            pids = ", ".join(str(p.pid) for p in survivors)
            raise RecoveryError(f"processes {pids} survived SIGKILL", transient=True)
        terminated = len(matched) - len(alive)
        detail = f"{plural(terminated, 'process')} terminated"
        return detail + (f", {len(alive)} killed after {self.grace:g}s" if alive else "")


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Blocking: the processes still running after at most ``timeout`` s. A zombie counts as
    gone (it is dead; reaping it is its parent's business)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in processes if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(_POLL_S)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(process: psutil.Process, how: Literal["terminate", "kill"]) -> None:
    try:
        process.terminate() if how == "terminate" else process.kill()
    except psutil.NoSuchProcess:
        pass
    except psutil.AccessDenied:
        raise RecoveryError(f"not allowed to signal pid {process.pid}", transient=False) from None


def _read_pidfile(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read(64).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None
