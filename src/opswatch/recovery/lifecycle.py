"""The alert side of recovery: FIRING -> REMEDIATING -> RESOLVED (auto-recovered) or
ESCALATED, evidence at fire time, and quiet self-healing. The daemon wires it in.

For each FIRED transition of a run (:meth:`Remediation.intake`, before the run is stored),
and each end of flapping that finds the alert still firing (its recovery paused meanwhile):

* evidence is captured once for the run and attached to the transition (rendered in the
  notification) and stored in the alert's history;
* an alert whose rule (and target) has a binding is claimed: REMEDIATING, stored in the same
  transaction as its FIRED transition, and kept out of resolution by plain check runs while
  the recovery runs (``in_progress``, passed to the tracker);
* with ``OPSWATCH_RECOVERY_NOTIFY=on_failure`` its FIRED notification is held (the
  transition is stored in history, not in the outbox).

Then a task per claimed alert runs the runner and applies the result
(:meth:`Remediation.apply`): a verified success resolves the alert with "auto-recovered in
12 s after 1 restart" (not notified at all when its FIRED was held: quiet self-healing); a
failure, or a run refused by the budget, escalates it (severity one step up, kept, with
"recovery failed: <reason>"); any other skip (dry-run, flapping, busy) hands the alert back
to the rule and releases a held FIRED notification with the reason.

An operator never misses a failure: every claimed alert ends in exactly one of those; a
claim interrupted by a stop is found REMEDIATING at the next start (:meth:`restore`) and
escalated as interrupted, which is notified.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence

import structlog

from opswatch.alerts.book import AlertBook
from opswatch.model import (
    Alert,
    AlertState,
    Clock,
    RecoveryOutcome,
    RecoveryResult,
    Transition,
    TransitionKind,
)
from opswatch.ports import RecoveryStore
from opswatch.recovery.config import Binding, RecoverySettings, target_key
from opswatch.recovery.evidence import EvidenceCollector, EvidenceSettings
from opswatch.recovery.runner import RecoveryRunner, Verify, alert_target, describe_outcome

log = structlog.get_logger(__name__)

#: outcomes that escalate the alert
ESCALATING = frozenset({RecoveryOutcome.FAILED, RecoveryOutcome.SKIPPED_BUDGET})
INTERRUPTED = "recovery interrupted: opswatch stopped while it ran"


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    transition: Transition
    binding: Binding


class Remediation:
    def __init__(
        self,
        runner: RecoveryRunner,
        *,
        book: AlertBook,
        store: RecoveryStore,
        verifier: Callable[[Alert], Verify],
        evidence: EvidenceSettings,
        clock: Clock,
    ) -> None:
        self.runner = runner
        self._book = book
        self._tracker = book.tracker
        self._store = store
        self._verifier = verifier
        #: replaced by a reload
        self.evidence = evidence
        self._clock = clock
        #: fingerprints claimed by a recovery that has not been applied yet
        self.in_progress: set[str] = set()
        #: FIRED transitions held back (on_failure), by fingerprint
        self._held: dict[str, Transition] = {}
        self._tasks: set[asyncio.Task[RecoveryResult]] = set()

    @property
    def settings(self) -> RecoverySettings:
        return self.runner.settings

    def _muted(self, alert: Alert) -> bool:
        """Asks the notify pipeline's muter: a silenced alert is not remediated either."""
        return self._book.pipeline.muter.muted(alert, self._clock())

    # -- in a check run ------------------------------------------------------------------

    async def intake(
        self, transitions: list[Transition]
    ) -> tuple[list[Transition], list[Transition], list[Claim]]:
        """Before a run is stored: (transitions with evidence, the ones to notify, claims).
        Claimed alerts are REMEDIATING in the tracker when this returns."""
        fired = [t for t in transitions if t.kind is TransitionKind.FIRED]
        if not fired and not any(_calmed(t) for t in transitions):
            return transitions, transitions, []
        collector = EvidenceCollector(self.evidence, self._clock)
        evidence = await collector.capture([t.alert for t in fired])
        for fingerprint, captured in evidence.items():
            try:
                await self._store.evidence_record(fingerprint, captured.at, captured.to_json())
            except Exception as exc:  # a store outage: the run goes on (the commit says more)
                log.warning(
                    "evidence_write_failed",
                    fingerprint=fingerprint,
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=True,
                )
        transitions = [
            dataclasses.replace(t, evidence=evidence[t.alert.fingerprint].lines())
            if t.kind is TransitionKind.FIRED and t.alert.fingerprint in evidence
            else t
            for t in transitions
        ]
        claims: list[Claim] = []
        tracker = self._tracker
        for transition in transitions:
            fingerprint = transition.alert.fingerprint
            claimable = transition.kind is TransitionKind.FIRED or _calmed(transition)
            if not claimable or fingerprint in self.in_progress:
                continue
            binding = self.runner.binding_for(transition.alert)
            if binding is None or self._muted(transition.alert):
                continue
            if tracker.begin_remediation(fingerprint) is None:
                continue
            self.in_progress.add(fingerprint)
            claims.append(Claim(transition, binding))
        if self.settings.notify == "on_failure":
            for claim in claims:
                if claim.transition.kind is TransitionKind.FIRED:
                    self._held[claim.transition.alert.fingerprint] = claim.transition
        notify = [
            t
            for t in transitions
            if not (t.kind is TransitionKind.FIRED and t.alert.fingerprint in self._held)
        ]
        return transitions, notify, claims

    def release(self, claims: Sequence[Claim]) -> None:
        """The run holding ``claims`` was not stored: nothing of it happened (its alerts are
        back in the tracker as before the run), so no recovery starts for them."""
        for claim in claims:
            fingerprint = claim.transition.alert.fingerprint
            self.in_progress.discard(fingerprint)
            self._held.pop(fingerprint, None)

    def start(self, claims: Sequence[Claim]) -> None:
        """After the run was stored: one task per claim."""
        for claim in claims:
            task = asyncio.create_task(
                self.recover(claim.transition.alert, claim.binding),
                name=f"recovery:{claim.transition.alert.fingerprint}",
            )
            self._tasks.add(task)
            task.add_done_callback(self._done(claim.transition.alert.fingerprint))

    def _done(self, fingerprint: str) -> Callable[[asyncio.Task[RecoveryResult]], None]:
        def done(task: asyncio.Task[RecoveryResult]) -> None:
            self._tasks.discard(task)
            if task.cancelled() or task.exception() is None:
                return
            # the store failed under the run: hand the alert back to its rule, and say so
            log.error("recovery_crashed", fingerprint=fingerprint, exc_info=task.exception())
            self.in_progress.discard(fingerprint)
            self._tracker.end_remediation(fingerprint)

        return done

    async def recover(
        self, alert: Alert, binding: Binding, *, dry_run: bool = False
    ) -> RecoveryResult:
        """Run the recovery of a claimed alert and apply its result."""
        ctx = self.runner.context(binding, alert)
        result = await self.runner.run(binding, ctx, self._verifier(alert), dry_run=dry_run)
        await self.apply(alert, binding, result)
        return result

    async def apply(self, alert: Alert, binding: Binding, result: RecoveryResult) -> None:
        now = self._clock()
        fingerprint = alert.fingerprint
        tracker = self._tracker
        held = self._held.pop(fingerprint, None)
        note = describe_outcome(result, binding.action.noun)
        transitions: list[Transition] = []
        notify: list[Transition] = []
        if result.outcome is RecoveryOutcome.SUCCEEDED:
            resolved = tracker.recovered(fingerprint, now, note)
            transitions = [resolved] if resolved is not None else []
            notify = [] if held is not None else transitions  # quiet self-healing
        elif result.outcome in ESCALATING:
            escalated = tracker.escalate(fingerprint, now, note)
            transitions = notify = [escalated] if escalated is not None else []
        else:
            tracker.end_remediation(fingerprint)
            notify = [dataclasses.replace(held, note=note)] if held is not None else []
        self.in_progress.discard(fingerprint)
        committed = await self._book.commit(
            "recovery", transitions, now, touched=(fingerprint,), notify=notify
        )
        if not committed:  # the store failed: the alert goes back to its rule
            tracker.end_remediation(fingerprint)

    # -- operators ------------------------------------------------------------------------

    async def run_manual(
        self, binding: Binding, target: str | None, *, dry_run: bool
    ) -> RecoveryResult:
        """``POST /api/v1/recovery/{binding}/run``: for the binding's active alert (claimed
        and applied like an automatic run), or, without one, unverified."""
        name = binding.target.lower() if binding.target is not None else (target or "")
        tracker = self._tracker
        alert = next(
            (
                a
                for a in tracker.active()
                if a.rule == binding.rule
                and (not name or target_key(alert_target(a)) == target_key(name))
            ),
            None,
        )
        reasons = [] if alert is None else self._book.pipeline.muter.muting(alert, self._clock())
        if alert is not None and reasons:
            ctx = self.runner.context(binding, alert, name)
            detail = "the alert is muted: " + "; ".join(reasons)
            return await self.runner.refuse(binding, ctx, RecoveryOutcome.SKIPPED_SILENCED, detail)
        if (
            alert is not None
            and alert.state is AlertState.FIRING
            and alert.fingerprint not in self.in_progress
        ):
            tracker.begin_remediation(alert.fingerprint)
            self.in_progress.add(alert.fingerprint)
            await self._book.commit("recovery", [], self._clock(), touched=(alert.fingerprint,))
            claimed = tracker.get(alert.fingerprint) or alert
            try:
                return await self.recover(claimed, binding, dry_run=dry_run)
            finally:
                self.in_progress.discard(alert.fingerprint)
        ctx = self.runner.context(binding, alert, name)
        return await self.runner.run(binding, ctx, None, dry_run=dry_run)

    # -- start and stop -------------------------------------------------------------------

    async def restore(self, active: Sequence[Alert]) -> None:
        """At start: re-mark escalated alerts (their last run failed), and escalate the ones
        left REMEDIATING by a stop (their outcome is unknown: an operator must look)."""
        if not active:
            return
        tracker = self._tracker
        runs = await self._store.recovery_runs(min(a.started_at for a in active))
        now = self._clock()
        transitions: list[Transition] = []
        for alert in active:
            episode = [
                r for r in runs if r.fingerprint == alert.fingerprint and r.at >= alert.started_at
            ]
            if episode and episode[-1].outcome in ESCALATING:
                tracker.mark_escalated(alert.fingerprint)
            if alert.state is not AlertState.REMEDIATING:
                continue
            escalated = tracker.escalate(alert.fingerprint, now, INTERRUPTED)
            if escalated is None:
                continue
            transitions.append(escalated)
            binding = self.runner.binding_for(alert)
            await self._store.recovery_record(
                RecoveryResult(
                    action=binding.action.name if binding is not None else "?",
                    fingerprint=alert.fingerprint,
                    outcome=RecoveryOutcome.FAILED,
                    attempts=0,
                    duration_s=0.0,
                    detail=INTERRUPTED,
                    at=now,
                    rule=alert.rule,
                    target=alert_target(alert),
                )
            )
        if transitions:
            await self._book.commit("recovery", transitions, now)

    async def wait(self) -> None:
        """Until every recovery in progress has been applied (tests, tools)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def cancel(self) -> None:
        """Stop: cancel the runs in progress (their alerts stay REMEDIATING in the store and
        are escalated as interrupted at the next start)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _calmed(transition: Transition) -> bool:
    """The end of an alert's flapping while it still fires: its recovery resumes."""
    return (
        transition.kind is TransitionKind.FLAPPING_ENDED
        and transition.alert.state is AlertState.FIRING
    )
