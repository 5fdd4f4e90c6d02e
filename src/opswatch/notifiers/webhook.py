"""Webhook notifier: POSTs an Alertmanager-compatible (version 4) JSON body to each URL.

``OPSWATCH_WEBHOOK_URL`` holds one or more comma-separated URLs (or ``_FILE``); the URL is a
secret (such endpoints carry their token in the path), so only its masked form and a hash of
it (the channel) ever appear in logs, errors and ``check-config``. The receiver gets an
``Idempotency-Key`` header: the outbox may deliver a notification twice after a crash or a
timeout that hid a success, never zero times.

With ``OPSWATCH_WEBHOOK_SECRET`` every request is signed: ``X-Opswatch-Signature:
sha256=<hex>`` is the HMAC-SHA256 of the exact body bytes under the secret, beside
``X-Opswatch-Timestamp`` (Unix seconds at sending). ``OPSWATCH_WEBHOOK_HEADERS`` adds headers
(``Authorization: Bearer x; X-Team: ops``); their values are secrets like the URL. Both apply
to every configured URL. Credentials in a URL (``https://user:pass@host/``) are sent as Basic
authentication, so an ``Authorization`` header beside them is refused at start-up.

An untrusted certificate (self-signed, expired, another host's) is a permanent error: it is
not retried, since only an operator can fix it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp

from opswatch.codec import report_to_json
from opswatch.config import ConfigError, Env, Secret, refuse_control_characters
from opswatch.model import Notification, Transition, fingerprint
from opswatch.notifiers.base import NotifyError
from opswatch.notifiers.http import (
    SNIPPET_CHARS,
    Session,
    describe_client_error,
    now_utc,
    parse_retry_after,
    read_text,
)
from opswatch.notifiers.render import (
    RenderOptions,
    fallback_note,
    format_value,
    is_resolved,
    rendered_at,
)

URL_VAR = "OPSWATCH_WEBHOOK_URL"
TIMEOUT_VAR = "OPSWATCH_WEBHOOK_TIMEOUT"
SECRET_VAR = "OPSWATCH_WEBHOOK_SECRET"
HEADERS_VAR = "OPSWATCH_WEBHOOK_HEADERS"
SIGNATURE_HEADER = "X-Opswatch-Signature"
TIMESTAMP_HEADER = "X-Opswatch-Timestamp"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RESERVED_HEADERS = {"content-type", "content-length", "host", "idempotency-key"}
ZERO_TIME = "0001-01-01T00:00:00Z"


class WebhookNotifier:
    name: ClassVar[str] = "webhook"

    def __init__(
        self,
        url: Secret,
        *,
        timeout: float = 10.0,
        secret: Secret | None = None,
        headers: Mapping[str, Secret] | None = None,
        render: RenderOptions | None = None,
    ) -> None:
        self._url = url
        self.timeout = timeout
        self._secret = secret
        self._headers = dict(headers or {})
        self._render = render or RenderOptions()
        self.channel = "webhook:" + hashlib.sha256(url.reveal().encode()).hexdigest()[:8]
        self._session = Session()

    @classmethod
    def from_env(cls, env: Env) -> Sequence[WebhookNotifier]:
        urls = env.urls(URL_VAR, hide_path=True)
        timeout = env.duration(TIMEOUT_VAR, 10.0, minimum=0.1)
        secret = env.secret(SECRET_VAR)
        headers = parse_headers(env.secret(HEADERS_VAR))
        if len({u.reveal() for u in urls}) != len(urls):
            raise ConfigError(URL_VAR, "a URL is listed twice")
        _refuse_two_credentials(urls, headers)
        render = RenderOptions.from_env(env)
        return [
            cls(url, timeout=timeout, secret=secret, headers=headers, render=render) for url in urls
        ]

    def describe(self) -> dict[str, str]:
        described = {
            "channel": self.channel,
            "url": str(self._url),
            "timeout": f"{self.timeout:g}s",
        }
        if self._secret is not None:
            described["signature"] = f"{SIGNATURE_HEADER}: sha256=HMAC(secret ***, body)"
        if self._headers:
            described["headers"] = "; ".join(f"{name}: ***" for name in self._headers)
        return described

    async def send(self, notification: Notification) -> None:
        body = json.dumps(payload(notification, self._render)).encode()
        headers = {name: value.reveal() for name, value in self._headers.items()}
        headers.update(
            {
                "Content-Type": "application/json",
                "Idempotency-Key": notification.idempotency_key,
            }
        )
        if self._secret is not None:
            headers[TIMESTAMP_HEADER] = str(int(time.time()))
            headers[SIGNATURE_HEADER] = "sha256=" + sign(self._secret.reveal(), body)
        try:
            async with (
                asyncio.timeout(self.timeout),
                self._session.get().post(
                    self._url.reveal(), data=body, headers=headers, allow_redirects=False
                ) as response,
            ):
                if 200 <= response.status < 300:
                    return
                raise self._status_error(
                    response.status, response.headers, await read_text(response)
                )
        except TimeoutError:
            raise NotifyError(
                f"webhook {self._url}: no response within {self.timeout:g}s", permanent=False
            ) from None
        except aiohttp.InvalidURL:
            raise NotifyError(f"webhook {self._url}: invalid URL", permanent=True) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            # the same certificate fails the same way next time: an operator must act
            raise NotifyError(
                f"webhook {self._url}: {describe_client_error(exc)}", permanent=True
            ) from None
        except aiohttp.ClientError as exc:
            # str(exc) can hold the URL: report the kind of failure only.
            raise NotifyError(
                f"webhook {self._url}: {describe_client_error(exc)}", permanent=False
            ) from None

    async def close(self) -> None:
        await self._session.close()

    def _status_error(self, status: int, headers: Mapping[str, str], text: str) -> NotifyError:
        detail = self._scrub(" ".join(text.split()))[:SNIPPET_CHARS]
        message = f"webhook {self._url}: HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            retry_after = parse_retry_after(headers.get("Retry-After"), now_utc())
            return NotifyError(message, permanent=False, retry_after=retry_after)
        if status == 408 or status >= 500:
            return NotifyError(message, permanent=False)
        if 300 <= status < 400:
            return NotifyError(f"{message} (redirects are not followed)", permanent=True)
        return NotifyError(message, permanent=True)

    def _scrub(self, text: str) -> str:
        """Remove the URL, its path and its query from a response body quoted in an error
        (before it is shortened, so that no part of a secret survives)."""
        url = self._url.reveal()
        parts = urlsplit(url)
        text = text.replace(url, str(self._url))
        if len(parts.path) > 1:
            text = text.replace(parts.path, "/***")
        if parts.query:
            text = text.replace(parts.query, "***")
        for value in (self._secret, *self._headers.values()):
            if value is not None and value.reveal():
                text = text.replace(value.reveal(), "***")
        return text


def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``secret`` (what receivers recompute)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def parse_headers(value: Secret | None) -> dict[str, Secret]:
    """``Name: value; Name2: value2`` -> {name: secret value}; names are HTTP tokens."""
    if value is None:
        return {}
    headers: dict[str, Secret] = {}
    items = [item for item in value.reveal().split(";") if item.strip()]
    for number, item in enumerate(items, start=1):
        name, sep, header_value = item.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            # the item may be a bare secret: say which one, never what it holds
            raise ConfigError(
                HEADERS_VAR, f"expected 'Name: value' pairs separated by ';' (item {number} is not)"
            )
        if name.lower() in _RESERVED_HEADERS or name.lower().startswith("x-opswatch-"):
            raise ConfigError(HEADERS_VAR, f"header {name} is set by opswatch itself")
        if any(existing.lower() == name.lower() for existing in headers):
            raise ConfigError(HEADERS_VAR, f"header {name} is listed twice")
        refuse_control_characters(HEADERS_VAR, header_value, f"header {name}")
        headers[name] = Secret(header_value.strip())
    return headers


def _refuse_two_credentials(urls: Sequence[Secret], headers: Mapping[str, Secret]) -> None:
    """A URL's ``user:password@`` becomes a Basic ``Authorization`` header: HTTP has room for
    one, so a configured ``Authorization`` header as well would fail every send."""
    if not any(name.lower() == "authorization" for name in headers):
        return
    for number, url in enumerate(urls, start=1):
        parts = urlsplit(url.reveal())
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                HEADERS_VAR,
                f"an Authorization header cannot go with the credentials (user:password@) of "
                f"URL {number} of {URL_VAR}: keep one of them",
            )


def payload(notification: Notification, options: RenderOptions | None = None) -> dict[str, Any]:
    """The Alertmanager webhook body (version 4) for one notification. A configured runbook
    URL is the ``runbook_url`` annotation (Alertmanager's convention), a firing alert's
    one-click ack link (``OPSWATCH_EXTERNAL_URL``) the ``ack_url`` one; a fallback copy
    carries the ``fallback`` annotation saying which channel failed. A severity change (or
    an escalation) also resolves the alert under its previous severity (:func:`_retired`).
    A report is not an alert: its body is opswatch's own (``kind: report``, see README)."""
    note = fallback_note(notification)
    if notification.report is not None:
        return {
            "version": "1",
            "kind": "report",
            "receiver": "opswatch",
            "title": notification.title,
            "text": notification.text,
            "fallback": note,
            "report": report_to_json(notification.report),
        }
    alerts: list[dict[str, Any]] = []
    now = rendered_at(notification)
    for transition in notification.transitions:
        alert = _alert(transition, options or RenderOptions(), note, now)
        retired = _retired(transition, alert)
        if retired is not None:
            alerts.append(retired)
        alerts.append(alert)
    fingerprints = ",".join(sorted({t.alert.fingerprint for t in notification.transitions}))
    return {
        "version": "4",
        "groupKey": f'{{}}:{{fingerprint="{fingerprints}"}}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "opswatch",
        "groupLabels": {},
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": "",
        "alerts": alerts,
    }


def rfc3339(moment: datetime) -> str:
    """UTC with milliseconds and ``Z``: ``2026-01-01T12:00:00.000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _alert(
    transition: Transition, options: RenderOptions, note: str | None, now: datetime
) -> dict[str, Any]:
    alert = transition.alert
    resolved = is_resolved(transition)
    labels = {"alertname": alert.rule, "severity": alert.severity.value, "check": alert.check}
    labels.update({k: v for k, v in alert.labels.items() if k not in labels})
    ends = (alert.resolved_at or transition.at) if resolved else None
    annotations = {
        "summary": alert.summary,
        "value": format_value(alert.value),
        "transition": transition.kind.value,
    }
    runbook = options.runbook(alert.rule)
    if runbook is not None:
        annotations["runbook_url"] = runbook
    ack_url = options.ack_url(transition, now)
    if ack_url is not None:
        annotations["ack_url"] = ack_url
    if note is not None:
        annotations["fallback"] = note
    if transition.note:
        annotations["actions"] = transition.note
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(alert.started_at),
        "endsAt": ZERO_TIME if ends is None else rfc3339(ends),
        "generatorURL": "",
        "fingerprint": alert.fingerprint,
    }


def _retired(transition: Transition, alert: Mapping[str, Any]) -> dict[str, Any] | None:
    """The alert under its previous severity, resolved, when the severity changed.

    Alertmanager and its consumers identify an alert by its label set, ``severity``
    included: to them a severity change is a new alert, and the one they knew must be
    resolved or it fires forever. Its ``fingerprint`` is that of its own label set; the
    alert under the new severity keeps opswatch's.
    """
    previous = transition.previous_severity
    if previous is None or previous is transition.alert.severity or alert["status"] != "firing":
        return None
    labels = {**alert["labels"], "severity": previous.value}
    annotations = {
        **alert["annotations"],
        "replaced_by": f"severity {transition.alert.severity.value}",
    }
    return {
        **alert,
        "status": "resolved",
        "labels": labels,
        "annotations": annotations,
        "endsAt": rfc3339(transition.at),
        "fingerprint": fingerprint(transition.alert.rule, labels),
    }


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}
