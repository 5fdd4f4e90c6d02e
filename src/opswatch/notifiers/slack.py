"""Slack notifier: an incoming webhook, or a bot token posting with ``chat.postMessage``.

Configure one of:

* ``OPSWATCH_SLACK_WEBHOOK_URL``: one or more incoming-webhook URLs (secret: the token is in
  the path); channel ``slack:<hash of the URL>``;
* ``OPSWATCH_SLACK_TOKEN`` (a bot token, ``xoxb-...``, secret, sent only as
  ``Authorization: Bearer``) and ``OPSWATCH_SLACK_CHANNEL`` (one or more channel names or
  ids); channel ``slack:<name>``. ``OPSWATCH_SLACK_API_URL`` overrides
  ``https://slack.com/api`` (tests, proxies).

The message is Block Kit: a header, then one attachment per severity (its ``color``) holding
a section per alert (summary, value, labels, start, duration, runbook link), at most 50
blocks in all ("and N more" says what was left out); ``text`` is the plain title for
notifications and clients without blocks.

Errors: HTTP 429 and ``ratelimited`` are transient with the ``Retry-After`` hint; 5xx and
Slack's ``internal_error``/``fatal_error``/``service_unavailable``/``request_timeout`` are
transient; any other ``{"ok": false, "error": ...}`` (``invalid_auth``,
``channel_not_found``, ``not_in_channel``, ``account_inactive``, ...) and other 4xx (404, 403,
410 of webhooks) are permanent: retrying cannot fix them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp

from opswatch.config import (
    PREFIX,
    ConfigError,
    Env,
    Secret,
    mask_url,
    refuse_control_characters,
)
from opswatch.model import Notification, Report, Severity, Verdict
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
    AlertView,
    RenderOptions,
    fallback_note,
    rendered_at,
    report_period,
    views,
)

WEBHOOK_VAR = f"{PREFIX}SLACK_WEBHOOK_URL"
TOKEN_VAR = f"{PREFIX}SLACK_TOKEN"
CHANNEL_VAR = f"{PREFIX}SLACK_CHANNEL"
API_VAR = f"{PREFIX}SLACK_API_URL"
TIMEOUT_VAR = f"{PREFIX}SLACK_TIMEOUT"
DEFAULT_API = "https://slack.com/api"

#: Slack refuses a message of more than 50 blocks
MAX_BLOCKS = 50
_HEADER_CHARS = 150
_SECTION_CHARS = 3000
#: Web API errors worth retrying; every other ``ok: false`` error is permanent
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)
COLORS: Mapping[Severity | None, str] = {
    None: "#2EB67D",  # resolved: green
    Severity.INFO: "#439FE0",
    Severity.WARNING: "#ECB22E",
    Severity.CRITICAL: "#E01E5A",
    Severity.EMERGENCY: "#8B0000",
}
EMOJI: Mapping[Severity | None, str] = {
    None: ":white_check_mark:",
    Severity.INFO: ":information_source:",
    Severity.WARNING: ":warning:",
    Severity.CRITICAL: ":rotating_light:",
    Severity.EMERGENCY: ":sos:",
}


class SlackNotifier:
    name: ClassVar[str] = "slack"

    def __init__(
        self,
        *,
        webhook_url: Secret | None = None,
        token: Secret | None = None,
        channel: str | None = None,
        api_url: str = DEFAULT_API,
        timeout: float = 10.0,
        render: RenderOptions | None = None,
    ) -> None:
        if (webhook_url is None) == (token is None and channel is None):
            raise ValueError("SlackNotifier needs a webhook URL, or a token and a channel")
        if webhook_url is None and (token is None or channel is None):
            raise ValueError("SlackNotifier needs both a token and a channel")
        self._webhook_url = webhook_url
        self._token = token
        self.slack_channel = channel
        self._api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._render = render or RenderOptions()
        self._session = Session()
        if webhook_url is not None:
            digest = hashlib.sha256(webhook_url.reveal().encode()).hexdigest()[:8]
            self.channel = f"slack:{digest}"
            self._target = f"slack webhook {webhook_url}"
        else:
            self.channel = f"slack:{(channel or '').lstrip('#').lower()}"
            self._target = f"slack chat.postMessage to {channel}"

    @classmethod
    def from_env(cls, env: Env) -> Sequence[SlackNotifier]:
        urls = env.urls(WEBHOOK_VAR, hide_path=True)
        token = env.secret(TOKEN_VAR)
        channels = env.raw(CHANNEL_VAR)
        api = env.url(API_VAR, schemes=("http", "https"), hide_path=False)
        timeout = env.duration(TIMEOUT_VAR, 10.0, minimum=0.1)
        render = RenderOptions.from_env(env)
        if urls and (token is not None or channels is not None):
            raise ConfigError(
                TOKEN_VAR if token is not None else CHANNEL_VAR,
                f"set either {WEBHOOK_VAR} or {TOKEN_VAR} with {CHANNEL_VAR}, not both",
            )
        if len({u.reveal() for u in urls}) != len(urls):
            raise ConfigError(WEBHOOK_VAR, "a URL is listed twice")
        if urls:
            return [cls(webhook_url=u, timeout=timeout, render=render) for u in urls]
        if token is None and channels is None:
            return []
        if token is None:
            raise ConfigError(TOKEN_VAR, f"required when {CHANNEL_VAR} is set")
        refuse_control_characters(TOKEN_VAR, token.reveal())  # sent in a header
        names = [c.strip() for c in (channels or "").split(",") if c.strip()]
        if not names:
            raise ConfigError(CHANNEL_VAR, f"required when {TOKEN_VAR} is set (e.g. #ops)")
        if len({n.lstrip("#").lower() for n in names}) != len(names):
            raise ConfigError(CHANNEL_VAR, "a channel is listed twice")
        api_url = DEFAULT_API if api is None else api.reveal()
        return [
            cls(token=token, channel=n, api_url=api_url, timeout=timeout, render=render)
            for n in names
        ]

    def describe(self) -> dict[str, str]:
        described = {"channel": self.channel, "timeout": f"{self.timeout:g}s"}
        if self._webhook_url is not None:
            described["webhook_url"] = str(self._webhook_url)
        else:
            described.update(
                {
                    "slack_channel": self.slack_channel or "",
                    "api_url": mask_url(self._api_url, hide_path=False),
                    "token": str(self._token),
                }
            )
        return described

    async def send(self, notification: Notification) -> None:
        body = message(notification, self._render, channel=self.slack_channel)
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self._webhook_url is not None:
            url = self._webhook_url.reveal()
        else:
            url = f"{self._api_url}/chat.postMessage"
            headers["Authorization"] = f"Bearer {self._token.reveal() if self._token else ''}"
        try:
            async with (
                asyncio.timeout(self.timeout),
                self._session.get().post(
                    url, data=data, headers=headers, allow_redirects=False
                ) as response,
            ):
                text = await read_text(response)
                self._check(response.status, response.headers, text)
        except TimeoutError:
            raise NotifyError(
                f"{self._target}: no response within {self.timeout:g}s", permanent=False
            ) from None
        except aiohttp.ClientError as exc:
            raise NotifyError(
                f"{self._target}: {describe_client_error(exc)}", permanent=False
            ) from None

    async def close(self) -> None:
        await self._session.close()

    def _check(self, status: int, headers: Mapping[str, str], text: str) -> None:
        """Raise the classified error for a response that is not a success."""
        retry_after = parse_retry_after(headers.get("Retry-After"), now_utc())
        if status == 429:
            raise NotifyError(
                f"{self._target}: HTTP 429 (rate limited)", permanent=False, retry_after=retry_after
            )
        if status >= 500 or status == 408:
            raise NotifyError(self._quote(f"HTTP {status}", text), permanent=False)
        if not 200 <= status < 300:
            raise NotifyError(self._quote(f"HTTP {status}", text), permanent=True)
        if self._webhook_url is not None:
            return  # an incoming webhook answers 200 "ok"
        try:
            answer = json.loads(text)
        except ValueError:
            raise NotifyError(
                self._quote("HTTP 200 without a JSON answer", text), permanent=False
            ) from None
        if not isinstance(answer, dict) or answer.get("ok") is True:
            return
        error = str(answer.get("error", "unknown_error"))
        transient = error in TRANSIENT_ERRORS
        raise NotifyError(
            f"{self._target}: {error}",
            permanent=not transient,
            retry_after=retry_after if transient else None,
        )

    def _quote(self, what: str, text: str) -> str:
        detail = " ".join(text.split())
        for secret in (self._webhook_url, self._token):
            if secret is not None:
                detail = detail.replace(secret.reveal(), "***")
        if self._webhook_url is not None:
            path = urlsplit(self._webhook_url.reveal()).path
            if len(path) > 1:
                detail = detail.replace(path, "/***")
        detail = detail[:SNIPPET_CHARS]
        return f"{self._target}: {what}" + (f": {detail}" if detail else "")


def message(
    notification: Notification, options: RenderOptions, *, channel: str | None = None
) -> dict[str, Any]:
    """The Block Kit body for ``notification`` (``channel`` for ``chat.postMessage``)."""
    if notification.report is not None:
        return _report_message(notification, notification.report, channel)
    alerts = views(notification.transitions, rendered_at(notification), options)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(_cut(notification.title, _HEADER_CHARS))}
    ]
    note = fallback_note(notification)
    if note is not None:
        blocks.append({"type": "context", "elements": [_mrkdwn(_escape(note))]})
    room = MAX_BLOCKS - len(blocks)
    shown = alerts if len(alerts) <= room else alerts[: room - 1]
    hidden = len(alerts) - len(shown)
    attachments: list[dict[str, Any]] = []
    for severity, group in groupby(shown, key=lambda v: None if v.resolved else v.severity):
        sections = [_section(v) for v in group]
        attachments.append({"color": COLORS[severity], "blocks": sections})
    if hidden:
        attachments[-1]["blocks"].append(
            {"type": "context", "elements": [_mrkdwn(f"and {hidden} more")]}
        )
    body: dict[str, Any] = {
        "text": notification.title,
        "blocks": blocks,
        "attachments": attachments,
        "unfurl_links": False,
    }
    if channel is not None:
        body["channel"] = channel
    return body


#: a report line's mark
VERDICT_EMOJI: Mapping[Verdict, str] = {
    Verdict.PASS: ":white_check_mark:",
    Verdict.WARN: ":warning:",
    Verdict.FAIL: ":x:",
}


def _report_message(
    notification: Notification, report: Report, channel: str | None
) -> dict[str, Any]:
    """A report: its title, the summary line, then a section of lines per report section."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(_cut(notification.title, _HEADER_CHARS))}
    ]
    note = fallback_note(notification)
    if note is not None:
        blocks.append({"type": "context", "elements": [_mrkdwn(_escape(note))]})
    summary = f"{VERDICT_EMOJI[report.verdict]} *{_escape(report.summary)}*\n" + _escape(
        report_period(report)
    )
    blocks.append({"type": "section", "text": _mrkdwn(summary)})
    for part in report.sections:
        lines = [f"{VERDICT_EMOJI[line.verdict]} {_escape(line.text)}" for line in part.lines]
        chunk = f"*{_escape(part.title)}*"
        for line in lines or [f"_{_escape(part.empty)}_"]:  # a block per 3,000 characters
            if len(chunk) + 1 + len(line) > _SECTION_CHARS:
                blocks.append({"type": "section", "text": _mrkdwn(chunk)})
                chunk = ""
            chunk = f"{chunk}\n{line}" if chunk else _cut(line, _SECTION_CHARS)
        blocks.append({"type": "section", "text": _mrkdwn(chunk)})
    body: dict[str, Any] = {
        "text": notification.title,
        "blocks": blocks[:MAX_BLOCKS],
        "unfurl_links": False,
    }
    if channel is not None:
        body["channel"] = channel
    return body


def _section(v: AlertView) -> dict[str, Any]:
    key = None if v.resolved else v.severity
    lines = [
        f"{EMOJI[key]} *{v.severity.value.upper()}* `{_escape(v.rule)}` on "
        f"{_escape(v.check)}: {_escape(v.summary)}",
        _escape(v.happened),
        f"*{v.value_label}:* {_escape(v.value)}  ·  *started:* {v.started}  ·  *for:* {v.duration}",
    ]
    if v.labels:
        lines.append(
            "*labels:* " + " ".join(f"`{_escape(k)}={_escape(value)}`" for k, value in v.labels)
        )
    if v.acked_by:
        lines.append(f"*acknowledged by:* {_escape(v.acked_by)}")
    if v.actions:
        lines.append(f"*actions:* {_escape(v.actions)}")
    if v.runbook:
        lines.append(f"<{v.runbook}|Runbook>")
    if v.ack_url:
        lines.append(f"<{v.ack_url}|Acknowledge>")
    if v.evidence:
        lines.append("```" + _escape("\n".join(v.evidence)) + "```")
    return {"type": "section", "text": _mrkdwn(_cut("\n".join(lines), _SECTION_CHARS))}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _escape(text: str) -> str:
    """Slack's three control characters in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
