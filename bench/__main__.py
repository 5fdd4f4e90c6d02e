"""``python -m bench`` (``make bench``): every benchmark in quick mode, one after another.

Each runs in its own process (so one's threads and caches do not touch another's numbers),
under a time limit; the whole run stays under five minutes. Full runs: see bench/README.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

#: (module, time limit in seconds), in order; a module that does not exist yet is skipped
BENCHMARKS = (
    ("bench.bench_rules", 60),
    ("bench.bench_cycle", 60),
    ("bench.bench_scale", 90),
    ("bench.bench_detection", 150),
    ("bench.bench_daemon_cost", 90),
    ("bench.bench_recovery", 60),
    ("bench.bench_outbox", 40),
    ("bench.bench_integrity", 60),
    ("bench.bench_muting", 30),
    ("bench.bench_windows", 30),
    ("bench.bench_tracker", 60),
    ("bench.bench_history", 60),
    ("bench.bench_status_page", 30),
    ("bench.bench_replay", 30),
)


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    failed = []
    started = time.monotonic()
    for module, limit in BENCHMARKS:
        if not (root / (module.replace(".", "/") + ".py")).exists():
            continue
        print(f"== {module} --quick", flush=True)
        began = time.monotonic()
        try:
            result = subprocess.run(
                [sys.executable, "-m", module, "--quick"], cwd=root, timeout=limit, check=False
            )
            code = result.returncode
        except subprocess.TimeoutExpired:
            print(f"{module}: no result within {limit} s", flush=True)
            code = -1
        if code != 0:
            failed.append(module)
        print(f"   ({time.monotonic() - began:.0f} s)", flush=True)
    print(f"== all done in {time.monotonic() - started:.0f} s; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
