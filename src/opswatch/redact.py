"""The secret scrubber: the last line of defence that replaces every configured secret value by
``***`` in text about to leave the process (log events, CLI output, API answers).

Secrets are masked where they are shown (:class:`~opswatch.config.Secret`); this catches what
took another path: an exception's message, a library's error text, a program's stderr. The
values come from the configuration: :func:`register` is called once per load (start-up and
every reload) with every :class:`Secret` the configuration's ``Env`` handed out, and replaces
the values registered before. What is registered, for each secret:

- its value, and each item of a list-valued secret (items separated by ``,``, ``;`` or a
  newline, after a ``name=`` or ``Name:`` prefix): header values, ``KEY=VALUE`` values,
  tokens; an item that is a URL only through its parts below;
- of a URL: its password (as written and percent-decoded), ``user:password``, the values of
  query parameters named like credentials (``token``, ``key``, ``secret``, ``pass…``,
  ``auth…``, ``sig…``), and, when its masked form hides them, its path (webhook paths) and
  the whole URL;
- each value also in its JSON-escaped form when that differs (a JSON answer, a log line).

Values shorter than :data:`MIN_LENGTH` characters are not scrubbed: they would also match
common words and numbers. The scrubber is one compiled regex alternation, longest value
first (a URL before the password inside it); with nothing registered it returns at once.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from structlog.typing import EventDict, WrappedLogger

from opswatch.config import Secret

MASK = "***"
#: shorter values are never scrubbed (they would match ordinary words)
MIN_LENGTH = 4
_ITEM_SEPARATOR = re.compile(r"[,;\n]")
#: ``name=`` (targets, ``KEY=VALUE``) or ``Name:`` (headers) before an item's value; not the
#: ``scheme:`` of a URL
_ITEM_PREFIX = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_.-]*\s*[=:](?!//)\s*")
_CREDENTIAL_PARAMETER = re.compile(r"token|key|secret|pass|auth|sig|cred", re.IGNORECASE)
_MASKED_PATH = "/***"


class Redactor:
    """Replaces each of a fixed set of values by :data:`MASK` in text."""

    __slots__ = ("_pattern",)

    def __init__(self, values: Iterable[str]) -> None:
        kept = sorted({v for v in values if len(v) >= MIN_LENGTH}, key=lambda v: (-len(v), v))
        self._pattern = re.compile("|".join(map(re.escape, kept))) if kept else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(MASK, text)


_active = Redactor(())


def register(secrets: Iterable[Secret]) -> None:
    """Scrub the values of ``secrets`` (see the module docstring) from now on, instead of
    those registered before."""
    global _active  # noqa: PLW0603 - the one process-wide set, replaced whole at each load
    _active = Redactor(secret_values(secrets))


def scrub(text: str) -> str:
    """``text`` with every registered secret value replaced by ``***``."""
    return _active.scrub(text)


def scrub_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor (just before the renderer): every string in the event, nested
    ones (a dict traceback) included, scrubbed; other values that are not JSON scalars are
    rendered with ``repr`` (as the renderers would) and scrubbed."""
    if not _active:
        return event_dict
    return {key: _scrubbed(value) for key, value in event_dict.items()}


def _scrubbed(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    return scrub(repr(value))


def secret_values(secrets: Iterable[Secret]) -> set[str]:
    """Every value :func:`register` scrubs for ``secrets``, raw and JSON-escaped."""
    values: set[str] = set()
    for secret in secrets:
        values.update(_fragments(secret))
    escaped = {json.dumps(v)[1:-1] for v in values}
    return values | escaped


def _fragments(secret: Secret) -> Iterator[str]:
    value = secret.reveal()
    if secret.display != MASK:  # a URL shown masked: what the mask hides is secret
        yield from _url_credentials(value)
        if secret.display != value:
            yield value
        if urlsplit(secret.display).path == _MASKED_PATH:
            path = urlsplit(value).path
            yield from (path, unquote(path))
        return
    yield value
    for raw_item in _ITEM_SEPARATOR.split(value):
        item = _ITEM_PREFIX.sub("", raw_item).strip()
        if "://" in item:
            yield from _url_credentials(item)
        elif item:
            yield item


def _url_credentials(url: str) -> Iterator[str]:
    """The password, ``user:password`` and credential-like query values of ``url``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    userinfo, _, _ = parts.netloc.rpartition("@")
    _, colon, password = userinfo.partition(":")
    if colon and password:
        yield from (userinfo, password, unquote(password))
    for name, query_value in parse_qsl(parts.query):
        if _CREDENTIAL_PARAMETER.search(name):
            yield query_value


class ScrubbedStream(io.TextIOBase):
    """A text stream that writes what it is given, scrubbed, to another one."""

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(scrub(text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def writable(self) -> bool:
        return True


def scrub_output() -> None:
    """Scrub everything this process prints from now on (the CLI's stdout and stderr)."""
    if not isinstance(sys.stdout, ScrubbedStream):
        sys.stdout = cast(TextIO, ScrubbedStream(sys.stdout))
    if not isinstance(sys.stderr, ScrubbedStream):
        sys.stderr = cast(TextIO, ScrubbedStream(sys.stderr))
