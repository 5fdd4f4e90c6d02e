"""The process collector and its pidfd watch, against real child processes."""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from opswatch.collectors.base import CollectorError
from opswatch.collectors.process import (
    Matcher,
    ProcessCollector,
    ProcessSnapshot,
    RestartCounter,
    process_samples,
    read_pidfile,
)
from opswatch.config import ConfigError, Env
from opswatch.model import Sample
from tests.conftest import ManualClock

Spawn = Callable[..., Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start real child processes; kill and reap whatever is left at the end."""
    children: list[asyncio.subprocess.Process] = []

    async def start(*argv: str) -> asyncio.subprocess.Process:
        child = await asyncio.create_subprocess_exec(*argv)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.returncode is None:
            child.kill()
        await child.wait()


def values(samples: list[Sample]) -> dict[str, float]:
    return {s.metric: s.value for s in samples}


def pidfile_collector(path: Path, clock: ManualClock, **kwargs: bool) -> ProcessCollector:
    return ProcessCollector("svc", Matcher("pidfile", str(path)), clock, **kwargs)


def wait_exited(pid: int, timeout: float = 2.0) -> None:
    """Block until ``pid`` has exited (zombie or reaped), via a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], timeout)[0], f"pid {pid} did not exit"
    finally:
        os.close(fd)


def start_unreaped(*argv: str) -> subprocess.Popen[bytes]:
    """A child that nobody reaps until the test calls ``wait()`` (asyncio's would be)."""
    return subprocess.Popen(argv)


def watched(collector: ProcessCollector, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set once the collector's watch has found the pidfile's running process and
    gone on to wait for its exit (the pidfd is armed, or the poll has its process): the point
    after which killing the process must be reported."""
    found = asyncio.Event()
    lookup = collector._pidfile_process

    def recording() -> psutil.Process | None:
        process = lookup()
        if process is not None:
            # the watch does not yield between this return and registering the pidfd, so
            # a waiter woken by the event runs only once the watch waits for the exit
            found.set()
        return process

    monkeypatch.setattr(collector, "_pidfile_process", recording)
    return found


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- collect --------------------------------------------------------------------------------


async def test_measures_the_process_named_by_a_pidfile(
    tmp_path: Path, clock: ManualClock, spawn: Spawn
) -> None:
    child = await spawn("sleep", "60")
    (tmp_path / "svc.pid").write_text(f"{child.pid}\n")
    started = psutil.Process(child.pid).create_time()
    clock.now = datetime.fromtimestamp(started + 5, UTC)
    collector = pidfile_collector(tmp_path / "svc.pid", clock)

    samples = await collector.collect()

    got = values(samples)
    assert got["process.up"] == 1.0
    assert got["process.count"] == 1.0
    assert got["process.restarts_total"] == 0.0
    assert got["process.rss_bytes"] > 0
    assert got["process.threads"] == 1.0
    assert got["process.open_fds"] >= 3  # stdin, stdout, stderr
    assert got["process.uptime_seconds"] == pytest.approx(5.0, abs=1e-5)
    assert "process.cpu_percent" not in got  # no baseline yet
    assert all(s.labels == {"target": "svc"} and s.check == "process:svc" for s in samples)


async def test_reports_cpu_from_the_second_cycle_on(
    tmp_path: Path, clock: ManualClock, spawn: Spawn
) -> None:
    child = await spawn("sleep", "60")
    (tmp_path / "svc.pid").write_text(str(child.pid))
    collector = pidfile_collector(tmp_path / "svc.pid", clock)

    await collector.collect()
    second = values(await collector.collect())

    assert 0.0 <= second["process.cpu_percent"] < 50.0


async def test_matches_every_process_with_an_exact_name(
    tmp_path: Path, clock: ManualClock, spawn: Spawn
) -> None:
    sleeper = tmp_path / "ow-sleeper"
    sleeper.symlink_to("/bin/sleep")
    await spawn(str(sleeper), "60")
    await spawn(str(sleeper), "60")
    await spawn("sleep", "60")  # another name: not counted
    collector = ProcessCollector("sleepers", Matcher("name", "ow-sleeper"), clock)

    got = values(await collector.collect())

    assert (got["process.up"], got["process.count"], got["process.threads"]) == (1.0, 2.0, 2.0)


async def test_matches_processes_by_command_line_regex(clock: ManualClock, spawn: Spawn) -> None:
    await spawn("sleep", "987.125")
    await spawn("sleep", "987.5")
    collector = ProcessCollector("x", Matcher("cmdline", r"^sleep 987\.1\d+$"), clock)

    got = values(await collector.collect())

    assert got["process.count"] == 1.0


async def test_sums_descendants_only_when_asked(
    tmp_path: Path, clock: ManualClock, spawn: Spawn
) -> None:
    fifo = tmp_path / "ready"
    os.mkfifo(fifo)
    parent = await spawn("sh", "-c", f"sleep 60 & sleep 60 & echo ready > {fifo}; wait")
    await asyncio.wait_for(asyncio.to_thread(fifo.read_text), 5)  # both children started
    (tmp_path / "svc.pid").write_text(str(parent.pid))

    alone = values(await pidfile_collector(tmp_path / "svc.pid", clock).collect())
    family = values(await pidfile_collector(tmp_path / "svc.pid", clock, children=True).collect())

    assert (alone["process.count"], alone["process.threads"]) == (1.0, 1.0)
    assert (family["process.count"], family["process.threads"]) == (1.0, 3.0)
    assert family["process.rss_bytes"] > alone["process.rss_bytes"]


@pytest.mark.parametrize("content", [None, "", "garbage\n", "-5", "0"])
async def test_reports_down_when_pidfile_is_missing_or_invalid(
    tmp_path: Path, clock: ManualClock, content: str | None
) -> None:
    if content is not None:
        (tmp_path / "svc.pid").write_text(content)
    collector = pidfile_collector(tmp_path / "svc.pid", clock)

    assert values(await collector.collect()) == {
        "process.up": 0.0,
        "process.count": 0.0,
        "process.restarts_total": 0.0,
    }


async def test_reports_down_when_pidfile_names_a_zombie(tmp_path: Path, clock: ManualClock) -> None:
    child = start_unreaped("sleep", "60")
    try:
        child.kill()
        wait_exited(child.pid)  # exited but not reaped: a zombie
        (tmp_path / "svc.pid").write_text(str(child.pid))

        got = values(await pidfile_collector(tmp_path / "svc.pid", clock).collect())
    finally:
        child.wait()

    assert got["process.up"] == 0.0


async def test_counts_a_restart_when_a_new_pid_replaces_a_dead_one(
    tmp_path: Path, clock: ManualClock, spawn: Spawn
) -> None:
    pidfile = tmp_path / "svc.pid"
    collector = pidfile_collector(pidfile, clock)
    first = await spawn("sleep", "60")
    pidfile.write_text(str(first.pid))
    await collector.collect()

    first.kill()
    await first.wait()
    down = values(await collector.collect())
    second = await spawn("sleep", "60")
    pidfile.write_text(str(second.pid))
    up_again = values(await collector.collect())

    assert (down["process.up"], down["process.restarts_total"]) == (0.0, 0.0)
    assert (up_again["process.up"], up_again["process.restarts_total"]) == (1.0, 1.0)


async def test_never_matches_the_daemon_itself(tmp_path: Path, clock: ManualClock) -> None:
    (tmp_path / "svc.pid").write_text(str(os.getpid()))
    by_cmdline = ProcessCollector("me", Matcher("cmdline", "pytest"), clock)
    pidfile = pidfile_collector(tmp_path / "svc.pid", clock)

    assert values(await pidfile.collect())["process.up"] == 0.0
    assert os.getpid() not in {p.pid for p in by_cmdline._match()}


# --- pure parts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observations", "restarts"),
    [
        ([{1}, {1}, {1}], 0),
        ([{1}, {2}], 1),  # replaced between two cycles
        ([{1}, set(), {2}], 1),  # crash seen, respawn seen a cycle later
        ([{1}, set(), set(), {2}, {3}], 2),
        ([set(), {1}], 0),  # first start is not a restart
        ([{1, 2}, {1, 2, 3}], 0),  # a process added, none lost
        ([{1, 2}, {1}, {1, 3}], 1),  # a worker replaced
    ],
)
def test_counts_restarts_from_successive_pid_sets(
    observations: list[set[int]], restarts: int
) -> None:
    counter = RestartCounter()

    for pids in observations:
        counter.update(frozenset(pids))

    assert counter.total == restarts


def test_omits_resource_samples_that_could_not_be_measured(clock: ManualClock) -> None:
    snapshot = ProcessSnapshot(pids=frozenset({7}), rss_bytes=1024.0, threads=4.0)

    samples = process_samples("process:x", "x", snapshot, 2, clock.now)

    assert values(samples) == {
        "process.up": 1.0,
        "process.count": 1.0,
        "process.restarts_total": 2.0,
        "process.rss_bytes": 1024.0,
        "process.threads": 4.0,
    }


def test_reads_the_first_word_of_a_pidfile(tmp_path: Path) -> None:
    (tmp_path / "a.pid").write_text("  1234\nextra\n")

    assert read_pidfile(str(tmp_path / "a.pid")) == 1234


# --- watch ----------------------------------------------------------------------------------


async def test_watch_emits_down_within_milliseconds_of_the_process_dying(
    tmp_path: Path,
    clock: ManualClock,
    spawn: Spawn,
    record_property: Callable[[str, object], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    child = await spawn("sleep", "60")
    (tmp_path / "svc.pid").write_text(str(child.pid))
    collector = pidfile_collector(tmp_path / "svc.pid", clock)
    emitted: list[list[Sample]] = []
    emitted_at: list[float] = []
    event = asyncio.Event()

    async def emit(samples: list[Sample]) -> None:
        emitted_at.append(time.perf_counter())
        emitted.append(samples)
        event.set()

    fds_before = open_fd_count()
    armed = watched(collector, monkeypatch)
    watcher = asyncio.create_task(collector.watch(emit))
    await asyncio.wait_for(armed.wait(), 2)  # the pidfd is armed
    killed_at = time.perf_counter()
    child.kill()
    await asyncio.wait_for(event.wait(), 2)
    latency = emitted_at[0] - killed_at
    record_property("kill_to_emit_seconds", latency)

    watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watcher
    assert values(emitted[0])["process.up"] == 0.0
    assert latency < 1.0
    assert open_fd_count() == fds_before  # the pidfd was closed


async def test_watch_rearms_on_the_new_pid_and_reports_each_change(
    tmp_path: Path, clock: ManualClock, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "svc.pid"
    first = await spawn("sleep", "60")
    pidfile.write_text(str(first.pid))
    collector = pidfile_collector(pidfile, clock)
    await collector.collect()  # the scheduler's first cycle
    updates: asyncio.Queue[list[Sample]] = asyncio.Queue()
    armed = watched(collector, monkeypatch)
    watcher = asyncio.create_task(collector.watch(updates.put, poll_interval=0.01))
    await asyncio.wait_for(armed.wait(), 2)

    first.kill()
    down = values(await asyncio.wait_for(updates.get(), 2))
    second = await spawn("sleep", "60")
    pidfile.write_text(str(second.pid))
    up = values(await asyncio.wait_for(updates.get(), 2))
    second.kill()
    down_again = values(await asyncio.wait_for(updates.get(), 2))
    watcher.cancel()

    assert [down["process.up"], up["process.up"], down_again["process.up"]] == [0.0, 1.0, 0.0]
    assert up["process.restarts_total"] == 1.0
    with pytest.raises(asyncio.CancelledError):
        await watcher


async def test_watch_polls_where_pidfds_are_unavailable(
    tmp_path: Path, clock: ManualClock, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "pidfd_open")
    child = await spawn("sleep", "60")
    (tmp_path / "svc.pid").write_text(str(child.pid))
    collector = pidfile_collector(tmp_path / "svc.pid", clock)
    updates: asyncio.Queue[list[Sample]] = asyncio.Queue()
    armed = watched(collector, monkeypatch)
    watcher = asyncio.create_task(collector.watch(updates.put, poll_interval=0.01))
    await asyncio.wait_for(armed.wait(), 2)

    child.kill()
    down = values(await asyncio.wait_for(updates.get(), 2))
    watcher.cancel()

    assert down["process.up"] == 0.0
    with pytest.raises(asyncio.CancelledError):
        await watcher


async def test_watch_refuses_targets_without_a_pidfile(clock: ManualClock) -> None:
    collector = ProcessCollector("web", Matcher("name", "nginx"), clock)

    async def emit(samples: list[Sample]) -> None:
        raise AssertionError("never called")

    assert not collector.supports_watch
    with pytest.raises(CollectorError):
        await collector.watch(emit)


# --- configuration --------------------------------------------------------------------------


def test_builds_one_collector_per_target(clock: ManualClock) -> None:
    env = Env(
        {
            "OPSWATCH_PROCESS_TARGETS": (
                "web=name:nginx, app=cmdline:gunicorn.*app{1,2}:app,db=pidfile:/run/pg.pid"
            ),
            "OPSWATCH_PROCESS_APP_CHILDREN": "yes",
        }
    )

    collectors = ProcessCollector.from_env(env, clock)

    assert [(c.check, c.describe()) for c in collectors] == [
        ("process:web", {"match": "name:nginx", "children": "false"}),
        ("process:app", {"match": "cmdline:gunicorn.*app{1,2}:app", "children": "true"}),
        ("process:db", {"match": "pidfile:/run/pg.pid", "children": "false"}),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "web=nginx",
        "web=name:",
        "web=pidfile:run/x.pid",
        "web=cmdline:(unclosed",
        "web=exe:/usr/sbin/nginx",
        "name:nginx",
    ],
)
def test_rejects_malformed_targets_naming_the_variable(value: str, clock: ManualClock) -> None:
    with pytest.raises(ConfigError) as excinfo:
        ProcessCollector.from_env(Env({"OPSWATCH_PROCESS_TARGETS": value}), clock)

    assert excinfo.value.variable == "OPSWATCH_PROCESS_TARGETS"


def test_rejects_malformed_children_flag_naming_its_variable(clock: ManualClock) -> None:
    env = Env(
        {"OPSWATCH_PROCESS_TARGETS": "my-app=name:x", "OPSWATCH_PROCESS_MY_APP_CHILDREN": "maybe"}
    )

    with pytest.raises(ConfigError) as excinfo:
        ProcessCollector.from_env(env, clock)

    assert excinfo.value.variable == "OPSWATCH_PROCESS_MY_APP_CHILDREN"
