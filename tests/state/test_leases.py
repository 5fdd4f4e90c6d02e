"""Leases on PostgreSQL and on Redis, held to the same tests; the per-check verdicts the
daemon acts on; and the no-op lease of a single daemon."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import pytest

from opswatch.ports import LeaseError
from opswatch.state.leases import (
    CheckLeases,
    Lease,
    NoLease,
    PostgresLease,
    RedisLease,
    Tenure,
)
from opswatch.state.postgres import PostgresStore
from tests.conftest import free_port
from tests.pgschema import fresh_schema

TTL = 30.0

LeaseFactory = Callable[[str], Lease]


@pytest.fixture(params=["postgres", "redis"])
async def make_lease(request: pytest.FixtureRequest) -> AsyncIterator[LeaseFactory]:
    """Builds opened leases for holders on one shared backend (a fresh schema or key prefix)."""
    opened: list[Lease] = []
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("postgres_dsn")
        async with fresh_schema(dsn) as schema:
            store = PostgresStore(dsn, schema=schema)
            await store.open()

            def postgres(holder: str) -> Lease:
                return PostgresLease(store, holder)

            yield postgres
            await store.close()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = f"opswatch-test:{secrets.token_hex(6)}:"

    def redis(holder: str) -> Lease:
        lease = RedisLease(url, holder, prefix=prefix)
        opened.append(lease)
        return lease

    yield redis
    for lease in opened:
        await lease.close()


async def _open(lease: Lease) -> Lease:
    await lease.open()
    return lease


async def _expire(lease: Lease, name: str) -> None:
    """What a TTL passing without renewal looks like (no waiting in tests)."""
    if isinstance(lease, PostgresLease):
        store = lease._store
        assert isinstance(store, PostgresStore)
        await store.pool.execute(
            "UPDATE opswatch_leases SET expires_at = clock_timestamp() - interval '1 second' "
            "WHERE name = $1",
            name,
        )
    elif isinstance(lease, RedisLease):
        await lease._client.delete(lease.prefix + name)


async def test_a_free_lease_is_granted_and_renewal_keeps_its_token(
    make_lease: LeaseFactory,
) -> None:
    a = await _open(make_lease("a"))
    token = await a.acquire("check:http:api", TTL)
    assert token is not None
    assert await a.acquire("check:http:api", TTL) == token


async def test_a_live_lease_is_refused_to_another_holder(make_lease: LeaseFactory) -> None:
    a, b = await _open(make_lease("a")), await _open(make_lease("b"))
    assert await a.acquire("check:http:api", TTL) is not None
    assert await b.acquire("check:http:api", TTL) is None
    assert await b.acquire("check:host", TTL) is not None  # leases are per name


async def test_only_one_of_many_holders_racing_for_a_free_lease_gets_it(
    make_lease: LeaseFactory,
) -> None:
    holders = [await _open(make_lease(f"h{i}")) for i in range(8)]
    tokens = await asyncio.gather(*(h.acquire("check:http:api", TTL) for h in holders))
    assert sum(token is not None for token in tokens) == 1


async def test_an_expired_lease_is_taken_over_with_a_new_token(make_lease: LeaseFactory) -> None:
    a, b = await _open(make_lease("a")), await _open(make_lease("b"))
    first = await a.acquire("check:http:api", TTL)
    await _expire(a, "check:http:api")
    second = await b.acquire("check:http:api", TTL)
    assert second is not None
    assert second != first
    assert await a.acquire("check:http:api", TTL) is None


async def test_a_holder_whose_lease_lapsed_gets_a_new_token(make_lease: LeaseFactory) -> None:
    a = await _open(make_lease("a"))
    first = await a.acquire("check:http:api", TTL)
    await _expire(a, "check:http:api")
    again = await a.acquire("check:http:api", TTL)
    assert again is not None
    assert again != first  # someone may have held it in between: reload the check's state


async def test_a_released_lease_is_free_at_once_but_not_released_by_others(
    make_lease: LeaseFactory,
) -> None:
    a, b = await _open(make_lease("a")), await _open(make_lease("b"))
    assert await a.acquire("check:http:api", TTL) is not None
    await b.release("check:http:api")  # not b's: nothing happens
    assert await b.acquire("check:http:api", TTL) is None
    await a.release("check:http:api")
    assert await b.acquire("check:http:api", TTL) is not None


async def test_an_unreachable_redis_is_a_lease_error_naming_no_secret() -> None:
    lease = RedisLease(f"redis://:hunter2@127.0.0.1:{free_port()}/0", "a")
    await lease.open()
    try:
        with pytest.raises(LeaseError) as raised:
            await lease.acquire("check:http:api", TTL)
        assert "hunter2" not in str(raised.value)
    finally:
        await lease.close()


async def test_without_a_shared_store_every_lease_is_granted() -> None:
    lease = NoLease()
    assert await lease.acquire("check:host", TTL) == await lease.acquire("check:host", TTL)
    leases = CheckLeases(lease, TTL)
    assert await leases.claim("host") is Tenure.HELD  # nothing to reload, ever
    assert await leases.claim("host") is Tenure.HELD


# -- the daemon's per-check verdicts --------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_check_leases_tell_taken_then_held_then_standby(make_lease: LeaseFactory) -> None:
    a = CheckLeases(await _open(make_lease("a")), TTL)
    b = CheckLeases(await _open(make_lease("b")), TTL)
    assert await a.claim("http:api") is Tenure.TAKEN
    assert await a.claim("http:api") is Tenure.HELD
    assert await b.claim("http:api") is Tenure.STANDBY
    await _expire(a.lease, CheckLeases.name("http:api"))
    assert await b.claim("http:api") is Tenure.TAKEN
    assert await a.claim("http:api") is Tenure.STANDBY
    await b.release_all()
    assert await a.claim("http:api") is Tenure.TAKEN  # its memory is stale: reload


async def test_a_run_that_stalled_for_half_a_ttl_is_no_longer_valid(
    make_lease: LeaseFactory,
) -> None:
    clock = FakeMonotonic()
    leases = CheckLeases(await _open(make_lease("a")), TTL, monotonic=clock)
    assert not leases.valid("http:api")
    await leases.claim("http:api")
    clock.now += TTL / 2 - 1
    assert leases.valid("http:api")
    clock.now += 1
    assert not leases.valid("http:api")


async def test_after_a_failed_lease_call_the_next_grant_counts_as_taken(
    make_lease: LeaseFactory,
) -> None:
    class Flaky:
        shared = True
        holder = "a"

        def __init__(self, inner: Lease) -> None:
            self.inner = inner
            self.fail = False

        async def open(self) -> None: ...

        async def acquire(self, name: str, ttl: float) -> str | None:
            if self.fail:
                raise LeaseError("postgres lease: ConnectionResetError")
            return await self.inner.acquire(name, ttl)

        async def release(self, name: str) -> None: ...

        async def close(self) -> None: ...

    flaky = Flaky(await _open(make_lease("a")))
    leases = CheckLeases(flaky, TTL)
    assert await leases.claim("http:api") is Tenure.TAKEN
    flaky.fail = True
    with pytest.raises(LeaseError):
        await leases.claim("http:api")
    assert not leases.valid("http:api")
    flaky.fail = False
    # same token (never lost), but the daemon dropped the check's state when the call failed
    assert await leases.claim("http:api") is Tenure.TAKEN
