"""CLI commands in a real process: stdout holds the command's output only, logs go to stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

TIMEOUT_S = 60.0


def _opswatch(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("OPSWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "opswatch.daemon.cli", *args],
        env={**clean, **environ},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_once_prints_only_its_table_on_stdout_and_its_logs_on_stderr(tmp_path: Path) -> None:
    port = free_port()
    result = _opswatch(
        "once",
        environ={
            "OPSWATCH_CHECKS": "http,tcp",
            "OPSWATCH_HTTP_TARGETS": f"api=http://127.0.0.1:{port}/health",
            "OPSWATCH_TCP_TARGETS": f"db=127.0.0.1:{port}",
            "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
            "OPSWATCH_LOG_LEVEL": "debug",  # the failed checks log at debug
            "OPSWATCH_LOG_FORMAT": "json",
        },
    )
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["CHECK", "METRIC", "LABELS", "VALUE"]
    table, findings = rows[: rows.index("")], rows[rows.index("") + 1 :]
    assert sorted(row.split()[:2] for row in table) == [
        ["http:api", "http.up"],
        ["tcp:db", "tcp.up"],
    ]
    assert findings[0] == "FINDINGS:"
    assert all(line.startswith("  CRITICAL") for line in findings[1:])
    logged = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert "http_check_failed" in logged
