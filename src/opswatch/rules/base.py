"""The rule contract: select samples, advance one series' state, word a finding.

A rule kind (threshold, absence, trend, ...) is one module with one frozen class satisfying
:class:`Rule`. Rules are pure: the :class:`~opswatch.rules.evaluator.RuleEvaluator` keeps the
per-series :class:`SeriesState` between runs and hands it back to :meth:`Rule.advance`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from opswatch.model import Alert, Finding, Labels, Sample, Severity


@dataclass(frozen=True, slots=True)
class SeriesState:
    """What a rule remembers about one series between runs.

    ``severity`` is the active severity (``None``: no alert); ``pending`` counts consecutive
    breaching runs while not yet active (the debounce counter).
    """

    severity: Severity | None = None
    pending: int = 0

    @property
    def active(self) -> bool:
        return self.severity is not None


#: The state of a series the rule has never seen (or has forgotten).
INITIAL = SeriesState()


class Rule(Protocol):
    """One rule kind. Implementations are frozen dataclasses; all methods are pure.

    ``metric`` is the exact metric a rule selects; the evaluator indexes rules by it, so
    ``matches(sample)`` may only be true when ``sample.metric == metric``.
    """

    @property
    def name(self) -> str: ...

    @property
    def metric(self) -> str: ...

    def matches(self, sample: Sample) -> bool:
        """Whether ``sample`` belongs to this rule (metric and label matchers)."""
        ...

    def advance(self, state: SeriesState, value: float) -> tuple[SeriesState, Severity | None]:
        """The series' next state after ``value`` (always finite) and its active severity."""
        ...

    def summarize(self, severity: Severity, value: float, labels: Labels, check: str) -> str:
        """The one-line human summary of an active series."""
        ...

    def describe(self) -> dict[str, object]:
        """The rule as plain data (JSON-ready) for the API and ``check-config``."""
        ...


@runtime_checkable
class SetRule(Protocol):
    """A rule kind that judges a run's whole selection at once: rates over a window,
    aggregations across series, ratios, absence and durations measured by the samples' time.

    The definition is frozen and pure; :meth:`start` gives the mutable :class:`Judge` that
    holds its state (one per evaluator). ``metrics`` are every metric it selects.
    """

    @property
    def name(self) -> str: ...

    @property
    def metrics(self) -> tuple[str, ...]: ...

    def matches(self, sample: Sample) -> bool: ...

    def start(self) -> Judge: ...

    def describe(self) -> dict[str, object]: ...


class Judge(Protocol):
    """The state of one :class:`SetRule`, advanced once per run of a check."""

    def judge(
        self, check: str, samples: Sequence[Sample], now: datetime
    ) -> tuple[list[Finding], Mapping[str, float]]:
        """The findings of this run and the latest value of every judged series."""
        ...

    def watching(self, check: str) -> bool:
        """Whether a run of ``check`` without any selected sample must still be judged (a
        series it waits for)."""
        ...

    def pending(self, check: str) -> bool: ...

    def seed(self, alert: Alert) -> None: ...


AnyRule = Rule | SetRule
