"""The muter's cost: ``MuteStack.muted`` as the daemon builds it (silences, then maintenance
windows), per call, with no window configured, with one recurring window (its span cached),
and the croniter backwards search a window's opening or closing costs once. A check run asks
the muter only for new firings, muted firings and transitions, so a steady cycle with no
window asks nothing. Prints one line per case.

    .venv/bin/python -m bench.bench_windows [--calls 200000] [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

from opswatch.alerts.maintenance import MaintenanceMuter, parse_window
from opswatch.alerts.muting import MuteStack
from opswatch.alerts.silences import SilenceMuter
from opswatch.model import Alert, AlertState, Severity

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
WINDOW = "cron=0 2 1-7 * SUN; duration=4h; tz=Europe/Berlin; match=check=~postgres:.*"


def _per_call_us(call: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 calls")
    args = parser.parse_args(argv)
    calls = 20_000 if args.quick else args.calls
    alert = Alert(
        "fp",
        "disk_full",
        "host",
        {"mountpoint": "/"},
        AlertState.FIRING,
        Severity.CRITICAL,
        "s",
        97.0,
        NOW,
        NOW,
    )
    window = parse_window("OPSWATCH_MAINTENANCE_DB", "db", WINDOW)
    stacks = {
        "silences only": MuteStack([SilenceMuter()]),
        "no window configured": MuteStack([SilenceMuter(), MaintenanceMuter()]),
        "one window (cached span)": MuteStack([SilenceMuter(), MaintenanceMuter([window])]),
    }
    for name, stack in stacks.items():
        us = _per_call_us(partial(stack.muted, alert, NOW), calls)
        print(f"bench_muting {name:26s} {us:8.3f} us per muted() ({calls} calls)")
    us = _per_call_us(lambda: window.state_at(NOW), max(calls // 100, 100))
    print(f"bench_muting {'croniter search':26s} {us:8.1f} us per window opening or closing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
