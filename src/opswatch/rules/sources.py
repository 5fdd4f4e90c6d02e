"""Where user rules come from: ``OPSWATCH_RULE_<NAME>`` variables and ``OPSWATCH_RULES_FILE``.

* ``OPSWATCH_RULE_ORDERS_DEEP='rabbitmq.messages_ready{queue=~"orders.*"} > 1000 for 5m'``
  defines the rule ``orders_deep`` (see :mod:`opswatch.rules.expr` for the language). The
  built-in threshold variables (``OPSWATCH_RULE_CPU_HIGH_WARNING``, ``..._CLEAR``, ``_FOR``,
  ``_FOR_CYCLES``) keep their meaning and are never read as rules, nor is a variable whose value
is a number, a duration or ``off`` (a misspelt threshold variable: reported as unknown).
* ``OPSWATCH_RULES_FILE``: a TOML file of ``name = 'expression'`` entries (comments with
  ``#``; a ``'''...'''`` string may span lines).

A user rule with a built-in's name replaces it. A rule whose selector is a built-in rule's
name instead of a metric, with levels but no comparison (``disk_full{mountpoint="/data"}
warning=95``), narrows that built-in: the new rule takes the matching series with its own
levels (and may add ``for``, ``labels``, ``summary``...), and the built-in leaves them alone.
Every error names the variable (or the file and line) and the column.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from opswatch.config import PREFIX, ConfigError, Env, read_config_file
from opswatch.model import Severity
from opswatch.rules.base import AnyRule, Rule
from opswatch.rules.expr import ExprError, LevelExpr, Operand, RuleExpr, Selector, parse
from opswatch.rules.query import ExprRule
from opswatch.rules.threshold import ThresholdRule

RULE_PREFIX = f"{PREFIX}RULE_"
FILE_VAR = f"{PREFIX}RULES_FILE"
BUILTIN_ORIGIN = "built-in"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: a value that is a threshold setting (a number, a duration, off), never a rule
_SETTING = re.compile(
    r"^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|s|m|h|d)?|off|none|disabled)$", re.I
)
_TUNING = tuple(f"_{s.value.upper()}" for s in Severity)


@dataclass(frozen=True, slots=True)
class UserRule:
    """One rule's text and where it came from (a variable, or ``file, line N``)."""

    name: str
    text: str
    origin: str
    #: 1-based line and column of the text's first character in its file (1, 1 for a variable)
    line: int = 1
    column: int = 1

    def error(self, exc: ExprError) -> ConfigError:
        if self.origin.startswith(RULE_PREFIX):
            return ConfigError(self.origin, str(exc))
        lines = self.text[: max(exc.column - 1, 0)].split("\n")
        line = self.line + len(lines) - 1
        column = (self.column if len(lines) == 1 else 1) + len(lines[-1])
        path = self.origin.rsplit(", line", 1)[0]
        return ConfigError(FILE_VAR, f"{path}, line {line}, column {column}: {exc.problem}")


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every rule in evaluation order and, by name, where each came from."""

    rules: tuple[AnyRule, ...]
    origins: dict[str, str]


def user_rules(
    env: Env,
    names: Iterable[str],
    builtins: Sequence[Rule],
    interval: float,
    tunable: Iterable[str],
) -> RuleSet:
    """The built-ins with the user's rules applied. ``names`` are the environment's names;
    ``tunable`` the built-in rule names whose threshold variables are not rules."""
    tuning = {name.upper() for name in tunable}
    found = [*_from_variables(env, names, tuning), *_from_file(env)]
    seen: dict[str, str] = {}
    for entry in found:
        if entry.name in seen:
            raise ConfigError(
                entry.origin if entry.origin.startswith(RULE_PREFIX) else FILE_VAR,
                f"rule {entry.name!r} is defined twice ({seen[entry.name]} and {entry.origin})",
            )
        seen[entry.name] = entry.origin
    by_name = {rule.name: rule for rule in builtins}
    parsed: list[tuple[UserRule, ExprRule]] = []
    narrowed: dict[str, list[ExprRule]] = {}
    for user in found:
        try:
            expr = parse(user.text)
            base = _narrowed(expr, by_name)
            if base is not None:
                if base.name in seen:
                    raise ExprError(1, f"{base.name} is replaced by a user rule: narrow that one")
                rule = ExprRule(user.name, _narrowing(expr, base, interval))
                narrowed.setdefault(base.name, []).append(rule)
            else:
                rule = ExprRule(user.name, expr)
        except ExprError as exc:
            raise user.error(exc) from None
        parsed.append((user, rule))
    rules: list[AnyRule] = []
    origins: dict[str, str] = {}
    replacing = {rule.name: (user, rule) for user, rule in parsed}
    for builtin in builtins:
        if builtin.name in replacing:
            user, replaced = replacing.pop(builtin.name)
            rules.append(replaced)
            origins[builtin.name] = f"{user.origin} (replaces the built-in)"
            continue
        narrowing = narrowed.get(builtin.name)
        if narrowing and isinstance(builtin, ThresholdRule):
            unless = tuple(rule.expr.left.selector.matchers for rule in narrowing)
            rules.append(replace(builtin, unless=unless))
        else:
            rules.append(builtin)
        origins[builtin.name] = BUILTIN_ORIGIN
    for user, added in replacing.values():
        rules.append(added)
        origins[added.name] = user.origin
    return RuleSet(tuple(rules), origins)


def _from_variables(env: Env, names: Iterable[str], tuning: set[str]) -> list[UserRule]:
    rules: list[UserRule] = []
    for variable in sorted(names):
        if not variable.startswith(RULE_PREFIX) or _is_tuning(variable, tuning):
            continue
        text = env.peek(variable)
        if text is None or _SETTING.match(text):
            continue  # a number or "off": a misspelt threshold variable, reported as unknown
        env.raw(variable)
        name = variable.removeprefix(RULE_PREFIX).lower()
        if not _NAME.match(name):
            raise ConfigError(variable, f"a rule name must be snake_case, got {name!r}")
        rules.append(UserRule(name, text, variable))
    return rules


def _is_tuning(variable: str, tuning: set[str]) -> bool:
    """Whether ``variable`` is a built-in's threshold variable (``..._CPU_HIGH_WARNING``)."""
    rest = variable.removeprefix(RULE_PREFIX)
    for suffix in ("_CLEAR", "_FOR_CYCLES", "_FOR"):
        if rest.endswith(suffix) and rest.removesuffix(suffix) in tuning | _levelled(tuning):
            return True
    return any(rest.endswith(level) and rest.removesuffix(level) in tuning for level in _TUNING)


def _levelled(tuning: set[str]) -> set[str]:
    return {f"{name}{level}" for name in tuning for level in _TUNING}


def _from_file(env: Env) -> list[UserRule]:
    path = env.raw(FILE_VAR)
    if path is None:
        return []
    text = read_config_file(FILE_VAR, path)
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(FILE_VAR, f"{path}: {exc}") from None
    lines = text.split("\n")
    rules: list[UserRule] = []
    for name, value in table.items():
        key_line, line, column = _position(lines, name)
        where = f"{path}, line {key_line}"
        if not isinstance(value, str):
            raise ConfigError(FILE_VAR, f"{where}: {name} must be a rule expression in quotes")
        if not _NAME.match(name):
            raise ConfigError(FILE_VAR, f"{where}: a rule name must be snake_case, got {name!r}")
        rules.append(UserRule(name, value, where, line, column))
    return rules


def _position(lines: list[str], name: str) -> tuple[int, int, int]:
    """The line of ``name = ...``, and the line and column of the value's first character."""
    key = re.compile(
        rf"""^\s*(?:{re.escape(name)}|"{re.escape(name)}"|'{re.escape(name)}')\s*=\s*"""
    )
    for number, line in enumerate(lines, start=1):
        match = key.match(line)
        if match is not None:
            rest = line[match.end() :]
            if rest[:3] in ('"""', "'''"):
                if not rest[3:].strip():  # the newline after the quotes is not in the string
                    return number, number + 1, 1
                return number, number, match.end() + 4
            return number, number, match.end() + 2
    return 1, 1, 1


def _narrowed(expr: RuleExpr, builtins: dict[str, Rule]) -> Rule | None:
    """The built-in ``expr`` narrows, if it names one (a selector without a dot, no op)."""
    metric = expr.left.selector.metric
    if "." in metric or expr.absent or expr.op is not None or expr.right is not None:
        return None
    base = builtins.get(metric)
    if base is None or not isinstance(base, ThresholdRule):
        known = ", ".join(sorted(builtins))
        raise ExprError(
            1, f"{metric!r} is neither a metric (kind.name) nor a built-in rule ({known})"
        )
    if expr.left.function != "value" or expr.left.aggregation is not None:
        raise ExprError(1, f"narrowing {metric} takes only label matchers and levels")
    if not expr.left.selector.matchers:
        raise ExprError(1, f'narrowing {metric} needs label matchers, e.g. {{mountpoint="/data"}}')
    return base


def _narrowing(expr: RuleExpr, base: Rule, interval: float) -> RuleExpr:
    """``expr`` with the built-in's metric, comparison, summary and ``for`` filled in; a level
    without a clear keeps the built-in's distance from its threshold."""
    assert isinstance(base, ThresholdRule)
    defaults = {level.severity: level for level in base.levels}
    levels = []
    for level in expr.levels:
        clear = level.clear
        default = defaults.get(level.severity)
        if clear is None and default is not None:
            clear = level.threshold + default.release - default.threshold
        levels.append(LevelExpr(level.severity, level.threshold, clear))
    return replace(
        expr,
        left=Operand(Selector(base.metric, expr.left.selector.matchers)),
        op=base.op,
        levels=tuple(levels),
        for_seconds=expr.for_seconds or (base.for_cycles - 1) * interval,
        summary=expr.summary if expr.summary is not None else base.summary,
    )


def matches_nothing(rules: Iterable[AnyRule], kinds: Iterable[str]) -> list[tuple[str, str]]:
    """``(rule, metric)`` for each user rule metric whose kind (``rabbitmq`` of
    ``rabbitmq.messages_ready``) no configured collector has."""
    produced = set(kinds)
    return [
        (rule.name, metric)
        for rule in rules
        if isinstance(rule, ExprRule)
        for metric in rule.metrics
        if metric.split(".", 1)[0] not in produced
    ]
