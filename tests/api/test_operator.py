"""Operator actions over HTTP against a real App: ack, unack and resolve, their bodies, their
scope, and what they notify (a local http target and a webhook receiver)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tenacity import wait_none

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import TransitionKind
from opswatch.notifiers.outbox import RetryPolicy
from tests.peers import Receiver

TOKEN = "s3cret-token-value"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = RetryPolicy(attempts=2, total_seconds=5, wait=wait_none())


@dataclass
class Daemon:
    app: App
    base: str
    target: Receiver
    webhook: Receiver
    fingerprint: str

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method,
                f"{self.base}/api/v1/alerts" + (f"/{path}" if path else ""),
                json=body,
                headers=AUTH if headers is None else headers,
            ) as r,
        ):
            text = await r.text()
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, text


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon whose one http check is down: one firing alert, notified to the webhook."""
    target, webhook = Receiver(), Receiver()
    await target.start()
    await webhook.start()
    app = App(
        load_config(
            {
                "OPSWATCH_CHECKS": "http",
                "OPSWATCH_HTTP_TARGETS": f"api={target.url}/health",
                "OPSWATCH_HTTP_TIMEOUT": "500ms",
                "OPSWATCH_WEBHOOK_URL": f"{webhook.url}/hook",
                "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
                "OPSWATCH_API_LISTEN": "127.0.0.1:0",
                "OPSWATCH_API_TOKEN": TOKEN,
                "OPSWATCH_INTERVAL": "1h",
            }
        ),
        retry_policy=FAST,
    )
    await app.start()
    try:
        await app.checks.wait_for_runs("http:api", 1)
        await target.stop()
        fired_runs = [await app.cycle.run("http:api") for _ in range(3)]  # a debounced rule
        (fired,) = [t for run in fired_runs for t in run]
        assert fired.kind is TransitionKind.FIRED
        await webhook.wait_for(1, timeout=15)
        yield Daemon(
            app, f"http://127.0.0.1:{app.api.port}", target, webhook, fired.alert.fingerprint
        )
    finally:
        await app.stop()
        await target.stop()
        await webhook.stop()


async def test_ack_then_unack_is_visible_stored_in_history_and_notified_nowhere(
    daemon: Daemon,
) -> None:
    fp = daemon.fingerprint
    status, body = await daemon.call(
        "POST", f"{fp}/ack", {"author": "alice", "comment": "on it", "duration": "2h"}
    )
    assert status == 200
    assert body["alert"]["acked_by"] == "alice"
    assert body["alert"]["ack_comment"] == "on it"
    assert body["alert"]["ack_expires_at"] is not None
    assert body["transition"]["kind"] == "acknowledged"
    status, listed = await daemon.call("GET", "", headers={})
    assert status == 200
    assert [a["acked_by"] for a in listed["alerts"]] == ["alice"]

    status, body = await daemon.call("DELETE", f"{fp}/ack", {"author": "bob"})
    assert status == 200
    assert body["alert"]["acked_by"] is None
    history = await daemon.app.store.history()
    assert [(t.kind, t.note) for t in history[:2]] == [
        (TransitionKind.UNACKNOWLEDGED, "unacknowledged by bob"),
        (TransitionKind.ACKNOWLEDGED, history[1].note),
    ]
    assert history[1].note is not None
    assert history[1].note.startswith("acknowledged by alice until ")
    assert (await daemon.app.store.load_active())[0].acked_by is None
    far = history[0].at.replace(year=2100)
    assert await daemon.app.store.outbox_due(far, 100) == []  # nothing queued for them
    assert len(daemon.webhook.requests) == 1  # the firing only


async def test_an_acked_alert_sends_no_reminder(daemon: Daemon) -> None:
    fp = daemon.fingerprint
    status, _ = await daemon.call("POST", f"{fp}/ack", {"author": "alice", "sticky": True})
    assert status == 200
    alert = daemon.app.tracker.get(fp)
    assert alert is not None
    assert alert.ack_sticky
    assert not daemon.app.tracker._reminder_due(alert, alert.started_at.replace(year=2100))


async def test_a_manual_resolve_notifies_the_resolution_and_the_next_finding_fires_anew(
    daemon: Daemon,
) -> None:
    fp = daemon.fingerprint
    status, body = await daemon.call(
        "POST", f"{fp}/resolve", {"author": "alice", "comment": "target retired"}
    )
    assert status == 200
    assert body["alert"]["state"] == "resolved"
    assert body["transition"]["note"] == "resolved by alice: target retired"
    assert daemon.app.tracker.active() == []
    assert await daemon.app.store.load_active() == []
    sent = await daemon.webhook.wait_for(2, timeout=15)
    resolved = sent[1].body["alerts"][0]
    assert sent[1].body["status"] == "resolved"
    assert resolved["annotations"]["actions"] == "resolved by alice: target retired"

    (again,) = await daemon.app.cycle.run("http:api")  # the target is still down
    assert again.kind is TransitionKind.FIRED
    assert again.alert.fingerprint == fp
    sent = await daemon.webhook.wait_for(3, timeout=15)
    assert sent[2].body["status"] == "firing"
    status, _ = await daemon.call("POST", f"{fp}/resolve", {"author": "alice"})
    assert status == 200


async def test_an_unknown_fingerprint_answers_404(daemon: Daemon) -> None:
    for method, path in (("POST", "ack"), ("DELETE", "ack"), ("POST", "resolve")):
        status, text = await daemon.call(method, f"{'0' * 16}/{path}", {"author": "alice"})
        assert status == 404
        assert "no active alert with fingerprint 0000000000000000" in str(text)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({}, "author: required"),
        ({"author": 3}, "author: expected a string"),
        ({"author": "   "}, "author: required"),
        ({"author": "a", "sticky": "yes"}, "sticky: expected true or false"),
        ({"author": "a", "duration": "soon"}, "duration: expected a duration"),
        ({"author": "a", "duration": "2h", "expires_at": "2099-01-01T00:00:00+00:00"}, "not both"),
        ({"author": "a", "expires_at": "2000-01-01T00:00:00+00:00"}, "in the future"),
        ({"author": "a", "expires_at": "2099-01-01T00:00:00"}, "UTC offset"),
        ({"author": "a", "expires_at": "tomorrow"}, "ISO 8601"),
        ({"author": "a", "until": "x"}, "until: unknown field"),
        ([1], "body: expected a JSON object"),
    ],
)
async def test_a_bad_ack_body_answers_400_with_one_line_and_changes_nothing(
    daemon: Daemon, body: Any, problem: str
) -> None:
    status, text = await daemon.call("POST", f"{daemon.fingerprint}/ack", body)
    assert status == 400
    assert problem in str(text)
    assert "\n" not in str(text).strip()
    alert = daemon.app.tracker.get(daemon.fingerprint)
    assert alert is not None
    assert alert.acked_by is None


async def test_operator_actions_need_the_write_token(daemon: Daemon) -> None:
    for method, path in (("POST", "ack"), ("DELETE", "ack"), ("POST", "resolve")):
        status, _ = await daemon.call(method, f"{daemon.fingerprint}/{path}", {"author": "x"}, {})
        assert status == 401
        wrong = {"Authorization": "Bearer nope"}
        status, _ = await daemon.call(
            method, f"{daemon.fingerprint}/{path}", {"author": "x"}, wrong
        )
        assert status == 403
    alert = daemon.app.tracker.get(daemon.fingerprint)
    assert alert is not None
    assert alert.acked_by is None
    assert len(await daemon.app.store.history()) == 1
