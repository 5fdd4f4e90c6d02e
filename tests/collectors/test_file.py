"""The file freshness collector on real files with mtimes set by os.utime."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opswatch.collectors.file import FileCollector, FileStats, scan
from opswatch.config import ConfigError, Env
from opswatch.model import Sample
from tests.conftest import ManualClock


def by_metric(samples: list[Sample]) -> dict[str, float]:
    return {s.metric: s.value for s in samples}


def write(path: Path, size: int, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))


async def test_reports_age_and_size_of_newest_match_from_injected_clock(
    tmp_path: Path, clock: ManualClock
) -> None:
    now = clock.now.timestamp()
    write(tmp_path / "db-1.dump", 100, now - 3 * 86400)
    write(tmp_path / "db-2.dump", 250, now - 3600)
    write(tmp_path / "db-3.dump", 175, now - 86400)
    write(tmp_path / "notes.txt", 9, now)
    collector = FileCollector("backups", f"{tmp_path}/*.dump", clock)

    samples = await collector.collect()

    assert by_metric(samples) == {
        "file.up": 1.0,
        "file.count": 3.0,
        "file.newest_age_seconds": 3600.0,
        "file.newest_size_bytes": 250.0,
    }
    assert all(s.labels == {"target": "backups"} and s.check == "file:backups" for s in samples)
    assert all(s.at == clock.now for s in samples)


async def test_age_grows_with_the_clock_between_cycles(tmp_path: Path, clock: ManualClock) -> None:
    write(tmp_path / "heartbeat", 1, clock.now.timestamp() - 10)
    collector = FileCollector("beat", f"{tmp_path}/heartbeat", clock)

    first = by_metric(await collector.collect())
    clock.advance(30)
    second = by_metric(await collector.collect())

    assert (first["file.newest_age_seconds"], second["file.newest_age_seconds"]) == (10.0, 40.0)


async def test_reports_down_with_zero_count_when_nothing_matches(
    tmp_path: Path, clock: ManualClock
) -> None:
    collector = FileCollector("backups", f"{tmp_path}/missing/*.dump", clock)

    assert by_metric(await collector.collect()) == {"file.up": 0.0, "file.count": 0.0}


def test_double_star_matches_nested_directories_and_skips_directories(tmp_path: Path) -> None:
    write(tmp_path / "a" / "b" / "deep.csv", 5, 2000.0)
    write(tmp_path / "top.csv", 7, 1000.0)
    (tmp_path / "dir.csv").mkdir()

    assert scan(f"{tmp_path}/**/*.csv") == FileStats(count=2, newest_mtime=2000.0, newest_size=5)


def test_dangling_symlinks_do_not_count(tmp_path: Path) -> None:
    (tmp_path / "gone.dump").symlink_to(tmp_path / "nowhere")

    assert scan(f"{tmp_path}/*.dump") == FileStats(count=0)


def test_builds_one_collector_per_target_allowing_commas_in_patterns(
    clock: ManualClock,
) -> None:
    env = Env(
        {"OPSWATCH_FILE_TARGETS": ("backups=/var/backups/db/*.dump, reports=/srv/a,b/**/*.csv")}
    )

    collectors = FileCollector.from_env(env, clock)

    assert [(c.check, c.describe()) for c in collectors] == [
        ("file:backups", {"pattern": "/var/backups/db/*.dump"}),
        ("file:reports", {"pattern": "/srv/a,b/**/*.csv"}),
    ]


@pytest.mark.parametrize(
    "value",
    ["backups=relative/*.dump", "backups=", "/var/backups/*.dump", "a=/x,a=/y"],
)
def test_rejects_malformed_targets_naming_the_variable(value: str, clock: ManualClock) -> None:
    with pytest.raises(ConfigError) as excinfo:
        FileCollector.from_env(Env({"OPSWATCH_FILE_TARGETS": value}), clock)

    assert excinfo.value.variable == "OPSWATCH_FILE_TARGETS"
