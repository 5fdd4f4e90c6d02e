"""Process check: is a service's process running, and what does it cost?

Environment
-----------
``OPSWATCH_PROCESS_TARGETS``
    Comma-separated ``name=MATCH`` items; names are lower-case (``[a-z][a-z0-9_-]*``). MATCH is
    one of:

    ``pidfile:/run/nginx.pid``      the process whose pid the file holds (absolute path);
    ``name:nginx``                  every process with exactly this name;
    ``cmdline:gunicorn.*app:app``   every process whose command line (arguments joined by
                                    spaces) matches this regular expression (``re.search``).

    e.g. ``web=name:nginx,app=cmdline:gunicorn.*myapp,db=pidfile:/run/postgresql/16-main.pid``.
    A comma followed by ``name=`` (or a newline) starts the next item, so a regex may hold
    other commas. Zombies and the daemon itself never match.
``OPSWATCH_PROCESS_<NAME>_CHILDREN``
    ``true`` to add every descendant of the matched processes to the resource sums (a
    gunicorn master and its workers). Default ``false``. Count, uptime and restarts always
    concern the matched processes only.

Samples (labels ``{target}``)
-----------------------------
``process.up``              1 when at least one process matches, else 0.
``process.count``           number of matching processes (also when 0).
``process.restarts_total``  restarts seen since the daemon started (also when 0): +1 when a
                            matched pid disappeared and a new one appeared, in the same cycle or
                            a later one. With several matched processes, any replaced process
                            counts (a worker respawned by its master too).
``process.cpu_percent``     summed CPU use since the previous cycle, 100 = one core. A process
                            seen for the first time contributes from its second cycle; absent
                            while no process has a baseline yet.
``process.rss_bytes``       summed resident memory.
``process.open_fds``        summed open file descriptors; absent when any is unreadable (the
                            daemon needs the same user or CAP_SYS_PTRACE).
``process.threads``         summed threads.
``process.uptime_seconds``  age of the oldest matched process.

The resource samples are emitted only when up. All psutil work runs in one worker thread.

Watching (pidfile targets)
--------------------------
:meth:`ProcessCollector.watch` reports a death within milliseconds instead of at the next cycle:
it holds a pidfd (``os.pidfd_open``) per watched pid in the event loop and polls only when no
process is running (or where pidfds are unavailable).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal

import psutil

from opswatch.collectors.base import Collector, CollectorError, Emit, up_sample
from opswatch.config import PREFIX, ConfigError, Env, target_variable
from opswatch.model import Clock, Sample

KIND = "process"
TARGETS_VAR = f"{PREFIX}PROCESS_TARGETS"
#: How often ``watch`` re-reads the pidfile while no process runs, and polls where pidfds are
#: unavailable.
WATCH_POLL_INTERVAL = 1.0

MatchKind = Literal["pidfile", "name", "cmdline"]


@dataclass(frozen=True, slots=True)
class Matcher:
    """How a target's processes are found."""

    kind: MatchKind
    value: str

    @classmethod
    def parse(cls, variable: str, spec: str) -> Matcher:
        kind, sep, value = spec.partition(":")
        value = value.strip()
        if kind == "pidfile" and sep and os.path.isabs(value):
            return cls("pidfile", value)
        if kind == "name" and sep and value:
            return cls("name", value)
        if kind == "cmdline" and sep and value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ConfigError(variable, f"bad regular expression {value!r}: {exc}") from None
            return cls("cmdline", value)
        raise ConfigError(
            variable,
            "expected pidfile:/ABSOLUTE/PATH, name:NAME or cmdline:REGEX, got " + repr(spec),
        )

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True, slots=True)
class ProcessSnapshot:
    """What one measurement found; ``None`` means "not measurable this cycle"."""

    pids: frozenset[int]
    cpu_percent: float | None = None
    rss_bytes: float | None = None
    open_fds: float | None = None
    threads: float | None = None
    oldest_start: float | None = None  # epoch seconds


class RestartCounter:
    """Counts restarts from successive sets of matched pids.

    A restart is a pid that disappeared followed by a new pid, in the same observation or a
    later one (a crash seen at one cycle and the respawn at the next count once).
    """

    def __init__(self) -> None:
        self.total = 0
        self._previous: frozenset[int] | None = None
        self._lost = False

    def update(self, pids: frozenset[int]) -> int:
        if self._previous is not None:
            if self._previous - pids:
                self._lost = True
            if pids - self._previous and self._lost:
                self.total += 1
                self._lost = False
        self._previous = pids
        return self.total


def process_samples(
    check: str, target: str, snapshot: ProcessSnapshot, restarts: int, at: datetime
) -> list[Sample]:
    labels = {"target": target}
    samples = [
        up_sample(KIND, check, bool(snapshot.pids), at, labels),
        Sample(check, f"{KIND}.count", float(len(snapshot.pids)), at, labels),
        Sample(check, f"{KIND}.restarts_total", float(restarts), at, labels),
    ]
    if not snapshot.pids:
        return samples
    uptime = None if snapshot.oldest_start is None else at.timestamp() - snapshot.oldest_start
    for metric, value in (
        ("cpu_percent", snapshot.cpu_percent),
        ("rss_bytes", snapshot.rss_bytes),
        ("open_fds", snapshot.open_fds),
        ("threads", snapshot.threads),
        ("uptime_seconds", uptime),
    ):
        if value is not None:
            samples.append(Sample(check, f"{KIND}.{metric}", value, at, labels))
    return samples


def read_pidfile(path: str) -> int | None:
    """The pid in a pidfile, or ``None`` when it is missing, unreadable or not a pid."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return None
    if not text or not text[0].isdigit() or int(text[0]) <= 0:
        return None
    return int(text[0])


@dataclass(frozen=True, slots=True)
class _Usage:
    """One process's resources; ``None`` where access was denied (or no CPU baseline yet)."""

    cpu: float | None
    rss: float | None
    fds: float | None
    threads: float | None
    started: float | None


def _usage(proc: psutil.Process, *, primed: bool) -> _Usage | None:
    """Measure one process (blocking); ``None`` when it is gone or a zombie."""

    def denied_is_none(read: Callable[[], float]) -> float | None:
        try:
            return read()
        except psutil.AccessDenied:
            return None

    try:
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            cpu = denied_is_none(lambda: proc.cpu_percent(interval=None))
            return _Usage(
                cpu=cpu if primed else None,  # the first call only sets the baseline
                rss=denied_is_none(lambda: proc.memory_info().rss),
                fds=denied_is_none(proc.num_fds),
                threads=denied_is_none(proc.num_threads),
                started=denied_is_none(proc.create_time),
            )
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:  # even the status is hidden: running, but unmeasurable
        return _Usage(None, None, None, None, None)


def _total(values: Iterable[float | None]) -> float | None:
    """The sum, or ``None`` when any value is unknown (a partial sum would mislead)."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _running(proc: psutil.Process) -> bool:
    """Alive, same process as when first seen (no pid reuse) and not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ProcessCollector:
    """Finds one target's processes and sums their resources."""

    name: ClassVar[str] = KIND

    def __init__(
        self, target: str, matcher: Matcher, clock: Clock, *, children: bool = False
    ) -> None:
        self.target = target
        self.matcher = matcher
        self.children = children
        self.check = f"{KIND}:{target}"
        self._clock = clock
        self._pattern = re.compile(matcher.value) if matcher.kind == "cmdline" else None
        # Process objects kept across cycles: psutil's cpu_percent measures from the previous
        # call on the same object.
        self._procs: dict[int, psutil.Process] = {}
        self._restarts = RestartCounter()
        self._lock = asyncio.Lock()

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[Collector]:
        collectors: list[Collector] = []
        for name, spec in env.specs(TARGETS_VAR, what="MATCH"):
            matcher = Matcher.parse(TARGETS_VAR, spec)
            children = env.boolean(target_variable(KIND, name, "CHILDREN"), False)
            collectors.append(cls(name, matcher, clock, children=children))
        return collectors

    async def collect(self) -> list[Sample]:
        async with self._lock:  # the scheduler and watch() may both collect
            snapshot = await asyncio.to_thread(self._measure)
            restarts = self._restarts.update(snapshot.pids)
            return process_samples(self.check, self.target, snapshot, restarts, self._clock())

    async def close(self) -> None:
        self._procs.clear()

    def describe(self) -> dict[str, str]:
        return {"match": str(self.matcher), "children": str(self.children).lower()}

    # --- measuring (runs in a worker thread) ---------------------------------------------------

    def _match(self) -> list[psutil.Process]:
        own = os.getpid()
        if self.matcher.kind == "pidfile":
            pid = read_pidfile(self.matcher.value)
            if pid is None or pid == own:
                return []
            try:
                proc = psutil.Process(pid)
            except psutil.Error:
                return []
            return [proc] if _running(proc) else []
        found: list[psutil.Process] = []
        attrs = ["name", "status"] if self._pattern is None else ["cmdline", "status"]
        for proc in psutil.process_iter(attrs):
            info = proc.info
            if proc.pid == own or info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if self._pattern is None:
                if info["name"] == self.matcher.value:
                    found.append(proc)
            elif info["cmdline"] and self._pattern.search(" ".join(info["cmdline"])):
                found.append(proc)
        return found

    def _measure(self) -> ProcessSnapshot:
        roots = self._match()
        members: dict[int, psutil.Process] = {p.pid: p for p in roots}
        if self.children:
            for root in roots:
                try:
                    members.update((c.pid, c) for c in root.children(recursive=True))
                except psutil.Error:
                    continue
        usages: dict[int, _Usage] = {}
        kept: dict[int, psutil.Process] = {}
        for pid, fresh in members.items():
            cached = self._procs.get(pid)
            proc = cached if cached is not None and cached == fresh else fresh
            usage = _usage(proc, primed=proc is cached)
            if usage is not None:
                usages[pid] = usage
                kept[pid] = proc
        self._procs = kept
        root_pids = frozenset(p.pid for p in roots if p.pid in usages)
        cpu = [u.cpu for u in usages.values() if u.cpu is not None]
        starts = [u.started for pid, u in usages.items() if pid in root_pids and u.started]
        return ProcessSnapshot(
            pids=root_pids,
            cpu_percent=sum(cpu) if cpu else None,
            rss_bytes=_total(u.rss for u in usages.values()),
            open_fds=_total(u.fds for u in usages.values()),
            threads=_total(u.threads for u in usages.values()),
            oldest_start=min(starts) if starts else None,
        )

    # --- event-driven death detection ---------------------------------------------------------

    @property
    def supports_watch(self) -> bool:
        return self.matcher.kind == "pidfile"

    async def watch(self, emit: Emit, *, poll_interval: float = WATCH_POLL_INTERVAL) -> None:
        """Report a change of the pidfile's process as soon as it happens; runs until cancelled.

        While the pidfile names a running process, a pidfd for it is registered with the event
        loop (``loop.add_reader``); when the process exits, ``emit`` gets a fresh
        :meth:`collect` result (``process.up`` = 0 unless a new process already runs) within
        milliseconds, and the watch re-arms on the pid now in the pidfile. While no process
        runs, the pidfile is re-read every ``poll_interval`` seconds and ``emit`` gets a fresh
        result as soon as one does. Where ``os.pidfd_open`` is unavailable the pid is polled
        every ``poll_interval`` seconds instead.

        Only for ``pidfile`` targets (:attr:`supports_watch`): other targets raise
        :class:`CollectorError`. Nothing is emitted at start (the scheduled collect reports the
        initial state). An exception raised by ``emit`` ends the watch and propagates. Cancel
        the task to stop it: the pidfd is closed and the reader removed.
        """
        if not self.supports_watch:
            raise CollectorError(f"{self.check}: watch needs a pidfile target")
        reported_up: bool | None = None
        while True:
            proc = self._pidfile_process()
            if proc is None:
                if reported_up:
                    reported_up = await self._emit(emit)
                await asyncio.sleep(poll_interval)
                continue
            if reported_up is False:
                reported_up = await self._emit(emit)
            await _until_exit(proc, poll_interval)
            reported_up = await self._emit(emit)

    def _pidfile_process(self) -> psutil.Process | None:
        """The running process named by the pidfile (a small read: fine in the event loop)."""
        pid = read_pidfile(self.matcher.value)
        if pid is None or pid == os.getpid():
            return None
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return None
        return proc if _running(proc) else None

    async def _emit(self, emit: Emit) -> bool:
        samples = await self.collect()
        await emit(samples)
        return any(s.metric == f"{KIND}.up" and s.value == 1.0 for s in samples)


async def _until_exit(proc: psutil.Process, poll_interval: float) -> None:
    """Return once ``proc`` has exited: a pidfd in the event loop, else polling."""
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return
    except (OSError, AttributeError):  # no pidfd_open (old kernel, seccomp, not Linux)
        while True:
            if not _running(proc):
                return
            await asyncio.sleep(poll_interval)
    try:
        if not _running(proc):  # the pid was reused between the check and pidfd_open
            return
        loop = asyncio.get_running_loop()
        exited = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, on_exit)
        try:
            await exited
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)
