"""No configured secret leaves the API, whatever path it took into an answer."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import (
    Alert,
    AlertState,
    CycleRecord,
    Severity,
    Transition,
    TransitionKind,
    fingerprint,
    utcnow,
)
from tests.api.errorshape import message

MARKER = "MARKER-tok3n-0451"


async def test_a_secret_in_an_answer_or_an_error_text_is_masked(tmp_path: Path) -> None:
    config = load_config(
        {
            "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
            "OPSWATCH_API_LISTEN": "127.0.0.1:0",
            "OPSWATCH_API_TOKEN": MARKER,
            "OPSWATCH_INTERVAL": "1h",
        }
    )
    app = App(config)
    await app.start()
    try:
        now = utcnow()
        labels = {"target": "api"}
        alert = Alert(
            fingerprint=fingerprint("http_down", labels),
            rule="http_down",
            check="http:api",
            labels=labels,
            state=AlertState.FIRING,
            severity=Severity.CRITICAL,
            summary=f"GET https://user:{MARKER}@api.example/ failed",
            value=0.0,
            started_at=now,
            last_seen_at=now,
        )
        fired = Transition(alert, TransitionKind.FIRED, now)
        await app.store.record(CycleRecord([alert], [], [fired], []), now)
        base = f"http://127.0.0.1:{app.api.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/v1/alerts/history") as response:
                history = await response.text()
            headers = {"Authorization": f"Bearer {MARKER}"}
            async with http.post(f"{base}/api/v1/recovery/{MARKER}/run", headers=headers) as r:
                status, error = r.status, await r.text()
    finally:
        await app.stop()
    assert MARKER not in history
    assert "user:***@api.example" in history
    assert status == 404
    assert message(status, error) == "no recovery binding '***'"
