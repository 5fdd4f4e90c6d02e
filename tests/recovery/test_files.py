"""The files action cleans only inside its glob and the approved directories."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest

from opswatch.config import ConfigError, Env
from opswatch.recovery.base import ActionContext
from opswatch.recovery.files import FilesAction

VAR = "OPSWATCH_RECOVERY_DISK_FULL"
CTX = ActionContext(rule="disk_full", target="")
TEN_DAYS = 10 * 86400


def old(path: Path, content: str = "x" * 1000) -> Path:
    path.write_text(content)
    stamp = time.time() - TEN_DAYS
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    logs.mkdir()
    outside.mkdir()
    return logs, outside


def action(spec: str, logs: Path) -> FilesAction:
    return FilesAction.parse(VAR, spec, Env({"OPSWATCH_RECOVERY_FILES_DIRS": str(logs)}))


async def test_deletes_only_old_files_matching_the_glob(tree: tuple[Path, Path]) -> None:
    logs, _ = tree
    stale, other = old(logs / "app.log"), old(logs / "app.txt")
    fresh = logs / "today.log"
    fresh.write_text("new")
    detail = await action(f"delete:7d:{logs}/*.log", logs).run(CTX)
    assert not stale.exists()
    assert fresh.exists()
    assert other.exists()
    assert detail.startswith("deleted 1 file")


async def test_gzip_compresses_in_place_keeping_the_mtime(tree: tuple[Path, Path]) -> None:
    logs, _ = tree
    stale = old(logs / "app.log", "line\n" * 1000)
    mtime = stale.stat().st_mtime
    await action(f"gzip:7d:{logs}/*.log", logs).run(CTX)
    packed = logs / "app.log.gz"
    assert not stale.exists()
    assert gzip.decompress(packed.read_bytes()) == b"line\n" * 1000
    assert packed.stat().st_mtime == pytest.approx(mtime)


async def test_a_symlink_out_of_the_approved_directory_is_refused(
    tree: tuple[Path, Path],
) -> None:
    logs, outside = tree
    secret = old(outside / "secret.log")
    (logs / "evil.log").symlink_to(secret)
    (logs / "sub").symlink_to(outside, target_is_directory=True)
    detail = await action(f"delete:7d:{logs}/**/*.log", logs).run(CTX)
    assert secret.exists()
    assert (logs / "evil.log").is_symlink()
    assert "refused 2" in detail


def test_a_glob_that_climbs_out_or_starts_elsewhere_fails_start_up(
    tree: tuple[Path, Path],
) -> None:
    logs, outside = tree
    with pytest.raises(ConfigError, match=r"'\.\.' is not allowed"):
        action(f"delete:7d:{logs}/../outside/*.log", logs)
    with pytest.raises(ConfigError, match="not inside the directories"):
        action(f"delete:7d:{outside}/*.log", logs)
    (logs / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="not inside the directories"):
        action(f"delete:7d:{logs}/link/*.log", logs)
