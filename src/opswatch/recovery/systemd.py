"""``systemd``: start, stop or restart a unit with ``systemctl``.

Binding: ``systemd:<restart|start|stop>:<unit>``, e.g.
``OPSWATCH_RECOVERY_HTTP_DOWN=systemd:restart:myapp.service``. ``systemctl`` waits for the
job to finish, so a unit that fails to start is a (transient) error here, and verification
then tells whether the service answers again. Exit status 4 or 5 (no such unit) is permanent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from opswatch.config import ConfigError, Env
from opswatch.recovery.base import ActionContext, RecoveryError

VERBS = ("restart", "start", "stop")
#: systemd unit names: letters, digits and ``:-_.\@``; never starting with ``-`` (an option)
_UNIT = re.compile(r"^[A-Za-z0-9:_.\\@][A-Za-z0-9:_.\\@-]*$")
#: systemctl exit statuses meaning the unit does not exist (LSB 4 and 5)
_NO_SUCH_UNIT = {4, 5}


@dataclass(frozen=True, slots=True)
class SystemdAction:
    name: ClassVar[str] = "systemd"
    noun: ClassVar[str] = "restart"

    verb: str
    unit: str

    @classmethod
    def parse(cls, variable: str, args: str, env: Env) -> SystemdAction:
        del env
        verb, sep, unit = args.partition(":")
        if not sep or verb not in VERBS:
            raise ConfigError(
                variable, f"expected systemd:<{'|'.join(VERBS)}>:<unit>, got systemd:{args}"
            )
        if not _UNIT.match(unit) or len(unit) > 256:
            raise ConfigError(variable, f"not a systemd unit name: {unit!r}")
        return cls(verb, unit)

    @property
    def argv(self) -> list[str]:
        return ["systemctl", self.verb, self.unit]

    def target(self, ctx: ActionContext) -> str:
        del ctx
        return self.unit

    def plan(self, ctx: ActionContext) -> str:
        del ctx
        return " ".join(self.argv)

    async def run(self, ctx: ActionContext) -> str:
        result = await ctx.commands.run(self.argv, ctx.timeout)
        if result.exit_code == 0:
            return f"systemctl {self.verb} {self.unit}: done"
        reason = result.tail() or f"exit status {result.exit_code}"
        raise RecoveryError(
            f"systemctl {self.verb} {self.unit} failed: {reason}",
            transient=result.exit_code not in _NO_SUCH_UNIT,
        )

    def describe(self) -> dict[str, str]:
        return {"action": self.name, "verb": self.verb, "unit": self.unit}
