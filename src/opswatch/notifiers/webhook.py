"""Webhook notifier: POSTs an Alertmanager-compatible (version 4) JSON body to each URL.

``OPSWATCH_WEBHOOK_URL`` holds one or more comma-separated URLs (or ``_FILE``); the URL is a
secret (such endpoints carry their token in the path), so only its masked form and a hash of
it (the channel) ever appear in logs, errors and ``check-config``. The receiver gets an
``Idempotency-Key`` header: the outbox may deliver a notification twice after a crash or a
timeout that hid a success, never zero times.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp

from opswatch import __version__
from opswatch.config import ConfigError, Env, Secret
from opswatch.model import Notification, Transition
from opswatch.notifiers.base import NotifyError
from opswatch.notifiers.render import format_value, is_resolved

URL_VAR = "OPSWATCH_WEBHOOK_URL"
TIMEOUT_VAR = "OPSWATCH_WEBHOOK_TIMEOUT"
USER_AGENT = f"opswatch/{__version__}"
ZERO_TIME = "0001-01-01T00:00:00Z"
_SNIPPET_CHARS = 200
_SNIPPET_BYTES = 4096


class WebhookNotifier:
    name: ClassVar[str] = "webhook"

    def __init__(self, url: Secret, *, timeout: float = 10.0) -> None:
        self._url = url
        self.timeout = timeout
        self.channel = "webhook:" + hashlib.sha256(url.reveal().encode()).hexdigest()[:8]
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_env(cls, env: Env) -> Sequence[WebhookNotifier]:
        urls = env.urls(URL_VAR, hide_path=True)
        timeout = env.duration(TIMEOUT_VAR, 10.0, minimum=0.1)
        if len({u.reveal() for u in urls}) != len(urls):
            raise ConfigError(URL_VAR, "a URL is listed twice")
        return [cls(url, timeout=timeout) for url in urls]

    def describe(self) -> dict[str, str]:
        return {"channel": self.channel, "url": str(self._url), "timeout": f"{self.timeout:g}s"}

    async def send(self, notification: Notification) -> None:
        body = payload(notification)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": notification.idempotency_key,
        }
        try:
            async with (
                asyncio.timeout(self.timeout),
                self._client().post(
                    self._url.reveal(), json=body, headers=headers, allow_redirects=False
                ) as response,
            ):
                if 200 <= response.status < 300:
                    return
                snippet = _decode(await response.content.read(_SNIPPET_BYTES), response.charset)
                raise self._status_error(response.status, response.headers, snippet)
        except TimeoutError:
            raise NotifyError(
                f"webhook {self._url}: no response within {self.timeout:g}s", permanent=False
            ) from None
        except aiohttp.InvalidURL:
            raise NotifyError(f"webhook {self._url}: invalid URL", permanent=True) from None
        except aiohttp.ClientError as exc:
            # str(exc) can hold the URL: report the kind of failure only.
            raise NotifyError(
                f"webhook {self._url}: {_describe_client_error(exc)}", permanent=False
            ) from None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        return self._session

    def _status_error(self, status: int, headers: Mapping[str, str], text: str) -> NotifyError:
        detail = self._scrub(" ".join(text.split()))[:_SNIPPET_CHARS]
        message = f"webhook {self._url}: HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            retry_after = parse_retry_after(headers.get("Retry-After"), datetime.now(UTC))
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
        return text


def payload(notification: Notification) -> dict[str, Any]:
    """The Alertmanager webhook body (version 4) for one notification."""
    alerts = [_alert(t) for t in notification.transitions]
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


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _alert(transition: Transition) -> dict[str, Any]:
    alert = transition.alert
    resolved = is_resolved(transition)
    labels = {"alertname": alert.rule, "severity": alert.severity.value, "check": alert.check}
    labels.update({k: v for k, v in alert.labels.items() if k not in labels})
    ends = (alert.resolved_at or transition.at) if resolved else None
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": {
            "summary": alert.summary,
            "value": format_value(alert.value),
            "transition": transition.kind.value,
        },
        "startsAt": rfc3339(alert.started_at),
        "endsAt": ZERO_TIME if ends is None else rfc3339(ends),
        "generatorURL": "",
        "fingerprint": alert.fingerprint,
    }


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def _describe_client_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect ({reason})"
    return f"request failed ({type(exc).__name__})"


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")
