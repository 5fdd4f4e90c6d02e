"""Hostile request bodies are refused with the API's error shape, never a 500."""

from __future__ import annotations

import aiohttp
import pytest

from opswatch.api.requests import MAX_BODY, MAX_DEPTH
from tests.api.conftest import TOKEN
from tests.api.errorshape import message


async def _post(base: str, body: bytes) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/api/v1/recovery/http_down/run", data=body, headers=headers) as r,
    ):
        return r.status, message(r.status, await r.text())


async def test_a_deeply_nested_json_body_answers_400_naming_the_problem(base: str) -> None:
    status, text = await _post(base, b"[" * 30_000 + b"]" * 30_000)
    assert (status, text) == (400, f"body: nested deeper than {MAX_DEPTH} levels")
    status, text = await _post(base, b'{"a":' * 10_000 + b"1" + b"}" * 10_000)
    assert status == 400


async def test_a_body_over_the_cap_answers_413(base: str) -> None:
    status, _ = await _post(base, b'{"target": "' + b"x" * MAX_BODY + b'"}')
    assert status == 413


async def test_brackets_inside_strings_do_not_count_as_nesting(base: str) -> None:
    status, text = await _post(base, b'{"target": "' + b"[" * 100 + b'"}')
    assert (status, text) == (404, "no recovery binding 'http_down'")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "body: expected a JSON object"),
        (b"[1, 2]", "body: expected a JSON object"),
        (b'{"target": 5}', "target: expected a string"),
        (b'{"dry_run": "yes"}', "dry_run: expected true or false"),
    ],
)
async def test_a_malformed_body_answers_400_with_one_line(
    base: str, body: bytes, problem: str
) -> None:
    assert await _post(base, body) == (400, problem)
