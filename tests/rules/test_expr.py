"""The rule expression parser: every construct, and every error with its column."""

from __future__ import annotations

import pytest

from opswatch.model import MatchOp, Severity
from opswatch.rules.expr import ExprError, LevelExpr, Operand, Selector, parse, tokenize
from opswatch.rules.matchers import LabelMatcher
from opswatch.rules.query import ExprRule

W, C, E, INFO = Severity.WARNING, Severity.CRITICAL, Severity.EMERGENCY, Severity.INFO


def test_a_full_rule_parses_into_its_parts() -> None:
    rule = parse(
        'rabbitmq.messages_ready{queue=~"orders.*", vhost!="test"} > 1000 for 5m '
        'severity=critical clear 800 keep_firing_for 10m labels team=payments, tier="1" '
        'summary="{queue} has {value} messages" runbook="https://wiki/q"'
    )
    assert rule.left == Operand(
        Selector(
            "rabbitmq.messages_ready",
            (
                LabelMatcher("queue", MatchOp.REGEX, "orders.*"),
                LabelMatcher("vhost", MatchOp.NOT_EQUAL, "test"),
            ),
        )
    )
    assert rule.op == ">"
    assert rule.levels == (LevelExpr(C, 1000, 800),)
    assert (rule.for_seconds, rule.keep_firing_for) == (300, 600)
    assert rule.labels == (("team", "payments"), ("tier", "1"))
    assert rule.summary == "{queue} has {value} messages"
    assert rule.runbook == "https://wiki/q"
    assert rule.column == 59


def test_every_matcher_operator_is_understood() -> None:
    rule = parse('x.y{a="1", b!="2", c=~"3.*", d!~"4|5",} < 1')
    assert [(m.name, m.op) for m in rule.left.selector.matchers] == [
        ("a", MatchOp.EQUAL),
        ("b", MatchOp.NOT_EQUAL),
        ("c", MatchOp.REGEX),
        ("d", MatchOp.NOT_REGEX),
    ]
    assert rule.op == "<"


def test_levels_per_severity_each_take_their_own_clear() -> None:
    rule = parse("x.y > info=1 warning=10 clear=8 critical=50 clear 40 emergency=90")
    assert rule.levels == (
        LevelExpr(INFO, 1),
        LevelExpr(W, 10, 8),
        LevelExpr(C, 50, 40),
        LevelExpr(E, 90),
    )


def test_a_bare_threshold_is_a_warning() -> None:
    assert parse("x.y > 3").levels == (LevelExpr(W, 3),)


def test_rate_and_increase_take_a_window() -> None:
    assert parse("rate(process.restarts_total[10m]) > 0").left == Operand(
        Selector("process.restarts_total"), "rate", 600.0
    )
    assert parse("increase(x.y[90s]) > 3").left.function == "increase"


def test_age_is_a_function_of_one_selector() -> None:
    rule = parse('age(app.last_ping{job="a"}) > 26h')
    assert rule.left.function == "age"
    assert rule.levels == (LevelExpr(W, 26 * 3600),)


def test_aggregations_group_by_labels_and_may_wrap_functions() -> None:
    rule = parse("sum by (queue, vhost) (rate(rabbitmq.publish[5m])) > 10")
    assert rule.left.aggregation == "sum"
    assert rule.left.by == ("queue", "vhost")
    assert rule.left.function == "rate"
    for aggregation in ("max", "min", "avg"):
        assert parse(f"{aggregation}(x.y) > 1").left.aggregation == aggregation
    assert parse("max(x.y) > 1").left.by == ()


def test_a_ratio_divides_two_operands() -> None:
    rule = parse("redis.used_memory / max by (target) (redis.maxmemory) > 0.9")
    assert rule.left.selector.metric == "redis.used_memory"
    assert rule.right is not None
    assert rule.right.aggregation == "max"
    assert rule.expression == "redis.used_memory / max by (target) (redis.maxmemory)"


def test_absent_takes_for_and_a_severity() -> None:
    rule = parse('absent(process.up{target="worker"}) for 10m severity=critical')
    assert rule.absent
    assert rule.for_seconds == 600
    assert rule.levels == (LevelExpr(C, 0),)
    assert parse("absent(x.y)").levels == (LevelExpr(W, 0),)


def test_numbers_take_signs_exponents_and_duration_units() -> None:
    assert parse("x.y < -2.5").levels[0].threshold == -2.5
    assert parse("x.y > 1.5e9").levels[0].threshold == 1.5e9
    assert parse("x.y > 500ms").levels[0].threshold == 0.5
    assert parse("x.y > 2d").levels[0].threshold == 172800


def test_strings_take_either_quote_and_escapes() -> None:
    rule = parse('x.y{a=\'it\\\'s\', b="say \\"hi\\""} > 1 summary=\'a "b"\'')
    assert [m.value for m in rule.left.selector.matchers] == ["it's", 'say "hi"']
    assert rule.summary == 'a "b"'


def test_a_narrowing_is_a_rule_name_with_matchers_and_levels_only() -> None:
    rule = parse('disk_full{mountpoint="/data"} warning=95 critical=98 clear 97')
    assert rule.left.selector.metric == "disk_full"
    assert rule.op is None
    assert rule.levels == (LevelExpr(W, 95), LevelExpr(C, 98, 97))


def test_tokens_carry_their_columns() -> None:
    assert [(t.text, t.column) for t in tokenize("a.b  >\t5")] == [
        ("a.b", 1),
        (">", 6),
        ("5", 8),
        ("", 9),
    ]


@pytest.mark.parametrize(
    ("text", "column", "problem"),
    [
        ('x.y{a="b} > 1', 7, 'unterminated " string'),
        ("x.y > 1 @", 9, "unexpected character '@'"),
        ("x.y > 5min", 7, "malformed number or duration '5min'"),
        ("rate(x.y[5m] > 1", 14, "expected ')' closing rate(...), got '>'"),
        ("x.y > warning", 14, "expected '=' after warning, got the end of the rule"),
        ("x.y > big", 7, "expected a threshold, got 'big'"),
        ("x.y > 1 for soon", 13, "expected a duration such as 30s, 5m or 1h, got 'soon'"),
        ("x.y > 1 for -5m", 13, "expected a duration such as 30s, 5m or 1h, got '-5m'"),
        ("x.y > 1 for 400d", 13, "a duration must be at most 365d, got 400d"),
        ("x.y{a=b} > 1", 7, "expected the value of a in quotes, got 'b'"),
        ("absent(x.y) > 1", 13, "absent(...) takes no comparison, only 'for'"),
        ("x.y >= 1", 5, "expected '>' or '<', got '>='"),
        ("max by (1) (x.y) > 1", 9, "expected a label name, got '1'"),
        ("max by (a, a) (x.y) > 1", 12, "label 'a' is listed twice"),
        ("max by (a b) (x.y) > 1", 11, "expected ',' or ')' in the label list, got 'b'"),
        ("max(absent(x.y)) > 1", 5, "absent(...) must be the whole expression"),
        ("rate(x.y[0s]) > 1", 10, "the window is 0"),
        ("rate(x.y) > 1", 9, "expected '[' and a window after rate's selector, got ')'"),
        ("5 > 1", 1, "expected a metric name, got '5'"),
        ('x.y{a="1" b="2"} > 1', 11, "expected ',' or '}', got 'b'"),
        ('x.y{a.b="1"} > 1', 5, "expected a label name, got 'a.b'"),
        ('x.y{a>"1"} > 1', 6, "expected =, !=, =~ or !~ after a, got '>'"),
        ('x.y{a=~"("} > 1', 8, "bad regex for a: missing ), unterminated subpattern"),
        ("x.y > 1 (", 9, "expected a clause (for, clear, labels, ...), got '('"),
        ("absent(x.y) warning=3", 13, "absent(...) has one level: use severity="),
        ("x.y > 1 for 1m for 2m", 16, "'for' is given twice"),
        ("x.y > 1 severity=loud", 18, "expected info, warning, critical or emergency, got 'loud'"),
        ("x.y > 1 labels 9=a", 16, "expected a label name, got '9'"),
        ("x.y > 1 labels a=1, a=2", 21, "label 'a' is given twice"),
        ("x.y > 1 labels a=(", 18, "expected the value of a, got '('"),
        ("x.y > 1 hold 5m", 9, "unknown clause 'hold'"),
        ("x.y > warning=1 warning=2", 17, "the warning level is given twice"),
        ("absent(x.y) clear 3", 13, "absent(...) has no clear threshold"),
        ("x.y clear 3", 5, "'clear' must follow a threshold"),
        ("x.y > 3 clear 2 clear 1", 17, "the warning level's clear is given twice"),
        ("x.y > warning=3 severity=critical", 17, "severity= names the level of '> NUMBER'"),
        ("x.y > 3 critical=5 severity=critical", 20, "the critical level is given twice"),
        ("x.y > 1 summary=plain", 17, "expected the summary in quotes, got 'plain'"),
    ],
)
def test_each_malformed_rule_names_its_column_and_problem(
    text: str, column: int, problem: str
) -> None:
    with pytest.raises(ExprError) as caught:
        parse(text)
    assert caught.value.column == column
    assert caught.value.problem.startswith(problem)
    assert str(caught.value).startswith(f"column {column}: ")


def test_a_rule_without_a_comparison_is_refused_at_its_levels() -> None:
    with pytest.raises(ExprError, match="expected a comparison") as caught:
        ExprRule("x", parse("x.y warning=3"))
    assert caught.value.column == 5


def test_a_clear_on_the_wrong_side_of_its_threshold_is_refused() -> None:
    with pytest.raises(ExprError, match="warning clear 12 is above its threshold 10") as caught:
        ExprRule("x", parse("x.y > 10 clear 12"))
    assert caught.value.column == 5


@pytest.mark.parametrize(
    "text",
    [
        'rabbitmq.messages_ready{queue=~"orders.*"} > warning=1000 clear 800 for 5m '
        'keep_firing_for 10m labels team="payments" summary="{queue} \\"deep\\"" runbook="https://w/q"',
        "sum by (vhost) (rate(x.y[5m])) / max (x.z) < info=0.5 critical=0.1 clear 0.2",
        'absent(process.up{target="w"}) for 10m severity=critical',
        "age(app.ping) > warning=93600",
    ],
)
def test_the_normalised_text_parses_back_to_the_same_rule(text: str) -> None:
    rule = parse(text)
    assert rule.text == text
    assert parse(rule.text) == rule
