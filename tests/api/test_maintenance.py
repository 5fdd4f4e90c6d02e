"""``/api/v1/maintenance`` through a real daemon's API on 127.0.0.1:0: the recurring windows
with their next occurrences, one-off windows created, muting (``muted_by``), deleted and kept
across a restart; the write scope; bad bodies; every answer matches the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from opswatch.api.app import ROUTES
from opswatch.api.openapi import document
from opswatch.model import MaintenanceWindow
from tests.api.test_silences import Api
from tests.conftest import ManualClock

WINDOW = "cron=0 2 1-7 * SUN; duration=4h; tz=Europe/Berlin; match=rule=disk_full"


@pytest.fixture
async def api(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Api]:
    clock.now = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)  # a first Sunday, 01:30 in Berlin
    api = Api(tmp_path, clock, {"OPSWATCH_MAINTENANCE_DB": WINDOW})
    await api.start()
    yield api
    await api.stop()


def _conforms(api: Api, method: str, path: str, status: int, body: Any) -> list[str]:
    doc = document(ROUTES)
    content = doc["paths"][path][method.lower()]["responses"][str(status)]["content"]
    schema = content["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    return [error.message for error in validator.iter_errors(body)]


def _body(clock: ManualClock, **fields: Any) -> dict[str, Any]:
    return {
        "name": "db-upgrade",
        "matchers": ["mountpoint=/srv"],
        "starts_at": clock.now.isoformat(),
        "ends_at": (clock.now + timedelta(hours=2)).isoformat(),
        "created_by": "ana",
        "comment": "major upgrade",
        **fields,
    }


async def test_the_recurring_window_is_listed_with_its_next_occurrences(api: Api) -> None:
    status, listed = await api.call("GET", "/api/v1/maintenance?next=2")
    assert status == 200
    assert _conforms(api, "GET", "/api/v1/maintenance", 200, listed) == []
    (window,) = listed["windows"]
    assert (window["name"], window["kind"], window["id"]) == ("db", "recurring", None)
    assert (window["cron"], window["tz"], window["duration_s"]) == (
        "0 2 1-7 * SUN",
        "Europe/Berlin",
        14400.0,
    )
    assert window["open"] is False
    assert window["next"] == [
        {"starts_at": "2026-03-01T01:00:00+00:00", "ends_at": "2026-03-01T05:00:00+00:00"},
        {"starts_at": "2026-04-05T00:00:00+00:00", "ends_at": "2026-04-05T04:00:00+00:00"},
    ]
    status, text = await api.call("GET", "/api/v1/maintenance?next=0")
    assert (status, text) == (400, "next: expected a whole number from 1 to 50")


async def test_a_one_off_window_mutes_is_listed_survives_a_restart_and_is_deleted(
    api: Api, clock: ManualClock
) -> None:
    await api.disks({"/": 97.0, "/srv": 97.0})
    status, made = await api.call("POST", "/api/v1/maintenance", _body(clock))
    assert status == 201
    assert _conforms(api, "POST", "/api/v1/maintenance", 201, made) == []
    assert (made["kind"], made["open"], made["created_by"]) == ("one-off", True, "ana")
    _, alerts = await api.call("GET", "/api/v1/alerts")
    by_mount = {a["labels"]["mountpoint"]: a["muted_by"] for a in alerts["alerts"]}
    assert by_mount == {"/": [], "/srv": ["maintenance db-upgrade"]}

    await api.stop()
    await api.start()
    _, listed = await api.call("GET", "/api/v1/maintenance")
    assert [(w["kind"], w["id"]) for w in listed["windows"]] == [
        ("recurring", None),
        ("one-off", made["id"]),
    ]
    status, gone = await api.call("DELETE", f"/api/v1/maintenance/{made['id']}?by=bob")
    assert status == 200
    assert _conforms(api, "DELETE", "/api/v1/maintenance/{id}", 200, gone) == []
    _, listed = await api.call("GET", "/api/v1/maintenance")
    assert [w["kind"] for w in listed["windows"]] == ["recurring"]
    assert api.app is not None
    assert await api.app.store.maintenance_windows(clock.now) == []
    status, text = await api.call("DELETE", f"/api/v1/maintenance/{made['id']}")
    assert (status, text) == (404, f"no one-off maintenance window {made['id']!r}")


async def test_an_open_recurring_window_is_the_muted_by_reason(
    api: Api, clock: ManualClock
) -> None:
    clock.advance(3600)  # 03:30 in Berlin: the window is open
    await api.disks({"/": 97.0})
    _, alerts = await api.call("GET", "/api/v1/alerts")
    assert [a["muted_by"] for a in alerts["alerts"]] == [["maintenance db"]]
    assert [a["notified"] for a in alerts["alerts"]] == [False]
    _, listed = await api.call("GET", "/api/v1/maintenance")
    assert listed["windows"][0]["open"] is True


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"name": "DB Upgrade"}, "name: expected [a-z][a-z0-9_-]*"),
        ({"name": None}, "name: expected a non-empty string"),
        ({"matchers": []}, "matchers: expected a non-empty list of strings"),
        ({"matchers": ["disk_full"]}, "matchers 'disk_full': expected name=value"),
        ({"ends_at": None}, "ends_at: required"),
        ({"ends_at": "tomorrow"}, "ends_at: expected an ISO 8601 time with a timezone"),
        ({"ends_at": "2026-03-01T00:00:00+00:00"}, "ends_at: must be after starts_at"),
        ({"comment": ""}, "comment: expected a non-empty string"),
    ],
)
async def test_a_bad_one_off_window_answers_400_naming_the_field(
    api: Api, clock: ManualClock, change: dict[str, Any], error: str
) -> None:
    status, text = await api.call("POST", "/api/v1/maintenance", _body(clock, **change))
    assert status == 400
    assert text.startswith(error)
    assert api.app is not None
    assert await api.app.store.maintenance_windows(clock.now) == []


async def test_changing_windows_needs_the_token_and_changes_nothing_without(
    api: Api, clock: ManualClock
) -> None:
    assert api.app is not None
    status, _ = await api.call("POST", "/api/v1/maintenance", _body(clock), token=False)
    assert status == 401
    window = await api.app.maintenance.create(
        "db",
        api.app.maintenance.muter.recurring[0].matchers,
        clock.now + timedelta(hours=1),
        created_by="ana",
        comment="c",
    )
    status, _ = await api.call("DELETE", f"/api/v1/maintenance/{window.id}", token=False)
    assert status == 401
    stored: list[MaintenanceWindow] = await api.app.store.maintenance_windows(clock.now)
    assert [w.id for w in stored] == [window.id]
