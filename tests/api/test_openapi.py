"""``GET /api/v1/openapi.json``: a valid OpenAPI 3.1 document generated from the route table,
whose schemas the live answers and the encoders match."""

from __future__ import annotations

import importlib.metadata
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

import opswatch
from opswatch.api.app import ROUTES, Route
from opswatch.api.auth import Scope
from opswatch.api.openapi import document
from opswatch.codec import (
    SCHEMAS,
    budget_state_to_json,
    recovery_result_to_json,
    ref,
    transition_to_json,
)
from opswatch.model import BudgetState, RecoveryOutcome, RecoveryResult

from ..test_codec import _escalation

JSON = dict[str, Any]


async def _get(base: str, path: str) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as http, http.get(base + path) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, response.content_type, body


async def _document(base: str) -> JSON:
    status, content_type, doc = await _get(base, "/api/v1/openapi.json")
    assert (status, content_type) == (200, "application/json")
    assert isinstance(doc, dict)
    return doc


def _conforms(doc: JSON, schema: JSON, value: Any) -> list[str]:
    """The errors of ``value`` against ``schema``, its references resolved in ``doc``."""
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    return [error.message for error in validator.iter_errors(value)]


async def test_the_served_document_is_valid_openapi_3_1(base: str) -> None:
    doc = await _document(base)
    assert doc["openapi"].startswith("3.1.")
    validate(doc)  # raises on an invalid document


async def test_every_route_appears_with_its_method_and_nothing_else(base: str) -> None:
    doc = await _document(base)
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    assert documented == {(route.path, route.method) for route in ROUTES}
    assert ("/api/v1/openapi.json", "GET") in documented
    for route in ROUTES:
        operation = doc["paths"][route.path][route.method.lower()]
        assert operation["summary"] == route.summary
        names = [p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"]
        assert names == re.findall(r"\{(\w+)\}", route.path)


async def test_write_routes_carry_the_bearer_requirement_and_their_401_403_404(
    base: str,
) -> None:
    doc = await _document(base)
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    writes = [route for route in ROUTES if route.scope is Scope.WRITE]
    assert writes, "the table has a write route"
    for route in ROUTES:
        operation = doc["paths"][route.path][route.method.lower()]
        if route.scope is Scope.WRITE:
            assert operation["security"] == [{"bearer": []}]
            assert {"401", "403", "404"} <= set(operation["responses"])
        elif route.scope is Scope.PING:  # a heartbeat's key, or the bearer token
            assert operation["security"] == [{"heartbeatKey": []}, {"bearer": []}]
            assert {"401", "403", "404", "413"} <= set(operation["responses"])
        elif route.scope is Scope.READ:  # a token only beyond loopback
            assert operation["security"] == [{}, {"bearer": []}]
            assert {"401", "403", "404"} <= set(operation["responses"])
        else:
            assert "security" not in operation
            assert "401" not in operation["responses"]
    assert "security" not in doc
    assert "security" not in doc["paths"]["/healthz"]["get"]  # probes need nothing


async def test_info_version_is_the_package_version(base: str) -> None:
    doc = await _document(base)
    assert doc["info"]["version"] == importlib.metadata.version("opswatch")
    assert doc["info"]["version"] == opswatch.__version__


async def test_query_parameters_and_the_request_body_are_described(base: str) -> None:
    doc = await _document(base)
    history = doc["paths"]["/api/v1/alerts/history"]["get"]
    (limit,) = history["parameters"]
    assert (limit["name"], limit["in"], limit["schema"]["maximum"]) == ("limit", "query", 1000)
    assert "400" in history["responses"]
    run = doc["paths"]["/api/v1/recovery/{action}/run"]["post"]
    body = run["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"target", "dry_run"}
    assert run["responses"]["200"]["content"]["application/json"]["schema"] == ref("RecoveryResult")


@pytest.mark.parametrize(
    "path",
    [
        route.path
        for route in ROUTES
        if route.method == "GET" and "{" not in route.path and route.answer is not None
    ],
)
async def test_a_live_answer_matches_its_documented_schema(base: str, path: str) -> None:
    doc = await _document(base)
    status, content_type, body = await _get(base, path)
    response = doc["paths"][path]["get"]["responses"][str(status)]
    assert content_type in response["content"]
    if content_type == "application/json":
        schema = response["content"][content_type]["schema"]
        assert _conforms(doc, schema, body) == []


async def test_the_encoders_match_their_declared_shapes(base: str) -> None:
    doc = await _document(base)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    transition = _escalation()
    encoded = {
        "Transition": transition_to_json(transition),
        "Alert": transition_to_json(transition)["alert"],
        "RecoveryResult": recovery_result_to_json(
            RecoveryResult("restart", "fp", RecoveryOutcome.SKIPPED_BUDGET, 0, 0.0, "", at)
        ),
        "BudgetState": budget_state_to_json(BudgetState("restart:api", 1, 3, 2, "half-open")),
    }
    for name, value in encoded.items():
        assert _conforms(doc, ref(name), value) == [], name
        assert set(SCHEMAS[name]["properties"]) == set(value), name
    assert _conforms(doc, ref("Alert"), {**encoded["Alert"], "state": "bogus"}) != []


async def _nothing(request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_without_schemas_is_documented_by_its_row_alone() -> None:
    route = Route("DELETE", "/api/v1/silences/{silence_id}", _nothing, Scope.WRITE, "expire")
    doc = document([route], version="9.9.9")
    validate(doc)
    operation = doc["paths"]["/api/v1/silences/{silence_id}"]["delete"]
    assert operation["parameters"][0]["name"] == "silence_id"
    assert operation["responses"]["200"] == {"description": "expire"}
    assert operation["security"] == [{"bearer": []}]
    assert "requestBody" not in operation


def test_the_readme_lists_every_route_of_the_table() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("## HTTP API", 1)[1].split("\n\n", 2)[1]
    listed = {
        (method, re.sub(r"\{\w+\}", "{}", path))
        for method, path in re.findall(r"^\| `([A-Z]+) ([^`?]+)", table, re.MULTILINE)
    }
    for route in ROUTES:
        assert (route.method, re.sub(r"\{\w+\}", "{}", route.path)) in listed, route.path
