"""``files``: delete or gzip old files matching a glob, only inside approved directories.

Binding: ``files:<delete|gzip>:<age>:<absolute glob>``, e.g.
``OPSWATCH_RECOVERY_DISK_FULL=files:gzip:7d:/var/log/myapp/*.log``. Files whose modification
time is older than ``<age>`` are deleted, or compressed to ``<name>.gz`` (same mode and
mtime, never overwriting) and then deleted.

``OPSWATCH_RECOVERY_FILES_DIRS`` (comma-separated absolute directories) is the fence: a glob
whose fixed part is not inside one of them, or that contains ``..``, fails start-up; at run
time every match is resolved (``realpath``) and anything outside them is refused, as is any
symlink (a link is never followed, deleted or compressed) and anything but a regular file.
Files are opened relative to their resolved directory with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import asyncio
import glob
import gzip
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from typing import ClassVar

import structlog

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.recovery.base import ActionContext, RecoveryError, plural

log = structlog.get_logger(__name__)

DIRS_VAR = f"{PREFIX}RECOVERY_FILES_DIRS"
MODES = ("delete", "gzip")


def inside(path: str, directories: tuple[str, ...]) -> bool:
    """Whether the resolved ``path`` is one of ``directories`` or below one (all resolved)."""
    return any(os.path.commonpath([path, d]) == d for d in directories)


@dataclass(frozen=True, slots=True)
class FilesAction:
    name: ClassVar[str] = "files"
    noun: ClassVar[str] = "cleanup"

    mode: str
    age_s: float
    age_text: str
    pattern: str
    directories: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, variable: str, args: str, env: Env) -> FilesAction:
        parts = args.split(":", 2)
        if len(parts) != 3 or parts[0] not in MODES:
            raise ConfigError(variable, "expected files:<delete|gzip>:<age such as 7d>:<glob>")
        mode, age, pattern = parts
        age_s = Env({variable: age}).duration(variable, 0.0, minimum=0.0)
        if not os.path.isabs(pattern):
            raise ConfigError(variable, f"expected an absolute glob, got {pattern!r}")
        if ".." in pattern.split(os.sep):
            raise ConfigError(variable, f"'..' is not allowed in {pattern!r}")
        directories = approved_directories(env)
        if not directories:
            raise ConfigError(variable, f"the files action needs {DIRS_VAR}")
        fixed = _fixed_part(pattern)
        if not inside(os.path.realpath(fixed), directories):
            raise ConfigError(variable, f"{pattern!r} is not inside the directories of {DIRS_VAR}")
        return cls(mode, age_s, age, pattern, directories)

    def target(self, ctx: ActionContext) -> str:
        del ctx
        return self.pattern

    def plan(self, ctx: ActionContext) -> str:
        del ctx
        return f"{self.mode} files matching {self.pattern} older than {self.age_text}"

    async def run(self, ctx: ActionContext) -> str:
        del ctx
        return await asyncio.to_thread(self._clean)

    def describe(self) -> dict[str, str]:
        return {
            "action": self.name,
            "mode": self.mode,
            "age": self.age_text,
            "glob": self.pattern,
            "directories": ",".join(self.directories),
        }

    def _clean(self) -> str:
        cutoff = time.time() - self.age_s
        done, refused, freed = 0, 0, 0
        for match in sorted(glob.glob(self.pattern, recursive="**" in self.pattern)):
            try:
                outcome = self._one(match, cutoff)
            except OSError as exc:
                raise RecoveryError(
                    f"{self.mode} {match}: {exc.strerror or type(exc).__name__}", transient=True
                ) from None
            if outcome is None:
                refused += 1
                log.warning("recovery_file_refused", path=match, glob=self.pattern)
            elif outcome >= 0:
                done += 1
                freed += outcome
        verb = "deleted" if self.mode == "delete" else "compressed"
        detail = f"{verb} {plural(done, 'file')} ({freed / 1048576:.1f} MiB freed)"
        if refused:
            detail += f"; refused {refused} outside {DIRS_VAR} or not regular files"
        return detail

    def _one(self, match: str, cutoff: float) -> int | None:
        """Bytes freed, -1 when the file is kept (too new), None when refused."""
        directory = os.path.realpath(os.path.dirname(match))
        name = os.path.basename(match)
        if not inside(directory, self.directories):
            return None
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                return -1  # a glob that matched a directory: not ours to touch, not a threat
            if not stat.S_ISREG(info.st_mode):
                return None  # symlinks (never followed), devices, sockets, fifos
            if info.st_mtime >= cutoff:
                return -1
            if self.mode == "gzip":
                if name.endswith(".gz"):
                    return -1
                freed = info.st_size - _compress(dir_fd, name, info)
            else:
                freed = info.st_size
            os.unlink(name, dir_fd=dir_fd)
            return max(freed, 0)
        finally:
            os.close(dir_fd)


def approved_directories(env: Env) -> tuple[str, ...]:
    raw = env.raw(DIRS_VAR) or ""
    directories = tuple(item.strip() for item in raw.split(",") if item.strip())
    for directory in directories:
        if not os.path.isabs(directory):
            raise ConfigError(DIRS_VAR, f"expected absolute directories, got {directory!r}")
    return tuple(os.path.realpath(d) for d in directories)


def _fixed_part(pattern: str) -> str:
    """The leading directories of a glob before its first wildcard component."""
    fixed: list[str] = []
    for part in pattern.split(os.sep)[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or os.sep


def _compress(dir_fd: int, name: str, info: os.stat_result) -> int:
    """Write ``name.gz`` beside ``name`` (exclusive create, same mode and times); its size."""
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        target = os.open(
            name + ".gz",
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
            stat.S_IMODE(info.st_mode),
            dir_fd=dir_fd,
        )
        try:
            with (
                os.fdopen(source, "rb", closefd=False) as reader,
                os.fdopen(target, "wb", closefd=False) as raw,
                gzip.GzipFile(
                    filename=name, mode="wb", fileobj=raw, mtime=int(info.st_mtime)
                ) as writer,
            ):
                shutil.copyfileobj(reader, writer, 1 << 20)
            os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
            return os.fstat(target).st_size
        except BaseException:
            os.unlink(name + ".gz", dir_fd=dir_fd)
            raise
        finally:
            os.close(target)
    finally:
        os.close(source)
