"""RuleEvaluator: per-series state across runs, forgetting, NaN, seeding after a restart."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from opswatch.model import Alert, AlertState, Sample, Severity, fingerprint
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.rules.threshold import Level, ThresholdRule

W, C = Severity.WARNING, Severity.CRITICAL
AT = datetime(2026, 1, 1, tzinfo=UTC)


def disk_rule(for_cycles: int = 1) -> ThresholdRule:
    return ThresholdRule(
        name="disk_full",
        metric="host.disk_used_percent",
        op=">",
        levels=(Level(W, 85, 82), Level(C, 90, 88)),
        summary="disk {mountpoint} is {value:.1f}% full",
        for_cycles=for_cycles,
    )


def down_rule() -> ThresholdRule:
    return ThresholdRule(
        name="http_down",
        metric="http.up",
        op="<",
        levels=(Level(C, 1, 1),),
        summary="{check} is down",
        for_cycles=2,
    )


def disk(mountpoint: str, value: float, check: str = "host") -> Sample:
    return Sample(check, "host.disk_used_percent", value, AT, {"mountpoint": mountpoint})


def fp(rule: str, **labels: str) -> str:
    return fingerprint(rule, labels)


def test_judges_each_series_separately() -> None:
    evaluator = RuleEvaluator([disk_rule()])
    result = evaluator.evaluate("host", [disk("/", 50), disk("/var", 95), disk("/srv", 86)])
    assert [(f.labels["mountpoint"], f.severity) for f in result.findings] == [
        ("/var", C),
        ("/srv", W),
    ]
    finding = result.findings[0]
    assert finding.rule == "disk_full"
    assert finding.check == "host"
    assert finding.fingerprint == fp("disk_full", mountpoint="/var")
    assert finding.summary == "disk /var is 95.0% full"
    assert finding.value == 95


def test_reports_the_rules_that_saw_samples_and_every_observed_value() -> None:
    evaluator = RuleEvaluator([disk_rule(), down_rule()])
    result = evaluator.evaluate("host", [disk("/", 50), disk("/var", 95)])
    assert result.check == "host"
    assert result.rules == frozenset({"disk_full"})
    assert result.observed == {
        fp("disk_full", mountpoint="/"): 50,
        fp("disk_full", mountpoint="/var"): 95,
    }


def test_ignores_samples_no_rule_selects() -> None:
    evaluator = RuleEvaluator([disk_rule()])
    samples = [Sample("host", "host.cpu_percent", 99, AT), Sample("host", "host.up", 1, AT)]
    result = evaluator.evaluate("host", samples)
    assert result.findings == ()
    assert result.rules == frozenset()
    assert result.observed == {}


def test_debounces_across_runs() -> None:
    evaluator = RuleEvaluator([disk_rule(for_cycles=3)])
    runs = [evaluator.evaluate("host", [disk("/", 95)]) for _ in range(3)]
    assert [len(r.findings) for r in runs] == [0, 0, 1]


def test_forgets_a_series_the_rule_no_longer_sees_from_its_check() -> None:
    evaluator = RuleEvaluator([disk_rule(for_cycles=2)])
    evaluator.evaluate("host", [disk("/", 50), disk("/mnt", 95)])
    evaluator.evaluate("host", [disk("/", 50), disk("/mnt", 95)])  # /mnt active
    unmounted = evaluator.evaluate("host", [disk("/", 50)])
    assert unmounted.findings == ()
    assert unmounted.rules == frozenset({"disk_full"})
    # remounted: its state was dropped, so it debounces again
    assert evaluator.evaluate("host", [disk("/", 50), disk("/mnt", 95)]).findings == ()


def test_a_run_without_samples_for_a_rule_keeps_its_state() -> None:
    evaluator = RuleEvaluator([disk_rule(for_cycles=2)])
    evaluator.evaluate("host", [disk("/", 95)])
    evaluator.evaluate("host", [disk("/", 95)])  # active
    failed = evaluator.evaluate("host", [Sample("host", "host.up", 0, AT)])
    assert failed.rules == frozenset()
    assert failed.findings == ()
    assert len(evaluator.evaluate("host", [disk("/", 95)]).findings) == 1


def test_a_run_of_one_check_does_not_forget_another_checks_series() -> None:
    evaluator = RuleEvaluator([down_rule()])

    def up(check: str, value: float) -> Sample:
        return Sample(check, "http.up", value, AT, {"target": check.split(":")[1]})

    for _ in range(2):
        evaluator.evaluate("http:api", [up("http:api", 0)])
        evaluator.evaluate("http:web", [up("http:web", 0)])
    api = evaluator.evaluate("http:api", [up("http:api", 0)])
    web = evaluator.evaluate("http:web", [up("http:web", 0)])
    assert [f.summary for f in api.findings] == ["http:api is down"]
    assert [f.summary for f in web.findings] == ["http:web is down"]


def test_a_nan_sample_is_skipped_and_keeps_an_active_series_firing() -> None:
    evaluator = RuleEvaluator([disk_rule()])
    evaluator.evaluate("host", [disk("/", 95)])
    result = evaluator.evaluate("host", [disk("/", math.nan)])
    assert [(f.severity, f.value) for f in result.findings] == [(C, 95)]
    assert result.observed == {}
    assert result.rules == frozenset({"disk_full"})


def test_a_nan_sample_neither_counts_nor_resets_the_debounce() -> None:
    evaluator = RuleEvaluator([disk_rule(for_cycles=2)])
    evaluator.evaluate("host", [disk("/", 95)])
    assert evaluator.evaluate("host", [disk("/", math.nan)]).findings == ()
    assert len(evaluator.evaluate("host", [disk("/", 95)]).findings) == 1


def test_the_last_sample_of_a_series_in_a_run_wins() -> None:
    evaluator = RuleEvaluator([disk_rule()])
    result = evaluator.evaluate("host", [disk("/", 95), disk("/", 50)])
    assert result.findings == ()
    assert result.observed == {fp("disk_full", mountpoint="/"): 50}


def test_one_sample_can_feed_several_rules() -> None:
    root = ThresholdRule(
        "root_full",
        "host.disk_used_percent",
        ">",
        (Level(C, 70),),
        "root",
        matchers={"mountpoint": "/"},
    )
    evaluator = RuleEvaluator([disk_rule(), root])
    result = evaluator.evaluate("host", [disk("/", 80), disk("/var", 80)])
    assert [(f.rule, f.labels["mountpoint"]) for f in result.findings] == [("root_full", "/")]
    assert result.rules == frozenset({"disk_full", "root_full"})


def stored_alert(rule: str, labels: dict[str, str], severity: Severity, **kw: object) -> Alert:
    fields: dict[str, object] = {
        "fingerprint": fingerprint(rule, labels),
        "rule": rule,
        "check": "http:api",
        "labels": labels,
        "state": AlertState.FIRING,
        "severity": severity,
        "summary": "s",
        "value": 0.0,
        "started_at": AT,
        "last_seen_at": AT,
    }
    fields.update(kw)
    return Alert(**fields)  # type: ignore[arg-type]


def test_seeding_keeps_a_debounced_alert_active_after_a_restart() -> None:
    evaluator = RuleEvaluator([down_rule()])
    evaluator.seed([stored_alert("http_down", {"target": "api"}, C)])
    sample = Sample("http:api", "http.up", 0, AT, {"target": "api"})
    result = evaluator.evaluate("http:api", [sample])
    assert [(f.rule, f.severity) for f in result.findings] == [("http_down", C)]


def test_seeding_skips_resolved_alerts_and_unknown_rules() -> None:
    evaluator = RuleEvaluator([down_rule()])
    evaluator.seed(
        [
            stored_alert("http_down", {"target": "api"}, C, state=AlertState.RESOLVED),
            stored_alert("gone_rule", {"target": "api"}, C),
        ]
    )
    sample = Sample("http:api", "http.up", 0, AT, {"target": "api"})
    assert evaluator.evaluate("http:api", [sample]).findings == ()


def test_a_seeded_series_resolves_normally_when_the_condition_is_gone() -> None:
    evaluator = RuleEvaluator([down_rule()])
    evaluator.seed([stored_alert("http_down", {"target": "api"}, C)])
    sample = Sample("http:api", "http.up", 1, AT, {"target": "api"})
    assert evaluator.evaluate("http:api", [sample]).findings == ()


def test_a_seeded_series_keeps_firing_through_a_nan_with_the_stored_value() -> None:
    evaluator = RuleEvaluator([disk_rule()])
    labels = {"mountpoint": "/"}
    evaluator.seed([stored_alert("disk_full", labels, W, check="host", value=87.0)])
    result = evaluator.evaluate("host", [disk("/", math.nan)])
    assert [(f.severity, f.value, f.summary) for f in result.findings] == [
        (W, 87.0, "disk / is 87.0% full")
    ]


def test_rejects_two_rules_with_one_name() -> None:
    with pytest.raises(ValueError, match="unique: disk_full"):
        RuleEvaluator([disk_rule(), disk_rule()])


def test_lists_rule_names_and_descriptions() -> None:
    evaluator = RuleEvaluator([disk_rule(), down_rule()])
    assert evaluator.rule_names() == frozenset({"disk_full", "http_down"})
    assert [d["name"] for d in evaluator.describe()] == ["disk_full", "http_down"]


def test_pending_is_true_only_while_a_series_of_that_check_debounces() -> None:
    evaluator = RuleEvaluator([down_rule()])
    up = Sample("http:api", "http.up", 1.0, AT, {"target": "api"})
    down = Sample("http:api", "http.up", 0.0, AT, {"target": "api"})
    evaluator.evaluate("http:api", [up])
    assert not evaluator.pending("http:api")
    evaluator.evaluate("http:api", [down])  # first failed run of two
    assert evaluator.pending("http:api")
    assert not evaluator.pending("http:web")
    evaluator.evaluate("http:api", [down])  # fired: no longer pending
    assert not evaluator.pending("http:api")
