"""Cycle cost: CPU ms and wall ms of one run of each check, and of a whole cycle.

Two configurations, each through the daemon's real ``App.run_check`` (collect, rules, alert
state, the SQLite write, the JSON log line rendered to /dev/null):

* ``default``: what ``make run`` watches (the ``host`` check);
* ``all``: every collector against local peers: ``http``, ``prometheus`` and ``tcp`` against
  an aiohttp server in a child process (``process`` watches its pidfile), ``file`` over a glob,
  ``command`` running ``/bin/true``, ``postgres`` (127.0.0.1:5432, db ``test``), ``redis``
  (6379) and ``rabbitmq`` (management API on 15672, guest/guest). An absent service is left
  out and named in the output.

CPU is this process's ``time.process_time()`` (all threads: psutil and SQLite work runs in
worker threads), wall is ``time.perf_counter()``. Checks run one after another after two
warm-up rounds; rounds are ``--pause`` apart (the host check's CPU reading needs a 100 ms
window). A cycle's CPU is the sum over its checks; its wall time is measured separately with
every check started at once, as the scheduler does. Prints one line per check and per cycle.

    .venv/bin/python -m bench.bench_cycle [--rounds 30] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench._common import http_server, machine, port_open, quiet_logging
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config


@dataclass
class Costs:
    cpu_ms: list[float]
    wall_ms: list[float]


def _all_environ(port: int, pidfile: Path, files: Path) -> tuple[dict[str, str], list[str]]:
    """The ``all`` configuration, minus services that do not answer here (named in the list)."""
    checks = ["host", "http", "prometheus", "tcp", "process", "file", "command", "heartbeat"]
    environ = {
        "OPSWATCH_HTTP_TARGETS": f"web=http://127.0.0.1:{port}/health",
        "OPSWATCH_PROMETHEUS_TARGETS": f"app=http://127.0.0.1:{port}/metrics",
        "OPSWATCH_PROMETHEUS_APP_ERROR_COUNTER": "http_requests_total",
        "OPSWATCH_PROMETHEUS_APP_LATENCY_HISTOGRAM": "http_request_duration_seconds",
        "OPSWATCH_TCP_TARGETS": f"web=127.0.0.1:{port}",
        "OPSWATCH_PROCESS_TARGETS": f"web=pidfile:{pidfile}",
        "OPSWATCH_FILE_TARGETS": f"state={files}/*.txt",
        "OPSWATCH_COMMAND_TARGETS": "true=/bin/true",
        "OPSWATCH_HEARTBEAT_TARGETS": "backup=1d/1h",
        "OPSWATCH_HEARTBEAT_BACKUP_KEY": "bench-heartbeat-key-0123",
    }
    absent = []
    services = {
        "postgres": (5432, "main=postgresql://postgres@127.0.0.1:5432/test"),
        "redis": (6379, "cache=redis://127.0.0.1:6379/0"),
        "rabbitmq": (15672, "mq=http://guest:guest@127.0.0.1:15672"),
    }
    for name, (service_port, target) in services.items():
        if port_open("127.0.0.1", service_port):
            checks.append(name)
            environ[f"OPSWATCH_{name.upper()}_TARGETS"] = target
        else:
            absent.append(name)
    environ["OPSWATCH_CHECKS"] = ",".join(checks)
    return environ, absent


async def measure(
    environ: dict[str, str], rounds: int, pause: float
) -> tuple[dict[str, Costs], Costs, dict[str, str]]:
    """Per-check costs, whole-cycle costs (concurrent) and any check's error."""
    app = App(load_config(environ))
    await app.open()
    checks = [c.check for c in app.config.collectors]
    try:
        for _ in range(2):  # warm-up: connections, rate baselines, caches
            for check in checks:
                await app.cycle.run(check)
            await asyncio.sleep(pause)
        per_check = {check: Costs([], []) for check in checks}
        for _ in range(rounds):
            for check in checks:
                cpu, wall = time.process_time(), time.perf_counter()
                await app.cycle.run(check)
                per_check[check].cpu_ms.append((time.process_time() - cpu) * 1000)
                per_check[check].wall_ms.append((time.perf_counter() - wall) * 1000)
            await asyncio.sleep(pause)
        cycle = Costs([], [])
        for _ in range(rounds):
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(app.cycle.run(check) for check in checks))
            cycle.cpu_ms.append((time.process_time() - cpu) * 1000)
            cycle.wall_ms.append((time.perf_counter() - wall) * 1000)
            await asyncio.sleep(pause)
        errors = {
            check: status.error or "down"
            for check, status in app.checks.statuses().items()
            if status.error
            or any(s.metric.endswith(".up") and s.value == 0 for s in status.samples)
        }
    finally:
        await app.stop()
    return per_check, cycle, errors


def _report(name: str, per_check: dict[str, Costs], cycle: Costs, errors: dict[str, str]) -> None:
    med = statistics.median
    for check, costs in per_check.items():
        note = f"  ERROR: {errors[check]}" if check in errors else ""
        print(
            f"bench_cycle {name:<7} {check:<16} cpu_ms={med(costs.cpu_ms):7.2f} "
            f"wall_ms={med(costs.wall_ms):7.2f} (median of {len(costs.cpu_ms)}){note}"
        )
    sequential_cpu = sum(med(c.cpu_ms) for c in per_check.values())
    print(
        f"bench_cycle {name:<7} CYCLE            cpu_ms={med(cycle.cpu_ms):7.2f} "
        f"wall_ms={med(cycle.wall_ms):7.2f} (all {len(per_check)} checks at once; "
        f"sum of per-check medians {sequential_cpu:.2f} ms CPU) -> "
        f"{med(cycle.cpu_ms) * 120 / 1000:.2f} CPU-s/hour at 30 s"
    )


async def run(
    rounds: int, pause: float, configs: Sequence[str], port: int, pid: int, *, history: str
) -> None:
    quiet_logging()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "files").mkdir()
        (work / "files" / "a.txt").write_text("x")
        pidfile = work / "server.pid"
        pidfile.write_text(f"{pid}\n")
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
            "OPSWATCH_API_LISTEN": "127.0.0.1:0",
            "OPSWATCH_HISTORY": history,
        }
        print(f"bench_cycle machine: {machine()}")
        for name in configs:
            if name == "default":
                environ = {**base, "OPSWATCH_CHECKS": "host"}
                absent: list[str] = []
            else:
                extra, absent = _all_environ(port, pidfile, work / "files")
                environ = {**base, **extra}
            environ["OPSWATCH_STATE_PATH"] = str(work / f"{name}.sqlite3")
            if absent:
                print(f"bench_cycle {name}: left out (service not reachable): {absent}")
            per_check, cycle, errors = await measure(environ, rounds, pause)
            _report(name, per_check, cycle, errors)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between rounds")
    parser.add_argument("--config", choices=("default", "all"), action="append")
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    parser.add_argument("--history", choices=("on", "off"), default="on", help="metric history")
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else args.rounds
    configs = args.config or ["default", "all"]
    with http_server() as (port, server):
        asyncio.run(run(rounds, args.pause, configs, port, server.pid, history=args.history))


if __name__ == "__main__":
    main()
