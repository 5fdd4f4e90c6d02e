"""Configuration from the environment: one typed reader, the core settings, secret masking.

Every variable is read through :class:`Env`, whose getters validate and raise
:class:`ConfigError` naming the variable and what was expected. Plugins read their own
variables with the same :class:`Env` in their ``from_env``. Secrets are wrapped in
:class:`Secret`, whose ``str`` and ``repr`` are masked; ``NAME_FILE`` works for every secret.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PREFIX = "OPSWATCH_"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: the longest duration any variable accepts (365 days): longer ones overflow date arithmetic
MAX_DURATION = 365 * 86400.0
#: the largest ``NAME_FILE`` read (1 MiB); it must be a regular file
MAX_FILE_BYTES = 1024 * 1024
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
#: what starts the next ``name=spec`` item after a comma (outside quotes)
_ITEM_START = re.compile(r"\s*[A-Za-z][A-Za-z0-9_-]*\s*=")
#: a space or a control character (C0, DEL, C1): never part of a URL or a header
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: how much of a malformed value an error repeats
_SHOWN_CHARS = 60
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(Exception):
    """A bad configuration value. ``str()`` is the one line printed before exit status 2."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(variable, problem)
        self.variable = variable
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.variable}: {self.problem}"


def mask_url(url: str, *, hide_path: bool) -> str:
    """A URL fit for logs: password and query values masked; with ``hide_path`` the path too
    (webhook URLs carry their secret in the path)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "***"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}" if parts.password else f"***@{netloc}"
    path = "/***" if hide_path and parts.path not in ("", "/") else parts.path
    query = "&".join(f"{q.split('=', 1)[0]}=***" for q in parts.query.split("&") if q)
    if hide_path and query:
        query = "***"
    return urlunsplit((parts.scheme, netloc, path, query, ""))


@dataclass(frozen=True, slots=True)
class Secret:
    """A value that must never reach a log line, an error or the API.

    ``str()``/``repr()`` give ``display`` (a masked form); ``reveal()`` gives the value.
    """

    _value: str = field(repr=False)
    display: str = "***"

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"Secret({self.display!r})"


@dataclass(frozen=True, slots=True)
class UnknownVariable:
    """An ``OPSWATCH_*`` variable that is set but that nothing read, and the known name
    closest to it (a likely typo), if any."""

    name: str
    closest: str | None


@dataclass(frozen=True, slots=True)
class Target:
    """A named endpoint from a ``name=URL`` list."""

    name: str
    url: Secret


class Env:
    """Typed, validating access to an environment mapping.

    An empty value counts as unset. Every getter raises :class:`ConfigError` naming the
    variable on a malformed value. ``read`` records which variables were consulted.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.read: set[str] = set()
        #: every Secret handed out (the scrubber's source, see :mod:`opswatch.redact`)
        self.secrets: list[Secret] = []

    def keep(self, secret: Secret) -> Secret:
        """Record ``secret`` in :attr:`secrets` and return it."""
        self.secrets.append(secret)
        return secret

    def raw(self, name: str) -> str | None:
        self.read.add(name)
        return self.peek(name)

    def peek(self, name: str) -> str | None:
        """Like :meth:`raw`, without counting ``name`` as read."""
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def string(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"expected a whole number, got {_shown(value)}") from None
        _check_range(name, number, minimum, maximum)
        return number

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(name, f"expected a number, got {_shown(value)}") from None
        if not math.isfinite(number):
            raise ConfigError(name, f"expected a finite number, got {_shown(value)}")
        _check_range(name, number, minimum, maximum)
        return number

    def optional_number(self, name: str, default: float | None) -> float | None:
        """A number, or ``off`` to disable (used for rule thresholds)."""
        value = self.raw(name)
        if value is not None and value.lower() in {"off", "none", "disabled"}:
            return None
        return default if value is None else self.number(name, 0.0)

    def duration(self, name: str, default: float, *, minimum: float | None = None) -> float:
        """Seconds, from ``30``, ``30s``, ``500ms``, ``5m``, ``1h`` or ``1d``; at most
        :data:`MAX_DURATION`."""
        value = self.raw(name)
        if value is None:
            return default
        return parse_duration(name, value, minimum=minimum)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(name, f"expected true or false (1/0, yes/no, on/off), got {value!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() not in choices:
            raise ConfigError(name, f"expected one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    def names(
        self, name: str, default: tuple[str, ...], *, allowed: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        """A comma-separated list of lower-case names, each unique, optionally from a set."""
        value = self.raw(name)
        if value is None:
            return default
        items = tuple(item.strip().lower() for item in value.split(",") if item.strip())
        for item in items:
            if not _NAME.match(item):
                raise ConfigError(name, f"expected comma-separated names, got {item!r}")
            if allowed is not None and item not in allowed:
                raise ConfigError(
                    name, f"unknown name {item!r}; expected some of {', '.join(allowed)}"
                )
        if len(set(items)) != len(items):
            raise ConfigError(name, "a name is listed twice")
        return items

    def secret(self, name: str) -> Secret | None:
        """``NAME`` or the contents of the file named by ``NAME_FILE`` (not both)."""
        direct = self.raw(name)
        file_name = self.raw(f"{name}_FILE")
        if direct is not None and file_name is not None:
            raise ConfigError(name, f"set either {name} or {name}_FILE, not both")
        if file_name is not None:
            content = read_config_file(f"{name}_FILE", file_name).strip()
            if not content:
                raise ConfigError(f"{name}_FILE", f"file {file_name!r} is empty")
            return self.keep(Secret(content))
        return None if direct is None else self.keep(Secret(direct))

    def urls(self, name: str, *, hide_path: bool) -> tuple[Secret, ...]:
        """One or more comma-separated http(s) URLs (secret: masked in every output)."""
        secret = self.secret(name)
        if secret is None:
            return ()
        return tuple(
            self.keep(_url_secret(name, item.strip(), hide_path=hide_path))
            for item in secret.reveal().split(",")
            if item.strip()
        )

    def url(self, name: str, *, schemes: tuple[str, ...], hide_path: bool) -> Secret | None:
        secret = self.secret(name)
        if secret is None:
            return None
        return self.keep(_url_secret(name, secret.reveal(), hide_path=hide_path, schemes=schemes))

    def targets(
        self, name: str, *, schemes: tuple[str, ...] = ("http", "https")
    ) -> tuple[Target, ...]:
        """A ``name=URL`` list split as :meth:`specs` does; a URL may be quoted
        (``api='http://h/?q=1,page=2'``). URLs masked in outputs."""
        secret = self.secret(name)
        if secret is None:
            return ()
        return tuple(
            Target(
                target,
                self.keep(_url_secret(name, _unquoted(url), hide_path=False, schemes=schemes)),
            )
            for target, url in _named_items(name, secret.reveal(), "URL", _shown_masked_url)
        )

    def specs(
        self, name: str, *, what: str = "SPEC", secret: bool = False
    ) -> tuple[tuple[str, str], ...]:
        """A ``name=SPEC`` list -> ``((name, spec), ...)`` in the order given.

        Items are separated by a newline or by a comma followed by ``name=``, so a spec may
        hold other commas. Names are lower-cased, match ``[a-z][a-z0-9_-]*``, and are unique
        also as per-target variables (``a-b`` and ``a_b`` are refused as a pair, see
        :func:`target_variable`). ``what`` names the spec in errors. With ``secret`` the value
        may come from ``NAME_FILE`` and an error shows only a malformed item's name.
        """
        if secret:
            hidden = self.secret(name)
            value = None if hidden is None else hidden.reveal()
        else:
            value = self.raw(name)
        if value is None:
            return ()
        return _named_items(name, value, what, _shown_name if secret else _shown_item)

    def listen(self, name: str, default: str) -> tuple[str, int]:
        """``HOST:PORT`` (``[::1]:PORT`` for IPv6); the host must resolve."""
        value = self.string(name, default)
        host, sep, port_text = value.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ConfigError(
                name, f"expected HOST:PORT such as 127.0.0.1:9184, got {_shown(value)}"
            )
        try:
            socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise ConfigError(name, f"host {_shown(host)} does not resolve") from None
        return host, int(port_text)

    def named(self, prefix: str) -> list[str]:
        """The names of the variables that start with ``prefix``, sorted (none is read)."""
        return sorted(key for key in self._environ if key.startswith(prefix))

    def unknown(self, ignored_prefixes: tuple[str, ...]) -> list[UnknownVariable]:
        """``OPSWATCH_*`` variables that are set but that no getter read (except those under
        ``ignored_prefixes``, read elsewhere), each with the closest name that was read."""
        known = sorted(key for key in self.read if key.startswith(PREFIX))
        return [
            UnknownVariable(key, _closest(key, known))
            for key in sorted(self._environ)
            if key.startswith(PREFIX)
            and key not in self.read
            and not key.startswith(ignored_prefixes)
        ]


def parse_duration(name: str, value: str, *, minimum: float | None = None) -> float:
    """Seconds from ``value`` as :meth:`Env.duration` reads it; errors name ``name`` (a
    variable, or a variable and the item of a list it is part of)."""
    match = _DURATION.match(value)
    if match is None:
        raise ConfigError(
            name, f"expected a duration such as 30s, 500ms, 5m or 1h, got {_shown(value)}"
        )
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if not seconds <= MAX_DURATION:  # also refuses inf (a number of 400 digits)
        raise ConfigError(name, f"expected at most 365d, got {_shown(value)}")
    if minimum is not None and seconds < minimum:
        raise ConfigError(name, f"expected at least {minimum:g}s, got {value!r}")
    return seconds


def target_variable(kind: str, target: str, option: str) -> str:
    """``OPSWATCH_<KIND>_<TARGET>_<OPTION>``, the target upper-cased with ``-`` as ``_``
    (``http``, ``my-api``, ``TIMEOUT`` -> ``OPSWATCH_HTTP_MY_API_TIMEOUT``)."""
    return f"{PREFIX}{kind.upper()}_{_variable_part(target)}_{option}"


def _variable_part(target: str) -> str:
    return target.upper().replace("-", "_")


def _closest(name: str, known: list[str]) -> str | None:
    """The known name most like ``name`` (compared without the common prefix), if any is
    close enough to be a likely typo."""
    suffixes = {key.removeprefix(PREFIX): key for key in known}
    match = difflib.get_close_matches(name.removeprefix(PREFIX), list(suffixes), n=1, cutoff=0.75)
    return suffixes[match[0]] if match else None


def read_config_file(variable: str, path: str) -> str:
    """The UTF-8 text of a regular file of at most :data:`MAX_FILE_BYTES`. Opened without
    blocking, so that a FIFO or a device is refused instead of read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(variable, f"cannot read {path!r}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(variable, f"{path!r} is not a regular file")
    with os.fdopen(fd, "rb") as file:
        try:
            data = file.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(variable, f"cannot read {path!r}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(variable, f"{path!r} is larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(variable, f"{path!r} is not UTF-8 text") from None


def _split_items(variable: str, value: str) -> list[str]:
    """``value`` cut at newlines and at commas followed by ``name=``, except inside single or
    double quotes (a backslash outside single quotes escapes the next character): the
    quoting of a POSIX shell, so that a quoted spec may hold anything."""
    items: list[str] = []
    start = 0
    quote: str | None = None
    index = 0
    while index < len(value):
        char = value[index]
        if quote == "'":
            if char == "'":
                quote = None
        elif char == "\\":
            index += 1  # the next character is taken as it is
        elif quote == '"':
            if char == '"':
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "\n" or (char == "," and _ITEM_START.match(value, index + 1)):
            items.append(value[start:index])
            start = index + 1
        index += 1
    if quote is not None:
        name = value[start:].partition("=")[0].strip()[:40]
        raise ConfigError(variable, f"item {name!r}: unterminated {quote} quote")
    items.append(value[start:])
    return items


def _named_items(
    variable: str, value: str, what: str, shown: Callable[[str, str], str]
) -> tuple[tuple[str, str], ...]:
    """The one ``name=spec`` splitter behind :meth:`Env.specs` and :meth:`Env.targets`;
    ``shown(name, item)`` renders a malformed item for the error."""
    items: dict[str, str] = {}
    by_part: dict[str, str] = {}
    for item in _split_items(variable, value):
        if not item.strip():
            continue
        name, sep, spec = item.strip().partition("=")
        name = name.strip().lower()
        if not sep or not _NAME.match(name) or not spec.strip():
            raise ConfigError(variable, f"expected name={what} items, got {shown(name, item)}")
        if name in items:
            raise ConfigError(variable, f"target name {name!r} is listed twice")
        other = by_part.setdefault(_variable_part(name), name)
        if other != name:
            raise ConfigError(
                variable,
                f"target names {other!r} and {name!r} collide: both are "
                f"{_variable_part(name)} in per-target variable names",
            )
        items[name] = spec.strip()
    return tuple(items.items())


def _unquoted(spec: str) -> str:
    """A quoted spec as the one shell word it is, without its quotes; anything else (also
    more than one word, refused as a URL) as it is."""
    if spec[:1] not in ("'", '"'):
        return spec
    try:
        words = shlex.split(spec)
    except ValueError:
        return spec
    return words[0] if len(words) == 1 else spec


def refuse_control_characters(variable: str, value: str, what: str = "the value") -> None:
    """Refuse CR, LF or any other control character in a value that goes into a mail or HTTP
    header, where it could start a header of its own. The error never shows the value."""
    if _CONTROL.search(value):
        raise ConfigError(variable, f"{what} must not hold line breaks or control characters")


def _shown(value: str) -> str:
    """``repr`` of a malformed value, cut short (an error is one line)."""
    if len(value) <= _SHOWN_CHARS:
        return repr(value)
    return f"{value[:_SHOWN_CHARS]!r}... ({len(value)} characters)"


def _shown_item(_name: str, item: str) -> str:
    return _shown(item.strip())


def _shown_name(name: str, _item: str) -> str:
    """Only the name part: the rest of the item may hold a password."""
    return f"{name[:40]!r}=..."


def _shown_masked_url(_name: str, item: str) -> str:
    return repr(mask_url(item, hide_path=False))


def _check_range(name: str, number: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and number < minimum:
        raise ConfigError(name, f"expected at least {minimum:g}, got {number:g}")
    if maximum is not None and number > maximum:
        raise ConfigError(name, f"expected at most {maximum:g}, got {number:g}")


def _url_secret(
    name: str, url: str, *, hide_path: bool, schemes: tuple[str, ...] = ("http", "https")
) -> Secret:
    display = mask_url(url, hide_path=hide_path)
    if _SPACE_OR_CONTROL.search(url):
        raise ConfigError(name, "a URL cannot hold spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError(name, f"malformed URL {display!r}") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(name, f"expected a {'/'.join(schemes)} URL with a host, got {display!r}")
    return Secret(url, display)


@dataclass(frozen=True, slots=True)
class Settings:
    """The daemon's own settings. Plugins (collectors, notifiers, rules) read theirs."""

    interval: float
    check_timeout: float
    retry_interval: float
    checks: tuple[str, ...]
    state_path: Path
    api_listen: tuple[str, int]
    log_format: str
    log_level: str
    shutdown_grace: float
    #: PostgreSQL state shared by replicas (``OPSWATCH_STATE_URL``); None: SQLite at state_path
    state_url: Secret | None = None
    state_schema: str | None = None
    #: ``redis://`` leases instead of the state store's lease table (``OPSWATCH_LEASE_URL``)
    lease_url: Secret | None = None
    #: how long a state store outage is ridden through before the daemon gives up
    state_give_up_after: float = 1800.0

    @classmethod
    def from_env(
        cls,
        env: Env,
        *,
        available_checks: tuple[str, ...],
        default_checks: tuple[str, ...] = ("host",),
    ) -> Settings:
        interval = env.duration(f"{PREFIX}INTERVAL", 30.0, minimum=1.0)
        timeout = env.duration(f"{PREFIX}CHECK_TIMEOUT", min(10.0, interval * 0.8), minimum=0.1)
        if timeout >= interval:
            raise ConfigError(
                f"{PREFIX}CHECK_TIMEOUT",
                f"must be shorter than OPSWATCH_INTERVAL ({interval:g}s), got {timeout:g}s",
            )
        state_url, state_schema, lease_url = _state_settings(env)
        return cls(
            interval=interval,
            check_timeout=timeout,
            retry_interval=env.duration(f"{PREFIX}RETRY_INTERVAL", min(5.0, interval), minimum=0.5),
            checks=env.names(f"{PREFIX}CHECKS", default_checks, allowed=available_checks),
            state_path=Path(env.string(f"{PREFIX}STATE_PATH", str(_default_state_path()))),
            api_listen=env.listen(f"{PREFIX}API_LISTEN", "127.0.0.1:9184"),
            log_format=env.choice(f"{PREFIX}LOG_FORMAT", "auto", ("auto", "json", "console")),
            log_level=env.choice(
                f"{PREFIX}LOG_LEVEL", "info", ("debug", "info", "warning", "error")
            ),
            shutdown_grace=env.duration(f"{PREFIX}SHUTDOWN_GRACE", 10.0, minimum=0.0),
            state_url=state_url,
            state_schema=state_schema,
            lease_url=lease_url,
            state_give_up_after=env.duration(
                f"{PREFIX}STATE_GIVE_UP_AFTER", 1800.0, minimum=interval
            ),
        )


_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _state_settings(env: Env) -> tuple[Secret | None, str | None, Secret | None]:
    """``OPSWATCH_STATE_URL`` (postgresql://, a host or a ``host=`` socket directory),
    ``OPSWATCH_STATE_SCHEMA`` and ``OPSWATCH_LEASE_URL`` (redis://, rediss://)."""
    name = f"{PREFIX}STATE_URL"
    url = env.secret(name)
    if url is not None:
        display = mask_url(url.reveal(), hide_path=False)
        if _SPACE_OR_CONTROL.search(url.reveal()):
            raise ConfigError(name, "a URL cannot hold spaces or control characters")
        try:
            parts = urlsplit(url.reveal())
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ConfigError(name, f"malformed URL {display!r}") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(name, f"expected a postgresql:// URL, got {display!r}")
        url = Secret(url.reveal(), display)
    schema = env.raw(f"{PREFIX}STATE_SCHEMA")
    if schema is not None and not _SCHEMA.match(schema):
        raise ConfigError(
            f"{PREFIX}STATE_SCHEMA", f"expected a lower-case SQL identifier, got {schema!r}"
        )
    lease = env.url(f"{PREFIX}LEASE_URL", schemes=("redis", "rediss"), hide_path=False)
    if lease is not None and url is None:
        raise ConfigError(f"{PREFIX}LEASE_URL", f"needs {name} (replicas share PostgreSQL state)")
    return url, schema, lease


def _default_state_path() -> Path:
    """``$STATE_DIRECTORY`` (set by systemd's StateDirectory=) or the working directory."""
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state_dir or ".") / "opswatch.sqlite3"
