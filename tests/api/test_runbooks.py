"""``/api/v1/runbooks``, ``/api/v1/runbooks/{rule}`` and ``/runbooks/{rule}`` on a started
daemon whose HTTP target is down (its alert fires), with a password in the target URL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from tests.api.errorshape import message
from tests.conftest import free_port

PASSWORD = "api-runbook-secret-pw"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[App]:
    app = App(
        load_config(
            {
                "OPSWATCH_CHECKS": "http",
                "OPSWATCH_HTTP_TARGETS": f"api=http://ops:{PASSWORD}@127.0.0.1:{free_port()}/h",
                "OPSWATCH_HTTP_TIMEOUT": "500ms",
                "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
                "OPSWATCH_API_LISTEN": "127.0.0.1:0",
                "OPSWATCH_INTERVAL": "1h",
            }
        )
    )
    await app.start()
    for _ in range(3):  # with the run at start: the down rule's two runs, and one more
        await app.cycle.run("http:api")
    # a retry the scheduler started meanwhile commits its transitions first
    scheduled = [task for task in app.cycle.running if task is not asyncio.current_task()]
    await asyncio.wait_for(asyncio.gather(*scheduled), 10)
    assert [a.rule for a in app.tracker.active()] == ["http_down"]
    try:
        yield app
    finally:
        await app.stop()


async def _get(app: App, path: str) -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{app.api.port}{path}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, response.content_type, await response.text()


async def test_the_list_names_every_enabled_rule_with_its_page_and_what_fires(
    daemon: App,
) -> None:
    status, content_type, body = await _get(daemon, "/api/v1/runbooks")

    assert (status, content_type) == (200, "application/json")
    entries = {e["rule"]: e for e in json.loads(body)["runbooks"]}
    assert set(entries) == {r.name for r in daemon.config.rules}
    assert entries["http_down"]["firing"] == 1
    assert entries["http_down"]["href"] == "/runbooks/http_down"
    assert entries["http_down"]["last_transition_at"] is not None


async def test_a_rules_runbook_is_json_and_html_with_the_live_alert_and_no_password(
    daemon: App,
) -> None:
    status, content_type, body = await _get(daemon, "/api/v1/runbooks/http_down")
    html_status, html_type, html = await _get(daemon, "/runbooks/http_down")

    assert (status, content_type) == (200, "application/json")
    assert (html_status, html_type) == (200, "text/html")
    assert '"kind": "fired"' in body or '"kind":"fired"' in body
    assert "critical on http:api for" in html
    assert "ops:***@127.0.0.1" in html
    assert PASSWORD not in body + html


async def test_an_unknown_rule_is_a_404_in_the_one_error_shape(daemon: App) -> None:
    for path in ("/api/v1/runbooks/no_such_rule", "/runbooks/no_such_rule"):
        status, content_type, body = await _get(daemon, path)

        assert (status, content_type) == (404, "application/json")
        assert message(404, body) == "no enabled rule 'no_such_rule'"
