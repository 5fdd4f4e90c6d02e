"""Which replica runs each check, and what taking a check over or leaving it means.

One daemon on SQLite runs every check (:class:`~opswatch.state.leases.NoLease`). Several
replicas on one PostgreSQL store hold one lease per check (TTL from
:class:`~opswatch.timing.Timing`): the holder renews it at each run; on taking a check over a
replica first reloads the check's alerts from the store (another replica may have fired or
resolved them meanwhile); while standby it forgets them and reports the check as standby.
"""

from __future__ import annotations

import structlog

from opswatch.alerts.tracker import AlertTracker
from opswatch.daemon.checks import CheckBoard
from opswatch.ports import AlertStore, LeaseError, StoreError
from opswatch.recovery.lifecycle import Remediation
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.state.leases import CheckLeases, Tenure
from opswatch.state.outage import StoreOutage

log = structlog.get_logger("opswatch")


class Replicas:
    def __init__(
        self,
        *,
        leases: CheckLeases,
        store: AlertStore,
        tracker: AlertTracker,
        evaluator: RuleEvaluator,
        remediation: Remediation,
        board: CheckBoard,
        outage: StoreOutage,
    ) -> None:
        self.leases = leases
        self._store = store
        self._tracker = tracker
        self._evaluator = evaluator
        self._remediation = remediation
        self._board = board
        self._outage = outage

    @property
    def shared(self) -> bool:
        """Whether other replicas may hold checks (a shared store's leases)."""
        return self.leases.lease.shared

    async def lead(self, check: str, *, status: bool = True) -> bool:
        """Whether this replica runs ``check`` now: always alone (SQLite); with replicas, when
        it holds the check's lease (renewed here). A lease that cannot be reached counts as
        standby but leaves the status alone, so /healthz turns unhealthy (the check is late).
        ``status``: report a standby verdict to the board (a real run, not a side errand)."""
        try:
            tenure = await self.leases.claim(check)
        except (LeaseError, StoreError) as exc:
            if not self._outage.down:  # one line per outage, not per check and run
                log.warning("lease_failed", check=check, error=str(exc))
            self._outage.failed(str(exc))
            self._tracker.replace_check(check, ())
            return False
        if tenure is Tenure.TAKEN:
            try:
                await self._take_over(check)
            except BaseException:
                self.leases.drop(check)  # reload again at the next run
                raise
        if tenure is not Tenure.STANDBY:
            return True
        self._tracker.replace_check(check, ())
        if status:
            await self._board.standby(check)
        return False

    def valid(self, check: str) -> bool:
        """Whether the lease taken at the start of this run surely still holds."""
        return self.leases.valid(check)

    async def _take_over(self, check: str) -> None:
        """This replica runs ``check`` from now on: its alerts are the store's, not what this
        replica remembers."""
        rules = self._evaluator.rule_names()
        stored = [
            a for a in await self._store.load_active() if a.check == check and a.rule in rules
        ]
        self._tracker.replace_check(check, stored)
        self._evaluator.seed(stored)
        # a recovery left REMEDIATING by the previous holder (killed, stopped) is escalated
        await self._remediation.restore(stored)
        log.info("check_taken_over", check=check, active_alerts=len(stored))

    async def release_all(self) -> None:
        """Stop: the other replicas take the checks over now rather than after a TTL."""
        try:
            await self.leases.release_all()
        except (LeaseError, StoreError) as exc:
            log.warning("lease_release_failed", error=str(exc))
