"""Every error the API answers is the one ``Error`` shape: the handlers' refusals, aiohttp's
own 404, 405 and 413, and a handler's bug (500, logged); the OpenAPI document says so for
every error status of every operation."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from jsonschema import Draft202012Validator
from structlog.testing import capture_logs

from opswatch.api.app import ROUTES
from opswatch.api.errors import error_json, json_errors, message_of
from opswatch.api.openapi import document
from opswatch.api.requests import MAX_BODY
from opswatch.codec import SCHEMAS, ref
from tests.api.conftest import TOKEN
from tests.api.errorshape import message


async def test_an_unknown_path_answers_404_in_the_error_shape(base: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/nope") as r:
        assert (r.status, r.content_type) == (404, "application/json")
        assert message(404, await r.json()) == "Not Found"
        assert (await r.json())["error"]["code"] == "not_found"


async def test_a_wrong_method_answers_405_with_its_allow_header(base: str) -> None:
    async with aiohttp.ClientSession() as http, http.patch(f"{base}/api/v1/alerts") as r:
        assert r.status == 405
        assert r.headers["Allow"] == "GET"
        assert (await r.json())["error"]["code"] == "method_not_allowed"


async def test_a_body_over_the_limit_answers_413_in_the_error_shape(base: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    body = b'{"target": "' + b"x" * MAX_BODY + b'"}'
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/api/v1/recovery/x/run", data=body, headers=headers) as r,
    ):
        assert r.status == 413
        answer = await r.json()
        assert answer["error"]["code"] == "payload_too_large"
        assert str(MAX_BODY) in message(413, answer)


async def test_a_missing_token_keeps_its_www_authenticate_header(base: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{base}/api/v1/silences") as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert (await r.json())["error"]["code"] == "unauthorized"


async def _broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug with a detail the client must not see")


async def test_a_handler_bug_answers_500_in_the_error_shape_and_is_logged() -> None:
    app = web.Application(middlewares=[json_errors])
    app.router.add_get("/broken", _broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with capture_logs() as logs:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/broken") as r,
            ):
                status, text = r.status, await r.text()
    finally:
        await runner.cleanup()
    assert status == 500
    assert message(500, text) == "internal error: see the daemon's log"
    assert "detail" not in text
    (logged,) = [e for e in logs if e["event"] == "api_handler_failed"]
    assert (logged["method"], logged["path"]) == ("GET", "/broken")


def test_every_error_status_of_every_operation_answers_the_error_shape() -> None:
    doc = document(ROUTES)
    errors = 0
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and (path, status) != ("/healthz", "503"):
                    assert response["content"] == {"application/json": {"schema": ref("Error")}}, (
                        method,
                        path,
                        status,
                    )
                    errors += 1
    assert errors > len(ROUTES)
    validator = Draft202012Validator({**ref("Error"), "components": doc["components"]})
    assert list(validator.iter_errors(error_json(409, "busy"))) == []
    assert list(validator.iter_errors({"error": {"status": 200, "code": "ok"}})) != []
    assert set(SCHEMAS["Error"]["properties"]["error"]["required"]) == {
        "status",
        "code",
        "message",
    }


def test_the_cli_reads_the_message_of_an_error_or_the_first_line_of_any_other_body() -> None:
    assert message_of(b'{"error": {"status": 404, "message": "no silence"}}', "?") == "no silence"
    assert message_of(b"Bad Request\nmore", "?") == "Bad Request"
    assert message_of(b"", "Not Found") == "Not Found"
