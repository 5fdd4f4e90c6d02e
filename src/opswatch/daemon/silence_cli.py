"""``opswatch silence add|list|expire``: silences on the running daemon, over its HTTP API.

Like ``opswatch status``, it talks to the API at ``OPSWATCH_API_LISTEN`` (or ``--url``);
``add`` and ``expire`` send the bearer ``OPSWATCH_API_TOKEN``. Exit status: 0 done, 1 the
daemon refused (its one-line reason on stderr) or did not answer, 2 a bad argument.
"""

from __future__ import annotations

import argparse
import getpass
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from typing import Any

from opswatch.api.errors import message_of
from opswatch.config import ConfigError, Env, Secret
from opswatch.model import Clock, utcnow

TIMEOUT_S = 5.0


class CommandError(Exception):
    """The daemon refused or did not answer; ``code`` is the exit status."""

    def __init__(self, text: str, code: int = 1) -> None:
        super().__init__(text)
        self.code = code


def add_parser(sub: Any) -> None:
    """``opswatch silence ...`` on the command's sub-parsers."""
    silence = sub.add_parser("silence", help="add, list or expire silences on the daemon")
    silence.add_argument("--url", help="the API's base URL (default: OPSWATCH_API_LISTEN)")
    actions = silence.add_subparsers(dest="silence_command", required=True)
    add = actions.add_parser("add", help="mute the alerts all --match match, for a time")
    add_matchers_and_end(add, "now")
    add.add_argument("--comment", required=True, help="why (kept with the silence, logged)")
    add.add_argument("--author", help="who (default: the login name)")
    add.add_argument(
        "--dry-run", action="store_true", help="list the active alerts it would mute; add none"
    )
    actions.add_parser("list", help="active and pending silences, and those expired within 24 h")
    expire = actions.add_parser("expire", help="end a silence now")
    expire.add_argument("id", help="the silence's id (opswatch silence list)")
    expire.add_argument("--author", help="who (default: the login name)")


def add_matchers_and_end(parser: Any, start: str) -> None:
    """``--match`` (repeatable) and ``--duration`` (from ``start``) or ``--end``."""
    parser.add_argument(
        "--match",
        action="append",
        required=True,
        help="NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX on rule, check or a label "
        "(repeatable: all must match)",
    )
    until = parser.add_mutually_exclusive_group(required=True)
    until.add_argument("--duration", help=f"how long from {start}: 30m, 2h, 1d")
    until.add_argument("--end", help="when it ends: ISO 8601 with a timezone")


def run(
    args: argparse.Namespace, url: str, token: Secret | None, clock: Clock = utcnow
) -> tuple[int, str]:
    """The exit status and the text to print (on stdout when 0, else on stderr)."""
    try:
        if args.silence_command == "add":
            return 0, _add(args, url, token, clock)
        if args.silence_command == "list":
            return 0, _list(url)
        by = urllib.parse.quote(author(args))
        silence_id = urllib.parse.quote(args.id, safe="")
        _, ended = api_call("DELETE", f"{url}/api/v1/silences/{silence_id}?by={by}", token)
        return 0, f"silence {ended['id']} expired at {ended['ends_at']}"
    except CommandError as exc:
        return exc.code, f"opswatch: {exc}"


def _add(args: argparse.Namespace, url: str, token: Secret | None, clock: Clock) -> str:
    body = {
        "matchers": list(args.match),
        "ends_at": end_time(args, clock).isoformat(),
        "created_by": author(args),
        "comment": args.comment,
    }
    if args.dry_run:
        _, answer = api_call("POST", f"{url}/api/v1/silences?dry_run=1", token, body)
        alerts = answer.get("alerts", [])
        lines = [f"would silence {len(alerts)} active alert(s)"]
        lines += [f"  {a['rule']}  {a['check']}  {_labels(a['labels'])}" for a in alerts]
        return "\n".join(lines)
    _, created = api_call("POST", f"{url}/api/v1/silences", token, body)
    return f"silence {created['id']} {created['state']} until {created['ends_at']}"


def _list(url: str) -> str:
    _, answer = api_call("GET", f"{url}/api/v1/silences", None)
    rows = [("ID", "STATE", "ENDS", "BY", "MATCHERS", "COMMENT")]
    for s in answer.get("silences", []):
        matchers = ",".join(f"{m['name']}{m['op']}{m['value']}" for m in s["matchers"])
        rows.append((s["id"], s["state"], s["ends_at"], s["created_by"], matchers, s["comment"]))
    if len(rows) == 1:
        return "no silences"
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5] for r in rows)


def end_time(args: argparse.Namespace, clock: Clock) -> datetime:
    if args.duration is not None:
        try:
            seconds = Env({"--duration": args.duration}).duration("--duration", 0.0)
        except ConfigError as exc:
            raise CommandError(str(exc), 2) from None
        return clock() + timedelta(seconds=seconds)
    return iso_time("--end", args.end)


def iso_time(flag: str, text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise CommandError(f"{flag}: expected an ISO 8601 time with a timezone, got {text!r}", 2)
    return at


def author(args: argparse.Namespace) -> str:
    if args.author:
        return str(args.author)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "opswatch-cli"


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def api_call(
    method: str, url: str, token: Secret | None, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token.reveal()}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            code, raw = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        reason = message_of(exc.read(), str(exc.reason))
        raise CommandError(f"the daemon answered {exc.code}: {reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        where = url.split("?", maxsplit=1)[0]
        raise CommandError(f"{where}: {getattr(exc, 'reason', exc)}") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise CommandError(f"{url}: answered {code} without JSON") from None
    return code, answer
