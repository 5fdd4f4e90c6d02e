"""Corrupt, foreign or unwritable state is refused at start: ``opswatch run`` prints one line
naming the file (or the masked URL) and the problem, exits 2, and starts nothing (no API, no
file created or changed). Each case starts the real daemon as a child process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from opswatch.model import Alert, AlertState, CycleRecord, Severity, Transition, TransitionKind
from opswatch.state.postgres import PostgresStore
from opswatch.state.sqlite import APPLICATION_ID, SQLiteStore
from tests.conftest import free_port
from tests.pgschema import fresh_schema

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
START_TIMEOUT_S = 30.0
PAGE = 4096  # SQLite's default page size, which the state file has


@dataclass(frozen=True)
class Start:
    returncode: int | None  # None: the daemon started (its API listened) and was killed
    stdout: str
    stderr: str

    @property
    def started(self) -> bool:
        return self.returncode is None


async def _start(state: dict[str, str], wrapper: Sequence[str] = ()) -> Start:
    """``opswatch run`` with ``state`` (OPSWATCH_STATE_*): until it exits or its API listens."""
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
        **state,
        "OPSWATCH_API_LISTEN": f"127.0.0.1:{free_port()}",
        "OPSWATCH_LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        *wrapper,
        sys.executable,
        "-m",
        "opswatch.daemon.cli",
        "run",
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while line := (await process.stdout.readline()).decode():
                lines.append(line)
                if '"api_listening"' in line:
                    process.kill()
                    await process.wait()
                    return Start(None, "".join(lines), (await process.stderr.read()).decode())
            stderr = (await process.stderr.read()).decode()
            return Start(await process.wait(), "".join(lines), stderr)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes: what "nothing changed" compares."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _assert_refused(start: Start, path: str, problem: str) -> None:
    assert not start.started, "the daemon started on unusable state"
    assert start.returncode == 2, start.stderr
    (line,) = start.stderr.strip().splitlines()
    assert line.startswith(f"opswatch: state file {path}: "), line
    assert problem in line, line
    assert "Traceback" not in start.stderr
    assert '"api_listening"' not in start.stdout
    assert '"daemon_started"' not in start.stdout


def _alert(n: int) -> Alert:
    labels = {"mountpoint": f"/srv/{n}"}
    return Alert(
        fingerprint=f"fp{n:04d}",
        rule="disk_full",
        check="host",
        labels=labels,
        state=AlertState.FIRING,
        severity=Severity.CRITICAL,
        summary=f"disk /srv/{n} is 95% full " + "x" * 200,
        value=95.0,
        started_at=NOW,
        last_seen_at=NOW,
        last_notified_at=NOW,
    )


async def _write_state(path: Path, alerts: int = 200) -> None:
    """A real state file of several dozen pages: ``alerts`` firing alerts and their history."""
    store = SQLiteStore(path)
    await store.open()
    try:
        active = [_alert(n) for n in range(alerts)]
        fired = [Transition(a, TransitionKind.FIRED, NOW) for a in active]
        await store.record(CycleRecord(active, [], fired, []), NOW)
    finally:
        await store.close()


def _overwrite(offset: int, data: bytes) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        with path.open("r+b") as file:
            file.seek(offset)
            file.write(data)

    return corrupt


def _truncate_by(size: int) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        os.truncate(path, path.stat().st_size - size)

    return corrupt


def _pragma(statement: str) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute(statement)
        finally:
            db.close()

    return corrupt


def _empty(path: Path) -> None:
    os.truncate(path, 0)


def _foreign(path: Path) -> None:
    """Another application's SQLite database at the state path."""
    path.unlink()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    finally:
        db.close()


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        # garbage over the start of a b-tree page past the header: its page header and cells
        pytest.param(_overwrite(5 * PAGE, b"\xde\xad\xbe\xef" * 64), "corrupt", id="garbage"),
        pytest.param(_truncate_by(1000), "truncated", id="truncated-mid-page"),
        pytest.param(_truncate_by(3 * PAGE), "corrupt", id="truncated-pages"),
        pytest.param(_overwrite(0, bytes(100)), "not an SQLite database", id="zeroed-header"),
        pytest.param(_empty, "empty (0 bytes)", id="empty"),
        pytest.param(_pragma("PRAGMA user_version = 99"), "schema version 99", id="newer"),
        pytest.param(_foreign, "not an opswatch state file", id="foreign"),
        pytest.param(
            _pragma("PRAGMA application_id = 1"), "not an opswatch state file", id="other-app"
        ),
    ],
)
async def test_a_damaged_or_foreign_state_file_is_refused_with_one_line_and_nothing_started(
    corrupt: Callable[[Path], None], problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "s.sqlite3"
    await _write_state(path)
    corrupt(path)
    before = _snapshot(tmp_path)

    start = await _start({"OPSWATCH_STATE_PATH": str(path)})

    _assert_refused(start, str(path), problem)
    assert _snapshot(tmp_path) == before


async def test_a_state_path_under_a_regular_file_is_refused_even_for_root(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory\n")
    path = tmp_path / "data" / "state" / "s.sqlite3"
    before = _snapshot(tmp_path)

    start = await _start({"OPSWATCH_STATE_PATH": str(path)})

    _assert_refused(start, str(path), "cannot create its directory")
    assert _snapshot(tmp_path) == before


def _without_root_powers() -> list[str]:
    """A command prefix under which the daemon cannot write a read-only directory: none for
    an ordinary user; for root, ``setpriv`` dropping CAP_DAC_OVERRIDE (root keeps owning the
    files, so it can still read them, but mode bits now bind it)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only directory does not stop root")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]


async def test_a_state_file_in_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    wrapper = _without_root_powers()
    directory = tmp_path / "state"
    path = directory / "s.sqlite3"
    await _write_state(path)
    before = _snapshot(tmp_path)
    directory.chmod(0o555)
    try:
        start = await _start({"OPSWATCH_STATE_PATH": str(path)}, wrapper)
    finally:
        directory.chmod(0o755)

    _assert_refused(start, str(path), "is not writable")
    assert _snapshot(tmp_path) == before


async def test_a_schema_version_newer_than_known_in_postgresql_is_one_line_and_exit_2(
    postgres_dsn: str,
) -> None:
    async with fresh_schema(postgres_dsn) as schema:
        store = PostgresStore(postgres_dsn, schema=schema)
        await store.open()
        await store.pool.execute("UPDATE opswatch_schema SET version = 999")
        await store.close()

        start = await _start({"OPSWATCH_STATE_URL": postgres_dsn, "OPSWATCH_STATE_SCHEMA": schema})

        assert not start.started
        assert start.returncode == 2, start.stderr
        (line,) = start.stderr.strip().splitlines()
        assert line.startswith("opswatch: state store postgresql://"), line
        assert "schema version 999, newer than this opswatch knows" in line
        assert '"api_listening"' not in start.stdout
        conn = await asyncpg.connect(postgres_dsn)
        try:
            assert await conn.fetchval(f'SELECT version FROM "{schema}".opswatch_schema') == 999
        finally:
            await conn.close()


# -- what opswatch itself leaves at the path -----------------------------------------------


async def test_a_new_state_file_is_made_beside_the_path_and_renamed_onto_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    (tmp_path / "s.sqlite3.new").write_bytes(b"left by a start killed while creating it")
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    assert sorted(os.listdir(tmp_path)) == ["s.sqlite3"]
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
    finally:
        db.close()


async def test_a_file_of_an_earlier_opswatch_left_by_a_kill_opens_with_its_alerts_and_is_stamped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    await _write_state(path, alerts=3)
    _pragma("PRAGMA application_id = 0")(path)  # as every file made before the stamp
    # a daemon killed after a write: the write is still only in the -wal
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute(
        "INSERT INTO alerts (fingerprint, data) VALUES (?, ?)",
        ("fp9999", json.dumps({"written": "after the last checkpoint"})),
    )
    left = tmp_path / "left"
    left.mkdir()
    for name in ("s.sqlite3", "s.sqlite3-wal", "s.sqlite3-shm"):
        shutil.copy(tmp_path / name, left / name)  # what a kill -9 leaves: the WAL unmerged
    writer.close()
    assert (left / "s.sqlite3-wal").stat().st_size > 0

    store = SQLiteStore(left / "s.sqlite3")
    await store.open()
    try:
        db = sqlite3.connect(left / "s.sqlite3")
        try:
            assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
            assert db.execute("SELECT COUNT(*) FROM alerts").fetchone() == (4,)
        finally:
            db.close()
    finally:
        await store.close()
