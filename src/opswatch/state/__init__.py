"""The state store the daemon talks to, whichever holds it: SQLite (one daemon) or PostgreSQL
(one or several replicas), and the lease that goes with it.

``OPSWATCH_STATE_URL`` unset: :class:`~opswatch.state.sqlite.SQLiteStore` at
``OPSWATCH_STATE_PATH`` and :class:`~opswatch.state.leases.NoLease`. Set (``postgresql://``):
:class:`~opswatch.state.postgres.PostgresStore` (tables ``opswatch_*`` in
``OPSWATCH_STATE_SCHEMA`` when set) and its lease table, or Redis leases when
``OPSWATCH_LEASE_URL`` is set. asyncpg and redis are imported only then.
"""

from __future__ import annotations

from opswatch.config import Settings
from opswatch.ports import StateStore
from opswatch.state.leases import Lease, NoLease, PostgresLease, RedisLease, replica_id
from opswatch.state.sqlite import SQLiteStore
from opswatch.timing import Timing


def open_store(settings: Settings, replica: str | None = None) -> StateStore:
    """The configured store, not yet opened (``await store.open()``). ``replica`` names this
    process in the outbox claims of a shared store (default: :func:`replica_id`)."""
    if settings.state_url is None:
        return SQLiteStore(settings.state_path)
    from opswatch.state.postgres import PostgresStore  # noqa: PLC0415 - asyncpg

    timing = Timing.of(settings)
    return PostgresStore(
        settings.state_url.reveal(),
        schema=settings.state_schema,
        display=str(settings.state_url),
        replica=replica or replica_id(),
        # an outbox claim dies with its replica, like a check's lease
        claim_ttl=timing.lease_ttl,
        # an idle outbox still looks for rows another replica stored but could not send
        poll_interval=timing.outbox_poll,
    )


def open_lease(settings: Settings, store: StateStore) -> Lease:
    """The lease for ``store``: none for SQLite; Redis when ``OPSWATCH_LEASE_URL`` is set;
    else the PostgreSQL store's own lease table. The holder is the store's replica name."""
    if settings.state_url is None:
        return NoLease()
    from opswatch.state.postgres import PostgresStore  # noqa: PLC0415 - asyncpg

    if not isinstance(store, PostgresStore):
        raise TypeError(f"a shared lease needs the PostgreSQL store, got {store!r}")
    if settings.lease_url is not None:
        prefix = f"opswatch:lease:{settings.state_schema or 'public'}:"
        return RedisLease(settings.lease_url.reveal(), store.replica, prefix=prefix)
    return PostgresLease(store, store.replica)
