"""``opswatch runbook RULE`` (Markdown on stdout) and ``opswatch runbook --export DIR`` (one
``<rule>.md`` per enabled rule, for a wiki).

It reads the configuration and the state store itself, as ``opswatch recover`` does, so it
works without a running daemon (a wiki export from a cron job, a replica's shared PostgreSQL
state); the running daemon serves the same runbooks at ``/api/v1/runbooks``.
Exit status: 0 done, 1 the directory could not be written, 2 a bad argument or no such rule.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from opswatch.daemon.app import App
from opswatch.daemon.configure import AppConfig
from opswatch.model import Clock, utcnow
from opswatch.runbooks.build import Runbook
from opswatch.runbooks.render import markdown


def add_parser(sub: Any) -> None:
    runbook = sub.add_parser(
        "runbook",
        help="print a rule's runbook (Markdown) from the configuration and the state store, "
        "or write every rule's with --export DIR",
    )
    runbook.add_argument("rule", nargs="?", help="the rule, e.g. disk_full")
    runbook.add_argument("--export", metavar="DIR", help="write DIR/<rule>.md for every rule")


async def run(
    args: argparse.Namespace, config: AppConfig, clock: Clock = utcnow
) -> tuple[int, str]:
    """The exit status and the text to print (on stdout when 0, else on stderr)."""
    if (args.rule is None) == (args.export is None):
        return 2, "opswatch runbook: give a RULE or --export DIR (one of the two)"
    if args.rule is not None and args.rule not in {r.name for r in config.rules}:
        return (
            2,
            f"opswatch runbook: no enabled rule {args.rule!r} (opswatch check-config lists them)",
        )
    app = App(config, clock=clock)
    await app.store.open()
    try:
        if args.rule is not None:
            one = await app.runbooks.one(args.rule)
            assert one is not None  # the rule is enabled
            return 0, markdown(one).rstrip("\n")
        every = await app.runbooks.every()
    finally:
        await app.store.close()
    return _export(Path(args.export), every)


def _export(directory: Path, runbooks: list[Runbook]) -> tuple[int, str]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for runbook in runbooks:
            (directory / f"{runbook.rule}.md").write_text(markdown(runbook), encoding="utf-8")
    except OSError as exc:
        return 1, f"opswatch runbook: cannot write {str(directory)!r}: {exc.strerror}"
    return 0, f"wrote {len(runbooks)} runbooks to {directory}"
