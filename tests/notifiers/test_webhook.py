"""The webhook notifier against a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import shutil
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from opswatch import __version__
from opswatch.config import ConfigError, Env, Secret, mask_url
from opswatch.daemon.cli import main
from opswatch.model import Notification, Severity, TransitionKind
from opswatch.notifiers.base import NotifyError
from opswatch.notifiers.http import parse_retry_after
from opswatch.notifiers.render import RenderOptions, render
from opswatch.notifiers.webhook import WebhookNotifier, payload
from tests.conftest import REQUIRE_SERVICES
from tests.notifiers.conftest import T0, transition
from tests.peers import Receiver, Reply

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
LATER = T0 + timedelta(minutes=12)


def webhook_for(receiver: Receiver, path: str = "/hook", timeout: float = 5.0) -> WebhookNotifier:
    url = receiver.url + path
    return WebhookNotifier(Secret(url, mask_url(url, hide_path=True)), timeout=timeout)


@pytest.fixture
async def webhook(receiver: Receiver) -> AsyncIterator[WebhookNotifier]:
    notifier = webhook_for(receiver)
    yield notifier
    await notifier.close()


def firing() -> Notification:
    return render(
        [
            transition(labels={"host": "web1", "cpu": "0"}, severity=Severity.CRITICAL),
            transition(labels={"host": "web1", "cpu": "1"}),
        ],
        LATER,
    )


def resolved() -> Notification:
    return render([transition(kind=TransitionKind.RESOLVED, at=LATER, value=3.0)], LATER)


def assert_alertmanager_v4(body: dict[str, Any]) -> None:
    """The keys and types Alertmanager's webhook receivers rely on (template.Data v4)."""
    string_keys = ("version", "groupKey", "status", "receiver", "externalURL")
    assert set(body) == {
        *string_keys,
        "truncatedAlerts",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "alerts",
    }
    assert body["version"] == "4"
    assert all(isinstance(body[k], str) for k in string_keys)
    assert isinstance(body["truncatedAlerts"], int)
    assert body["status"] in {"firing", "resolved"}
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in body[key].items())
    assert body["alerts"]
    for alert in body["alerts"]:
        assert set(alert) == {
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        }
        assert alert["status"] in {"firing", "resolved"}
        for key in ("labels", "annotations"):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in alert[key].items())
        assert RFC3339.match(alert["startsAt"]), alert["startsAt"]
        assert RFC3339.match(alert["endsAt"]), alert["endsAt"]
        assert isinstance(alert["generatorURL"], str)
        assert re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])


async def test_firing_notification_is_posted_as_an_alertmanager_v4_body(
    receiver: Receiver, webhook: WebhookNotifier
) -> None:
    await webhook.send(firing())

    (request,) = await receiver.wait_for(1)
    assert request.method == "POST"
    assert request.path == "/hook"
    body = request.body
    assert_alertmanager_v4(body)
    assert body["status"] == "firing"
    assert body["receiver"] == "opswatch"
    first = body["alerts"][0]
    assert first["status"] == "firing"
    assert first["labels"] == {
        "alertname": "cpu_high",
        "severity": "critical",
        "check": "host",
        "host": "web1",
        "cpu": "0",
    }
    assert first["annotations"] == {"summary": "CPU busy", "value": "97.3", "transition": "fired"}
    assert first["startsAt"] == "2026-01-01T12:00:00.000Z"
    assert first["endsAt"] == "0001-01-01T00:00:00Z"
    assert body["commonLabels"] == {"alertname": "cpu_high", "check": "host", "host": "web1"}
    assert body["commonAnnotations"] == first["annotations"]


async def test_resolved_notification_has_resolved_status_and_an_end_time(
    receiver: Receiver, webhook: WebhookNotifier
) -> None:
    await webhook.send(resolved())

    (request,) = await receiver.wait_for(1)
    assert_alertmanager_v4(request.body)
    assert request.body["status"] == "resolved"
    (alert,) = request.body["alerts"]
    assert alert["status"] == "resolved"
    assert alert["endsAt"] == "2026-01-01T12:12:00.000Z"
    assert alert["annotations"]["value"] == "3"
    assert alert["annotations"]["transition"] == "resolved"


def test_group_is_firing_while_any_alert_in_it_still_fires() -> None:
    mixed = render(
        [transition("a"), transition("b", kind=TransitionKind.RESOLVED, at=LATER)], LATER
    )

    body = payload(mixed)

    assert body["status"] == "firing"
    assert [a["status"] for a in body["alerts"]] == ["firing", "resolved"]


def test_group_key_is_stable_for_the_same_alerts_across_notifications() -> None:
    fired = payload(render([transition()], T0))
    resolved_body = payload(resolved())

    assert fired["groupKey"] == resolved_body["groupKey"]
    assert fired["groupKey"] != payload(render([transition("other")], T0))["groupKey"]


def test_alert_labels_cannot_override_alertname_severity_or_check() -> None:
    body = payload(render([transition(labels={"alertname": "spoof", "severity": "x"})], T0))

    assert body["alerts"][0]["labels"]["alertname"] == "cpu_high"
    assert body["alerts"][0]["labels"]["severity"] == "warning"


async def test_sends_json_content_type_idempotency_key_and_user_agent(
    receiver: Receiver, webhook: WebhookNotifier
) -> None:
    notification = firing()

    await webhook.send(notification)

    (request,) = await receiver.wait_for(1)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == notification.idempotency_key
    assert request.headers["User-Agent"] == f"opswatch/{__version__}"


async def test_any_2xx_is_success(receiver: Receiver, webhook: WebhookNotifier) -> None:
    receiver.script(201, 204)

    await webhook.send(firing())
    await webhook.send(firing())

    assert len(await receiver.wait_for(2)) == 2


async def test_429_with_an_http_date_retry_after_gives_the_seconds_until_then(
    receiver: Receiver, webhook: WebhookNotifier
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    receiver.script(Reply(429, headers={"Retry-After": format_datetime(when, usegmt=True)}))

    with pytest.raises(NotifyError) as caught:
        await webhook.send(firing())

    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize(
    ("header", "expected"),
    [("30", 30.0), ("1.5", 1.5), ("-3", 0.0), (None, None), ("soon", None), ("", None),
     ("Thu, 01 Jan 2026 12:01:00 GMT", 60.0), ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0)],
)  # fmt: skip
def test_retry_after_header_is_parsed_as_seconds_or_http_date(
    header: str | None, expected: float | None
) -> None:
    assert parse_retry_after(header, T0) == expected


async def test_error_message_quotes_the_response_body_without_the_secret_path(
    receiver: Receiver,
) -> None:
    notifier = webhook_for(receiver, "/hooks/T000/SECRETPATH")
    receiver.script(Reply(400, body="no such hook: /hooks/T000/SECRETPATH"))

    with pytest.raises(NotifyError) as caught:
        await notifier.send(firing())
    await notifier.close()

    assert "no such hook: /***" in str(caught.value)
    assert "SECRETPATH" not in str(caught.value)


async def test_a_long_response_body_is_cut_after_the_secret_is_removed(
    receiver: Receiver,
) -> None:
    notifier = webhook_for(receiver, "/hooks/T000/SECRETPATH")
    receiver.script(Reply(404, body="x" * 180 + " /hooks/T000/SECRETPATH " + "y" * 5000))

    with pytest.raises(NotifyError) as caught:
        await notifier.send(firing())
    await notifier.close()

    assert "SECR" not in str(caught.value)
    assert len(str(caught.value)) < 300


async def test_no_response_within_the_timeout_is_a_transient_error(receiver: Receiver) -> None:
    notifier = webhook_for(receiver, timeout=0.2)
    receiver.script(Reply.HANG)

    with pytest.raises(NotifyError, match=r"no response within 0\.2s") as caught:
        await notifier.send(firing())
    await notifier.close()

    assert caught.value.permanent is False


async def test_close_releases_the_session_and_a_later_send_opens_a_new_one(
    receiver: Receiver, webhook: WebhookNotifier
) -> None:
    await webhook.send(firing())
    await webhook.close()
    await webhook.close()

    await webhook.send(firing())

    assert len(await receiver.wait_for(2)) == 2


def test_from_env_makes_one_notifier_per_url_with_a_stable_secret_free_channel() -> None:
    env = Env(
        {
            "OPSWATCH_WEBHOOK_URL": "https://a.example/hooks/SECRETA, https://b.example/x/SECRETB",
            "OPSWATCH_WEBHOOK_TIMEOUT": "3s",
        }
    )

    first, second = WebhookNotifier.from_env(env)

    assert re.fullmatch(r"webhook:[0-9a-f]{8}", first.channel)
    assert first.channel != second.channel
    assert WebhookNotifier.from_env(env)[0].channel == first.channel
    assert "SECRET" not in first.channel
    assert first.describe() == {
        "channel": first.channel,
        "url": "https://a.example/***",
        "timeout": "3s",
    }


def test_from_env_reads_the_url_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "url"
    secret_file.write_text("https://hooks.example/T000/SECRETPATH\n")

    (notifier,) = WebhookNotifier.from_env(Env({"OPSWATCH_WEBHOOK_URL_FILE": str(secret_file)}))

    assert notifier.describe()["url"] == "https://hooks.example/***"
    assert notifier.describe()["timeout"] == "10s"


def test_from_env_without_a_url_configures_nothing() -> None:
    assert WebhookNotifier.from_env(Env({})) == []


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OPSWATCH_WEBHOOK_URL": "ftp://x.example/SECRETPATH"}, "OPSWATCH_WEBHOOK_URL"),
        ({"OPSWATCH_WEBHOOK_URL": "https://x.example/a,https://x.example/a"},
         "OPSWATCH_WEBHOOK_URL"),
        ({"OPSWATCH_WEBHOOK_URL": "https://x.example/a", "OPSWATCH_WEBHOOK_TIMEOUT": "soon"},
         "OPSWATCH_WEBHOOK_TIMEOUT"),
    ],
)  # fmt: skip
def test_from_env_rejects_bad_values_naming_the_variable(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookNotifier.from_env(Env(environ))

    assert caught.value.variable == variable
    assert "SECRETPATH" not in str(caught.value)


class RawReceiver:
    """A local endpoint that keeps each request's exact body bytes (for signatures)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.requests.append((dict(request.headers), await request.read()))
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def raw_receiver() -> AsyncIterator[RawReceiver]:
    receiver = RawReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_a_signed_request_carries_an_hmac_of_the_exact_body_the_receiver_can_verify(
    raw_receiver: RawReceiver,
) -> None:
    (notifier,) = WebhookNotifier.from_env(
        Env(
            {
                "OPSWATCH_WEBHOOK_URL": raw_receiver.url + "/hook",
                "OPSWATCH_WEBHOOK_SECRET": "s3cret-key",
            }
        )
    )
    before = int(time.time())

    await notifier.send(firing())
    await notifier.close()

    ((headers, body),) = raw_receiver.requests
    expected = hmac.new(b"s3cret-key", body, hashlib.sha256).hexdigest()
    assert headers["X-Opswatch-Signature"] == f"sha256={expected}"
    assert before <= int(headers["X-Opswatch-Timestamp"]) <= int(time.time())
    assert json.loads(body)["status"] == "firing"
    assert "s3cret" not in json.dumps(notifier.describe())


async def test_an_unsigned_webhook_sends_no_signature_headers(
    raw_receiver: RawReceiver,
) -> None:
    (notifier,) = WebhookNotifier.from_env(Env({"OPSWATCH_WEBHOOK_URL": raw_receiver.url}))

    await notifier.send(firing())
    await notifier.close()

    ((headers, _body),) = raw_receiver.requests
    assert "X-Opswatch-Signature" not in headers
    assert "X-Opswatch-Timestamp" not in headers


async def test_custom_headers_are_sent_and_masked_in_the_configuration(
    receiver: Receiver, tmp_path: Path
) -> None:
    headers_file = tmp_path / "headers"
    headers_file.write_text("Authorization: Bearer tok-123; X-Team: ops\n")
    (notifier,) = WebhookNotifier.from_env(
        Env(
            {
                "OPSWATCH_WEBHOOK_URL": receiver.url,
                "OPSWATCH_WEBHOOK_HEADERS_FILE": str(headers_file),
            }
        )
    )

    await notifier.send(firing())
    await notifier.close()

    (request,) = await receiver.wait_for(1)
    assert request.headers["Authorization"] == "Bearer tok-123"
    assert request.headers["X-Team"] == "ops"
    assert request.headers["Content-Type"] == "application/json"
    assert notifier.describe()["headers"] == "Authorization: ***; X-Team: ***"


async def test_a_response_quoting_a_header_value_is_scrubbed_from_the_error(
    receiver: Receiver,
) -> None:
    (notifier,) = WebhookNotifier.from_env(
        Env(
            {
                "OPSWATCH_WEBHOOK_URL": receiver.url,
                "OPSWATCH_WEBHOOK_HEADERS": "Authorization: Bearer tok-123",
            }
        )
    )
    receiver.script(Reply(401, body="bad token Bearer tok-123"))

    with pytest.raises(NotifyError) as caught:
        await notifier.send(firing())
    await notifier.close()

    assert "tok-123" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Authorization Bearer tok-123", "expected 'Name: value' pairs"),
        ("Content-Type: text/plain", "set by opswatch itself"),
        ("X-Opswatch-Signature: x", "set by opswatch itself"),
        ("X-A: 1; x-a: 2", "listed twice"),
        ("Bad Name: 1", "expected 'Name: value' pairs"),
    ],
)
def test_malformed_custom_headers_are_a_config_error_without_their_values(
    value: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookNotifier.from_env(
            Env({"OPSWATCH_WEBHOOK_URL": "https://x.example/a", "OPSWATCH_WEBHOOK_HEADERS": value})
        )

    assert caught.value.variable == "OPSWATCH_WEBHOOK_HEADERS"
    assert problem in caught.value.problem
    assert "tok-123" not in str(caught.value)


def test_a_configured_runbook_becomes_the_runbook_url_annotation() -> None:
    options = RenderOptions.from_env(
        Env({"OPSWATCH_RUNBOOK_URL": "https://wiki.example/runbooks/{rule}"})
    )

    body = payload(firing(), options)

    assert body["alerts"][0]["annotations"]["runbook_url"] == (
        "https://wiki.example/runbooks/cpu_high"
    )


async def _self_signed(directory: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1 (``openssl req``)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        reason = "openssl is not installed (apt-get install openssl)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason} and OPSWATCH_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(reason)
    key, cert = directory / "key.pem", directory / "cert.pem"
    process = await asyncio.create_subprocess_exec(
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, error = await process.communicate()
    assert process.returncode == 0, error.decode()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
async def https_receiver(tmp_path: Path) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """An HTTPS endpoint whose certificate nobody trusts; records the requests it gets."""
    requests: list[web.Request] = []

    async def hook(request: web.Request) -> web.Response:
        requests.append(request)
        return web.Response()

    application = web.Application()
    application.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(application, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=await _self_signed(tmp_path))
    await site.start()
    port = runner.addresses[0][1]
    yield f"https://127.0.0.1:{port}", requests
    await runner.cleanup()


async def test_an_untrusted_certificate_is_a_permanent_error_without_the_secret_path(
    https_receiver: tuple[str, list[web.Request]],
) -> None:
    base, requests = https_receiver
    url = f"{base}/hooks/SECRETPATH"
    notifier = WebhookNotifier(Secret(url, mask_url(url, hide_path=True)), timeout=5.0)

    with pytest.raises(NotifyError) as caught:
        await notifier.send(firing())
    await notifier.close()

    assert caught.value.permanent is True
    assert "untrusted certificate (self-signed certificate)" in str(caught.value)
    assert "SECRETPATH" not in str(caught.value)
    assert requests == []


def test_credentials_in_the_url_with_an_authorization_header_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookNotifier.from_env(
            Env(
                {
                    "OPSWATCH_WEBHOOK_URL": "https://x.example/a,https://bob:pa55word@x.example/b",
                    "OPSWATCH_WEBHOOK_HEADERS": "authorization: Bearer tok-123",
                }
            )
        )

    assert caught.value.variable == "OPSWATCH_WEBHOOK_HEADERS"
    assert "URL 2 of OPSWATCH_WEBHOOK_URL" in caught.value.problem
    assert "pa55word" not in str(caught.value)
    assert "tok-123" not in str(caught.value)


def test_check_config_refuses_url_credentials_with_an_authorization_header(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(tmp_path / "s.sqlite3"))
    monkeypatch.setenv("OPSWATCH_WEBHOOK_URL", "https://bob:pa55word@x.example/hook")
    monkeypatch.setenv("OPSWATCH_WEBHOOK_HEADERS", "Authorization: Bearer tok-123")

    assert main(["check-config"]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("opswatch: configuration error: OPSWATCH_WEBHOOK_HEADERS: ")
    assert "pa55word" not in line
    assert "tok-123" not in line


def test_a_severity_change_resolves_the_label_set_consumers_knew_beside_the_new_one() -> None:
    critical = payload(render([transition(severity=Severity.CRITICAL)], T0))
    changed = payload(
        render(
            [
                transition(
                    kind=TransitionKind.SEVERITY_CHANGED,
                    severity=Severity.EMERGENCY,
                    previous_severity=Severity.CRITICAL,
                    at=LATER,
                )
            ],
            LATER,
        )
    )

    assert_alertmanager_v4(changed)
    (known,) = critical["alerts"]
    old, new = changed["alerts"]
    assert old["status"] == "resolved"
    assert old["labels"] == known["labels"]  # the very label set the consumer holds
    assert old["endsAt"] == "2026-01-01T12:12:00.000Z"
    assert old["annotations"]["replaced_by"] == "severity emergency"
    assert new["status"] == "firing"
    assert new["labels"] == {**known["labels"], "severity": "emergency"}
    assert new["fingerprint"] == known["fingerprint"]  # opswatch's id stays
    assert old["fingerprint"] != new["fingerprint"]
    assert changed["status"] == "firing"
    assert "severity" not in changed["commonLabels"]
