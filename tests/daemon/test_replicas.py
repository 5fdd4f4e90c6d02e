"""Several daemons on one PostgreSQL state store: exactly one notification per transition.

In process first (two ``App`` objects, runs driven by the test), then two real daemon
processes watching one HTTP target and notifying one webhook receiver, including a
``kill -9`` of the replica that runs the check.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from redis.asyncio import Redis
from tenacity import wait_none

from opswatch.config import Env
from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config
from opswatch.model import (
    Alert,
    AlertState,
    CycleRecord,
    Severity,
    Transition,
    TransitionKind,
    fingerprint,
)
from opswatch.notifiers.outbox import Outbox, RetryPolicy
from opswatch.notifiers.render import render
from opswatch.notifiers.webhook import WebhookNotifier
from opswatch.recovery.base import CommandResult
from opswatch.state.leases import CheckLeases
from opswatch.state.postgres import PostgresStore
from tests.conftest import free_port
from tests.peers import Receiver, Reply
from tests.pgschema import fresh_schema

FAST = RetryPolicy(attempts=2, total_seconds=5, wait=wait_none())
CHECK = "http:api"
#: daemon processes: 1 s interval, so a lease lives 3 s
INTERVAL_S = 1.0
TTL_S = 3 * INTERVAL_S
WAIT_S = 30.0
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    async with fresh_schema(postgres_dsn) as name:
        yield name


@pytest.fixture
async def target() -> AsyncIterator[Receiver]:
    """The watched service: a local HTTP server answering 200 until stopped."""
    service = Receiver()
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def webhook() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


def _environ(
    dsn: str, schema: str, target: Receiver, webhook: Receiver, **extra: str
) -> dict[str, str]:
    return {
        "OPSWATCH_CHECKS": "http",
        "OPSWATCH_HTTP_TARGETS": f"api={target.url}/health",
        "OPSWATCH_HTTP_TIMEOUT": "500ms",
        "OPSWATCH_WEBHOOK_URL": f"{webhook.url}/hooks/T0/SECRET",
        "OPSWATCH_STATE_URL": dsn,
        "OPSWATCH_STATE_SCHEMA": schema,
        "OPSWATCH_API_LISTEN": "127.0.0.1:0",
        **extra,
    }


def _statuses(webhook: Receiver) -> list[str]:
    return [r.body["status"] for r in webhook.requests]


async def _expire_leases(dsn: str, schema: str) -> None:
    """What a holder that stopped renewing looks like once its TTL passed (no waiting)."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute(
            "UPDATE opswatch_leases SET expires_at = clock_timestamp() - interval '1 second'"
        )
    finally:
        await conn.close()


# -- in process ----------------------------------------------------------------------------


async def _two_apps(environ: dict[str, str]) -> tuple[App, App]:
    """Two replicas, opened (no scheduler: the test runs the checks)."""
    a, b = (
        App(load_config(environ), retry_policy=FAST),
        App(load_config(environ), retry_policy=FAST),
    )
    await a.open()
    await b.open()
    return a, b


async def test_only_the_lease_holder_runs_a_check_and_the_other_stands_by(
    postgres_dsn: str, schema: str, target: Receiver, webhook: Receiver
) -> None:
    a, b = await _two_apps(_environ(postgres_dsn, schema, target, webhook))
    try:
        await target.stop()
        assert await a.cycle.run(CHECK) == []  # a takes the lease; http_down waits 2 cycles
        assert await b.cycle.run(CHECK) == []  # standby: collects nothing
        assert b.checks.statuses()[CHECK].error == "standby: another replica"
        assert b.checks.statuses()[CHECK].samples == ()
        (fired,) = await a.cycle.run(CHECK)
        assert fired.kind is TransitionKind.FIRED
        assert await b.cycle.run(CHECK) == []
        assert b.checks.health().reason != f"check {CHECK} is late"
        assert [x.rule for x in a.tracker.active()] == ["http_down"]
        assert b.tracker.active() == []
        await a.outbox.deliver_due()
        await b.outbox.deliver_due()
    finally:
        await a.stop()
        await b.stop()
    assert _statuses(webhook) == ["firing"]


@pytest.fixture(params=["postgres", "redis"])
def lease_backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Extra environment: leases in the state store's table, or in Redis."""
    if request.param == "postgres":
        return {}
    url: str = request.getfixturevalue("redis_url")
    return {"OPSWATCH_LEASE_URL": url}


async def _expire_all_leases(dsn: str, schema: str, backend: dict[str, str]) -> None:
    if "OPSWATCH_LEASE_URL" not in backend:
        await _expire_leases(dsn, schema)
        return
    client = Redis.from_url(backend["OPSWATCH_LEASE_URL"])
    try:
        keys = [k async for k in client.scan_iter(match=f"opswatch:lease:{schema}:*")]
        assert keys
        await client.delete(*keys)
    finally:
        await client.aclose()


async def test_a_replica_taking_over_resolves_what_the_other_fired_exactly_once(
    postgres_dsn: str,
    schema: str,
    target: Receiver,
    webhook: Receiver,
    lease_backend: dict[str, str],
) -> None:
    a, b = await _two_apps(_environ(postgres_dsn, schema, target, webhook, **lease_backend))
    try:
        await target.stop()
        await a.cycle.run(CHECK)
        await b.cycle.run(CHECK)  # standby
        (fired,) = await a.cycle.run(CHECK)
        await a.outbox.deliver_due()
        await target.start()
        await _expire_all_leases(postgres_dsn, schema, lease_backend)  # a stopped renewing

        (resolved,) = await b.cycle.run(CHECK)  # b reloads a's alert from the store first
        assert resolved.kind is TransitionKind.RESOLVED
        assert resolved.alert.started_at == fired.alert.started_at
        assert await a.cycle.run(CHECK) == []  # a is standby now and forgets the alert
        assert a.tracker.active() == []
        assert await b.cycle.run(CHECK) == []
        await asyncio.gather(a.outbox.deliver_due(), b.outbox.deliver_due())
        history = await b.store.history(10)
        assert [t.kind for t in history] == [TransitionKind.RESOLVED, TransitionKind.FIRED]
    finally:
        await b.stop()  # b releases its lease: a takes over at once, from the store
    try:
        assert await a.cycle.run(CHECK) == []  # nothing to resolve again
        assert a.checks.statuses()[CHECK].error is None
    finally:
        await a.stop()
    assert _statuses(webhook) == ["firing", "resolved"]


async def test_a_replica_taking_over_a_still_failing_target_does_not_fire_again(
    postgres_dsn: str, schema: str, target: Receiver, webhook: Receiver
) -> None:
    a, b = await _two_apps(_environ(postgres_dsn, schema, target, webhook))
    try:
        await target.stop()
        await a.cycle.run(CHECK)
        await b.cycle.run(CHECK)
        await a.cycle.run(CHECK)  # fired
        await _expire_leases(postgres_dsn, schema)
        assert await b.cycle.run(CHECK) == []  # still down: the alert it took over holds
        assert [x.rule for x in b.tracker.active()] == ["http_down"]
        await asyncio.gather(a.outbox.deliver_due(), b.outbox.deliver_due())
    finally:
        await a.stop()
        await b.stop()
    assert _statuses(webhook) == ["firing"]


async def test_a_late_run_renews_the_lease_and_records_nothing_once_another_replica_has_it(
    postgres_dsn: str, schema: str, target: Receiver, webhook: Receiver
) -> None:
    a, b = await _two_apps(_environ(postgres_dsn, schema, target, webhook))
    clock = FakeMonotonic()
    a.replicas.leases = a.leases = CheckLeases(a.leases.lease, a.leases.ttl, monotonic=clock)
    (collector,) = a.config.collectors[:1]
    try:
        await target.stop()
        await a.cycle.run(CHECK)
        samples, error = await a.cycle.collect(collector)
        clock.now += a.leases.ttl  # a stalls (or verifies, or gets an event) much later...
        (fired,) = await a.cycle.process(CHECK, samples, error, 0.0)  # ...still the holder: renewed
        assert fired.kind is TransitionKind.FIRED
        clock.now += a.leases.ttl
        await _expire_leases(postgres_dsn, schema)
        assert await b.cycle.run(CHECK) == []  # b took the check over, with a's alert
        await target.start()
        samples, error = await a.cycle.collect(collector)
        assert await a.cycle.process(CHECK, samples, error, 0.0) == []  # not a's run any more
        (resolved,) = await b.cycle.run(CHECK)
        assert resolved.kind is TransitionKind.RESOLVED
        await asyncio.gather(a.outbox.deliver_due(), b.outbox.deliver_due())
    finally:
        await a.stop()
        await b.stop()
    assert _statuses(webhook) == ["firing", "resolved"]


class GatedRunner:
    """A recovery command runner that records each call and answers when the test says."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.called = asyncio.Event()
        self.release = asyncio.Event()

    async def run(
        self,
        argv: Sequence[str],
        timeout: float,  # noqa: ASYNC109 - the runner protocol's
        env: Mapping[str, str] | None = None,
        uid: int | None = None,
    ) -> CommandResult:
        self.calls.append(list(argv))
        self.called.set()
        await self.release.wait()
        return CommandResult(0, "", "")


async def _no_sleep(seconds: float) -> None:
    del seconds


async def test_a_recovery_runs_once_and_a_replica_starting_meanwhile_leaves_it_alone(
    postgres_dsn: str, schema: str, target: Receiver, webhook: Receiver
) -> None:
    environ = _environ(
        postgres_dsn,
        schema,
        target,
        webhook,
        OPSWATCH_RECOVERY_HTTP_DOWN_API="command:/usr/local/bin/restart-api",
        OPSWATCH_RECOVERY_ALLOW="/usr/local/bin/restart-api",
        OPSWATCH_RECOVERY_VERIFY_FOR="2s",
    )
    runners = (GatedRunner(), GatedRunner())
    a, b = (
        App(load_config(environ), retry_policy=FAST, command_runner=r, recovery_sleep=_no_sleep)
        for r in runners
    )
    await a.open()
    try:
        await target.stop()
        await a.cycle.run(CHECK)
        (fired,) = await a.cycle.run(CHECK)  # a starts the recovery: REMEDIATING
        await b.open()  # a replica starting now must not escalate a's recovery in progress
        assert await b.cycle.run(CHECK) == []
        await target.start()
        runners[0].release.set()
        await a.remediation.wait()
        assert await b.cycle.run(CHECK) == []
    finally:
        await a.stop()
        await b.stop()
    assert [len(r.calls) for r in runners] == [1, 0]
    history = await _query(postgres_dsn, schema, "SELECT kind FROM opswatch_history ORDER BY id")
    assert [r["kind"] for r in history] == ["fired", "resolved"]
    runs = await _query(postgres_dsn, schema, "SELECT outcome FROM opswatch_recovery_runs")
    assert [r["outcome"] for r in runs] == ["succeeded"]
    assert fired.alert.fingerprint


async def test_a_recovery_cut_short_on_one_replica_is_escalated_once_by_the_one_taking_over(
    postgres_dsn: str, schema: str, target: Receiver, webhook: Receiver
) -> None:
    environ = _environ(
        postgres_dsn,
        schema,
        target,
        webhook,
        OPSWATCH_RECOVERY_HTTP_DOWN_API="command:/usr/local/bin/restart-api",
        OPSWATCH_RECOVERY_ALLOW="/usr/local/bin/restart-api",
    )
    runners = (GatedRunner(), GatedRunner())
    a, b = (
        App(load_config(environ), retry_policy=FAST, command_runner=r, recovery_sleep=_no_sleep)
        for r in runners
    )
    await a.open()
    await b.open()
    try:
        await target.stop()
        await a.cycle.run(CHECK)
        await a.cycle.run(CHECK)  # fired: a's recovery hangs
        await asyncio.wait_for(runners[0].called.wait(), WAIT_S)
        assert await b.cycle.run(CHECK) == []
    finally:
        await a.stop()  # cuts the recovery short and hands the check over
    try:
        await b.cycle.run(CHECK)  # takes the check over: escalates the interrupted recovery
        await b.cycle.run(CHECK)
        (alert,) = b.tracker.active()
        assert alert.state is AlertState.FIRING
    finally:
        await b.stop()
    assert [len(r.calls) for r in runners] == [1, 0]
    history = await _query(postgres_dsn, schema, "SELECT kind FROM opswatch_history ORDER BY id")
    assert [r["kind"] for r in history] == ["fired", "escalated"]


async def test_a_reload_that_changes_the_interval_changes_the_lease_ttl(
    postgres_dsn: str, schema: str, target: Receiver, webhook: Receiver
) -> None:
    environ = _environ(postgres_dsn, schema, target, webhook, OPSWATCH_INTERVAL="10s")
    app = App(load_config(environ), retry_policy=FAST)
    await app.start()
    try:
        assert app.leases.ttl == 30
        assert await app.reload({**environ, "OPSWATCH_INTERVAL": "20s"})
        assert app.leases.ttl == 60
    finally:
        await app.stop()


async def test_outbox_claims_last_three_intervals_and_a_reload_changes_them(
    postgres_dsn: str, schema: str, target: Receiver, webhook: Receiver
) -> None:
    environ = _environ(postgres_dsn, schema, target, webhook, OPSWATCH_INTERVAL="10s")
    app = App(load_config(environ), retry_policy=FAST)
    await app.start()
    try:
        assert isinstance(app.store, PostgresStore)
        assert app.store.claim_ttl == 30
        assert await app.reload({**environ, "OPSWATCH_INTERVAL": "20s"})
        assert app.store.claim_ttl == 60
    finally:
        await app.stop()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_two_outboxes_on_one_store_send_every_row_once(
    postgres_dsn: str, schema: str, webhook: Receiver
) -> None:
    (notifier,) = WebhookNotifier.from_env(Env({"OPSWATCH_WEBHOOK_URL": f"{webhook.url}/hook"}))
    stores = [PostgresStore(postgres_dsn, schema=schema, replica=r) for r in ("a", "b")]
    for store in stores:
        await store.open()
    try:
        for i in range(30):
            fired = _fired(f"rule_{i % 3}", NOW + timedelta(seconds=i))
            row = (notifier.channel, render([fired], fired.at))
            await stores[i % 2].record(CycleRecord([], [], [fired], [row]), fired.at)
        outboxes = [Outbox(s, {notifier.channel: notifier}, FAST) for s in stores]
        await asyncio.gather(*(o.deliver_due() for o in outboxes for _ in range(3)))
        await asyncio.gather(*(o.deliver_due() for o in outboxes))
    finally:
        for store in stores:
            await store.close()
        await notifier.close()
    keys = [r.headers["Idempotency-Key"] for r in webhook.requests]
    assert len(keys) == 30
    assert len(set(keys)) == 30


def _fired(rule: str, at: datetime) -> Transition:
    alert = Alert(
        fingerprint=fingerprint(rule, {}),
        rule=rule,
        check=CHECK,
        labels={},
        state=AlertState.FIRING,
        severity=Severity.CRITICAL,
        summary=f"{rule} fired",
        value=1.0,
        started_at=at,
        last_seen_at=at,
        last_notified_at=at,
    )
    return Transition(alert, TransitionKind.FIRED, at)


# -- two daemon processes ------------------------------------------------------------------


class Daemon:
    """``python -m opswatch.daemon.cli run`` with its own API port; JSON logs to a file."""

    def __init__(self, environ: dict[str, str], log: Path) -> None:
        self.api_port = free_port()
        self.environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
            **environ,
            "OPSWATCH_API_LISTEN": f"127.0.0.1:{self.api_port}",
            "OPSWATCH_LOG_FORMAT": "json",
        }
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "opswatch.daemon.cli",
                "run",
                env=self.environ,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def status(self) -> dict[str, Any] | None:
        """``/status``, or None while the API does not answer."""
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{self.api_port}/status") as response,
            ):
                body: dict[str, Any] = await response.json()
                return body
        except aiohttp.ClientError:
            return None

    async def check_runs(self) -> bool:
        """Whether its last run of the check was a real one (not standby)."""
        status = await self.status()
        return (
            status is not None
            and CHECK in status["checks"]
            and (status["checks"][CHECK]["error"] is None)
        )

    async def check_finished_at(self) -> str | None:
        status = await self.status()
        if status is None or CHECK not in status["checks"]:
            return None
        finished: str = status["checks"][CHECK]["finished_at"]
        return finished

    async def terminate(self) -> int:
        """SIGTERM, then the exit status (a killed daemon's is returned as it is)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout=WAIT_S)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs().splitlines() if line.startswith("{")]


@pytest.fixture
async def daemons(
    postgres_dsn: str, schema: str, target: Receiver, webhook: Receiver, tmp_path: Path
) -> AsyncIterator[tuple[Daemon, Daemon]]:
    environ = _environ(postgres_dsn, schema, target, webhook, OPSWATCH_INTERVAL="1s")
    pair = (Daemon(environ, tmp_path / "a.log"), Daemon(environ, tmp_path / "b.log"))
    await asyncio.gather(*(d.start() for d in pair))
    try:
        yield pair
    finally:
        for daemon in pair:
            if daemon.process is not None and daemon.process.returncode is None:
                daemon.process.kill()
                await daemon.process.wait()


async def _poll(probe: Callable[[], Awaitable[Any]], within: float = WAIT_S) -> Any:
    """Bounded polling for what another process did: ``probe()`` until truthy."""
    async with asyncio.timeout(within):
        while not (result := await probe()):  # noqa: ASYNC110 - another process, no event
            await asyncio.sleep(0.05)
    return result


async def _query(dsn: str, schema: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def _holder_of(daemons: tuple[Daemon, Daemon], holder: str) -> Daemon:
    """The daemon whose holder name (``host:pid:random``) this is."""
    pid = int(holder.rsplit(":", 2)[1])
    (daemon,) = [d for d in daemons if d.pid == pid]
    return daemon


async def _check_holder(dsn: str, schema: str) -> str | None:
    try:
        rows = await _query(
            dsn,
            schema,
            f"SELECT holder FROM opswatch_leases WHERE name = 'check:{CHECK}' "
            "AND expires_at > clock_timestamp()",
        )
    except asyncpg.UndefinedTableError:  # the daemons have not migrated the schema yet
        return None
    return str(rows[0]["holder"]) if rows else None


async def test_two_daemon_processes_send_one_firing_and_one_resolved_notification(
    daemons: tuple[Daemon, Daemon],
    postgres_dsn: str,
    schema: str,
    target: Receiver,
    webhook: Receiver,
) -> None:
    holder = _holder_of(daemons, await _poll(lambda: _check_holder(postgres_dsn, schema)))
    standby = daemons[1] if holder is daemons[0] else daemons[0]
    await _poll(holder.check_runs)
    await _poll(standby.status)  # both are up

    await target.stop()
    (fired,) = await webhook.wait_for(1, timeout=WAIT_S)
    await target.start()
    await webhook.wait_for(2, timeout=WAIT_S)

    # a graceful stop hands the check over at once; the new holder has nothing to re-send
    assert await holder.terminate() == 0
    await _poll(standby.check_runs, within=2 * INTERVAL_S + 5)
    await _poll(partial(_later_than, standby, await standby.check_finished_at()))  # and again
    assert await standby.terminate() == 0
    assert _statuses(webhook) == ["firing", "resolved"], holder.logs() + standby.logs()
    assert fired.body["alerts"][0]["labels"]["alertname"] == "http_down"
    for daemon in daemons:
        assert "SECRET" not in daemon.logs()


async def _later_than(daemon: Daemon, seen: str | None) -> bool:
    finished = await daemon.check_finished_at()
    return finished is not None and (seen is None or finished > seen)


async def test_after_kill_9_of_the_holder_the_other_daemon_takes_over_within_the_ttl(
    daemons: tuple[Daemon, Daemon],
    postgres_dsn: str,
    schema: str,
    target: Receiver,
    webhook: Receiver,
) -> None:
    holder = _holder_of(daemons, await _poll(lambda: _check_holder(postgres_dsn, schema)))
    survivor = daemons[1] if holder is daemons[0] else daemons[0]
    await _poll(survivor.status)

    await target.stop()
    await webhook.wait_for(1, timeout=WAIT_S)
    # the firing row is marked delivered (a kill between sending and marking would make the
    # outbox send it again after the claim expires: at least once, by design)
    await _poll(
        lambda: _query(
            postgres_dsn, schema, "SELECT 1 FROM opswatch_outbox WHERE state = 'delivered'"
        )
    )
    assert holder.process is not None
    holder.process.kill()
    killed_at = asyncio.get_running_loop().time()
    await holder.process.wait()
    await target.start()  # recovers while nobody runs the check

    async def taken_over() -> bool:
        holder_now = await _check_holder(postgres_dsn, schema)
        return holder_now is not None and _holder_of(daemons, holder_now) is survivor

    await _poll(taken_over)
    took = asyncio.get_running_loop().time() - killed_at
    # the dead holder renewed at most an interval before dying; the survivor tries every
    # interval: it holds the check at most one interval after the lease expired
    assert took <= TTL_S + 2 * INTERVAL_S, took

    (_, resolved) = await webhook.wait_for(2, timeout=WAIT_S)
    assert resolved.body["status"] == "resolved"
    for _ in range(3):  # three more runs: nothing else is sent
        await _poll(partial(_later_than, survivor, await survivor.check_finished_at()))
    assert await survivor.terminate() == 0
    assert _statuses(webhook) == ["firing", "resolved"], survivor.logs()
    takeovers = [e for e in survivor.events() if e["event"] == "check_taken_over"]
    # at start (nothing stored yet), then the dead holder's firing alert
    assert [(e["check"], e["active_alerts"]) for e in takeovers if e["check"] == CHECK][-1] == (
        CHECK,
        1,
    )
    history = await _query(postgres_dsn, schema, "SELECT kind FROM opswatch_history ORDER BY id")
    assert [r["kind"] for r in history] == ["fired", "resolved"]


async def _sender(dsn: str, schema: str) -> str | None:
    """The replica holding a claim on a pending outbox row (the one sending it)."""
    rows = await _query(
        dsn,
        schema,
        "SELECT claimed_by FROM opswatch_outbox WHERE state = 'pending' "
        "AND claimed_by IS NOT NULL AND claim_until > clock_timestamp()",
    )
    return str(rows[0]["claimed_by"]) if rows else None


async def test_a_replica_killed_mid_send_leaves_the_row_to_the_other_within_three_intervals(
    daemons: tuple[Daemon, Daemon],
    postgres_dsn: str,
    schema: str,
    target: Receiver,
    webhook: Receiver,
) -> None:
    await _poll(lambda: _check_holder(postgres_dsn, schema))
    await _poll(daemons[0].status)
    await _poll(daemons[1].status)
    webhook.script(Reply.HANG)  # the firing's first send never ends: its sender is killed

    await target.stop()
    (first,) = await webhook.wait_for(1, timeout=WAIT_S)
    sender = _holder_of(daemons, await _poll(lambda: _sender(postgres_dsn, schema)))
    survivor = daemons[1] if sender is daemons[0] else daemons[0]
    assert sender.process is not None
    sender.process.kill()
    killed_at = asyncio.get_running_loop().time()
    await sender.process.wait()
    await target.start()  # the survivor resolves the alert: a later row on the same channel

    # the dead replica's claim lapses within 3 intervals: the survivor sends the row again
    _, again = await webhook.wait_for(2, timeout=WAIT_S)
    took = asyncio.get_running_loop().time() - killed_at
    assert again.headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
    assert took <= TTL_S + 2 * INTERVAL_S, took
    # and the channel moves on: the resolution follows, in order
    await webhook.wait_for(3, timeout=WAIT_S)
    assert await survivor.terminate() == 0
    assert _statuses(webhook) == ["firing", "firing", "resolved"], survivor.logs()
