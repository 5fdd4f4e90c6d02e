"""``opswatch ack``, ``unack`` and ``resolve``: operator actions sent to the running daemon's
API (``OPSWATCH_API_LISTEN`` or ``--url``) with the bearer ``OPSWATCH_API_TOKEN``.

Prints one line saying what was done (stdout), or the API's one-line refusal (stderr). Exit
status: 0 done, 1 refused or unreachable."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from opswatch.api.errors import message_of
from opswatch.config import Secret
from opswatch.daemon.status import TIMEOUT_S


@dataclass(frozen=True)
class Reply:
    exit_status: int
    text: str

    @property
    def failed(self) -> bool:
        return self.exit_status != 0


def call(
    url: str,
    token: Secret | None,
    method: str,
    path: str,
    body: dict[str, Any],
    *,
    timeout: float = TIMEOUT_S,
) -> Reply:
    """Send one operator action; the reply says what the daemon did."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token.reveal()}"
    request = urllib.request.Request(
        f"{url}/api/v1/alerts/{path}",
        data=json.dumps({k: v for k, v in body.items() if v is not None}).encode(),
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        refusal = message_of(exc.read(), str(exc.reason))
        hint = " (set OPSWATCH_API_TOKEN)" if exc.code in (401, 403) else ""
        return Reply(1, f"opswatch: the daemon answered {exc.code}: {refusal}{hint}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Reply(1, f"opswatch: cannot reach the daemon at {url}: {reason}")
    return Reply(0, describe(answer))


def describe(answer: dict[str, Any]) -> str:
    """One line: the alert and the history note of what was done to it."""
    alert, transition = answer.get("alert", {}), answer.get("transition", {})
    what = f"{alert.get('rule')} on {alert.get('check')} ({alert.get('fingerprint')})"
    return f"{what}: {transition.get('note') or transition.get('kind')}"
