"""What the two retry loops (the outbox, the recovery runner) share: their retry log line.

Each area keeps its own tenacity policy and its own notion of a transient error; both log one
line per retry in the same shape, with their own event name and identifying fields.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from tenacity import RetryCallState

log = structlog.get_logger("opswatch.retry")


def log_retries(event: str, **fields: str) -> Callable[[RetryCallState], None]:
    """A tenacity ``before_sleep`` hook logging ``event`` with ``fields``, the attempt that
    failed, the coming wait and the error (whose message must hold no secret)."""

    def log_retry(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        log.warning(
            event,
            **fields,
            attempt=retry_state.attempt_number,
            wait_s=round(retry_state.upcoming_sleep, 3),
            error=str(error),
        )

    return log_retry
