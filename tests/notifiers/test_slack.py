"""The Slack notifier against a local HTTP server standing in for Slack."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from opswatch.config import ConfigError, Env
from opswatch.model import Notification, Severity, TransitionKind
from opswatch.notifiers.base import NotifyError
from opswatch.notifiers.render import RenderOptions, as_fallback, render
from opswatch.notifiers.slack import MAX_BLOCKS, SlackNotifier, message
from tests.notifiers.conftest import T0, transition
from tests.peers import Receiver, Reply

TOKEN = "xoxb-111-222-SECRETTOKEN"
LATER = T0 + timedelta(minutes=12)
OK = Reply(200, body='{"ok": true, "channel": "C1", "ts": "1.2"}')


def slack_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {
        "OPSWATCH_SLACK_TOKEN": TOKEN,
        "OPSWATCH_SLACK_CHANNEL": "#ops",
        "OPSWATCH_SLACK_API_URL": receiver.url + "/api",
        "OPSWATCH_RUNBOOK_URL": "https://wiki.example/runbooks/{rule}",
        **extra,
    }


@pytest.fixture
async def slack(receiver: Receiver) -> AsyncIterator[SlackNotifier]:
    (notifier,) = SlackNotifier.from_env(Env(slack_env(receiver)))
    yield notifier
    await notifier.close()


def firing() -> Notification:
    return render(
        [
            transition(
                "disk_full",
                severity=Severity.CRITICAL,
                labels={"mountpoint": "/var"},
                summary="disk /var is 97% full",
                value=97.0,
                started_at=T0,
                at=LATER,
                kind=TransitionKind.REMINDER,
            ),
            transition(labels={"host": "web1"}, at=LATER, started_at=LATER),
        ],
        LATER,
    )


def all_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [*body["blocks"], *(b for a in body["attachments"] for b in a["blocks"])]


async def test_posts_block_kit_to_chat_post_message_with_the_token_as_bearer(
    receiver: Receiver, slack: SlackNotifier
) -> None:
    receiver.script(OK)

    await slack.send(firing())

    (request,) = await receiver.wait_for(1)
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    body = request.body
    assert body["channel"] == "#ops"
    assert body["text"] == "[FIRING:2] disk_full, cpu_high on host"
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": body["text"], "emoji": True},
    }
    critical, warning = body["attachments"]
    assert (critical["color"], warning["color"]) == ("#E01E5A", "#ECB22E")
    disk = critical["blocks"][0]["text"]["text"]
    assert ":rotating_light: *CRITICAL* `disk_full` on host: disk /var is 97% full" in disk
    assert "still firing, for 12 min now" in disk
    assert "*value:* 97" in disk
    assert "*started:* 2026-01-01T12:00:00Z" in disk
    assert "*for:* 12 min" in disk
    assert "`mountpoint=/var`" in disk
    assert "<https://wiki.example/runbooks/disk_full|Runbook>" in disk
    assert TOKEN not in json.dumps(body)


async def test_a_resolution_is_green_and_gives_the_value_at_resolution(
    receiver: Receiver, slack: SlackNotifier
) -> None:
    receiver.script(OK)
    resolved = render([transition(kind=TransitionKind.RESOLVED, at=LATER, value=3.0)], LATER)

    await slack.send(resolved)

    (request,) = await receiver.wait_for(1)
    (attachment,) = request.body["attachments"]
    assert attachment["color"] == "#2EB67D"
    text = attachment["blocks"][0]["text"]["text"]
    assert text.startswith(":white_check_mark:")
    assert "*value at resolution:* 3" in text
    assert "resolved at 2026-01-01T12:12:00Z after 12 min" in text


async def test_an_incoming_webhook_gets_the_same_blocks_without_token_or_channel(
    receiver: Receiver,
) -> None:
    url = receiver.url + "/services/T000/B000/SECRETPATH"
    (notifier,) = SlackNotifier.from_env(Env({"OPSWATCH_SLACK_WEBHOOK_URL": url}))

    await notifier.send(firing())  # the receiver's plain 200 is an incoming webhook's "ok"
    await notifier.close()

    (request,) = await receiver.wait_for(1)
    assert request.path == "/services/T000/B000/SECRETPATH"
    assert "Authorization" not in request.headers
    assert "channel" not in request.body
    assert request.body["blocks"][0]["type"] == "header"
    assert notifier.channel.startswith("slack:")
    assert "SECRETPATH" not in notifier.channel + json.dumps(notifier.describe())


@pytest.mark.parametrize(
    "error",
    ["invalid_auth", "invalid_token", "channel_not_found", "not_in_channel", "account_inactive"],
)
async def test_web_api_refusals_are_permanent_and_name_the_error_without_the_token(
    receiver: Receiver, slack: SlackNotifier, error: str
) -> None:
    receiver.script(Reply(200, body=json.dumps({"ok": False, "error": error})))

    with pytest.raises(NotifyError) as caught:
        await slack.send(firing())

    assert caught.value.permanent is True
    assert str(caught.value) == f"slack chat.postMessage to #ops: {error}"
    assert TOKEN not in str(caught.value)


async def test_ratelimited_in_the_body_is_transient_with_the_retry_after_hint(
    receiver: Receiver, slack: SlackNotifier
) -> None:
    receiver.script(
        Reply(200, headers={"Retry-After": "30"}, body='{"ok": false, "error": "ratelimited"}')
    )

    with pytest.raises(NotifyError) as caught:
        await slack.send(firing())

    assert caught.value.permanent is False
    assert caught.value.retry_after == 30.0


async def test_a_200_that_is_not_json_from_the_web_api_is_transient(
    receiver: Receiver, slack: SlackNotifier
) -> None:
    receiver.script(Reply(200, body="<html>proxy login</html>"))

    with pytest.raises(NotifyError, match="without a JSON answer") as caught:
        await slack.send(firing())

    assert caught.value.permanent is False


def test_a_storm_is_trimmed_to_fifty_blocks_and_says_how_many_more() -> None:
    storm = render(
        [transition("disk_full", labels={"mountpoint": f"/d{n}"}) for n in range(200)], T0
    )

    body = message(storm, RenderOptions())

    blocks = all_blocks(body)
    assert len(blocks) == MAX_BLOCKS
    shown = [b for b in blocks if b["type"] == "section"]
    assert blocks[-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"and {200 - len(shown)} more"}],
    }
    assert body["text"] == "[FIRING:200] disk_full on host"


def test_text_from_alerts_is_escaped_for_slack_markup() -> None:
    sneaky = render([transition(summary="<!channel> & <http://evil|click>")], T0)

    text = message(sneaky, RenderOptions())["attachments"][0]["blocks"][0]["text"]["text"]

    assert "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;" in text
    assert "<!channel>" not in text


def test_a_fallback_copy_says_so_above_the_alerts() -> None:
    copy = as_fallback(firing(), "email:abcd1234", "permanent error: SMTP 550")

    body = message(copy, RenderOptions())

    assert body["text"].startswith("[fallback] ")
    note = body["blocks"][1]["elements"][0]["text"]
    assert "delivery to email:abcd1234 failed (permanent error: SMTP 550)" in note


def test_channels_are_named_after_the_slack_channel_or_a_hash_of_the_webhook() -> None:
    env = Env(
        {
            "OPSWATCH_SLACK_TOKEN": TOKEN,
            "OPSWATCH_SLACK_CHANNEL": "#Ops, C0123ABC",
        }
    )

    ops, by_id = SlackNotifier.from_env(env)

    assert (ops.channel, by_id.channel) == ("slack:ops", "slack:c0123abc")
    assert ops.describe() == {
        "channel": "slack:ops",
        "timeout": "10s",
        "slack_channel": "#Ops",
        "api_url": "https://slack.com/api",
        "token": "***",
    }


def test_the_token_can_come_from_a_file(tmp_path: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")

    (notifier,) = SlackNotifier.from_env(
        Env({"OPSWATCH_SLACK_TOKEN_FILE": str(token_file), "OPSWATCH_SLACK_CHANNEL": "ops"})
    )

    assert notifier.channel == "slack:ops"
    assert TOKEN not in json.dumps(notifier.describe())


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OPSWATCH_SLACK_TOKEN": TOKEN}, "OPSWATCH_SLACK_CHANNEL"),
        ({"OPSWATCH_SLACK_CHANNEL": "#ops"}, "OPSWATCH_SLACK_TOKEN"),
        (
            {"OPSWATCH_SLACK_WEBHOOK_URL": "https://h.example/x", "OPSWATCH_SLACK_TOKEN": TOKEN},
            "OPSWATCH_SLACK_TOKEN",
        ),
        ({"OPSWATCH_SLACK_TOKEN": TOKEN, "OPSWATCH_SLACK_CHANNEL": "#ops,ops"},
         "OPSWATCH_SLACK_CHANNEL"),
        ({"OPSWATCH_SLACK_TOKEN": TOKEN, "OPSWATCH_SLACK_CHANNEL": "ops",
          "OPSWATCH_SLACK_API_URL": "ftp://x"}, "OPSWATCH_SLACK_API_URL"),
        ({"OPSWATCH_SLACK_WEBHOOK_URL": "not a url"}, "OPSWATCH_SLACK_WEBHOOK_URL"),
    ],
)  # fmt: skip
def test_bad_slack_configuration_is_an_error_naming_the_variable_and_no_token(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        SlackNotifier.from_env(Env(environ))

    assert caught.value.variable == variable
    assert TOKEN not in str(caught.value)


def test_actions_taken_and_evidence_are_shown_in_the_alert_section() -> None:
    escalated = dataclasses.replace(
        transition(kind=TransitionKind.ESCALATED, severity=Severity.CRITICAL, at=LATER),
        note="recovery failed: systemctl restart exited 1",
        evidence=("top: <defunct> 99% CPU",),
    )

    section = message(render([escalated], LATER), RenderOptions())["attachments"][0]["blocks"][0]

    text = section["text"]["text"]
    assert "*actions:* recovery failed: systemctl restart exited 1" in text
    assert "```top: &lt;defunct&gt; 99% CPU```" in text
