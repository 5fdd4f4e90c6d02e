"""Rule evaluation throughput: the built-in rules over host-like runs.

Each run is ``series`` label sets times 20 host metrics (half of them selected by a rule),
with values drawn so that series debounce, fire, change severity and resolve; runs are 30 s
apart. The second measurement joins the built-ins with N user rules (``--user-rules``:
label matchers of every kind, a rate, an increase, an absence, aggregations and a ratio
among them, see :func:`user_rules`). The samples are built before timing; only
``RuleEvaluator.evaluate`` is timed (the process's CPU time). Prints one line for the
built-ins alone and one with the user rules.

    .venv/bin/python -m bench.bench_rules [--series 500] [--runs 50] [--user-rules 100] [--quick]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from opswatch.config import Env
from opswatch.model import Sample
from opswatch.rules.base import AnyRule
from opswatch.rules.builtin import builtin_rules
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.rules.expr import parse
from opswatch.rules.query import ExprRule

# metric -> (low, high) of its random values; the first ones are what the builtin rules select
METRICS = {
    "host.cpu_percent": (40.0, 100.0),
    "host.memory_percent": (60.0, 100.0),
    "host.swap_percent": (0.0, 100.0),
    "host.load5_per_core": (0.0, 5.0),
    "host.disk_used_percent": (70.0, 100.0),
    "host.inodes_used_percent": (50.0, 100.0),
    "http.up": (0.0, 1.0),
    "http.latency_seconds": (0.0, 8.0),
    "http.tls_days_left": (0.0, 30.0),
    "host.load_per_core": (0.0, 5.0),
    "host.up": (1.0, 1.0),
    "host.net_bytes_recv_per_s": (0.0, 1e6),
    "host.net_bytes_sent_per_s": (0.0, 1e6),
    "host.net_errors_per_s": (0.0, 1.0),
    "host.tcp_connections": (0.0, 500.0),
    "process.cpu_percent": (0.0, 100.0),
    "process.rss_bytes": (0.0, 1e9),
    "process.open_files": (0.0, 1000.0),
    "process.threads": (1.0, 100.0),
    "process.up": (1.0, 1.0),
}
BATCHES = 8  # distinct value sets, cycled through the runs
INTERVAL = 30.0
#: the special user rules; the rest are matcher rules (see :func:`user_rules`)
SPECIAL = (
    "rate(host.net_bytes_recv_per_s[5m]) > 20000",
    "increase(host.net_errors_per_s[10m]) > 8",
    'absent(process.up{mountpoint=~"/srv/1.*"}) for 10m',
    "max by (fstype) (host.cpu_percent) > 99.9",
    "avg by (fstype) (host.memory_percent) > 85 for 5m",
    "sum by (fstype) (process.threads) > 30000",
    "host.tcp_connections / host.load_per_core > 5000",
)
#: matcher rules cycle through these metrics and matcher kinds
MATCHED = (
    "host.cpu_percent",
    "host.disk_used_percent",
    "process.open_files",
    "http.latency_seconds",
)


def user_rules(count: int) -> list[AnyRule]:
    """``count`` user rules: :data:`SPECIAL`, then rules with ``=``, ``!=``, ``=~`` and ``!~``
    matchers on the ``mountpoint`` of a few series each, spread over :data:`MATCHED`."""
    texts = list(SPECIAL[:count])
    for index in range(count - len(texts)):
        metric = MATCHED[index % len(MATCHED)]
        matcher = (
            f'mountpoint="/srv/{index}"',
            f'mountpoint=~"/srv/{index}[0-9]", fstype!="xfs"',
            f'mountpoint=~"/srv/{index % 50}.", device!~"/dev/vd[0-4].*"',
        )[index % 3]
        texts.append(f"{metric}{{{matcher}}} > 90 for 2m clear 85 labels team=t{index % 7}")
    return [ExprRule(f"user_{index}", parse(text)) for index, text in enumerate(texts)]


def build_runs(series: int, count: int, seed: int = 1) -> list[list[Sample]]:
    """``count`` runs :data:`INTERVAL` apart, their values cycling through :data:`BATCHES`
    draws (the series of the absence rule report in half of the runs)."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    label_sets = [
        {"device": f"/dev/vd{i}", "mountpoint": f"/srv/{i}", "fstype": ("ext4", "xfs")[i % 2]}
        for i in range(series)
    ]
    batches = []
    for _ in range(BATCHES):
        batch = []
        for labels in label_sets:
            for metric, (low, high) in METRICS.items():
                value = float(rng.random() < 0.5) if metric == "http.up" else rng.uniform(low, high)
                batch.append((metric, value, labels))
        batches.append(batch)
    runs = []
    for index in range(count):
        at = start + timedelta(seconds=index * INTERVAL)
        runs.append(
            [
                Sample("host", metric, value, at, labels)
                for metric, value, labels in batches[index % BATCHES]
                if metric != "process.up" or index % 2 == 0
            ]
        )
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--user-rules",
        type=int,
        default=100,
        help="a second measurement with this many user rules beside the built-ins (0: none)",
    )
    parser.add_argument("--quick", action="store_true", help="20 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 20

    runs = build_runs(args.series, BATCHES + args.runs)
    builtins: list[AnyRule] = list(builtin_rules(Env({}), INTERVAL))
    measure(runs, builtins, args.series)
    if args.user_rules:
        measure(runs, [*builtins, *user_rules(args.user_rules)], args.series)


def measure(runs: list[list[Sample]], rules: list[AnyRule], series: int) -> None:
    """Warm up on the first :data:`BATCHES` runs, time the rest, print one line."""
    evaluator = RuleEvaluator(rules)
    for run in runs[:BATCHES]:  # warm-up: fill the state and fingerprint caches
        evaluator.evaluate("host", run, run[0].at)
    timed = runs[BATCHES:]
    findings = 0
    started = time.process_time()
    for run in timed:
        findings += len(evaluator.evaluate("host", run, run[0].at).findings)
    elapsed = time.process_time() - started
    samples = sum(len(run) for run in timed) / len(timed)
    per_run = elapsed / len(timed)
    print(
        f"bench_rules: {samples / per_run:,.0f} samples/s "
        f"({samples:.0f} samples x {len(timed)} runs, {series} series, "
        f"{len(rules)} rules, {per_run * 1000:.2f} ms/run, "
        f"{findings / len(timed):.0f} findings/run)"
    )


if __name__ == "__main__":
    main()
