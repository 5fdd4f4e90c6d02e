"""systemd's notification protocol (``sd_notify``), stdlib only.

systemd passes ``NOTIFY_SOCKET`` (and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` and
``WATCHDOG_PID``) to a ``Type=notify`` service. The service sends newline-separated
``KEY=VALUE`` assignments as single datagrams to that AF_UNIX socket; an address starting with
``@`` names a socket in the abstract namespace (the ``@`` stands for a leading NUL byte).

Outside systemd (a terminal, a container, tests) ``NOTIFY_SOCKET`` is unset and every method
is a no-op. A failed send is logged as ``sd_notify_failed`` and never raised: a monitoring
daemon must not die because its supervisor's socket went away.

Protocol, as the daemon uses it (see sd_notify(3)):

* ``ready()`` (``READY=1``) once the first cycle has run, and again after a reload;
* ``watchdog()`` (``WATCHDOG=1``) every ``watchdog_interval`` seconds from a heartbeat that
  stops when the scheduler stalls, so systemd restarts a wedged daemon;
* ``reloading()`` (``RELOADING=1`` with ``MONOTONIC_USEC=``) when a reload starts, followed
  by ``ready()`` when it is done. systemd >= 253 requires ``MONOTONIC_USEC`` (the
  CLOCK_MONOTONIC time in microseconds, sent in the same datagram) to match a reload to a
  ``Type=notify-reload`` request; older versions ignore the extra field;
* ``stopping()`` (``STOPPING=1``) when shutdown begins.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

_log = structlog.get_logger(__name__)

SEND_TIMEOUT = 1.0
"""Seconds a send may block when systemd's receive queue is full (libsystemd blocks too)."""


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _socket_address(value: str) -> bytes | None:
    """The AF_UNIX address for a ``NOTIFY_SOCKET`` value, or None when unsupported."""
    if value.startswith("/"):
        return os.fsencode(value)
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    return None  # e.g. systemd >= 254's "vsock:CID:PORT", which we do not speak


def _watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, as sd_watchdog_enabled(3) recommends."""
    watchdog_pid = environ.get("WATCHDOG_PID", "").strip()
    if watchdog_pid:
        try:
            if int(watchdog_pid) != pid:
                return None  # meant for another process (e.g. our parent)
        except ValueError:
            return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", "").strip())
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


class SystemdNotifier:
    """Sends state changes to systemd; a no-op when not run under ``Type=notify``."""

    def __init__(
        self,
        notify_socket: str | None,
        *,
        watchdog_interval: float | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        self._notify_socket = notify_socket or None
        self._watchdog_interval = watchdog_interval if self._notify_socket else None
        self._monotonic_usec = monotonic_usec
        self._send_timeout = send_timeout

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        pid: int | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
    ) -> SystemdNotifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (``pid`` defaults
        to this process's)."""
        notify_socket = environ.get("NOTIFY_SOCKET", "").strip() or None
        interval = _watchdog_interval(environ, os.getpid() if pid is None else pid)
        return cls(notify_socket, watchdog_interval=interval, monotonic_usec=monotonic_usec)

    @property
    def enabled(self) -> bool:
        """True when systemd asked for notifications (``NOTIFY_SOCKET`` is set)."""
        return self._notify_socket is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``watchdog()`` calls, or None when systemd runs no watchdog for
        this process."""
        return self._watchdog_interval

    def ready(self) -> None:
        self._send("READY=1")

    def status(self, text: str) -> None:
        """A one-line status shown by ``systemctl status`` (newlines become spaces)."""
        self._send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    async def heartbeat(self, healthy: Callable[[], bool]) -> None:
        """WATCHDOG=1 every watchdog interval, only while ``healthy()``, so that systemd
        restarts a stalled daemon (returns at once when no watchdog is asked for)."""
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            if healthy():
                self.watchdog()
            await asyncio.sleep(interval)

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def reloading(self) -> None:
        """A reload starts; call ``ready()`` when it is done."""
        if self.enabled:
            self._send("RELOADING=1", f"MONOTONIC_USEC={self._monotonic_usec()}")

    def _send(self, *assignments: str) -> None:
        if self._notify_socket is None:
            return
        state = "\n".join(assignments)
        address = _socket_address(self._notify_socket)
        if address is None:
            _log.warning(
                "sd_notify_failed",
                error=f"unsupported NOTIFY_SOCKET address {self._notify_socket!r}",
                state=state,
            )
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(self._send_timeout)
                sock.sendto(state.encode(), address)
        except OSError as exc:
            _log.warning("sd_notify_failed", error=str(exc), state=state)
