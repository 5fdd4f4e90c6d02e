"""``opswatch heartbeats [NAME]``: the running daemon's heartbeats, over its HTTP API.

Like ``opswatch silence list``, it reads ``/api/v1/heartbeats`` at ``OPSWATCH_API_LISTEN`` (or
``--url``). Exit status: 0 every heartbeat is in time, 3 one is late, stuck or failed (a
morning runbook's "did the backup run?"), 1 the daemon refused or did not answer.
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from opswatch.config import Secret
from opswatch.daemon.silence_cli import CommandError, api_call

#: the exit status when a heartbeat is late, stuck or failed
OVERDUE = 3
_BAD = frozenset({"late", "stuck", "failed"})


def add_parser(sub: Any) -> None:
    """``opswatch heartbeats ...`` on the command's sub-parsers."""
    parser = sub.add_parser(
        "heartbeats", help="the heartbeats' status and last pings (exit 3 when one is overdue)"
    )
    parser.add_argument("name", nargs="?", help="one heartbeat, with its newest pings")
    parser.add_argument("--limit", type=int, default=10, help="how many pings (default 10)")
    parser.add_argument("--url", help="the API's base URL (default: OPSWATCH_API_LISTEN)")


def run(args: argparse.Namespace, url: str, token: Secret | None) -> tuple[int, str]:
    """The exit status and the text to print (on stdout unless the daemon failed us)."""
    try:
        if args.name is None:
            _, answer = api_call("GET", f"{url}/api/v1/heartbeats", token)
            heartbeats = list(answer.get("heartbeats", []))
            if not heartbeats:
                return 0, "no heartbeats"
            return _exit(heartbeats), _table(heartbeats)
        name = urllib.parse.quote(args.name, safe="")
        limit = max(1, min(int(args.limit), 100))
        _, one = api_call("GET", f"{url}/api/v1/heartbeats/{name}?limit={limit}", token)
    except CommandError as exc:
        return exc.code, f"opswatch: {exc}"
    lines = [_table([one]), "", "AT  KIND  EXIT  DURATION  OUTPUT"]
    lines += [_ping(p) for p in one.get("pings", [])] or ["(no pings)"]
    return _exit([one]), "\n".join(lines)


def _exit(heartbeats: list[dict[str, Any]]) -> int:
    return OVERDUE if any(h["status"] in _BAD for h in heartbeats) else 0


def _table(heartbeats: list[dict[str, Any]]) -> str:
    rows = [("NAME", "STATUS", "SCHEDULE", "GRACE", "DEADLINE", "REASON")]
    rows += [
        (h["name"], h["status"], h["schedule"], h["grace"], h["deadline"], h["reason"])
        for h in heartbeats
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5] for r in rows)


def _ping(ping: dict[str, Any]) -> str:
    status = "-" if ping["exit_status"] is None else str(ping["exit_status"])
    took = "-" if ping["duration_s"] is None else f"{ping['duration_s']:g}s"
    line = next((x.strip() for x in str(ping["output"]).splitlines() if x.strip()), "")
    cut = " [truncated]" if ping["truncated"] else ""
    return f"{ping['at']}  {ping['kind']}  {status}  {took}  {line[:80]}{cut}"
