"""The ``opswatch`` command: ``run`` (default), ``check-config``, ``once``, ``test-rules``
(:mod:`opswatch.daemon.rule_tests`), ``status``, ``report`` (:mod:`opswatch.daemon.report_cli`),
``recover``, ``silence`` (:mod:`opswatch.daemon.silence_cli`), ``maintenance``
(:mod:`opswatch.daemon.maintenance_cli`), ``heartbeats`` (:mod:`opswatch.daemon.heartbeat_cli`)
and ``runbook`` (:mod:`opswatch.daemon.runbook_cli`); ``ack``, ``unack`` and ``resolve`` act
on the running daemon's alerts; ``pause`` and ``resume`` (:mod:`opswatch.daemon.pause_cli`) on
its notifications.

Every command but ``run`` writes its output to stdout and its logs to stderr. Exit status:
0 on success, 2 on a configuration error (one line on stderr naming the variable) or an
unusable state store (one line naming the file or masked URL and the problem), 1 on any
other failure (for ``status``: the daemon is unhealthy or unreachable).
The environment is the process's, with the file named by ``OPSWATCH_ENV_FILE`` over it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from opswatch import __version__
from opswatch.api.app import exposure
from opswatch.config import PREFIX, ConfigError, Env, Secret
from opswatch.daemon import (
    heartbeat_cli,
    maintenance_cli,
    operate,
    pause_cli,
    report_cli,
    rule_replay,
    runbook_cli,
    silence_cli,
)
from opswatch.daemon.app import App
from opswatch.daemon.capacity_cli import capacity
from opswatch.daemon.configure import AppConfig, load_config
from opswatch.daemon.once import run_once
from opswatch.daemon.recover import recover_once
from opswatch.daemon.rule_tests import RuleTestError, load_suite, run_suite
from opswatch.daemon.sdnotify import SystemdNotifier
from opswatch.daemon.status import api_url, status
from opswatch.envfile import EnvironmentSource
from opswatch.logging import configure_logging
from opswatch.model import Finding, RecoveryOutcome, Sample, utcnow
from opswatch.notifiers.probe import probe, probe_notification, select
from opswatch.ports import UnusableStateError
from opswatch.redact import scrub_output


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opswatch",
        description="Watch this host and its services; alert and recover. "
        "Configured by OPSWATCH_* environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"opswatch {__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the daemon in the foreground (default)")
    sub.add_parser(
        "check-config", help="validate the environment and print the effective configuration"
    )
    sub.add_parser("once", help="run every check once and print samples and findings")
    test_notify = sub.add_parser(
        "test-notify",
        help="send a test message through each notification channel (exit 1 if one fails)",
    )
    test_notify.add_argument(
        "channel", nargs="?", help="only this channel: a notifier name (slack) or channel id"
    )
    recover = sub.add_parser(
        "recover",
        help="run the recovery action bound to a rule once (same budget; exit 1 unless it "
        "succeeded or was a dry run)",
    )
    recover.add_argument("rule", help="the rule whose binding runs, e.g. http_down")
    recover.add_argument("--target", help="the target (for a per-target binding or a database)")
    recover.add_argument("--dry-run", action="store_true", help="print what would run; run nothing")
    test_rules = sub.add_parser(
        "test-rules",
        help="evaluate the configured rules on the input series of FILE and compare the "
        "alerts with the expected ones (exit 1 with a diff when they differ)",
    )
    source = test_rules.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="the test file (TOML: [[series]] and [[alert]])")
    source.add_argument(
        "--history",
        metavar="DURATION",
        help="replay the stored metric history of the last DURATION (24h, 7d) instead and "
        "print when each rule would have fired and resolved",
    )
    status_parser = sub.add_parser(
        "status", help="summarise the running daemon (exit 1 when unhealthy or unreachable)"
    )
    status_parser.add_argument("--url", help="the API's base URL (default: OPSWATCH_API_LISTEN)")
    capacity_parser = sub.add_parser(
        "capacity", help="the running daemon's forecasts: when each resource reaches its limit"
    )
    capacity_parser.add_argument("--url", help="the API's base URL (default: OPSWATCH_API_LISTEN)")
    report_parser = sub.add_parser(
        "report", help="the health report of the last 24 h (or --since 7d: the weekly review)"
    )
    report_parser.add_argument(
        report_cli.SINCE_OPTION, default="24h", help="the period: 24h (default), 7d, ..."
    )
    silence_cli.add_parser(sub)
    heartbeat_cli.add_parser(sub)
    pause_cli.add_parsers(sub)
    maintenance_cli.add_parser(sub)
    runbook_cli.add_parser(sub)
    _operator_parsers(sub)
    return parser


def _operator_parsers(sub: Any) -> None:
    """``ack``, ``unack``, ``resolve``: sent to the running daemon (OPSWATCH_API_TOKEN)."""
    ack = sub.add_parser("ack", help="acknowledge an active alert (no reminders while acked)")
    unack = sub.add_parser("unack", help="remove an alert's acknowledgement")
    resolve = sub.add_parser("resolve", help="resolve an active alert by hand (notified)")
    for action in (ack, unack, resolve):
        action.add_argument("fingerprint", help="the alert's fingerprint (GET /api/v1/alerts)")
        action.add_argument("--author", help="who acts (default: $USER)")
        action.add_argument("--comment", help="why")
        action.add_argument("--url", help="the API's base URL (default: OPSWATCH_API_LISTEN)")
    ack.add_argument("--duration", help="the ack ends after this long (30m, 2h, 1d)")
    ack.add_argument("--sticky", action="store_true", help="keep the ack when the severity rises")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    if command == "status" and args.url:  # the daemon's configuration is not needed then
        try:
            env = Env(os.environ)
            token = env.secret(f"{PREFIX}API_READ_TOKEN") or env.secret(f"{PREFIX}API_TOKEN")
        except ConfigError as exc:
            print(f"opswatch: configuration error: {exc}", file=sys.stderr)
            return 2
        return _status(args.url.rstrip("/"), token)
    source = EnvironmentSource(os.environ)
    try:
        config = load_config(source.load())
    except ConfigError as exc:
        print(f"opswatch: configuration error: {exc}", file=sys.stderr)
        return 2
    scrub_output()  # every line printed from here on is scrubbed of the configured secrets
    try:
        if command == "run":
            return _run(config, source)
        # every other command's output is its stdout: its logs (a collector's, a notifier's, an
        # unknown variable's) go to stderr
        configure_logging(config.settings.log_format, config.settings.log_level, sys.stderr)
        if command == "check-config":
            described = {**config.describe(), "api_access": exposure(config.access())}
            print(json.dumps(described, indent=2))
            return 0
        if command == "status":
            return _status(
                api_url(config.settings.api_listen), config.api_read_token or config.api_token
            )
        if command == "report":
            try:
                since = report_cli.since_seconds(args.since)
            except ConfigError as exc:
                print(f"opswatch: {exc}", file=sys.stderr)
                return 2
            code, text = asyncio.run(report_cli.report(config, since))
            print(text)
            return code
        client = _api_client(command, args, config)
        if client is not None:
            return client
        if command == "test-rules" and args.history:
            return asyncio.run(_replay(config, args.history))
        if command == "runbook":
            code, text = asyncio.run(runbook_cli.run(args, config))
            print(text, file=sys.stdout if code == 0 else sys.stderr)
            return code
        if command == "test-rules":
            return _test_rules(config, args.file)
        if command == "test-notify":
            return _test_notify(config, args.channel)
        if command == "recover":
            return _recover(config, args.rule, args.target, dry_run=args.dry_run)
        if command in ("ack", "unack", "resolve"):
            return _operate(config, args)
        samples, findings = asyncio.run(run_once(config))  # "once", the last command left
        print(_table(samples, findings))
        return 0
    except UnusableStateError as exc:  # corrupt, foreign, newer or read-only: nothing started
        print(f"opswatch: {exc}", file=sys.stderr)
        return 2


def _api_client(command: str, args: argparse.Namespace, config: AppConfig) -> int | None:
    """The commands that talk to the running daemon's API (``None``: not one of them)."""
    url = (getattr(args, "url", None) or api_url(config.settings.api_listen)).rstrip("/")
    families = {"silence": silence_cli.run, "maintenance": maintenance_cli.run}
    if command == "capacity":
        code, text = capacity(url, config.api_read_token or config.api_token)
    elif command in families or command in pause_cli.COMMANDS:
        code, text = families.get(command, pause_cli.run)(args, url, config.api_token)
    elif command == "heartbeats":
        code, text = heartbeat_cli.run(args, url, config.api_token)
        print(text, file=sys.stderr if code == 1 else sys.stdout)  # 3: one late, on stdout
        return code
    else:
        return None
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _run(config: AppConfig, source: EnvironmentSource) -> int:
    configure_logging(config.settings.log_format, config.settings.log_level)
    app = App(config, systemd=SystemdNotifier.from_env(os.environ), environ=source.load)
    return asyncio.run(app.serve())


def _recover(config: AppConfig, rule: str, target: str | None, *, dry_run: bool) -> int:
    """Print ``<outcome>: <detail>`` (logs go to stderr)."""
    if rule not in {r.name for r in config.rules}:
        print(f"opswatch: no rule named {rule!r}", file=sys.stderr)
        return 2
    result = asyncio.run(recover_once(config, rule, target, dry_run=dry_run))
    if result is None:
        where = f" (target {target})" if target else ""
        print(f"opswatch: no recovery action is bound to {rule}{where}", file=sys.stderr)
        return 2
    print(f"{result.outcome.value}: {result.detail}")
    print(
        f"  action {result.action} on {result.key}, {result.attempts} attempt(s), "
        f"{result.duration_s:.1f} s"
    )
    ok = result.outcome in (RecoveryOutcome.SUCCEEDED, RecoveryOutcome.SKIPPED_DRY_RUN)
    return 0 if ok else 1


def _operate(config: AppConfig, args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") if args.url else api_url(config.settings.api_listen)
    body: dict[str, Any] = {
        "author": args.author or os.environ.get("USER") or "cli",
        "comment": args.comment,
    }
    method, path = "POST", f"{args.fingerprint}/{args.command}"
    if args.command == "ack":
        body.update(duration=args.duration, sticky=args.sticky)
    elif args.command == "unack":
        method, path = "DELETE", f"{args.fingerprint}/ack"
    reply = operate.call(url, config.api_token, method, path, body)
    print(reply.text, file=sys.stderr if reply.failed else sys.stdout)
    return reply.exit_status


def _status(url: str, token: Secret | None) -> int:
    report = status(url, token=token)
    print(report.text, file=sys.stderr if report.unreachable else sys.stdout)
    return report.exit_status


def _test_rules(config: AppConfig, path: str) -> int:
    """``ok: N expectations`` (exit 0), the differences (exit 1) or the file's error (2)."""
    try:
        suite = load_suite(path, config.settings.interval)
    except RuleTestError as exc:
        print(f"opswatch: test file error: {exc}", file=sys.stderr)
        return 2
    differences = run_suite(config.rules, suite)
    if differences:
        print("\n".join(differences))
        return 1
    print(f"ok: {len(suite.expectations)} expectations met ({len(suite.series)} series)")
    return 0


async def _replay(config: AppConfig, text: str) -> int:
    """The replay's report (exit 0), or one line: a bad duration (2), nothing to replay (1)."""
    try:
        period = Env({"--history": text}).duration("--history", 0.0, minimum=60)
    except ConfigError as exc:
        print(f"opswatch: {exc}", file=sys.stderr)
        return 2
    try:
        found = await rule_replay.replay_stored(config, period, utcnow())
    except rule_replay.NothingToReplayError as exc:
        print(f"opswatch: {exc}", file=sys.stderr)
        return 1
    if (short := rule_replay.shortfall(found, period)) is not None:
        print(f"opswatch: {short}", file=sys.stderr)
    print(rule_replay.report(found, config.rules))
    return 0


def _test_notify(config: AppConfig, which: str | None) -> int:
    """Send a test message through each channel (or ``which``) directly, not via the outbox;
    print ``<channel>  ok`` or ``<channel>  error: <masked error>`` per channel."""
    chosen = select(config.notifiers, which)
    if not chosen:
        configured = ", ".join(n.channel for n in config.notifiers) or "none"
        wanted = f"no channel {which!r}" if which else "no notification channel"
        print(
            f"opswatch: configuration error: {wanted} (configured: {configured})", file=sys.stderr
        )
        return 2
    notification = probe_notification(utcnow(), config.notify.delivery.render)
    results = asyncio.run(probe(chosen, notification))
    width = max(len(channel) for channel, _ in results)
    for channel, error in results:
        print(f"{channel.ljust(width)}  {'ok' if error is None else 'error: ' + error}")
    return 1 if any(error is not None for _, error in results) else 0


def _table(samples: Sequence[Sample], findings: Sequence[Finding]) -> str:
    rows = [("CHECK", "METRIC", "LABELS", "VALUE")]
    for s in sorted(samples, key=lambda s: (s.check, s.metric, sorted(s.labels.items()))):
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        rows.append((s.check, s.metric, labels, f"{s.value:.6g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.append("")
    if not findings:
        lines.append("FINDINGS: none")
    else:
        lines.append("FINDINGS:")
        for f in sorted(findings, key=lambda f: (-f.severity.rank, f.rule)):
            lines.append(f"  {f.severity.value.upper():<9} {f.rule:<20} {f.summary}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
