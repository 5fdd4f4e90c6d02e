"""Recovery configuration: which action fixes which rule, and the safety limits.

Bindings are ``OPSWATCH_RECOVERY_<RULE>=<action>:<args>`` (every target of the rule) and
``OPSWATCH_RECOVERY_<RULE>_<TARGET>=<action>:<args>`` (one target: the alert's ``target``
label, upper-cased with ``-`` as ``_``; a per-target binding wins over the rule's). The rule
is the longest known rule name the variable starts with, so ``OPSWATCH_RECOVERY_HTTP_DOWN_API``
is rule ``http_down``, target ``api``. A name of :data:`RESERVED` is a setting, never a
binding; any other ``OPSWATCH_RECOVERY_*`` that names no rule fails start-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.recovery import ACTIONS
from opswatch.recovery.base import Action

RECOVERY_PREFIX = f"{PREFIX}RECOVERY_"
NOTIFY_MODES = ("immediately", "on_failure")
#: ``OPSWATCH_RECOVERY_<NAME>`` settings (not bindings); the plugin settings are read by
#: their actions (see each module) and reserved here so that they never parse as bindings
RESERVED = frozenset(
    {
        "ALLOW",
        "ATTEMPTS",
        "BUDGET",
        "COMMAND_ENV",
        "COMMAND_ENV_FILE",
        "COMMAND_UID",
        "COOLDOWN",
        "DOCKER_SOCKET",
        "DRY_RUN",
        "EVIDENCE",
        "FILES_DIRS",
        "FLAP_COUNT",
        "FLAP_WINDOW",
        "MAX_PER_HOUR",
        "NOTIFY",
        "PROCESS_GRACE",
        "PROCESS_MAX",
        "TIMEOUT",
        "TOTAL_TIMEOUT",
        "VERIFY_EVERY",
        "VERIFY_FOR",
        "WEBHOOK_URL",
        "WEBHOOK_URL_FILE",
    }
)
_BUDGET = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


def target_key(target: str) -> str:
    """A target name as it appears in variable names: ``my-api`` -> ``MY_API``."""
    return target.upper().replace("-", "_")


@dataclass(frozen=True, slots=True)
class Budget:
    """At most ``runs`` action executions per ``window_s`` for one (action, target)."""

    runs: int = 3
    window_s: float = 1800.0
    text: str = "3/30m"

    @classmethod
    def parse(cls, variable: str, text: str) -> Budget:
        match = _BUDGET.match(text)
        if match is None or int(match.group(1)) < 1:
            raise ConfigError(variable, f"expected RUNS/WINDOW such as 3/30m, got {text!r}")
        window = Env({variable: match.group(2)}).duration(variable, 0.0, minimum=1.0)
        return cls(int(match.group(1)), window, text.strip())


@dataclass(frozen=True, slots=True)
class Binding:
    """One ``OPSWATCH_RECOVERY_<RULE>[_<TARGET>]`` variable, parsed."""

    rule: str
    #: upper-case variable form of the target (``MY_API``), or None for every target
    target: str | None
    variable: str
    action: Action

    @property
    def id(self) -> str:
        """``http_down`` or ``http_down:my_api`` (API paths and the CLI)."""
        return self.rule if self.target is None else f"{self.rule}:{self.target.lower()}"

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "target": None if self.target is None else self.target.lower(),
            "variable": self.variable,
            **self.action.describe(),
        }


@dataclass(frozen=True, slots=True)
class RecoverySettings:
    bindings: tuple[Binding, ...] = ()
    dry_run: bool = False
    notify: str = "immediately"
    budget: Budget = field(default_factory=Budget)
    #: after the budget ran out, one trial run is allowed this long after the last run
    cooldown_s: float = 600.0
    max_per_hour: int = 10
    attempts: int = 3
    attempt_timeout_s: float = 60.0
    total_timeout_s: float = 600.0
    verify_every_s: float = 2.0
    verify_for_s: float = 30.0
    flap_count: int = 3
    flap_window_s: float = 1800.0
    evidence: bool = True

    @classmethod
    def from_env(
        cls, env: Env, variables: Iterable[str], rule_names: Iterable[str]
    ) -> RecoverySettings:
        """``variables``: every variable name in the environment (bindings are found by
        name); ``rule_names``: the rules that exist."""
        p = RECOVERY_PREFIX
        verify_every = env.duration(f"{p}VERIFY_EVERY", 2.0, minimum=0.1)
        verify_for = env.duration(f"{p}VERIFY_FOR", 30.0, minimum=0.0)
        budget_text = env.raw(f"{p}BUDGET")
        return cls(
            bindings=parse_bindings(env, variables, rule_names),
            dry_run=env.boolean(f"{p}DRY_RUN", False),
            notify=env.choice(f"{p}NOTIFY", "immediately", NOTIFY_MODES),
            budget=Budget() if budget_text is None else Budget.parse(f"{p}BUDGET", budget_text),
            cooldown_s=env.duration(f"{p}COOLDOWN", 600.0, minimum=0.0),
            max_per_hour=env.integer(f"{p}MAX_PER_HOUR", 10, minimum=0),
            attempts=env.integer(f"{p}ATTEMPTS", 3, minimum=1, maximum=20),
            attempt_timeout_s=env.duration(f"{p}TIMEOUT", 60.0, minimum=0.1),
            total_timeout_s=env.duration(f"{p}TOTAL_TIMEOUT", 600.0, minimum=1.0),
            verify_every_s=verify_every,
            verify_for_s=verify_for,
            flap_count=env.integer(f"{p}FLAP_COUNT", 3, minimum=1),
            flap_window_s=env.duration(f"{p}FLAP_WINDOW", 1800.0, minimum=0.0),
            evidence=env.boolean(f"{p}EVIDENCE", True),
        )

    def binding_for(self, rule: str, target: str) -> Binding | None:
        """The per-target binding of (rule, target), else the rule's, else None."""
        key = target_key(target) if target else None
        fallback = None
        for binding in self.bindings:
            if binding.rule != rule:
                continue
            if binding.target is None:
                fallback = binding
            elif binding.target == key:
                return binding
        return fallback

    def binding(self, binding_id: str) -> Binding | None:
        return next((b for b in self.bindings if b.id == binding_id.lower()), None)

    def describe(self) -> dict[str, Any]:
        return {
            "bindings": [b.describe() for b in self.bindings],
            "dry_run": self.dry_run,
            "notify": self.notify,
            "budget": self.budget.text,
            "cooldown_s": self.cooldown_s,
            "max_per_hour": self.max_per_hour,
            "attempts": self.attempts,
            "attempt_timeout_s": self.attempt_timeout_s,
            "total_timeout_s": self.total_timeout_s,
            "verify_every_s": self.verify_every_s,
            "verify_for_s": self.verify_for_s,
            "flap": f"{self.flap_count} fires in {self.flap_window_s:g}s",
            "evidence": self.evidence,
        }


def parse_bindings(
    env: Env, variables: Iterable[str], rule_names: Iterable[str]
) -> tuple[Binding, ...]:
    rules = sorted({r.upper() for r in rule_names}, key=len, reverse=True)
    bindings: list[Binding] = []
    for variable in sorted(v for v in variables if v.startswith(RECOVERY_PREFIX)):
        suffix = variable[len(RECOVERY_PREFIX) :]
        if suffix in RESERVED:
            continue
        value = env.raw(variable)
        if value is None:
            continue
        rule = next((r for r in rules if suffix == r or suffix.startswith(r + "_")), None)
        if rule is None:
            raise ConfigError(
                variable,
                "names no rule: recovery bindings are OPSWATCH_RECOVERY_<RULE>[_<TARGET>]",
            )
        target = suffix[len(rule) + 1 :] or None
        name, _, args = value.partition(":")
        action_class = ACTIONS.get(name.strip().lower())
        if action_class is None:
            raise ConfigError(
                variable,
                f"unknown recovery action {name!r}; expected one of {', '.join(sorted(ACTIONS))}",
            )
        action = action_class.parse(variable, args.strip(), env)
        bindings.append(Binding(rule.lower(), target, variable, action))
    return tuple(bindings)
