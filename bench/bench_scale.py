"""Scale: 1,000 HTTP targets on one local aiohttp server; cycle wall time and schedule jitter.

The real daemon (``App.start()``: APScheduler, one job per target, the SQLite store, the API)
runs in this process with ``--targets`` http checks against one aiohttp server in a child
process (so the server's CPU is not counted), every ``--interval``, for ``--cycles`` cycles.
Each run's start and end are recorded around ``App.run_check``. Reported:

* cycle wall: from the first check's start to the last check's end, per cycle (median, max);
* start spread: how long after the cycle's first check the last one started (the queue the
  scheduler and event loop work through when every job is due at once);
* period jitter: per job, (start of run k) - (start of run k-1) - interval, absolute, over all
  jobs and cycles (p50, p95, max): how regular each target's schedule is;
* check wall p50/p95 (start to end of one target's run), CPU per cycle and per target, RSS.

    .venv/bin/python -m bench.bench_scale [--targets 1000] [--interval 10s] [--cycles 6] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench._common import http_server, machine, percentile, quiet_logging, rss_mib
from opswatch.daemon.app import App
from opswatch.daemon.configure import AppConfig, load_config
from opswatch.model import Transition


class TimedApp(App):
    """The daemon, with every check run's start and end recorded (monotonic seconds)."""

    def __init__(self, config: AppConfig, expected_runs: int) -> None:
        super().__init__(config)
        self.starts: dict[str, list[float]] = {}
        self.ends: dict[str, list[float]] = {}
        self.errors = 0
        self._expected = expected_runs
        self._finished = 0
        self.done = asyncio.Event()
        self.untimed_run = self.cycle.run
        self.cycle.run = self.timed_run  # type: ignore[method-assign]

    async def timed_run(self, check: str) -> list[Transition]:
        self.starts.setdefault(check, []).append(time.perf_counter())
        try:
            return await self.untimed_run(check)
        finally:
            self.ends.setdefault(check, []).append(time.perf_counter())
            status = self.checks.statuses().get(check)
            if status is not None and status.error is not None:
                self.errors += 1
            self._finished += 1
            if self._finished >= self._expected:
                self.done.set()


async def run(targets: int, interval: str, cycles: int, port: int, history: str) -> None:
    quiet_logging()
    with tempfile.TemporaryDirectory() as tmp:
        items = ",".join(f"t{i:04d}=http://127.0.0.1:{port}/t/{i}" for i in range(targets))
        config = load_config(
            {
                **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
                "OPSWATCH_CHECKS": "http",
                "OPSWATCH_HTTP_TARGETS": items,
                "OPSWATCH_INTERVAL": interval,
                "OPSWATCH_STATE_PATH": str(Path(tmp) / "s.sqlite3"),
                "OPSWATCH_API_LISTEN": "127.0.0.1:0",
                "OPSWATCH_HISTORY": history,
            }
        )
        app = TimedApp(config, targets * cycles)
        cpu = time.process_time()
        await app.start()
        try:
            async with asyncio.timeout(config.settings.interval * (cycles + 2) + 30):
                await app.done.wait()
        finally:
            cpu = time.process_time() - cpu
            rss = rss_mib()
            await app.stop()
    _report(app, interval=config.settings.interval, cycles=cycles, cpu=cpu, rss=rss)


def _report(app: TimedApp, *, interval: float, cycles: int, cpu: float, rss: float) -> None:
    starts, ends = app.starts, app.ends
    targets = len(starts)
    walls, spreads = [], []
    for k in range(cycles):
        first = min(s[k] for s in starts.values())
        walls.append(max(e[k] for e in ends.values()) - first)
        spreads.append(max(s[k] for s in starts.values()) - first)
    jitter = [
        abs(s[k] - s[k - 1] - interval) * 1000 for s in starts.values() for k in range(1, cycles)
    ]
    check_ms = [
        (ends[c][k] - starts[c][k]) * 1000 for c in starts for k in range(min(cycles, len(ends[c])))
    ]
    print(f"bench_scale machine: {machine()}")
    print(
        f"bench_scale targets={targets} interval={interval:g}s cycles={cycles} "
        f"errors={app.errors} "
        f"cycle_wall_ms median={statistics.median(walls) * 1000:.0f} max={max(walls) * 1000:.0f} "
        f"start_spread_ms median={statistics.median(spreads) * 1000:.0f} "
        f"period_jitter_ms p50={percentile(jitter, 0.5):.1f} p95={percentile(jitter, 0.95):.1f} "
        f"max={max(jitter, default=float('nan')):.1f} "
        f"check_wall_ms p50={percentile(check_ms, 0.5):.1f} p95={percentile(check_ms, 0.95):.1f} "
        f"cpu_s_per_cycle={cpu / cycles:.3f} "
        f"cpu_us_per_target_run={cpu / cycles / targets * 1e6:.0f} "
        f"rss_mib={rss:.0f}"
    )


def _duration(text: str) -> str:
    return text if text[-1].isalpha() else f"{text}s"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", default="10s")
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="3 cycles at 10 s")
    parser.add_argument("--history", choices=("on", "off"), default="on", help="metric history")
    args = parser.parse_args(argv)
    interval, cycles = ("10s", 3) if args.quick else (_duration(args.interval), args.cycles)
    with http_server() as (port, _):
        asyncio.run(run(args.targets, interval, cycles, port, args.history))


if __name__ == "__main__":
    main()
