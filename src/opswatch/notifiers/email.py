"""Email notifier: one message per notification over SMTP (aiosmtplib).

* ``OPSWATCH_EMAIL_SMTP_URL``: ``smtp://user:pass@host:587`` (STARTTLS, port 587 by default)
  or ``smtps://user:pass@host:465`` (implicit TLS); user and password are optional and
  URL-encoded; the URL is a secret (``_FILE`` works) and is shown with the password masked.
* ``OPSWATCH_EMAIL_STARTTLS``: require STARTTLS on ``smtp://`` (default: true on port 587,
  false elsewhere, e.g. a local relay on 25).
* ``OPSWATCH_EMAIL_TLS_VERIFY`` (default true) and ``OPSWATCH_EMAIL_CA_FILE`` (a PEM bundle
  to trust instead of the system's).
* ``OPSWATCH_EMAIL_FROM``, ``OPSWATCH_EMAIL_TO`` (comma list), ``OPSWATCH_EMAIL_TIMEOUT``.

The message has a plain-text part (the notification's text) and an HTML part (the same
alerts as a table). Threading: the first message about a group of alerts (all its
transitions are firings) gets ``Message-ID: <opswatch.<group>@<from-domain>>``, where
``<group>`` hashes each alert's fingerprint and start; a later message about the same group
(a reminder, the resolution) replies to it with ``In-Reply-To``/``References``. A resolution
whose group differs from its firing's (two alerts fired together, one resolves) starts its
own thread.

SMTP errors: a 5xx reply (rejected sender, recipients, authentication, message) is
permanent; 4xx replies, refused connections, timeouts and dropped connections are transient;
a certificate that fails verification or a missing STARTTLS/AUTH extension is permanent.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import ClassVar
from urllib.parse import unquote, urlsplit

import aiosmtplib

from opswatch.config import PREFIX, ConfigError, Env, Secret, refuse_control_characters
from opswatch.model import Notification, Report, TransitionKind, Verdict
from opswatch.notifiers.base import NotifyError
from opswatch.notifiers.render import (
    AlertView,
    RenderOptions,
    fallback_note,
    is_fallback,
    rendered_at,
    report_period,
    views,
)

URL_VAR = f"{PREFIX}EMAIL_SMTP_URL"
FROM_VAR = f"{PREFIX}EMAIL_FROM"
TO_VAR = f"{PREFIX}EMAIL_TO"
STARTTLS_VAR = f"{PREFIX}EMAIL_STARTTLS"
VERIFY_VAR = f"{PREFIX}EMAIL_TLS_VERIFY"
CA_FILE_VAR = f"{PREFIX}EMAIL_CA_FILE"
TIMEOUT_VAR = f"{PREFIX}EMAIL_TIMEOUT"
_DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
_COLORS = {
    "resolved": "#2eb67d",
    "info": "#439fe0",
    "warning": "#ecb22e",
    "critical": "#e01e5a",
    "emergency": "#8b0000",
}
#: a report line's colour by its state
_VERDICT_COLORS = {Verdict.PASS: "#2eb67d", Verdict.WARN: "#ecb22e", Verdict.FAIL: "#e01e5a"}


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to connect; ``display`` is the URL with the password masked."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: Secret | None
    tls: ssl.SSLContext | None
    display: str


class EmailNotifier:
    name: ClassVar[str] = "email"

    def __init__(
        self,
        server: SmtpServer,
        sender: str,
        recipients: Sequence[str],
        *,
        timeout: float = 30.0,
        render: RenderOptions | None = None,
    ) -> None:
        self.server = server
        self.sender = sender
        self.recipients = tuple(recipients)
        self.timeout = timeout
        self._render = render or RenderOptions()
        self._domain = parseaddr(sender)[1].rpartition("@")[2] or "opswatch.invalid"
        identity = f"{server.host}:{server.port}\n{sender}\n" + "\n".join(self.recipients)
        self.channel = "email:" + hashlib.sha256(identity.encode()).hexdigest()[:8]

    @classmethod
    def from_env(cls, env: Env) -> Sequence[EmailNotifier]:
        url = env.url(URL_VAR, schemes=("smtp", "smtps"), hide_path=False)
        sender = env.raw(FROM_VAR)
        recipients = [r.strip() for r in (env.raw(TO_VAR) or "").split(",") if r.strip()]
        starttls = env.raw(STARTTLS_VAR)
        verify = env.boolean(VERIFY_VAR, True)
        ca_file = env.raw(CA_FILE_VAR)
        timeout = env.duration(TIMEOUT_VAR, 30.0, minimum=0.1)
        render = RenderOptions.from_env(env)
        if url is None:
            if sender is not None or recipients:
                raise ConfigError(URL_VAR, f"required when {FROM_VAR} or {TO_VAR} is set")
            return []
        for variable, value in ((FROM_VAR, sender), (TO_VAR, env.raw(TO_VAR))):
            if value is not None:  # header injection: each value is one header line
                refuse_control_characters(variable, value)
        if sender is None or "@" not in parseaddr(sender)[1]:
            raise ConfigError(FROM_VAR, "required: the sender address, e.g. opswatch@example.com")
        if not recipients:
            raise ConfigError(TO_VAR, "required: a comma list of recipient addresses")
        for recipient in recipients:
            if "@" not in parseaddr(recipient)[1]:
                raise ConfigError(TO_VAR, f"not an email address: {recipient!r}")
        parts = urlsplit(url.reveal())
        implicit = parts.scheme == "smtps"
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        use_starttls = env.boolean(STARTTLS_VAR, not implicit and port == 587)
        if implicit and use_starttls and starttls is not None:
            raise ConfigError(
                STARTTLS_VAR, "smtps:// is TLS from the start; STARTTLS is for smtp://"
            )
        uses_tls = implicit or use_starttls
        server = SmtpServer(
            host=parts.hostname or "",
            port=port,
            implicit_tls=implicit,
            starttls=use_starttls and not implicit,
            username=unquote(parts.username) if parts.username else None,
            password=Secret(unquote(parts.password)) if parts.password else None,
            tls=_tls_context(verify, ca_file) if uses_tls else None,
            display=str(url),
        )
        return [cls(server, sender, recipients, timeout=timeout, render=render)]

    def describe(self) -> dict[str, str]:
        tls = (
            "implicit"
            if self.server.implicit_tls
            else "starttls"
            if self.server.starttls
            else "none"
        )
        verify = self.server.tls is not None and self.server.tls.verify_mode != ssl.CERT_NONE
        return {
            "channel": self.channel,
            "smtp_url": self.server.display,
            "tls": tls,
            "tls_verify": str(verify).lower(),
            "from": self.sender,
            "to": ", ".join(self.recipients),
            "timeout": f"{self.timeout:g}s",
        }

    async def send(self, notification: Notification) -> None:
        server = self.server
        try:
            async with asyncio.timeout(self.timeout):  # the whole exchange, not each reply
                await aiosmtplib.send(
                    self.compose(notification),
                    hostname=server.host,
                    port=server.port,
                    username=server.username,
                    password=server.password.reveal() if server.password else None,
                    use_tls=server.implicit_tls,
                    start_tls=server.starttls,
                    tls_context=server.tls,
                    timeout=self.timeout,
                )
        except TimeoutError:  # ours, or aiosmtplib's SMTPTimeoutError for one reply
            raise self._error(f"no answer within {self.timeout:g}s", permanent=False) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            permanent = all(500 <= c < 600 for c in codes)
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            raise self._error(f"recipients refused ({detail})", permanent=permanent) from None
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            raise self._error(f"SMTP {exc.code} {exc.message}", permanent=permanent) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise self._error(f"not supported by the server: {exc}", permanent=True) from None
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or "certificate verification failed"
            raise self._error(f"TLS: {reason}", permanent=True) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected) as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLCertVerificationError):
                reason = cause.verify_message or "certificate verification failed"
                raise self._error(f"TLS: {reason}", permanent=True) from None
            raise self._error(f"cannot connect ({type(exc).__name__})", permanent=False) from None
        except aiosmtplib.SMTPException as exc:
            # e.g. "The SMTP AUTH extension is not supported by this server.": configuration
            permanent = "not supported" in str(exc)
            raise self._error(str(exc) or type(exc).__name__, permanent=permanent) from None
        except OSError as exc:
            raise self._error(
                f"connection failed ({type(exc).__name__})", permanent=False
            ) from None

    async def close(self) -> None:
        return None  # a connection per message: nothing stays open

    def compose(self, notification: Notification) -> EmailMessage:
        """The mail for ``notification`` (public for tests and ``test-notify``)."""
        msg = EmailMessage()
        msg["Subject"] = notification.title
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        report = notification.report
        moment = rendered_at(notification) if report is None else report.until
        msg["Date"] = format_datetime(moment)
        root, own = self.message_ids(notification)
        msg["Message-ID"] = own
        if own != root:
            msg["In-Reply-To"] = root
            msg["References"] = root
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Opswatch-Idempotency-Key"] = notification.idempotency_key
        msg.set_content(notification.text)
        if report is None:
            msg.add_alternative(_html(notification, self._render), subtype="html")
        else:
            msg.add_alternative(_report_html(notification, report), subtype="html")
        return msg

    def message_ids(self, notification: Notification) -> tuple[str, str]:
        """(the group's thread root, this message's id); equal for the first message. A
        report is a thread of its own."""
        if notification.report is not None:
            own = f"<opswatch.{notification.idempotency_key.replace(':', '.')}@{self._domain}>"
            return own, own
        alerts = sorted(
            {
                f"{t.alert.fingerprint}@{t.alert.started_at.isoformat()}"
                for t in notification.transitions
            }
        )
        group = hashlib.sha256("\n".join(alerts).encode()).hexdigest()[:24]
        root = f"<opswatch.{group}@{self._domain}>"
        first = all(t.kind is TransitionKind.FIRED for t in notification.transitions)
        if first and not is_fallback(notification):
            return root, root
        return root, f"<opswatch.{group}.{notification.idempotency_key[:16]}@{self._domain}>"

    def _error(self, what: str, *, permanent: bool) -> NotifyError:
        message = f"email {self.server.display}: {what}"
        password = self.server.password
        if password is not None and password.reveal():
            message = message.replace(password.reveal(), "***")
        return NotifyError(message, permanent=permanent)


def _tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(CA_FILE_VAR, f"cannot load {ca_file!r}: {reason}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _html(notification: Notification, options: RenderOptions) -> str:
    """The HTML part: the same words as the text part, laid out as one table per alert."""
    e = html.escape
    parts = [f"<h2>{e(notification.title)}</h2>"]
    note = fallback_note(notification)
    if note is not None:
        parts.append(f"<p><em>{e(note)}</em></p>")
    for v in views(notification.transitions, rendered_at(notification), options):
        parts.append(_alert_html(v))
    body = "\n".join(parts)
    return f'<!DOCTYPE html>\n<html><body style="font-family:sans-serif">\n{body}\n</body></html>\n'


def _report_html(notification: Notification, report: Report) -> str:
    """A report: the summary, then one table per section, each line's state in its colour."""
    e = html.escape
    color = _VERDICT_COLORS[report.verdict]
    parts = [f"<h2>{e(notification.title)}</h2>"]
    note = fallback_note(notification)
    if note is not None:
        parts.append(f"<p><em>{e(note)}</em></p>")
    parts.append(
        f'<p style="border-left:6px solid {color};padding-left:8px">'
        f"<strong>{e(report.summary)}</strong><br>{e(report_period(report))}</p>"
    )
    for section in report.sections:
        parts.append(f"<h3>{e(section.title)}</h3>")
        if not section.lines:
            parts.append(f"<p><em>{e(section.empty)}</em></p>")
            continue
        rows = "".join(
            f'<tr><td style="color:{_VERDICT_COLORS[line.verdict]}"><strong>'
            f"{line.verdict.value}</strong></td><td>{e(line.text)}</td></tr>"
            for line in section.lines
        )
        parts.append(f"<table>{rows}</table>")
    body = "\n".join(parts)
    return f'<!DOCTYPE html>\n<html><body style="font-family:sans-serif">\n{body}\n</body></html>\n'


def _alert_html(v: AlertView) -> str:
    e = html.escape
    color = _COLORS["resolved" if v.resolved else v.severity.value]
    rows = [
        ("what", v.happened),
        (v.value_label, v.value),
        ("started", f"{v.started} (for {v.duration})"),
    ]
    if v.labels:
        rows.append(("labels", ", ".join(f"{k}={value}" for k, value in v.labels)))
    if v.acked_by:
        rows.append(("acknowledged by", v.acked_by))
    if v.actions:
        rows.append(("actions", v.actions))
    cells = "".join(f"<tr><th align=left>{e(k)}</th><td>{e(val)}</td></tr>" for k, val in rows)
    if v.runbook:
        link = f'<a href="{e(v.runbook)}">{e(v.runbook)}</a>'
        cells += f"<tr><th align=left>runbook</th><td>{link}</td></tr>"
    if v.ack_url:
        link = f'<a href="{e(v.ack_url)}">acknowledge</a>'
        cells += f"<tr><th align=left>acknowledge</th><td>{link}</td></tr>"
    if v.evidence:
        evidence = e("\n".join(v.evidence))
        cells += f"<tr><th align=left>evidence</th><td><pre>{evidence}</pre></td></tr>"
    title = f"{v.severity.value.upper()} {v.rule} on {v.check}: {v.summary}"
    return (
        f'<div style="border-left:6px solid {color};padding-left:8px;margin:12px 0">'
        f"<p><strong>{e(title)}</strong></p><table>{cells}</table></div>"
    )
