"""``command``: run an allow-listed program (no shell), e.g. a service's restart script.

Binding: ``command:<absolute program> [args...]`` (split like a shell would, with ``shlex``,
but never run by one), e.g. ``OPSWATCH_RECOVERY_HTTP_DOWN_API=command:/usr/local/bin/restart-api
--graceful``. The program must be listed in ``OPSWATCH_RECOVERY_ALLOW`` (comma-separated
absolute paths); that is checked at start-up, and before each run the program must still
resolve to the file an allow-listed path resolved to at start-up (a link swapped since is
refused).

The program runs in its own process group under the runner's per-attempt timeout (the group
is killed when it expires), optionally as ``OPSWATCH_RECOVERY_COMMAND_UID`` (a user name or
number; needs root), with a clean environment: ``PATH``, ``LANG``, the ``OPSWATCH_ALERT_*``
variables (rule, target, check, fingerprint, summary) and ``OPSWATCH_RECOVERY_COMMAND_ENV``
(``KEY=VALUE`` pairs, comma-separated). Exit status 0 is success; anything else is a
transient failure. A script that starts a daemon must detach it from its stdout/stderr.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.recovery.base import ActionContext, RecoveryError

ALLOW_VAR = f"{PREFIX}RECOVERY_ALLOW"
UID_VAR = f"{PREFIX}RECOVERY_COMMAND_UID"
ENV_VAR = f"{PREFIX}RECOVERY_COMMAND_ENV"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def allowed_programs(env: Env) -> tuple[str, ...]:
    """``OPSWATCH_RECOVERY_ALLOW``: absolute, normalised program paths."""
    raw = env.raw(ALLOW_VAR) or ""
    programs = tuple(item.strip() for item in raw.split(",") if item.strip())
    for program in programs:
        if not os.path.isabs(program):
            raise ConfigError(ALLOW_VAR, f"expected absolute program paths, got {program!r}")
    return tuple(os.path.normpath(p) for p in programs)


@dataclass(frozen=True, slots=True)
class CommandAction:
    name: ClassVar[str] = "command"
    noun: ClassVar[str] = "command run"

    argv: tuple[str, ...]
    #: the allow-listed programs as resolved at start-up
    allow: frozenset[str]
    uid: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, variable: str, args: str, env: Env) -> CommandAction:
        try:
            argv = tuple(shlex.split(args))
        except ValueError as exc:
            raise ConfigError(variable, f"cannot split the command: {exc}") from None
        if not argv or not os.path.isabs(argv[0]):
            raise ConfigError(variable, "expected command:<absolute program path> [args...]")
        allow = allowed_programs(env)
        if os.path.normpath(argv[0]) not in allow:
            raise ConfigError(
                variable, f"{argv[0]} is not listed in {ALLOW_VAR} (absolute program paths)"
            )
        resolved = frozenset(os.path.realpath(p) for p in allow)
        return cls(argv, resolved, _uid(env), _environment(env))

    def target(self, ctx: ActionContext) -> str:
        """The command and the alert's target: a rule-wide binding runs one script for
        every target (telling it which in ``OPSWATCH_ALERT_TARGET``), and each target keeps
        its own lock and budget."""
        joined = shlex.join(self.argv)
        return f"{joined} @{ctx.target}" if ctx.target else joined

    def plan(self, ctx: ActionContext) -> str:
        del ctx
        user = "" if self.uid is None else f" as uid {self.uid}"
        return f"run {shlex.join(self.argv)}{user}"

    async def run(self, ctx: ActionContext) -> str:
        if not await asyncio.to_thread(_still_allowed, self.argv[0], self.allow):
            raise RecoveryError(f"{self.argv[0]} resolves outside {ALLOW_VAR}", transient=False)
        environment = {**ctx.alert_env(), **self.env}
        result = await ctx.commands.run(self.argv, ctx.timeout, env=environment, uid=self.uid)
        name = os.path.basename(self.argv[0])
        if result.exit_code == 0:
            return f"{name} exited 0"
        reason = result.tail()
        raise RecoveryError(
            f"{name} exited {result.exit_code}" + (f": {reason}" if reason else ""),
            transient=True,
        )

    def describe(self) -> dict[str, str]:
        described = {"action": self.name, "argv": shlex.join(self.argv)}
        if self.uid is not None:
            described["uid"] = str(self.uid)
        if self.env:
            described["env"] = ",".join(sorted(self.env))  # names only: values may be secret
        return described


def _still_allowed(program: str, allow: frozenset[str]) -> bool:
    """Whether ``program`` still resolves to a program allowed at start-up."""
    return os.path.realpath(program) in allow


def _uid(env: Env) -> int | None:
    value = env.raw(UID_VAR)
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise ConfigError(UID_VAR, f"no such user: {value!r}") from None


def _environment(env: Env) -> dict[str, str]:
    secret = env.secret(ENV_VAR)
    if secret is None:
        return {}
    pairs: dict[str, str] = {}
    for item in secret.reveal().split(","):
        key, sep, value = item.strip().partition("=")
        if not item.strip():
            continue
        if not sep or not _ENV_NAME.match(key):
            raise ConfigError(ENV_VAR, "expected KEY=VALUE pairs, comma-separated")
        pairs[key] = value
    return pairs
