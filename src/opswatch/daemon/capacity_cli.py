"""``opswatch capacity``: the running daemon's forecasts (``GET /api/v1/capacity``), one line
per resource series, soonest to its limit first, then its scaling advice. Exit 0, or 1 when
the daemon is unreachable or keeps no history."""

from __future__ import annotations

from typing import Any

from opswatch.config import Secret
from opswatch.daemon.status import UnreachableError, get_json, human_duration


def render(forecasts: list[dict[str, Any]], advice: list[dict[str, Any]]) -> str:
    lines = [_forecasts(forecasts), ""]
    if advice:
        lines += ["ADVICE", *(f"- {a['recommendation']}" for a in advice)]
    else:
        lines.append("no scaling advice: no trigger held over the last day and week")
    return "\n".join(lines)


def _forecasts(forecasts: list[dict[str, Any]]) -> str:
    if not forecasts:
        return "no resource is forecast to reach its limit (flat, shrinking or too new)"
    rows = [("RESOURCE", "WHERE", "NOW", "PER DAY", "FULL IN (EARLIEST - LIKELY - LATEST)")]
    for f in forecasts:
        labels = ",".join(f"{k}={v}" for k, v in sorted(f["labels"].items()))
        where = f["check"] + (f" {labels}" if labels else "")
        if f["likely_s"] is None:
            full = "no limit: growth only"
        else:
            latest = "never?" if f["latest_s"] is None else human_duration(f["latest_s"])
            full = f"{human_duration(f['earliest_s'])} - {human_duration(f['likely_s'])} - {latest}"
        rows.append((f["resource"], where, f"{f['value']:.4g}", f"{f['per_day']:+.3g}", full))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    )


def capacity(url: str, token: Secret | None = None) -> tuple[int, str]:
    """``(exit status, text)`` for the daemon at ``url`` (``token``: the read or write
    token, needed beyond loopback)."""
    try:
        body = get_json(f"{url}/api/v1/capacity", token)
    except UnreachableError as exc:
        return 1, f"opswatch capacity: cannot reach the daemon at {exc}"
    if not body.get("history"):
        return 1, "opswatch capacity: the daemon keeps no metric history (OPSWATCH_HISTORY=off)"
    return 0, render(list(body.get("forecasts", [])), list(body.get("advice", [])))
