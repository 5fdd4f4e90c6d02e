"""The email notifier against a real local SMTP server (aiosmtpd) with STARTTLS, implicit TLS
and authentication, using a certificate made by ``openssl`` for the test."""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from opswatch.config import ConfigError, Env
from opswatch.model import Notification, Severity, TransitionKind
from opswatch.notifiers.base import NotifyError
from opswatch.notifiers.email import EmailNotifier
from opswatch.notifiers.render import as_fallback, render
from tests.conftest import free_port
from tests.notifiers.conftest import T0, transition

USER, PASSWORD = "alerts", "p@ss word!"
LATER = T0 + timedelta(minutes=12)


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made by the openssl CLI."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


@dataclass
class Mailbox:
    """The SMTP server's handler: collects accepted mail; can refuse on demand."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        if self.data_reply is not None:
            return self.data_reply
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int

    def url(self, scheme: str = "smtp", password: str = "p%40ss%20word%21") -> str:
        return f"{scheme}://{USER}:{password}@127.0.0.1:{self.port}"


def serve(certificate: Certificate, *, implicit: bool) -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    port = free_port()
    tls: dict[str, Any] = (
        {"ssl_context": certificate.server_context()}
        if implicit
        else {"tls_context": certificate.server_context(), "require_starttls": True}
    )
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        # aiosmtpd counts only STARTTLS as TLS: with implicit TLS, AUTH must be allowed as is
        auth_require_tls=not implicit,
        auth_required=True,
        **tls,
    )
    controller.start()
    try:
        yield SmtpServer(mailbox, port)
    finally:
        controller.stop()


@pytest.fixture
def smtp(certificate: Certificate) -> Iterator[SmtpServer]:
    """STARTTLS required, authentication required (only after STARTTLS)."""
    yield from serve(certificate, implicit=False)


@pytest.fixture
def smtps(certificate: Certificate) -> Iterator[SmtpServer]:
    """TLS from the first byte, authentication required."""
    yield from serve(certificate, implicit=True)


def notifier_for(url: str, **extra: str) -> EmailNotifier:
    environ = {
        "OPSWATCH_EMAIL_SMTP_URL": url,
        "OPSWATCH_EMAIL_FROM": "opswatch@example.com",
        "OPSWATCH_EMAIL_TO": "ops@example.com, oncall@example.com",
        "OPSWATCH_EMAIL_STARTTLS": "true",
        "OPSWATCH_EMAIL_TLS_VERIFY": "false",
        "OPSWATCH_EMAIL_TIMEOUT": "5s",
        **extra,
    }
    (notifier,) = EmailNotifier.from_env(Env(environ))
    return notifier


def firing() -> Notification:
    return render(
        [transition(severity=Severity.CRITICAL, summary="CPU <busy> & hot", started_at=T0)], T0
    )


def resolved() -> Notification:
    return render([transition(kind=TransitionKind.RESOLVED, at=LATER, value=3.0)], LATER)


@pytest.fixture
async def notifier(smtp: SmtpServer) -> AsyncIterator[EmailNotifier]:
    notifier = notifier_for(smtp.url())
    yield notifier
    await notifier.close()


async def test_sends_a_text_and_html_mail_over_starttls_with_authentication(
    smtp: SmtpServer, notifier: EmailNotifier
) -> None:
    notification = firing()

    await notifier.send(notification)

    ((sender, recipients, message),) = smtp.mailbox.messages
    assert sender == "opswatch@example.com"
    assert recipients == ["ops@example.com", "oncall@example.com"]
    assert message["Subject"] == "[FIRING:1] cpu_high on host"
    assert message["To"] == "ops@example.com, oncall@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Opswatch-Idempotency-Key"] == notification.idempotency_key
    assert message["Message-ID"].endswith("@example.com>")
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "CRITICAL cpu_high on host: CPU <busy> & hot" in text.get_content()
    assert "CPU &lt;busy&gt; &amp; hot" in html.get_content()
    assert "<busy>" not in html.get_content()


async def test_one_message_per_notification_lists_every_alert_of_the_group(
    smtp: SmtpServer, notifier: EmailNotifier
) -> None:
    storm = render([transition("disk_full", labels={"d": str(n)}) for n in range(200)], T0)

    await notifier.send(storm)

    ((_, _, message),) = smtp.mailbox.messages
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content().count("WARNING disk_full on host") == 200
    assert message["Subject"] == "[FIRING:200] disk_full on host"


async def test_a_resolution_replies_to_the_firing_mail_so_they_thread(
    smtp: SmtpServer, notifier: EmailNotifier
) -> None:
    await notifier.send(render([transition(started_at=T0)], T0))
    await notifier.send(resolved())

    (_, _, fired), (_, _, done) = smtp.mailbox.messages
    assert "In-Reply-To" not in fired
    assert done["In-Reply-To"] == fired["Message-ID"]
    assert done["References"] == fired["Message-ID"]
    assert done["Message-ID"] != fired["Message-ID"]
    body = done.get_body(("plain",))
    assert body is not None
    assert "value at resolution: 3" in body.get_content()


def test_the_same_notification_always_gets_the_same_message_id() -> None:
    notifier = notifier_for("smtp://127.0.0.1:2525")

    assert notifier.compose(firing())["Message-ID"] == notifier.compose(firing())["Message-ID"]
    copy = as_fallback(firing(), "slack:ops", "permanent error: channel_not_found")
    fallback = notifier.compose(copy)
    assert fallback["Subject"].startswith("[fallback] ")
    assert fallback["Message-ID"] != notifier.compose(firing())["Message-ID"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_implicit_tls_with_smtps(smtps: SmtpServer) -> None:
    notifier = notifier_for(smtps.url("smtps"), OPSWATCH_EMAIL_STARTTLS="")

    await notifier.send(firing())

    assert len(smtps.mailbox.messages) == 1
    assert notifier.describe()["tls"] == "implicit"


async def test_the_server_certificate_is_verified_against_a_ca_file(
    smtp: SmtpServer, certificate: Certificate
) -> None:
    notifier = notifier_for(
        smtp.url(), OPSWATCH_EMAIL_TLS_VERIFY="true", OPSWATCH_EMAIL_CA_FILE=str(certificate.cert)
    )

    await notifier.send(firing())

    assert len(smtp.mailbox.messages) == 1
    assert notifier.describe()["tls_verify"] == "true"


async def test_an_untrusted_certificate_is_a_permanent_error(smtp: SmtpServer) -> None:
    notifier = notifier_for(smtp.url(), OPSWATCH_EMAIL_TLS_VERIFY="true")

    with pytest.raises(NotifyError, match="TLS: ") as caught:
        await notifier.send(firing())

    assert caught.value.permanent is True
    assert smtp.mailbox.messages == []


async def test_a_server_without_auth_when_credentials_are_set_is_a_permanent_error() -> None:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)  # no AUTH, no TLS
    controller.start()
    try:
        notifier = notifier_for(
            f"smtp://{USER}:SECRETPW@127.0.0.1:{port}", OPSWATCH_EMAIL_STARTTLS="false"
        )
        with pytest.raises(NotifyError, match="AUTH extension is not supported") as caught:
            await notifier.send(firing())
    finally:
        controller.stop()

    assert caught.value.permanent is True
    assert mailbox.messages == []


def test_describe_masks_the_password_and_names_the_channel() -> None:
    notifier = notifier_for("smtp://alerts:SECRETPW@mail.example:587", OPSWATCH_EMAIL_STARTTLS="")

    described = notifier.describe()

    assert described["smtp_url"] == "smtp://alerts:***@mail.example:587"
    assert described["tls"] == "starttls"  # the default on 587
    assert described["to"] == "ops@example.com, oncall@example.com"
    assert notifier.channel.startswith("email:")
    assert "SECRETPW" not in str(described)


def test_port_25_does_not_require_starttls_by_default() -> None:
    notifier = notifier_for("smtp://relay.example:25", OPSWATCH_EMAIL_STARTTLS="")

    assert notifier.describe()["tls"] == "none"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OPSWATCH_EMAIL_TO": "a@example.com"}, "OPSWATCH_EMAIL_SMTP_URL"),
        ({"OPSWATCH_EMAIL_SMTP_URL": "smtp://h:25", "OPSWATCH_EMAIL_TO": "a@example.com"},
         "OPSWATCH_EMAIL_FROM"),
        ({"OPSWATCH_EMAIL_SMTP_URL": "smtp://h:25", "OPSWATCH_EMAIL_FROM": "o@example.com"},
         "OPSWATCH_EMAIL_TO"),
        ({"OPSWATCH_EMAIL_SMTP_URL": "smtp://h:25", "OPSWATCH_EMAIL_FROM": "o@example.com",
          "OPSWATCH_EMAIL_TO": "not-an-address"}, "OPSWATCH_EMAIL_TO"),
        ({"OPSWATCH_EMAIL_SMTP_URL": "http://u:SECRETPW@h", "OPSWATCH_EMAIL_FROM": "o@example.com",
          "OPSWATCH_EMAIL_TO": "a@example.com"}, "OPSWATCH_EMAIL_SMTP_URL"),
        ({"OPSWATCH_EMAIL_SMTP_URL": "smtps://h", "OPSWATCH_EMAIL_FROM": "o@example.com",
          "OPSWATCH_EMAIL_TO": "a@example.com", "OPSWATCH_EMAIL_STARTTLS": "true"},
         "OPSWATCH_EMAIL_STARTTLS"),
        ({"OPSWATCH_EMAIL_SMTP_URL": "smtps://h", "OPSWATCH_EMAIL_FROM": "o@example.com",
          "OPSWATCH_EMAIL_TO": "a@example.com", "OPSWATCH_EMAIL_CA_FILE": "/nonexistent.pem"},
         "OPSWATCH_EMAIL_CA_FILE"),
        ({"OPSWATCH_EMAIL_SMTP_URL": "smtps://h", "OPSWATCH_EMAIL_FROM": "o@example.com",
          "OPSWATCH_EMAIL_TO": "a@example.com", "OPSWATCH_EMAIL_TLS_VERIFY": "maybe"},
         "OPSWATCH_EMAIL_TLS_VERIFY"),
    ],
)  # fmt: skip
def test_bad_email_configuration_is_an_error_naming_the_variable_and_no_password(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        EmailNotifier.from_env(Env(environ))

    assert caught.value.variable == variable
    assert "SECRETPW" not in str(caught.value)
