"""Where the configuration comes from: the process environment and ``OPSWATCH_ENV_FILE``.

systemd reads ``EnvironmentFile=`` when it starts the service: a running process cannot ask
it again. So the daemon reads the same file itself when ``OPSWATCH_ENV_FILE`` names it, at
start and on every SIGHUP, and merges it over the process environment. As with systemd, a
leading ``-`` (``OPSWATCH_ENV_FILE=-/etc/opswatch/env``) makes a missing file count as empty;
otherwise a file that cannot be read is a configuration error.

The file's syntax is the part of systemd's ``EnvironmentFile=`` format (systemd.exec(5)) a
configuration needs, so one file serves both:

* one ``NAME=value`` per line; blank lines and lines starting with ``#`` or ``;`` are
  comments (a ``#`` later in a line is part of the value, as in systemd);
* whitespace around the name and the value is dropped;
* ``'single'`` quotes keep everything verbatim; ``"double"`` quotes honour ``\\"``,
  ``\\\\``, ``\\$`` and ``\\``` escapes; both may span lines;
* unquoted, a backslash keeps the next character and a trailing backslash joins the next line.

Stricter than systemd, so that a typo is refused rather than ignored: a line without ``=``,
an invalid name, an unterminated quote or text after a closing quote is a
:class:`~opswatch.config.ConfigError` naming the file and line.

A variable removed from the file is unset at the next reload even though systemd's copy of the
file (in the process environment) still holds it: a process variable whose value equals the
file's value at start is taken to have come from the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from opswatch.config import PREFIX, ConfigError, read_config_file

ENV_FILE = f"{PREFIX}ENV_FILE"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOUBLE_ESCAPES = frozenset('"\\$`')


def parse_env_file(text: str, source: str) -> dict[str, str]:
    """``NAME=value`` assignments of ``text`` (read from ``source``, named in errors)."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line[0] in "#;":
            continue
        name, sep, rest = line.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(ENV_FILE, f"{source} line {number}: expected NAME=value")
        if not _NAME.match(name):
            raise ConfigError(ENV_FILE, f"{source} line {number}: invalid name {name!r}")
        rest = rest.strip()
        if rest[:1] in ("'", '"'):
            value, index = _quoted(rest, lines, index, source, number)
        else:
            value, index = _unquoted(rest, lines, index)
        values[name] = value
    return values


def _quoted(rest: str, lines: list[str], index: int, source: str, number: int) -> tuple[str, int]:
    """A quoted value starting at ``rest`` (which may continue on the following lines)."""
    quote = rest[0]
    text = rest[1:]
    out: list[str] = []
    while True:
        position = 0
        while position < len(text):
            char = text[position]
            if char == quote:
                trailing = text[position + 1 :].strip()
                if trailing:
                    raise ConfigError(
                        ENV_FILE,
                        f"{source} line {number}: unexpected {trailing[:20]!r} after the "
                        "closing quote",
                    )
                return "".join(out), index
            if quote == '"' and char == "\\" and position + 1 < len(text):
                following = text[position + 1]
                if following in _DOUBLE_ESCAPES:
                    out.append(following)
                    position += 2
                    continue
            out.append(char)
            position += 1
        if quote == '"' and text.endswith("\\"):
            out.pop()  # a backslash before the newline joins the lines
        else:
            out.append("\n")
        if index >= len(lines):
            raise ConfigError(ENV_FILE, f"{source} line {number}: unterminated {quote} quote")
        text = lines[index]
        index += 1


def _unquoted(rest: str, lines: list[str], index: int) -> tuple[str, int]:
    out: list[str] = []
    text = rest
    while True:
        position = 0
        continued = False
        while position < len(text):
            char = text[position]
            if char == "\\":
                if position + 1 < len(text):
                    out.append(text[position + 1])
                    position += 2
                    continue
                continued = True  # a trailing backslash: the value goes on on the next line
                break
            out.append(char)
            position += 1
        if not continued or index >= len(lines):
            return "".join(out).strip(), index
        text = lines[index].strip()
        index += 1


class EnvironmentSource:
    """The configuration's environment: the process's, with ``OPSWATCH_ENV_FILE`` over it.

    :meth:`load` reads the file anew each time (at start, then on every reload) and raises
    :class:`ConfigError` when it cannot be read or parsed.
    """

    def __init__(self, process_env: Mapping[str, str]) -> None:
        self._process = dict(process_env)
        self._at_start: dict[str, str] | None = None

    @property
    def path(self) -> str | None:
        value = self._process.get(ENV_FILE, "").strip().removeprefix("-")
        return value or None

    def load(self) -> dict[str, str]:
        path = self.path
        if path is None:
            return dict(self._process)
        optional = self._process[ENV_FILE].strip().startswith("-")
        # a regular UTF-8 file of sane size: a FIFO or a device is refused, not read
        missing = optional and not os.path.lexists(path)
        text = "" if missing else read_config_file(ENV_FILE, path)
        values = parse_env_file(text, path)
        if ENV_FILE in values:
            raise ConfigError(ENV_FILE, f"{path} must not set {ENV_FILE} itself")
        if self._at_start is None:
            self._at_start = values
        at_start = self._at_start
        base = {k: v for k, v in self._process.items() if at_start.get(k) != v}
        return {**base, **values}
