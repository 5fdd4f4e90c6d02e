"""Helpers shared by the benchmarks: ports, quiet logging, percentiles, local services."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence

from opswatch.logging import configure_logging


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def quiet_logging() -> None:
    """The daemon's real JSON logging, rendered but thrown away (its cost is part of a cycle)."""
    configure_logging("json", "info", stream=open(os.devnull, "w"))  # noqa: SIM115


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def machine() -> str:
    """One line: CPU model, cores, memory, kernel, Python."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def rss_mib(pid: int | None = None) -> float:
    path = f"/proc/{pid or os.getpid()}/status"
    with open(path) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def http_server() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """``bench._server`` in a child process on a free port; yields the port and the process.
    Killed on exit."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench._server", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the local HTTP server did not start")
        yield port, server
    finally:
        server.kill()
        server.wait()
