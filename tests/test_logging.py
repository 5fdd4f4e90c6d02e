"""Logging: tracebacks without frame locals, every configured secret scrubbed from events."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from opswatch import redact
from opswatch.config import Secret
from opswatch.logging import configure_logging
from tests.conftest import free_port
from tests.pgcluster import private_cluster

MARKER = "Mk7-secret-value-Q9"


def _fail_with_a_secret_local() -> None:
    dsn = f"postgresql://opswatch:{MARKER}@db.example:5432/state"
    raise ConnectionRefusedError(f"cannot reach {dsn.split('@')[1]}")


def _log_failure(log_format: str) -> str:
    stream = io.StringIO()
    configure_logging(log_format, "info", stream)
    try:
        _fail_with_a_secret_local()
    except ConnectionRefusedError:
        structlog.get_logger("test").error("state_write_failed", exc_info=True)
    return stream.getvalue()


def test_a_json_traceback_carries_no_frame_locals() -> None:
    line = _log_failure("json")
    event = json.loads(line)
    (exception,) = event["exception"]
    assert exception["exc_type"] == "ConnectionRefusedError"
    assert exception["exc_value"] == "cannot reach db.example:5432/state"
    frames = exception["frames"]
    assert [f["name"] for f in frames] == ["_log_failure", "_fail_with_a_secret_local"]
    assert all("locals" not in f for f in frames)
    assert MARKER not in line


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_registered_secret_is_masked_in_fields_and_exception_messages(log_format: str) -> None:
    token = "xoxb-123456-abcdef"
    redact.register([Secret(token), Secret(f"https://hooks.example/{MARKER}", "https://***")])
    stream = io.StringIO()
    configure_logging(log_format, "info", stream)
    log = structlog.get_logger("test")
    try:
        raise ValueError(f"POST https://hooks.example/{MARKER} refused token {token}")
    except ValueError:
        log.error(
            "notifier_crashed",
            channel="slack:ops",
            error=f"invalid token {token}",
            nested={"headers": [f"Bearer {token}"], "count": 3},
            exc_info=True,
        )
    text = stream.getvalue()
    assert token not in text
    assert MARKER not in text
    assert "slack:ops" in text
    if log_format == "json":
        event = json.loads(text)
        assert event["error"] == "invalid token ***"
        assert event["nested"] == {"headers": ["Bearer ***"], "count": 3}
        assert event["exception"][0]["exc_value"] == "POST *** refused token ***"
    else:
        assert "invalid token ***" in text
        assert "ValueError: POST *** refused token ***" in text


async def _read_until(
    stream: asyncio.StreamReader, wanted: Callable[[str], bool], lines: list[str]
) -> bool:
    """Read lines into ``lines`` until a ``wanted`` one (True) or the end (False)."""
    async with asyncio.timeout(30):
        while raw := await stream.readline():
            lines.append(raw.decode())
            if wanted(lines[-1]):
                return True
    return False


async def test_a_daemon_whose_postgres_state_store_goes_down_logs_no_password(
    tmp_path: Path,
) -> None:
    with private_cluster() as cluster:
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
            "OPSWATCH_STATE_URL": cluster.dsn(MARKER),
            "OPSWATCH_INTERVAL": "1s",
            "OPSWATCH_RETRY_INTERVAL": "1s",
            "OPSWATCH_API_LISTEN": f"127.0.0.1:{free_port()}",
            "OPSWATCH_LOG_FORMAT": "json",
            "OPSWATCH_TCP_TARGETS": f"gone=127.0.0.1:{free_port()}",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "opswatch.daemon.cli",
            "run",
            env=environ,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        lines: list[str] = []
        try:
            ready = await _read_until(process.stdout, lambda line: "daemon_ready" in line, lines)
            assert ready, lines
            cluster.stop()
            # until a failed reconnection is logged with its traceback (asyncpg's frames
            # hold the connection parameters), or the daemon gives up
            await _read_until(process.stdout, lambda line: "connect_utils" in line, lines)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            rest, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    output = "".join(lines) + rest.decode() + stderr.decode()
    assert "connect_utils" in output  # a traceback through the reconnection was logged
    assert "opswatch:***@127.0.0.1" in output  # the URL is shown, masked
    assert MARKER not in output
