"""Fixtures for notifier tests: real local receivers (see ``tests.peers``) and a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opswatch.model import Alert, AlertState, Severity, Transition, TransitionKind, fingerprint
from opswatch.state.sqlite import SQLiteStore
from tests.peers import Receiver

ReceiverFactory = Callable[[], Awaitable[Receiver]]


@pytest.fixture
async def receiver_factory() -> AsyncIterator[ReceiverFactory]:
    started: list[Receiver] = []

    async def make() -> Receiver:
        receiver = Receiver()
        await receiver.start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        await receiver.stop()


@pytest.fixture
async def receiver(receiver_factory: ReceiverFactory) -> Receiver:
    return await receiver_factory()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite3"


@pytest.fixture
async def store(state_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(state_path)
    await store.open()
    yield store
    await store.close()


T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def transition(
    rule: str = "cpu_high",
    *,
    check: str = "host",
    kind: TransitionKind = TransitionKind.FIRED,
    severity: Severity = Severity.WARNING,
    value: float = 97.3,
    labels: Mapping[str, str] | None = None,
    started_at: datetime = T0,
    at: datetime | None = None,
    summary: str = "CPU busy",
    previous_severity: Severity | None = None,
) -> Transition:
    """A transition as the tracker makes them (resolved ones carry ``resolved_at``)."""
    labels = {"host": "web1"} if labels is None else dict(labels)
    at = started_at if at is None else at
    resolved = kind is TransitionKind.RESOLVED
    alert = Alert(
        fingerprint=fingerprint(rule, labels),
        rule=rule,
        check=check,
        labels=labels,
        state=AlertState.RESOLVED if resolved else AlertState.FIRING,
        severity=severity,
        summary=summary,
        value=value,
        started_at=started_at,
        last_seen_at=at,
        resolved_at=at if resolved else None,
    )
    return Transition(
        alert=alert,
        kind=kind,
        at=at,
        previous_state=AlertState.FIRING if resolved else None,
        previous_severity=previous_severity,
    )
