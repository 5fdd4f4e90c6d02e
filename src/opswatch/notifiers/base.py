"""The notifier contract.

A notifier module owns one class with ``name`` (= module name = registry key = env prefix),
a ``from_env`` returning one instance per configured destination, and one async ``send``.
``send`` raises :class:`NotifyError` classified as permanent or transient; it never retries
on its own and never returns a status: the outbox decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

from opswatch.config import Env
from opswatch.model import Notification


class NotifyError(Exception):
    """A delivery failed. ``permanent`` errors are not retried; ``retry_after`` (seconds) is
    the peer's own hint (HTTP 429 ``Retry-After``). The message must hold no secret."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Notifier(Protocol):
    name: ClassVar[str]
    #: stable destination id used by the outbox, e.g. ``webhook:1a2b3c`` (no secret in it)
    channel: str

    @classmethod
    def from_env(cls, env: Env) -> Sequence[Notifier]: ...

    async def send(self, notification: Notification) -> None: ...

    async def close(self) -> None: ...

    def describe(self) -> dict[str, str]:
        """Effective configuration for ``check-config``: secrets masked."""
        ...
