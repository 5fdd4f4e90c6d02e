"""User rules from OPSWATCH_RULE_<NAME> and OPSWATCH_RULES_FILE: replacing and narrowing
built-ins, the threshold variables beside them, origins, and every error's place."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opswatch.config import ConfigError
from opswatch.daemon.cli import main
from opswatch.daemon.configure import AppConfig, load_config
from opswatch.model import Sample, Severity
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.rules.query import ExprRule
from opswatch.rules.threshold import ThresholdRule

AT = datetime(2026, 1, 1, tzinfo=UTC)


def config(tmp_path: Path, **environ: str) -> AppConfig:
    return load_config({"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"), **environ})


def by_name(cfg: AppConfig) -> dict[str, object]:
    return {rule.name: rule for rule in cfg.rules}


def test_a_rule_variable_adds_a_rule_named_after_it(tmp_path: Path) -> None:
    cfg = config(tmp_path, OPSWATCH_RULE_LOAD_SPIKE="host.load1_per_core > 8 for 2m")
    rule = by_name(cfg)["load_spike"]
    assert isinstance(rule, ExprRule)
    assert rule.expr.for_seconds == 120
    assert cfg.rule_origins["load_spike"] == "OPSWATCH_RULE_LOAD_SPIKE"
    assert cfg.rule_origins["cpu_high"] == "built-in"
    assert cfg.rules[-1] is rule


def test_a_user_rule_with_a_builtins_name_replaces_it_in_place(tmp_path: Path) -> None:
    cfg = config(tmp_path, OPSWATCH_RULE_CPU_HIGH="host.cpu_percent > 99 severity=critical")
    names = [rule.name for rule in cfg.rules]
    assert names.count("cpu_high") == 1
    assert names[0] == "cpu_high"
    assert isinstance(cfg.rules[0], ExprRule)
    assert cfg.rule_origins["cpu_high"] == "OPSWATCH_RULE_CPU_HIGH (replaces the built-in)"


def test_the_threshold_variables_keep_working_beside_user_rules(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        OPSWATCH_RULE_CPU_HIGH_WARNING="50",
        OPSWATCH_RULE_CPU_HIGH_CRITICAL_CLEAR="80",
        OPSWATCH_RULE_MEMORY_HIGH_FOR="1m",
        OPSWATCH_RULE_HTTP_DOWN_FOR_CYCLES="3",
        OPSWATCH_RULE_SWAP_HIGH_WARNING="off",
        OPSWATCH_RULE_MINE="host.cpu_percent > 1",
    )
    rules = by_name(cfg)
    cpu = rules["cpu_high"]
    assert isinstance(cpu, ThresholdRule)
    assert [lv.threshold for lv in cpu.levels] == [50, 95]
    assert "swap_high" not in rules
    assert sorted(n for n, o in cfg.rule_origins.items() if o != "built-in") == ["mine"]
    assert not cfg.unknown_variables


def test_a_narrowing_takes_its_series_from_the_builtin(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        OPSWATCH_RULE_DISK_DATA='disk_full{mountpoint="/data"} warning=95 labels team=storage',
    )
    rules = by_name(cfg)
    data, disk = rules["disk_data"], rules["disk_full"]
    assert isinstance(data, ExprRule)
    assert isinstance(disk, ThresholdRule)
    evaluator = RuleEvaluator(cfg.rules)

    def sample(mountpoint: str, value: float) -> Sample:
        return Sample("host", "host.disk_used_percent", value, AT, {"mountpoint": mountpoint})

    found = evaluator.evaluate("host", [sample("/", 87), sample("/data", 87)]).findings
    assert [(f.rule, f.labels["mountpoint"]) for f in found] == [("disk_full", "/")]
    found = evaluator.evaluate("host", [sample("/", 50), sample("/data", 96)]).findings
    assert [(f.rule, f.labels, f.summary) for f in found] == [
        (
            "disk_data",
            {"mountpoint": "/data", "team": "storage"},
            "disk /data is 96.0% full (threshold 95%)",
        )
    ]
    # the clear keeps the built-in's distance (85 -> 82: 95 -> 92)
    assert data.describe()["levels"] == [{"severity": "warning", "threshold": 95.0, "clear": 92.0}]
    assert disk.describe()["unless"] == ['host.disk_used_percent{mountpoint="/data"}']


def test_a_narrowing_keeps_the_builtins_debounce_as_a_duration(tmp_path: Path) -> None:
    cfg = config(tmp_path, OPSWATCH_RULE_API_DOWN='http_down{target="api"} critical=1')
    rule = by_name(cfg)["api_down"]
    assert isinstance(rule, ExprRule)
    assert (rule.expr.op, rule.expr.for_seconds) == ("<", 30.0)  # 2 runs at 30 s


RULES_FILE = """\
# queues of the payments team
orders_deep = 'rabbitmq.messages_ready{queue=~"orders.*"} > 1000 for 5m labels team=payments'

worker_gone = '''
  absent(process.up{target="worker"})
  for 10m severity=critical'''
"""


def test_a_rules_file_holds_one_rule_per_entry(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES_FILE)
    cfg = config(tmp_path, OPSWATCH_RULES_FILE=str(path))
    rules = by_name(cfg)
    assert isinstance(rules["orders_deep"], ExprRule)
    worker = rules["worker_gone"]
    assert isinstance(worker, ExprRule)
    assert worker.expr.absent
    assert worker.expr.levels[0].severity == Severity.CRITICAL
    assert cfg.rule_origins["orders_deep"] == f"{path}, line 2"
    assert cfg.rule_origins["worker_gone"] == f"{path}, line 4"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a = 'host.cpu_percent > 1 for x'\n", "line 1, column 31: expected a duration"),
        ('\n\nb = "host.cpu_percent >"\n', "line 3, column 24: expected a threshold"),
        (
            "c = '''\n  host.cpu_percent\n    > 1 hold'''\n",
            "line 3, column 9: unknown clause 'hold'",
        ),
        ("d = 5\n", "line 1: d must be a rule expression in quotes"),
        ("Bad-Name = 'x.y > 1'\n", "line 1: a rule name must be snake_case, got 'Bad-Name'"),
        ("e = = 'x'\n", "(at line 1, column 5)"),
    ],
)
def test_a_file_error_names_the_file_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, OPSWATCH_RULES_FILE=str(path))
    assert caught.value.variable == "OPSWATCH_RULES_FILE"
    assert caught.value.problem.startswith(f"{path}")
    assert where in caught.value.problem


@pytest.mark.parametrize(
    ("environ", "variable", "problem"),
    [
        (
            {"OPSWATCH_RULE_X": "host.cpu_percent > "},
            "OPSWATCH_RULE_X",
            "column 19: expected a threshold",
        ),
        (
            {"OPSWATCH_RULE_9X": "host.cpu_percent > 1"},
            "OPSWATCH_RULE_9X",
            "a rule name must be snake_case",
        ),
        (
            {"OPSWATCH_RULE_X": 'nothing_here{a="b"} warning=1'},
            "OPSWATCH_RULE_X",
            "column 1: 'nothing_here' is neither a metric",
        ),
        (
            {"OPSWATCH_RULE_X": "disk_full warning=1"},
            "OPSWATCH_RULE_X",
            "column 1: narrowing disk_full needs label matchers",
        ),
        (
            {
                "OPSWATCH_RULE_X": 'disk_full{a="b"} warning=1',
                "OPSWATCH_RULE_DISK_FULL": "host.x > 1",
            },
            "OPSWATCH_RULE_X",
            "column 1: disk_full is replaced by a user rule",
        ),
    ],
)
def test_a_variable_error_names_the_variable_and_column(
    tmp_path: Path, environ: dict[str, str], variable: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, **environ)
    assert caught.value.variable == variable
    assert caught.value.problem.startswith(problem)


def test_a_rule_in_both_a_variable_and_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("dup = 'x.y > 1'\n")
    with pytest.raises(ConfigError, match="rule 'dup' is defined twice"):
        config(tmp_path, OPSWATCH_RULES_FILE=str(path), OPSWATCH_RULE_DUP="x.y > 2")


def test_a_malformed_rule_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(tmp_path / "s.sqlite3"))
    monkeypatch.setenv("OPSWATCH_RULE_ORDERS", 'rabbitmq.messages_ready{queue=~"orders.*" > 1')
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "opswatch: configuration error: OPSWATCH_RULE_ORDERS: column 43: "
        "expected ',' or '}', got '>'"
    ]


def test_check_config_prints_every_rule_with_its_origin_and_what_matches_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(tmp_path / "s.sqlite3"))
    monkeypatch.setenv("OPSWATCH_RULE_ORDERS", 'rabbitmq.messages_ready{queue=~"orders.*"} > 1000')
    monkeypatch.setenv("OPSWATCH_RULE_HOT", "max(host.cpu_percent) > 99")
    assert main(["check-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    rules = {rule["name"]: rule for rule in printed["rules"]}
    assert rules["orders"]["origin"] == "OPSWATCH_RULE_ORDERS"
    assert rules["orders"]["expression"] == 'rabbitmq.messages_ready{queue=~"orders.*"}'
    assert rules["hot"]["expression"] == "max (host.cpu_percent)"
    assert rules["cpu_high"]["origin"] == "built-in"
    assert printed["rules_matching_nothing"] == [
        {"rule": "orders", "metric": "rabbitmq.messages_ready"}
    ]


def test_a_misspelt_threshold_variable_is_reported_as_unknown_not_read_as_a_rule(
    tmp_path: Path,
) -> None:
    cfg = config(
        tmp_path,
        OPSWATCH_RULE_CPU_HIGH_WARNNG="50",
        OPSWATCH_RULE_MEMORY_HIGH_FOOR="5m",
        OPSWATCH_RULE_DISK_FULL_CRITICL="off",
    )
    assert {u.name: u.closest for u in cfg.unknown_variables} == {
        "OPSWATCH_RULE_CPU_HIGH_WARNNG": "OPSWATCH_RULE_CPU_HIGH_WARNING",
        "OPSWATCH_RULE_MEMORY_HIGH_FOOR": "OPSWATCH_RULE_MEMORY_HIGH_FOR",
        "OPSWATCH_RULE_DISK_FULL_CRITICL": "OPSWATCH_RULE_DISK_FULL_CRITICAL",
    }
    assert set(cfg.rule_origins.values()) == {"built-in"}
