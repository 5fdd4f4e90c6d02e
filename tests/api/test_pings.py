"""Heartbeats through a real daemon (its API on 127.0.0.1:0, an injected clock) on both state
stores: a missed, failed and stuck heartbeat alerts and its next good ping resolves it at
once; a cron heartbeat in its zone; pings authenticated by the heartbeat's key or the write
token (a wrong one changes nothing); the output limit; what the API and a restart show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import Alert, TransitionKind
from tests.api.test_openapi import _conforms
from tests.conftest import ManualClock
from tests.pgschema import fresh_schema

TOKEN = "s3cret-token-value"
KEY = "backup-key-0123456789"
HOUR = 3600.0


class Daemon:
    """A daemon with two heartbeats: ``backup`` (daily, 1 h grace, its own key) and ``batch``
    (03:00 UTC, 30 min grace, the write token only). Runs are driven by the test."""

    def __init__(self, state: dict[str, str], clock: ManualClock) -> None:
        self.state = state
        self.clock = clock
        self.app: App | None = None

    async def start(self) -> None:
        config = load_config(
            {
                **self.state,
                "OPSWATCH_CHECKS": "heartbeat",
                "OPSWATCH_HEARTBEAT_TARGETS": "backup=1d/1h, batch=cron:0 3 * * *;tz=UTC/30m",
                "OPSWATCH_HEARTBEAT_BACKUP_KEY": KEY,
                "OPSWATCH_API_LISTEN": "127.0.0.1:0",
                "OPSWATCH_API_TOKEN": TOKEN,
            },
            self.clock,
        )
        self.app = App(config, clock=self.clock)
        await self.app.open()
        await self.app.api.start()
        self.app._serving = True

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    async def post(
        self, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        assert self.app is not None
        url = f"http://127.0.0.1:{self.app.api.port}{path}"
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else "")

    async def get(self, path: str) -> Any:
        assert self.app is not None
        url = f"http://127.0.0.1:{self.app.api.port}{path}"
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def run(self, name: str) -> None:
        """One scheduled run of the heartbeat's check."""
        assert self.app is not None
        await self.app.cycle.run(f"heartbeat:{name}")

    def firing(self) -> list[Alert]:
        assert self.app is not None
        return sorted(self.app.tracker.active(), key=lambda a: a.rule)


@pytest.fixture(params=["sqlite", "postgres"])
async def daemon(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Daemon]:
    if request.param == "sqlite":
        state = {"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3")}
        started = Daemon(state, clock)
        await started.start()
        yield started
        await started.stop()
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    async with fresh_schema(dsn) as schema:
        started = Daemon({"OPSWATCH_STATE_URL": dsn, "OPSWATCH_STATE_SCHEMA": schema}, clock)
        await started.start()
        yield started
        await started.stop()


async def test_a_missed_heartbeat_alerts_and_its_next_ping_resolves_it_at_once(
    daemon: Daemon, clock: ManualClock
) -> None:
    clock.advance(25 * HOUR - 1)  # one period and the grace since the daemon started
    await daemon.run("backup")
    assert daemon.firing() == []
    clock.advance(2)
    await daemon.run("backup")
    [missing] = daemon.firing()
    assert (missing.rule, missing.check, missing.labels) == (
        "heartbeat_missing",
        "heartbeat:backup",
        {"target": "backup"},
    )
    assert "heartbeat backup: no ping by 2026-01-02T13:00:00Z (never pinged" in missing.summary

    status, ping = await daemon.post(f"/ping/backup?key={KEY}", b"backup done\n")

    assert status == 200
    assert (ping["kind"], ping["output"], ping["exit_status"]) == ("success", "backup done\n", None)
    assert daemon.firing() == []  # no scheduled run in between: the ping ran the check
    assert daemon.app is not None
    [resolved, fired] = await daemon.app.store.history(limit=2)
    assert (fired.kind, resolved.kind) == (TransitionKind.FIRED, TransitionKind.RESOLVED)
    assert resolved.alert.fingerprint == missing.fingerprint


async def test_a_failed_run_alerts_with_its_exit_status_and_output_until_a_success(
    daemon: Daemon,
) -> None:
    status, _ = await daemon.post(f"/ping/backup/fail?key={KEY}", b"pg_dump: disk full\n")
    assert status == 200
    [failed] = daemon.firing()
    assert failed.rule == "heartbeat_failed"
    assert failed.summary.endswith("failed: pg_dump: disk full")

    status, ping = await daemon.post(f"/ping/backup/4?key={KEY}", b"still full")
    assert (status, ping["kind"], ping["exit_status"]) == (200, "fail", 4)
    [failed] = daemon.firing()
    assert failed.summary.endswith("failed (exit status 4): still full")

    status, ping = await daemon.post(f"/ping/backup/0?key={KEY}")
    assert (status, ping["kind"], ping["exit_status"]) == (200, "success", 0)
    assert daemon.firing() == []


async def test_a_run_that_started_and_never_ended_alerts_and_its_end_gives_its_duration(
    daemon: Daemon, clock: ManualClock
) -> None:
    assert (await daemon.post(f"/ping/backup/start?key={KEY}"))[0] == 200
    clock.advance(HOUR + 1)
    await daemon.run("backup")
    [stuck] = daemon.firing()
    assert stuck.rule == "heartbeat_missing"
    assert "the run started at 2026-01-01T12:00:00Z has not ended (grace 1h)" in stuck.summary

    clock.advance(599)
    status, ping = await daemon.post(f"/ping/backup?key={KEY}")

    assert (status, ping["duration_s"]) == (200, HOUR + 600)
    assert daemon.firing() == []
    answer = await daemon.get("/api/v1/heartbeats/backup")
    assert answer["status"] == "up"
    assert [(p["kind"], p["duration_s"]) for p in answer["pings"]] == [
        ("success", HOUR + 600),
        ("start", None),
    ]


async def test_a_cron_heartbeat_is_missing_after_its_scheduled_time_and_grace(
    daemon: Daemon, clock: ManualClock
) -> None:
    clock.advance(15.5 * HOUR)  # 2026-01-02 03:30 UTC: the 03:00 run's grace ends now
    await daemon.run("batch")
    assert daemon.firing() == []
    clock.advance(1)
    await daemon.run("batch")
    [missing] = daemon.firing()
    assert missing.check == "heartbeat:batch"
    assert "due 2026-01-02T03:00:00Z, grace 30m" in missing.summary

    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await daemon.post("/ping/batch", headers=auth))[0] == 200
    assert daemon.firing() == []
    [batch] = [
        h for h in (await daemon.get("/api/v1/heartbeats"))["heartbeats"] if h["name"] == "batch"
    ]
    assert (batch["schedule"], batch["due_at"]) == (
        "cron:0 3 * * *;tz=UTC",
        "2026-01-03T03:00:00+00:00",
    )


async def test_a_ping_without_or_with_a_wrong_key_or_token_is_refused_and_changes_nothing(
    daemon: Daemon,
) -> None:
    refused = [
        ("/ping/backup", {}, 401),
        ("/ping/backup?key=wrong", {}, 403),
        ("/ping/backup/fail?key=", {}, 403),
        ("/ping/batch?key=" + KEY, {}, 403),  # a key of another heartbeat
        ("/ping/backup/start", {"Authorization": "Bearer wrong"}, 403),
        ("/ping/backup", {"Authorization": "Basic " + KEY}, 401),
        ("/ping/nosuch?key=" + KEY, {}, 403),  # a key tells nothing of other names
        ("/ping/nosuch", {}, 401),
    ]
    with capture_logs() as logs:
        for path, headers, expected in refused:
            assert (await daemon.post(path, b"x", headers))[0] == expected, path
        assert (
            await daemon.post("/ping/backup/fail", headers={"Authorization": f"Bearer {TOKEN}"})
        )[0] == 200
        assert (await daemon.post(f"/ping/backup/start?key={KEY}"))[0] == 200
        unknown = await daemon.post("/ping/nosuch", headers={"Authorization": f"Bearer {TOKEN}"})
        assert unknown[0] == 404  # the write token may know which heartbeats exist

    assert daemon.app is not None
    assert [p.kind.value for p in await daemon.app.store.pings("backup")] == ["start", "fail"]
    assert await daemon.app.store.pings("batch") == []
    pinged = [e for e in logs if e["event"] == "heartbeat_pinged"]
    assert [(e["kind"], e["by"]) for e in pinged] == [("fail", "token"), ("start", "key")]
    assert KEY not in repr(logs)
    assert TOKEN not in repr(logs)


async def test_output_past_10_kib_is_cut_and_a_body_past_64_kib_is_refused(
    daemon: Daemon,
) -> None:
    status, ping = await daemon.post(f"/ping/backup/fail?key={KEY}", b"e" * (12 * 1024))
    assert (status, len(ping["output"]), ping["truncated"]) == (200, 10 * 1024, True)
    status, _ = await daemon.post(f"/ping/backup?key={KEY}", b"x" * (65 * 1024))
    assert status == 413
    assert daemon.app is not None
    assert [p.kind.value for p in await daemon.app.store.pings("backup")] == ["fail"]
    status, _ = await daemon.post(f"/ping/backup/256?key={KEY}")
    assert status == 400


async def test_the_api_and_a_restart_show_the_last_pings_and_the_alerts(
    daemon: Daemon, clock: ManualClock
) -> None:
    await daemon.post(f"/ping/backup/2?key={KEY}", b"rsync: error 23")
    listed = (await daemon.get("/api/v1/heartbeats"))["heartbeats"]
    assert [(h["name"], h["status"]) for h in listed] == [("backup", "failed"), ("batch", "new")]
    backup = listed[0]
    assert backup["last_fail"]["output"] == "rsync: error 23"
    assert backup["last_success"] is None
    assert [a["rule"] for a in backup["alerts"]] == ["heartbeat_failed"]

    doc = await daemon.get("/api/v1/openapi.json")
    listed_schema = doc["paths"]["/api/v1/heartbeats"]["get"]["responses"]["200"]
    assert (
        _conforms(
            doc, listed_schema["content"]["application/json"]["schema"], {"heartbeats": listed}
        )
        == []
    )
    assert _conforms(doc, {"$ref": "#/components/schemas/Heartbeat"}, {**backup, "status": "x"})

    await daemon.stop()
    clock.advance(60)
    await daemon.start()

    answer = await daemon.get("/api/v1/heartbeats/backup")
    assert (answer["status"], answer["last_fail"]["exit_status"]) == ("failed", 2)
    one_schema = doc["paths"]["/api/v1/heartbeats/{name}"]["get"]["responses"]["200"]
    assert _conforms(doc, one_schema["content"]["application/json"]["schema"], answer) == []
    assert [a["rule"] for a in answer["alerts"]] == ["heartbeat_failed"]
    await daemon.post(f"/ping/backup?key={KEY}")
    assert daemon.firing() == []


async def test_a_ping_the_state_store_does_not_take_answers_503_and_logs_no_key(
    tmp_path: Path, clock: ManualClock
) -> None:
    daemon = Daemon({"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3")}, clock)
    await daemon.start()
    try:
        assert daemon.app is not None
        await daemon.app.store.close()  # the store is gone under the running API
        with capture_logs() as logs:
            status, _ = await daemon.post(f"/ping/backup?key={KEY}", b"done")
            assert daemon.app is not None
            url = f"http://127.0.0.1:{daemon.app.api.port}/api/v1/heartbeats"
            async with aiohttp.ClientSession() as http, http.get(url) as r:
                listed = r.status
    finally:
        await daemon.stop()
    assert (status, listed) == (503, 503)
    assert [e["event"] for e in logs] == ["heartbeat_store_failed"] * 2
    assert KEY not in repr(logs)


async def test_a_ping_served_by_one_replica_is_judged_by_the_replica_running_the_check(
    postgres_dsn: str, clock: ManualClock
) -> None:
    async with fresh_schema(postgres_dsn) as schema:
        state = {"OPSWATCH_STATE_URL": postgres_dsn, "OPSWATCH_STATE_SCHEMA": schema}
        a, b = Daemon(state, clock), Daemon(state, clock)
        await a.start()
        await b.start()
        try:
            clock.advance(25 * HOUR + 60)
            await a.run("backup")  # a takes the check's lease
            assert [x.rule for x in a.firing()] == ["heartbeat_missing"]

            status, _ = await b.post(f"/ping/backup?key={KEY}")

            assert status == 200
            assert b.firing() == []  # b stands by: the check is a's
            assert [x.rule for x in a.firing()] == ["heartbeat_missing"]
            await a.run("backup")  # a's next run reads the ping b stored
            assert a.firing() == []
            assert b.app is not None
            assert [t.kind for t in await b.app.store.history(limit=2)] == [
                TransitionKind.RESOLVED,
                TransitionKind.FIRED,
            ]
        finally:
            await b.stop()
            await a.stop()
