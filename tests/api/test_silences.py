"""``/api/v1/silences`` through a real daemon's API on 127.0.0.1:0: create (and its dry run),
list, change, expire; scopes; the silence ids in ``/api/v1/alerts``; a restart keeps them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import Sample
from tests.api.errorshape import message
from tests.conftest import ManualClock

TOKEN = "s3cret-token-value"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    def __init__(
        self, tmp_path: Path, clock: ManualClock, environ: dict[str, str] | None = None
    ) -> None:
        self.state = tmp_path / "s.sqlite3"
        self.clock = clock
        self.environ = environ or {}
        self.app: App | None = None

    async def start(self) -> App:
        config = load_config(
            {
                "OPSWATCH_CHECKS": "host",
                "OPSWATCH_STATE_PATH": str(self.state),
                "OPSWATCH_API_LISTEN": "127.0.0.1:0",
                "OPSWATCH_API_TOKEN": TOKEN,
                **self.environ,
            },
            self.clock,
        )
        self.app = App(config, clock=self.clock)
        await self.app.open()
        await self.app.api.start()
        self.app._serving = True
        return self.app

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    @property
    def base(self) -> str:
        assert self.app is not None
        return f"http://127.0.0.1:{self.app.api.port}"

    async def call(
        self, method: str, path: str, body: Any = None, *, token: bool = True
    ) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.base + path, json=body, headers=AUTH if token else {}) as r,
        ):
            text = await r.text()
            if r.status >= 400 and path != "/healthz":  # the error shape: its message
                return r.status, message(r.status, text)
            is_json = r.content_type == "application/json"
            return r.status, (await r.json() if is_json else text)

    async def disks(self, used: dict[str, float]) -> None:
        assert self.app is not None
        samples = [
            Sample("host", "host.disk_used_percent", v, self.clock.now, {"mountpoint": m})
            for m, v in used.items()
        ]
        await self.app.cycle.process("host", samples, None, 0.0)


@pytest.fixture
async def api(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Api]:
    api = Api(tmp_path, clock)
    await api.start()
    yield api
    await api.stop()


def _body(clock: ManualClock, *matchers: str, **fields: Any) -> dict[str, Any]:
    return {
        "matchers": list(matchers),
        "ends_at": (clock.now + timedelta(hours=2)).isoformat(),
        "created_by": "ana",
        "comment": "disk swap",
        **fields,
    }


async def test_a_created_silence_is_listed_mutes_alerts_and_survives_a_restart(
    api: Api, clock: ManualClock
) -> None:
    await api.disks({"/": 97.0, "/srv": 97.0})
    status, created = await api.call(
        "POST", "/api/v1/silences", _body(clock, "rule=~disk_.*", "mountpoint=/srv")
    )
    assert status == 201
    assert created["state"] == "active"
    assert created["matchers"] == [
        {"name": "rule", "op": "=~", "value": "disk_.*"},
        {"name": "mountpoint", "op": "=", "value": "/srv"},
    ]
    status, alerts = await api.call("GET", "/api/v1/alerts")
    assert status == 200
    by_mount = {a["labels"]["mountpoint"]: a["silenced_by"] for a in alerts["alerts"]}
    assert by_mount == {"/": [], "/srv": [created["id"]]}

    await api.stop()
    await api.start()
    status, listed = await api.call("GET", "/api/v1/silences")
    assert [s["id"] for s in listed["silences"]] == [created["id"]]
    _, alerts = await api.call("GET", "/api/v1/alerts")
    assert sorted(a["silenced_by"] for a in alerts["alerts"]) == [[], [created["id"]]]


async def test_a_dry_run_lists_the_alerts_it_would_match_and_creates_nothing(
    api: Api, clock: ManualClock
) -> None:
    await api.disks({"/": 97.0, "/srv": 97.0})
    status, answer = await api.call(
        "POST", "/api/v1/silences?dry_run=1", _body(clock, "mountpoint!=/")
    )
    assert status == 200
    assert answer["dry_run"] is True
    assert [a["labels"]["mountpoint"] for a in answer["alerts"]] == ["/srv"]
    _, listed = await api.call("GET", "/api/v1/silences")
    assert listed["silences"] == []
    status, text = await api.call("POST", "/api/v1/silences?dry_run=maybe", _body(clock, "rule=x"))
    assert (status, text) == (400, "dry_run: expected 1 or 0")


async def test_expiring_a_silence_ends_it_now_and_it_stays_listed_a_day(
    api: Api, clock: ManualClock
) -> None:
    await api.disks({"/": 97.0})
    _, created = await api.call("POST", "/api/v1/silences", _body(clock, "rule=disk_full"))
    clock.advance(60)
    status, ended = await api.call("DELETE", f"/api/v1/silences/{created['id']}?by=bob")
    assert status == 200
    assert (ended["state"], ended["ends_at"]) == ("expired", clock.now.isoformat())
    _, alerts = await api.call("GET", "/api/v1/alerts")
    assert [a["silenced_by"] for a in alerts["alerts"]] == [[]]
    _, listed = await api.call("GET", "/api/v1/silences")
    assert [s["state"] for s in listed["silences"]] == ["expired"]
    clock.advance(24 * 3600)
    _, listed = await api.call("GET", "/api/v1/silences")
    assert listed["silences"] == []
    status, text = await api.call("DELETE", "/api/v1/silences/nope")
    assert (status, text) == (404, "no silence 'nope'")


async def test_a_silence_is_changed_by_put(api: Api, clock: ManualClock) -> None:
    _, created = await api.call("POST", "/api/v1/silences", _body(clock, "rule=disk_full"))
    end = (clock.now + timedelta(hours=5)).isoformat()
    status, changed = await api.call(
        "PUT",
        f"/api/v1/silences/{created['id']}",
        {"ends_at": end, "comment": "longer", "matchers": ["check=host"]},
    )
    assert status == 200
    assert (changed["ends_at"], changed["comment"]) == (end, "longer")
    assert changed["matchers"] == [{"name": "check", "op": "=", "value": "host"}]
    assert changed["created_by"] == "ana"
    status, text = await api.call(
        "PUT", f"/api/v1/silences/{created['id']}", {"ends_at": clock.now.isoformat()}
    )
    assert (status, text) == (400, "ends_at: must be after starts_at")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"matchers": []}, "matchers: expected a non-empty list of strings"),
        ({"matchers": ["check=~("]}, "matchers 'check=~(': invalid regex"),
        ({"matchers": ["disk_full"]}, "matchers 'disk_full': expected name=value"),
        ({"ends_at": None}, "ends_at: required"),
        ({"ends_at": "2026-01-01T13:00:00"}, "ends_at: expected an ISO 8601 time with a timezone"),
        ({"ends_at": "tomorrow"}, "ends_at: expected an ISO 8601 time with a timezone"),
        ({"created_by": ""}, "created_by: expected a non-empty string"),
        ({"comment": 3}, "comment: expected a non-empty string"),
        ({"starts_at": "2026-01-01T15:00:00+00:00"}, "ends_at: must be after starts_at"),
    ],
)
async def test_a_bad_silence_answers_400_naming_the_field(
    api: Api, clock: ManualClock, change: dict[str, Any], error: str
) -> None:
    status, text = await api.call("POST", "/api/v1/silences", {**_body(clock, "rule=x"), **change})
    assert status == 400
    assert text.startswith(error)


async def test_changing_silences_needs_the_token(api: Api, clock: ManualClock) -> None:
    status, _ = await api.call("POST", "/api/v1/silences", _body(clock, "rule=x"), token=False)
    assert status == 401
    status, _ = await api.call("DELETE", "/api/v1/silences/x", token=False)
    assert status == 401
    _, listed = await api.call("GET", "/api/v1/silences")
    assert listed["silences"] == []
