"""The host collector against this real machine, and its pure parts on captured inputs."""

from __future__ import annotations

import os
import socket

import psutil
import pytest

from opswatch.collectors.host import (
    HostCollector,
    NicCounters,
    Partition,
    count_tcp_states,
    cpu_busy_percent,
    net_rates,
    parse_tcp_states,
    select_partitions,
    with_root,
)
from opswatch.config import ConfigError, Env
from opswatch.model import Sample
from tests.conftest import ManualClock

# Captured from /proc/net/tcp and /proc/net/tcp6 (states 01, 06, 08, 0A), headers included.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:8B58 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11387 1 0000000054963593 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 8564 1 00000000eb2bf189 100 0 0 10 0
   2: 0100007F:C2F4 0100007F:8B58 01 00000000:00000000 02:000A7E2B 00000000     0        0 4456 2 00000000a1b2c3d4 20 4 30 10 -1
   3: 0100007F:8B58 0100007F:C2F4 01 00000000:00000000 02:000A7E2B 00000000     0        0 4457 2 00000000a1b2c3d5 20 4 30 10 -1
   4: 0100007F:D1A2 0100007F:0CEA 06 00000000:00000000 03:00001736 00000000     0        0 0 3 0000000000000000
   5: 0100007F:D1A4 0100007F:0CEA 06 00000000:00000000 03:00001736 00000000     0        0 0 3 0000000000000000
   6: 0A00020F:0016 0A000201:E3C8 08 00000000:00000000 00:00000000 00000000     0        0 9911 1 00000000deadbeef 20 4 1 10 -1
"""  # noqa: E501
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1111 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 3883 1 000000001ab8ee93 100 0 0 10 0
   1: 00000000000000000000000001000000:1111 00000000000000000000000001000000:D3B0 01 00000000:00000000 00:00000000 00000000   106        0 3890 1 000000001ab8ee94 20 4 30 10 -1

"""  # noqa: E501


def by_metric(samples: list[Sample]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.metric, []).append(sample)
    return grouped


def host(clock: ManualClock, **environ: str) -> HostCollector:
    (collector,) = HostCollector.from_env(Env(environ), clock)
    return collector


def nic_totals() -> dict[str, int]:
    """Byte and error counters summed over the interfaces the collector reads (not ``lo``)."""
    counters = [c for nic, c in psutil.net_io_counters(pernic=True).items() if nic != "lo"]
    return {
        "recv": sum(c.bytes_recv for c in counters),
        "sent": sum(c.bytes_sent for c in counters),
        "errors": sum(c.errin + c.errout for c in counters),
    }


def root_fstype() -> str:
    return next(p.fstype for p in psutil.disk_partitions(all=True) if p.mountpoint == "/")


async def test_collects_the_expected_metrics_with_sane_values_on_this_machine(
    clock: ManualClock,
) -> None:
    collector = host(clock)

    # one listening socket and one established connection (both ends) of our own
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()),
    ):
        accepted, _ = listener.accept()
        with accepted:
            samples = await collector.collect()
    metrics = by_metric(samples)

    assert {s.check for s in samples} == {"host"}
    assert {s.at for s in samples} == {clock.now}
    assert metrics["host.up"][0].value == 1.0
    for name in ("memory_percent", "swap_percent", "disk_used_percent", "inodes_used_percent"):
        assert metrics[f"host.{name}"], name
        assert all(0.0 <= s.value <= 100.0 for s in metrics[f"host.{name}"]), name
    for name in ("cpu_percent",):
        assert all(0.0 <= s.value <= 100.0 for s in metrics.get(f"host.{name}", [])), name
    assert 0.0 <= metrics["host.load_per_core"][0].value < 1000.0
    assert 0.0 <= metrics["host.load5_per_core"][0].value < 1000.0
    root = [s for s in metrics["host.disk_used_percent"] if s.labels["mountpoint"] == "/"]
    assert len(root) == 1
    assert set(root[0].labels) == {"mountpoint", "device", "fstype"}
    mountpoints = [s.labels["mountpoint"] for s in metrics["host.disk_used_percent"]]
    assert len(mountpoints) == len(set(mountpoints))
    states = {s.labels["state"]: s.value for s in metrics["host.tcp_connections"]}
    assert {"established", "listen", "time_wait", "close_wait"} <= set(states)
    assert states["listen"] >= 1  # ours
    assert states["established"] >= 2  # our connection, seen from both ends
    assert all(v == int(v) for v in states.values())  # counts of sockets


async def test_cpu_percent_on_a_later_run_is_a_percentage(clock: ManualClock) -> None:
    collector = host(clock)
    await collector.collect()
    sum(i * i for i in range(200_000))  # burn a little CPU so the window is not empty
    clock.advance(30)

    metrics = by_metric(await collector.collect())

    assert 0.0 <= metrics["host.cpu_percent"][0].value <= 100.0


async def test_network_rates_appear_only_on_the_second_run_after_the_clock_moves(
    clock: ManualClock,
) -> None:
    collector = host(clock)
    rate_metrics = {
        "host.net_bytes_recv_per_s",
        "host.net_bytes_sent_per_s",
        "host.net_errors_per_s",
    }

    before_first = nic_totals()
    first = by_metric(await collector.collect())
    after_first = nic_totals()
    clock.advance(30)
    before_second = nic_totals()
    second = by_metric(await collector.collect())
    after_second = nic_totals()

    assert not rate_metrics & set(first)
    assert rate_metrics <= set(second)
    # The collector's counter increase lies between what the interfaces counted between its
    # two readings at the least and at the most; its rate divides it by the injected 30 s.
    for metric, field in zip(sorted(rate_metrics), ("recv", "sent", "errors"), strict=True):
        least = before_second[field] - after_first[field]
        most = after_second[field] - before_first[field]
        assert least <= second[metric][0].value * 30 <= most, metric


async def test_no_rates_when_the_clock_did_not_move(clock: ManualClock) -> None:
    collector = host(clock)
    await collector.collect()

    metrics = by_metric(await collector.collect())

    assert "host.net_bytes_recv_per_s" not in metrics


def test_rates_are_deltas_over_elapsed_time_and_a_reset_counts_from_zero() -> None:
    before = {"eth0": NicCounters(1_000, 500, 0), "wg0": NicCounters(9_000, 9_000, 7)}
    after = {
        "eth0": NicCounters(4_000, 800, 2),
        "wg0": NicCounters(300, 100, 0),  # re-created: counters restarted
        "eth1": NicCounters(10**9, 10**9, 0),  # new: no baseline, ignored this run
    }

    rates = net_rates(before, after, 10.0)

    assert rates is not None
    assert rates.bytes_recv_per_s == pytest.approx((3_000 + 300) / 10)
    assert rates.bytes_sent_per_s == pytest.approx((300 + 100) / 10)
    assert rates.errors_per_s == pytest.approx(0.2)
    assert net_rates(before, after, 0.0) is None


def test_cpu_percent_excludes_idle_iowait_and_double_counted_guest_time() -> None:
    before = {"user": 100.0, "nice": 0.0, "system": 50.0, "idle": 800.0, "iowait": 10.0}
    before |= {"guest": 5.0, "guest_nice": 0.0}
    after = {"user": 130.0, "nice": 0.0, "system": 60.0, "idle": 850.0, "iowait": 20.0}
    after |= {"guest": 15.0, "guest_nice": 0.0}

    # total = 30 + 10 + 50 + 10 (guest 10 is inside user) = 100; busy = 100 - 50 - 10 = 40
    assert cpu_busy_percent(before, after) == pytest.approx(40.0)
    assert cpu_busy_percent(after, after) is None


def test_tcp_parser_counts_states_and_skips_headers_and_blank_lines() -> None:
    assert parse_tcp_states(PROC_NET_TCP) == {
        "listen": 2,
        "established": 2,
        "time_wait": 2,
        "close_wait": 1,
    }
    assert parse_tcp_states(PROC_NET_TCP6) == {"listen": 1, "established": 1}


def test_tcp_counts_sum_ipv4_and_ipv6_and_include_every_state_at_zero() -> None:
    counts = count_tcp_states([PROC_NET_TCP, PROC_NET_TCP6])

    assert counts["listen"] == 3
    assert counts["established"] == 3
    assert counts["time_wait"] == 2
    assert counts["close_wait"] == 1
    assert counts["syn_sent"] == 0
    assert len(counts) == 12
    assert "unknown" not in counts


async def test_tcp_states_are_measured_on_the_first_run_then_once_per_interval(
    clock: ManualClock,
) -> None:
    default = host(clock)
    every_run = host(clock, OPSWATCH_HOST_TCP_STATES_INTERVAL="0")
    measured: dict[str, list[bool]] = {"default": [], "every_run": []}

    for advance in (30, 270, 30, 0):  # runs at 0 s, 30 s, 300 s and 330 s
        for name, collector in (("default", default), ("every_run", every_run)):
            metrics = by_metric(await collector.collect())
            measured[name].append("host.tcp_connections" in metrics)
        clock.advance(advance)

    assert measured == {"default": [True, False, True, False], "every_run": [True] * 4}


def test_partition_selection_skips_excluded_and_keeps_the_last_mount_per_mountpoint() -> None:
    partitions = [
        Partition("/dev/sda2", "/", "ext4"),
        Partition("/dev/loop3", "/snap/core22/1380", "squashfs"),
        Partition("/dev/sda1", "/boot/efi", "vfat"),
        Partition("/dev/sdb1", "/data", "xfs"),
        Partition("/dev/sdc1", "/data", "xfs"),  # mounted over the first: the visible one
        Partition("/dev/sr0", "/media/cdrom", "iso9660"),
    ]

    chosen = select_partitions(
        partitions,
        mountpoints_exclude=("/snap/*", "/boot/efi"),
        fstypes_exclude=("squashfs", "iso9660", "udf"),
    )

    assert chosen == [Partition("/dev/sda2", "/", "ext4"), Partition("/dev/sdc1", "/data", "xfs")]


def test_a_container_overlay_root_is_still_watched() -> None:
    real = [Partition("/dev/sda1", "/data", "ext4")]  # psutil(all=False) drops overlay
    every = [Partition("overlay", "/", "overlay"), *real, Partition("proc", "/proc", "proc")]

    partitions = with_root(real, every)
    chosen = select_partitions(
        partitions, mountpoints_exclude=("/snap/*",), fstypes_exclude=("squashfs",)
    )

    assert [p.mountpoint for p in chosen] == ["/", "/data"]
    assert with_root(real, real) == real


async def test_excluded_mountpoint_and_fstype_are_not_reported(clock: ManualClock) -> None:
    by_mount = host(clock, OPSWATCH_HOST_MOUNTPOINTS_EXCLUDE="/")
    by_type = host(clock, OPSWATCH_HOST_FSTYPES_EXCLUDE=root_fstype())

    for collector in (by_mount, by_type):
        metrics = by_metric(await collector.collect())
        mounts = {s.labels["mountpoint"] for s in metrics.get("host.disk_used_percent", [])}
        assert "/" not in mounts


def test_describe_shows_the_effective_exclusions(clock: ManualClock) -> None:
    assert host(clock).describe() == {
        "mountpoints_exclude": "/snap/*,/boot/efi",
        "fstypes_exclude": "squashfs,iso9660,udf",
        "tcp_states_interval": "300s",
    }
    assert host(clock, OPSWATCH_HOST_FSTYPES_EXCLUDE="none").describe()["fstypes_exclude"] == (
        "none"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OPSWATCH_HOST_MOUNTPOINTS_EXCLUDE", "snap/*"),
        ("OPSWATCH_HOST_FSTYPES_EXCLUDE", "ext4,bad type"),
        ("OPSWATCH_HOST_TCP_STATES_INTERVAL", "often"),
    ],
)
def test_malformed_exclusions_raise_config_error_naming_the_variable(
    clock: ManualClock, variable: str, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        host(clock, **{variable: value})

    assert caught.value.variable == variable


async def test_load_per_core_is_the_load_average_divided_by_the_cpu_count(
    clock: ManualClock,
) -> None:
    metrics = by_metric(await host(clock).collect())

    cpus = psutil.cpu_count() or 1
    load1, load5, _ = os.getloadavg()
    assert metrics["host.load_per_core"][0].value == pytest.approx(load1 / cpus, abs=0.5)
    assert metrics["host.load5_per_core"][0].value == pytest.approx(load5 / cpus, abs=0.5)
