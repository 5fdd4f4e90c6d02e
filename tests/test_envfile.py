"""The environment file (``OPSWATCH_ENV_FILE``): systemd's syntax, stricter errors, and the
process environment under it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opswatch.config import ConfigError
from opswatch.envfile import EnvironmentSource, parse_env_file


def test_env_file_reads_assignments_comments_and_quotes() -> None:
    text = "\n".join(
        [
            "# a comment",
            "; another comment",
            "",
            "  OPSWATCH_INTERVAL = 5s  ",
            "PLAIN=a # not a comment, as in systemd",
            "SINGLE='  kept $HOME \\n verbatim '",
            'DOUBLE="say \\"hi\\" for \\$5"',
            'MULTI="first',
            'second"',
            "JOINED=one\\",
            "  two",
            "EMPTY=",
        ]
    )
    assert parse_env_file(text, "env") == {
        "OPSWATCH_INTERVAL": "5s",
        "PLAIN": "a # not a comment, as in systemd",
        "SINGLE": "  kept $HOME \\n verbatim ",
        "DOUBLE": 'say "hi" for $5',
        "MULTI": "first\nsecond",
        "JOINED": "onetwo",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A=1\nno equals sign here\n", "env line 2: expected NAME=value"),
        ("export A=1\n", "env line 1: invalid name 'export A'"),
        ('A="open\nB=2\n', 'env line 1: unterminated " quote'),
        ("A='x' trailing\n", "env line 1: unexpected 'trailing' after the closing quote"),
    ],
)
def test_env_file_refuses_a_malformed_line_naming_it(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_env_file(text, "env")
    assert str(raised.value) == f"OPSWATCH_ENV_FILE: {problem}"


def test_env_file_overrides_the_process_and_a_removed_line_is_unset(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("OPSWATCH_INTERVAL=5s\nOPSWATCH_CHECKS=host,tcp\n")
    process = {
        "OPSWATCH_ENV_FILE": str(env_file),
        "OPSWATCH_INTERVAL": "5s",  # systemd's copy of the same file (EnvironmentFile=)
        "OPSWATCH_CHECKS": "host",  # set elsewhere, overridden by the file
        "PATH": "/usr/bin",
    }
    source = EnvironmentSource(process)
    first = source.load()
    assert (first["OPSWATCH_INTERVAL"], first["OPSWATCH_CHECKS"]) == ("5s", "host,tcp")

    env_file.write_text("# both lines removed\n")
    second = source.load()
    assert "OPSWATCH_INTERVAL" not in second  # came from the file: gone with it
    assert second["OPSWATCH_CHECKS"] == "host"  # the process's own value shows again
    assert second["PATH"] == "/usr/bin"

    env_file.unlink()
    with pytest.raises(ConfigError, match=r"^OPSWATCH_ENV_FILE: cannot read"):
        source.load()


def test_a_leading_dash_makes_a_missing_env_file_count_as_empty(tmp_path: Path) -> None:
    process = {"OPSWATCH_ENV_FILE": f"-{tmp_path / 'absent'}", "OPSWATCH_INTERVAL": "7s"}
    assert EnvironmentSource(process).load() == process


def test_without_an_env_file_the_process_environment_is_used_as_is() -> None:
    assert EnvironmentSource({"OPSWATCH_INTERVAL": "7s"}).load() == {"OPSWATCH_INTERVAL": "7s"}


def test_an_env_file_that_is_a_fifo_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "env"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"^OPSWATCH_ENV_FILE: .* is not a regular file$"):
        EnvironmentSource({"OPSWATCH_ENV_FILE": str(fifo)}).load()
