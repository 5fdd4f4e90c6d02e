"""The built-in rule pack: defaults, durations as runs, environment overrides and errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from opswatch.config import ConfigError, Env
from opswatch.model import Sample
from opswatch.rules.builtin import BUILTIN, builtin_rules, cycles_for
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.rules.threshold import ThresholdRule

AT = datetime(2026, 1, 1, tzinfo=UTC)


def rules(environ: dict[str, str] | None = None, interval: float = 30) -> dict[str, ThresholdRule]:
    out = builtin_rules(Env(environ or {}), interval)
    assert all(isinstance(rule, ThresholdRule) for rule in out)
    return {rule.name: rule for rule in out if isinstance(rule, ThresholdRule)}


def levels(rule: ThresholdRule) -> list[tuple[str, float, float]]:
    return [(level.severity.value, level.threshold, level.release) for level in rule.levels]


def test_the_default_pack_holds_the_documented_rules() -> None:
    assert list(rules())[:9] == [
        "cpu_high",
        "memory_high",
        "swap_high",
        "load_high",
        "disk_full",
        "inodes_full",
        "http_down",
        "http_slow",
        "tls_expiry",
    ]
    pack = rules()
    assert levels(pack["cpu_high"]) == [("warning", 80, 70), ("critical", 95, 90)]
    assert levels(pack["disk_full"]) == [("warning", 85, 82), ("critical", 90, 88)]
    assert levels(pack["http_down"]) == [("critical", 1, 1)]
    assert pack["http_down"].op == "<"
    assert pack["tls_expiry"].op == "<"
    assert {"postgres_down", "redis_down", "rabbitmq_down", "process_down", "tcp_down"} <= set(pack)
    assert levels(pack["postgres_connections_high"]) == [("warning", 80, 75), ("critical", 95, 90)]
    assert levels(pack["command_status"]) == [("warning", 0.5, 0.5), ("critical", 1.5, 1.5)]


def test_every_builtin_rule_watches_a_metric_some_collector_emits() -> None:
    sources = "".join(path.read_text() for path in Path("src/opswatch/collectors").glob("*.py"))
    for rule in rules().values():
        kind, _, name = rule.metric.partition(".")
        assert f'"{name}"' in sources or f"{kind}.{name}" in sources, rule.metric


def test_durations_become_cycles_at_a_30_second_interval() -> None:
    pack = rules(interval=30)
    host_and_http = list(pack)[:9]
    assert {name: pack[name].for_cycles for name in host_and_http} == {
        "cpu_high": 20,
        "memory_high": 10,
        "swap_high": 20,
        "load_high": 20,
        "disk_full": 1,
        "inodes_full": 1,
        "http_down": 2,
        "http_slow": 2,
        "tls_expiry": 1,
    }


def test_durations_become_cycles_at_a_5_second_interval() -> None:
    pack = rules(interval=5)
    assert pack["cpu_high"].for_cycles == 120
    assert pack["memory_high"].for_cycles == 60
    assert pack["disk_full"].for_cycles == 1
    assert pack["http_down"].for_cycles == 2  # a count of runs, not a duration


def test_cycles_round_up_and_never_fall_below_one() -> None:
    assert cycles_for(0, 30) == 1
    assert cycles_for(45, 30) == 2
    assert cycles_for(60, 30) == 2
    assert cycles_for(1.1, 0.1) == 11
    with pytest.raises(ValueError, match="interval"):
        cycles_for(60, 0)


def test_a_threshold_override_keeps_the_default_hysteresis_gap() -> None:
    cpu = rules({"OPSWATCH_RULE_CPU_HIGH_WARNING": "50"})["cpu_high"]
    assert levels(cpu) == [("warning", 50, 40), ("critical", 95, 90)]


def test_a_clear_override_sets_the_hysteresis_threshold() -> None:
    cpu = rules({"OPSWATCH_RULE_CPU_HIGH_CRITICAL_CLEAR": "80"})["cpu_high"]
    assert levels(cpu)[1] == ("critical", 95, 80)


def test_clear_off_removes_the_hysteresis() -> None:
    cpu = rules({"OPSWATCH_RULE_CPU_HIGH_WARNING_CLEAR": "off"})["cpu_high"]
    assert levels(cpu)[0] == ("warning", 80, 80)


def test_off_disables_one_level() -> None:
    cpu = rules({"OPSWATCH_RULE_CPU_HIGH_WARNING": "off"})["cpu_high"]
    assert levels(cpu) == [("critical", 95, 90)]


def test_a_rule_with_every_level_off_is_omitted() -> None:
    pack = rules(
        {"OPSWATCH_RULE_TLS_EXPIRY_WARNING": "off", "OPSWATCH_RULE_TLS_EXPIRY_CRITICAL": "off"}
    )
    assert "tls_expiry" not in pack
    assert "http_down" in pack


def test_a_malformed_threshold_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        rules({"OPSWATCH_RULE_CPU_HIGH_WARNING": "eighty"})
    assert caught.value.variable == "OPSWATCH_RULE_CPU_HIGH_WARNING"
    assert "eighty" in str(caught.value)


def test_a_clear_above_the_threshold_is_a_config_error_naming_the_clear_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        rules({"OPSWATCH_RULE_DISK_FULL_WARNING_CLEAR": "87"})
    assert caught.value.variable == "OPSWATCH_RULE_DISK_FULL_WARNING_CLEAR"
    assert "above the alert threshold 85" in str(caught.value)


def test_a_clear_below_the_threshold_of_a_below_rule_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        rules({"OPSWATCH_RULE_TLS_EXPIRY_WARNING_CLEAR": "7"})
    assert caught.value.variable == "OPSWATCH_RULE_TLS_EXPIRY_WARNING_CLEAR"


def test_for_overrides_the_duration() -> None:
    assert rules({"OPSWATCH_RULE_CPU_HIGH_FOR": "2m"})["cpu_high"].for_cycles == 4
    assert rules({"OPSWATCH_RULE_HTTP_DOWN_FOR": "0"})["http_down"].for_cycles == 1


def test_for_cycles_overrides_the_duration() -> None:
    pack = rules(
        {"OPSWATCH_RULE_HTTP_DOWN_FOR_CYCLES": "3", "OPSWATCH_RULE_CPU_HIGH_FOR_CYCLES": "1"}
    )
    assert pack["http_down"].for_cycles == 3
    assert pack["cpu_high"].for_cycles == 1


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OPSWATCH_RULE_CPU_HIGH_FOR_CYCLES": "0"}, "OPSWATCH_RULE_CPU_HIGH_FOR_CYCLES"),
        ({"OPSWATCH_RULE_CPU_HIGH_FOR_CYCLES": "two"}, "OPSWATCH_RULE_CPU_HIGH_FOR_CYCLES"),
        ({"OPSWATCH_RULE_CPU_HIGH_FOR": "soon"}, "OPSWATCH_RULE_CPU_HIGH_FOR"),
        (
            {"OPSWATCH_RULE_CPU_HIGH_FOR": "5m", "OPSWATCH_RULE_CPU_HIGH_FOR_CYCLES": "2"},
            "OPSWATCH_RULE_CPU_HIGH_FOR_CYCLES",
        ),
    ],
)
def test_a_bad_duration_is_a_config_error_naming_the_variable(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        rules(environ)
    assert caught.value.variable == variable


def test_every_variable_of_a_rule_is_read_so_typos_show_as_unknown() -> None:
    env = Env({"OPSWATCH_RULE_CPU_HIGH_WARNNG": "50", "OPSWATCH_RULE_CPU_HIGH_WARNING": "off"})
    builtin_rules(env, 30)
    assert [u.name for u in env.unknown(())] == ["OPSWATCH_RULE_CPU_HIGH_WARNNG"]
    assert "OPSWATCH_RULE_CPU_HIGH_WARNING_CLEAR" in env.read


def test_spec_names_are_unique_snake_case() -> None:
    names = [spec.name for spec in BUILTIN]
    assert len(set(names)) == len(names)
    assert all(name.islower() and " " not in name for name in names)


def test_the_builtin_summaries_render_with_real_labels() -> None:
    evaluator = RuleEvaluator(builtin_rules(Env({}), 30))
    partition = {"device": "/dev/sda1", "mountpoint": "/var", "fstype": "ext4"}
    host = evaluator.evaluate(
        "host",
        [
            Sample("host", "host.disk_used_percent", 91.26, AT, partition),
            Sample("host", "host.inodes_used_percent", 95.0, AT, partition),
        ],
    )
    assert [f.summary for f in host.findings] == [
        "disk /var is 91.3% full (threshold 90%)",
        "inodes on /var are 95.0% used (threshold 90%)",
    ]
    http = evaluator.evaluate("http:api", [Sample("http:api", "http.tls_days_left", 2.2, AT)])
    assert [f.summary for f in http.findings] == [
        "http:api TLS certificate expires in 2 days (threshold 3)"
    ]
