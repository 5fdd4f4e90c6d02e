"""SystemdNotifier against real AF_UNIX datagram sockets (a path in tmp_path and an abstract
name), as systemd's NOTIFY_SOCKET would be."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from opswatch.daemon.sdnotify import SystemdNotifier


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2.0)
    return sock


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify"
    sock = _receiver(str(path))
    with sock:
        yield str(path), sock


def time_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _nothing_received(sock: socket.socket) -> bool:
    sock.settimeout(0)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    return False


def test_sends_exact_datagram_for_each_call(notify_socket: tuple[str, socket.socket]) -> None:
    path, receiver = notify_socket
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": path}, monotonic_usec=lambda: 123456)

    notifier.ready()
    assert receiver.recv(4096) == b"READY=1"
    notifier.status("collecting 3 checks")
    assert receiver.recv(4096) == b"STATUS=collecting 3 checks"
    notifier.watchdog()
    assert receiver.recv(4096) == b"WATCHDOG=1"
    notifier.reloading()
    assert receiver.recv(4096) == b"RELOADING=1\nMONOTONIC_USEC=123456"
    notifier.stopping()
    assert receiver.recv(4096) == b"STOPPING=1"
    assert notifier.enabled


def test_status_is_kept_on_one_line(notify_socket: tuple[str, socket.socket]) -> None:
    path, receiver = notify_socket
    SystemdNotifier.from_env({"NOTIFY_SOCKET": path}).status("line one\nline two")
    assert receiver.recv(4096) == b"STATUS=line one line two"


def test_reloading_sends_the_real_monotonic_clock_by_default(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, receiver = notify_socket
    before = time_usec()
    SystemdNotifier.from_env({"NOTIFY_SOCKET": path}).reloading()
    after = time_usec()
    first, second = receiver.recv(4096).split(b"\n")
    assert first == b"RELOADING=1"
    key, _, value = second.partition(b"=")
    assert key == b"MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_sends_to_an_abstract_namespace_socket() -> None:
    name = f"opswatch-test-{uuid.uuid4().hex}"
    with _receiver(b"\0" + name.encode()) as receiver:
        notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": f"@{name}"})
        notifier.ready()
        notifier.watchdog()
        assert receiver.recv(4096) == b"READY=1"
        assert receiver.recv(4096) == b"WATCHDOG=1"


def test_every_method_is_a_no_op_without_notify_socket(
    notify_socket: tuple[str, socket.socket],
) -> None:
    _, receiver = notify_socket
    clock_calls: list[int] = []

    def clock() -> int:
        clock_calls.append(1)
        return 1

    notifier = SystemdNotifier.from_env({"WATCHDOG_USEC": "90000000"}, monotonic_usec=clock)
    with capture_logs() as logs:
        notifier.ready()
        notifier.status("x")
        notifier.watchdog()
        notifier.reloading()
        notifier.stopping()
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert logs == []
    assert clock_calls == []
    assert _nothing_received(receiver)


def test_empty_notify_socket_counts_as_unset() -> None:
    assert not SystemdNotifier.from_env({"NOTIFY_SOCKET": ""}).enabled


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "90000000"}, 45.0),
        ({"WATCHDOG_USEC": "90000000", "WATCHDOG_PID": "4242"}, 45.0),
        ({"WATCHDOG_USEC": "1000"}, 0.0005),
        ({"WATCHDOG_USEC": "90000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "90000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "ninety"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(
    environ: dict[str, str], expected: float | None
) -> None:
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": "/run/x", **environ}, pid=4242)
    assert notifier.watchdog_interval == expected


def test_watchdog_pid_defaults_to_this_process() -> None:
    environ = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "2000000"}
    mine = SystemdNotifier.from_env({**environ, "WATCHDOG_PID": str(os.getpid())})
    other = SystemdNotifier.from_env({**environ, "WATCHDOG_PID": str(os.getpid() + 1)})
    assert mine.watchdog_interval == 1.0
    assert other.watchdog_interval is None


def test_missing_socket_path_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with capture_logs() as logs:
        notifier.ready()
        notifier.watchdog()
    assert [entry["event"] for entry in logs] == ["sd_notify_failed", "sd_notify_failed"]
    assert logs[0]["log_level"] == "warning"
    assert "No such file or directory" in logs[0]["error"]
    assert logs[0]["state"] == "READY=1"


def test_unsupported_socket_address_is_logged_not_raised() -> None:
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    with capture_logs() as logs:
        notifier.ready()
    assert len(logs) == 1
    assert logs[0]["event"] == "sd_notify_failed"
    assert "unsupported NOTIFY_SOCKET" in logs[0]["error"]
