"""User rules (the expr kind) through the evaluator, on sample time: matchers, for, hysteresis,
keep_firing_for, rates across a counter reset, absence, aggregation, ratios and ages."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from opswatch.config import Env
from opswatch.model import Alert, AlertState, Sample, Severity, fingerprint
from opswatch.rules import RULE_KINDS
from opswatch.rules.base import AnyRule
from opswatch.rules.builtin import builtin_rules
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.rules.expr import parse
from opswatch.rules.query import ExprRule

W, C = Severity.WARNING, Severity.CRITICAL
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rule(name: str, text: str) -> ExprRule:
    return ExprRule(name, parse(text))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def queue(name: str, value: float, seconds: float) -> Sample:
    labels = {"target": "mq", "vhost": "/", "queue": name}
    return Sample("rabbitmq:mq", "rabbitmq.messages_ready", value, at(seconds), labels)


def severities(
    evaluator: RuleEvaluator, samples: list[Sample], check: str = "rabbitmq:mq"
) -> dict[str, Severity]:
    return {
        f.labels.get("queue", f.labels.get("target", "")): f.severity
        for f in evaluator.evaluate(check, samples).findings
    }


def test_matchers_select_the_series_and_extra_labels_join_the_finding() -> None:
    evaluator = RuleEvaluator(
        [
            rule(
                "orders_deep",
                'rabbitmq.messages_ready{queue=~"orders.*"} > 1000 labels team=payments '
                'summary="{queue} holds {value:.0f}"',
            )
        ]
    )
    result = evaluator.evaluate(
        "rabbitmq:mq",
        [queue("orders.eu", 1500, 0), queue("billing", 5000, 0), queue("orders.us", 10, 0)],
    )
    assert [(f.labels["queue"], f.labels["team"], f.summary) for f in result.findings] == [
        ("orders.eu", "payments", "orders.eu holds 1500")
    ]
    labels = {"target": "mq", "vhost": "/", "queue": "orders.eu", "team": "payments"}
    assert result.findings[0].fingerprint == fingerprint("orders_deep", labels)
    assert result.rules == {"orders_deep"}
    assert set(result.observed) == {
        result.findings[0].fingerprint,
        fingerprint("orders_deep", {**labels, "queue": "orders.us"}),
    }


def test_for_counts_sample_time_and_a_good_sample_restarts_it() -> None:
    evaluator = RuleEvaluator([rule("deep", "rabbitmq.messages_ready > 1000 for 5m")])
    assert severities(evaluator, [queue("q", 2000, 0)]) == {}
    assert evaluator.pending("rabbitmq:mq")
    assert severities(evaluator, [queue("q", 2000, 240)]) == {}
    assert severities(evaluator, [queue("q", 10, 270)]) == {}  # the breach ends
    assert not evaluator.pending("rabbitmq:mq")
    assert severities(evaluator, [queue("q", 2000, 300)]) == {}
    assert severities(evaluator, [queue("q", 2000, 599)]) == {}
    assert severities(evaluator, [queue("q", 2000, 600)]) == {"q": W}


def test_hysteresis_holds_between_clear_and_threshold_and_levels_move_both_ways() -> None:
    evaluator = RuleEvaluator(
        [rule("deep", "rabbitmq.messages_ready > warning=1000 clear 800 critical=5000 clear 4000")]
    )
    assert severities(evaluator, [queue("q", 900, 0)]) == {}  # between clear and threshold
    assert severities(evaluator, [queue("q", 1001, 30)]) == {"q": W}
    assert severities(evaluator, [queue("q", 6000, 60)]) == {"q": C}
    assert severities(evaluator, [queue("q", 4500, 90)]) == {"q": C}  # held above its clear
    assert severities(evaluator, [queue("q", 3000, 120)]) == {"q": W}
    assert severities(evaluator, [queue("q", 850, 150)]) == {"q": W}
    assert severities(evaluator, [queue("q", 800, 180)]) == {}


def test_keep_firing_for_rides_out_good_samples_until_it_has_passed() -> None:
    evaluator = RuleEvaluator([rule("deep", "rabbitmq.messages_ready > 1000 keep_firing_for 2m")])
    assert severities(evaluator, [queue("q", 2000, 0)]) == {"q": W}
    assert severities(evaluator, [queue("q", 5, 30)]) == {"q": W}
    assert severities(evaluator, [queue("q", 5, 120)]) == {"q": W}
    assert severities(evaluator, [queue("q", 2000, 130)]) == {"q": W}  # breached again: reset
    assert severities(evaluator, [queue("q", 5, 160)]) == {"q": W}
    assert severities(evaluator, [queue("q", 5, 279)]) == {"q": W}
    assert severities(evaluator, [queue("q", 5, 280)]) == {}


def restarts(value: float, seconds: float, target: str = "worker") -> Sample:
    return Sample(
        "process:worker", "process.restarts_total", value, at(seconds), {"target": target}
    )


def test_increase_counts_across_a_counter_reset() -> None:
    evaluator = RuleEvaluator(
        [
            rule(
                "restarting",
                'increase(process.restarts_total[10m]) > 2 summary="{value:g} restarts"',
            )
        ]
    )
    check = "process:worker"
    assert evaluator.evaluate(check, [restarts(5, 0)]).findings == ()  # one point: no value
    assert evaluator.evaluate(check, [restarts(6, 60)]).findings == ()
    assert evaluator.evaluate(check, [restarts(1, 120)]).findings == ()  # reset: +1
    result = evaluator.evaluate(check, [restarts(2, 180)])  # 1 + 1 + 1 = 3
    assert [f.summary for f in result.findings] == ["3 restarts"]
    # the points before 10 minutes ago leave the window
    assert evaluator.evaluate(check, [restarts(2, 721)]).findings == ()
    assert evaluator.evaluate(check, [restarts(2, 800)]).findings == ()


def test_rate_divides_the_increase_by_the_window_covered() -> None:
    evaluator = RuleEvaluator([rule("errors", "rate(app.errors_total[5m]) > 1")])
    samples = [(0, 100.0), (60, 130.0), (120, 10.0), (180, 100.0)]
    observed: list[float] = []
    for seconds, value in samples:
        result = evaluator.evaluate("app", [Sample("app", "app.errors_total", value, at(seconds))])
        observed.extend(result.observed.values())
    # 30 over 60 s; then + 10 (the reset) over 120 s; then + 90 over 180 s
    assert observed == [0.5, 40 / 120, 130 / 180]
    assert evaluator.evaluate("app", []).findings == ()


def test_an_absent_series_fires_after_its_wait_and_resolves_when_it_returns() -> None:
    evaluator = RuleEvaluator(
        [rule("worker_gone", 'absent(process.up{target=~"w.*"}) for 10m severity=critical')]
    )
    check = "process:worker"

    def up(target: str, seconds: float) -> Sample:
        return Sample(check, "process.up", 1.0, at(seconds), {"target": target})

    heartbeat = Sample(check, "process.count", 1.0, at(0), {"target": "other"})
    assert evaluator.evaluate(check, [up("w1", 0), up("w2", 0), heartbeat]).findings == ()
    assert evaluator.evaluate(check, [up("w2", 300)]).findings == ()
    result = evaluator.evaluate(check, [up("w2", 600)])
    assert [(f.labels, f.severity, f.value) for f in result.findings] == [
        ({"target": "w1"}, C, 600)
    ]
    assert result.findings[0].summary.startswith(
        'process.up{target=~"w.*"} has reported nothing for 600s'
    )
    # a run with no selected sample at all still judges the series it waits for
    late = Sample(check, "process.count", 0.0, at(1200), {"target": "w1"})
    result = evaluator.evaluate(check, [late])
    assert {f.labels["target"] for f in result.findings} == {"w1", "w2"}
    assert "worker_gone" in result.rules
    back = evaluator.evaluate(check, [up("w1", 1260), up("w2", 1260)])
    assert back.findings == ()
    assert back.rules == {"worker_gone"}  # so the tracker resolves the alerts


def test_a_series_never_seen_is_never_absent() -> None:
    evaluator = RuleEvaluator([rule("gone", "absent(process.up) for 1m")])
    other = Sample("process:x", "process.count", 1.0, at(600), {})
    assert evaluator.evaluate("process:x", [other]).findings == ()


def test_a_seeded_absence_keeps_firing_until_the_series_returns() -> None:
    gone = rule("gone", "absent(process.up) for 1m")
    evaluator = RuleEvaluator([gone])
    fp = fingerprint("gone", {"target": "w"})
    alert = Alert(fp, "gone", "process:w", {"target": "w"}, AlertState.FIRING, W, "s", 60.0, T0, T0)
    evaluator.seed([alert])
    other = Sample("process:w", "process.count", 1.0, at(10), {})
    assert [f.fingerprint for f in evaluator.evaluate("process:w", [other]).findings] == [fp]
    up = Sample("process:w", "process.up", 1.0, at(20), {"target": "w"})
    assert evaluator.evaluate("process:w", [up]).findings == ()


def test_an_aggregation_across_200_label_sets_gives_one_series_per_group() -> None:
    evaluator = RuleEvaluator(
        [
            rule("vhost_deep", "sum by (vhost) (rabbitmq.messages_ready) > 10000"),
            rule("worst", "max(rabbitmq.messages_ready) > 150"),
            rule("mean", "avg by (vhost) (rabbitmq.messages_ready) < 100"),
            rule("least", "min by (vhost) (rabbitmq.messages_ready) < 1"),
        ]
    )
    samples = [
        Sample(
            "rabbitmq:mq",
            "rabbitmq.messages_ready",
            float(i),
            at(0),
            {"vhost": f"v{i % 2}", "queue": f"q{i}"},
        )
        for i in range(200)
    ]
    result = evaluator.evaluate("rabbitmq:mq", samples)
    found = sorted((f.rule, tuple(f.labels.items()), f.value) for f in result.findings)
    # v0: 0+2+...+198 = 9900, v1: 1+3+...+199 = 10000 (not above); max 199; means 99 and 100
    assert found == [
        ("least", (("vhost", "v0"),), 0.0),
        ("mean", (("vhost", "v0"),), 99.0),
        ("worst", (), 199.0),
    ]
    samples.append(
        Sample(
            "rabbitmq:mq", "rabbitmq.messages_ready", 1.0, at(0), {"vhost": "v1", "queue": "extra"}
        )
    )
    result = evaluator.evaluate("rabbitmq:mq", samples)
    assert ("vhost_deep", {"vhost": "v1"}, 10001.0) in [
        (f.rule, f.labels, f.value) for f in result.findings
    ]


def test_a_ratio_joins_series_with_the_same_labels_and_skips_a_zero_divisor() -> None:
    evaluator = RuleEvaluator([rule("redis_full", "redis.used_memory / redis.maxmemory > 0.9")])

    def sample(metric: str, target: str, value: float) -> Sample:
        return Sample("redis:r", metric, value, at(0), {"target": target})

    result = evaluator.evaluate(
        "redis:r",
        [
            sample("redis.used_memory", "a", 95),
            sample("redis.maxmemory", "a", 100),
            sample("redis.used_memory", "b", 50),
            sample("redis.maxmemory", "b", 100),
            sample("redis.used_memory", "c", 50),
            sample("redis.maxmemory", "c", 0),
            sample("redis.used_memory", "d", 99),
        ],
    )
    assert [(f.labels["target"], f.value) for f in result.findings] == [("a", 0.95)]
    assert len(result.observed) == 2


def test_age_is_the_run_time_minus_a_timestamp_value() -> None:
    evaluator = RuleEvaluator([rule("no_ping", "age(app.last_ping_timestamp) > 1h")])
    now = at(10_000)
    ping = Sample("app", "app.last_ping_timestamp", T0.timestamp() + 5000, now)
    assert evaluator.evaluate("app", [ping]).findings[0].value == 5000
    fresh = Sample("app", "app.last_ping_timestamp", T0.timestamp() + 9000, now)
    assert evaluator.evaluate("app", [fresh]).findings == ()


def test_a_nan_keeps_an_active_series_firing_with_its_last_value() -> None:
    evaluator = RuleEvaluator([rule("deep", "rabbitmq.messages_ready > 1000")])
    assert severities(evaluator, [queue("q", 2000, 0)]) == {"q": W}
    result = evaluator.evaluate("rabbitmq:mq", [queue("q", math.nan, 30)])
    assert [(f.value, f.severity) for f in result.findings] == [(2000, W)]
    assert severities(evaluator, [queue("q", math.nan, 60), queue("r", math.nan, 60)]) == {"q": W}


def test_a_series_no_longer_reported_is_forgotten_like_a_builtins() -> None:
    evaluator = RuleEvaluator([rule("deep", "rabbitmq.messages_ready > 1000 for 1m")])
    assert severities(evaluator, [queue("q", 2000, 0), queue("r", 1, 0)]) == {}
    assert severities(evaluator, [queue("r", 1, 30)]) == {}
    assert severities(evaluator, [queue("q", 2000, 60)]) == {}  # its pending time began again


def test_a_seeded_alert_keeps_firing_without_a_new_wait() -> None:
    deep = rule("deep", "rabbitmq.messages_ready > 1000 for 10m")
    evaluator = RuleEvaluator([deep])
    labels = {"target": "mq", "vhost": "/", "queue": "q"}
    fp = fingerprint("deep", labels)
    evaluator.seed(
        [Alert(fp, "deep", "rabbitmq:mq", labels, AlertState.FIRING, C, "s", 2000.0, T0, T0)]
    )
    assert severities(evaluator, [queue("q", 1500, 0)]) == {"q": W}


def test_a_run_time_given_to_the_evaluator_beats_the_samples_time() -> None:
    evaluator = RuleEvaluator([rule("gone", "absent(x.y) for 1m")])
    evaluator.evaluate("c", [Sample("c", "x.y", 1.0, at(0))])
    assert evaluator.evaluate("c", [], now=at(30)).findings == ()
    assert len(evaluator.evaluate("c", [], now=at(60)).findings) == 1
    assert evaluator.evaluate("c", []).findings == ()  # no time: nothing judged


def test_every_rule_kind_is_registered_under_the_kind_it_describes() -> None:
    described: list[AnyRule] = [
        *builtin_rules(Env({}), 30.0),
        rule("x", "x.y > 1"),
        rule("a", "absent(x.y)"),
    ]
    assert {type(r) for r in described} == set(RULE_KINDS.values())
    for each in described:
        assert RULE_KINDS[str(each.describe()["kind"])] is type(each)
