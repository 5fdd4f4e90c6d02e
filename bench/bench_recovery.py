"""Time from a watched service's death to it answering again, restarted by opswatch.

``opswatch run`` runs as a child process on default settings but ``OPSWATCH_INTERVAL``
(``OPSWATCH_RETRY_INTERVAL`` keeps its default, min(5 s, interval)), watching ``--reps`` real
HTTP services (``python -m http.server``, one child process each) with ``http`` checks, and
one rule-wide recovery binding::

    OPSWATCH_RECOVERY_HTTP_DOWN=command:<python> bench/bench_recovery.py --restart

the restart script learns which service from ``OPSWATCH_ALERT_TARGET``, starts it detached
and exits once it answers (so the verification that follows succeeds at its first run).

Once every check has run, each service is killed with SIGKILL at its own random moment within
one interval (stratified random phases, as in ``bench_detection``). The latency is from the
kill to the first TCP connection the service accepts again, polled every 10 ms from this
process. Expected: the wait for the next scheduled run (uniform over the interval) plus the
retry interval (``http_down`` fires on the second failed run) plus the evidence capture
(~0.1 s) plus the restart (two Python start-ups, ~0.2 s): uniform on about
[5.3 s, interval + 5.3 s].

    .venv/bin/python -m bench.bench_recovery [--interval 30s --interval 5s] [--reps 8] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from opswatch.config import Env

POLL_S = 0.01


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def restart() -> int:
    """``--restart``: the recovery command. Starts the service named by
    ``OPSWATCH_ALERT_TARGET`` (its port in ``$BENCH_DIR/<target>.port``), detached, writes
    its pid beside, and exits 0 once it accepts connections (1 after 10 s)."""
    work = Path(os.environ["BENCH_DIR"])
    target = os.environ["OPSWATCH_ALERT_TARGET"]
    port = int((work / f"{target}.port").read_text())
    service = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    (work / f"{target}.pid").write_text(str(service.pid))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return 0
        except OSError:
            time.sleep(POLL_S)
    return 1


async def _answers(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def _back_after(port: int, killed_at: float, limit: float) -> float:
    """Seconds from ``killed_at`` until ``port`` accepts a connection again (first, until it
    refuses: a SIGKILL takes effect asynchronously)."""
    async with asyncio.timeout(limit):
        while await _answers(port):  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        while not await _answers(port):  # noqa: ASYNC110 - polling a port is the measurement
            await asyncio.sleep(POLL_S)
    return time.monotonic() - killed_at


def _kill(work: Path, target: str) -> None:
    pid = int((work / f"{target}.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # ours only the first time
        os.waitpid(pid, 0)


async def measure(interval: str, reps: int, seed: int) -> tuple[list[float], list[str]]:
    """Latencies in seconds, and the recovery outcomes the daemon reports."""
    rng = random.Random(seed)
    interval_s = Env({"I": interval}).duration("I", 30.0)
    daemon: asyncio.subprocess.Process | None = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        targets = [f"s{i}" for i in range(reps)]
        ports = {}
        for target in targets:
            ports[target] = free_port()
            (work / f"{target}.port").write_text(str(ports[target]))
            env = {**os.environ, "BENCH_DIR": str(work), "OPSWATCH_ALERT_TARGET": target}
            await asyncio.to_thread(
                subprocess.run,
                [sys.executable, __file__, "--restart"],
                env=env,
                check=True,
                timeout=30,
            )
        api_port = free_port()
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
            "OPSWATCH_CHECKS": "http",
            "OPSWATCH_HTTP_TARGETS": ",".join(f"{t}=http://127.0.0.1:{ports[t]}/" for t in targets),
            "OPSWATCH_INTERVAL": interval,
            "OPSWATCH_STATE_PATH": str(work / "s.sqlite3"),
            "OPSWATCH_API_LISTEN": f"127.0.0.1:{api_port}",
            "OPSWATCH_LOG_FORMAT": "json",
            "OPSWATCH_RECOVERY_HTTP_DOWN": f"command:{sys.executable} {__file__} --restart",
            "OPSWATCH_RECOVERY_ALLOW": sys.executable,
            "OPSWATCH_RECOVERY_COMMAND_ENV": f"BENCH_DIR={work}",
            "OPSWATCH_RECOVERY_MAX_PER_HOUR": "1000",
        }
        try:
            daemon = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "opswatch.daemon.cli", "run", env=environ,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await _wait_for_first_runs(daemon, api_port, reps)
            order = rng.sample(targets, reps)
            kills = [((k + rng.random()) * interval_s / reps, t) for k, t in enumerate(order)]
            started = time.monotonic()
            waits = []
            for offset, target in kills:
                await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
                killed_at = time.monotonic()
                _kill(work, target)
                limit = 2 * interval_s + 30
                waits.append(asyncio.create_task(_back_after(ports[target], killed_at, limit)))
            latencies = list(await asyncio.gather(*waits))
            outcomes = await _outcomes(api_port, reps)
        finally:
            if daemon is not None and daemon.returncode is None:
                daemon.send_signal(signal.SIGTERM)
                await asyncio.wait_for(daemon.wait(), 30)
            for target in targets:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int((work / f"{target}.pid").read_text()), signal.SIGKILL)
    return latencies, outcomes


async def _outcomes(port: int, count: int) -> list[str]:
    """The outcomes of the last ``count`` recoveries, once that many are recorded."""
    url = f"http://127.0.0.1:{port}/api/v1/recovery/history"
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while True:
            async with http.get(url) as response:
                runs = (await response.json())["runs"]
            if len(runs) >= count:
                return [str(run["outcome"]) for run in runs[:count]]
            await asyncio.sleep(0.1)


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
            except (aiohttp.ClientError, json.JSONDecodeError):
                pass
            await asyncio.sleep(0.1)


async def run(intervals: Sequence[str], reps: int, seed: int) -> None:
    # not at the top: this file is also the recovery command, run where bench is no package
    from bench._common import machine  # noqa: PLC0415

    print(f"bench_recovery machine: {machine()}")
    for interval in intervals:
        latencies, outcomes = await measure(interval, reps, seed)
        counted = {o: outcomes.count(o) for o in sorted(set(outcomes))}
        print(
            f"bench_recovery interval={interval} kill->answering: "
            f"median={statistics.median(latencies):.2f}s min={min(latencies):.2f}s "
            f"max={max(latencies):.2f}s n={len(latencies)} outcomes={counted} "
            f"[{' '.join(f'{v:.2f}' for v in sorted(latencies))}]",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--interval", action="append", help="repeatable; default 30s and 5s")
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="6 services at 5s only")
    parser.add_argument("--restart", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.restart:
        return restart()
    if args.quick:
        asyncio.run(run(args.interval or ["5s"], 6, args.seed))
    else:
        asyncio.run(run(args.interval or ["30s", "5s"], args.reps, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
