"""What the HTTP notifiers (webhook, Slack) share: one session per notifier, the reading of
an error response (``Retry-After``, a short body quote) and secret-free transport errors."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

from opswatch import __version__

USER_AGENT = f"opswatch/{__version__}"
SNIPPET_CHARS = 200
_SNIPPET_BYTES = 4096


class Session:
    """A lazily opened ``aiohttp.ClientSession``, reopened after :meth:`close`."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def read_text(response: aiohttp.ClientResponse) -> str:
    """At most the first 4 KiB of the body, decoded leniently."""
    return decode(await response.content.read(_SNIPPET_BYTES), response.charset)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def describe_client_error(exc: aiohttp.ClientError) -> str:
    """The kind of a transport failure; never ``str(exc)``, which can hold the URL."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        reason = getattr(error, "verify_message", None) or type(error).__name__
        return f"untrusted certificate ({reason})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect ({reason})"
    return f"request failed ({type(exc).__name__})"


def decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")


def now_utc() -> datetime:
    return datetime.now(UTC)
