"""Property-based: schemathesis generates requests for every operation of the daemon's own
OpenAPI document and checks each answer: never a 5xx, always a documented status, content
type and schema (errors included: the one ``Error`` shape).

The daemon runs on 127.0.0.1 in a thread of its own (schemathesis calls it synchronously),
with a firing alert so that the operator routes reach their handlers, and the write token,
sent with every call, so that the write routes do too.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from opswatch.api.app import ROUTES
from opswatch.api.openapi import document
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import TransitionKind
from tests.conftest import free_port

TOKEN = "s3cret-token-value"
#: examples per operation (about 20 operations: the whole run stays well under 30 s)
MAX_EXAMPLES = 100
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Served:
    """An :class:`App` started and stopped on an event loop of its own thread."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Any, timeout: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def __enter__(self) -> Served:
        self._thread.start()
        self.run(self.app.start())
        return self

    def __exit__(self, *_: object) -> None:
        self.run(self.app.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    app = App(
        load_config(
            {
                "OPSWATCH_CHECKS": "http",
                "OPSWATCH_HTTP_TARGETS": f"api=http://127.0.0.1:{free_port()}/health",
                "OPSWATCH_HTTP_TIMEOUT": "500ms",
                "OPSWATCH_STATE_PATH": str(tmp / "s.sqlite3"),
                "OPSWATCH_API_LISTEN": "127.0.0.1:0",
                "OPSWATCH_API_TOKEN": TOKEN,
                "OPSWATCH_EXTERNAL_URL": "https://opswatch.example",
                "OPSWATCH_INTERVAL": "1h",
            }
        )
    )
    with Served(app) as served:
        fired = [t for _ in range(3) for t in served.run(app.cycle.run("http:api"))]
        assert [t.kind for t in fired] == [TransitionKind.FIRED]
        yield served


@pytest.fixture(scope="module")
def base(served: Served) -> str:
    return f"http://127.0.0.1:{served.app.api.port}"


#: the document the daemon serves, generated from the route table (checked equal below)
SCHEMA = schemathesis.openapi.from_dict(document(ROUTES))


def _operations() -> dict[str, APIOperation[Any, Any, Any, Any]]:
    found = {}
    for result in SCHEMA.get_all_operations():
        assert isinstance(result, Ok), result  # an operation schemathesis cannot read
        found[result.ok().label] = result.ok()
    return found


OPERATIONS = _operations()


def test_the_served_document_is_the_one_tested(base: str) -> None:
    with urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=10) as answer:
        assert json.load(answer) == document(ROUTES)


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_generated_request_gets_a_5xx_or_an_undocumented_answer(
    label: str, served: Served, base: str
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    operation = OPERATIONS[label]
    strategies = [operation.as_strategy(mode) for mode in GenerationMode]
    known = _known_parameters(served, operation.path)
    if known:  # also the real alert (and its ack link): the handlers past the lookup
        strategies.append(operation.as_strategy(path_parameters=known))

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=base, headers=auth, checks=CHECKS, timeout=10)

    call()


def _known_parameters(served: Served, path: str) -> dict[str, str]:
    if "{rule}" in path:  # a rule that exists, fires and has a recovery history to read
        return {"rule": "http_down"}
    alerts = served.app.tracker.active()
    links = served.app.config.ack_links
    if not alerts or links is None:
        return {}
    alert = alerts[0]
    if "{fingerprint}" in path:
        return {"fingerprint": alert.fingerprint}
    if "{token}" in path:
        return {"token": links.token(alert, alert.last_seen_at)}
    return {}
