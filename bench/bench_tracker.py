"""What flapping detection and the severity ladder cost in the cycle: ``AlertTracker.update``.

One check with ``alerts`` firing series, run after run: steady (every series keeps firing),
then with a tenth of them flapping (1-0-1-0), each timed without a detector, with the
default detector, and with the detector and a ladder. The evaluations are built before
timing; only ``update`` is timed. Prints one line per case: median microseconds per run.

    .venv/bin/python -m bench.bench_tracker [--alerts 500] [--runs 400] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from opswatch.alerts.flapping import FlapDetector, FlapSettings
from opswatch.alerts.ladder import LADDER_VAR, Ladder, parse_steps
from opswatch.alerts.tracker import AlertTracker
from opswatch.model import Evaluation, Finding, Severity, fingerprint

RULE = "disk_full"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def findings(alerts: int) -> list[Finding]:
    out = []
    for n in range(alerts):
        labels = {"mountpoint": f"/srv/{n}"}
        fp = fingerprint(RULE, labels)
        out.append(Finding(RULE, "host", fp, Severity.WARNING, "full", 87.0, labels))
    return out


def evaluations(alerts: int, runs: int, flapping: int) -> list[Evaluation]:
    """``runs`` evaluations; the first ``flapping`` series are found every other run."""
    every = findings(alerts)
    observed = {f.fingerprint: f.value for f in every}
    rules = frozenset({RULE})
    return [
        Evaluation("host", tuple(every[flapping * (run % 2) :]), rules, observed)
        for run in range(runs)
    ]


def tracker(case: str) -> AlertTracker:
    repeat = {Severity.WARNING: 4 * 3600.0}
    if case == "off":
        return AlertTracker(repeat)
    detector = FlapDetector(FlapSettings())
    if case == "flapping":
        return AlertTracker(repeat, flapping=detector)
    ladder = Ladder(parse_steps(LADDER_VAR, "warning>critical:30m, critical>emergency:2h"))
    return AlertTracker(repeat, flapping=detector, ladder=ladder)


def timed(case: str, runs: list[Evaluation]) -> float:
    """Median microseconds per ``update`` (changes taken after each, as the commit path
    does); the median leaves out the runs another process interrupted."""
    subject = tracker(case)
    took = []
    for index, evaluation in enumerate(runs):
        now = T0 + timedelta(seconds=30 * index)
        started = time.perf_counter()
        subject.update(evaluation, now)
        took.append(time.perf_counter() - started)
        subject.take()
    return statistics.median(took) * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=500)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="100 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 100
    for label, flapping in (("steady", 0), ("a tenth flapping", args.alerts // 10)):
        runs = evaluations(args.alerts, args.runs, flapping)
        figures = ", ".join(
            f"{case} {timed(case, runs):.0f} us" for case in ("off", "flapping", "ladder")
        )
        print(f"tracker update, {args.alerts} alerts, {label}: {figures} per run")


if __name__ == "__main__":
    main()
