"""Run the rules over one collector run and remember each series' state in memory.

State is keyed by rule, check and fingerprint (``model.fingerprint(rule, labels)``). A rule
that sees samples from a check in a run forgets that check's series it did not see (an
unmounted disk); a run in which a rule sees nothing (a failed collector) changes nothing for
it. NaN samples are skipped: the series keeps its state, and an active series keeps its
finding (with the last finite value) so that a momentary NaN does not resolve an alert.

Set rules (:class:`~opswatch.rules.base.SetRule`: user rules with rates, aggregations,
absence) get every sample they select in a run at once, with the run's time (``now``, else
the latest sample's), and keep their state in the judge each one starts here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from math import isnan

from opswatch.model import Alert, AlertState, Evaluation, Finding, Sample, fingerprint
from opswatch.rules.base import INITIAL, AnyRule, Judge, Rule, SeriesState, SetRule

#: fingerprints cached per rule before the cache is dropped (series churn must not leak)
_FINGERPRINT_CACHE = 50_000

# what the evaluator keeps per series: the rule's state and the last finite value
_Series = tuple[SeriesState, float]


class RuleEvaluator:
    """Evaluates ``rules`` over each collector run. Not thread-safe; one per daemon."""

    def __init__(self, rules: Sequence[AnyRule]) -> None:
        self._load(rules)

    def configure(self, rules: Sequence[AnyRule]) -> bool:
        """A reload: take ``rules`` when they differ from the current ones, starting every
        series afresh (returns True); the same rules keep their debounce and hysteresis."""
        if [r.describe() for r in rules] == self.describe():
            return False
        self._load(rules)
        return True

    def _load(self, rules: Sequence[AnyRule]) -> None:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            duplicates = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
        self._all = tuple(rules)
        plain: list[Rule] = []
        sets: list[SetRule] = []
        for rule in rules:
            if isinstance(rule, SetRule):
                sets.append(rule)
            else:
                plain.append(rule)
        self._rules, self._sets = tuple(plain), tuple(sets)
        self._judges: tuple[Judge, ...] = tuple(rule.start() for rule in self._sets)
        self._set_index = {rule.name: index for index, rule in enumerate(self._sets)}
        self._by_name = {rule.name: rule for rule in self._all}
        self._by_metric: dict[str, list[tuple[int, Rule]]] = {}
        for index, rule in enumerate(self._rules):
            self._by_metric.setdefault(rule.metric, []).append((index, rule))
        self._sets_by_metric: dict[str, list[tuple[int, SetRule]]] = {}
        for index, set_rule in enumerate(self._sets):
            for metric in dict.fromkeys(set_rule.metrics):
                self._sets_by_metric.setdefault(metric, []).append((index, set_rule))
        # (metric, labels) -> the set rules selecting that series: matchers run once a series
        self._selections: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[int, ...]] = {}
        # (rule name, check) -> fingerprint -> series; only series with a non-initial state
        self._series: dict[tuple[str, str], dict[str, _Series]] = {}
        self._fingerprints: list[dict[tuple[tuple[str, str], ...], str]] = [{} for _ in self._rules]

    def rule_names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def describe(self) -> list[dict[str, object]]:
        """Every rule as plain data, in the order given (for the API and check-config)."""
        return [rule.describe() for rule in self._all]

    def pending(self, check: str) -> bool:
        """Whether a series of ``check`` is breaching but not yet active (debouncing): the
        daemon then re-runs the check sooner to confirm or clear it."""
        return any(
            state.pending > 0 and not state.active
            for (_, series_check), series in self._series.items()
            if series_check == check
            for state, _ in series.values()
        ) or any(judge.pending(check) for judge in self._judges)

    def seed(self, alerts: Iterable[Alert]) -> None:
        """Mark the series of still-firing stored alerts active at their severity, so that a
        condition that persists across a restart keeps its alert without a new debounce."""
        for alert in alerts:
            if alert.state == AlertState.RESOLVED or alert.rule not in self._by_name:
                continue
            if alert.rule in self._set_index:
                self._judges[self._set_index[alert.rule]].seed(alert)
                continue
            series = self._series.setdefault((alert.rule, alert.check), {})
            series[alert.fingerprint] = (SeriesState(alert.severity), alert.value)

    def evaluate(
        self, check: str, samples: Sequence[Sample], now: datetime | None = None
    ) -> Evaluation:
        """Judge one run of ``check``. When a series appears twice, the last sample wins."""
        seen: dict[int, dict[str, Sample]] = {}
        selected: dict[int, list[Sample]] = {}
        by_metric, sets_by_metric = self._by_metric, self._sets_by_metric
        selections = self._selections
        for sample in samples:
            candidates = by_metric.get(sample.metric)
            if candidates is not None:
                for index, rule in candidates:
                    if rule.matches(sample):
                        fp = self._fingerprint(index, rule.name, sample)
                        seen.setdefault(index, {})[fp] = sample
            if sets_by_metric and sample.metric in sets_by_metric:
                indices = selections.get((sample.metric, tuple(sample.labels.items())))
                for set_index in self._selecting(sample) if indices is None else indices:
                    batch = selected.get(set_index)
                    if batch is None:
                        selected[set_index] = [sample]
                    else:
                        batch.append(sample)

        findings: list[Finding] = []
        observed: dict[str, float] = {}
        for index in sorted(seen):
            rule = self._rules[index]
            key = (rule.name, check)
            previous = self._series.get(key, {})
            kept: dict[str, _Series] = {}
            for fp, sample in seen[index].items():
                old = previous.get(fp)
                value = sample.value
                if isnan(value):  # skip the sample, keep what we knew
                    if old is None:
                        continue
                    kept[fp] = old
                    state, value = old
                    severity = state.severity
                else:
                    state, severity = rule.advance(INITIAL if old is None else old[0], value)
                    observed[fp] = value
                    if state is not INITIAL:
                        kept[fp] = (state, value)
                if severity is not None:
                    findings.append(
                        Finding(
                            rule=rule.name,
                            check=check,
                            fingerprint=fp,
                            severity=severity,
                            summary=rule.summarize(
                                severity, value, {**sample.annotations, **sample.labels}, check
                            ),
                            value=value,
                            labels=sample.labels,
                        )
                    )
            if kept:
                self._series[key] = kept
            else:
                self._series.pop(key, None)

        judged = self._judge(check, samples, selected, now)
        for found, values in judged.values():
            findings.extend(found)
            observed.update(values)
        return Evaluation(
            check=check,
            findings=tuple(findings),
            rules=frozenset(self._rules[index].name for index in seen) | judged.keys(),
            observed=observed,
        )

    def _judge(
        self,
        check: str,
        samples: Sequence[Sample],
        selected: dict[int, list[Sample]],
        now: datetime | None,
    ) -> dict[str, tuple[list[Finding], Mapping[str, float]]]:
        """Run the set rules that selected samples or wait for some: by rule name, their
        findings and observed values."""
        judged: dict[str, tuple[list[Finding], Mapping[str, float]]] = {}
        if not self._sets or (now is None and not samples):
            return judged
        at = now if now is not None else max(sample.at for sample in samples)
        for index, judge in enumerate(self._judges):
            batch = selected.get(index)
            if batch is None and not judge.watching(check):
                continue
            judged[self._sets[index].name] = judge.judge(check, batch or (), at)
        return judged

    def _selecting(self, sample: Sample) -> tuple[int, ...]:
        key = (sample.metric, tuple(sample.labels.items()))
        indices = self._selections.get(key)
        if indices is None:
            if len(self._selections) >= _FINGERPRINT_CACHE:
                self._selections.clear()
            indices = self._selections[key] = tuple(
                index for index, rule in self._sets_by_metric[sample.metric] if rule.matches(sample)
            )
        return indices

    def _fingerprint(self, index: int, name: str, sample: Sample) -> str:
        cache = self._fingerprints[index]
        key = tuple(sample.labels.items())
        fp = cache.get(key)
        if fp is None:
            if len(cache) >= _FINGERPRINT_CACHE:
                cache.clear()
            fp = cache[key] = fingerprint(name, sample.labels)
        return fp
