"""Threshold rules: a metric above (or below) a level for N runs, with hysteresis.

Per series, with ``hot`` the highest level whose threshold is breached and ``held`` the
highest level (at most the current one) whose ``clear`` is still breached:

* inactive: a hot value counts one pending run; at ``for_cycles`` pending runs the series
  becomes active at the hot level. A run that breaches nothing resets the count.
* active at S: a hot level above S upgrades at once (no second debounce); otherwise the series
  stays at the held level, and resolves when nothing is held.

A value between ``clear`` and ``threshold`` therefore keeps an alert but never starts one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from opswatch.model import Labels, Sample, Severity
from opswatch.rules.base import INITIAL, SeriesState
from opswatch.rules.matchers import LabelMatcher, match_all, selector_text

Op = Literal[">", "<"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ACTIVE = {severity: SeriesState(severity) for severity in Severity}
_RANK = {severity: severity.rank for severity in Severity}


@dataclass(frozen=True, slots=True)
class Level:
    """One severity of a rule. ``clear`` (default: ``threshold``) is where an active alert at
    this level lets go: for ``>`` it must be at most ``threshold``, for ``<`` at least."""

    severity: Severity
    threshold: float
    clear: float | None = None

    def __post_init__(self) -> None:
        if self.clear is None:
            object.__setattr__(self, "clear", self.threshold)
        if not (math.isfinite(self.threshold) and math.isfinite(self.release)):
            raise ValueError(f"{self.severity} level: threshold and clear must be finite")

    @property
    def release(self) -> float:
        """``clear`` as a plain float (it is never ``None`` after construction)."""
        return self.threshold if self.clear is None else self.clear


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """Fires when ``metric`` compares ``op`` a level's threshold for ``for_cycles`` runs.

    ``summary`` is a :meth:`str.format` template with ``{value}``, ``{threshold}`` (of the
    active level), ``{labels}`` (``k=v, ...``), ``{check}`` and each label by name, e.g.
    ``"disk {mountpoint} is {value:.1f}% full"``. ``matchers`` select samples whose labels
    equal the given values; a sample that all the matchers of one of ``unless`` select is left
    to another rule (a user's rule narrowing this one to ``/data``).
    """

    name: str
    metric: str
    op: Op
    levels: tuple[Level, ...]
    summary: str
    for_cycles: int = 1
    matchers: Mapping[str, str] = field(default_factory=dict)
    unless: tuple[tuple[LabelMatcher, ...], ...] = ()
    # derived in __post_init__: levels from the highest severity down, and matcher pairs
    _desc: tuple[Level, ...] = field(init=False, repr=False, compare=False)
    _match: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"rule name {self.name!r} is not snake_case")
        if self.op not in (">", "<"):
            raise ValueError(f"rule {self.name}: op must be '>' or '<', got {self.op!r}")
        if not self.levels:
            raise ValueError(f"rule {self.name}: at least one level is required")
        if len({level.severity for level in self.levels}) != len(self.levels):
            raise ValueError(f"rule {self.name}: a severity is listed twice")
        for level in self.levels:
            if self.op == ">" and level.release > level.threshold:
                raise ValueError(
                    f"rule {self.name}: {level.severity} clear {level.release:g} is above "
                    f"its threshold {level.threshold:g}"
                )
            if self.op == "<" and level.release < level.threshold:
                raise ValueError(
                    f"rule {self.name}: {level.severity} clear {level.release:g} is below "
                    f"its threshold {level.threshold:g}"
                )
        if self.for_cycles < 1:
            raise ValueError(f"rule {self.name}: for_cycles must be at least 1")
        desc = tuple(sorted(self.levels, key=lambda level: level.severity.rank, reverse=True))
        object.__setattr__(self, "_desc", desc)
        object.__setattr__(self, "_match", tuple(sorted(self.matchers.items())))

    def matches(self, sample: Sample) -> bool:
        if sample.metric != self.metric:
            return False
        labels = sample.labels
        if self.unless and any(match_all(matchers, labels) for matchers in self.unless):
            return False
        if not self._match:
            return True
        return all(labels.get(key) == want for key, want in self._match)

    def advance(self, state: SeriesState, value: float) -> tuple[SeriesState, Severity | None]:
        above = self.op == ">"
        hot: Severity | None = None
        for level in self._desc:
            if (value > level.threshold) if above else (value < level.threshold):
                hot = level.severity
                break
        current = state.severity
        if current is None:
            if hot is None:
                return (state if state.pending == 0 else INITIAL), None
            pending = state.pending + 1
            if pending >= self.for_cycles:
                return _ACTIVE[hot], hot
            return SeriesState(None, pending), None
        rank = _RANK[current]
        if hot is not None and _RANK[hot] > rank:
            return _ACTIVE[hot], hot
        for level in self._desc:
            if _RANK[level.severity] <= rank and (
                (value > level.release) if above else (value < level.release)
            ):
                return _ACTIVE[level.severity], level.severity
        return INITIAL, None

    def summarize(self, severity: Severity, value: float, labels: Labels, check: str) -> str:
        level = self._level(severity)
        fields = _Fields(labels)
        fields.update(
            value=value,
            threshold=level.threshold,
            labels=", ".join(f"{k}={labels[k]}" for k in sorted(labels)),
            check=check,
        )
        try:
            return self.summary.format_map(fields)
        except (ValueError, TypeError, IndexError, AttributeError):
            # a format spec that does not fit the value (e.g. {mountpoint:.1f}): say it plainly
            return f"{self.name}: {value:g} {self.op} {level.threshold:g} ({fields['labels']})"

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": "threshold",
            "metric": self.metric,
            "op": self.op,
            "levels": [
                {
                    "severity": level.severity.value,
                    "threshold": level.threshold,
                    "clear": level.release,
                }
                for level in reversed(self._desc)
            ],
            "for_cycles": self.for_cycles,
            "matchers": dict(self._match),
            "summary": self.summary,
        } | (
            {"unless": [selector_text(self.metric, m) for m in self.unless]} if self.unless else {}
        )

    def _level(self, severity: Severity) -> Level:
        """The level of ``severity``, or the nearest below it (a seeded alert may have been
        escalated above every level), or the lowest level."""
        for level in self._desc:
            if level.severity.rank <= severity.rank:
                return level
        return self._desc[-1]


class _Fields(dict[str, object]):
    """Template fields; a label the series lacks renders as ``?`` instead of failing."""

    def __missing__(self, key: str) -> str:
        return "?"
