"""A healthy channel's delivery delay while another channel fails and retries.

The real :class:`~opswatch.notifiers.outbox.Outbox` (``run()``, the default
:class:`~opswatch.notifiers.outbox.RetryPolicy`: 5 attempts, exponential backoff with jitter,
up to 60 s per pass) over a real SQLite store, with two webhook channels on local aiohttp
receivers in this process: ``failing`` answers 500 to everything, ``healthy`` answers 200.
Every ``--every`` seconds one message is queued for each channel (``store.record`` and
``wake()``, as the daemon does). Measured: for each healthy message, the time from its
``record`` to its arrival at the receiver; and how many requests the failing channel saw
meanwhile (it was retrying the whole time).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from bench._common import machine, percentile, quiet_logging
from opswatch.config import Secret, mask_url
from opswatch.model import Alert, AlertState, CycleRecord, Severity, Transition, TransitionKind
from opswatch.notifiers.outbox import Outbox
from opswatch.notifiers.render import render
from opswatch.notifiers.webhook import WebhookNotifier
from opswatch.state.sqlite import SQLiteStore


class Peer:
    """A local webhook receiver answering ``status``; records when each key arrived."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.arrived: dict[str, float] = {}
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def notifier(self, path: str) -> WebhookNotifier:
        url = f"http://127.0.0.1:{self.port}{path}"
        return WebhookNotifier(Secret(url, mask_url(url, hide_path=True)), timeout=5)

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        self.arrived.setdefault(request.headers["Idempotency-Key"], time.monotonic())
        return web.Response(status=self.status)


def _fired(n: int, at: datetime) -> Transition:
    alert = Alert(
        fingerprint=f"bench{n:06d}",
        rule=f"bench_{n}",
        check="bench",
        labels={"n": str(n)},
        state=AlertState.FIRING,
        severity=Severity.CRITICAL,
        summary=f"bench alert {n}",
        value=1.0,
        started_at=at,
        last_seen_at=at,
    )
    return Transition(alert, TransitionKind.FIRED, at)


async def run(seconds: float, every: float) -> None:
    failing, healthy = Peer(500), Peer(200)
    await failing.start()
    await healthy.start()
    failing_hook, healthy_hook = failing.notifier("/failing"), healthy.notifier("/healthy")
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "state.sqlite3")
        await store.open()
        outbox = Outbox(store, {n.channel: n for n in (failing_hook, healthy_hook)})
        task = asyncio.create_task(outbox.run())
        queued: dict[str, float] = {}
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            now = datetime.now(UTC)
            to_failing, to_healthy = (
                render([_fired(n, now)], now),
                render([_fired(n + 1, now)], now),
            )
            n += 2
            rows = [(failing_hook.channel, to_failing), (healthy_hook.channel, to_healthy)]
            await store.record(CycleRecord([], [], [], rows), now)
            queued[to_healthy.idempotency_key] = time.monotonic()
            outbox.wake()
            await asyncio.sleep(every)  # the pace of the load, not a wait for a result
        await asyncio.sleep(1.0)  # let the last healthy message arrive
        await outbox.flush(0.5)  # the failing channel's pass is cut short: run() ends
        assert task.done()
        await store.close()
    for peer in (failing, healthy):
        await peer.stop()
    await failing_hook.close()
    await healthy_hook.close()

    delays = [
        (healthy.arrived[key] - at) * 1000 for key, at in queued.items() if key in healthy.arrived
    ]
    print(machine())
    print(
        f"{seconds:g} s, one message per channel every {every:g} s; the failing channel "
        f"answered 500 to {failing.requests} requests (default retry policy)"
    )
    print(
        f"healthy channel: {len(delays)}/{len(queued)} delivered; delay from queued to "
        f"received: p50 {percentile(delays, 0.5):.1f} ms, p95 {percentile(delays, 0.95):.1f} ms, "
        f"max {max(delays, default=float('nan')):.1f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 s instead of --seconds")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=0.5)
    args = parser.parse_args(argv)
    quiet_logging()
    asyncio.run(run(20.0 if args.quick else args.seconds, args.every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
