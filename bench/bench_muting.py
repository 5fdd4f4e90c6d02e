"""What the daemon's muters cost per muted question, with nothing silenced, paused or down.

The tracker and the notify pipeline ask ``App.mutes`` once per new or held alert and once per
transition (never when a run changes no alert). Timed: ``MuteStack.muted`` of the silences
alone, then of silences + pause + dependencies (``OPSWATCH_DEPENDS`` set, no check down), for
0, 10 and 100 active alerts in the tracker. Prints one line per alert count.

    .venv/bin/python -m bench.bench_muting [--questions 200000] [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from opswatch.alerts.dependencies import DependencyMuter, down_rules, parse_depends
from opswatch.alerts.muting import MuteStack
from opswatch.alerts.pause import PauseMuter
from opswatch.alerts.silences import SilenceMuter
from opswatch.alerts.tracker import AlertTracker
from opswatch.config import Env
from opswatch.model import Alert, AlertState, Severity, fingerprint
from opswatch.rules.builtin import builtin_rules

AT = datetime(2026, 1, 1, tzinfo=UTC)
CHECKS = ("http:api", "postgres:main")


def _alert(index: int) -> Alert:
    labels = {"mountpoint": f"/srv/{index}"}
    return Alert(
        fingerprint("disk_full", labels), "disk_full", "http:api", labels, AlertState.FIRING,
        Severity.WARNING, "s", 95.0, AT, AT,
    )  # fmt: skip


def _per_question(stack: MuteStack, alert: Alert, questions: int) -> float:
    started = time.perf_counter()
    for _ in range(questions):
        stack.muted(alert, AT)
    return (time.perf_counter() - started) / questions


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 questions")
    args = parser.parse_args(argv)
    if args.quick:
        args.questions = 20_000
    rules = down_rules(builtin_rules(Env({}), 30.0))
    parents = parse_depends("http:api -> postgres:main", CHECKS)
    for active in (0, 10, 100):
        tracker = AlertTracker({})
        tracker.load(_alert(i) for i in range(active))
        alone = MuteStack([SilenceMuter()])
        every = MuteStack(
            [SilenceMuter(), PauseMuter(), DependencyMuter(tracker, lambda: 30.0, parents, rules)]
        )
        asked = _alert(0)
        before = _per_question(alone, asked, args.questions)
        after = _per_question(every, asked, args.questions)
        print(
            f"{active:3d} active alerts: silences {before * 1e6:.2f} us, "
            f"+ pause + dependencies {after * 1e6:.2f} us per muted question"
        )


if __name__ == "__main__":
    main()
