"""``opswatch test-rules --history``: how long a replay of the default host series takes.

A state file is filled through the real store with the host check's series (its real samples
of this machine, kept by the history's filter) every 30 s for ``--hours`` up to now, one
``record`` per run as a cycle writes them, with values that wander; then the command itself
runs in a child process (``opswatch test-rules --history <hours>h``, start-up and
configuration included), wall time and CPU of the child, median of ``--repeat`` runs.

    .venv/bin/python -m bench.bench_replay [--hours 24] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from bench._common import machine, quiet_logging
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import CycleRecord, Sample, utcnow

EVERY = 30


async def fill(path: Path, hours: int) -> int:
    """The state file at ``path`` with ``hours`` of the host series; the series' count."""
    app = App(load_config({"OPSWATCH_CHECKS": "host", "OPSWATCH_STATE_PATH": str(path)}))
    await app.open()
    try:
        collector = app.cycle.collectors["host"]
        await app.cycle.collect(collector)
        await asyncio.sleep(0.2)  # the CPU percentage needs a window
        samples, _ = await app.cycle.collect(collector)
        kept = app.cycle.history.keep(samples)
        rng = random.Random(7)
        start = utcnow() - timedelta(hours=hours)
        for run in range(hours * 3600 // EVERY):
            at = start + timedelta(seconds=EVERY * run)
            batch = tuple(
                Sample(s.check, s.metric, s.value * (0.9 + rng.random() * 0.2), at, s.labels)
                for s in kept
            )
            await app.store.record(CycleRecord((), (), (), (), batch), at)
    finally:
        await app.stop()
    return len(kept)


def replay_once(path: Path, hours: int) -> tuple[float, float, str]:
    """Wall seconds, child CPU seconds and the summary line of one replay."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")}
    environ["OPSWATCH_STATE_PATH"] = str(path)
    environ["OPSWATCH_CHECKS"] = "host"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "opswatch.daemon.cli", "test-rules", "--history", f"{hours}h"],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stdout.splitlines()[0]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24, help="hours of raw samples")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 h, one replay")
    args = parser.parse_args(argv)
    hours, repeat = (2, 1) if args.quick else (args.hours, args.repeat)
    quiet_logging()
    print(f"bench_replay machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "replay.sqlite3"
        began = time.monotonic()
        series = asyncio.run(fill(path, hours))
        filled = time.monotonic() - began
        runs = [replay_once(path, hours) for _ in range(repeat)]
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    print(
        f"bench_replay: hours={hours} series={series} samples={series * hours * 3600 // EVERY} "
        f"fill_s={filled:.1f} replay_wall_s={wall:.2f} replay_cpu_s={cpu:.2f} (median of "
        f"{repeat}; the command's start-up included)"
    )
    print(f"bench_replay report: {runs[-1][2]}")


if __name__ == "__main__":
    main()
