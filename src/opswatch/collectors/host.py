"""The ``host`` collector: CPU, memory, swap, load, disks, network rates and TCP states.

All blocking reads (psutil, ``os.statvfs``, ``/proc/net/tcp*``) happen in one
``asyncio.to_thread`` call per cycle that returns a :class:`HostSnapshot`; everything else
(percentages, rates, samples) is computed from snapshots by pure functions.

Disks. Only mounts of real block devices are watched: ``psutil.disk_partitions(all=False)``
drops pseudo and network filesystems (tmpfs, proc, cgroup, nfs, cifs, ...), so ``statvfs``
never hangs on a dead NFS server. One exception: inside a container the root filesystem is
usually ``overlay``, which psutil counts as a pseudo filesystem; a full container root still
breaks the service, so ``/`` is always watched, taken from the full mount table when psutil
left it out. Mounts are deduplicated by mountpoint (the last mount, the visible one, wins).

``OPSWATCH_HOST_MOUNTPOINTS_EXCLUDE``
    Comma-separated glob patterns of mountpoints to skip (default ``/snap/*,/boot/efi``:
    snap images are read-only and always full, the EFI partition is tiny and static).
``OPSWATCH_HOST_FSTYPES_EXCLUDE``
    Comma-separated filesystem types to skip (default ``squashfs,iso9660,udf``: read-only
    images and optical media, which are full by construction). ``overlay`` is deliberately
    not excluded (see above). ``none`` excludes nothing in either variable.

Network rates sum every interface except loopback, from counter deltas over the injected
clock's elapsed time; the first run emits no rate, and a counter that went backwards
(interface re-created) counts from zero, as Prometheus' ``rate()`` does.

TCP states are counted from ``/proc/net/tcp`` and ``/proc/net/tcp6`` (this network
namespace only), not ``psutil.net_connections()`` which walks every process's descriptors.
Every known state is emitted, zero included, so that a rule on ``time_wait`` sees it drop.
Reading those files is not free either: the kernel walks its whole established-connection
hash table, sized by RAM, not by connections (measured ~4 ms per file with 262,144 buckets on
a 23 GiB VM, i.e. most of this collector's cost). So the states are measured at most every

``OPSWATCH_HOST_TCP_STATES_INTERVAL`` (duration, default ``5m``; ``0`` = every run)
    ``host.tcp_connections`` samples appear only in the runs that measured them (no stale
    values are repeated); rules see them every few runs, which suits slow leaks such as
    ``close_wait`` growth.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar, NamedTuple

import psutil
import structlog

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Clock, Sample

from .base import up_sample

log = structlog.get_logger(__name__)

KIND = "host"
ENV_PREFIX = f"{PREFIX}HOST_"
MOUNTPOINTS_EXCLUDE = f"{ENV_PREFIX}MOUNTPOINTS_EXCLUDE"
FSTYPES_EXCLUDE = f"{ENV_PREFIX}FSTYPES_EXCLUDE"
DEFAULT_MOUNTPOINTS_EXCLUDE = ("/snap/*", "/boot/efi")
DEFAULT_FSTYPES_EXCLUDE = ("squashfs", "iso9660", "udf")
TCP_STATES_INTERVAL = f"{ENV_PREFIX}TCP_STATES_INTERVAL"
DEFAULT_TCP_STATES_INTERVAL = 300.0
#: shortest CPU measurement window (seconds); the kernel's tick is 10 ms
MIN_CPU_WINDOW = 0.1

TCP_FILES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
#: kernel ``include/net/tcp_states.h``, as printed in hex in /proc/net/tcp
TCP_STATES: Mapping[str, str] = {
    "01": "established",
    "02": "syn_sent",
    "03": "syn_recv",
    "04": "fin_wait1",
    "05": "fin_wait2",
    "06": "time_wait",
    "07": "close",
    "08": "close_wait",
    "09": "last_ack",
    "0A": "listen",
    "0B": "closing",
    "0C": "new_syn_recv",
}


class Partition(NamedTuple):
    device: str
    mountpoint: str
    fstype: str


class NicCounters(NamedTuple):
    bytes_recv: int
    bytes_sent: int
    errors: int


class NetRates(NamedTuple):
    bytes_recv_per_s: float
    bytes_sent_per_s: float
    errors_per_s: float


@dataclass(frozen=True, slots=True)
class DiskUsage:
    partition: Partition
    used_percent: float
    #: None when the filesystem reports no inode count (btrfs, vfat, ...)
    inodes_used_percent: float | None


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Everything one cycle reads from the system, taken in one worker-thread call."""

    cpu_times: Mapping[str, float]
    memory_percent: float
    swap_percent: float
    load: tuple[float, float, float]
    cpu_count: int
    disks: tuple[DiskUsage, ...]
    nics: Mapping[str, NicCounters]
    #: None when not measured this run, or /proc/net/tcp is absent (not Linux)
    tcp_states: Mapping[str, int] | None
    disk_errors: tuple[str, ...] = field(default=())


# --- pure functions ---------------------------------------------------------------------


def parse_tcp_states(text: str) -> dict[str, int]:
    """Count sockets by state in the text of ``/proc/net/tcp`` or ``/proc/net/tcp6``.

    The header line and blank lines are skipped; an unknown state code counts as ``unknown``.
    """
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(None, 4)
        if len(fields) < 4 or not fields[0].endswith(":"):
            continue  # header ("sl local_address ...") or blank
        state = TCP_STATES.get(fields[3].upper(), "unknown")
        counts[state] = counts.get(state, 0) + 1
    return counts


def count_tcp_states(texts: Iterable[str]) -> dict[str, int]:
    """Every known state (zero included) plus ``unknown`` if seen, summed over the texts."""
    totals = dict.fromkeys(TCP_STATES.values(), 0)
    for text in texts:
        for state, count in parse_tcp_states(text).items():
            totals[state] = totals.get(state, 0) + count
    return totals


def cpu_busy_percent(before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    """Busy CPU share between two ``psutil.cpu_times()`` readings, psutil's formula.

    Linux's ``guest`` times are already inside ``user``/``nice`` so they are not added twice;
    ``idle`` and ``iowait`` are idle. None when no time passed.
    """
    deltas = {k: max(0.0, after[k] - before.get(k, 0.0)) for k in after}
    total = sum(deltas.values()) - deltas.get("guest", 0.0) - deltas.get("guest_nice", 0.0)
    if total <= 0:
        return None
    busy = total - deltas.get("idle", 0.0) - deltas.get("iowait", 0.0)
    return min(100.0, max(0.0, busy / total * 100.0))


def counter_delta(before: int, after: int) -> int:
    """Increase of a monotonic counter; after a reset the counter restarted from zero."""
    return after - before if after >= before else after


def net_rates(
    before: Mapping[str, NicCounters], after: Mapping[str, NicCounters], elapsed: float
) -> NetRates | None:
    """Per-second totals over interfaces present in both readings; None if no time passed."""
    if elapsed <= 0:
        return None
    recv = sent = errors = 0
    for nic, now in after.items():
        then = before.get(nic)
        if then is None:
            continue  # appeared since the last run: no baseline yet
        recv += counter_delta(then.bytes_recv, now.bytes_recv)
        sent += counter_delta(then.bytes_sent, now.bytes_sent)
        errors += counter_delta(then.errors, now.errors)
    return NetRates(recv / elapsed, sent / elapsed, errors / elapsed)


def with_root(real: Sequence[Partition], every: Sequence[Partition]) -> list[Partition]:
    """``real`` plus the ``/`` mount from ``every`` when ``real`` lacks it (container overlay)."""
    if any(p.mountpoint == "/" for p in real):
        return list(real)
    roots = [p for p in every if p.mountpoint == "/"]
    return [roots[-1], *real] if roots else list(real)


def select_partitions(
    partitions: Iterable[Partition],
    *,
    mountpoints_exclude: Sequence[str],
    fstypes_exclude: Sequence[str],
) -> list[Partition]:
    """Drop excluded mountpoints and types; one entry per mountpoint, the last mount wins."""
    chosen: dict[str, Partition] = {}
    for part in partitions:
        if part.fstype.lower() in fstypes_exclude:
            continue
        if any(fnmatch.fnmatchcase(part.mountpoint, pattern) for pattern in mountpoints_exclude):
            continue
        chosen.pop(part.mountpoint, None)
        chosen[part.mountpoint] = part
    return list(chosen.values())


def disk_usage(partition: Partition, stat: os.statvfs_result) -> DiskUsage | None:
    """``df``'s figures: used / (used + available to unprivileged users), inodes likewise."""
    if stat.f_blocks == 0:
        return None
    used = stat.f_blocks - stat.f_bfree
    usable = used + stat.f_bavail
    used_percent = used / usable * 100.0 if usable > 0 else 100.0
    inodes: float | None = None
    if stat.f_files > 0:
        inodes = (stat.f_files - stat.f_ffree) / stat.f_files * 100.0
    return DiskUsage(partition, used_percent, inodes)


# --- the collector --------------------------------------------------------------------


def _patterns(env: Env, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = env.raw(name)
    if value is None:
        return default
    if value.lower() == "none":
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


class HostCollector:
    """psutil-based host metrics; one instance, check name ``host``."""

    name: ClassVar[str] = KIND

    def __init__(
        self,
        clock: Clock,
        *,
        mountpoints_exclude: tuple[str, ...] = DEFAULT_MOUNTPOINTS_EXCLUDE,
        fstypes_exclude: tuple[str, ...] = DEFAULT_FSTYPES_EXCLUDE,
        tcp_states_interval: float = DEFAULT_TCP_STATES_INTERVAL,
    ) -> None:
        self.check = KIND
        self._clock = clock
        self._mountpoints_exclude = mountpoints_exclude
        self._fstypes_exclude = tuple(t.lower() for t in fstypes_exclude)
        # Our own CPU baseline: psutil.cpu_percent(interval=None) keeps its baseline per
        # *thread*, and to_thread may use a different worker thread every cycle.
        self._cpu_before: Mapping[str, float] = psutil.cpu_times()._asdict()
        self._cpu_before_at = time.monotonic()
        self._nics_before: Mapping[str, NicCounters] | None = None
        self._nics_at: datetime | None = None
        self._tcp_states_interval = tcp_states_interval
        self._tcp_at: datetime | None = None

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[HostCollector]:
        mountpoints = _patterns(env, MOUNTPOINTS_EXCLUDE, DEFAULT_MOUNTPOINTS_EXCLUDE)
        for pattern in mountpoints:
            if not pattern.startswith(("/", "*")):
                raise ConfigError(
                    MOUNTPOINTS_EXCLUDE,
                    f"expected absolute mountpoint glob patterns such as /snap/*, got {pattern!r}",
                )
        fstypes = _patterns(env, FSTYPES_EXCLUDE, DEFAULT_FSTYPES_EXCLUDE)
        for fstype in fstypes:
            if not fstype.replace(".", "").replace("_", "").replace("-", "").isalnum():
                raise ConfigError(
                    FSTYPES_EXCLUDE, f"expected filesystem type names such as ext4, got {fstype!r}"
                )
        tcp_interval = env.duration(TCP_STATES_INTERVAL, DEFAULT_TCP_STATES_INTERVAL, minimum=0)
        return (
            cls(
                clock,
                mountpoints_exclude=mountpoints,
                fstypes_exclude=fstypes,
                tcp_states_interval=tcp_interval,
            ),
        )

    def describe(self) -> dict[str, str]:
        return {
            "mountpoints_exclude": ",".join(self._mountpoints_exclude) or "none",
            "fstypes_exclude": ",".join(self._fstypes_exclude) or "none",
            "tcp_states_interval": f"{self._tcp_states_interval:g}s",
        }

    async def close(self) -> None:
        return None

    async def collect(self) -> list[Sample]:
        at = self._clock()
        with_tcp = (
            self._tcp_at is None
            or (at - self._tcp_at).total_seconds() >= self._tcp_states_interval
            or at < self._tcp_at  # the clock went back: measure rather than wait
        )
        snap = await asyncio.to_thread(self.snapshot, with_tcp=with_tcp)
        if with_tcp:
            self._tcp_at = at
        if snap.disk_errors:
            log.debug("host_disks_skipped", check=self.check, mountpoints=snap.disk_errors)
        return self._samples(snap, at)

    def snapshot(self, *, with_tcp: bool = True) -> HostSnapshot:
        """Read the system once (blocking; runs in a worker thread)."""
        real = [Partition(p.device, p.mountpoint, p.fstype) for p in psutil.disk_partitions()]
        if not any(p.mountpoint == "/" for p in real):
            every = [
                Partition(p.device, p.mountpoint, p.fstype)
                for p in psutil.disk_partitions(all=True)
            ]
            real = with_root(real, every)
        disks: list[DiskUsage] = []
        errors: list[str] = []
        for part in select_partitions(
            real,
            mountpoints_exclude=self._mountpoints_exclude,
            fstypes_exclude=self._fstypes_exclude,
        ):
            try:
                usage = disk_usage(part, os.statvfs(part.mountpoint))
            except OSError:
                errors.append(part.mountpoint)
                continue
            if usage is not None:
                disks.append(usage)
        nics = {
            nic: NicCounters(c.bytes_recv, c.bytes_sent, c.errin + c.errout)
            for nic, c in psutil.net_io_counters(pernic=True).items()
            if nic != "lo"
        }
        # The first run may follow construction within milliseconds (``opswatch once``):
        # give the CPU reading a window of at least MIN_CPU_WINDOW (in this worker thread).
        time.sleep(max(0.0, MIN_CPU_WINDOW - (time.monotonic() - self._cpu_before_at)))
        return HostSnapshot(
            cpu_times=psutil.cpu_times()._asdict(),
            memory_percent=psutil.virtual_memory().percent,
            swap_percent=psutil.swap_memory().percent,
            load=os.getloadavg(),
            cpu_count=psutil.cpu_count() or 1,
            disks=tuple(disks),
            nics=nics,
            tcp_states=_read_tcp_states() if with_tcp else None,
            disk_errors=tuple(errors),
        )

    def _samples(self, snap: HostSnapshot, at: datetime) -> list[Sample]:
        def sample(metric: str, value: float, labels: Mapping[str, str] | None = None) -> Sample:
            return Sample(self.check, f"{KIND}.{metric}", float(value), at, labels or {})

        samples = [up_sample(KIND, self.check, True, at, {})]
        cpu = cpu_busy_percent(self._cpu_before, snap.cpu_times)
        self._cpu_before = snap.cpu_times
        self._cpu_before_at = time.monotonic()
        if cpu is not None:
            samples.append(sample("cpu_percent", cpu))
        samples += [
            sample("memory_percent", snap.memory_percent),
            sample("swap_percent", snap.swap_percent),
            sample("load_per_core", snap.load[0] / snap.cpu_count),
            sample("load5_per_core", snap.load[1] / snap.cpu_count),
        ]
        for disk in snap.disks:
            labels = disk.partition._asdict()
            samples.append(sample("disk_used_percent", disk.used_percent, labels))
            if disk.inodes_used_percent is not None:
                samples.append(sample("inodes_used_percent", disk.inodes_used_percent, labels))

        if self._nics_before is not None and self._nics_at is not None:
            rates = net_rates(self._nics_before, snap.nics, (at - self._nics_at).total_seconds())
            if rates is not None:
                samples += [
                    sample("net_bytes_recv_per_s", rates.bytes_recv_per_s),
                    sample("net_bytes_sent_per_s", rates.bytes_sent_per_s),
                    sample("net_errors_per_s", rates.errors_per_s),
                ]
        self._nics_before, self._nics_at = snap.nics, at

        if snap.tcp_states is not None:
            samples += [
                sample("tcp_connections", count, {"state": state})
                for state, count in snap.tcp_states.items()
            ]
        return samples


def _read_tcp_states() -> dict[str, int] | None:
    texts: list[str] = []
    for path in TCP_FILES:
        try:
            texts.append(path.read_text(encoding="ascii"))
        except FileNotFoundError:
            continue  # no IPv6 in this kernel, or not Linux
    return count_tcp_states(texts) if texts else None
