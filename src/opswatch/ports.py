"""The state store as each area sees it: one protocol per need, each method written once.

The stores (:mod:`opswatch.state.sqlite`, :mod:`opswatch.state.postgres`) satisfy
:class:`StateStore`, which is composed of the narrow protocols below; every area asks for the
narrowest one it needs (the outbox for :class:`OutboxStore`, routing for :class:`RouteStore`,
recovery for :class:`RecoveryStore`). This module imports only :mod:`opswatch.model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from opswatch.model import (
    Alert,
    CycleRecord,
    MaintenanceWindow,
    MetricSeries,
    Notification,
    OutboxItem,
    Pause,
    PauseEvent,
    Ping,
    RawPoint,
    RecoveryResult,
    Rollup,
    Silence,
    Transition,
)


class StoreError(Exception):
    """The state store cannot be opened, read or written. The message names the file or the
    (masked) URL, never a secret."""


class UnusableStateError(StoreError):
    """The state cannot be used at all and waiting will not help: corrupt, foreign, stamped by
    a newer opswatch, or not writable. Raised by ``open()``, before anything has started; the
    message is one line naming the file or the (masked) URL and the problem."""


class LeaseError(Exception):
    """The lease backend did not answer. The message names no secret."""


class OutageReport(Protocol):
    """Where a writer reports that the state store failed it, and that it works again."""

    def failed(self, error: str) -> None: ...

    def succeeded(self) -> None: ...


class AlertStore(Protocol):
    """Alerts and their history: what the commit path writes and the API reads."""

    async def load_active(self) -> list[Alert]: ...

    async def record(self, cycle: CycleRecord, now: datetime) -> None: ...

    async def history(
        self, limit: int = 100, fingerprint: str | None = None
    ) -> list[Transition]: ...


class TransitionLog(Protocol):
    """The alert history of a period, as the reports (:mod:`opswatch.reports`) read it."""

    async def history_since(self, since: datetime, limit: int) -> list[Transition]:
        """The transitions at or after ``since``, oldest first, at most ``limit``."""
        ...


class RouteStore(Protocol):
    """Where alerts were notified (a resolution follows its firing's channels)."""

    async def outbox_channels(
        self, fingerprints: Sequence[str], since: datetime
    ) -> dict[str, frozenset[str]]: ...


class OutboxStore(Protocol):
    """The outbox's rows: due, delivered, postponed, failed, diverted, merged."""

    async def outbox_due(
        self, now: datetime, limit: int | None, channel: str | None = None
    ) -> Sequence[OutboxItem]: ...

    async def outbox_next_due(self, channel: str | None = None) -> datetime | None: ...

    async def outbox_delivered(self, item_id: int, at: datetime) -> None: ...

    async def outbox_postpone(
        self, item_id: int, attempts: int, next_attempt_at: datetime, error: str
    ) -> None: ...

    async def outbox_failed(self, item_id: int, at: datetime, error: str) -> None: ...

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


class RunStore(Protocol):
    """Recovery runs: the results that budgets count and the API lists."""

    async def recovery_record(self, result: RecoveryResult) -> None: ...

    async def recovery_runs(
        self, since: datetime, key: str | None = None
    ) -> list[RecoveryResult]: ...

    async def recovery_history(self, limit: int = 100) -> list[RecoveryResult]: ...


class EvidenceStore(Protocol):
    """What was captured about a host when an alert fired."""

    async def evidence_record(
        self, fingerprint: str, at: datetime, data: dict[str, Any]
    ) -> None: ...

    async def evidence(self, fingerprint: str, limit: int = 10) -> list[dict[str, Any]]: ...


class RecoveryStore(AlertStore, RunStore, EvidenceStore, Protocol):
    """Everything recovery keeps and reads (its runs, evidence, the alerts' history)."""


class SilenceStore(Protocol):
    """Silences (:mod:`opswatch.alerts.silences`): every replica reads the same ones."""

    async def silence_save(self, silence: Silence) -> None:
        """Insert ``silence`` or replace the one with its id."""
        ...

    async def silences(self, ending_after: datetime) -> list[Silence]:
        """The silences that end after ``ending_after``, by id."""
        ...


class PingStore(Protocol):
    """Heartbeat pings (:mod:`opswatch.collectors.heartbeat`): every replica reads the same."""

    async def ping_record(self, ping: Ping, keep: int) -> None:
        """Store ``ping`` and drop all but the newest ``keep`` pings of its heartbeat."""
        ...

    async def pings(self, heartbeat: str, limit: int = 100) -> list[Ping]:
        """The newest pings of ``heartbeat`` first."""
        ...

    async def pings_latest(self, heartbeat: str) -> list[Ping]:
        """The newest ping of each kind of ``heartbeat``."""
        ...


class PauseStore(Protocol):
    """Pauses (:mod:`opswatch.alerts.pause`) and their audit: every replica reads the same."""

    async def pause_change(
        self, paused: Sequence[Pause], resumed: Sequence[str | None], event: PauseEvent
    ) -> None:
        """In one transaction: insert or replace ``paused`` (by check; ``None``: every
        check), delete the pauses of the checks in ``resumed``, and record ``event``."""
        ...

    async def pauses(self) -> list[Pause]:
        """The pauses in force."""
        ...

    async def pause_events(self, limit: int = 100) -> list[PauseEvent]:
        """The newest pause and resume events first."""
        ...


class MaintenanceStore(Protocol):
    """One-off maintenance windows (:mod:`opswatch.alerts.maintenance`): every replica reads
    the same ones."""

    async def maintenance_save(self, window: MaintenanceWindow) -> None:
        """Insert ``window`` or replace the one with its id."""
        ...

    async def maintenance_delete(self, window_id: str) -> None: ...

    async def maintenance_windows(self, ending_after: datetime) -> list[MaintenanceWindow]:
        """The windows that end after ``ending_after``, by id."""
        ...


class HistoryStore(Protocol):
    """The metric history (:mod:`opswatch.capacity`): series, raw samples (written by
    :meth:`AlertStore.record` with the cycle) and their roll-ups. Times are whole seconds
    since the epoch; ``until`` bounds are exclusive."""

    async def history_series(self, check: str | None = None) -> list[MetricSeries]:
        """The series (of ``check`` when given), by id."""
        ...

    async def history_samples(
        self, since: int, until: int, series: Sequence[int] | None = None
    ) -> list[RawPoint]:
        """Raw samples in ``[since, until)`` (of ``series`` when given), by time then series."""
        ...

    async def history_rollups(self, series: Sequence[int], since: int, until: int) -> list[Rollup]:
        """The roll-ups of ``series`` starting in ``[since, until)``, by series then time."""
        ...

    async def history_rollups_merged(
        self, series: Sequence[int], since: int, until: int, step: int
    ) -> list[Rollup]:
        """The roll-ups of ``series`` starting in ``[since, until)`` merged in the store into
        ``step``-wide buckets (``at - at % step``): the lowest min, the highest max and p95,
        the count-weighted mean, the summed count; by series then time."""
        ...

    async def history_rolled_until(self) -> int | None:
        """Where the last roll-up ended (None: none yet)."""
        ...

    async def history_store_rollups(self, rollups: Sequence[Rollup], rolled_until: int) -> None:
        """Insert or replace ``rollups`` and record ``rolled_until``, in one transaction."""
        ...

    async def history_prune(self, samples_before: int, rollups_before: int) -> tuple[int, int]:
        """Delete raw samples and roll-ups older than the bounds, and the series created
        before ``rollups_before`` that have no roll-up left; (samples, roll-ups) deleted."""
        ...

    async def history_bytes(self) -> int:
        """The space the history takes (SQLite: the used pages of the whole file)."""
        ...


class LeaseTable(Protocol):
    """Per-check leases kept in a shared store (the PostgreSQL store's ``opswatch_leases``)."""

    async def lease_acquire(self, name: str, holder: str, token: str, ttl: float) -> str | None: ...

    async def lease_release(self, name: str, holder: str) -> None: ...


class StateStore(
    RecoveryStore,
    RouteStore,
    OutboxStore,
    SilenceStore,
    PingStore,
    PauseStore,
    MaintenanceStore,
    HistoryStore,
    TransitionLog,
    Protocol,
):
    """A whole state store: both stores satisfy it."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def poll(self, seconds: float) -> None:
        """How often an idle outbox looks for rows it was not woken for (a reload sets it)."""
        ...

    def claim_for(self, seconds: float) -> None:
        """How long an outbox claim outlives its replica's last renewal (a reload sets it)."""
        ...

    async def outbox_counts(self) -> dict[str, int]: ...


class ReportStore(
    AlertStore, TransitionLog, RunStore, RouteStore, SilenceStore, HistoryStore, Protocol
):
    """What a report reads (:mod:`opswatch.reports.build`) and how it queues itself (an
    outbox-only :meth:`AlertStore.record`)."""


class CommitStore(AlertStore, RouteStore, Protocol):
    """What the commit path writes (alerts, history, outbox rows) and reads (routes)."""
