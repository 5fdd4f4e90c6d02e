"""Reading the API's one error shape in tests."""

from __future__ import annotations

import json
from typing import Any


def message(status: int, body: Any) -> str:
    """The ``message`` of an error answer, after checking it is the ``Error`` shape for
    ``status`` (``body``: the parsed JSON or its text)."""
    data = json.loads(body) if isinstance(body, str) else body
    assert isinstance(data, dict), data
    assert set(data) == {"error"}, data
    error = data["error"]
    assert set(error) == {"status", "code", "message"}, error
    assert error["status"] == status, error
    assert isinstance(error["message"], str), error
    assert "\n" not in error["message"]
    return str(error["message"])
