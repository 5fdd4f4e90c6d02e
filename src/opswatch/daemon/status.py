"""``opswatch status``: ask the running daemon's API and print a readable summary.

Reads ``/healthz``, ``/status`` and ``/api/v1/alerts`` at ``OPSWATCH_API_LISTEN`` (or
``--url``). The exit status is the daemon's own health, as ``/healthz`` reports it: 0 healthy,
1 unhealthy or unreachable. A watched service being down is shown, not an exit status: that
is what alerts are for.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opswatch.config import Secret
from opswatch.daemon.pause_cli import describe as describe_pauses
from opswatch.model import Clock, utcnow

TIMEOUT_S = 5.0
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class UnreachableError(Exception):
    """The daemon's API did not answer (refused, timed out, not JSON)."""


def api_url(listen: tuple[str, int]) -> str:
    """The base URL to reach an API listening on ``listen`` from this host."""
    host, port = listen
    host = _ANY_ADDRESS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class Snapshot:
    url: str
    healthy: bool
    health: dict[str, Any]
    status: dict[str, Any]
    alerts: list[dict[str, Any]]


def fetch(url: str, timeout: float = TIMEOUT_S, token: Secret | None = None) -> Snapshot:
    """The three answers; ``token`` (the read or write token) is sent as the bearer: a
    listener beyond loopback needs it for ``/status`` and the alerts."""
    headers = _bearer(token)
    health_code, health = _get(f"{url}/healthz", timeout, headers)
    status = _read(f"{url}/status", timeout, headers)
    alerts = _read(f"{url}/api/v1/alerts", timeout, headers)
    return Snapshot(url, health_code == 200, health, status, list(alerts.get("alerts", [])))


def get_json(url: str, token: Secret | None = None, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """The JSON object a read route answers, sending ``token`` as the bearer; a refusal or an
    unreachable daemon raises :class:`UnreachableError` with the API's one line."""
    return _read(url, timeout, _bearer(token))


def _bearer(token: Secret | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token.reveal()}"}


def _read(url: str, timeout: float, headers: dict[str, str]) -> dict[str, Any]:
    code, data = _get(url, timeout, headers)
    if code >= 400:  # refused (no or a wrong token beyond loopback): the API's error shape
        error = data.get("error")
        refusal = error.get("message") if isinstance(error, dict) else None
        hint = " (set OPSWATCH_API_READ_TOKEN)" if code in (401, 403, 404) else ""
        raise UnreachableError(f"{url}: answered {code}: {refusal}{hint}")
    return data


def _get(url: str, timeout: float, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            code, body = int(response.status), response.read()
    except urllib.error.HTTPError as exc:  # /healthz answers 503 with a JSON reason
        code, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnreachableError(f"{url}: {reason}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise UnreachableError(f"{url}: answered {code} without JSON") from None
    if not isinstance(data, dict):
        raise UnreachableError(f"{url}: answered {code} with unexpected JSON")
    return code, data


def human_duration(seconds: float) -> str:
    """``42s``, ``5m 12s``, ``2h 3m``, ``3d 4h``."""
    if not math.isfinite(seconds):
        return "?"
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _since(value: str | None, now: datetime) -> float:
    if not value:
        return math.nan
    return (now - datetime.fromisoformat(value)).total_seconds()


def _state(samples: Sequence[dict[str, Any]]) -> str:
    ups = [s["value"] for s in samples if str(s.get("metric", "")).endswith(".up")]
    if not ups:
        return "-"
    return "up" if all(v == 1 for v in ups) else "DOWN"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _acked(alert: dict[str, Any]) -> str:
    return f" (acked by {alert['acked_by']})" if alert.get("acked_by") else ""


def render(snapshot: Snapshot, now: datetime) -> str:
    health = snapshot.health
    uptime = human_duration(_since(health.get("started_at"), now))
    if snapshot.healthy:
        lines = [f"opswatch at {snapshot.url}: healthy, up {uptime}"]
    else:
        reason = health.get("reason", "no reason given")
        lines = [f"opswatch at {snapshot.url}: UNHEALTHY ({reason}), up {uptime}"]
    if snapshot.status.get("paused"):  # notifications and recovery are off for these
        lines.append(describe_pauses(snapshot.status["paused"]))

    checks: dict[str, dict[str, Any]] = snapshot.status.get("checks", {})
    lines.append("")
    if checks:
        rows = [("CHECK", "STATE", "LAST RUN", "TOOK", "ERROR")]
        for name in sorted(checks):
            check = checks[name]
            rows.append(
                (
                    name,
                    _state(check.get("samples", [])),
                    f"{human_duration(_since(check.get('finished_at'), now))} ago",
                    f"{check.get('duration_ms', 0):.0f} ms",
                    check.get("error") or "",
                )
            )
        lines.extend(_table(rows))
    else:
        lines.append("CHECKS: none has run yet")

    lines.append("")
    alerts = snapshot.alerts
    if alerts:
        lines.append(f"ALERTS: {len(alerts)} active")
        alert_rows = [
            (
                str(a["severity"]).upper(),
                str(a["rule"]),
                str(a["check"]),
                f"for {human_duration(_since(a.get('started_at'), now))}",
                str(a.get("summary", "")) + _acked(a),
                str(a.get("fingerprint", "")),  # what ``opswatch ack`` and ``resolve`` take
            )
            for a in alerts
        ]
        lines.extend("  " + line for line in _table(alert_rows))
    else:
        lines.append("ALERTS: none active")

    outbox = snapshot.status.get("outbox", {})
    lines.append("")
    lines.append(f"OUTBOX: {outbox.get('pending', 0)} pending, {outbox.get('failed', 0)} failed")
    return "\n".join(lines)


@dataclass(frozen=True)
class StatusReport:
    exit_status: int
    text: str
    #: the daemon did not answer: ``text`` is an error message (for stderr)
    unreachable: bool = False


def status(
    url: str, *, timeout: float = TIMEOUT_S, clock: Clock = utcnow, token: Secret | None = None
) -> StatusReport:
    try:
        snapshot = fetch(url, timeout, token)
    except UnreachableError as exc:
        return StatusReport(1, f"opswatch status: cannot reach the daemon at {exc}", True)
    return StatusReport(0 if snapshot.healthy else 1, render(snapshot, clock()))
