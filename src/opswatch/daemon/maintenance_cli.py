"""``opswatch maintenance list|add|delete``: the running daemon's maintenance windows, over
its HTTP API.

Like ``opswatch silence``, it talks to the API at ``OPSWATCH_API_LISTEN`` (or ``--url``);
``add`` and ``delete`` send the bearer ``OPSWATCH_API_TOKEN``. Exit status: 0 done, 1 the
daemon refused (its one-line reason on stderr) or did not answer, 2 a bad argument.
"""

from __future__ import annotations

import argparse
import urllib.parse
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from opswatch.config import Secret
from opswatch.daemon.silence_cli import (
    CommandError,
    add_matchers_and_end,
    api_call,
    author,
    end_time,
    iso_time,
)
from opswatch.model import Clock, utcnow


def add_parser(sub: Any) -> None:
    """``opswatch maintenance ...`` on the command's sub-parsers."""
    maintenance = sub.add_parser(
        "maintenance", help="list maintenance windows; add or delete one-off ones"
    )
    maintenance.add_argument("--url", help="the API's base URL (default: OPSWATCH_API_LISTEN)")
    actions = maintenance.add_subparsers(dest="maintenance_command", required=True)
    listing = actions.add_parser("list", help="every window and its next occurrences")
    listing.add_argument(
        "--next", type=int, default=3, help="how many next occurrences per window (1-50)"
    )
    add = actions.add_parser("add", help="a one-off window muting the alerts all --match match")
    add.add_argument("--name", required=True, help="its name (the mute reason: maintenance NAME)")
    add_matchers_and_end(add, "its start")
    add.add_argument("--start", help="when it opens: ISO 8601 with a timezone (default now)")
    add.add_argument("--comment", required=True, help="why (kept with the window, logged)")
    add.add_argument("--author", help="who (default: the login name)")
    delete = actions.add_parser("delete", help="delete a one-off window (an open one ends now)")
    delete.add_argument("id", help="the window's id (opswatch maintenance list)")
    delete.add_argument("--author", help="who (default: the login name)")


def run(
    args: argparse.Namespace, url: str, token: Secret | None, clock: Clock = utcnow
) -> tuple[int, str]:
    """The exit status and the text to print (on stdout when 0, else on stderr)."""
    try:
        if args.maintenance_command == "list":
            return 0, _list(url, args.next)
        if args.maintenance_command == "add":
            return 0, _add(args, url, token, clock)
        by = urllib.parse.quote(author(args))
        window_id = urllib.parse.quote(args.id, safe="")
        _, gone = api_call("DELETE", f"{url}/api/v1/maintenance/{window_id}?by={by}", token)
        return 0, f"maintenance {gone['id']} {gone['name']} deleted"
    except CommandError as exc:
        return exc.code, f"opswatch: {exc}"


def _add(args: argparse.Namespace, url: str, token: Secret | None, clock: Clock) -> str:
    start = clock() if args.start is None else iso_time("--start", args.start)
    body = {
        "name": args.name,
        "matchers": list(args.match),
        "starts_at": start.isoformat(),
        "ends_at": end_time(args, lambda: start).isoformat(),
        "created_by": author(args),
        "comment": args.comment,
    }
    _, made = api_call("POST", f"{url}/api/v1/maintenance", token, body)
    (span,) = made["next"]
    made_id, name = made["id"], made["name"]
    return f"maintenance {made_id} {name} from {span['starts_at']} until {span['ends_at']}"


def _list(url: str, count: int) -> str:
    if not 1 <= count <= 50:
        raise CommandError(f"--next: expected a whole number from 1 to 50, got {count}", 2)
    _, answer = api_call("GET", f"{url}/api/v1/maintenance?next={count}", None)
    lines: list[str] = []
    for w in answer.get("windows", []):
        state = "open" if w["open"] else "closed"
        match = "; ".join(f"match={m}" for m in w["matchers"])
        if w["kind"] == "recurring":
            what = f"cron={w['cron']}; duration={_duration(w['duration_s'])}; tz={w['tz']}"
            lines.append(f"{w['name']}  recurring  {state}  {what}; {match}")
        else:
            lines.append(
                f"{w['name']}  one-off {w['id']}  {state}  {match}  "
                f"by {w['created_by']}: {w['comment']}"
            )
        zone = ZoneInfo(w["tz"] or "UTC")
        for span in w["next"]:
            starts, ends = (datetime.fromisoformat(span[k]) for k in ("starts_at", "ends_at"))
            local = f"  ({_local(starts, zone)} to {_local(ends, zone)})" if w["tz"] else ""
            lines.append(f"  {starts.isoformat()} to {ends.isoformat()}{local}")
    return "\n".join(lines) if lines else "no maintenance windows"


def _local(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
