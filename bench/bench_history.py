"""Metric history cost: its bytes in SQLite, what it adds to a cycle, what a forecast costs.

* ``bytes``: a state file filled through the real store, 40 series (the host check's count)
  at 30 s for ``--hours`` of raw samples (one ``record`` per run, as a cycle writes them) and
  ``--days`` of 5-minute roll-ups, with values that have fractions (integral ones store
  smaller); the bytes per raw sample and per roll-up row from ``dbstat`` (the B-tree pages
  of each table, interior pages and free space in them included), then per series per day
  and for the whole default retention (48 h raw, 90 days of roll-ups);
* ``cycle``: what the history adds to one run: ``AlertBook.commit`` with the kept samples
  and nothing else (without history such a run writes nothing), CPU (this process, SQLite's
  thread included) and bytes written (``wchar`` of /proc/self/io: the WAL appends), for the
  default checks (the ``host`` check's real samples) and for 1,000 ``http`` targets (each
  target's ``up`` and ``latency_seconds``, one commit per target as each check commits);
* ``forecast``: CPU per series of a forecast from 7 days of roll-ups, the fit alone and
  through ``Capacity.forecasts()`` (the store's read included).

    .venv/bin/python -m bench.bench_history [--hours 24] [--days 30] [--cycles 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench._common import machine, quiet_logging
from opswatch.capacity.forecast import ForecastSettings, exhaustion, trend_of
from opswatch.capacity.history import STEP, HistorySettings
from opswatch.capacity.resources import Capacity
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import CycleRecord, Rollup, Sample
from opswatch.state.sqlite import SQLiteStore

START = datetime(2026, 1, 1, tzinfo=UTC)
SERIES = 40
DAY = 86400


def _wchar() -> int:
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def _rollups(series: int, days: int, rng: random.Random) -> list[Rollup]:
    rows = []
    for i in range(days * DAY // STEP):
        low = 40 + rng.random() * 10
        rows.append(
            Rollup(
                series, int(START.timestamp()) + i * STEP, low, low + 3.21, low + 1.7, low + 2.9, 10
            )
        )
    return rows


async def measure_bytes(work: Path, hours: int, days: int) -> None:
    store = SQLiteStore(work / "bytes.sqlite3")
    await store.open()
    rng = random.Random(7)
    try:
        for run in range(hours * 3600 // 30):
            at = START + timedelta(seconds=30 * run)
            samples = tuple(
                Sample(
                    "host",
                    "host.disk_used_percent",
                    rng.random() * 100,
                    at,
                    {"mountpoint": f"/m{i}"},
                )
                for i in range(SERIES)
            )
            await store.record(CycleRecord((), (), (), (), samples), at)
        ids = [s.id for s in await store.history_series()]
        # as the job writes them: every series' roll-up of one bucket, bucket after bucket
        rows = {series: _rollups(series, days, rng) for series in ids}
        for bucket in range(days * DAY // STEP):
            await store.history_store_rollups([rows[s][bucket] for s in ids], 0)
    finally:
        await store.close()
    db = sqlite3.connect(work / "bytes.sqlite3")
    sizes = dict(
        db.execute(
            "SELECT name, SUM(pgsize) FROM dbstat WHERE name IN "
            "('metric_samples', 'metric_rollups', 'metric_series') GROUP BY name"
        ).fetchall()
    )
    (raw_rows,) = db.execute("SELECT count(*) FROM metric_samples").fetchone()
    (rollup_rows,) = db.execute("SELECT count(*) FROM metric_rollups").fetchone()
    db.close()
    raw = sizes["metric_samples"] / raw_rows
    rollup = sizes["metric_rollups"] / rollup_rows
    per_day = raw * DAY / 30 + rollup * DAY / STEP
    retention = raw * 2 * DAY / 30 + rollup * 90 * DAY / STEP
    print(
        f"bench_history bytes: raw_samples={raw_rows} bytes_per_sample={raw:.1f} "
        f"rollups={rollup_rows} bytes_per_rollup={rollup:.1f} "
        f"series_table_bytes_per_series={sizes['metric_series'] / SERIES:.0f}"
    )
    print(
        f"bench_history bytes per series: per_day_at_30s={per_day / 1024:.1f}KiB "
        f"(raw {raw * DAY / 30 / 1024:.1f} + rollups {rollup * DAY / STEP / 1024:.1f}) "
        f"whole_retention_48h_raw_90d_rollups={retention / 2**20:.2f}MiB"
    )


async def measure_cycle(work: Path, cycles: int) -> None:
    environ = {
        "OPSWATCH_CHECKS": "host",
        "OPSWATCH_STATE_PATH": str(work / "cycle.sqlite3"),
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
    }
    app = App(load_config(environ))
    await app.open()
    try:
        collector = app.cycle.collectors["host"]
        await app.cycle.collect(collector)
        await asyncio.sleep(0.2)  # the CPU percentage needs a window
        samples, _ = await app.cycle.collect(collector)
        kept = app.cycle.history.keep(samples)
        await _report_commits(app, "default (host)", [("host", kept)], cycles)
        targets = [
            (
                f"http:t{i:04d}",
                [
                    Sample(f"http:t{i:04d}", "http.up", 1.0, START, {"target": f"t{i:04d}"}),
                    Sample(
                        f"http:t{i:04d}",
                        "http.latency_seconds",
                        0.0123,
                        START,
                        {"target": f"t{i:04d}"},
                    ),
                ],
            )
            for i in range(1000)
        ]
        await _report_commits(app, "1000 http targets", targets, max(3, cycles // 4))
    finally:
        await app.stop()


async def _report_commits(
    app: App, name: str, checks: Sequence[tuple[str, Sequence[Sample]]], cycles: int
) -> None:
    cpu, written = [], []
    for cycle in range(cycles + 1):
        at = START + timedelta(seconds=30 * cycle)
        runs = [
            (check, [Sample(s.check, s.metric, s.value, at, s.labels) for s in samples])
            for check, samples in checks
        ]
        began, wrote = time.process_time(), _wchar()
        for check, samples in runs:
            await app.book.commit(check, [], at, samples=samples)
        if cycle:  # the first one creates the series
            cpu.append(time.process_time() - began)
            written.append(_wchar() - wrote)
    count = sum(len(s) for _, s in checks)
    print(
        f"bench_history cycle {name}: samples_per_cycle={count} commits={len(checks)} "
        f"cpu_ms_per_cycle={statistics.median(cpu) * 1000:.2f} "
        f"bytes_written_per_cycle={statistics.median(written):.0f} "
        f"cpu_s_per_hour_at_30s={statistics.median(cpu) * 120:.2f}"
    )


async def measure_forecast(work: Path) -> None:
    settings = ForecastSettings()
    rng = random.Random(7)
    rows = _rollups(1, 8, rng)
    now = rows[-1].at + STEP
    week = [r for r in rows if r.at >= now - 7 * DAY - STEP]
    began = time.process_time()
    repeat = 50
    for _ in range(repeat):
        trend = trend_of(week, settings, now)
        assert trend is not None
        exhaustion(trend, 100.0)
    fit_ms = (time.process_time() - began) / repeat * 1000
    store = SQLiteStore(work / "forecast.sqlite3")
    await store.open()
    try:
        at = START + timedelta(days=8)
        samples = tuple(
            Sample("host", "host.disk_used_percent", 50.0, at, {"mountpoint": f"/m{i}"})
            for i in range(SERIES)
        )
        await store.record(CycleRecord((), (), (), (), samples), at)
        for series in await store.history_series():
            await store.history_store_rollups(_rollups(series.id, 8, rng), 0)
        capacity = Capacity(store, HistorySettings(), settings, lambda: at)
        began = time.process_time()
        found = await capacity.forecasts()
        through_ms = (time.process_time() - began) / SERIES * 1000
    finally:
        await store.close()
    print(
        f"bench_history forecast: points_per_series={len(week)} fit_cpu_ms_per_series={fit_ms:.2f} "
        f"with_store_read_cpu_ms_per_series={through_ms:.2f} series={SERIES} forecasts={len(found)}"
    )


async def run(hours: int, days: int, cycles: int) -> None:
    quiet_logging()
    print(f"bench_history machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        await measure_bytes(work, hours, days)
        await measure_cycle(work, cycles)
        await measure_forecast(work)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24, help="hours of raw samples")
    parser.add_argument("--days", type=int, default=30, help="days of roll-ups")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="2 h raw, 3 days of roll-ups")
    args = parser.parse_args(argv)
    hours, days, cycles = (2, 3, 8) if args.quick else (args.hours, args.days, args.cycles)
    asyncio.run(run(hours, days, cycles))


if __name__ == "__main__":
    main()
