"""Where runbooks come from: the configuration in use and one read of the state store.

Nothing here runs in the check cycle: a runbook is built when it is asked for (the API, the
``opswatch runbook`` command). The reads are bounded: the newest :data:`HISTORY_READ`
transitions, the newest :data:`RUNS_READ` recovery runs, the active alerts, each binding's
budget and, for one rule, its newest evidence snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from opswatch.model import BudgetState, Clock
from opswatch.ports import RecoveryStore
from opswatch.recovery.config import Binding
from opswatch.rules.base import AnyRule
from opswatch.rules.sources import BUILTIN_ORIGIN
from opswatch.runbooks.build import (
    LiveState,
    Runbook,
    RunbookConfig,
    build,
    evidence_wanted,
    find_rule,
    metrics_of,
)
from opswatch.runbooks.wording import wording_for

#: the newest transitions read to find each rule's last ones
HISTORY_READ = 2000
#: the newest recovery runs read for the success rates
RUNS_READ = 500

#: each binding's breaker now (:meth:`opswatch.recovery.runner.RecoveryRunner.budgets`)
Budgets = Callable[[], Awaitable[list[tuple[Binding, BudgetState]]]]


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the runbook index."""

    rule: str
    origin: str
    meaning: str
    firing: int
    last_transition_at: datetime | None


class Runbooks:
    """Builds runbooks from ``config()`` (the one in use: a reload replaces it) and the store."""

    def __init__(
        self,
        config: Callable[[], RunbookConfig],
        store: RecoveryStore,
        budgets: Budgets,
        clock: Clock,
    ) -> None:
        self._config = config
        self._store = store
        self._budgets = budgets
        self._clock = clock

    async def index(self) -> list[Entry]:
        config = self._config()
        active = await self._store.load_active()
        history = await self._store.history(HISTORY_READ)
        entries = []
        for rule in config.rules:
            last = next((t.at for t in history if t.alert.rule == rule.name), None)
            entries.append(
                Entry(
                    rule.name,
                    config.rule_origins.get(rule.name, BUILTIN_ORIGIN),
                    wording_for(rule.name, metrics_of(rule)).meaning,
                    sum(a.rule == rule.name for a in active),
                    last,
                )
            )
        return entries

    async def one(self, name: str) -> Runbook | None:
        """The runbook of the enabled rule ``name`` (None: no such rule)."""
        config = self._config()
        rule = find_rule(config, name)
        if rule is None:
            return None
        return (await self._build(config, [rule]))[0]

    async def every(self) -> list[Runbook]:
        """The runbook of every enabled rule, from one read of the state."""
        config = self._config()
        return await self._build(config, list(config.rules))

    async def _build(self, config: RunbookConfig, rules: list[AnyRule]) -> list[Runbook]:
        store = self._store
        transitions = await store.history(HISTORY_READ)
        evidence = {}
        for rule in rules:
            fingerprint = evidence_wanted(rule.name, transitions)
            if fingerprint is not None:
                stored = await store.evidence(fingerprint, 1)
                if stored:
                    evidence[fingerprint] = stored[0]
        state = LiveState(
            active=await store.load_active(),
            transitions=transitions,
            runs=await store.recovery_history(RUNS_READ),
            budgets=await self._budgets(),
            evidence=evidence,
        )
        now = self._clock()
        return [build(config, rule, state, now) for rule in rules]
