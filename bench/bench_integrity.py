"""What the start-up integrity check costs on a large SQLite state file.

Builds a state file of ``--size-mib`` (opswatch's own schema, made by ``SQLiteStore.open()``,
then filled with history and outbox rows holding real transition and notification JSON), then
times, each with the file's pages in the page cache ("warm") and after evicting them with
``posix_fadvise(DONTNEED)`` ("cold", only this file's pages, nothing else on the machine):
``SQLiteStore.open()`` as the daemon does it at start (header checks, ``PRAGMA
quick_check``, migration), ``PRAGMA quick_check`` alone and, for comparison, ``PRAGMA
integrity_check`` (which also checks every index against its table). Prints one line per
measurement.

    .venv/bin/python -m bench.bench_integrity [--size-mib 1024] [--dir /var/tmp] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench._common import machine
from opswatch.codec import notification_to_json, transition_to_json
from opswatch.model import (
    Alert,
    AlertState,
    Notification,
    Severity,
    Transition,
    TransitionKind,
    fingerprint,
)
from opswatch.state.sqlite import SQLiteStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 5_000


def _transition(n: int) -> Transition:
    labels = {"mountpoint": f"/srv/{n % 500}", "device": f"/dev/vd{n % 26}"}
    alert = Alert(
        fingerprint=fingerprint("disk_full", labels),
        rule="disk_full",
        check="host",
        labels=labels,
        state=AlertState.FIRING,
        severity=Severity.CRITICAL,
        summary=f"disk /srv/{n % 500} is 95% full",
        value=95.0,
        started_at=NOW,
        last_seen_at=NOW,
        last_notified_at=NOW,
    )
    kind = TransitionKind.FIRED if n % 2 == 0 else TransitionKind.RESOLVED
    return Transition(alert, kind, NOW + timedelta(seconds=n))


def build(path: Path, size_mib: int) -> int:
    """A state file of about ``size_mib`` MiB; returns its number of history rows."""
    asyncio.run(_open(path))  # opswatch's own schema, as a first start makes it
    db = sqlite3.connect(path, isolation_level=None)
    rows = 0
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        while path.stat().st_size < size_mib * 2**20:
            db.execute("BEGIN")
            history, outbox = [], []
            for n in range(rows, rows + BATCH):
                t = _transition(n)
                history.append(
                    (
                        t.at.isoformat(),
                        t.alert.fingerprint,
                        t.kind.value,
                        json.dumps(transition_to_json(t)),
                    )
                )
                if n % 2 == 0:
                    note = Notification(
                        transitions=(t,),
                        title=f"[FIRING] disk_full {n}",
                        text=t.alert.summary,
                        severity=t.alert.severity,
                        idempotency_key=f"{t.key}:{n}",
                    )
                    outbox.append(
                        (
                            "webhook",
                            note.idempotency_key,
                            json.dumps(notification_to_json(note)),
                            t.at.isoformat(),
                            t.at.timestamp(),
                            "delivered",
                        )
                    )
            db.executemany(
                "INSERT INTO history (at, fingerprint, kind, data) VALUES (?, ?, ?, ?)", history
            )
            db.executemany(
                "INSERT INTO outbox (channel, idempotency_key, data, created_at, "
                "next_attempt_at, state) VALUES (?, ?, ?, ?, ?, ?)",
                outbox,
            )
            db.execute("COMMIT")
            rows += BATCH
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return rows


async def _open(path: Path) -> None:
    """What a start does to the state file: open (create, check, migrate), then close."""
    store = SQLiteStore(path)
    await store.open()
    await store.close()


def _pragma(path: Path, pragma: str) -> Callable[[], None]:
    def run() -> None:
        db = sqlite3.connect(path)
        try:
            (report,) = db.execute(pragma).fetchone()
            assert report == "ok", report
        finally:
            db.close()

    return run


def _evict(path: Path) -> None:
    """Drop this file's pages from the page cache (and only this file's)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _time(run: Callable[[], None], path: Path, *, cold: bool) -> float:
    if cold:
        _evict(path)
    else:
        run()  # warm the cache
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the file")
    parser.add_argument(
        "--skip-integrity-check", action="store_true", help="time quick_check and open only"
    )
    parser.add_argument("--quick", action="store_true", help="a 64 MiB file")
    args = parser.parse_args(argv)
    if args.quick:
        args.size_mib = 64

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="opswatch-bench-") as directory:
        path = Path(directory) / "state.sqlite3"
        began = time.perf_counter()
        rows = build(path, args.size_mib)
        size = path.stat().st_size / 2**20
        print(
            f"bench_integrity: {size:.0f} MiB state file, {rows:,} history rows "
            f"(built in {time.perf_counter() - began:.0f} s); {machine()}",
            flush=True,
        )
        runs: list[tuple[str, Callable[[], None]]] = [
            ("SQLiteStore.open() (the start-up check)", lambda: asyncio.run(_open(path))),
            ("PRAGMA quick_check", _pragma(path, "PRAGMA quick_check")),
        ]
        if not args.skip_integrity_check:
            runs.append(("PRAGMA integrity_check", _pragma(path, "PRAGMA integrity_check")))
        for name, run in runs:
            warm = _time(run, path, cold=False)
            cold = _time(run, path, cold=True)
            print(
                f"  {name}: {warm:.2f} s warm, {cold:.2f} s cold "
                f"({size / warm:.0f} / {size / cold:.0f} MiB/s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
