"""The one commit path for alert changes.

Every writer of alert state (a check's run, a recovery's outcome, a replica retiring the alerts
of removed rules; next an operator's ack or resolve) hands :meth:`AlertBook.commit` its
transitions and the alerts it touched. The book takes exactly those alerts' changes from the
tracker, turns the transitions into outbox rows (mute -> route -> render), and writes alert
rows, history and outbox rows in one transaction. A failed write hands the changes back to the
tracker (:meth:`~opswatch.alerts.tracker.AlertTracker.restore`): memory is never ahead of the
store, so the next run finds the same condition again and the firing is stored and notified
once, when the store takes it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime

import structlog

from opswatch.alerts.tracker import AlertTracker
from opswatch.model import AlertState, CycleRecord, Sample, Transition, TransitionKind
from opswatch.notifiers.pipeline import NotifyPipeline
from opswatch.ports import CommitStore
from opswatch.state.outage import StoreOutage

log = structlog.get_logger("opswatch")

TRANSITION_EVENTS = {
    TransitionKind.FIRED: "alert_fired",
    TransitionKind.RESOLVED: "alert_resolved",
    TransitionKind.SEVERITY_CHANGED: "alert_severity_changed",
    TransitionKind.REMINDER: "alert_reminder",
    TransitionKind.ESCALATED: "alert_escalated",
    TransitionKind.ACKNOWLEDGED: "alert_acknowledged",
    TransitionKind.UNACKNOWLEDGED: "alert_unacknowledged",
    TransitionKind.FLAPPING_STARTED: "alert_flapping_started",
    TransitionKind.FLAPPING_ENDED: "alert_flapping_ended",
    TransitionKind.CLIMBED: "alert_climbed",
}


class AlertBook:
    """Commits alert changes with their transitions and notifications, or not at all."""

    def __init__(
        self,
        store: CommitStore,
        tracker: AlertTracker,
        pipeline: NotifyPipeline,
        wake: Callable[[], None],
        outage: StoreOutage,
    ) -> None:
        self.store = store
        self._outage = outage
        self.tracker = tracker
        #: swapped by a reload (routes, wording, muter)
        self.pipeline = pipeline
        self._wake = wake

    async def commit(
        self,
        source: str,
        transitions: Sequence[Transition],
        now: datetime,
        *,
        touched: Collection[str] = (),
        notify: Sequence[Transition] | None = None,
        samples: Sequence[Sample] = (),
    ) -> bool:
        """Write the changes of the alerts in ``transitions`` and ``touched`` (fingerprints),
        the transitions, the notifications of ``notify`` (default: all transitions) and the
        metric history's ``samples`` in one transaction. ``source`` names the writer in the
        log (a check, ``recovery``, ``rules``). Returns whether it was written; when not, the
        tracker is as before the changes."""
        fingerprints = {*touched, *(t.alert.fingerprint for t in transitions)}
        changes = self.tracker.take(fingerprints)
        if not changes and not transitions and not samples:
            return True
        active = [a for a in changes.alerts if a.state is not AlertState.RESOLVED]
        resolved = [t.alert.fingerprint for t in transitions if t.kind is TransitionKind.RESOLVED]
        notified = transitions if notify is None else notify
        try:
            outbox = await self.pipeline.rows(self.store, notified, now)
            await self.store.record(
                CycleRecord(active, resolved, transitions, outbox, samples), now
            )
        except Exception as exc:  # a store outage: keep memory where the store is
            self.tracker.restore(changes)
            error = f"{type(exc).__name__}: {exc}"
            if not self._outage.down:  # one traceback per outage, not per run
                log.error(
                    "state_write_failed",
                    check=source,
                    transitions=len(transitions),
                    error=error,
                    exc_info=True,
                )
            self._outage.failed(error)
            return False
        self._outage.succeeded()
        for transition in transitions:
            alert = transition.alert
            log.info(
                TRANSITION_EVENTS[transition.kind],
                fingerprint=alert.fingerprint,
                rule=alert.rule,
                check=alert.check,
                severity=alert.severity.value,
                summary=alert.summary,
                value=alert.value,
            )
        if outbox:
            self._wake()
        return True
