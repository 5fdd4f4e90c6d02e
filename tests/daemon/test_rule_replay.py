"""``opswatch test-rules --history``: the configured rules replayed on the metric history a
store holds (written by the cycle's record and rolled up by the history job, on an injected
clock), read only."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opswatch.capacity.history import HistorySettings
from opswatch.capacity.rollup import HistoryJob
from opswatch.daemon.cli import main
from opswatch.daemon.configure import load_config
from opswatch.daemon.rule_replay import NothingToReplayError, Replayed, replay, report, stat_of
from opswatch.model import CycleRecord, Sample, Severity, TransitionKind, utcnow
from opswatch.ports import StateStore
from opswatch.state.sqlite import SQLiteStore
from tests.conftest import ManualClock
from tests.state import test_stores

DAY_START = datetime(2026, 3, 1, tzinfo=UTC)
DAY = 86400.0

# both stores, as the stores' own tests have them
make_store = test_stores.make_store
store = test_stores.store


def _disk(at: datetime, value: float, mount: str = "/data") -> Sample:
    return Sample("host", "host.disk_used_percent", value, at, {"mountpoint": mount})


async def _seed(
    store: StateStore,
    start: datetime,
    hours: float,
    value: Callable[[datetime], float],
    every: float = 60.0,
    *,
    job: HistoryJob | None = None,
    clock: ManualClock | None = None,
) -> None:
    """A sample of /data every ``every`` seconds for ``hours``, written an hour of runs per
    record; ``job`` (on ``clock``) runs after each hour, as the daemon's does."""
    runs_per_hour = int(3600 / every)
    for hour in range(int(hours)):
        first = start + timedelta(hours=hour)
        times = [first + timedelta(seconds=i * every) for i in range(runs_per_hour)]
        batch = [_disk(at, value(at)) for at in times]
        end = first + timedelta(hours=1)
        await store.record(CycleRecord((), (), (), (), batch), end)
        if job is not None and clock is not None:
            clock.now = end
            await job.run_once()


def _twice_full(at: datetime) -> float:
    """50 % but 87 % from 10:00 to 11:00 and from 15:00 to 15:30."""
    minutes = at.hour * 60 + at.minute
    return 87.0 if 600 <= minutes < 660 or 900 <= minutes < 930 else 50.0


async def _held(store: StateStore) -> tuple[int, int, int | None]:
    """The series, the raw samples and where the roll-ups end."""
    samples = await store.history_samples(0, 2**31)
    return len(await store.history_series()), len(samples), await store.history_rolled_until()


def _events(found: Replayed, rule: str) -> list[tuple[str, TransitionKind, Severity, float]]:
    return [
        (e.at.strftime("%H:%M:%S"), e.kind, e.severity, e.value)
        for e in found.events
        if e.rule == rule
    ]


async def test_a_disk_crossing_its_threshold_twice_fires_and_resolves_twice_at_its_times(
    store: StateStore,
) -> None:
    await _seed(store, DAY_START, 24, _twice_full)
    config = load_config({})
    now = DAY_START + timedelta(days=1)
    held = await _held(store)
    found = await replay(store, config.history, config.rules, DAY, now)
    assert await _held(store) == held
    assert await store.load_active() == []  # no alert state written
    fired, resolved = TransitionKind.FIRED, TransitionKind.RESOLVED
    warning = Severity.WARNING
    assert _events(found, "disk_full") == [
        ("10:00:00", fired, warning, 87.0),
        ("11:00:00", resolved, warning, 50.0),
        ("15:00:00", fired, warning, 87.0),
        ("15:30:00", resolved, warning, 50.0),
    ]
    assert {e.rule for e in found.events} == {"disk_full"}
    assert not found.rollups
    assert found.runs == 24 * 60
    lines = report(found, config.rules).splitlines()
    assert lines[0].startswith("replayed 2026-03-01 00:00:00Z .. 2026-03-02 00:00:00Z from raw")
    assert lines[1] == "disk_full:"
    assert lines[2] == (
        '  2026-03-01 10:00:00Z  fired            warning   host {mountpoint="/data"}  87'
    )
    assert lines[-1] == (
        f"summary: 1 of {len(config.rules)} rules would have fired: 2 fired, 2 resolved, "
        "0 still firing at the end"
    )


async def test_a_rule_given_only_to_the_replay_is_replayed_on_what_the_daemon_stored(
    store: StateStore,
) -> None:
    await _seed(store, DAY_START, 24, _twice_full)
    tried = load_config(
        {"OPSWATCH_RULE_DATA_HALF": 'host.disk_used_percent{mountpoint="/data"} > 80 for 45m'}
    )
    found = await replay(store, tried.history, tried.rules, DAY, DAY_START + timedelta(days=1))
    # the hour-long breach lasts 45 minutes, the half-hour one does not
    assert [(at, kind) for at, kind, _, _ in _events(found, "data_half")] == [
        ("10:45:00", TransitionKind.FIRED),
        ("11:00:00", TransitionKind.RESOLVED),
    ]


async def test_a_period_past_the_raw_retention_replays_the_rollups_at_their_worst(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Raw samples kept 1 h: a 2-minute spike 4 hours ago is only in its roll-up."""
    history = HistorySettings(raw_retention=3600.0)
    spike = DAY_START + timedelta(hours=1, minutes=32)

    def spiky(at: datetime) -> float:
        return 95.0 if spike <= at < spike + timedelta(minutes=2) else 50.0

    sqlite = SQLiteStore(tmp_path / "s.sqlite3")
    await sqlite.open()
    try:
        await _seed(
            sqlite, DAY_START, 6, spiky, job=HistoryJob(sqlite, history, clock, 60.0), clock=clock
        )
        config = load_config({})
        now = DAY_START + timedelta(hours=6)
        rolled = await replay(sqlite, history, config.rules, 6 * 3600.0, now)
        recent = await replay(sqlite, history, config.rules, 3000.0, now)
    finally:
        await sqlite.close()
    # the bucket's max stands for each of its samples: the whole bucket is critical
    assert rolled.rollups
    assert _events(rolled, "disk_full") == [
        ("01:30:00", TransitionKind.FIRED, Severity.CRITICAL, 95.0),
        ("01:35:00", TransitionKind.RESOLVED, Severity.CRITICAL, 50.0),
    ]
    assert "5-minute roll-ups (max for > rules" in report(rolled, config.rules)
    # roll-ups up to where the job got, then the raw samples not yet rolled up (all 6 hours)
    assert rolled.first == DAY_START
    assert rolled.runs == 6 * 60
    assert not recent.rollups
    assert recent.runs == 50
    assert recent.events == []


def test_the_rollup_value_follows_the_rules_comparison() -> None:
    config = load_config(
        {
            "OPSWATCH_RULE_QUIET": "http.up < 1",
            "OPSWATCH_RULE_BUSY": "max by (target) (host.cpu_percent) > 90",
            "OPSWATCH_RULE_FAST": "rate(host.net_bytes[5m]) > 1000",
        }
    )
    stats = {rule.name: stat_of(rule) for rule in config.rules}
    assert (stats["disk_full"], stats["http_down"]) == ("max", "min")
    assert (stats["quiet"], stats["busy"], stats["fast"]) == ("min", "max", "mean")


async def test_history_off_or_an_empty_store_has_nothing_to_replay(store: StateStore) -> None:
    config = load_config({})
    with pytest.raises(NothingToReplayError, match="history is empty"):
        await replay(store, config.history, config.rules, DAY, DAY_START)
    await _seed(store, DAY_START, 1, _twice_full)
    with pytest.raises(NothingToReplayError, match="OPSWATCH_HISTORY=off"):
        await replay(store, HistorySettings(enabled=False), config.rules, DAY, DAY_START)
    with pytest.raises(NothingToReplayError, match="no metric history stored in the last 1h"):
        await replay(store, config.history, config.rules, 3600.0, DAY_START + timedelta(days=2))


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("OPSWATCH_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "s.sqlite3"
    monkeypatch.setenv("OPSWATCH_STATE_PATH", str(path))
    return path


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def _rows(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        db.close()


async def _seed_file(path: Path, start: datetime, hours: float) -> None:
    sqlite = SQLiteStore(path)
    await sqlite.open()
    try:
        await _seed(
            sqlite, start, hours, lambda at: 87.0 if at < start + timedelta(hours=1) else 50.0
        )
    finally:
        await sqlite.close()


async def test_the_command_prints_the_replay_writes_nothing_and_says_what_is_missing(
    environ: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    start = (utcnow() - timedelta(hours=3)).replace(microsecond=0)
    await _seed_file(environ, start, 2)
    before = _rows(environ)
    monkeypatch.setenv("OPSWATCH_RULE_DISK_DATA", 'disk_full{mountpoint="/data"} warning=86')
    assert await _cli("test-rules", "--history", "24h") == 0
    out, err = capsys.readouterr()
    assert _rows(environ) == before
    assert "the store holds 3h" in err
    assert "less than the 24h asked for" in err
    assert len(err.strip().splitlines()) == 1
    lines = out.splitlines()
    assert lines[1] == "disk_data:"
    assert [line.split()[2] for line in lines[2:4]] == ["fired", "resolved"]
    assert lines[-1].startswith("summary: 1 of ")


@pytest.mark.parametrize(
    "case",
    [
        ({"OPSWATCH_HISTORY": "off"}, True, "metric history is off (OPSWATCH_HISTORY=off)"),
        ({}, False, "no state file at"),
    ],
)
async def test_the_command_exits_1_with_one_line_when_there_is_nothing_to_replay(
    environ: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[dict[str, str], bool, str],
) -> None:
    extra, seed, problem = case
    if seed:
        await _seed_file(environ, utcnow() - timedelta(hours=2), 1)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    assert await _cli("test-rules", "--history", "24h") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert problem in err
    assert await asyncio.to_thread(environ.exists) == seed  # a missing file is not created


async def test_an_empty_store_exits_1_and_a_bad_duration_2(
    environ: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = SQLiteStore(environ)
    await empty.open()
    await empty.close()
    assert await _cli("test-rules", "--history", "24h") == 1
    assert "the metric history is empty" in capsys.readouterr().err
    assert await _cli("test-rules", "--history", "yesterday") == 2
    assert "--history" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # FILE and --history together: argparse's usage error
        await _cli("test-rules", "suite.toml", "--history", "24h")
