"""The recovery contract: actions, the context they run in, and the command runner.

An action module owns one class with ``name`` (= module name = registry key = the word
before the first ``:`` of a binding such as ``systemd:restart:myapp.service``), a ``parse``
that validates the rest of the binding (raising :class:`~opswatch.config.ConfigError` naming
the variable), and one async ``run``. ``run`` raises :class:`RecoveryError` classified as
transient (worth another attempt) or permanent; it never retries on its own: the
:class:`~opswatch.recovery.runner.RecoveryRunner` decides, and then verifies.

Programs are started through a :class:`CommandRunner` (injected, so tests record argv
instead of restarting units). :class:`SubprocessRunner` is the real one: no shell, its own
process group, killed as a group on timeout, a clean environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, ClassVar, Protocol

import structlog

from opswatch.config import Env
from opswatch.model import Labels
from opswatch.redact import scrub

log = structlog.get_logger(__name__)

#: the environment of every program an action starts (never the daemon's own: it holds secrets)
BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
#: bytes of stdout/stderr kept from a program
OUTPUT_LIMIT = 64 * 1024
#: between SIGTERM and SIGKILL of a timed-out process group
_KILL_GRACE_S = 1.0


class RecoveryError(Exception):
    """An action failed. ``transient`` errors may succeed on another attempt (a unit that
    failed to start, a daemon socket that refused); permanent ones will not (no such unit,
    a program not allow-listed). The message must hold no secret."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str

    def tail(self, limit: int = 200) -> str:
        """The last line of stderr (else stdout), scrubbed of the configured secrets (a
        program may print its ``OPSWATCH_RECOVERY_COMMAND_ENV`` values) and then shortened
        (so that no part of a secret is left cut): for error messages."""
        for stream in (self.stderr, self.stdout):
            lines = [line for line in stream.strip().splitlines() if line.strip()]
            if lines:
                text = scrub(lines[-1].strip())
                return text if len(text) <= limit else text[: limit - 1] + "…"
        return ""


class CommandRunner(Protocol):
    """Starts a program (never through a shell) and waits for it, at most ``timeout`` s.
    Raises :class:`RecoveryError` when it cannot be started or timed out."""

    async def run(
        self,
        argv: Sequence[str],
        timeout: float,  # noqa: ASYNC109 - the runner enforces it itself, killing the group
        env: Mapping[str, str] | None = None,
        uid: int | None = None,
    ) -> CommandResult: ...


class SubprocessRunner:
    """The real :class:`CommandRunner`: ``asyncio.create_subprocess_exec`` in a new session
    (its own process group), stdin closed, ``env`` on top of :data:`BASE_ENV`, optionally as
    ``uid``. On timeout the whole group gets SIGTERM, then SIGKILL a second later."""

    async def run(
        self,
        argv: Sequence[str],
        timeout: float,  # noqa: ASYNC109
        env: Mapping[str, str] | None = None,
        uid: int | None = None,
    ) -> CommandResult:
        if not argv:
            raise RecoveryError("empty command", transient=False)
        environment = {**BASE_ENV, **(env or {})}
        user = None if uid is None or uid == os.geteuid() else uid
        # Output goes to unnamed temporary files, not pipes: a daemon started by the program
        # may keep its stdout open for ever, and a pipe would keep the run waiting for it.
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    env=environment,
                    start_new_session=True,
                    user=user,
                )
            except FileNotFoundError:
                raise RecoveryError(f"{argv[0]}: no such program", transient=False) from None
            except PermissionError:
                raise RecoveryError(f"{argv[0]}: permission denied", transient=False) from None
            except OSError as exc:
                raise RecoveryError(
                    f"{argv[0]}: cannot start: {exc.strerror}", transient=True
                ) from None
            try:
                async with asyncio.timeout(timeout):
                    exit_code = await process.wait()
            except TimeoutError:
                await _kill_group(process)
                raise RecoveryError(
                    f"{os.path.basename(argv[0])} timed out after {timeout:g}s", transient=True
                ) from None
            finally:
                if process.returncode is None:  # cancelled while waiting
                    await _kill_group(process)
            return CommandResult(exit_code, _read_limited(stdout), _read_limited(stderr))


def _read_limited(file: IO[bytes]) -> str:
    """The first :data:`OUTPUT_LIMIT` bytes written to ``file``, decoded."""
    file.seek(0)
    return file.read(OUTPUT_LIMIT).decode("utf-8", "replace")


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after a grace; reap the leader."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            async with asyncio.timeout(_KILL_GRACE_S):
                await process.wait()
            if sig == signal.SIGKILL:
                return
            # the leader is gone; make sure nothing it started lives on in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            return
        except TimeoutError:
            continue


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What one run of an action is about: the alert (or the operator's request) and the
    means to act. ``target`` is the alert's ``target`` label, else its check's instance
    name (``http:api`` -> ``api``), else empty."""

    rule: str
    target: str
    check: str = ""
    fingerprint: str = ""
    summary: str = ""
    labels: Labels = field(default_factory=dict)
    commands: CommandRunner = field(default_factory=SubprocessRunner)
    #: the runner's per-attempt timeout; actions that start programs pass it on
    timeout: float = 60.0

    def alert_env(self) -> dict[str, str]:
        """``OPSWATCH_ALERT_*`` variables describing the alert, for programs and webhooks."""
        return {
            "OPSWATCH_ALERT_RULE": self.rule,
            "OPSWATCH_ALERT_TARGET": self.target,
            "OPSWATCH_ALERT_CHECK": self.check,
            "OPSWATCH_ALERT_FINGERPRINT": self.fingerprint,
            "OPSWATCH_ALERT_SUMMARY": self.summary,
        }


class Action(Protocol):
    """One configured recovery action (frozen; safe to share between runs)."""

    name: ClassVar[str]
    #: what one attempt is called in "auto-recovered in 12 s after 1 restart"
    noun: ClassVar[str]

    @classmethod
    def parse(cls, variable: str, args: str, env: Env) -> Action:
        """Validate ``args`` (the binding after ``<name>:``); ConfigError names ``variable``."""
        ...

    def target(self, ctx: ActionContext) -> str:
        """What this run acts on (a unit, a container, a database): the lock and budget key."""
        ...

    def plan(self, ctx: ActionContext) -> str:
        """What :meth:`run` would do, in one line (dry-run and logs); no secret."""
        ...

    async def run(self, ctx: ActionContext) -> str:
        """Act once; return a one-line detail. Raises :class:`RecoveryError`."""
        ...

    def describe(self) -> dict[str, str]:
        """The binding as plain data for ``check-config`` and the API: no secret."""
        ...


def plural(count: int, noun: str) -> str:
    """``1 restart``, ``3 restarts``, ``2 processes``."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}es" if noun.endswith("s") else f"{count} {noun}s"
