"""The built-in rule pack: one declarative spec per rule, each tunable from the environment.

For a rule ``cpu_high`` and a level ``warning``:

* ``OPSWATCH_RULE_CPU_HIGH_WARNING``: the threshold, or ``off`` to drop the level (a rule
  with every level off is dropped);
* ``OPSWATCH_RULE_CPU_HIGH_WARNING_CLEAR``: the hysteresis threshold (``off``: none). When
  only the threshold is overridden, the clear keeps its default distance from it;
* ``OPSWATCH_RULE_CPU_HIGH_FOR`` (a duration such as ``5m``) or
  ``OPSWATCH_RULE_CPU_HIGH_FOR_CYCLES`` (a count of runs): how long a breach must last.
  Durations become runs as ``max(1, ceil(seconds / interval))``.

Adding a rule is adding one :class:`RuleSpec` line to :data:`BUILTIN`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Severity
from opswatch.rules.base import Rule
from opswatch.rules.threshold import Level, Op, ThresholdRule

W, C = Severity.WARNING, Severity.CRITICAL


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """The default shape of one threshold rule. ``for_cycles``, when set, is a fixed count of
    runs and takes precedence over ``for_seconds``."""

    name: str
    metric: str
    op: Op
    levels: tuple[Level, ...]
    summary: str
    for_seconds: float = 0.0
    for_cycles: int | None = None


# fmt: off
BUILTIN: tuple[RuleSpec, ...] = (
    RuleSpec("cpu_high", "host.cpu_percent", ">", (Level(W, 80, 70), Level(C, 95, 90)),
             "CPU usage is {value:.1f}% (threshold {threshold:g}%)", for_seconds=600),
    RuleSpec("memory_high", "host.memory_percent", ">", (Level(W, 85, 80), Level(C, 95, 92)),
             "memory usage is {value:.1f}% (threshold {threshold:g}%)", for_seconds=300),
    RuleSpec("swap_high", "host.swap_percent", ">", (Level(W, 80),),
             "swap usage is {value:.1f}% (threshold {threshold:g}%)", for_seconds=600),
    RuleSpec("load_high", "host.load5_per_core", ">", (Level(W, 2), Level(C, 4)),
             "5-minute load is {value:.2f} per core (threshold {threshold:g})", for_seconds=600),
    RuleSpec("disk_full", "host.disk_used_percent", ">", (Level(W, 85, 82), Level(C, 90, 88)),
             "disk {mountpoint} is {value:.1f}% full (threshold {threshold:g}%)"),
    RuleSpec("inodes_full", "host.inodes_used_percent", ">", (Level(C, 90, 88),),
             "inodes on {mountpoint} are {value:.1f}% used (threshold {threshold:g}%)"),
    RuleSpec("http_down", "http.up", "<", (Level(C, 1, 1),),
             "{check} is down", for_cycles=2),
    RuleSpec("http_slow", "http.latency_seconds", ">", (Level(W, 5),),
             "{check} answered in {value:.2f}s (threshold {threshold:g}s)", for_cycles=2),
    RuleSpec("tls_expiry", "http.tls_days_left", "<", (Level(W, 14), Level(C, 3)),
             "{check} TLS certificate expires in {value:.0f} days (threshold {threshold:g})"),
)
# fmt: on


def cycles_for(seconds: float, interval: float) -> int:
    """Runs needed to cover ``seconds`` at ``interval``: ``max(1, ceil(seconds / interval))``
    (rounded first so that 1.1 s at 0.1 s is 11 runs, not 12)."""
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    return max(1, math.ceil(round(seconds / interval, 9)))


def builtin_rules(env: Env, interval: float, specs: Sequence[RuleSpec] = BUILTIN) -> list[Rule]:
    """The rules of ``specs`` with the environment's overrides applied, for runs every
    ``interval`` seconds. Raises :class:`ConfigError` naming the offending variable."""
    rules: list[Rule] = []
    for spec in specs:
        rule = _rule(env, interval, spec)
        if rule is not None:
            rules.append(rule)
    return rules


def _rule(env: Env, interval: float, spec: RuleSpec) -> ThresholdRule | None:
    base = f"{PREFIX}RULE_{spec.name.upper()}"
    maybe = (_level(env, f"{base}_{d.severity.upper()}", spec.op, d) for d in spec.levels)
    levels = tuple(level for level in maybe if level is not None)
    for_cycles = _for_cycles(env, base, interval, spec)
    if not levels:
        return None
    return ThresholdRule(
        name=spec.name,
        metric=spec.metric,
        op=spec.op,
        levels=levels,
        summary=spec.summary,
        for_cycles=for_cycles,
    )


def _level(env: Env, variable: str, op: Op, default: Level) -> Level | None:
    clear_variable = f"{variable}_CLEAR"
    threshold = env.optional_number(variable, default.threshold)
    # the clear keeps its default distance from an overridden threshold
    clear_default = None if threshold is None else threshold + default.release - default.threshold
    clear = env.optional_number(clear_variable, clear_default)
    if threshold is None:
        return None
    if clear is None:  # "off": no hysteresis
        clear = threshold
    if (op == ">" and clear > threshold) or (op == "<" and clear < threshold):
        blamed = clear_variable if env.raw(clear_variable) is not None else variable
        side = "above" if op == ">" else "below"
        raise ConfigError(
            blamed,
            f"the clear threshold {clear:g} is {side} the alert threshold {threshold:g} "
            f"(for a '{op}' rule it must be {'at most' if op == '>' else 'at least'} it)",
        )
    return Level(default.severity, threshold, clear)


def _for_cycles(env: Env, base: str, interval: float, spec: RuleSpec) -> int:
    for_variable, cycles_variable = f"{base}_FOR", f"{base}_FOR_CYCLES"
    if env.raw(for_variable) is not None and env.raw(cycles_variable) is not None:
        raise ConfigError(cycles_variable, f"set either {for_variable} or {cycles_variable}")
    if env.raw(cycles_variable) is not None:
        return env.integer(cycles_variable, 1, minimum=1)
    if env.raw(for_variable) is not None:
        return cycles_for(env.duration(for_variable, 0.0, minimum=0.0), interval)
    if spec.for_cycles is not None:
        return spec.for_cycles
    return cycles_for(spec.for_seconds, interval)
