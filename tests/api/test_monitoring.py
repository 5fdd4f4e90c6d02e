"""``/api/v1/monitoring``: pause and resume through a real daemon's API on 127.0.0.1:0, the
write scope, bad bodies, and what ``/status``, ``/healthz``, ``/metrics`` and
``/api/v1/alerts`` say of a pause."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from opswatch.codec import SCHEMAS, pause_event_to_json, pause_to_json
from opswatch.model import Pause, PauseAction, PauseEvent
from tests.conftest import ManualClock

from .test_silences import Api, api

__all__ = ["api"]  # the daemon behind the API

PAUSE = {"checks": ["host"], "author": "ana", "comment": "disk swap"}


async def test_a_pause_is_shown_everywhere_and_a_resume_ends_it(
    api: Api, clock: ManualClock
) -> None:
    await api.disks({"/": 97.0})
    status, answer = await api.call("POST", "/api/v1/monitoring/pause", PAUSE)
    assert status == 200
    since = clock.now.isoformat()
    pause = {"check": "host", "by": "ana", "comment": "disk swap", "since": since}
    assert answer["paused_all"] is False
    assert answer["pauses"] == [pause]
    assert answer["events"] == [
        {"action": "paused", "checks": ["host"], "by": "ana", "comment": "disk swap", "at": since}
    ]
    _, alerts = await api.call("GET", "/api/v1/alerts")
    assert [a["muted_by"] for a in alerts["alerts"]] == [["paused by ana"]]
    _, state = await api.call("GET", "/status")
    assert state["paused"] == [pause]
    _, health = await api.call("GET", "/healthz")
    assert health["paused"] == [pause]
    _, metrics = await api.call("GET", "/metrics")
    (line,) = [m for m in metrics.splitlines() if m.startswith("opswatch_paused_since")]
    series, value = line.split(" ")
    assert series == 'opswatch_paused_since_timestamp_seconds{by="ana",check="host"}'
    assert float(value) == datetime.fromisoformat(since).timestamp()

    clock.advance(60)
    status, answer = await api.call("POST", "/api/v1/monitoring/resume", {"author": "bob"})
    assert status == 200
    assert answer["pauses"] == []
    assert [(e["action"], e["by"]) for e in answer["events"]] == [
        ("resumed", "bob"),
        ("paused", "ana"),
    ]
    _, alerts = await api.call("GET", "/api/v1/alerts")
    assert [a["muted_by"] for a in alerts["alerts"]] == [[]]
    _, state = await api.call("GET", "/api/v1/monitoring?limit=1")
    assert [e["action"] for e in state["events"]] == ["resumed"]
    _, metrics = await api.call("GET", "/metrics")
    assert "opswatch_paused_since_timestamp_seconds{" not in metrics


async def test_a_pause_of_every_check_is_check_star_in_metrics(api: Api) -> None:
    status, answer = await api.call("POST", "/api/v1/monitoring/pause", {"author": "ana"})
    assert (status, answer["paused_all"]) == (200, True)
    assert answer["pauses"][0]["check"] is None
    _, metrics = await api.call("GET", "/metrics")
    assert 'opswatch_paused_since_timestamp_seconds{by="ana",check="*"}' in metrics


async def test_pause_and_resume_need_the_write_token_and_change_nothing_without(
    api: Api,
) -> None:
    for path in ("/api/v1/monitoring/pause", "/api/v1/monitoring/resume"):
        status, _ = await api.call("POST", path, PAUSE, token=False)
        assert status == 401
    status, state = await api.call("GET", "/api/v1/monitoring", token=False)
    assert (status, state["pauses"], state["events"]) == (200, [], [])


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("pause", {"checks": "host", "author": "a"}, 400, "checks: expected a list of check"),
        ("pause", {"checks": [1], "author": "a"}, 400, "checks: expected a list of check"),
        ("pause", {"checks": ["http:x"], "author": "a"}, 400, "checks: no check 'http:x' (conf"),
        ("pause", {"checks": ["host"]}, 400, "author: required (who acts)"),
        ("pause", {"author": "a", "until": "x"}, 400, "until: unknown field; expected some of"),
        ("resume", {"checks": ["host"], "author": "b"}, 409, "checks: every check is paused"),
    ],
)
async def test_a_bad_pause_or_resume_answers_with_one_line_naming_the_field(
    api: Api, path: str, body: dict[str, Any], status: int, error: str
) -> None:
    if status == 409:
        await api.call("POST", "/api/v1/monitoring/pause", {"author": "ana"})
    answered, text = await api.call("POST", f"/api/v1/monitoring/{path}", body)
    assert answered == status
    assert text.startswith(error)


def test_the_pause_encoders_match_their_declared_shapes() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    encoded = {
        "Pause": pause_to_json(Pause(None, "ana", None, at)),
        "PauseEvent": pause_event_to_json(PauseEvent(PauseAction.RESUMED, ("host",), "b", "c", at)),
    }
    for name, value in encoded.items():
        assert list(Draft202012Validator(SCHEMAS[name]).iter_errors(value)) == [], name
        assert set(SCHEMAS[name]["properties"]) == set(value), name


async def test_a_pause_the_store_cannot_take_answers_503_and_pauses_nothing(
    api: Api, clock: ManualClock
) -> None:
    assert api.app is not None
    await api.app.store.close()  # every read and write now fails (StoreError)
    status, text = await api.call("POST", "/api/v1/monitoring/pause", PAUSE)
    assert (status, text) == (503, "the state store did not answer; try again")
    assert api.app.pauses.muter.pauses() == []
