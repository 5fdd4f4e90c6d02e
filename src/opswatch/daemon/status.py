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


def fetch(url: str, timeout: float = TIMEOUT_S) -> Snapshot:
    health_code, health = get_json(f"{url}/healthz", timeout)
    _, status = get_json(f"{url}/status", timeout)
    _, alerts = get_json(f"{url}/api/v1/alerts", timeout)
    return Snapshot(url, health_code == 200, health, status, list(alerts.get("alerts", [])))


def get_json(url: str, timeout: float = TIMEOUT_S) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
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


def status(url: str, *, timeout: float = TIMEOUT_S, clock: Clock = utcnow) -> StatusReport:
    try:
        snapshot = fetch(url, timeout)
    except UnreachableError as exc:
        return StatusReport(1, f"opswatch status: cannot reach the daemon at {exc}", True)
    return StatusReport(0 if snapshot.healthy else 1, render(snapshot, clock()))
