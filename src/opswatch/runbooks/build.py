"""The runbook of one rule: its four sections built from the configuration and a snapshot of
the state. Pure: the same configuration, :class:`LiveState` and ``now`` give the same
:class:`Runbook` (:mod:`opswatch.runbooks.source` reads the snapshot).

* **Meaning**: the rule's wording, what it checks (levels, clear thresholds, ``for``), where it
  comes from and the targets it covers (the configured checks of its metrics' kinds, masked);
* **Impact**: the wording and what fires now;
* **Diagnosis**: where to look first, the rule's last transitions, the last evidence snapshot
  and safe commands for each target (:mod:`opswatch.runbooks.commands`);
* **Mitigation**: the usual fixes, the recovery binding with its budget and recent success
  rate, and how to silence the alert while working on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from opswatch.collectors.base import Collector
from opswatch.config import Settings
from opswatch.model import Alert, BudgetState, RecoveryOutcome, RecoveryResult, Transition
from opswatch.notifiers.render import format_duration, format_value, utc_iso
from opswatch.recovery.config import Binding, RecoverySettings
from opswatch.rules.base import AnyRule, SetRule
from opswatch.rules.sources import BUILTIN_ORIGIN
from opswatch.runbooks.commands import diagnosis, for_binding
from opswatch.runbooks.wording import wording_for

#: transitions and recovery runs a runbook lists
SHOWN = 10
#: targets whose diagnosis commands a runbook gives (those firing now first)
COMMAND_TARGETS = 20
#: the section titles, in order
TITLES = ("Meaning", "Impact", "Diagnosis", "Mitigation")

BlockKind = Literal["text", "list", "commands", "output"]


class RunbookConfig(Protocol):
    """What runbooks read of the configuration (:class:`~opswatch.daemon.configure.AppConfig`
    satisfies it; a reload replaces it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def collectors(self) -> Sequence[Collector]: ...

    @property
    def rules(self) -> Sequence[AnyRule]: ...

    @property
    def recovery(self) -> RecoverySettings: ...

    @property
    def rule_origins(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class LiveState:
    """What the state store holds that runbooks show, newest first."""

    active: Sequence[Alert] = ()
    transitions: Sequence[Transition] = ()
    runs: Sequence[RecoveryResult] = ()
    budgets: Sequence[tuple[Binding, BudgetState]] = ()
    #: the newest stored evidence snapshot by fingerprint (only the ones asked for)
    evidence: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Block:
    """Paragraphs (``text``), bullets (``list``), shell commands or captured output."""

    kind: BlockKind
    lines: tuple[str, ...]
    caption: str | None = None


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class Target:
    """A check the rule covers and its masked description."""

    check: str
    described: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RecoveryView:
    """One binding of the rule: its settings, its breaker now and its recent runs."""

    binding: Mapping[str, Any]
    budget: BudgetState | None
    runs: tuple[RecoveryResult, ...]
    succeeded: int
    failed: int
    skipped: int

    @property
    def success_rate(self) -> float | None:
        """Succeeded of the executed recent runs (``None``: none executed)."""
        executed = self.succeeded + self.failed
        return None if executed == 0 else self.succeeded / executed


@dataclass(frozen=True, slots=True)
class EvidenceView:
    """The last snapshot taken when the rule's alert fired."""

    fingerprint: str
    at: datetime
    lines: tuple[str, ...]
    data: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Runbook:
    rule: str
    origin: str
    generated_at: datetime
    meaning: str
    definition: Mapping[str, object]
    targets: tuple[Target, ...]
    active: tuple[Alert, ...]
    transitions: tuple[Transition, ...]
    recovery: tuple[RecoveryView, ...]
    evidence: EvidenceView | None
    sections: tuple[Section, ...]


def metrics_of(rule: AnyRule) -> tuple[str, ...]:
    return tuple(rule.metrics) if isinstance(rule, SetRule) else (rule.metric,)


def find_rule(config: RunbookConfig, name: str) -> AnyRule | None:
    return next((rule for rule in config.rules if rule.name == name), None)


def evidence_wanted(rule: str, transitions: Sequence[Transition]) -> str | None:
    """The fingerprint whose stored snapshot the runbook of ``rule`` shows: the newest
    firing of the rule that carried evidence."""
    shown = _evidence_transition(rule, transitions)
    return None if shown is None else shown.alert.fingerprint


def build(config: RunbookConfig, rule: AnyRule, state: LiveState, now: datetime) -> Runbook:
    name = rule.name
    metrics = metrics_of(rule)
    wording = wording_for(name, metrics)
    kinds = {metric.partition(".")[0] for metric in metrics}
    targets = tuple(
        Target(c.check, dict(c.describe())) for c in config.collectors if c.name in kinds
    )
    active = tuple(a for a in state.active if a.rule == name)
    transitions = tuple(t for t in state.transitions if t.alert.rule == name)
    recovery = tuple(_recovery(b, s, state.runs) for b, s in state.budgets if b.rule == name)
    shown = _evidence_transition(name, transitions)
    evidence = None
    if shown is not None:
        data = state.evidence.get(shown.alert.fingerprint)
        evidence = EvidenceView(shown.alert.fingerprint, shown.at, shown.evidence, data)
    definition = rule.describe()
    origin = config.rule_origins.get(name, BUILTIN_ORIGIN)
    seen = (*active, *(t.alert for t in transitions))
    mounts = sorted({a.labels.get("mountpoint", "") for a in seen} - {""})
    firing = {a.check for a in active}
    ordered = sorted(targets, key=lambda t: t.check not in firing)
    commands = [
        command
        for target in ordered[:COMMAND_TARGETS]
        for metric in metrics
        for command in diagnosis(metric, target.described, _mounts(mounts, target))
    ]
    if len(ordered) > COMMAND_TARGETS:
        commands.append(f"# and {len(ordered) - COMMAND_TARGETS} more targets: see Meaning")
    commands += [c for view in recovery for c in for_binding(view.binding)]
    meaning = Section(
        "Meaning",
        (
            Block("text", (wording.meaning, _checks(definition, config.settings.interval))),
            Block("text", (f"Origin: {origin}.",)),
            _targets_block(targets, kinds),
        ),
    )
    impact = Section(
        "Impact",
        (
            Block("text", (wording.impact,)),
            Block("list", tuple(_alert_line(a, now) for a in active), "Firing now")
            if active
            else Block("text", ("Not firing now.",)),
        ),
    )
    diagnosis_blocks = [
        Block("text", (wording.diagnosis,)),
        Block("list", tuple(_transition_line(t) for t in transitions[:SHOWN]), "Last transitions")
        if transitions
        else Block("text", ("No transition of this rule in the recent history.",)),
    ]
    if evidence is not None:
        caption = f"Evidence captured when {evidence.fingerprint[:12]} fired"
        diagnosis_blocks.append(Block("output", evidence.lines, caption))
    else:
        diagnosis_blocks.append(Block("text", ("No evidence snapshot stored for this rule.",)))
    if commands:
        diagnosis_blocks.append(
            Block("commands", tuple(dict.fromkeys(commands)), "Safe commands (read-only)")
        )
    mitigation = Section(
        "Mitigation",
        (
            Block("list", wording.mitigation),
            *(_recovery_blocks(recovery, name, config.recovery)),
            Block(
                "commands",
                (
                    f"opswatch silence add --match rule={name} --duration 1h "
                    "--comment 'working on it'",
                ),
                "Mute its notifications while you work",
            ),
        ),
    )
    return Runbook(
        rule=name,
        origin=origin,
        generated_at=now,
        meaning=wording.meaning,
        definition=definition,
        targets=targets,
        active=active,
        transitions=transitions[:SHOWN],
        recovery=recovery,
        evidence=evidence,
        sections=(meaning, impact, Section("Diagnosis", tuple(diagnosis_blocks)), mitigation),
    )


def _evidence_transition(rule: str, transitions: Sequence[Transition]) -> Transition | None:
    return next((t for t in transitions if t.alert.rule == rule and t.evidence), None)


def _mounts(mounts: Sequence[str], target: Target) -> Sequence[str]:
    return mounts if target.check == "host" else ()


def _checks(definition: Mapping[str, object], interval: float) -> str:
    """One sentence: what the rule compares, at which levels, for how long."""
    levels = definition.get("levels")
    op = definition.get("op", ">")
    parts = []
    if isinstance(levels, list):
        for level in levels:
            text = f"{op} {format_value(level['threshold'])} {level['severity']}"
            if level["clear"] != level["threshold"]:
                text += f" (clears at {format_value(level['clear'])})"
            parts.append(text)
    if definition.get("kind") == "threshold":
        cycles = int(str(definition.get("for_cycles", 1)))
        what = f"`{definition['metric']}` {', '.join(parts)}"
        span = format_duration(cycles * interval)
        runs = "1 run" if cycles == 1 else f"{cycles} consecutive runs"
        return f"Checks {what}; fires after {runs} (about {span} at the {interval:g} s interval)."
    text = f"Checks `{definition.get('rule', '')}`"
    if parts:
        text += f" (levels {', '.join(parts)})"
    for_s = float(str(definition.get("for_s", 0.0)))
    keep = float(str(definition.get("keep_firing_for_s", 0.0)))
    text += f"; fires after {format_duration(for_s)}" if for_s else "; fires at once"
    if keep:
        text += f", keeps firing {format_duration(keep)} after it clears"
    return text + "."


def _targets_block(targets: Sequence[Target], kinds: set[str]) -> Block:
    if not targets:
        wanted = ", ".join(sorted(kinds))
        return Block(
            "text",
            (f"No configured check produces {wanted} samples: this rule cannot fire now.",),
        )
    lines = []
    for target in targets:
        details = ", ".join(f"{k}={v}" for k, v in target.described.items() if k != "check")
        lines.append(f"{target.check}" + (f": {details}" if details else ""))
    return Block("list", tuple(lines), "Targets")


def _alert_line(alert: Alert, now: datetime) -> str:
    age = format_duration((now - alert.started_at).total_seconds())
    acked = f", acknowledged by {alert.acked_by}" if alert.acked_by else ""
    return (
        f"{alert.severity.value} on {alert.check} for {age} (since {utc_iso(alert.started_at)})"
        f"{acked}: {alert.summary}"
    )


def _transition_line(transition: Transition) -> str:
    alert = transition.alert
    line = (
        f"{utc_iso(transition.at)} {transition.kind.value} {alert.severity.value} on "
        f"{alert.check}: {alert.summary}"
    )
    return line + (f" ({transition.note})" if transition.note else "")


def _recovery(
    binding: Binding, budget: BudgetState | None, runs: Sequence[RecoveryResult]
) -> RecoveryView:
    mine = tuple(r for r in runs if r.rule == binding.rule and _covers(binding, r))[:SHOWN]
    succeeded = sum(r.outcome is RecoveryOutcome.SUCCEEDED for r in mine)
    failed = sum(r.outcome is RecoveryOutcome.FAILED for r in mine)
    return RecoveryView(
        binding.describe(), budget, mine, succeeded, failed, len(mine) - succeeded - failed
    )


def _covers(binding: Binding, run: RecoveryResult) -> bool:
    """Whether ``run`` was this binding's (a per-target binding runs for its target only)."""
    if binding.target is None:
        return True
    return run.target.upper().replace("-", "_") == binding.target


def _recovery_blocks(
    views: Sequence[RecoveryView], rule: str, settings: RecoverySettings
) -> list[Block]:
    if not views:
        return [
            Block(
                "text",
                (
                    "No recovery action is bound to this rule: bind one with "
                    f"`OPSWATCH_RECOVERY_{rule.upper()}=<action>:<args>` (README: Recovery).",
                ),
            )
        ]
    blocks = []
    for view in views:
        described = view.binding
        action = ", ".join(
            f"{k}={v}"
            for k, v in described.items()
            if k not in ("id", "rule", "variable") and v is not None
        )
        lines = [f"Bound by {described['variable']}: {action}."]
        if view.budget is not None:
            b = view.budget
            lines.append(
                f"Budget {settings.budget.text}: {b.state}, {b.used} of {b.limit} executions "
                f"used, {b.allowed} allowed now"
                + (f" (next trial {utc_iso(b.next_trial_at)})" if b.next_trial_at else "")
                + "."
            )
        rate = view.success_rate
        if rate is None:
            lines.append("No executed run in the recent history.")
        else:
            executed = view.succeeded + view.failed
            lines.append(
                f"Recent runs: {view.succeeded} of {executed} succeeded ({rate:.0%})"
                + (f", {view.skipped} skipped" if view.skipped else "")
                + "."
            )
        if settings.dry_run:
            lines.append("Dry run is on (OPSWATCH_RECOVERY_DRY_RUN): nothing is executed.")
        blocks.append(Block("text", tuple(lines), f"Automatic recovery ({described['id']})"))
        if view.runs:
            blocks.append(
                Block(
                    "list",
                    tuple(
                        f"{utc_iso(r.at)} {r.outcome.value} on {r.key} after {r.attempts} "
                        f"attempt(s): {r.detail}"
                        for r in view.runs
                    ),
                    "Last recovery runs",
                )
            )
    return blocks
