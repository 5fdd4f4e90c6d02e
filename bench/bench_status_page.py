"""The status page's cost: CPU and wall time of ``GET /`` and its size.

The real ``App`` (SQLite state) with the ``host`` check and ``--checks`` ``http`` targets
(their ``up`` series seeded with ``--days`` of 5-minute roll-ups, and a day of the host's
key metrics); each check has run once. Measured: the first view (it reads every day of
every listed check's ``up``: :class:`opswatch.api.pages.PageCache` is empty), then the
steady views a browser left open makes every 30 s (only today's roll-ups read), CPU of this
process (the server and SQLite's thread) per view, and the page's bytes.

    .venv/bin/python -m bench.bench_status_page [--checks 100] [--days 90] [--views 10] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench._common import free_port, machine, quiet_logging
from opswatch.capacity.history import STEP
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import Rollup

START = datetime(2026, 1, 1, 12, tzinfo=UTC)
DAY = 86400


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


async def _seed(app: App, days: int) -> None:
    end = int(START.timestamp()) - int(START.timestamp()) % STEP
    buckets = days * DAY // STEP
    for series in await app.store.history_series():
        if series.metric == "http.up":
            count = buckets
        elif series.check == "host" and series.metric in {"host.cpu_percent", "host.up"}:
            count = DAY // STEP
        else:
            continue
        start = end - count * STEP
        rows = [Rollup(series.id, start + i * STEP, 1.0, 1.0, 1.0, 1.0, 10) for i in range(count)]
        await app.store.history_store_rollups(rows, end)


async def _view(url: str) -> tuple[float, float, int]:
    cpu, wall = time.process_time(), time.perf_counter()
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        body = await response.read()
    return (time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000, len(body)


async def run(checks: int, days: int, views: int) -> None:
    dead = f"127.0.0.1:{free_port()}"
    targets = ",".join(f"t{i:04d}=http://{dead}/" for i in range(checks))
    with tempfile.TemporaryDirectory() as tmp:
        clock = _Clock()
        environ = {
            "OPSWATCH_CHECKS": "host,http",
            "OPSWATCH_HTTP_TARGETS": targets,
            "OPSWATCH_HTTP_TIMEOUT": "1s",
            "OPSWATCH_STATE_PATH": str(Path(tmp) / "s.sqlite3"),
            "OPSWATCH_API_LISTEN": "127.0.0.1:0",
            "OPSWATCH_INTERVAL": "1h",
        }
        app = App(load_config(environ, clock), clock=clock)
        await app.start()
        try:
            for check in ["host", *(f"http:t{i:04d}" for i in range(checks))]:
                await app.cycle.run(check)
            began = time.perf_counter()
            await _seed(app, days)
            seeded = time.perf_counter() - began
            url = f"http://127.0.0.1:{app.api.port}/"
            first = await _view(url)
            steady = [await _view(url) for _ in range(views)]
        finally:
            await app.stop()
    print(f"# {machine()}")
    print(f"checks={checks} + host, days={days} (seeded in {seeded:.1f} s)")
    print(f"first view: cpu_ms={first[0]:.1f} wall_ms={first[1]:.1f} bytes={first[2]}")
    print(
        f"steady view (median of {views}): "
        f"cpu_ms={statistics.median(v[0] for v in steady):.1f} "
        f"wall_ms={statistics.median(v[1] for v in steady):.1f} bytes={steady[-1][2]}"
    )
    per_hour = statistics.median(v[0] for v in steady) * 120 / 1000
    print(f"a page left open (a view every 30 s): {per_hour:.2f} CPU-s per hour")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="10 checks, 30 days, 5 views")
    args = parser.parse_args(argv)
    if args.quick:
        args.checks, args.days, args.views = 10, 30, 5
    quiet_logging()
    asyncio.run(run(args.checks, args.days, args.views))


if __name__ == "__main__":
    main()
