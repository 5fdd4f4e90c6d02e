"""Notifications through the real daemon (``App``): routing, grouping, durability, fallback
and the "notifications failing" meta-alert, with local Slack and webhook servers.

Samples are fed to ``App.process`` (the daemon's own entry point after collection) and the
outbox is driven pass by pass with a manual clock: no sleeps.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from tenacity import wait_none

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import Sample, TransitionKind
from opswatch.notifiers.outbox import RetryPolicy
from tests.conftest import ManualClock
from tests.notifiers.conftest import ReceiverFactory
from tests.peers import Receiver, Reply

FAST = RetryPolicy(
    attempts=2, total_seconds=5, wait=wait_none(), row_backoff_base=10, row_backoff_max=40
)
TOKEN = "xoxb-999-SECRETTOKEN"
CHANNEL_NOT_FOUND = Reply(200, body='{"ok": false, "error": "channel_not_found"}')
SLACK_OK = Reply(200, body='{"ok": true}')


@pytest.fixture
async def hook(receiver_factory: ReceiverFactory) -> Receiver:
    return await receiver_factory()


@pytest.fixture
async def slack(receiver_factory: ReceiverFactory) -> Receiver:
    return await receiver_factory()


class Daemon:
    """Builds ``App``s on one state file, stops them at the end of the test."""

    def __init__(self, state: Path, clock: ManualClock) -> None:
        self.state = state
        self.clock = clock
        self.apps: list[App] = []

    async def open(self, **environ: str) -> App:
        config = load_config(
            {
                "OPSWATCH_CHECKS": "host",
                "OPSWATCH_STATE_PATH": str(self.state),
                "OPSWATCH_API_LISTEN": "127.0.0.1:0",
                "OPSWATCH_SHUTDOWN_GRACE": "2s",
                **environ,
            },
            self.clock,
        )
        app = App(config, clock=self.clock, retry_policy=FAST)
        await app.open()
        self.apps.append(app)
        return app

    async def kill(self, app: App) -> None:
        """The process dies: no flush, nothing delivered, the state file is left as is."""
        self.apps.remove(app)
        await app.store.close()
        for notifier in app.config.notifiers:
            await notifier.close()


@pytest.fixture
async def daemon(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Daemon]:
    daemon = Daemon(tmp_path / "state.sqlite3", clock)
    yield daemon
    for app in daemon.apps:
        await app.stop()


def disks(clock: ManualClock, used: dict[str, float]) -> list[Sample]:
    return [
        Sample("host", "host.disk_used_percent", value, clock.now, {"mountpoint": mountpoint})
        for mountpoint, value in used.items()
    ]


async def cycle(app: App, clock: ManualClock, used: dict[str, float]) -> list[TransitionKind]:
    """One host run with these disk usages, then one outbox pass; returns the transitions."""
    transitions = await app.cycle.process("host", disks(clock, used), None, 0.0)
    await app.outbox.deliver_due()
    return [t.kind for t in transitions]


def alertnames(request: Any) -> list[tuple[str, str]]:
    return [(a["labels"]["alertname"], a["status"]) for a in request.body["alerts"]]


def no_secret_in(logs: Iterable[MutableMapping[str, Any]], *secrets: str) -> None:
    for entry in logs:
        line = json.dumps(entry, default=str)
        for secret in secrets:
            assert secret not in line, entry


async def test_two_hundred_simultaneous_findings_are_one_message_per_channel(
    daemon: Daemon, clock: ManualClock, hook: Receiver, slack: Receiver
) -> None:
    app = await daemon.open(
        OPSWATCH_WEBHOOK_URL=hook.url + "/hooks/SECRETPATH",
        OPSWATCH_SLACK_WEBHOOK_URL=slack.url + "/services/T0/B0/SECRETSLACK",
    )

    kinds = await cycle(app, clock, {f"/srv/{n}": 97.0 for n in range(200)})

    assert kinds == [TransitionKind.FIRED] * 200
    (webhook_message,) = await hook.wait_for(1)
    (slack_message,) = await slack.wait_for(1)
    assert len(webhook_message.body["alerts"]) == 200
    assert slack_message.body["text"] == "[FIRING:200] disk_full on host"
    blocks = [b for a in slack_message.body["attachments"] for b in a["blocks"]]
    assert len(slack_message.body["blocks"]) + len(blocks) <= 50
    assert blocks[-1]["elements"][0]["text"].startswith("and ")
    assert blocks[-1]["elements"][0]["text"].endswith(" more")


async def test_routes_follow_severity_and_the_resolution_follows_the_firing(
    daemon: Daemon, clock: ManualClock, hook: Receiver, slack: Receiver
) -> None:
    environ = {
        "OPSWATCH_WEBHOOK_URL": hook.url + "/hooks/SECRETPATH",
        "OPSWATCH_SLACK_TOKEN": TOKEN,
        "OPSWATCH_SLACK_CHANNEL": "#ops",
        "OPSWATCH_SLACK_API_URL": slack.url + "/api",
        "OPSWATCH_ROUTE_WARNING": "webhook",
        "OPSWATCH_ROUTE_CRITICAL": "slack,webhook",
    }
    slack.script(SLACK_OK, SLACK_OK, SLACK_OK)
    app = await daemon.open(**environ)

    await cycle(app, clock, {"/var": 86.0, "/home": 86.0})  # two warnings: webhook only
    assert [alertnames(r) for r in hook.requests] == [[("disk_full", "firing")] * 2]
    assert slack.requests == []

    clock.advance(30)
    await cycle(app, clock, {"/var": 95.0, "/home": 86.0})  # /var is critical now
    assert len(slack.requests) == 1
    assert "`disk_full` on host: disk /var" in json.dumps(slack.requests[0].body)
    assert len(hook.requests) == 2

    # the route for warnings changes and the daemon restarts: /var keeps its channels
    await app.stop()
    daemon.apps.remove(app)
    app = await daemon.open(**{**environ, "OPSWATCH_ROUTE_WARNING": "slack"})
    clock.advance(30)
    await cycle(app, clock, {"/var": 10.0, "/home": 10.0})

    # /var (went to webhook and slack) and /home (went to webhook only) resolve: webhook gets
    # both in one message, slack only /var
    assert alertnames(hook.requests[2]) == [("disk_full", "resolved")] * 2
    resolved_on_slack = slack.requests[1]
    text = json.dumps(resolved_on_slack.body)
    assert "disk /var" in text
    assert "disk /home" not in text
    assert resolved_on_slack.body["text"] == "[RESOLVED] disk_full on host"


async def test_a_user_rules_label_routes_its_alert_past_the_severity_route(
    daemon: Daemon, clock: ManualClock, hook: Receiver, slack: Receiver
) -> None:
    slack.script(SLACK_OK)
    app = await daemon.open(
        OPSWATCH_WEBHOOK_URL=hook.url + "/hooks/SECRETPATH",
        OPSWATCH_SLACK_TOKEN=TOKEN,
        OPSWATCH_SLACK_CHANNEL="#storage",
        OPSWATCH_SLACK_API_URL=slack.url + "/api",
        OPSWATCH_ROUTE_WARNING="webhook",
        OPSWATCH_RULE_DISK_DATA='disk_full{mountpoint="/data"} warning=95 labels team=storage',
        OPSWATCH_ROUTE_MATCH_STORAGE="team=storage -> slack",
    )

    await cycle(app, clock, {"/data": 97.0, "/var": 86.0})

    (to_slack,) = slack.requests
    assert to_slack.body["text"] == "[FIRING:1] disk_data on host"
    assert [alertnames(r) for r in hook.requests] == [[("disk_full", "firing")]]


async def test_a_channel_down_for_a_while_gets_each_message_exactly_once_when_back(
    daemon: Daemon, clock: ManualClock, hook: Receiver
) -> None:
    app = await daemon.open(OPSWATCH_WEBHOOK_URL=hook.url + "/hooks/SECRETPATH")
    await hook.stop()

    await cycle(app, clock, {"/a": 97.0})
    clock.advance(30)
    await cycle(app, clock, {"/a": 97.0, "/b": 97.0})
    clock.advance(30)
    await cycle(app, clock, {"/a": 10.0, "/b": 97.0})
    for _ in range(5):  # down for several minutes of retries
        clock.advance(60)
        await app.outbox.deliver_due()
    assert app.outbox.failing_channels() == {app.config.notifiers[0].channel}

    await hook.start()
    clock.advance(60)
    await app.outbox.deliver_due()
    for _ in range(3):
        clock.advance(60)
        await app.outbox.deliver_due()

    received = await hook.wait_for(3)
    assert [alertnames(r) for r in received] == [
        [("disk_full", "firing")],
        [("disk_full", "firing")],
        [("disk_full", "resolved")],
    ]
    keys = [r.headers["Idempotency-Key"] for r in received]
    assert len(set(keys)) == 3
    assert await app.store.outbox_counts() == {"delivered": 3}


async def test_messages_pending_when_the_daemon_dies_are_delivered_once_after_restart(
    daemon: Daemon, clock: ManualClock, hook: Receiver
) -> None:
    environ = {"OPSWATCH_WEBHOOK_URL": hook.url + "/hooks/SECRETPATH"}
    first = await daemon.open(**environ)
    await hook.stop()
    await cycle(first, clock, {"/a": 97.0})
    await daemon.kill(first)

    await hook.start()
    clock.advance(60)
    second = await daemon.open(**environ)
    await second.outbox.deliver_due()
    await second.outbox.deliver_due()
    clock.advance(30)
    kinds = await cycle(second, clock, {"/a": 10.0})  # it resolves after the restart

    assert kinds == [TransitionKind.RESOLVED]
    received = await hook.wait_for(2)
    assert [alertnames(r) for r in received] == [
        [("disk_full", "firing")],
        [("disk_full", "resolved")],
    ]


async def test_a_broken_channel_uses_the_fallback_and_raises_the_meta_alert_until_it_recovers(
    daemon: Daemon, clock: ManualClock, hook: Receiver, slack: Receiver
) -> None:
    app = await daemon.open(
        OPSWATCH_WEBHOOK_URL=hook.url + "/hooks/SECRETPATH",
        OPSWATCH_SLACK_TOKEN=TOKEN,
        OPSWATCH_SLACK_CHANNEL="#ops",
        OPSWATCH_SLACK_API_URL=slack.url + "/api",
        OPSWATCH_ROUTE_CRITICAL="slack",
        OPSWATCH_FALLBACK_CHANNEL="webhook",
    )
    slack_channel = "slack:ops"
    slack.script(CHANNEL_NOT_FOUND)

    with capture_logs() as logs:
        await cycle(app, clock, {"/var": 97.0})  # critical: slack only
        await app.outbox.deliver_due()  # the fallback copy

        (copy,) = await hook.wait_for(1)
        assert alertnames(copy) == [("disk_full", "firing")]
        assert "delivery to slack:ops failed" in copy.body["commonAnnotations"]["fallback"]
        assert "channel_not_found" in copy.body["commonAnnotations"]["fallback"]

        # the notify check sees slack failing: the meta-alert fires, on the webhook
        (meta,) = await app.cycle.run("notify")
        assert (meta.kind, meta.alert.rule) == (TransitionKind.FIRED, "notifications_failing")
        assert meta.alert.labels == {"channel": slack_channel}
        await app.outbox.deliver_due()
        received = await hook.wait_for(2)
        assert alertnames(received[1]) == [("notifications_failing", "firing")]
        assert len(slack.requests) == 1  # never sent to the broken channel
        assert sorted(a.rule for a in app.tracker.active()) == [
            "disk_full",
            "notifications_failing",
        ]

        # slack is fixed: the next critical message gets through, the meta-alert resolves
        clock.advance(60)
        slack.script(SLACK_OK)
        await cycle(app, clock, {"/var": 97.0, "/home": 97.0})
        assert len(slack.requests) == 2
        (resolved,) = await app.cycle.run("notify")
        assert resolved.kind is TransitionKind.RESOLVED
        await app.outbox.deliver_due()
        received = await hook.wait_for(3)
        assert alertnames(received[2]) == [("notifications_failing", "resolved")]

    diverted = [e for e in logs if e["event"] == "notification_diverted"]
    assert [(e["channel"], e["permanent"]) for e in diverted] == [(slack_channel, True)]
    no_secret_in(logs, TOKEN, "SECRETPATH", "SECRETTOKEN")


async def test_group_wait_merges_the_messages_of_several_runs(
    daemon: Daemon, clock: ManualClock, hook: Receiver
) -> None:
    app = await daemon.open(
        OPSWATCH_WEBHOOK_URL=hook.url + "/hooks/SECRETPATH", OPSWATCH_GROUP_WAIT="1m"
    )

    await cycle(app, clock, {"/a": 97.0})
    clock.advance(30)
    await cycle(app, clock, {"/a": 97.0, "/b": 97.0})
    assert hook.requests == []
    clock.advance(30)
    await app.outbox.deliver_due()

    (message,) = await hook.wait_for(1)
    assert alertnames(message) == [("disk_full", "firing")] * 2


def test_check_config_shows_routes_and_masks_every_secret(tmp_path: Path) -> None:
    config = load_config(
        {
            "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
            "OPSWATCH_WEBHOOK_URL": "https://hooks.example/SECRETPATH",
            "OPSWATCH_WEBHOOK_SECRET": "SECRETHMAC",
            "OPSWATCH_SLACK_TOKEN": TOKEN,
            "OPSWATCH_SLACK_CHANNEL": "#ops",
            "OPSWATCH_EMAIL_SMTP_URL": "smtp://u:SECRETPW@mail.example:587",
            "OPSWATCH_EMAIL_FROM": "opswatch@example.com",
            "OPSWATCH_EMAIL_TO": "ops@example.com",
            "OPSWATCH_ROUTE_INFO": "none",
            "OPSWATCH_FALLBACK_CHANNEL": "email",
            "OPSWATCH_RUNBOOK_URL": "https://wiki.example/{rule}?token=SECRETWIKI",
        }
    )

    described = json.dumps(config.describe())

    for secret in ("SECRETPATH", "SECRETHMAC", "SECRETTOKEN", "SECRETPW", "SECRETWIKI"):
        assert secret not in described
    routes = config.describe()["notify"]["routes"]
    assert routes["info"] == []
    assert routes["warning"] == [n.channel for n in config.notifiers]
    assert routes["fallback"] == [c for c in routes["warning"] if c.startswith("email:")]
    assert "notify" in config.describe()["collectors"]
    assert "notifications_failing" in [r["name"] for r in config.describe()["rules"]]
    assert config.unknown_variables == []


def test_without_channels_there_is_no_notify_check() -> None:
    config = load_config({"OPSWATCH_STATE_PATH": "/tmp/unused.sqlite3"})

    assert [c.check for c in config.collectors] == ["host", "capacity"]
    assert "notifications_failing" not in [r.name for r in config.rules]


async def test_after_a_restart_the_meta_alert_waits_for_the_channel_to_deliver_again(
    daemon: Daemon, clock: ManualClock, hook: Receiver, slack: Receiver
) -> None:
    environ = {
        "OPSWATCH_WEBHOOK_URL": hook.url + "/hooks/SECRETPATH",
        "OPSWATCH_SLACK_WEBHOOK_URL": slack.url + "/services/SECRETSLACK",
    }
    app = await daemon.open(**environ)
    slack.script(404)
    await cycle(app, clock, {"/var": 97.0})
    (fired,) = await app.cycle.run("notify")
    assert fired.alert.rule == "notifications_failing"
    await app.stop()
    daemon.apps.remove(app)

    clock.advance(60)
    restarted = await daemon.open(**environ)
    assert await restarted.cycle.run("notify") == []  # unknown yet: still firing, not resolved
    assert sorted(a.rule for a in restarted.tracker.active()) == [
        "disk_full",
        "notifications_failing",
    ]

    clock.advance(60)
    await cycle(restarted, clock, {"/var": 97.0, "/home": 97.0})  # slack answers 200 again
    (resolved,) = await restarted.cycle.run("notify")
    assert (resolved.kind, resolved.alert.rule) == (
        TransitionKind.RESOLVED,
        "notifications_failing",
    )
