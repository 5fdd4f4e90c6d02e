"""``opswatch test-rules FILE``: the configured rules against input series on a fake clock.

The file (TOML) gives input series, one value per run, and the alerts expected at given
times, like ``promtool test rules``::

    interval = "30s"                # between runs (default: OPSWATCH_INTERVAL)

    [[series]]
    metric = "rabbitmq.messages_ready"
    check = "rabbitmq:mq"           # default: the metric's kind ("rabbitmq")
    labels = { queue = "orders.eu" }
    values = "500 1500x4 _ 700"     # _: no sample that run; vxN: v N times; a+bxN: a, a+b, ...

    [[alert]]
    at = "2m"                       # after every run at or before 2m
    rule = "orders_deep"            # only this rule's alerts (default: every rule's)
    firing = [{ severity = "warning", labels = { queue = "orders.eu", team = "payments" } }]

Each run, every check of the file is evaluated with the samples it has that run (possibly
none), at ``start + step * interval``, through the daemon's evaluator and alert tracker; an
expectation compares the firing alerts (labels, severity, and the summary when given).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from opswatch.alerts.tracker import AlertTracker
from opswatch.config import ConfigError, read_config_file
from opswatch.model import Alert, Sample, Severity, Transition
from opswatch.rules.base import AnyRule
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.rules.expr import ExprError, duration, seconds_text

START = datetime(2026, 1, 1, tzinfo=UTC)
_SEVERITIES = {s.value: s for s in Severity}


class RuleTestError(Exception):
    """A malformed test file: ``str()`` names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Series:
    check: str
    metric: str
    labels: Mapping[str, str]
    values: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class Expected:
    severity: Severity
    labels: Mapping[str, str]
    summary: str | None = None

    def shown(self) -> str:
        labels = ", ".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        summary = "" if self.summary is None else f" {self.summary!r}"
        return f"{self.severity.value} {{{labels}}}{summary}"


@dataclass(frozen=True, slots=True)
class Expectation:
    at: float
    rule: str | None
    firing: tuple[Expected, ...]


@dataclass(frozen=True, slots=True)
class Suite:
    interval: float
    start: datetime
    series: tuple[Series, ...]
    expectations: tuple[Expectation, ...]


def load_suite(path: str, default_interval: float) -> Suite:
    """The test file at ``path``; raises :class:`RuleTestError`."""
    try:
        text = read_config_file("test-rules", path)
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleTestError(f"{path}: {exc}") from None
    except ConfigError as exc:  # cannot read the file
        raise RuleTestError(exc.problem) from None
    unknown = set(data) - {"interval", "start", "series", "alert"}
    if unknown:
        raise RuleTestError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    interval = _duration(path, "interval", data.get("interval"), default_interval)
    if interval <= 0:
        raise RuleTestError(f"{path}: interval must be positive")
    start = data.get("start", START)
    if not isinstance(start, datetime) or start.tzinfo is None:
        raise RuleTestError(f"{path}: start must be a date-time with its offset")
    series = tuple(
        _series(f"{path}: [[series]] {n}", item)
        for n, item in enumerate(_tables(path, data, "series"), 1)
    )
    expectations = tuple(
        _expectation(f"{path}: [[alert]] {n}", item)
        for n, item in enumerate(_tables(path, data, "alert"), 1)
    )
    if not series:
        raise RuleTestError(f"{path}: no [[series]]")
    return Suite(interval, start, series, expectations)


def _tables(path: str, data: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise RuleTestError(f"{path}: {key} must be an array of tables ([[{key}]])")
    return items


def _duration(where: str, key: str, value: object, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return duration(value)
        except ExprError as exc:
            raise RuleTestError(f"{where}: {key}: {exc.problem}") from None
    raise RuleTestError(f'{where}: {key} must be a duration such as "5m"')


def _labels(where: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise RuleTestError(f"{where}: labels must be a table of strings")
    return dict(value)


def _series(where: str, item: Mapping[str, object]) -> Series:
    unknown = set(item) - {"metric", "check", "labels", "values"}
    if unknown:
        raise RuleTestError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    metric = item.get("metric")
    if not isinstance(metric, str) or "." not in metric:
        raise RuleTestError(f'{where}: metric must be a name such as "rabbitmq.messages_ready"')
    check = item.get("check", metric.split(".", 1)[0])
    if not isinstance(check, str) or not check:
        raise RuleTestError(f'{where}: check must be a check name such as "rabbitmq:mq"')
    values = item.get("values")
    if not isinstance(values, str):
        raise RuleTestError(f'{where}: values must be a string such as "1 2 3x4 _ 5"')
    return Series(check, metric, _labels(where, item.get("labels")), expand_values(where, values))


def expand_values(where: str, text: str) -> tuple[float | None, ...]:
    """``"1 _ 5x3 0+10x4"`` -> ``(1, None, 5, 5, 5, 0, 10, 20, 30)``."""
    values: list[float | None] = []
    for position, word in enumerate(text.split(), 1):
        head, times, count = word.partition("x")
        try:
            repeat = int(count) if times else 1
            if repeat < 1:
                raise ValueError
            if head == "_":
                values.extend([None] * repeat)
                continue
            first, step = _start_step(head)
        except ValueError:
            raise RuleTestError(
                f"{where}: values: cannot read {word!r} (item {position})"
            ) from None
        values.extend(first + step * index for index in range(repeat))
    return tuple(values)


def _start_step(text: str) -> tuple[float, float]:
    try:
        return float(text), 0.0
    except ValueError:
        pass
    for sign in ("+", "-"):
        head, found, step = text[1:].partition(sign)
        if found:
            delta = float(step)
            return float(text[0] + head), delta if sign == "+" else -delta
    raise ValueError(text)


def _expectation(where: str, item: Mapping[str, object]) -> Expectation:
    unknown = set(item) - {"at", "rule", "firing"}
    if unknown:
        raise RuleTestError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    at = _duration(where, "at", item.get("at"), math.nan)
    if math.isnan(at):
        raise RuleTestError(f'{where}: at is required (a duration from the start, "5m")')
    rule = item.get("rule")
    if rule is not None and not isinstance(rule, str):
        raise RuleTestError(f"{where}: rule must be a rule name")
    firing = item.get("firing", [])
    if not isinstance(firing, list) or not all(isinstance(f, dict) for f in firing):
        raise RuleTestError(f"{where}: firing must be a list of {{severity, labels}} tables")
    return Expectation(at, rule, tuple(_expected(where, f) for f in firing))


def _expected(where: str, item: Mapping[str, object]) -> Expected:
    severity = item.get("severity", "warning")
    if severity not in _SEVERITIES:
        raise RuleTestError(f"{where}: severity must be info, warning, critical or emergency")
    summary = item.get("summary")
    if summary is not None and not isinstance(summary, str):
        raise RuleTestError(f"{where}: summary must be a string")
    return Expected(_SEVERITIES[str(severity)], _labels(where, item.get("labels")), summary)


class Replay:
    """The rules on the clock of the runs fed to them: a fresh evaluator and alert tracker
    (no reminders, nothing stored or notified), one :meth:`run` per run of a check, in time
    order; ``now`` is the run's time. ``opswatch test-rules --history`` replays the stored
    metric history through it (:mod:`opswatch.daemon.rule_replay`)."""

    def __init__(self, rules: Sequence[AnyRule]) -> None:
        self._evaluator = RuleEvaluator(rules)
        self._tracker = AlertTracker({})

    def run(self, check: str, samples: Sequence[Sample], now: datetime) -> list[Transition]:
        """Judge one run of ``check`` at ``now``: the alerts' transitions."""
        return self._tracker.update(self._evaluator.evaluate(check, samples, now), now)

    def active(self) -> list[Alert]:
        return self._tracker.active()


def run_suite(rules: Sequence[AnyRule], suite: Suite) -> list[str]:
    """The differences between the expected and the firing alerts (empty: all passed)."""
    known = {rule.name for rule in rules}
    for expectation in suite.expectations:
        if expectation.rule is not None and expectation.rule not in known:
            return [
                f"at {seconds_text(expectation.at)}: "
                f"no rule named {expectation.rule!r} is configured"
            ]
    replay = Replay(rules)
    checks = sorted({series.check for series in suite.series})
    pending = sorted(suite.expectations, key=lambda e: e.at)
    steps = max(len(series.values) for series in suite.series)
    if pending:
        steps = max(steps, math.floor(pending[-1].at / suite.interval + 1e-9) + 1)
    report: list[str] = []
    for step in range(steps):
        now = suite.start + timedelta(seconds=step * suite.interval)
        for check in checks:
            samples = [
                Sample(check, series.metric, value, now, series.labels)
                for series in suite.series
                if series.check == check
                and step < len(series.values)
                and (value := series.values[step]) is not None
            ]
            replay.run(check, samples, now)
        following = (step + 1) * suite.interval
        while pending and pending[0].at < following - 1e-9:
            report.extend(_compare(pending.pop(0), replay.active()))
    return report


def _compare(expectation: Expectation, active: Iterable[Alert]) -> list[str]:
    got = [
        Expected(alert.severity, dict(alert.labels), alert.summary)
        for alert in active
        if expectation.rule is None or alert.rule == expectation.rule
    ]
    missing = [e for e in expectation.firing if not any(_same(e, g) for g in got)]
    extra = [g for g in got if not any(_same(e, g) for e in expectation.firing)]
    if not missing and not extra:
        return []
    rule = "every rule" if expectation.rule is None else f"rule {expectation.rule}"
    lines = [f"at {seconds_text(expectation.at)}, {rule}:"]
    lines.extend(f"  - {expected.shown()}" for expected in missing)
    lines.extend(f"  + {firing.shown()}" for firing in extra)
    return lines


def _same(expected: Expected, got: Expected) -> bool:
    return (
        expected.severity == got.severity
        and dict(expected.labels) == dict(got.labels)
        and (expected.summary is None or expected.summary == got.summary)
    )
