"""One-click ack links through the real daemon: the firing notifications (webhook, Slack,
mail) carry them, GET only shows a page, POST acks once for its episode only, and a forged,
edited, expired or ended link is refused. A manual clock drives the daemon; local servers
receive the notifications."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from opswatch.config import ConfigError, Env, Secret
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import TransitionKind
from opswatch.notifiers.acklinks import AckLinks, LinkError
from opswatch.notifiers.email import EmailNotifier
from opswatch.notifiers.render import RenderOptions, render
from tests.api.errorshape import message
from tests.conftest import ManualClock
from tests.notifiers.conftest import ReceiverFactory, transition
from tests.notifiers.test_daemon_notify import SLACK_OK, TOKEN, Daemon, cycle
from tests.peers import Receiver

EXTERNAL = "https://ops.example/opswatch"
KEY = "0123456789abcdef-ack-link-key"
LINK = re.compile(re.escape(EXTERNAL) + r"/ack/[\w.-]+")
FULL, EMPTY = {"/var": 99.0}, {"/var": 10.0}
MAIL = {
    "OPSWATCH_EMAIL_SMTP_URL": "smtp://127.0.0.1:25",
    "OPSWATCH_EMAIL_FROM": "opswatch@example.org",
    "OPSWATCH_EMAIL_TO": "ops@example.org",
    "OPSWATCH_EXTERNAL_URL": EXTERNAL,
    "OPSWATCH_ACK_LINK_KEY": KEY,
}
NOTE = "acknowledged by link: acknowledged with the notification's link"


class Linked:
    """A daemon with ack links, a webhook and Slack, its API served on 127.0.0.1."""

    def __init__(
        self,
        app: App,
        clock: ManualClock,
        hook: Receiver,
        slack: Receiver,
        environ: dict[str, str],
    ) -> None:
        self.app, self.clock, self.hook, self.slack = app, clock, hook, slack
        #: the daemon's whole environment (what a reload re-reads)
        self.environ = environ
        self.base = f"http://127.0.0.1:{app.api.port}"

    def link(self, index: int = -1) -> str:
        """The ack link of the webhook message ``index``."""
        (alert,) = self.hook.requests[index].body["alerts"]
        url: str = alert["annotations"]["ack_url"]
        return url

    async def follow(self, method: str, link: str) -> tuple[int, str]:
        """``method`` on ``link``, sent to the daemon (the external URL is its proxy's)."""
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, link.replace(EXTERNAL, self.base)) as r,
        ):
            return r.status, await r.text()

    async def fire(self) -> None:
        kinds = await cycle(self.app, self.clock, FULL)
        assert kinds == [TransitionKind.FIRED]

    def acks(self) -> list[str | None]:
        return [a.acked_by for a in self.app.tracker.active()]


@pytest.fixture
async def linked(
    tmp_path: Any, clock: ManualClock, receiver_factory: ReceiverFactory
) -> AsyncIterator[Linked]:
    hook, slack = await receiver_factory(), await receiver_factory()
    slack.script(*[SLACK_OK] * 10)
    daemon = Daemon(tmp_path / "state.sqlite3", clock)
    environ = {
        "OPSWATCH_WEBHOOK_URL": hook.url + "/hook",
        "OPSWATCH_SLACK_TOKEN": TOKEN,
        "OPSWATCH_SLACK_CHANNEL": "#ops",
        "OPSWATCH_SLACK_API_URL": slack.url + "/api",
        "OPSWATCH_EXTERNAL_URL": EXTERNAL + "/",
        "OPSWATCH_ACK_LINK_KEY": KEY,
    }
    app = await daemon.open(**environ)
    full = {
        "OPSWATCH_CHECKS": "host",
        "OPSWATCH_STATE_PATH": str(daemon.state),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        "OPSWATCH_SHUTDOWN_GRACE": "2s",
        **environ,
    }
    await app.api.start()
    app._serving = True
    try:
        linked = Linked(app, clock, hook, slack, full)
        await linked.fire()
        yield linked
    finally:
        for started in daemon.apps:
            await started.stop()


async def test_every_firing_notification_carries_its_ack_link(linked: Linked) -> None:
    link = linked.link()
    assert LINK.fullmatch(link)
    assert f"<{link}|Acknowledge>" in json.dumps(linked.slack.requests[0].body)

    (fired,) = await linked.app.store.history()  # the same firing, as mail
    mail = _mailer().compose(render([fired], fired.at, RenderOptions.from_env(Env(MAIL))))
    text, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert f"acknowledge: {link}" in text.get_content()
    assert f'<a href="{link}">acknowledge</a>' in html.get_content()

    await cycle(linked.app, linked.clock, EMPTY)  # the resolution carries none
    (resolved,) = linked.hook.requests[-1].body["alerts"]
    assert resolved["status"] == "resolved"
    assert "ack_url" not in resolved["annotations"]
    assert "Acknowledge>" not in json.dumps(linked.slack.requests[-1].body)


def _mailer() -> EmailNotifier:
    (notifier,) = EmailNotifier.from_env(Env(MAIL))
    assert isinstance(notifier, EmailNotifier)
    return notifier


async def test_get_shows_a_button_and_acks_nothing_post_acks_once_per_episode(
    linked: Linked,
) -> None:
    link = linked.link()
    for _ in range(2):  # a link preview, then the person
        status, page = await linked.follow("GET", link)
        assert status == 200
        assert '<form method="post"><button type="submit">Acknowledge</button></form>' in page
        assert "disk_full on host" in page
    assert linked.acks() == [None]

    status, page = await linked.follow("POST", link)
    assert status == 200
    assert "Acknowledged." in page
    assert linked.acks() == ["link"]
    history = await linked.app.store.history()
    assert [(t.kind, t.note) for t in history[:1]] == [
        (
            TransitionKind.ACKNOWLEDGED,
            "acknowledged by link: acknowledged with the notification's link",
        )
    ]

    status, page = await linked.follow("POST", link)  # again: nothing more
    assert status == 200
    assert "Already acknowledged by link." in page
    assert await linked.app.store.history() == history
    status, page = await linked.follow("GET", link)
    assert "Already acknowledged by link." in page
    assert "<form" not in page

    operator = linked.app.services.operator
    assert operator is not None
    await operator.unack(linked.app.tracker.active()[0].fingerprint, "ana")
    history = await linked.app.store.history()
    for method in ("GET", "POST"):  # a link acks its episode once
        status, page = await linked.follow(method, link)
        assert status == 200
        assert "a link acknowledges once" in page
        assert "<form" not in page
    assert linked.acks() == [None]
    assert await linked.app.store.history() == history


async def test_a_forged_edited_or_expired_link_is_refused(linked: Linked) -> None:
    link = linked.link()
    head, signature = link.rsplit(".", 1)
    fingerprint = head.rsplit("/", 1)[1].split(".")[0]
    other = "0" * len(fingerprint)
    refused = [
        head + "." + ("A" if signature[0] != "A" else "B") + signature[1:],  # forged
        link.replace(fingerprint, other),  # another alert
        head.rsplit(".", 1)[0] + ".9999999999." + signature,  # a later expiry
        EXTERNAL + "/ack/not-a-token",
        link + "%0A",  # a trailing line break
    ]
    for bad in refused:
        for method in ("GET", "POST"):
            status, body = await linked.follow(method, bad)
            assert status == 403, bad
            assert message(403, body) == "this ack link is not valid"
    linked.clock.advance(24 * 3600)  # OPSWATCH_ACK_LINK_TTL's default
    status, body = await linked.follow("POST", link)
    assert (status, message(403, body)) == (403, "this ack link has expired")
    assert linked.acks() == [None]


async def test_a_link_is_useless_once_its_episode_ends_also_when_the_alert_fires_again(
    linked: Linked,
) -> None:
    first = linked.link()
    linked.clock.advance(30)
    await cycle(linked.app, linked.clock, EMPTY)
    status, body = await linked.follow("POST", first)
    assert (status, message(410, body)) == (
        410,
        "the alert this link was sent for is no longer firing",
    )
    linked.clock.advance(30)
    await linked.fire()  # the same fingerprint, a new episode
    second = linked.link()
    assert second != first
    status, _ = await linked.follow("POST", first)
    assert status == 410
    assert linked.acks() == [None]
    status, _ = await linked.follow("POST", second)
    assert status == 200
    assert linked.acks() == ["link"]


async def test_without_an_external_url_there_are_no_links_and_no_link_routes(
    tmp_path: Any, clock: ManualClock, receiver_factory: ReceiverFactory
) -> None:
    hook = await receiver_factory()
    daemon = Daemon(tmp_path / "state.sqlite3", clock)
    app = await daemon.open(OPSWATCH_WEBHOOK_URL=hook.url + "/hook")
    await app.api.start()
    app._serving = True
    try:
        await cycle(app, clock, FULL)
        (alert,) = hook.requests[0].body["alerts"]
        assert "ack_url" not in alert["annotations"]
        base = f"http://127.0.0.1:{app.api.port}"
        async with aiohttp.ClientSession() as http, http.post(f"{base}/ack/x") as r:
            assert r.status == 404
            assert "OPSWATCH_EXTERNAL_URL" in message(404, await r.text())
    finally:
        await app.stop()


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, "OPSWATCH_EXTERNAL_URL: ack links need a key: set OPSWATCH_ACK_LINK_KEY"),
        ({"OPSWATCH_ACK_LINK_KEY": "short"}, "OPSWATCH_ACK_LINK_KEY: expected at least 16"),
        ({"OPSWATCH_EXTERNAL_URL": "ftp://ops.example"}, "URL with a host"),
        ({"OPSWATCH_EXTERNAL_URL": "https://ops.example/?a=1"}, "without a query"),
        ({"OPSWATCH_EXTERNAL_URL": "https://ops.example/<x>"}, "cannot hold spaces"),
        ({"OPSWATCH_ACK_LINK_KEY": KEY, "OPSWATCH_ACK_LINK_TTL": "10s"}, "at least 60s"),
    ],
)
def test_a_bad_ack_link_setting_stops_start_up_naming_the_variable(
    environ: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"OPSWATCH_EXTERNAL_URL": EXTERNAL, **environ})
    assert problem in str(raised.value)
    assert "short" not in str(raised.value)


def test_without_a_link_key_the_key_is_derived_from_the_write_token_never_the_token_itself(
    clock: ManualClock,
) -> None:
    config = load_config({"OPSWATCH_EXTERNAL_URL": EXTERNAL, "OPSWATCH_API_TOKEN": KEY})
    links = config.ack_links
    assert links is not None
    assert links.key.reveal() not in ("", KEY)
    assert KEY not in json.dumps(config.describe())
    alert = transition().alert
    token = links.token(alert, clock.now)
    assert links.verify(token, clock.now).of(alert)
    other = AckLinks(EXTERNAL, Secret("another-key-of-16-chars"))
    with pytest.raises(LinkError):
        other.verify(token, clock.now)
    rotated = load_config({"OPSWATCH_EXTERNAL_URL": EXTERNAL, "OPSWATCH_API_TOKEN": KEY + "2"})
    assert rotated.ack_links is not None
    with pytest.raises(LinkError):
        rotated.ack_links.verify(token, clock.now)


async def test_a_reload_gives_the_notifiers_and_the_api_the_new_link_key_alike(
    linked: Linked,
) -> None:
    old = linked.link()
    linked.app.reloader.enable()  # as start() does (the fixture only opens the daemon)
    with capture_logs() as logs:
        rotated = {**linked.environ, "OPSWATCH_ACK_LINK_KEY": KEY + "-rotated"}
        assert await linked.app.reload({**rotated, "OPSWATCH_API_TOKEN": "a-new-write-token"})
    assert [e["variables"] for e in logs if e["event"] == "reload_needs_restart"] == [
        ["OPSWATCH_API_TOKEN"]
    ]
    assert linked.app.config.api_token is None  # the API keeps what it started with
    status, _ = await linked.follow("POST", old)
    assert status == 403  # the rotated key voided it
    links = linked.app.config.ack_links
    assert links is not None
    (alert,) = linked.app.tracker.active()
    status, page = await linked.follow("POST", links.url(alert, linked.clock.now))
    assert (status, "Acknowledged." in page) == (200, True)
