"""From transitions to outbox rows, in named stages: mute -> route -> render.

* **mute**: a :class:`Muter` says which alerts are not to be notified now, and why (the
  daemon's :class:`opswatch.alerts.muting.MuteStack` of silences, windows, dependencies and
  pause; without any, :class:`NothingMuted`). The
  recovery runner asks the same muter before it acts. A resolution whose firing was never
  notified (``Alert.notified`` false: muted) notifies nobody; one inside a silence still
  reaches the channels its firing was notified to. A flapping alert (``Alert.flapping``,
  :mod:`opswatch.alerts.flapping`) is notified only at the start and end of its flapping.
* **route**: each transition goes to the channels of its severity's route, a resolution to the
  channels its firing reached (:func:`opswatch.notifiers.routing.plan`).
* **render**: one notification per channel and group (:func:`opswatch.notifiers.render.render`).

The rows are written by the commit path (:mod:`opswatch.alerts.book`) in the same transaction
as the transitions, and delivered by the outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from opswatch.model import (
    FLAPPING_KINDS,
    UNNOTIFIED_KINDS,
    Alert,
    Notification,
    Transition,
    TransitionKind,
)
from opswatch.notifiers.render import RenderOptions, render
from opswatch.notifiers.routing import RouteTable, plan
from opswatch.ports import RouteStore

Row = tuple[str, Notification]


class Muter(Protocol):
    """Whether an alert is muted now: notified to nobody, remediated by nothing; and why
    (one line per reason: ``silence ID``, ``maintenance NAME``, ...)."""

    def muted(self, alert: Alert, now: datetime) -> bool: ...

    def muting(self, alert: Alert, now: datetime) -> list[str]: ...


class NothingMuted:
    """The muter while no silence or maintenance window exists."""

    def muted(self, alert: Alert, now: datetime) -> bool:
        del alert, now
        return False

    def muting(self, alert: Alert, now: datetime) -> list[str]:
        del alert, now
        return []


@dataclass(frozen=True)
class NotifyPipeline:
    routes: RouteTable = field(default_factory=lambda: RouteTable((), {}))
    render: RenderOptions = field(default_factory=RenderOptions)
    muter: Muter = field(default_factory=NothingMuted)

    async def rows(
        self, store: RouteStore, transitions: Sequence[Transition], now: datetime
    ) -> list[Row]:
        """One commit's transitions as outbox rows: one message per channel and group.
        History-only transitions (an operator's ack or unack) are sent nowhere, nor those of a
        flapping alert but the start and end of its flapping."""
        told = [
            t
            for t in transitions
            if t.kind not in UNNOTIFIED_KINDS and (t.kind in FLAPPING_KINDS or not t.alert.flapping)
        ]
        heard = [t for t in told if t.kind is not TransitionKind.RESOLVED or t.alert.notified]
        audible = self.mute(heard, now)
        resolved = [t for t in heard if t.kind is TransitionKind.RESOLVED and t not in audible]
        if not audible and not resolved:
            return []
        notified = await self.notified(store, [*audible, *resolved])
        # a resolution inside a silence reaches the channels its firing was notified to
        audible += [t for t in resolved if notified.get(t.alert.fingerprint)]
        audible.sort(key=transitions.index)
        if not audible:
            return []
        rows: list[Row] = []
        for channels, group in plan(audible, self.routes, notified):
            notification = render(group, now, self.render)
            rows.extend((channel, notification) for channel in channels)
        return rows

    def mute(self, transitions: Sequence[Transition], now: datetime) -> list[Transition]:
        return [t for t in transitions if not self.muter.muted(t.alert, now)]

    async def notified(
        self, store: RouteStore, transitions: Sequence[Transition]
    ) -> dict[str, frozenset[str]]:
        """Where the earlier notifications of these alerts went (a resolution follows them)."""
        earlier = [t.alert for t in transitions if t.kind is not TransitionKind.FIRED]
        if not earlier:
            return {}
        fingerprints = sorted({a.fingerprint for a in earlier})
        return await store.outbox_channels(fingerprints, min(a.started_at for a in earlier))
