"""Configuration: every malformed variable stops start-up naming the variable; secrets masked."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from opswatch.collectors import COLLECTORS
from opswatch.config import ConfigError, Env, Secret, mask_url, target_variable
from opswatch.daemon.cli import main
from opswatch.daemon.configure import load_config

BAD_VALUES = [
    ("OPSWATCH_INTERVAL", "often"),
    ("OPSWATCH_INTERVAL", "0.5s"),
    ("OPSWATCH_CHECK_TIMEOUT", "5 minutes"),
    ("OPSWATCH_CHECK_TIMEOUT", "45s"),
    ("OPSWATCH_CHECKS", "host,nosuchcheck"),
    ("OPSWATCH_CHECKS", "host,host"),
    ("OPSWATCH_API_LISTEN", "9184"),
    ("OPSWATCH_API_LISTEN", "127.0.0.1:99999"),
    ("OPSWATCH_LOG_FORMAT", "xml"),
    ("OPSWATCH_LOG_LEVEL", "loud"),
    ("OPSWATCH_SHUTDOWN_GRACE", "-1"),
    ("OPSWATCH_REPEAT_CRITICAL", "1s"),
    ("OPSWATCH_WEBHOOK_URL", "ftp://example.com/hook"),
    ("OPSWATCH_WEBHOOK_URL", "not a url"),
    ("OPSWATCH_HTTP_TARGETS", "http://no-name.example.com"),
    ("OPSWATCH_HTTP_TARGETS", "api=gopher://x"),
    ("OPSWATCH_HTTP_TARGETS", "api=http://a,api=http://b"),
    ("OPSWATCH_RULE_CPU_HIGH_WARNING", "eighty"),
    ("OPSWATCH_RULE_DISK_FULL_FOR", "soon"),
    ("OPSWATCH_RULE_CPU_HIGH_WARNING_CLEAR", "99"),
    ("OPSWATCH_RETRY_INTERVAL", "0.1s"),
    ("OPSWATCH_HOST_TCP_STATES_INTERVAL", "sometimes"),
    ("OPSWATCH_HTTP_TIMEOUT", "fast"),
    ("OPSWATCH_HTTP_EXPECT_STATUS", "ok"),
    ("OPSWATCH_POSTGRES_TARGETS", "main=mysql://db/x"),
    ("OPSWATCH_POSTGRES_TIMEOUT", "-5"),
    ("OPSWATCH_REDIS_TARGETS", "cache=http://127.0.0.1:6379"),
    ("OPSWATCH_RABBITMQ_TARGETS", "mq=amqp://guest:guest@127.0.0.1:5672"),
    ("OPSWATCH_RABBITMQ_QUEUES_INCLUDE", "(["),
    ("OPSWATCH_TCP_TARGETS", "db=127.0.0.1"),
    ("OPSWATCH_PROCESS_TARGETS", "web=guess:nginx"),
    ("OPSWATCH_COMMAND_TARGETS", "x=relative/path"),
    ("OPSWATCH_FILE_TARGETS", "backups=relative/*.dump"),
    ("OPSWATCH_HEARTBEAT_TARGETS", "backup=1d"),
    ("OPSWATCH_PROMETHEUS_TARGETS", "api=ftp://app/metrics"),
    ("OPSWATCH_WEBHOOK_TIMEOUT", "never"),
    ("OPSWATCH_REPEAT_WARNING", "often"),
    ("OPSWATCH_FLAPPING_HIGH", "lots"),
    ("OPSWATCH_LADDER", "warning>critical"),
    ("OPSWATCH_LADDER_NO_SUCH_RULE", "warning>critical:30m"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_malformed_variable_exits_2_with_one_line_naming_it(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable, value)
    kind = variable.removeprefix("OPSWATCH_").split("_")[0].lower()
    if kind in COLLECTORS and kind != "host" and not variable.endswith("_TARGETS"):
        # options are read only for an enabled collector: give it a valid target
        valid = {
            "http": "api=http://127.0.0.1:1/",
            "postgres": "main=postgresql://h/db",
            "rabbitmq": "mq=http://h:15672",
        }
        monkeypatch.setenv(f"OPSWATCH_{kind.upper()}_TARGETS", valid[kind])
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert variable in err[0]


def test_defaults_need_no_variable(tmp_path: Path) -> None:
    config = load_config({"STATE_DIRECTORY": str(tmp_path)})
    settings = config.settings
    assert settings.interval == 30.0
    assert settings.checks == ("host",)
    assert settings.api_listen == ("127.0.0.1", 9184)
    assert [c.check for c in config.collectors] == ["host", "capacity"]  # forecasts: history on


def test_configured_http_targets_enable_the_http_check() -> None:
    config = load_config({"OPSWATCH_HTTP_TARGETS": "api=http://127.0.0.1:8000/health"})
    assert config.settings.checks == ("host", "http")
    assert [c.check for c in config.collectors] == ["host", "http:api", "capacity"]


def test_enabled_check_without_targets_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"OPSWATCH_CHECKS": "host,http"})
    assert info.value.variable == "OPSWATCH_HTTP_TARGETS"


def test_durations_accept_units() -> None:
    env = Env({"A": "500ms", "B": "5m", "C": "2", "D": "1h"})
    assert env.duration("A", 0) == 0.5
    assert env.duration("B", 0) == 300
    assert env.duration("C", 0) == 2
    assert env.duration("D", 0) == 3600


def test_secret_is_read_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "hook"
    secret_file.write_text("https://hooks.example.com/T0/B0/topsecret\n")
    env = Env({"OPSWATCH_WEBHOOK_URL_FILE": str(secret_file)})
    (url,) = env.urls("OPSWATCH_WEBHOOK_URL", hide_path=True)
    assert url.reveal() == "https://hooks.example.com/T0/B0/topsecret"
    assert "topsecret" not in str(url)
    assert "topsecret" not in repr(url)


def test_unreadable_secret_file_names_the_file_variable(tmp_path: Path) -> None:
    env = Env({"OPSWATCH_WEBHOOK_URL_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError) as info:
        env.urls("OPSWATCH_WEBHOOK_URL", hide_path=True)
    assert info.value.variable == "OPSWATCH_WEBHOOK_URL_FILE"


def test_secret_and_secret_file_together_are_refused(tmp_path: Path) -> None:
    env = Env({"X": "a", "X_FILE": str(tmp_path)})
    with pytest.raises(ConfigError, match="not both"):
        env.secret("X")


def test_masked_urls_hide_passwords_tokens_and_webhook_paths() -> None:
    assert mask_url("postgresql://app:pw@db:5432/x", hide_path=False) == (
        "postgresql://app:***@db:5432/x"
    )
    assert mask_url("https://h.example.com/hook/abc?token=t1", hide_path=True) == (
        "https://h.example.com/***?***"
    )
    assert mask_url("http://h/health?key=k", hide_path=False) == "http://h/health?key=***"
    assert str(Secret("x")) == "***"


def test_check_config_prints_effective_configuration_without_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_WEBHOOK_URL", "https://hooks.example.com/services/T0/B0/s3cr3t")
    monkeypatch.setenv("OPSWATCH_HTTP_TARGETS", "api=http://user:hunter2@127.0.0.1:8000/health")
    monkeypatch.setenv("OPSWATCH_INTERVALL", "10s")
    monkeypatch.delenv("OPSWATCH_REQUIRE_SERVICES", raising=False)  # set by CI for the tests
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "s3cr3t" not in out
    assert "hunter2" not in out
    effective = json.loads(out)
    assert effective["checks"] == ["host", "http"]
    assert "http:api" in effective["collectors"]
    assert effective["unknown_variables"] == [
        {"variable": "OPSWATCH_INTERVALL", "closest": "OPSWATCH_INTERVAL"}
    ]


def test_specs_split_at_newlines_and_at_commas_that_start_a_name() -> None:
    env = Env({"V": "a=cmdline:x,y{1,2}\nB-2 = name:z, c=w"})
    assert env.specs("V") == (("a", "cmdline:x,y{1,2}"), ("b-2", "name:z"), ("c", "w"))
    assert Env({}).specs("V") == ()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a=x,a=y", "listed twice"),
        ("my-app=x,my_app=y", "collide"),
        ("a=x\n9lives=y", "expected name=SPEC items"),
        ("a=", "expected name=SPEC items"),
        ("no-name", "expected name=SPEC items"),
    ],
)
def test_specs_refuse_malformed_or_ambiguous_names(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        Env({"V": value}).specs("V")
    assert info.value.variable == "V"


def test_secret_specs_come_from_a_file_and_errors_show_only_the_name(tmp_path: Path) -> None:
    secret_file = tmp_path / "targets"
    secret_file.write_text("db=check_pg --password hunter2\n")
    assert Env({"V_FILE": str(secret_file)}).specs("V", secret=True) == (
        ("db", "check_pg --password hunter2"),
    )
    with pytest.raises(ConfigError) as info:
        Env({"V": "db=x\nbad name=--password hunter2"}).specs("V", what="COMMAND", secret=True)
    assert "hunter2" not in str(info.value)
    assert "name=COMMAND" in str(info.value)


def test_targets_share_the_splitter_and_refuse_colliding_names() -> None:
    env = Env({"V": "a=http://h/x?q=1,2\nb=https://h/"})
    assert [(t.name, t.url.reveal()) for t in env.targets("V")] == [
        ("a", "http://h/x?q=1,2"),
        ("b", "https://h/"),
    ]
    with pytest.raises(ConfigError, match="collide"):
        Env({"V": "my-api=http://h/,my_api=http://h/"}).targets("V")


def test_target_variable_upper_cases_the_target_and_dashes_become_underscores() -> None:
    assert target_variable("tcp", "my-db", "TIMEOUT") == "OPSWATCH_TCP_MY_DB_TIMEOUT"


# --- values that must be refused (issue 11, item 14) ------------------------------------

HUGE = "1" * 100_000


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OPSWATCH_INTERVAL", "1000000000d"),
        ("OPSWATCH_INTERVAL", HUGE),
        ("OPSWATCH_REPEAT_CRITICAL", "400d"),
        ("OPSWATCH_RULE_CPU_HIGH_WARNING", HUGE),
        ("OPSWATCH_API_LISTEN", "no-such-host.invalid:9184"),
        ("OPSWATCH_WEBHOOK_URL", "https://hooks.example.com/a b"),
        ("OPSWATCH_WEBHOOK_URL", "https://hooks.example.com/a\x01b"),
        ("OPSWATCH_HTTP_TARGETS", "api=http://127.0.0.1:8000/he alth"),
        ("OPSWATCH_STATE_URL", "postgresql://db/x y"),
    ],
)
def test_values_too_large_unresolvable_or_with_spaces_exit_2_with_one_short_line(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["check-config"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1
    assert variable in err[0]
    assert len(err[0]) < 300
    assert captured.out == ""


def test_an_overflowing_interval_binds_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.sqlite3"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OPSWATCH_INTERVAL", "1000000000d")
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(state))
    monkeypatch.setenv("OPSWATCH_API_LISTEN", f"127.0.0.1:{port}")
    assert main(["run"]) == 2
    assert "OPSWATCH_INTERVAL: expected at most 365d" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_longest_duration_is_accepted_and_prints_valid_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_INTERVAL", "365d")
    assert main(["check-config"]) == 0
    assert json.loads(capsys.readouterr().out)["interval_s"] == 365 * 86400


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "invalid_utf8", "too_large"])
def test_a_secret_file_must_be_a_regular_utf8_file_of_at_most_1_mib(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hook"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "invalid_utf8":
        path.write_bytes(b"https://hooks.example.com/\xff\xfe")
    else:
        path.write_bytes(b"https://hooks.example.com/" + b"a" * (1024 * 1024))
    monkeypatch.setenv("OPSWATCH_WEBHOOK_URL_FILE", str(path))
    assert main(["check-config"]) == 2  # a FIFO would block here: no writer ever comes
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "OPSWATCH_WEBHOOK_URL_FILE" in line
    assert str(path) in line


# --- header injection (item 3) ----------------------------------------------------------

EMAIL = {
    "OPSWATCH_EMAIL_SMTP_URL": "smtp://127.0.0.1:2525",
    "OPSWATCH_EMAIL_FROM": "opswatch@example.com",
    "OPSWATCH_EMAIL_TO": "ops@example.com",
}


@pytest.mark.parametrize(
    ("environ", "variable", "secret"),
    [
        (
            {**EMAIL, "OPSWATCH_EMAIL_FROM": "a@example.com\r\nBcc: x@evil.example"},
            "OPSWATCH_EMAIL_FROM",
            None,
        ),
        (
            {**EMAIL, "OPSWATCH_EMAIL_TO": "ops@example.com\nBcc: x@evil.example"},
            "OPSWATCH_EMAIL_TO",
            None,
        ),
        (
            {
                "OPSWATCH_SLACK_TOKEN": "xoxb-SECRETTOKEN\r\nX-Evil: 1",
                "OPSWATCH_SLACK_CHANNEL": "#ops",
            },
            "OPSWATCH_SLACK_TOKEN",
            "SECRETTOKEN",
        ),
        (
            {
                "OPSWATCH_WEBHOOK_URL": "https://h.example.com/x",
                "OPSWATCH_WEBHOOK_HEADERS": "Authorization: Bearer SECRETBEARER\r\nX-Evil: 1",
            },
            "OPSWATCH_WEBHOOK_HEADERS",
            "SECRETBEARER",
        ),
        (
            {
                "OPSWATCH_WEBHOOK_URL": "https://h.example.com/x",
                "OPSWATCH_WEBHOOK_HEADERS": "Authorization: Bearer SECRETBEARER\rX",
            },
            "OPSWATCH_WEBHOOK_HEADERS",
            "SECRETBEARER",
        ),
        (
            {
                "OPSWATCH_WEBHOOK_URL": "https://h.example.com/x",
                "OPSWATCH_WEBHOOK_HEADERS": "X-Team: SECRETTEAM\x1b[2Jevil",
            },
            "OPSWATCH_WEBHOOK_HEADERS",
            "SECRETTEAM",
        ),
    ],
)
def test_line_breaks_in_mail_or_http_header_values_exit_2_without_the_value(
    environ: dict[str, str],
    variable: str,
    secret: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert variable in line
    assert "evil" not in line
    if secret is not None:
        assert secret not in line


def test_a_line_break_in_a_slack_token_file_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("xoxb-SECRETTOKEN\nX-Evil: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config({"OPSWATCH_SLACK_TOKEN_FILE": str(token), "OPSWATCH_SLACK_CHANNEL": "#ops"})
    assert info.value.variable == "OPSWATCH_SLACK_TOKEN"
    assert "SECRETTOKEN" not in str(info.value)


# --- typos (item 15) --------------------------------------------------------------------


def test_every_unread_name_is_reported_with_the_closest_known_name() -> None:
    config = load_config(
        {
            "OPSWATCH_HTTP_TARGETS": "api=http://127.0.0.1:8000/health",
            "OPSWATCH_POSTGRES_TARGETS": "main=postgresql://127.0.0.1/test",
            "OPSWATCH_INTERVALL": "10s",
            "OPSWATCH_HTTP_TIMOUT": "3s",
            "OPSWATCH_HTTP_API_BODY_CONTAIN": "ok",
            "OPSWATCH_POSTGRES_TIMEOUTS": "3s",
            "OPSWATCH_RULE_CPU_HIGH_WARNNG": "50",
            "OPSWATCH_RULE_DISK_FULL_FOOR": "5m",
            "OPSWATCH_WEBHOOK_URLS": "https://h.example.com/x",
            "OPSWATCH_NOTHING_LIKE_IT": "1",
        }
    )
    assert {u.name: u.closest for u in config.unknown_variables} == {
        "OPSWATCH_INTERVALL": "OPSWATCH_INTERVAL",
        "OPSWATCH_HTTP_TIMOUT": "OPSWATCH_HTTP_TIMEOUT",
        "OPSWATCH_HTTP_API_BODY_CONTAIN": "OPSWATCH_HTTP_API_BODY_CONTAINS",
        "OPSWATCH_POSTGRES_TIMEOUTS": "OPSWATCH_POSTGRES_TIMEOUT",
        "OPSWATCH_RULE_CPU_HIGH_WARNNG": "OPSWATCH_RULE_CPU_HIGH_WARNING",
        "OPSWATCH_RULE_DISK_FULL_FOOR": "OPSWATCH_RULE_DISK_FULL_FOR",
        "OPSWATCH_WEBHOOK_URLS": "OPSWATCH_WEBHOOK_URL",
        "OPSWATCH_NOTHING_LIKE_IT": None,
    }


def test_options_of_a_collector_that_is_not_enabled_are_reported() -> None:
    config = load_config({"OPSWATCH_REDIS_TIMEOUT": "3s"})
    assert [u.name for u in config.unknown_variables] == ["OPSWATCH_REDIS_TIMEOUT"]


# --- target lists (items 16, 17) --------------------------------------------------------


def test_quoted_commas_never_start_a_new_item() -> None:
    env = Env(
        {
            "V": 'ldap=check_ldap -b "dc=example,dc=com" -3,'
            "other=check_x 'a,b=c',esc=check_y a\\,b=c\nlast=z"
        }
    )
    assert env.specs("V") == (
        ("ldap", 'check_ldap -b "dc=example,dc=com" -3'),
        ("other", "check_x 'a,b=c'"),
        ("esc", "check_y a\\,b=c"),
        ("last", "z"),
    )


def test_a_quoted_url_target_may_hold_commas_and_loses_its_quotes() -> None:
    env = Env({"V": "search='http://h/x?q=1,page=2',b=\"https://h/?a=1,b=2\""})
    assert [(t.name, t.url.reveal()) for t in env.targets("V")] == [
        ("search", "http://h/x?q=1,page=2"),
        ("b", "https://h/?a=1,b=2"),
    ]


def test_an_unterminated_quote_is_refused_naming_only_the_item(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unterminated") as info:
        Env({"V": "a=x,db=check_pg --password 'hunter2"}).specs("V", secret=True)
    assert info.value.variable == "V"
    assert "'db'" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_targets_file_alone_enables_its_collector(tmp_path: Path) -> None:
    targets = tmp_path / "targets"
    targets.write_text("api=http://user:pw@127.0.0.1:8000/health\n")
    config = load_config({"OPSWATCH_HTTP_TARGETS_FILE": str(targets)})
    assert config.settings.checks == ("host", "http")
    assert [c.check for c in config.collectors] == ["host", "http:api", "capacity"]
