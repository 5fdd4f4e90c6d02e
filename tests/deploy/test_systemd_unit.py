"""systemd/opswatch.service: systemd itself accepts it, and it keeps the directives the
daemon relies on (notify + watchdog, stop timeout, state directory, hardening)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from opswatch.config import Env, Settings
from tests.deploy import ROOT, unknown_variables

UNIT = ROOT / "systemd" / "opswatch.service"
ENV_EXAMPLE = ROOT / "systemd" / "env.example"

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (Debian/Ubuntu: apt-get install systemd)",
)

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> key -> every value in order (systemd allows repeated keys; an empty
    assignment resets a list, which callers see as an empty string)."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def last(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values is not None, f"[{section}] {key}= is missing"
    return values[-1]


def verify(unit_text: str, directory: Path) -> tuple[int, list[str]]:
    """Run ``systemd-analyze verify`` on a copy named opswatch.service; return its exit
    status and the output lines that concern that file (a container may add warnings about
    unrelated system units)."""
    assert SYSTEMD_ANALYZE is not None
    path = directory / "opswatch.service"
    path.write_text(unit_text, encoding="utf-8")
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(path)],
        capture_output=True,
        text=True,
        cwd=directory,
        timeout=60,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if "opswatch.service" in line]


def runnable_copy(text: str) -> str:
    """The unit with ExecStart pointing at an executable that exists here, since
    /opt/opswatch is not installed on a test machine."""
    true = shutil.which("true")
    assert true is not None
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={true} run", text)
    if not Path("/bin/kill").exists():  # procps is absent from some minimal images
        text = re.sub(r"(?m)^ExecReload=.*$", f"ExecReload={true} -HUP $MAINPID", text)
    return text


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    status, lines = verify(runnable_copy(UNIT.read_text(encoding="utf-8")), tmp_path)
    assert lines == []
    assert status == 0


@needs_systemd_analyze
def test_verify_check_catches_a_bad_directive(tmp_path: Path) -> None:
    """The check above is not vacuous: verify exits 0 on an unknown key or a bad value but
    prints a line naming the file, which the filter keeps."""
    text = runnable_copy(UNIT.read_text(encoding="utf-8"))
    text = text.replace("[Service]\n", "[Service]\nRestart=sometimes\nNoSuchKey=1\n", 1)
    _, lines = verify(text, tmp_path)
    assert any("NoSuchKey" in line for line in lines)
    assert any("sometimes" in line for line in lines)


def test_unit_has_the_directives_the_daemon_relies_on() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    expected = {
        "Type": "notify",
        "ExecStart": "/opt/opswatch/bin/opswatch run",
        "NotifyAccess": "main",
        "WatchdogSec": "90s",
        "Restart": "on-failure",
        "RestartSec": "5s",
        "TimeoutStopSec": "20s",
        "KillSignal": "SIGTERM",
        "EnvironmentFile": "-/etc/opswatch/env",
        "StateDirectory": "opswatch",
        "User": "opswatch",
        "DynamicUser": "no",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "MemoryMax": "128M",
        "CPUQuota": "20%",
    }
    for key, value in expected.items():
        assert last(unit, "Service", key) == value, key
    assert last(unit, "Install", "WantedBy") == "multi-user.target"


def test_unit_is_hardened() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "ProtectProc": "default",
    }
    for key, value in expected.items():
        assert last(unit, "Service", key) == value, key
    families = last(unit, "Service", "RestrictAddressFamilies").split()
    assert sorted(families) == sorted(["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"])


def test_watchdog_leaves_three_default_intervals_and_stop_outlasts_the_flush() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    defaults = Settings.from_env(Env({}), available_checks=("host",))
    watchdog = float(last(unit, "Service", "WatchdogSec").removesuffix("s"))
    stop = float(last(unit, "Service", "TimeoutStopSec").removesuffix("s"))
    assert watchdog >= 3 * defaults.interval
    assert stop >= 2 * defaults.shutdown_grace


def test_env_example_is_an_environment_file_of_documented_variables() -> None:
    """Every line is a comment or NAME=value, and each OPSWATCH_* name it shows is one the
    code reads (see ``unknown_variables``)."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", line), line
    names = re.findall(r"^#?(OPSWATCH_[A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert "OPSWATCH_INTERVAL" in names
    assert unknown_variables(names) == []
