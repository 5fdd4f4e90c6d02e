"""Leases: which replica runs a check's pipeline when several share one state store.

A lease is a name (``check:http:api``), a holder (this process) and an expiry. The holder
renews it at every run of the check; another replica takes it over once it expired, that is
when the holder stopped renewing (killed, hung, cut off) for a whole TTL. Each tenure has a
*token*: it stays the same across renewals and changes whenever the lease is taken (over),
so a replica knows when it must reload a check's alerts from the store before trusting its
memory of them.

Implementations, behind :class:`Lease`:

* :class:`NoLease`: one daemon, SQLite: always granted, one token forever;
* :class:`PostgresLease`: a row per lease in the state store's ``opswatch_leases``, taken or
  renewed by one atomic upsert-if-expired-or-mine, expiry on the server's clock;
* :class:`RedisLease`: a key per lease holding ``holder\\ntoken`` with a ``PX`` expiry, taken
  (``SET ... PX``, only when absent) or renewed (``PEXPIRE``, only when ours) by one Lua
  script, so a check-then-set never races an expiry.

:class:`CheckLeases` is what the daemon uses: one lease per check, TTL = 3 intervals, and a
verdict per run (:class:`Tenure`).
"""

from __future__ import annotations

import asyncio
import enum
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from opswatch.ports import LeaseError, LeaseTable

#: a lease call that takes longer than this counts as failed (the backend is in trouble)
CALL_TIMEOUT_S = 5.0


class Lease(Protocol):
    """Named, expiring, renewable exclusive leases held by ``holder``."""

    #: False for :class:`NoLease`: nothing else can hold a lease, nothing needs reloading
    shared: bool
    holder: str

    async def open(self) -> None: ...

    async def acquire(self, name: str, ttl: float) -> str | None:
        """Renew ``name`` if this holder has it, take it if it is free or expired; returns
        the tenure's token, or None while another holder's lease is live. Raises
        :class:`LeaseError`."""
        ...

    async def release(self, name: str) -> None:
        """Give ``name`` up now if this holder has it (the others need not wait a TTL)."""
        ...

    async def close(self) -> None: ...


def replica_id() -> str:
    """This process among the replicas: ``host:pid:random`` (a restart is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class NoLease:
    """A single daemon: every lease is granted, always with the same token."""

    shared = False

    def __init__(self, holder: str = "local") -> None:
        self.holder = holder

    async def open(self) -> None:
        return None

    async def acquire(self, name: str, ttl: float) -> str | None:
        return "local"

    async def release(self, name: str) -> None:
        return None

    async def close(self) -> None:
        return None


class PostgresLease:
    """Leases in the PostgreSQL state store's ``opswatch_leases`` table (its pool, its
    schema). Open and close the store around it."""

    shared = True

    def __init__(self, store: LeaseTable, holder: str) -> None:
        self.holder = holder
        self._store = store

    async def open(self) -> None:
        return None

    async def acquire(self, name: str, ttl: float) -> str | None:
        token: str | None = await _bounded(
            self._store.lease_acquire(name, self.holder, secrets.token_hex(8), ttl)
        )
        return token

    async def release(self, name: str) -> None:
        await _bounded(self._store.lease_release(name, self.holder))

    async def close(self) -> None:
        return None


# KEYS[1] = lease key; ARGV = holder, new token, ttl in ms. Returns the tenure's token or nil.
_REDIS_ACQUIRE = """
local value = redis.call('GET', KEYS[1])
if value then
    local sep = string.find(value, '\\n', 1, true)
    if sep and string.sub(value, 1, sep - 1) == ARGV[1] then
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return string.sub(value, sep + 1)
    end
    return false
end
redis.call('SET', KEYS[1], ARGV[1] .. '\\n' .. ARGV[2], 'PX', ARGV[3])
return ARGV[2]
"""

# KEYS[1] = lease key; ARGV[1] = holder. Deletes the key only when this holder has it.
_REDIS_RELEASE = """
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '\\n' then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLease:
    """Leases as Redis keys ``<prefix><name>`` (``OPSWATCH_LEASE_URL=redis://...``).

    redis is imported at :meth:`open`, only when this lease is configured.
    """

    shared = True

    def __init__(self, url: str, holder: str, *, prefix: str = "opswatch:lease:") -> None:
        self.holder = holder
        self.prefix = prefix
        self._url = url
        self._client: Any = None
        self._acquire: Any = None
        self._release: Any = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)

    async def open(self) -> None:
        from redis.asyncio import Redis  # noqa: PLC0415 - heavy; only when configured
        from redis.exceptions import RedisError  # noqa: PLC0415

        client = Redis.from_url(
            self._url, socket_timeout=CALL_TIMEOUT_S, socket_connect_timeout=CALL_TIMEOUT_S
        )
        self._client = client
        self._acquire = client.register_script(_REDIS_ACQUIRE)
        self._release = client.register_script(_REDIS_RELEASE)
        self._errors = (OSError, RedisError)

    async def acquire(self, name: str, ttl: float) -> str | None:
        token = secrets.token_hex(8)
        ttl_ms = max(1, round(ttl * 1000))
        held = await self._call(
            self._script(self._acquire)(
                keys=[self.prefix + name], args=[self.holder, token, ttl_ms]
            )
        )
        if held is None:
            return None
        return held.decode() if isinstance(held, bytes) else str(held)

    async def release(self, name: str) -> None:
        await self._call(self._script(self._release)(keys=[self.prefix + name], args=[self.holder]))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _script(self, script: Any) -> Any:
        if script is None:
            raise LeaseError("the Redis lease is not open")
        return script

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await _bounded(awaitable)
        except self._errors as exc:
            raise LeaseError(f"redis lease: {type(exc).__name__}") from None


async def _bounded(awaitable: Any) -> Any:
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            return await awaitable
    except TimeoutError:
        raise LeaseError(f"lease call timed out after {CALL_TIMEOUT_S:g}s") from None


class Tenure(enum.Enum):
    """What one run of a check may do."""

    HELD = "held"  # this replica runs the check, as in its previous run
    TAKEN = "taken"  # it runs the check from now on: reload the check's state first
    STANDBY = "standby"  # another replica runs it: skip, forget the check's state


class CheckLeases:
    """One lease per check (``check:<check>``), renewed at each run, TTL = 3 intervals.

    :meth:`claim` gives the run's :class:`Tenure`; :meth:`valid` tells, by this process's
    monotonic clock, whether the lease taken at the start of the run surely still holds
    (the server's expiry is at least ``ttl`` after the request was sent): a run that stalled
    for half a TTL is dropped rather than recorded.
    """

    def __init__(
        self,
        lease: Lease,
        ttl: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        self.lease = lease
        self.ttl = ttl
        self._monotonic = monotonic
        self._tokens: dict[str, str] = {}
        self._since: dict[str, float] = {}

    @staticmethod
    def name(check: str) -> str:
        return f"check:{check}"

    async def claim(self, check: str) -> Tenure:
        """Renew or take this check's lease. Raises :class:`LeaseError` (the caller then
        treats the run as standby; :meth:`valid` is already False)."""
        started = self._monotonic()
        # forgotten until granted: after a failed call the next grant counts as taken
        self._since.pop(check, None)
        previous = self._tokens.pop(check, None)
        token = await self.lease.acquire(self.name(check), self.ttl)
        if token is None:
            return Tenure.STANDBY
        self._tokens[check] = token
        self._since[check] = started
        if previous == token or not self.lease.shared:
            return Tenure.HELD
        return Tenure.TAKEN

    def valid(self, check: str) -> bool:
        if not self.lease.shared:
            return True
        since = self._since.get(check)
        return since is not None and self._monotonic() - since < self.ttl / 2

    def drop(self, check: str) -> None:
        """Forget this tenure: the next grant counts as :attr:`Tenure.TAKEN` (a reload of the
        check's state failed and must be tried again)."""
        self._tokens.pop(check, None)
        self._since.pop(check, None)

    def held(self) -> list[str]:
        return sorted(self._tokens)

    async def release_all(self) -> None:
        """Give up every lease this replica holds (shutdown: the others take over at once)."""
        for check in self.held():
            self._since.pop(check, None)
            self._tokens.pop(check, None)
            await self.lease.release(self.name(check))
