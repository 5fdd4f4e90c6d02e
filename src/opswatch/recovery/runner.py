"""The recovery runner: admission (lock, flapping, budget, host cap, dry-run), the area's only
retry loop, and verification. Every run ends in exactly one :class:`RecoveryResult`, stored.

One run for an alert (or an operator's request):

1. **lock**: one run at a time per key (``<action>:<what it acts on>``); a second one is
   ``skipped: busy`` at once rather than queued behind the first (which may fix both);
2. **flapping**: an alert that is flapping now (its identity's score, see
   :mod:`opswatch.alerts.flapping`, the one definition) or that fired ``flap_count`` times
   within ``flap_window`` (from the alert history, this episode included) is
   ``skipped: flapping``: restarting something that keeps falling over hides the problem;
3. **budget**: at most ``budget.runs`` action executions per ``budget.window`` for the key,
   counted from the stored results (so it holds across restarts). When it is used up the
   breaker is open; ``cooldown`` after the last execution one *trial* execution is allowed
   (half-open); a successful trial closes it (older executions stop counting). Beside it, a
   host-wide cap of executions in the last hour. Either exhausted: ``skipped: budget``;
4. **dry-run** (global or per request): ``skipped: dry-run``, the plan logged, nothing run;
5. **attempts**: tenacity, transient :class:`RecoveryError` only, exponential backoff with
   jitter, at most ``attempts`` (and never more than the budget allows) and ``total_seconds``,
   each attempt under ``attempt_timeout``; an attempt is the action and then **verification**:
   the check that fired is re-run (``verify()``, provided by the daemon) right away and then
   every ``verify_every`` until ``verify_for`` has passed, and counts only once the rule no
   longer finds. Sleeps come from the injected ``sleep``, so tests never wait.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.wait import WaitBaseT

from opswatch.alerts.flapping import FlapDetector, flapping_reason
from opswatch.model import (
    Alert,
    BudgetState,
    Clock,
    RecoveryOutcome,
    RecoveryResult,
    TransitionKind,
    utcnow,
)
from opswatch.ports import RecoveryStore
from opswatch.recovery.base import (
    ActionContext,
    CommandRunner,
    RecoveryError,
    SubprocessRunner,
    plural,
)
from opswatch.recovery.config import Binding, Budget, RecoverySettings
from opswatch.redact import scrub
from opswatch.retrying import log_retries

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]
#: re-runs the check that fired; True once the rule no longer finds for the alert's series
Verify = Callable[[], Awaitable[bool]]
#: stored alert history read for the flapping test
_FLAP_HISTORY = 200
_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """How hard one run tries. Tests pass ``wait=wait_none()``."""

    attempts: int = 3
    total_seconds: float = 600.0
    wait: WaitBaseT = field(default_factory=lambda: wait_exponential_jitter(multiplier=2, max=30))
    attempt_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.total_seconds <= 0 or self.attempt_timeout <= 0:
            raise ValueError("RecoveryPolicy: attempts, total_seconds, attempt_timeout > 0")

    @classmethod
    def from_settings(cls, settings: RecoverySettings) -> RecoveryPolicy:
        return cls(
            attempts=settings.attempts,
            total_seconds=settings.total_timeout_s,
            attempt_timeout=settings.attempt_timeout_s,
        )


def budget_state(
    budget: Budget, cooldown_s: float, key: str, runs: Sequence[RecoveryResult], now: datetime
) -> BudgetState:
    """Pure: the breaker of ``key`` from its stored results (any order, any age)."""
    since = now - timedelta(seconds=budget.window_s)
    executed = sorted((r for r in runs if r.key == key and r.attempts > 0), key=lambda r: r.at)
    closed_at = max(
        (r.at for r in executed if r.trial and r.outcome is RecoveryOutcome.SUCCEEDED),
        default=None,
    )
    counted = [r for r in executed if r.at > since and (closed_at is None or r.at > closed_at)]
    used = sum(r.attempts for r in counted)
    if used < budget.runs:
        return BudgetState(key, used, budget.runs, budget.runs - used, "closed")
    next_trial = max(r.at for r in counted) + timedelta(seconds=cooldown_s)
    if now >= next_trial:
        return BudgetState(key, used, budget.runs, 1, "half-open", trial=True)
    return BudgetState(key, used, budget.runs, 0, "open", next_trial_at=next_trial)


def alert_target(alert: Alert) -> str:
    """The alert's ``target`` label, else its check's instance (``http:api`` -> ``api``)."""
    return alert.labels.get("target") or alert.check.partition(":")[2]


def describe_outcome(result: RecoveryResult, noun: str) -> str:
    """The line a notification carries about a run."""
    match result.outcome:
        case RecoveryOutcome.SUCCEEDED:
            return (
                f"auto-recovered in {_seconds(result.duration_s)} after "
                f"{plural(result.attempts, noun)}"
            )
        case RecoveryOutcome.FAILED:
            return f"recovery failed: {result.detail}"
        case _:
            return f"recovery {result.outcome.value}: {result.detail}"


def _seconds(duration: float) -> str:
    whole = max(0, round(duration))
    return f"{whole} s" if whole < 120 else f"{whole // 60} min {whole % 60} s"


class RecoveryRunner:
    """Runs bound actions for alerts (and operators). One per daemon."""

    def __init__(
        self,
        settings: RecoverySettings,
        store: RecoveryStore,
        *,
        clock: Clock = utcnow,
        commands: CommandRunner | None = None,
        policy: RecoveryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        flapping: FlapDetector | None = None,
    ) -> None:
        #: replaced by a reload
        self.settings = settings
        self._flapping = flapping
        self._store = store
        self._clock = clock
        self._commands = commands or SubprocessRunner()
        self._policy = policy
        self._sleep = sleep
        self._locks: dict[str, asyncio.Lock] = {}
        #: runs finished by this process, per (action, outcome), for ``/metrics``
        self.outcomes: Counter[tuple[str, str]] = Counter()
        #: executions reserved by runs in progress (counted against the host-wide cap)
        self._reserved: dict[str, int] = {}

    @property
    def policy(self) -> RecoveryPolicy:
        return self._policy or RecoveryPolicy.from_settings(self.settings)

    def binding_for(self, alert: Alert) -> Binding | None:
        return self.settings.binding_for(alert.rule, alert_target(alert))

    def context(self, binding: Binding, alert: Alert | None, target: str = "") -> ActionContext:
        """The context of a run for ``alert`` or, without one, for ``binding`` and ``target``."""
        timeout = self.policy.attempt_timeout
        if alert is None:
            name = binding.target.lower() if binding.target is not None else target
            return ActionContext(
                rule=binding.rule, target=name, commands=self._commands, timeout=timeout
            )
        return ActionContext(
            rule=alert.rule,
            target=alert_target(alert),
            check=alert.check,
            fingerprint=alert.fingerprint,
            summary=alert.summary,
            labels=alert.labels,
            commands=self._commands,
            timeout=timeout,
        )

    def key(self, binding: Binding, ctx: ActionContext) -> str:
        return f"{binding.action.name}:{binding.action.target(ctx)}"

    async def budgets(self) -> list[tuple[Binding, BudgetState]]:
        """Each binding's breaker (for a per-rule binding: as for a run without a target)."""
        settings, now = self.settings, self._clock()
        runs = await self._store.recovery_runs(now - timedelta(seconds=settings.budget.window_s))
        states = []
        for binding in settings.bindings:
            key = self.key(binding, self.context(binding, None))
            states.append(
                (binding, budget_state(settings.budget, settings.cooldown_s, key, runs, now))
            )
        return states

    async def host_used(self) -> int:
        """Executions in the last hour, host-wide, including runs in progress."""
        runs = await self._store.recovery_runs(self._clock() - timedelta(seconds=_HOUR))
        return sum(r.attempts for r in runs) + sum(self._reserved.values())

    async def run(
        self,
        binding: Binding,
        ctx: ActionContext,
        verify: Verify | None,
        *,
        dry_run: bool = False,
    ) -> RecoveryResult:
        """One run, admitted or skipped; the result is stored and logged. Raises only
        :class:`asyncio.CancelledError` (and store errors)."""
        key = self.key(binding, ctx)
        started = time.monotonic()
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            result = self._result(
                binding,
                ctx,
                key=key,
                outcome=RecoveryOutcome.SKIPPED_BUSY,
                attempts=0,
                started=started,
                detail=f"another recovery of {key} is running",
            )
        else:
            async with lock:
                result = await self._admitted(
                    binding, ctx, key=key, verify=verify, dry_run=dry_run, started=started
                )
        return await self._finish(binding, key, ctx, result)

    async def refuse(
        self, binding: Binding, ctx: ActionContext, outcome: RecoveryOutcome, detail: str
    ) -> RecoveryResult:
        """A run the caller refuses before it starts (the alert is silenced): stored and
        logged like any other."""
        key = self.key(binding, ctx)
        result = self._result(
            binding,
            ctx,
            key=key,
            outcome=outcome,
            attempts=0,
            started=time.monotonic(),
            detail=detail,
        )
        return await self._finish(binding, key, ctx, result)

    async def _finish(
        self, binding: Binding, key: str, ctx: ActionContext, result: RecoveryResult
    ) -> RecoveryResult:
        await self._store.recovery_record(result)
        self.outcomes[(binding.action.name, result.outcome.value)] += 1
        log.info(
            "recovery_finished",
            action=binding.action.name,
            binding=binding.id,
            key=key,
            fingerprint=ctx.fingerprint,
            outcome=result.outcome.value,
            attempts=result.attempts,
            trial=result.trial,
            duration_s=round(result.duration_s, 3),
            detail=result.detail,
        )
        return result

    async def _admitted(
        self,
        binding: Binding,
        ctx: ActionContext,
        *,
        key: str,
        verify: Verify | None,
        dry_run: bool,
        started: float,
    ) -> RecoveryResult:
        settings, policy, now = self.settings, self.policy, self._clock()

        def skip(outcome: RecoveryOutcome, detail: str) -> RecoveryResult:
            return self._result(
                binding, ctx, key=key, outcome=outcome, attempts=0, started=started, detail=detail
            )

        if ctx.fingerprint:
            history = await self._store.history(_FLAP_HISTORY, ctx.fingerprint)
            reason = flapping_reason(
                self._flapping,
                ctx.fingerprint,
                (t.at for t in history if t.kind is TransitionKind.FIRED),
                now,
                count=settings.flap_count,
                window=timedelta(seconds=settings.flap_window_s),
                window_text=_seconds(settings.flap_window_s),
            )
            if reason is not None:
                return skip(RecoveryOutcome.SKIPPED_FLAPPING, reason)
        window = max(settings.budget.window_s, _HOUR)
        runs = await self._store.recovery_runs(now - timedelta(seconds=window))
        state = budget_state(settings.budget, settings.cooldown_s, key, runs, now)
        hour_ago = now - timedelta(seconds=_HOUR)
        host_used = sum(r.attempts for r in runs if r.at > hour_ago)
        host_left = settings.max_per_hour - host_used - sum(self._reserved.values())
        if state.allowed <= 0:
            assert state.next_trial_at is not None
            return skip(
                RecoveryOutcome.SKIPPED_BUDGET,
                f"budget of {key} exhausted ({state.used} of {settings.budget.text} used); "
                f"one trial allowed from {state.next_trial_at.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            )
        if host_left <= 0:
            return skip(
                RecoveryOutcome.SKIPPED_BUDGET,
                f"host-wide cap reached ({settings.max_per_hour} executions in the last hour)",
            )
        if dry_run or settings.dry_run:
            plan = binding.action.plan(ctx)
            log.info("recovery_dry_run", binding=binding.id, key=key, plan=plan)
            return skip(RecoveryOutcome.SKIPPED_DRY_RUN, f"would {plan}")

        allowed = min(policy.attempts, state.allowed, host_left)
        self._reserved[key] = allowed
        log.info(
            "recovery_started",
            action=binding.action.name,
            binding=binding.id,
            key=key,
            fingerprint=ctx.fingerprint,
            max_attempts=allowed,
            trial=state.trial,
            plan=binding.action.plan(ctx),
        )
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(allowed) | stop_after_delay(policy.total_seconds),
            wait=policy.wait,
            retry=retry_if_exception(_is_transient),
            reraise=True,
            before_sleep=log_retries("recovery_retry", binding=binding.id, key=key),
            sleep=self._sleep,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    detail = await self._attempt(binding, ctx, verify, policy)
        except RecoveryError as error:
            outcome, detail = RecoveryOutcome.FAILED, str(error)
        except Exception as error:  # an action's bug must still end the run, escalated
            log.error("recovery_action_crashed", binding=binding.id, key=key, exc_info=True)
            outcome = RecoveryOutcome.FAILED
            detail = f"{binding.action.name} crashed: {type(error).__name__}"
        else:
            outcome = RecoveryOutcome.SUCCEEDED
        finally:
            self._reserved.pop(key, None)
        result = self._result(
            binding,
            ctx,
            key=key,
            outcome=outcome,
            attempts=attempts,
            started=started,
            detail=detail,
        )
        return replace(result, trial=state.trial)

    async def _attempt(
        self, binding: Binding, ctx: ActionContext, verify: Verify | None, policy: RecoveryPolicy
    ) -> str:
        action = binding.action
        deadline = asyncio.timeout(policy.attempt_timeout)
        try:
            async with deadline:
                detail = await action.run(ctx)
        except TimeoutError:
            if not deadline.expired():
                raise RecoveryError(f"{action.name}: timed out", transient=True) from None
            raise RecoveryError(
                f"{action.name} timed out after {policy.attempt_timeout:g}s", transient=True
            ) from None
        if verify is None:
            return f"{detail} (not verified: no alert to re-check)"
        settings = self.settings
        if await self._verified(verify, settings):
            return f"{detail}; verified"
        raise RecoveryError(
            f"{ctx.rule} still finds {_seconds(settings.verify_for_s)} after the {action.noun} "
            f"({detail})",
            transient=True,
        )

    async def _verified(self, verify: Verify, settings: RecoverySettings) -> bool:
        """``verify()`` now, then every ``verify_every`` until ``verify_for`` has passed."""
        runs = int(settings.verify_for_s // settings.verify_every_s) + 1
        for index in range(runs):
            if index:
                await self._sleep(settings.verify_every_s)
            if await verify():
                return True
        return False

    def _result(
        self,
        binding: Binding,
        ctx: ActionContext,
        *,
        key: str,
        outcome: RecoveryOutcome,
        attempts: int,
        started: float,
        detail: str,
    ) -> RecoveryResult:
        return RecoveryResult(
            action=binding.action.name,
            fingerprint=ctx.fingerprint,
            outcome=outcome,
            attempts=attempts,
            duration_s=time.monotonic() - started,
            # every action's detail (an error's text may quote a URL or a DSN) is scrubbed
            # here, before it is stored, logged, notified and answered
            detail=scrub(detail),
            at=self._clock(),
            rule=ctx.rule,
            target=ctx.target,
            key=key,
        )


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, RecoveryError) and error.transient
