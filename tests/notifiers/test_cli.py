"""``opswatch test-notify``: a test message through each channel, its output and exit status."""

from __future__ import annotations

import asyncio
import os

import pytest
from structlog.testing import capture_logs

from opswatch.daemon.cli import main
from tests.conftest import free_port
from tests.notifiers.conftest import ReceiverFactory
from tests.peers import Reply

TOKEN = "xoxb-777-SECRETTOKEN"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in list(os.environ):
        if name.startswith("OPSWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPSWATCH_STATE_PATH", f"{tmp_path}/never.sqlite3")


async def run(*argv: str) -> int:
    """``main`` in a worker thread (it runs its own event loop) while the test's local
    servers keep answering on this one."""
    return await asyncio.to_thread(main, ["test-notify", *argv])


async def test_every_channel_ok_prints_ok_per_channel_and_exits_0(
    receiver_factory: ReceiverFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hook, slack = await receiver_factory(), await receiver_factory()
    monkeypatch.setenv("OPSWATCH_WEBHOOK_URL", hook.url + "/hooks/SECRETPATH")
    monkeypatch.setenv("OPSWATCH_SLACK_TOKEN", TOKEN)
    monkeypatch.setenv("OPSWATCH_SLACK_CHANNEL", "#ops")
    monkeypatch.setenv("OPSWATCH_SLACK_API_URL", slack.url + "/api")
    slack.script(Reply(200, body='{"ok": true}'))

    assert await run() == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("slack:ops")
    assert lines[0].endswith("  ok")
    assert lines[1].startswith("webhook:")
    assert lines[1].endswith("  ok")
    (message,) = hook.requests
    assert message.body["alerts"][0]["labels"]["alertname"] == "opswatch_test"
    assert message.body["alerts"][0]["labels"]["severity"] == "info"
    assert slack.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_a_failing_channel_prints_its_masked_error_and_exits_1(
    receiver_factory: ReceiverFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hook, slack = await receiver_factory(), await receiver_factory()
    monkeypatch.setenv("OPSWATCH_WEBHOOK_URL", hook.url + "/hooks/SECRETPATH")
    monkeypatch.setenv("OPSWATCH_SLACK_TOKEN", TOKEN)
    monkeypatch.setenv("OPSWATCH_SLACK_CHANNEL", "#ops")
    monkeypatch.setenv("OPSWATCH_SLACK_API_URL", slack.url + "/api")
    monkeypatch.setenv("OPSWATCH_EMAIL_SMTP_URL", f"smtp://u:SECRETPW@127.0.0.1:{free_port()}")
    monkeypatch.setenv("OPSWATCH_EMAIL_FROM", "opswatch@example.com")
    monkeypatch.setenv("OPSWATCH_EMAIL_TO", "ops@example.com")
    monkeypatch.setenv("OPSWATCH_EMAIL_STARTTLS", "false")
    slack.script(Reply(200, body='{"ok": false, "error": "channel_not_found"}'))
    hook.script(Reply(404, body="no hook at /hooks/SECRETPATH"))

    with capture_logs() as logs:
        assert await run() == 1

    captured = capsys.readouterr()
    out = captured.out + captured.err
    lines = dict(line.split("  ", 1) for line in captured.out.splitlines())
    channels = sorted(lines)
    assert [c.split(":")[0] for c in channels] == ["email", "slack", "webhook"]
    email, slack_line, webhook = (lines[c].strip() for c in channels)
    assert email.startswith("error: email smtp://u:***@127.0.0.1:")
    assert "cannot connect" in email
    assert email.endswith("(transient)")
    assert slack_line == "error: slack chat.postMessage to #ops: channel_not_found (permanent)"
    assert webhook.startswith("error: webhook http://127.0.0.1:")
    assert "HTTP 404: no hook at /***" in webhook
    for secret in ("SECRETPATH", "SECRETTOKEN", "SECRETPW"):
        assert secret not in out
        assert secret not in str(logs)


async def test_one_channel_by_name_is_tested_alone(
    receiver_factory: ReceiverFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hook, slack = await receiver_factory(), await receiver_factory()
    monkeypatch.setenv("OPSWATCH_WEBHOOK_URL", hook.url + "/hooks/SECRETPATH")
    monkeypatch.setenv("OPSWATCH_SLACK_WEBHOOK_URL", slack.url + "/services/SECRET")

    assert await run("webhook") == 0

    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("webhook:")
    assert line.endswith("ok")
    assert len(hook.requests) == 1
    assert slack.requests == []


async def test_an_unknown_channel_exits_2_listing_the_configured_ones(
    receiver_factory: ReceiverFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hook = await receiver_factory()
    monkeypatch.setenv("OPSWATCH_WEBHOOK_URL", hook.url + "/hooks/SECRETPATH")

    assert await run("pagerduty") == 2

    err = capsys.readouterr().err
    assert "no channel 'pagerduty' (configured: webhook:" in err
    assert "SECRETPATH" not in err
    assert hook.requests == []


def test_no_channel_configured_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test-notify"]) == 2

    assert "no notification channel (configured: none)" in capsys.readouterr().err


def test_a_configuration_error_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_SLACK_TOKEN", TOKEN)

    assert main(["test-notify"]) == 2

    err = capsys.readouterr().err
    assert "OPSWATCH_SLACK_CHANNEL: required when OPSWATCH_SLACK_TOKEN is set" in err
    assert "SECRETTOKEN" not in err
