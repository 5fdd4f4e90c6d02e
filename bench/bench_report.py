"""Reports' cost: building a daily report and a weekly review, and the job's idle tick.

A state file is filled through the real store: ``--checks`` checks with an ``up`` series at
30 s for 24 h of raw samples and 7 days of 5-minute roll-ups, ``--alerts`` alerts fired and
resolved in the day, and as many recovery runs. Then ``build_report`` (the store's reads
included) is timed for the day and for the week (CPU of this process, SQLite's thread
included, and wall), median of ``--rounds``; and the job's tick when nothing is due.

    .venv/bin/python -m bench.bench_report [--checks 20] [--alerts 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import timeit
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench._common import machine, quiet_logging
from opswatch.capacity.history import STEP
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import (
    Alert,
    AlertState,
    CycleRecord,
    RecoveryOutcome,
    RecoveryResult,
    Rollup,
    Sample,
    Severity,
    Transition,
    TransitionKind,
)
from opswatch.reports.build import build_report

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
DAY = 86400


def _episode(n: int, alerts: int, check: str) -> list[Transition]:
    start = NOW - timedelta(seconds=DAY * (n + 1) / (alerts + 1))
    alert = Alert(
        f"{n:016x}", "http_down", check, {"target": check}, AlertState.FIRING,
        Severity.CRITICAL, "down", 0.0, start, start,
    )  # fmt: skip
    end = start + timedelta(minutes=3)
    gone = replace(alert, state=AlertState.RESOLVED, resolved_at=end)
    return [
        Transition(alert, TransitionKind.FIRED, start),
        Transition(gone, TransitionKind.RESOLVED, end),
    ]


async def _seed(app: App, checks: int, alerts: int) -> None:
    names = [f"http:t{i}" for i in range(checks)]
    end = int(NOW.timestamp())
    for at in range(end - DAY, end, 30):  # one record per run, as the cycles write them
        moment = datetime.fromtimestamp(at, UTC)
        samples = [Sample(name, "http.up", 1.0, moment) for name in names]
        await app.store.record(CycleRecord((), (), (), (), samples), moment)
    series = await app.store.history_series()
    rollups = [
        Rollup(s.id, at, 1.0, 1.0, 1.0, 1.0, 10)
        for s in series
        for at in range(end - 7 * DAY, end, STEP)
    ]
    await app.store.history_store_rollups(rollups, end)
    for n in range(alerts):
        ran = NOW - timedelta(seconds=DAY * (n + 1) / (alerts + 1))
        for t in _episode(n, alerts, names[n % checks]):
            await app.store.record(CycleRecord([], [], [t], []), t.at)
        await app.store.recovery_record(
            RecoveryResult(
                "systemd", f"{n:016x}", RecoveryOutcome.SUCCEEDED, 1, 2.0, "restarted",
                ran, "http_down", names[n % checks],
            )
        )  # fmt: skip


async def _time(app: App, kind: str, days: int, rounds: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        await build_report(app.reports.sources, kind, NOW - timedelta(days=days), NOW)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


async def main(checks: int, alerts: int, rounds: int) -> None:
    quiet_logging()
    targets = ",".join(f"t{i}=http://127.0.0.1:9/" for i in range(checks))
    with tempfile.TemporaryDirectory() as tmp:
        environ = {
            "OPSWATCH_STATE_PATH": str(Path(tmp) / "s.sqlite3"),
            "OPSWATCH_HTTP_TARGETS": targets,
            "OPSWATCH_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/services/x",
        }
        app = App(load_config(environ, lambda: NOW), clock=lambda: NOW)
        await app.store.open()
        try:
            await _seed(app, checks, alerts)
            print(machine())
            print(f"{checks} checks with up at 30 s, {alerts} alerts and recoveries in the day")
            for kind, days in (("daily", 1), ("weekly", 7)):
                cpu, wall = await _time(app, kind, days, rounds)
                print(f"{kind} report: {cpu * 1000:.1f} ms CPU, {wall * 1000:.1f} ms wall")
            app.reports.due()
            tick = timeit.timeit(app.reports.due, number=10000) / 10000
            print(f"idle tick (nothing due): {tick * 1e6:.1f} us CPU, once a minute")
        finally:
            await app.store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=20)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.checks, args.alerts, args.rounds))
