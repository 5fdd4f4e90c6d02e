"""The state store the daemon talks to, whichever holds it: SQLite (one daemon) or PostgreSQL
(one or several replicas), and the lease that goes with it.

``OPSWATCH_STATE_URL`` unset: :class:`~opswatch.alerts.store.SQLiteStore` at
``OPSWATCH_STATE_PATH`` and :class:`~opswatch.alerts.lease.NoLease`. Set (``postgresql://``):
:class:`~opswatch.alerts.store_postgres.PostgresStore` (tables ``opswatch_*`` in
``OPSWATCH_STATE_SCHEMA`` when set) and its lease table, or Redis leases when
``OPSWATCH_LEASE_URL`` is set. asyncpg and redis are imported only then.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from opswatch.alerts.lease import Lease, NoLease, PostgresLease, RedisLease, replica_id
from opswatch.alerts.store import CycleRecord, SQLiteStore
from opswatch.config import Settings
from opswatch.model import Alert, Notification, OutboxItem, RecoveryResult, Transition

#: a lease lasts this many check intervals without renewal
LEASE_INTERVALS = 3


class StateStore(Protocol):
    """What the daemon and the outbox use of a state store (both stores satisfy it)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def load_active(self) -> list[Alert]: ...

    async def record(self, cycle: CycleRecord, now: datetime) -> None: ...

    async def history(
        self, limit: int = 100, fingerprint: str | None = None
    ) -> list[Transition]: ...

    async def recovery_record(self, result: RecoveryResult) -> None: ...

    async def recovery_runs(
        self, since: datetime, key: str | None = None
    ) -> list[RecoveryResult]: ...

    async def recovery_history(self, limit: int = 100) -> list[RecoveryResult]: ...

    async def evidence_record(
        self, fingerprint: str, at: datetime, data: dict[str, Any]
    ) -> None: ...

    async def evidence(self, fingerprint: str, limit: int = 10) -> list[dict[str, Any]]: ...

    async def outbox_due(self, now: datetime, limit: int) -> Sequence[OutboxItem]: ...

    async def outbox_next_due(self) -> datetime | None: ...

    async def outbox_delivered(self, item_id: int, at: datetime) -> None: ...

    async def outbox_postpone(
        self, item_id: int, attempts: int, next_attempt_at: datetime, error: str
    ) -> None: ...

    async def outbox_failed(self, item_id: int, at: datetime, error: str) -> None: ...

    async def outbox_counts(self) -> dict[str, int]: ...

    async def outbox_channels(
        self, fingerprints: Sequence[str], since: datetime
    ) -> dict[str, frozenset[str]]: ...

    async def outbox_divert(
        self,
        item_id: int,
        copies: Sequence[tuple[str, Notification]],
        at: datetime,
        error: str,
    ) -> None: ...

    async def outbox_merge(
        self,
        item_ids: Sequence[int],
        channel: str,
        notification: Notification,
        created_at: datetime,
        at: datetime,
    ) -> int | None: ...


def open_store(settings: Settings, replica: str | None = None) -> StateStore:
    """The configured store, not yet opened (``await store.open()``). ``replica`` names this
    process in the outbox claims of a shared store (default: :func:`replica_id`)."""
    if settings.state_url is None:
        return SQLiteStore(settings.state_path)
    from opswatch.alerts.store_postgres import PostgresStore  # noqa: PLC0415 - asyncpg

    return PostgresStore(
        settings.state_url.reveal(),
        schema=settings.state_schema,
        display=str(settings.state_url),
        replica=replica or replica_id(),
        # an idle outbox still looks for rows another replica stored but could not send
        poll_interval=settings.interval,
    )


def open_lease(settings: Settings, store: StateStore) -> Lease:
    """The lease for ``store``: none for SQLite; Redis when ``OPSWATCH_LEASE_URL`` is set;
    else the PostgreSQL store's own lease table. The holder is the store's replica name."""
    if settings.state_url is None:
        return NoLease()
    from opswatch.alerts.store_postgres import PostgresStore  # noqa: PLC0415 - asyncpg

    if not isinstance(store, PostgresStore):
        raise TypeError(f"a shared lease needs the PostgreSQL store, got {store!r}")
    if settings.lease_url is not None:
        prefix = f"opswatch:lease:{settings.state_schema or 'public'}:"
        return RedisLease(settings.lease_url.reveal(), store.replica, prefix=prefix)
    return PostgresLease(store, store.replica)


def lease_ttl(settings: Settings) -> float:
    """How long a check's lease outlives its last renewal: ``LEASE_INTERVALS`` intervals."""
    return LEASE_INTERVALS * settings.interval
