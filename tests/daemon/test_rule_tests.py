"""``opswatch test-rules``: input series on a fake clock against the expected alerts."""

from __future__ import annotations

from pathlib import Path

import pytest

from opswatch.daemon.cli import main
from opswatch.daemon.rule_tests import RuleTestError, expand_values, load_suite

ORDERS = 'rabbitmq.messages_ready{queue=~"orders.*"} > 1000 for 5m clear 800 labels team=payments'

SUITE = """\
interval = "1m"

[[series]]
metric = "rabbitmq.messages_ready"
check = "rabbitmq:mq"
labels = { queue = "orders.eu", target = "mq" }
values = "500 1500x6 900 700"

[[series]]
metric = "rabbitmq.messages_ready"
check = "rabbitmq:mq"
labels = { queue = "billing", target = "mq" }
values = "5000x9"

[[alert]]
at = "5m"
rule = "orders_deep"
firing = []

[[alert]]
at = "390s"
rule = "orders_deep"
firing = [
  { severity = "warning", labels = { queue = "orders.eu", target = "mq", team = "payments" } },
]

[[alert]]
at = "7m"
rule = "orders_deep"
firing = [
  { severity = "warning", summary = "orders.eu holds 900", labels = { queue = "orders.eu", \
target = "mq", team = "payments" } },
]

[[alert]]
at = "8m"
firing = []
"""


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(tmp_path / "s.sqlite3"))
    path = tmp_path / "orders.toml"
    path.write_text(SUITE)
    return path


def test_the_rules_pass_when_the_alerts_are_the_expected_ones(
    suite: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_RULE_ORDERS_DEEP", ORDERS + ' summary="{queue} holds {value:.0f}"')
    assert main(["test-rules", str(suite)]) == 0
    assert capsys.readouterr().out == "ok: 4 expectations met (2 series)\n"


def test_a_rule_that_fires_otherwise_exits_1_with_a_diff(
    suite: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a shorter wait fires at 4m; a higher clear resolves at 7m
    faster = ORDERS.replace("for 5m clear 800", "for 3m clear 950")
    monkeypatch.setenv("OPSWATCH_RULE_ORDERS_DEEP", faster + ' summary="{queue} holds {value:.0f}"')
    assert main(["test-rules", str(suite)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "at 5m, rule orders_deep:",
        '  + warning {queue="orders.eu", target="mq", team="payments"} \'orders.eu holds 1500\'',
        "at 7m, rule orders_deep:",
        '  - warning {queue="orders.eu", target="mq", team="payments"} \'orders.eu holds 900\'',
    ]


def test_an_expectation_for_an_unknown_rule_is_a_difference(
    suite: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["test-rules", str(suite)]) == 1
    assert capsys.readouterr().out == "at 5m: no rule named 'orders_deep' is configured\n"


def test_builtin_rules_are_tested_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(tmp_path / "s.sqlite3"))
    path = tmp_path / "disk.toml"
    path.write_text(
        '[[series]]\nmetric = "host.disk_used_percent"\ncheck = "host"\n'
        'labels = { mountpoint = "/" }\nvalues = "80 86 89 91 83 81"\n'
        '[[alert]]\nat = "30s"\nrule = "disk_full"\n'
        'firing = [{ severity = "warning", labels = { mountpoint = "/" } }]\n'
        '[[alert]]\nat = "90s"\nrule = "disk_full"\n'
        'firing = [{ severity = "critical", labels = { mountpoint = "/" } }]\n'
        '[[alert]]\nat = "150s"\nrule = "disk_full"\nfiring = []\n'
    )
    assert main(["test-rules", str(path)]) == 0, capsys.readouterr().out


def test_values_expand_repeats_steps_and_gaps() -> None:
    assert expand_values("v", "1 _ 5x3 0+10x4 -1-1x2 _x2 1e3") == (
        1,
        None,
        5,
        5,
        5,
        0,
        10,
        20,
        30,
        -1,
        -2,
        None,
        None,
        1000,
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "[[series]]\nmetric = 'x.y'\nvalues = '1 two'\n",
            "[[series]] 1: values: cannot read 'two' (item 2)",
        ),
        ("[[series]]\nmetric = 'x.y'\nvalues = '1x0'\n", "[[series]] 1: values: cannot read '1x0'"),
        ("[[series]]\nmetric = 'xy'\nvalues = '1'\n", "[[series]] 1: metric must be a name"),
        (
            "[[series]]\nmetric = 'x.y'\nvalues = '1'\ncolour = 1\n",
            "[[series]] 1: unknown key 'colour'",
        ),
        (
            "[[series]]\nmetric = 'x.y'\nvalues = '1'\n[[alert]]\nrule = 'a'\n",
            "[[alert]] 1: at is required",
        ),
        (
            "[[series]]\nmetric = 'x.y'\nvalues = '1'\n[[alert]]\nat = 'soon'\n",
            "[[alert]] 1: at: expected a duration",
        ),
        (
            "[[series]]\nmetric = 'x.y'\nvalues = '1'\n"
            "[[alert]]\nat = 1\nfiring = [{severity = 'bad'}]\n",
            "[[alert]] 1: severity must be",
        ),
        ("interval = '1m'\n", "no [[series]]"),
        ("interval = \n", "Invalid value"),
    ],
)
def test_a_malformed_test_file_is_named_with_its_entry(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(RuleTestError) as caught:
        load_suite(str(path), 30.0)
    assert str(caught.value).startswith(f"{path}: {problem}")


def test_a_malformed_test_file_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(tmp_path / "s.sqlite3"))
    assert main(["test-rules", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"opswatch: test file error: cannot read '{tmp_path / 'missing.toml'}': "
        "No such file or directory"
    ]
