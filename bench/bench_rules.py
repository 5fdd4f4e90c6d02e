"""Rule evaluation throughput: the built-in rules over host-like runs.

Each run is ``series`` label sets times 20 host metrics (half of them selected by a rule),
with values drawn so that series debounce, fire, change severity and resolve. The samples are
built before timing; only ``RuleEvaluator.evaluate`` is timed. Prints one line.

    .venv/bin/python -m bench.bench_rules [--series 500] [--runs 50] [--quick]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from opswatch.config import Env
from opswatch.model import Sample
from opswatch.rules.builtin import builtin_rules
from opswatch.rules.evaluator import RuleEvaluator

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
BATCHES = 8  # distinct value sets, cycled through the timed runs


def build_runs(series: int, seed: int = 1) -> list[list[Sample]]:
    rng = random.Random(seed)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    label_sets = [
        {"device": f"/dev/vd{i}", "mountpoint": f"/srv/{i}", "fstype": "ext4"}
        for i in range(series)
    ]
    runs = []
    for _ in range(BATCHES):
        run = []
        for labels in label_sets:
            for metric, (low, high) in METRICS.items():
                value = float(rng.random() < 0.5) if metric == "http.up" else rng.uniform(low, high)
                run.append(Sample("host", metric, value, at, labels))
        runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="20 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 20

    runs = build_runs(args.series)
    evaluator = RuleEvaluator(builtin_rules(Env({}), 30.0))
    for run in runs:  # warm-up: fill the state and fingerprint caches
        evaluator.evaluate("host", run)

    findings = 0
    started = time.perf_counter()
    for index in range(args.runs):
        findings += len(evaluator.evaluate("host", runs[index % BATCHES]).findings)
    elapsed = time.perf_counter() - started

    samples = len(runs[0])
    print(
        f"bench_rules: {samples / (elapsed / args.runs):,.0f} samples/s "
        f"({samples} samples x {args.runs} runs, {args.series} series, "
        f"{len(evaluator.rule_names())} rules, {elapsed / args.runs * 1000:.2f} ms/run, "
        f"{findings / args.runs:.0f} findings/run)"
    )


if __name__ == "__main__":
    main()
