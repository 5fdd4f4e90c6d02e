"""The severity ladder: an alert nobody acknowledges climbs in severity with time.

``OPSWATCH_LADDER="warning>critical:30m, critical>emergency:2h"`` (every rule) and
``OPSWATCH_LADDER_<RULE>`` (one rule, replacing the global ladder for it; ``none``: no
ladder): an alert that has been firing at ``warning`` for 30 minutes, unacknowledged and not
muted, becomes ``critical`` (a CLIMBED transition, routed by its new severity), and two hours
later ``emergency``. The time counts runs of its check only while the alert is firing, not
acknowledged and not muted (a silence, a window: the muter says so), so an ack freezes it
and muted time does not count; it is stored with the alert (``Alert.ladder_s``), so a
restart keeps the time already climbed. A gap between two runs longer than :attr:`gap_s`
(the daemon was down) counts as that long only.

Distinct from the one-step raise after a failed recovery (ESCALATED): a climbed alert keeps
its severity against findings at or below it (``Alert.climbed``) until it resolves, like an
escalated one, and each new severity starts its own step from zero.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Alert, Severity

LADDER_VAR = f"{PREFIX}LADDER"
_RULE_PREFIX = f"{LADDER_VAR}_"
_NONE = "none"
_STEP = re.compile(r"^\s*([a-z]+)\s*>\s*([a-z]+)\s*:\s*(\S+)\s*$", re.IGNORECASE)
_SEVERITIES = ", ".join(s.value for s in Severity)


@dataclass(frozen=True, slots=True)
class Step:
    """``source>target:after``: ``after_s`` seconds at ``source`` climb to ``target``."""

    source: Severity
    target: Severity
    after_s: float
    text: str


Steps = tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Ladder:
    """The global steps and each rule's own; :attr:`gap_s` caps what one run can count."""

    default: Steps = ()
    rules: Mapping[str, Steps] = field(default_factory=dict)
    gap_s: float = 60.0

    def __bool__(self) -> bool:
        return bool(self.default) or any(self.rules.values())

    def step(self, alert: Alert) -> Step | None:
        """The step ``alert`` is on now (``None``: its severity climbs no further)."""
        steps = self.rules.get(alert.rule, self.default)
        return next((s for s in steps if s.source is alert.severity), None)

    @classmethod
    def from_env(
        cls, env: Env, variables: Iterable[str], rule_names: Iterable[str], interval_s: float
    ) -> Ladder:
        """``variables``: every variable name in the environment (per-rule ladders are found
        by name); ``rule_names``: the rules that exist."""
        rules = {r.upper(): r for r in rule_names}
        own: dict[str, Steps] = {}
        for variable in sorted(v for v in variables if v.startswith(_RULE_PREFIX)):
            rule = rules.get(variable[len(_RULE_PREFIX) :])
            if rule is None:
                raise ConfigError(
                    variable, "names no rule: per-rule ladders are OPSWATCH_LADDER_<RULE>"
                )
            value = env.raw(variable)
            if value is not None:
                own[rule] = parse_steps(variable, value)
        text = env.raw(LADDER_VAR)
        default = () if text is None else parse_steps(LADDER_VAR, text)
        return cls(default, own, gap_s=2 * interval_s)

    def describe(self) -> dict[str, Any]:
        return {
            "default": [s.text for s in self.default],
            "rules": {rule: [s.text for s in steps] for rule, steps in sorted(self.rules.items())},
        }


def parse_steps(variable: str, text: str) -> Steps:
    """``warning>critical:30m, critical>emergency:2h`` (or ``none``) as steps."""
    if text.strip().lower() == _NONE:
        return ()
    steps: list[Step] = []
    for item in (i for i in text.split(",") if i.strip()):
        match = _STEP.match(item)
        if match is None:
            raise ConfigError(
                variable,
                "expected FROM>TO:DURATION items such as warning>critical:30m, "
                f"got {item.strip()!r}",
            )
        source, target = (_severity(variable, match.group(n)) for n in (1, 2))
        if target.rank <= source.rank:
            raise ConfigError(
                variable, f"{item.strip()!r} does not climb: {target} is not above {source}"
            )
        if any(s.source is source for s in steps):
            raise ConfigError(variable, f"two steps climb from {source}")
        after = Env({variable: match.group(3)}).duration(variable, 0.0, minimum=1.0)
        steps.append(Step(source, target, after, f"{source}>{target}:{match.group(3)}"))
    if not steps:
        raise ConfigError(variable, "expected FROM>TO:DURATION items, or none")
    return tuple(steps)


def _severity(variable: str, name: str) -> Severity:
    try:
        return Severity(name.lower())
    except ValueError:
        raise ConfigError(
            variable, f"unknown severity {name!r}; expected one of {_SEVERITIES}"
        ) from None
