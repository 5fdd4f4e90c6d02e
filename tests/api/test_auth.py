"""Who may call what, over HTTP against a real App: every write route of the table refuses
a missing, wrong or read-only token and changes nothing; read routes need a token beyond
loopback; beyond loopback without any token only /healthz is served (and said at start-up
and by check-config)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from opswatch.alerts.silences import parse_matcher
from opswatch.api.app import ROUTES, Route
from opswatch.api.auth import Access, Scope, is_loopback
from opswatch.daemon.app import App
from opswatch.daemon.cli import main
from opswatch.daemon.configure import load_config
from opswatch.model import TransitionKind
from tests.api.errorshape import message
from tests.conftest import free_port

WRITE_TOKEN = "s3cret-write-token"
READ_TOKEN = "s3cret-read-token"
WRITES = [route for route in ROUTES if route.scope is Scope.WRITE]
READS = [route for route in ROUTES if route.scope is Scope.READ]
#: a heartbeat named like the path parameters the calls fill in ("x"), so its reads answer 200
HEARTBEAT_X = {
    "OPSWATCH_CHECKS": "http,heartbeat",
    "OPSWATCH_HEARTBEAT_TARGETS": "x=1d/1h",
    "OPSWATCH_HEARTBEAT_X_KEY": "k" * 16,
}


def _environ(tmp_path: Path, listen: str, **tokens: str) -> dict[str, str]:
    return {
        "OPSWATCH_CHECKS": "http",
        "OPSWATCH_HTTP_TARGETS": f"api=http://127.0.0.1:{free_port()}/health",
        "OPSWATCH_HTTP_TIMEOUT": "500ms",
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": listen,
        "OPSWATCH_INTERVAL": "1h",
        **tokens,
    }


class Daemon:
    """A started App whose one check is down (one firing alert) with one active silence."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.base = f"http://127.0.0.1:{app.api.port}"
        self.values: dict[str, str] = {}

    async def setup(self) -> None:
        for _ in range(5):
            if any(t.kind is TransitionKind.FIRED for t in await self.app.cycle.run("http:api")):
                break
        (alert,) = self.app.tracker.active()
        now = self.app.silences.now()
        silence = await self.app.silences.create(
            [parse_matcher("rule=nothing")], now + timedelta(hours=1), "ana", "kept"
        )
        self.values = {
            "fingerprint": alert.fingerprint,
            "id": silence.id,
            "action": "http_down",
            "check": "http:api",  # its runs are in the metric history
            "metric": "http.up",
            "rule": "http_down",
        }

    def path(self, route: Route) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: self.values.get(m.group(1), "x"), route.path)

    async def call(
        self, route: Route, headers: Mapping[str, str], body: Any = None
    ) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                route.method, self.base + self.path(route), json=body, headers=dict(headers)
            ) as r,
        ):
            text = await r.text()
            return r.status, (json.loads(text) if r.content_type == "application/json" else text)

    async def state(self) -> tuple[Any, ...]:
        """Everything a write route could change."""
        now = self.app.silences.now()
        return (
            [t.key for t in await self.app.store.history()],
            sorted(self.app.tracker.active(), key=lambda a: a.fingerprint),
            await self.app.store.load_active(),
            self.app.silences.muter.listed(now),
            await self.app.store.silences(now - timedelta(days=1)),
            await self.app.store.recovery_history(),
        )


async def _daemon(environ: dict[str, str]) -> AsyncIterator[Daemon]:
    app = App(load_config(environ))
    await app.start()
    try:
        daemon = Daemon(app)
        await daemon.setup()
        yield daemon
    finally:
        await app.stop()


@pytest.fixture
async def public(tmp_path: Path) -> AsyncIterator[Daemon]:
    """Listening on every address (reached here on 127.0.0.1), with both tokens."""
    environ = _environ(
        tmp_path,
        "0.0.0.0:0",
        OPSWATCH_API_TOKEN=WRITE_TOKEN,
        OPSWATCH_API_READ_TOKEN=READ_TOKEN,
        **HEARTBEAT_X,
    )
    async for daemon in _daemon(environ):
        yield daemon


#: a body each write route would act on, were it allowed
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/silences"): {
        "matchers": ["rule=http_down"],
        "ends_at": "2099-01-01T00:00:00+00:00",
        "created_by": "mallory",
        "comment": "hide it",
    },
    ("PUT", "/api/v1/silences/{id}"): {"ends_at": "2099-01-01T00:00:00+00:00"},
    ("POST", "/api/v1/recovery/{action}/run"): {},
}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": f"Bearer {READ_TOKEN}"}, 403),
        ({"Authorization": f"Basic {WRITE_TOKEN}"}, 401),
    ],
    ids=["no token", "wrong token", "read token", "not bearer"],
)
async def test_every_write_route_refuses_without_the_write_token_and_changes_nothing(
    public: Daemon, headers: dict[str, str], status: int
) -> None:
    assert WRITES, "the table has write routes"
    before = await public.state()
    for route in WRITES:
        body = BODIES.get((route.method, route.path), {"author": "mallory"})
        got, answer = await public.call(route, headers, body)
        assert got == status, route.path
        assert message(status, answer), route.path
    assert await public.state() == before


async def test_the_write_token_does_act_on_those_routes(public: Daemon) -> None:
    """The control of the test above: the same calls with the write token change state."""
    before = await public.state()
    auth = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    acked = [
        r for r in WRITES if (r.method, r.path) == ("POST", "/api/v1/alerts/{fingerprint}/ack")
    ]
    status, answer = await public.call(acked[0], auth, {"author": "ana"})
    assert status == 200, answer
    assert await public.state() != before


async def test_read_routes_beyond_loopback_need_the_read_or_the_write_token(
    public: Daemon,
) -> None:
    assert READS
    for route in READS:
        status, answer = await public.call(route, {})
        assert status == 401, route.path
        assert "bearer token is required" in message(401, answer)
        status, answer = await public.call(route, {"Authorization": "Bearer wrong"})
        assert status == 403, route.path
        for token in (READ_TOKEN, WRITE_TOKEN):
            status, answer = await public.call(route, {"Authorization": f"Bearer {token}"})
            assert status == 200, (route.path, answer)
    healthz = next(r for r in ROUTES if r.path == "/healthz")
    assert (await public.call(healthz, {}))[0] == 200


async def test_read_routes_on_loopback_are_open(tmp_path: Path) -> None:
    environ = _environ(tmp_path, "127.0.0.1:0", OPSWATCH_API_READ_TOKEN=READ_TOKEN, **HEARTBEAT_X)
    async for daemon in _daemon(environ):
        for route in READS:
            status, answer = await daemon.call(route, {})
            assert status == 200, (route.path, answer)


async def test_beyond_loopback_without_any_token_only_healthz_is_served_and_said(
    tmp_path: Path,
) -> None:
    with capture_logs() as logs:
        async for daemon in _daemon(_environ(tmp_path, "0.0.0.0:0")):
            for route in ROUTES:
                status, answer = await daemon.call(route, {}, {"author": "mallory"})
                if route.path == "/healthz":
                    assert status == 200
                else:
                    assert status == 404, route.path
                    assert message(404, answer)
            status, answer = await daemon.call(READS[0], {"Authorization": "Bearer anything"})
            assert "serves /healthz only" in message(404, answer)
    (warning,) = [e for e in logs if e["event"] == "api_public_without_token"]
    assert warning["log_level"] == "warning"
    assert warning["served"] == ["GET /healthz"]


def test_check_config_says_what_the_listener_exposes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("OPSWATCH_REQUIRE_SERVICES", raising=False)
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(tmp_path / "s.sqlite3"))
    monkeypatch.setenv("OPSWATCH_API_LISTEN", "0.0.0.0:9184")
    assert main(["check-config"]) == 0
    access = json.loads(capsys.readouterr().out)["api_access"]
    assert access["loopback"] is False
    assert access["without_token"] == ["GET /healthz"]
    assert access["with_read_token"] == []
    assert "GET /status" in access["not_served"]
    assert "serves /healthz only" in access["warning"]

    monkeypatch.setenv("OPSWATCH_API_READ_TOKEN", READ_TOKEN)
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert READ_TOKEN not in out
    access = json.loads(out)["api_access"]
    assert "GET /status" in access["with_read_token"]
    assert "POST /api/v1/silences" in access["not_served"]  # no write token
    assert "warning" not in access


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.10", False),
    ],
)
def test_a_loopback_listener_is_told_from_any_other(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_without_tokens_loopback_serves_reads_but_no_writes_and_elsewhere_only_open() -> None:
    access = Access(None, None, loopback=True)
    assert access.served(Scope.READ)
    assert not access.served(Scope.WRITE)
    assert not access.needs_token(Scope.READ)
    public = Access(None, None, loopback=False)
    assert public.public_without_token
    assert not public.served(Scope.READ)
    assert public.served(Scope.OPEN)


def _basic(password: str) -> dict[str, str]:
    """HTTP Basic credentials, as a browser sends them after its prompt."""
    return {"Authorization": "Basic " + base64.b64encode(f"ana:{password}".encode()).decode()}


async def test_a_browser_reads_the_status_page_with_the_token_as_basic_password(
    public: Daemon,
) -> None:
    page = f"{public.base}/"
    async with aiohttp.ClientSession() as http:
        async with http.get(page) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith('Basic realm="opswatch"')
        async with http.get(page, headers=_basic(READ_TOKEN)) as r:
            assert r.status == 200
            assert r.content_type == "text/html"
        async with http.get(page, headers=_basic("wrong")) as r:
            assert r.status == 403
        # never a write route: a browser replays Basic credentials on any request
        silences = f"{public.base}/api/v1/silences"
        async with http.post(silences, headers=_basic(WRITE_TOKEN)) as r:
            assert r.status == 401
