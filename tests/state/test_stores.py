"""The state stores, SQLite and PostgreSQL, held to the same tests: atomic cycle records,
restart persistence, outbox bookkeeping. Then what only a shared PostgreSQL store does:
versioned migrations that replicas apply once, and outbox rows claimed by one replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from opswatch.model import (
    Alert,
    AlertState,
    CycleRecord,
    Matcher,
    MatchOp,
    Notification,
    Pause,
    PauseAction,
    PauseEvent,
    Ping,
    PingKind,
    RecoveryOutcome,
    RecoveryResult,
    Severity,
    Silence,
    Transition,
    TransitionKind,
    fingerprint,
)
from opswatch.ports import StateStore, StoreError
from opswatch.state.postgres import MIGRATIONS, PostgresStore
from opswatch.state.sqlite import SQLiteStore
from tests.conftest import free_port
from tests.pgschema import fresh_schema

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

StoreFactory = Callable[..., StateStore]


@pytest.fixture(params=["sqlite", "postgres"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Builds (unopened) stores over one state: a file, or a fresh PostgreSQL schema.
    Keyword arguments go to PostgresStore (``replica``, ``claim_ttl``...)."""
    if request.param == "sqlite":

        def sqlite(**_: Any) -> StateStore:
            return SQLiteStore(tmp_path / "state.sqlite3")

        yield sqlite
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    async with fresh_schema(dsn) as schema:

        def postgres(**options: Any) -> StateStore:
            return PostgresStore(dsn, schema=schema, **options)

        yield postgres


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[StateStore]:
    opened = make_store()
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    async with fresh_schema(postgres_dsn) as name:
        yield name


def _alert(rule: str = "disk_full", state: AlertState = AlertState.FIRING) -> Alert:
    labels = {"mountpoint": "/"}
    return Alert(
        fingerprint=fingerprint(rule, labels),
        rule=rule,
        check="host",
        labels=labels,
        state=state,
        severity=Severity.CRITICAL,
        summary="disk / is 95% full",
        value=95.0,
        started_at=NOW,
        last_seen_at=NOW,
        last_notified_at=NOW,
    )


def _notification(transition: Transition, key: str | None = None) -> Notification:
    return Notification(
        transitions=(transition,),
        title="[FIRING] disk_full",
        text="disk / is 95% full",
        severity=Severity.CRITICAL,
        idempotency_key=key or transition.key,
    )


def _fired(rule: str = "disk_full", at: datetime = NOW) -> Transition:
    return Transition(replace(_alert(rule), started_at=at), TransitionKind.FIRED, at)


async def _enqueue(store: StateStore, *rows: tuple[str, Notification]) -> None:
    await store.record(CycleRecord([], [], [], list(rows)), NOW)


# -- both stores ---------------------------------------------------------------------------


async def test_alerts_history_and_outbox_survive_reopening(make_store: StoreFactory) -> None:
    alert = _alert()
    fired = Transition(alert, TransitionKind.FIRED, NOW)
    store = make_store()
    await store.open()
    await store.record(
        CycleRecord([alert], [], [fired], [("webhook:1", _notification(fired))]), NOW
    )
    await store.close()

    reopened = make_store()
    await reopened.open()
    try:
        assert await reopened.load_active() == [alert]
        assert await reopened.history(10) == [fired]
        (item,) = await reopened.outbox_due(NOW, 10)
        assert item.channel == "webhook:1"
        assert item.notification == _notification(fired)
        assert item.created_at == NOW
    finally:
        await reopened.close()


async def test_resolution_removes_the_active_alert_and_keeps_its_history(
    store: StateStore,
) -> None:
    alert = _alert()
    await store.record(CycleRecord([alert], [], [], []), NOW)
    resolved = Transition(
        _alert(state=AlertState.RESOLVED), TransitionKind.RESOLVED, NOW + timedelta(minutes=5)
    )
    await store.record(CycleRecord([], [alert.fingerprint], [resolved], []), NOW)
    assert await store.load_active() == []
    assert [t.kind for t in await store.history(10, alert.fingerprint)] == [TransitionKind.RESOLVED]


async def test_history_is_newest_first_and_filtered_by_fingerprint(store: StateStore) -> None:
    disk, cpu = _fired("disk_full"), _fired("cpu_high", NOW + timedelta(seconds=1))
    await store.record(CycleRecord([], [], [disk], []), NOW)
    await store.record(CycleRecord([], [], [cpu], []), NOW)
    assert await store.history(10) == [cpu, disk]
    assert await store.history(1) == [cpu]
    assert await store.history(10, disk.alert.fingerprint) == [disk]


async def test_the_history_of_a_period_is_oldest_first_and_bounded(store: StateStore) -> None:
    early = _fired("disk_full", NOW - timedelta(hours=2))
    disk, cpu = _fired("disk_full"), _fired("cpu_high", NOW + timedelta(microseconds=500))
    for t in (early, disk, cpu):
        await store.record(CycleRecord([], [], [t], []), t.at)
    assert await store.history_since(NOW, 10) == [disk, cpu]
    assert await store.history_since(NOW + timedelta(microseconds=1), 10) == [cpu]
    assert await store.history_since(NOW - timedelta(days=1), 2) == [early, disk]


async def test_the_same_notification_is_enqueued_once_per_channel(store: StateStore) -> None:
    fired = _fired()
    rows = [("webhook:1", _notification(fired)), ("webhook:2", _notification(fired))]
    await store.record(CycleRecord([], [], [], rows), NOW)
    await store.record(CycleRecord([], [], [], rows), NOW)
    assert await store.outbox_counts() == {"pending": 2}


async def test_postponed_rows_are_not_due_until_their_time(store: StateStore) -> None:
    await _enqueue(store, ("webhook:1", _notification(_fired())))
    (item,) = await store.outbox_due(NOW, 10)
    later = NOW + timedelta(seconds=30)
    await store.outbox_postpone(item.id, 1, later, "HTTP 503")
    assert await store.outbox_due(NOW, 10) == []
    assert await store.outbox_next_due() == later
    (again,) = await store.outbox_due(later, 10)
    assert again.attempts == 1
    await store.outbox_delivered(again.id, later)
    assert await store.outbox_counts() == {"delivered": 1}
    assert await store.outbox_next_due() is None


async def test_due_rows_come_oldest_first_up_to_the_limit(store: StateStore) -> None:
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        await _enqueue(store, ("webhook:1", _notification(_fired(), key)))
    first = await store.outbox_due(NOW, 3)
    assert [i.notification.idempotency_key for i in first] == keys[:3]
    for item in first:
        await store.outbox_failed(item.id, NOW, "HTTP 404")
    rest = await store.outbox_due(NOW, 10)
    assert [i.notification.idempotency_key for i in rest] == keys[3:]
    assert await store.outbox_counts() == {"failed": 3, "pending": 2}


async def test_due_rows_can_be_read_for_one_channel_and_without_a_limit(
    store: StateStore,
) -> None:
    for i in range(3):
        await _enqueue(store, ("webhook:1", _notification(_fired(), f"one{i}")))
        await _enqueue(store, ("webhook:2", _notification(_fired(), f"two{i}")))
    one = await store.outbox_due(NOW, None, "webhook:1")
    assert [i.notification.idempotency_key for i in one] == ["one0", "one1", "one2"]
    assert [i.channel for i in await store.outbox_due(NOW, 2, "webhook:2")] == ["webhook:2"] * 2
    assert len(await store.outbox_due(NOW, None)) == 6
    (first,) = await store.outbox_due(NOW, 1, "webhook:2")
    await store.outbox_postpone(first.id, 1, NOW + timedelta(seconds=30), "HTTP 503")
    assert await store.outbox_next_due("webhook:1") == NOW
    for item in one:
        await store.outbox_delivered(item.id, NOW)
    assert await store.outbox_next_due("webhook:1") is None
    assert await store.outbox_next_due("webhook:3") is None


async def test_a_failed_write_rolls_back_the_whole_cycle(store: StateStore) -> None:
    alert = _alert()
    fired = Transition(alert, TransitionKind.FIRED, NOW)
    # the outbox row is written last; one that cannot be encoded aborts the whole cycle
    unencodable: dict[str, str] = {"mountpoint": object()}  # type: ignore[dict-item]
    broken = Transition(replace(alert, labels=unencodable), TransitionKind.FIRED, NOW)
    with pytest.raises(TypeError):
        await store.record(
            CycleRecord([alert], [], [fired], [("webhook:1", _notification(broken))]), NOW
        )
    assert await store.load_active() == []
    assert await store.history(10) == []
    assert await store.outbox_counts() == {}


async def test_outbox_channels_tell_where_each_alert_was_notified(store: StateStore) -> None:
    disk, cpu = _fired("disk_full"), _fired("cpu_high")
    await _enqueue(store, ("webhook:1", _notification(disk)), ("slack:ops", _notification(disk)))
    await _enqueue(store, ("webhook:1", _notification(cpu)))
    fps = [disk.alert.fingerprint, cpu.alert.fingerprint, "nosuchalert"]
    assert await store.outbox_channels(fps, NOW) == {
        disk.alert.fingerprint: frozenset({"webhook:1", "slack:ops"}),
        cpu.alert.fingerprint: frozenset({"webhook:1"}),
    }
    assert await store.outbox_channels(fps, NOW + timedelta(seconds=1)) == {}
    assert await store.outbox_channels([], NOW) == {}


async def test_diverting_a_row_queues_each_copy_once_and_ends_the_row(store: StateStore) -> None:
    fired = _fired()
    await _enqueue(store, ("webhook:1", _notification(fired)))
    (item,) = await store.outbox_due(NOW, 10)
    copy = _notification(fired)
    await store.outbox_divert(item.id, [("mail:ops", copy)], NOW, "HTTP 404")
    await store.outbox_divert(item.id, [("mail:ops", copy)], NOW, "HTTP 404")
    (sent,) = await store.outbox_due(NOW, 10)
    assert (sent.channel, sent.notification) == ("mail:ops", copy)
    assert await store.outbox_counts() == {"diverted": 1, "pending": 1}


async def test_merging_rows_queues_one_row_and_ends_the_others(store: StateStore) -> None:
    disk, cpu = _fired("disk_full"), _fired("cpu_high")
    await _enqueue(store, ("webhook:1", _notification(disk)), ("webhook:1", _notification(cpu)))
    ids = [item.id for item in await store.outbox_due(NOW, 10)]
    merged = Notification((disk, cpu), "[FIRING:2]", "two", Severity.CRITICAL, "merged-key")
    later = NOW + timedelta(seconds=10)
    new_id = await store.outbox_merge(ids, "webhook:1", merged, NOW, later)
    assert new_id is not None
    assert new_id not in ids
    assert await store.outbox_counts() == {"merged": 2, "pending": 1}
    (item,) = await store.outbox_due(later, 10)
    assert (item.id, item.notification, item.created_at) == (new_id, merged, NOW)
    assert await store.outbox_merge([], "webhook:1", merged, NOW, later) is None


def _run(at: datetime, key: str = "systemd:nginx", outcome: str = "succeeded") -> RecoveryResult:
    return RecoveryResult(
        action="systemd",
        fingerprint=_alert().fingerprint,
        outcome=RecoveryOutcome(outcome),
        attempts=2,
        duration_s=1.5,
        detail="restarted nginx",
        at=at,
        rule="disk_full",
        target="nginx",
        key=key,
        trial=outcome == "failed",
    )


async def test_recovery_runs_are_kept_per_budget_key_and_listed_newest_first(
    store: StateStore,
) -> None:
    runs = [
        _run(NOW),
        _run(NOW + timedelta(minutes=1), "docker:web", "failed"),
        _run(NOW + timedelta(minutes=2)),
    ]
    for run in runs:
        await store.recovery_record(run)
    assert await store.recovery_runs(NOW) == runs
    assert await store.recovery_runs(NOW + timedelta(seconds=1)) == runs[1:]
    assert await store.recovery_runs(NOW, "systemd:nginx") == [runs[0], runs[2]]
    assert await store.recovery_history(2) == [runs[2], runs[1]]


async def test_evidence_is_kept_per_alert_newest_first(store: StateStore) -> None:
    fp = _alert().fingerprint
    await store.evidence_record(fp, NOW, {"top": [["postgres", 97.5]]})
    await store.evidence_record(fp, NOW, {"top": [], "note": "second"})
    await store.evidence_record("other", NOW, {"x": 1})
    assert await store.evidence(fp) == [
        {"top": [], "note": "second"},
        {"top": [["postgres", 97.5]]},
    ]
    assert await store.evidence(fp, 1) == [{"top": [], "note": "second"}]


# -- PostgreSQL only: migrations ------------------------------------------------------------


async def test_replicas_starting_together_apply_each_migration_once(
    postgres_dsn: str, schema: str
) -> None:
    stores = [PostgresStore(postgres_dsn, schema=schema, replica=f"r{i}") for i in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert {await s.schema_version() for s in stores} == {len(MIGRATIONS)}
        await stores[0].record(CycleRecord([_alert()], [], [], []), NOW)
        assert await stores[3].load_active() == [_alert()]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_schema_migrated_by_a_newer_opswatch_is_refused(
    postgres_dsn: str, schema: str
) -> None:
    store = PostgresStore(postgres_dsn, schema=schema)
    await store.open()
    await store.pool.execute("UPDATE opswatch_schema SET version = 999")
    await store.close()
    with pytest.raises(StoreError, match="schema version 999"):
        await PostgresStore(postgres_dsn, schema=schema).open()


async def test_an_unreachable_database_is_named_with_its_password_masked() -> None:
    url = f"postgresql://opswatch:hunter2@127.0.0.1:{free_port()}/state"
    store = PostgresStore(url, display="postgresql://opswatch:***@127.0.0.1/state")
    with pytest.raises(StoreError) as raised:
        await store.open()
    assert "opswatch:***@" in str(raised.value)
    assert "hunter2" not in str(raised.value)


async def test_tables_live_in_the_configured_schema_only(postgres_dsn: str, schema: str) -> None:
    store = PostgresStore(postgres_dsn, schema=schema)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'opswatch%' AND table_schema = $1",
            schema,
        )
    finally:
        await conn.close()
    assert {t["table_name"] for t in tables} == {
        "opswatch_schema",
        "opswatch_alerts",
        "opswatch_history",
        "opswatch_outbox",
        "opswatch_leases",
        "opswatch_recovery_runs",
        "opswatch_evidence",
        "opswatch_silences",
        "opswatch_pings",
        "opswatch_pauses",
        "opswatch_pause_events",
        "opswatch_maintenance_windows",
        "opswatch_metric_series",
        "opswatch_metric_samples",
        "opswatch_metric_rollups",
        "opswatch_metric_meta",
    }


# -- PostgreSQL only: outbox claims ---------------------------------------------------------


@pytest.fixture
async def replicas(postgres_dsn: str, schema: str) -> AsyncIterator[tuple[PostgresStore, ...]]:
    """Two replicas' stores on one schema."""
    a = PostgresStore(postgres_dsn, schema=schema, replica="a")
    b = PostgresStore(postgres_dsn, schema=schema, replica="b")
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


class Beats:
    """The claim renewer's injected sleep: records each wait, then blocks until released, so
    a test decides when (and whether: a replica that died never renews) a renewal runs."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._called = asyncio.Condition()
        self._gate = asyncio.Semaphore(0)

    async def __call__(self, seconds: float) -> None:
        async with self._called:
            self.waits.append(seconds)
            self._called.notify_all()
        await self._gate.acquire()

    def release(self) -> None:
        self._gate.release()

    async def called(self, times: int) -> None:
        async with asyncio.timeout(5), self._called:
            await self._called.wait_for(lambda: len(self.waits) >= times)


async def _claim_lifetimes(store: PostgresStore) -> list[float]:
    """Seconds each live claim has left, on the server's clock."""
    rows = await store.pool.fetch(
        "SELECT extract(epoch FROM claim_until - clock_timestamp()) FROM opswatch_outbox "
        "WHERE claim_until IS NOT NULL ORDER BY id"
    )
    return [float(row[0]) for row in rows]


async def _expire_claims(store: PostgresStore) -> None:
    """What a claim's TTL passing looks like (no waiting in tests)."""
    await store.pool.execute(
        "UPDATE opswatch_outbox SET claim_until = clock_timestamp() - interval '1 second' "
        "WHERE claim_until IS NOT NULL"
    )


async def test_two_replicas_never_get_the_same_outbox_row(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    for i in range(40):
        await _enqueue(a, (f"webhook:{i % 8}", _notification(_fired(), f"k{i}")))
    got_a, got_b = await asyncio.gather(a.outbox_due(NOW, 100), b.outbox_due(NOW, 100))
    ids_a, ids_b = {i.id for i in got_a}, {i.id for i in got_b}
    assert not ids_a & ids_b
    assert len(ids_a | ids_b) == 40
    # one channel's rows all went to one replica (they go out in order)
    assert not {i.channel for i in got_a} & {i.channel for i in got_b}
    # a replica sees its own claims again (its outbox passes never overlap)
    assert {i.id for i in await a.outbox_due(NOW, 100)} == ids_a


async def test_a_channel_another_replica_is_sending_waits_for_it(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    await _enqueue(a, ("webhook:1", _notification(_fired(), "first")))
    (first,) = await a.outbox_due(NOW, 10)
    await _enqueue(a, ("webhook:1", _notification(_fired(), "second")))
    assert await b.outbox_due(NOW, 10) == []  # a is sending webhook:1: the order holds
    await a.outbox_delivered(first.id, NOW)
    (second,) = await b.outbox_due(NOW, 10)
    assert second.notification.idempotency_key == "second"


async def test_the_claim_of_a_replica_that_went_silent_expires(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    await _enqueue(a, ("webhook:1", _notification(_fired())))
    (claimed,) = await a.outbox_due(NOW, 10)
    assert await b.outbox_due(NOW, 10) == []
    next_due = await b.outbox_next_due()
    assert next_due is not None
    assert next_due > datetime.now(UTC)  # b waits for the claim, not for the due time
    await _expire_claims(a)
    (taken,) = await b.outbox_due(NOW, 10)
    assert taken.id == claimed.id
    assert await a.outbox_due(NOW, 10) == []  # b has it now


async def test_a_claim_is_renewed_while_its_replica_lives_and_lapses_once_it_stops(
    postgres_dsn: str, schema: str
) -> None:
    beats = Beats()
    a = PostgresStore(postgres_dsn, schema=schema, replica="a", claim_ttl=3.0, sleep=beats)
    b = PostgresStore(postgres_dsn, schema=schema, replica="b", claim_ttl=3.0, sleep=Beats())
    await a.open()
    await b.open()
    try:
        await beats.called(1)
        assert beats.waits == [1.0]  # a renews every third of a TTL
        await _enqueue(a, ("webhook:1", _notification(_fired())))
        (claimed,) = await a.outbox_due(NOW, 10)
        (left,) = await _claim_lifetimes(a)
        assert 2.0 < left <= 3.0  # the TTL it was built with, not minutes
        await _expire_claims(a)  # a TTL without renewal went by...
        beats.release()  # ...but a is alive: its renewer extends the claim
        await beats.called(2)
        (left,) = await _claim_lifetimes(a)
        assert 2.0 < left <= 3.0
        assert await b.outbox_due(NOW, 10) == []
        await _expire_claims(a)  # a died: nothing renews its claim any more
        (taken,) = await b.outbox_due(NOW, 10)
        assert taken.id == claimed.id
    finally:
        await a.close()
        await b.close()


async def test_finishing_a_row_keeps_the_replicas_other_claims_alive(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    for key in ("k1", "k2"):
        await _enqueue(a, ("webhook:1", _notification(_fired(), key)))
    first, _ = await a.outbox_due(NOW, 10)
    await _expire_claims(a)  # a was slow with the first row...
    await a.outbox_delivered(first.id, NOW)  # ...but it is alive: its other claim is renewed
    assert await b.outbox_due(NOW, 10) == []


async def test_postponing_a_row_releases_its_claim(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    await _enqueue(a, ("webhook:1", _notification(_fired())))
    (item,) = await a.outbox_due(NOW, 10)
    await a.outbox_postpone(item.id, 1, NOW + timedelta(seconds=30), "HTTP 503")
    (again,) = await b.outbox_due(NOW + timedelta(seconds=30), 10)
    assert (again.id, again.attempts) == (item.id, 1)


async def test_closing_a_store_hands_its_unfinished_claims_to_the_others(
    postgres_dsn: str, schema: str
) -> None:
    a = PostgresStore(postgres_dsn, schema=schema, replica="a")
    b = PostgresStore(postgres_dsn, schema=schema, replica="b")
    await a.open()
    await b.open()
    try:
        await _enqueue(a, ("webhook:1", _notification(_fired())))
        (item,) = await a.outbox_due(NOW, 10)
        await a.close()
        (taken,) = await b.outbox_due(NOW, 10)
        assert taken.id == item.id
    finally:
        await b.close()


async def test_a_merged_row_is_claimed_by_the_replica_that_merged_it(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    disk, cpu = _fired("disk_full"), _fired("cpu_high")
    await _enqueue(a, ("webhook:1", _notification(disk)), ("webhook:1", _notification(cpu)))
    ids = [item.id for item in await a.outbox_due(NOW, 10)]
    merged = Notification((disk, cpu), "[FIRING:2]", "two", Severity.CRITICAL, "merged-key")
    new_id = await a.outbox_merge(ids, "webhook:1", merged, NOW, NOW)
    assert await b.outbox_due(NOW, 10) == []  # a delivers it at once
    assert [i.id for i in await a.outbox_due(NOW, 10)] == [new_id]


async def test_an_idle_shared_outbox_still_looks_for_rows_now_and_then(
    postgres_dsn: str, schema: str
) -> None:
    store = PostgresStore(postgres_dsn, schema=schema, poll_interval=30.0)
    await store.open()
    try:
        next_due = await store.outbox_next_due()
        assert next_due is not None
        assert timedelta(seconds=25) < next_due - datetime.now(UTC) <= timedelta(seconds=30)
        await _enqueue(store, ("webhook:1", _notification(_fired())))
        assert await store.outbox_next_due() == NOW
    finally:
        await store.close()


# -- silences --------------------------------------------------------------------------------


async def test_silences_are_kept_replaced_by_id_and_read_by_their_end(
    make_store: StoreFactory,
) -> None:
    later = Silence(
        id="b",
        matchers=(
            Matcher("check", MatchOp.REGEX, "postgres:.*"),
            Matcher("rule", MatchOp.EQUAL, "x"),
        ),
        starts_at=NOW,
        ends_at=NOW + timedelta(hours=2),
        created_by="ana",
        comment="upgrade",
        created_at=NOW,
        updated_at=NOW,
    )
    sooner = replace(later, id="a", ends_at=NOW + timedelta(hours=1))
    store = make_store()
    await store.open()
    try:
        await store.silence_save(later)
        await store.silence_save(sooner)
        assert await store.silences(NOW) == [sooner, later]
        assert await store.silences(NOW + timedelta(minutes=90)) == [later]
        changed = replace(later, comment="longer", ends_at=NOW + timedelta(hours=3))
        await store.silence_save(changed)
    finally:
        await store.close()
    reopened = make_store()  # a restart (or another replica) sees them
    await reopened.open()
    try:
        assert await reopened.silences(NOW) == [sooner, changed]
    finally:
        await reopened.close()


# -- heartbeat pings ------------------------------------------------------------------------


async def test_pings_are_kept_newest_first_pruned_per_heartbeat_and_read_latest_per_kind(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.open()
    try:
        start = Ping("backup", PingKind.START, NOW)
        done = Ping("backup", PingKind.SUCCESS, NOW + timedelta(seconds=30), 0, "ok\n", False, 30.0)
        other = Ping("batch", PingKind.FAIL, NOW, 3, "boom", True)
        for ping in (start, done, other):
            await store.ping_record(ping, keep=3)
        assert await store.pings("backup") == [done, start]
        assert await store.pings_latest("batch") == [other]
        later = [Ping("backup", PingKind.SUCCESS, NOW + timedelta(minutes=m)) for m in range(1, 4)]
        for ping in later:
            await store.ping_record(ping, keep=3)
        # three kept: the start is gone, batch keeps its own
        assert await store.pings("backup") == later[::-1]
        assert await store.pings("backup", limit=1) == [later[-1]]
    finally:
        await store.close()
    reopened = make_store()
    await reopened.open()
    try:
        assert await reopened.pings_latest("backup") == [later[-1]]
        assert await reopened.pings("batch") == [other]
    finally:
        await reopened.close()


# -- pauses ----------------------------------------------------------------------------------


async def test_pauses_and_their_audit_are_kept_in_one_write_and_survive_a_reopen(
    make_store: StoreFactory,
) -> None:
    every = Pause(None, "ana", "deploy", NOW)
    api = Pause("http:api", "bob", None, NOW + timedelta(minutes=1))
    paused = PauseEvent(PauseAction.PAUSED, (), "ana", "deploy", NOW)
    resumed = PauseEvent(PauseAction.RESUMED, (), "carl", "done", NOW + timedelta(minutes=5))
    store = make_store()
    await store.open()
    try:
        await store.pause_change([every, api], (), paused)
        assert sorted(await store.pauses(), key=lambda p: p.by) == [every, api]
        again = replace(api, by="dora")
        await store.pause_change([again], [None], resumed)
    finally:
        await store.close()
    reopened = make_store()  # a restart (or another replica) sees them
    await reopened.open()
    try:
        assert await reopened.pauses() == [again]
        assert await reopened.pause_events() == [resumed, paused]
        assert await reopened.pause_events(limit=1) == [resumed]
    finally:
        await reopened.close()
