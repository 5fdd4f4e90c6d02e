"""Time from a watched service's death to the first notification.

``opswatch run`` runs as a child process on default settings but ``OPSWATCH_INTERVAL``
(``OPSWATCH_RETRY_INTERVAL`` keeps its default, min(5 s, interval)), watching ``--reps`` real
HTTP services (``python -m http.server``, one child process each) twice: an ``http`` check
(polled) and a ``process`` check on the service's pidfile (a pidfd: an event). Its webhook
points at a receiver in this process.

Once every check has run, each service is killed with SIGKILL at its own random moment within
one interval: a random phase against the schedule, stratified (kill k falls uniformly within
the k-th 1/reps slice of the interval) so that few repetitions still cover every phase. The
kills are independent, since every target has its own job. The latency of each alert (``http_down``,
``process_down``) is from the kill to the arrival of the webhook request announcing it.
Expected for http: the wait for the next scheduled run (uniform over the interval), plus the
retry interval (``http_down`` fires on the second failed run), plus delivery.

    .venv/bin/python -m bench.bench_detection [--interval 30s --interval 5s] [--reps 8] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench._common import free_port, machine
from opswatch.config import Env

ALERTS = ("http_down", "process_down")


class Webhook:
    """Records when each (alertname, target) was first announced as firing."""

    def __init__(self) -> None:
        self.fired: dict[tuple[str, str], float] = {}
        self.arrived = asyncio.Event()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        body: dict[str, Any] = await request.json()
        for alert in body.get("alerts", []):
            labels = alert.get("labels", {})
            if alert.get("status") == "firing":
                key = (str(labels.get("alertname")), str(labels.get("target")))
                self.fired.setdefault(key, arrived)
        self.arrived.set()
        return web.Response(text="ok")


async def measure(interval: str, reps: int, seed: int) -> dict[str, list[float]]:
    """Latencies in seconds per alert name."""
    rng = random.Random(seed)
    interval_s = Env({"I": interval}).duration("I", 30.0)
    webhook = Webhook()
    await webhook.start()
    services: list[asyncio.subprocess.Process] = []
    daemon: asyncio.subprocess.Process | None = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        try:
            http_targets, process_targets = [], []
            for i in range(reps):
                port = free_port()
                service = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                    "--directory", str(work / "www"), str(port),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                services.append(service)
                pidfile = work / f"s{i}.pid"
                pidfile.write_text(f"{service.pid}\n")
                http_targets.append(f"s{i}=http://127.0.0.1:{port}/")
                process_targets.append(f"s{i}=pidfile:{pidfile}")
            api_port = free_port()
            environ = {
                **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
                "OPSWATCH_CHECKS": "http,process",
                "OPSWATCH_HTTP_TARGETS": ",".join(http_targets),
                "OPSWATCH_PROCESS_TARGETS": ",".join(process_targets),
                "OPSWATCH_INTERVAL": interval,
                "OPSWATCH_WEBHOOK_URL": f"http://127.0.0.1:{webhook.port}/hook",
                "OPSWATCH_STATE_PATH": str(work / "s.sqlite3"),
                "OPSWATCH_API_LISTEN": f"127.0.0.1:{api_port}",
                "OPSWATCH_LOG_FORMAT": "json",
            }
            daemon = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "opswatch.daemon.cli", "run", env=environ,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await _wait_for_first_runs(daemon, api_port, 2 * reps)
            # Every job was added at start-up, so the schedule's phase is the same for all of
            # them. Kill i falls at a uniformly random moment of its own 1/reps slice of the
            # interval (stratified: random phases that cover the interval evenly).
            order = rng.sample(range(reps), reps)
            kills = [((k + rng.random()) * interval_s / reps, i) for k, i in enumerate(order)]
            started = time.monotonic()
            killed: dict[str, float] = {}
            for offset, i in kills:
                await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
                killed[f"s{i}"] = time.monotonic()
                services[i].send_signal(signal.SIGKILL)
                await services[i].wait()
            expected = {(alert, target) for alert in ALERTS for target in killed}
            async with asyncio.timeout(3 * interval_s + 30):
                while not expected <= set(webhook.fired):
                    await webhook.arrived.wait()
                    webhook.arrived.clear()
        finally:
            if daemon is not None and daemon.returncode is None:
                daemon.send_signal(signal.SIGTERM)
                await asyncio.wait_for(daemon.wait(), 30)
            for service in services:
                if service.returncode is None:
                    service.kill()
                    await service.wait()
            await webhook.stop()
    return {
        alert: [webhook.fired[(alert, target)] - at for target, at in killed.items()]
        for alert in ALERTS
    }


async def _wait_for_first_runs(daemon: asyncio.subprocess.Process, port: int, checks: int) -> None:
    """Until /status lists every check (each has run once)."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(60):
        while True:
            if daemon.returncode is not None:
                assert daemon.stderr is not None
                error = (await daemon.stderr.read()).decode().strip()
                raise RuntimeError(f"opswatch exited with {daemon.returncode}: {error}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/status") as response:
                    if len((await response.json())["checks"]) >= checks:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


def _summary(values: list[float]) -> str:
    return (
        f"median={statistics.median(values):.2f}s "
        f"min={min(values):.2f}s max={max(values):.2f}s n={len(values)}"
    )


async def run(intervals: Sequence[str], reps: int, seed: int) -> None:
    print(f"bench_detection machine: {machine()}")
    for interval in intervals:
        latencies = await measure(interval, reps, seed)
        for alert in ALERTS:
            print(
                f"bench_detection interval={interval} {alert}: {_summary(latencies[alert])} "
                f"[{' '.join(f'{v:.2f}' for v in sorted(latencies[alert]))}]"
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", action="append", help="repeatable; default 30s and 5s")
    parser.add_argument("--reps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="8 services per interval")
    args = parser.parse_args(argv)
    reps = 8 if args.quick else args.reps
    asyncio.run(run(args.interval or ["30s", "5s"], reps, args.seed))


if __name__ == "__main__":
    main()
