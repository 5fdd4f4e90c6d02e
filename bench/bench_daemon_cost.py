"""The daemon's own cost: CPU seconds and memory after running for a while.

Starts ``opswatch run`` as a subprocess on embedded defaults (host checks every 30 s, a
throwaway state file, the API on a free port), lets it run ``--seconds``, then reads
``/proc/PID/stat`` (utime + stime, in clock ticks) and ``/proc/PID/status`` (VmRSS) and
``/proc/PID/smaps_rollup`` (Pss), and stops it with SIGTERM. Prints one line.

    .venv/bin/python -m bench.bench_daemon_cost [--seconds 600] [--interval 30s] [--quick]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _kib(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--interval", default="30s")
    parser.add_argument("--checks", default="host")
    parser.add_argument("--quick", action="store_true", help="40 s at a 5 s interval")
    parser.add_argument("--history", choices=("on", "off"), default="on", help="metric history")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.interval = 40.0, "5s"
    with tempfile.TemporaryDirectory() as state:
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
            "OPSWATCH_INTERVAL": args.interval,
            "OPSWATCH_CHECKS": args.checks,
            "OPSWATCH_HISTORY": args.history,
            "OPSWATCH_STATE_PATH": str(Path(state) / "state.sqlite3"),
            "OPSWATCH_API_LISTEN": f"127.0.0.1:{_free_port()}",
            "OPSWATCH_LOG_FORMAT": "json",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "opswatch.daemon.cli", "run"],
            env=environ,
            stdout=subprocess.DEVNULL,
        )
        try:
            startup = None
            deadline = time.monotonic() + args.seconds
            time.sleep(min(5.0, args.seconds))
            startup = _cpu_seconds(process.pid)
            time.sleep(max(0.0, deadline - time.monotonic()))
            cpu = _cpu_seconds(process.pid)
            rss = _kib(Path(f"/proc/{process.pid}/status"), "VmRSS")
            pss = _kib(Path(f"/proc/{process.pid}/smaps_rollup"), "Pss")
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
    steady = cpu - startup
    per_hour = steady / max(1.0, args.seconds - 5.0) * 3600
    print(
        f"daemon_cost checks={args.checks} interval={args.interval} seconds={args.seconds:g} "
        f"cpu_s={cpu:.2f} startup_cpu_s={startup:.2f} steady_cpu_s_per_hour={per_hour:.2f} "
        f"rss_mib={rss / 1024:.1f} pss_mib={pss / 1024:.1f} exit={code}"
    )


if __name__ == "__main__":
    main()
