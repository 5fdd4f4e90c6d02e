"""``opswatch pause|resume [CHECK...]``: pause and resume on the running daemon, over its API.

Like ``opswatch silence``, it talks to the API at ``OPSWATCH_API_LISTEN`` (or ``--url``) with
the bearer ``OPSWATCH_API_TOKEN``. No check named: every check. Prints what is paused after
the change. Exit status: 0 done, 1 the daemon refused (its one-line reason on stderr) or did
not answer, 2 a bad argument or configuration.
"""

from __future__ import annotations

import argparse
from typing import Any

from opswatch.config import Secret
from opswatch.daemon.silence_cli import CommandError, api_call, author

COMMANDS = ("pause", "resume")


def add_parsers(sub: Any) -> None:
    """``opswatch pause ...`` and ``opswatch resume ...`` on the command's sub-parsers."""
    helps = {
        "pause": "stop notifications and recovery (collection goes on) for these checks or all",
        "resume": "resume notifications and recovery for these checks or all",
    }
    for command in COMMANDS:
        parser = sub.add_parser(command, help=helps[command])
        parser.add_argument("checks", nargs="*", metavar="CHECK", help="e.g. http:api (none: all)")
        parser.add_argument("--author", help="who (default: the login name)")
        parser.add_argument("--comment", help="why (kept in the audit)")
        parser.add_argument("--url", help="the API's base URL (default: OPSWATCH_API_LISTEN)")


def run(args: argparse.Namespace, url: str, token: Secret | None) -> tuple[int, str]:
    """The exit status and the text to print (on stdout when 0, else on stderr)."""
    body: dict[str, Any] = {"checks": list(args.checks), "author": author(args)}
    if args.comment:
        body["comment"] = args.comment
    try:
        _, answer = api_call("POST", f"{url}/api/v1/monitoring/{args.command}", token, body)
    except CommandError as exc:
        return exc.code, f"opswatch: {exc}"
    return 0, describe(answer.get("pauses", []))


def describe(pauses: list[dict[str, Any]]) -> str:
    """One line per pause in force, or ``nothing is paused``."""
    if not pauses:
        return "nothing is paused"
    lines = []
    for p in pauses:
        what = "every check" if p["check"] is None else p["check"]
        why = f": {p['comment']}" if p.get("comment") else ""
        lines.append(f"paused: {what} by {p['by']} since {p['since']}{why}")
    return "\n".join(lines)
