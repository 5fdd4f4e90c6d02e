"""User rules: a parsed :class:`~opswatch.rules.expr.RuleExpr` as a :class:`SetRule`.

Each run of a check, a rule

1. selects its samples (metric and label matchers) and turns each series into a value: the
   sample's value, ``age`` (the run's time minus the value, a Unix timestamp), or ``rate`` /
   ``increase`` over the samples of the last window seconds (by the samples' own time; a
   value lower than the one before is a counter reset and counts from zero);
2. aggregates the series (``max``/``min``/``sum``/``avg``, ``by`` the listed labels) and
   divides by the other operand's series with the same labels (a zero divisor gives nothing);
3. compares each result with its levels and clear thresholds (the threshold rule's
   hysteresis), fires once a breach has lasted ``for`` seconds, and resolves once nothing has
   been breached for ``keep_firing_for`` seconds.

``absent(selector) for D`` remembers every series it has seen (per check) and fires for one
that has had no sample for ``D`` seconds, until it reports again.

Time is the ``now`` the evaluator passes (the run's time); nothing here reads a clock. A NaN
value is skipped: the series keeps its state and an active one its finding.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from opswatch.model import Alert, Finding, Labels, Sample, Severity, fingerprint
from opswatch.rules.base import INITIAL, Judge, SeriesState
from opswatch.rules.expr import ExprError, Operand, RuleExpr
from opswatch.rules.matchers import match_all
from opswatch.rules.threshold import Level, ThresholdRule

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LabelKey = tuple[tuple[str, str], ...]
#: label sets whose identity a rule caches before the cache is dropped
_CACHE = 50_000


@dataclass(frozen=True, slots=True)
class ExprRule:
    """A user rule named ``name`` (snake_case) from its parsed expression ``expr``.

    Raises :class:`ExprError` (with the column of the levels) when the levels do not make a
    rule: no comparison, or a clear threshold on the wrong side of its threshold."""

    name: str
    expr: RuleExpr
    _levels: ThresholdRule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ExprError(1, f"rule name {self.name!r} is not snake_case")
        expr = self.expr
        if not expr.absent and (expr.op is None or not expr.levels):
            raise ExprError(expr.column, "expected a comparison such as '> 1000' or '< 1'")
        # an absence's one level compares the silent seconds with its wait (for the summary)
        levels = (
            (Level(expr.levels[0].severity, expr.for_seconds),)
            if expr.absent
            else tuple(Level(lv.severity, lv.threshold, lv.clear) for lv in expr.levels)
        )
        try:
            threshold = ThresholdRule(
                name=self.name,
                metric=expr.left.selector.metric,
                op=expr.op or ">",
                levels=levels,
                summary=self._summary(),
            )
        except ValueError as exc:
            raise ExprError(expr.column, str(exc).removeprefix(f"rule {self.name}: ")) from None
        object.__setattr__(self, "_levels", threshold)

    def _summary(self) -> str:
        expr = self.expr
        if expr.summary is not None:
            text = expr.summary
        elif expr.absent:
            text = f"{_literal(expr.left.selector.text)} has reported nothing for {{value:.0f}}s"
        else:
            text = f"{_literal(expr.expression)} is {{value:g}} (threshold {{threshold:g}})"
        return text if expr.runbook is None else f"{text} (runbook: {expr.runbook})"

    @property
    def metrics(self) -> tuple[str, ...]:
        expr = self.expr
        if expr.right is None:
            return (expr.left.selector.metric,)
        return (expr.left.selector.metric, expr.right.selector.metric)

    def matches(self, sample: Sample) -> bool:
        return any(_selects(operand, sample) for operand in self._operands)

    @property
    def _operands(self) -> tuple[Operand, ...]:
        expr = self.expr
        return (expr.left,) if expr.right is None else (expr.left, expr.right)

    def start(self) -> Judge:
        return _AbsenceJudge(self) if self.expr.absent else _ValueJudge(self)

    def summarize(self, severity: Severity, value: float, labels: Labels, check: str) -> str:
        return self._levels.summarize(severity, value, labels, check)

    def severity(self, state: SeriesState, value: float) -> Severity | None:
        """The severity ``value`` has at once (hysteresis included), from an active ``state``."""
        return self._levels.advance(state, value)[1]

    def describe(self) -> dict[str, object]:
        expr = self.expr
        described: dict[str, object] = {
            "name": self.name,
            "kind": "expr",
            "rule": expr.text,
            "expression": expr.expression,
            "metrics": list(self.metrics),
        }
        if expr.absent:
            described["severity"] = expr.levels[0].severity.value
        else:
            levels = self._levels.describe()
            described.update(op=levels["op"], levels=levels["levels"])
        described.update(
            for_s=expr.for_seconds,
            keep_firing_for_s=expr.keep_firing_for,
            labels=dict(expr.labels),
            summary=self._summary(),
        )
        if expr.runbook is not None:
            described["runbook"] = expr.runbook
        return described


def _literal(text: str) -> str:
    """``text`` as a literal part of a :meth:`str.format` template."""
    return text.replace("{", "{{").replace("}", "}}")


def _selects(operand: Operand, sample: Sample) -> bool:
    selector = operand.selector
    return sample.metric == selector.metric and match_all(selector.matchers, sample.labels)


class _Identities:
    """Each series' fingerprint and finding labels (its own and the rule's extra ones),
    computed once per label set (the cache is dropped when it grows past a bound)."""

    __slots__ = ("_cache", "_extra", "_name")

    def __init__(self, rule: ExprRule) -> None:
        self._name = rule.name
        self._extra = dict(rule.expr.labels)
        self._cache: dict[_LabelKey, tuple[str, dict[str, str]]] = {}

    def of(self, labels: Labels, key: _LabelKey | None = None) -> tuple[str, dict[str, str]]:
        """``key``: ``labels``' items as a tuple, when the caller has it already."""
        if key is None:
            key = tuple(labels.items())
        known = self._cache.get(key)
        if known is None:
            if len(self._cache) >= _CACHE:
                self._cache.clear()
            full = {**labels, **self._extra}
            known = self._cache[key] = (fingerprint(self._name, full), full)
        return known


class _Series:
    """One result series' alerting state (``since``: pending since; ``calm``: clear since)."""

    __slots__ = ("active", "calm", "labels", "since", "value")

    def __init__(self, labels: dict[str, str], value: float) -> None:
        self.labels = labels
        self.value = value
        self.active: Severity | None = None
        self.since: float | None = None
        self.calm: float | None = None


class _ValueJudge:
    """Values, rates, ages, aggregations and ratios compared with levels over time."""

    def __init__(self, rule: ExprRule) -> None:
        self._rule = rule
        self._identities = _Identities(rule)
        # (operand index, check) -> series labels -> (time, value) points in the window
        self._windows: dict[tuple[int, str], dict[_LabelKey, _Window]] = {}
        # check -> fingerprint -> state of series that are pending or active
        self._series: dict[str, dict[str, _Series]] = {}

    def watching(self, check: str) -> bool:
        return False

    def pending(self, check: str) -> bool:
        return any(
            s.active is None and s.since is not None for s in self._series.get(check, {}).values()
        )

    def seed(self, alert: Alert) -> None:
        series = _Series(dict(alert.labels), alert.value)
        series.active = alert.severity
        self._series.setdefault(alert.check, {})[alert.fingerprint] = series

    def judge(
        self, check: str, samples: Sequence[Sample], now: datetime
    ) -> tuple[list[Finding], Mapping[str, float]]:
        rule = self._rule
        at = now.timestamp()
        results = self._values(0, rule.expr.left, check, samples, at)
        if rule.expr.right is not None:
            divisors = self._values(1, rule.expr.right, check, samples, at)
            results = {
                key: (labels, value / divisors[key][1])
                for key, (labels, value) in results.items()
                if key in divisors and divisors[key][1] != 0
            }
        previous = self._series.get(check, {})
        kept: dict[str, _Series] = {}
        findings: list[Finding] = []
        observed: dict[str, float] = {}
        for key, (labels, value) in results.items():
            fp, full = self._identities.of(labels, key)
            series = previous.get(fp) or _Series(full, value)
            if math.isnan(value):
                if fp not in previous:
                    continue
            else:
                observed[fp] = value
                series.value = value
                self._advance(series, value, at)
            if series.active is not None or series.since is not None:
                kept[fp] = series
            if series.active is not None:
                findings.append(
                    Finding(
                        rule=rule.name,
                        check=check,
                        fingerprint=fp,
                        severity=series.active,
                        summary=rule.summarize(series.active, series.value, full, check),
                        value=series.value,
                        labels=full,
                    )
                )
        if kept:
            self._series[check] = kept
        else:
            self._series.pop(check, None)
        return findings, observed

    def _advance(self, series: _Series, value: float, at: float) -> None:
        rule, expr = self._rule, self._rule.expr
        if series.active is None:
            hot = rule.severity(INITIAL, value)
            if hot is None:
                series.since = None
                return
            if series.since is None:
                series.since = at
            if at - series.since >= expr.for_seconds:
                series.active, series.since, series.calm = hot, None, None
            return
        held = rule.severity(SeriesState(series.active), value)
        if held is not None:
            series.active, series.calm = held, None
            return
        if series.calm is None:
            series.calm = at
        if at - series.calm >= expr.keep_firing_for:
            series.active, series.calm = None, None

    def _values(
        self, index: int, operand: Operand, check: str, samples: Sequence[Sample], at: float
    ) -> dict[_LabelKey, tuple[Labels, float]]:
        """Each result series of ``operand`` this run: its labels and value."""
        values: dict[_LabelKey, tuple[Labels, float]] = {}
        function = operand.function
        windows = self._windows.setdefault((index, check), {}) if operand.window else None
        alone = self._rule.expr.right is None  # every sample given is the operand's
        for sample in samples:
            if not alone and not _selects(operand, sample):
                continue
            items = sample.labels.items()
            key = tuple(items) if alone else tuple(sorted(items))
            value = sample.value
            if function == "age":
                value = at - value
            elif windows is not None:
                window = windows.get(key)
                if window is None:
                    window = windows[key] = _Window()
                windowed = _windowed(window, sample.at.timestamp(), value, operand)
                if windowed is None:
                    continue
                value = windowed
            values[key] = (sample.labels, value)
        if windows is not None:
            _forget_old(windows, at - operand.window)
        if operand.aggregation is None:
            return values
        return _aggregate(operand, values.values())


class _Window:
    """A series' points of the last window seconds and the increase they add up to (each
    point's rise from the one before; a fall is a counter reset, and the point counts whole)."""

    __slots__ = ("increase", "points")

    def __init__(self) -> None:
        self.points: deque[tuple[float, float, float]] = deque()  # (time, value, rise)
        self.increase = 0.0

    def add(self, at: float, value: float, width: float) -> None:
        points = self.points
        while points and at <= points[-1][0]:  # the same run twice (the last wins), or time back
            self.increase -= points.pop()[2]
        if points:
            previous = points[-1][1]
            rise = value - previous if value >= previous else value
        else:
            rise = 0.0
        points.append((at, value, rise))
        self.increase += rise
        start = at - width
        while points[0][0] < start:
            points.popleft()
            self.increase -= points[0][2]  # the new first point's rise is before the window
            points[0] = (points[0][0], points[0][1], 0.0)
        if len(points) == 1:
            self.increase = 0.0  # no drift survives an emptied window

    @property
    def span(self) -> float:
        return self.points[-1][0] - self.points[0][0]


def _windowed(window: _Window, at: float, value: float, operand: Operand) -> float | None:
    """Add the point and give the window's rate or increase (``None``: one point so far)."""
    if math.isnan(value):
        return math.nan
    window.add(at, value, operand.window)
    if len(window.points) < 2:
        return None
    if operand.function == "increase":
        return window.increase
    return window.increase / window.span


def _forget_old(windows: dict[_LabelKey, _Window], start: float) -> None:
    stale = [key for key, window in windows.items() if window.points[-1][0] < start]
    for key in stale:
        del windows[key]


def _aggregate(
    operand: Operand, series: Iterable[tuple[Labels, float]]
) -> dict[_LabelKey, tuple[Labels, float]]:
    groups: dict[_LabelKey, list[float]] = {}
    by = operand.by
    for labels, value in series:
        if math.isnan(value):
            continue
        key = tuple((name, labels[name]) for name in by if labels.get(name))
        groups.setdefault(key, []).append(value)
    aggregation = operand.aggregation
    result: dict[_LabelKey, tuple[Labels, float]] = {}
    for key, values in groups.items():
        if aggregation == "max":
            total = max(values)
        elif aggregation == "min":
            total = min(values)
        elif aggregation == "sum":
            total = math.fsum(values)
        else:
            total = math.fsum(values) / len(values)
        result[key] = (dict(key), total)
    return result


class _AbsenceJudge:
    """``absent(selector) for D``: series seen before and silent for ``D`` seconds."""

    def __init__(self, rule: ExprRule) -> None:
        self._rule = rule
        self._identities = _Identities(rule)
        # check -> fingerprint -> (finding labels, time of the last sample)
        self._seen: dict[str, dict[str, tuple[dict[str, str], float]]] = {}

    def watching(self, check: str) -> bool:
        return bool(self._seen.get(check))

    def pending(self, check: str) -> bool:
        return False

    def seed(self, alert: Alert) -> None:
        self._seen.setdefault(alert.check, {})[alert.fingerprint] = (
            dict(alert.labels),
            -math.inf,
        )

    def judge(
        self, check: str, samples: Sequence[Sample], now: datetime
    ) -> tuple[list[Finding], Mapping[str, float]]:
        rule = self._rule
        at = now.timestamp()
        seen = self._seen.setdefault(check, {})
        observed: dict[str, float] = {}
        for sample in samples:
            fp, full = self._identities.of(sample.labels)
            seen[fp] = (full, at)
            observed[fp] = sample.value
        severity = rule.expr.levels[0].severity
        wait = rule.expr.for_seconds
        findings: list[Finding] = []
        for fp, (labels, last) in seen.items():
            if fp in observed or at - last < wait:
                continue
            silent = at - last if math.isfinite(last) else wait
            findings.append(
                Finding(
                    rule=rule.name,
                    check=check,
                    fingerprint=fp,
                    severity=severity,
                    summary=rule.summarize(severity, silent, labels, check),
                    value=silent,
                    labels=labels,
                )
            )
        return findings, observed
