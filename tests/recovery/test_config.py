"""Recovery bindings and settings from the environment."""

from __future__ import annotations

import pytest

from opswatch.config import ConfigError, Env
from opswatch.recovery.command import CommandAction
from opswatch.recovery.config import Budget, RecoverySettings
from opswatch.recovery.systemd import SystemdAction

RULES = ("http_down", "http_slow", "disk_full", "postgres_idle_in_transaction")


def settings(**environ: str) -> RecoverySettings:
    return RecoverySettings.from_env(Env(environ), environ.keys(), RULES)


def test_a_rule_binding_applies_to_every_target_and_a_target_binding_wins() -> None:
    parsed = settings(
        OPSWATCH_RECOVERY_HTTP_DOWN="systemd:restart:web.service",
        OPSWATCH_RECOVERY_HTTP_DOWN_MY_API="command:/usr/local/bin/restart-api --now",
        OPSWATCH_RECOVERY_ALLOW="/usr/local/bin/restart-api",
    )
    web = parsed.binding_for("http_down", "web")
    api = parsed.binding_for("http_down", "my-api")
    assert web is not None
    assert web.action == SystemdAction("restart", "web.service")
    assert web.id == "http_down"
    assert api is not None
    assert isinstance(api.action, CommandAction)
    assert api.action.argv == ("/usr/local/bin/restart-api", "--now")
    assert api.id == "http_down:my_api"
    assert parsed.binding_for("http_slow", "web") is None
    assert parsed.binding("HTTP_DOWN:my_api") is api


def test_defaults_match_the_documentation() -> None:
    parsed = settings()
    assert parsed.bindings == ()
    assert parsed.budget == Budget(3, 1800.0, "3/30m")
    assert (parsed.verify_every_s, parsed.verify_for_s) == (2.0, 30.0)
    assert (parsed.max_per_hour, parsed.notify, parsed.dry_run) == (10, "immediately", False)


def test_settings_are_not_mistaken_for_bindings() -> None:
    parsed = settings(OPSWATCH_RECOVERY_BUDGET="5/1h", OPSWATCH_RECOVERY_NOTIFY="on_failure")
    assert parsed.bindings == ()
    assert parsed.budget == Budget(5, 3600.0, "5/1h")
    assert parsed.notify == "on_failure"


@pytest.mark.parametrize(
    ("environ", "variable", "problem"),
    [
        ({"OPSWATCH_RECOVERY_HTTP_DWN": "systemd:restart:x"}, "OPSWATCH_RECOVERY_HTTP_DWN",
         "names no rule"),
        ({"OPSWATCH_RECOVERY_HTTP_DOWN": "reboot:now"}, "OPSWATCH_RECOVERY_HTTP_DOWN",
         "unknown recovery action 'reboot'"),
        ({"OPSWATCH_RECOVERY_HTTP_DOWN": "systemd:reload:x.service"},
         "OPSWATCH_RECOVERY_HTTP_DOWN", "expected systemd:<restart|start|stop>"),
        ({"OPSWATCH_RECOVERY_HTTP_DOWN": "systemd:restart:--force"},
         "OPSWATCH_RECOVERY_HTTP_DOWN", "not a systemd unit name"),
        ({"OPSWATCH_RECOVERY_HTTP_DOWN": "command:/bin/rm -rf /"},
         "OPSWATCH_RECOVERY_HTTP_DOWN", "not listed in OPSWATCH_RECOVERY_ALLOW"),
        ({"OPSWATCH_RECOVERY_HTTP_DOWN": "command:restart-api"},
         "OPSWATCH_RECOVERY_HTTP_DOWN", "absolute program path"),
        ({"OPSWATCH_RECOVERY_BUDGET": "three"}, "OPSWATCH_RECOVERY_BUDGET", "RUNS/WINDOW"),
        ({"OPSWATCH_RECOVERY_NOTIFY": "never"}, "OPSWATCH_RECOVERY_NOTIFY", "expected one of"),
        ({"OPSWATCH_RECOVERY_DISK_FULL": "files:delete:7d:/var/log/../etc/*"},
         "OPSWATCH_RECOVERY_DISK_FULL", "'..' is not allowed"),
        ({"OPSWATCH_RECOVERY_DISK_FULL": "files:delete:7d:/etc/*.conf",
          "OPSWATCH_RECOVERY_FILES_DIRS": "/var/log/app"},
         "OPSWATCH_RECOVERY_DISK_FULL", "not inside the directories"),
        ({"OPSWATCH_RECOVERY_POSTGRES_IDLE_IN_TRANSACTION": "postgres:idle_in_transaction:5m"},
         "OPSWATCH_RECOVERY_POSTGRES_IDLE_IN_TRANSACTION", "needs OPSWATCH_POSTGRES_TARGETS"),
    ],
)  # fmt: skip
def test_a_malformed_recovery_variable_is_named(
    environ: dict[str, str], variable: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(**environ)
    assert raised.value.variable == variable
    assert problem in raised.value.problem


def test_a_webhook_url_is_masked_in_the_description() -> None:
    parsed = settings(
        OPSWATCH_RECOVERY_HTTP_DOWN="webhook",
        OPSWATCH_RECOVERY_WEBHOOK_URL="https://rundeck.example/api/job/run?token=s3cret",
    )
    described = str(parsed.describe())
    assert "s3cret" not in described
    assert "rundeck.example" in described
