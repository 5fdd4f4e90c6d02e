"""``opswatch ack``, ``unack`` and ``resolve`` against a running daemon over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from tenacity import wait_none

from opswatch.daemon.app import App
from opswatch.daemon.cli import main
from opswatch.daemon.configure import load_config
from opswatch.model import TransitionKind
from opswatch.notifiers.outbox import RetryPolicy
from tests.conftest import free_port
from tests.peers import Receiver

FAST = RetryPolicy(attempts=2, total_seconds=5, wait=wait_none())
WAIT_S = 15.0
TOKEN = "s3cret-token-value"


async def _cli(*args: str) -> int:
    """The command in a thread: it blocks on HTTP while the daemon answers here."""
    return await asyncio.to_thread(main, list(args))


async def test_ack_unack_and_resolve_act_on_the_running_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook = Receiver()
    await webhook.start()
    environ = {
        "OPSWATCH_CHECKS": "http",
        "OPSWATCH_HTTP_TARGETS": f"api=http://127.0.0.1:{free_port()}/",  # down
        "OPSWATCH_HTTP_TIMEOUT": "500ms",
        "OPSWATCH_RETRY_INTERVAL": "500ms",
        "OPSWATCH_WEBHOOK_URL": f"{webhook.url}/hook",
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_API_LISTEN": f"127.0.0.1:{free_port()}",
        "OPSWATCH_API_TOKEN": TOKEN,
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    app = App(load_config(environ), retry_policy=FAST)
    with capture_logs():
        await app.start()
        try:
            await webhook.wait_for(1, timeout=WAIT_S)  # http_down fired and was delivered
            (alert,) = app.tracker.active()
            fp = alert.fingerprint
            capsys.readouterr()
            assert await _cli("status") == 0
            (row,) = [line for line in capsys.readouterr().out.splitlines() if "http_down" in line]
            assert row.split()[-1] == fp  # where the operator finds it

            args = ("--author", "alice", "--comment", "on it", "--duration", "2h", "--sticky")
            assert await _cli("ack", fp, *args) == 0
            out = capsys.readouterr().out.strip()
            assert out.startswith(f"http_down on http:api ({fp}): acknowledged by alice until ")
            assert out.endswith(": on it")
            acked = app.tracker.get(fp)
            assert acked is not None
            assert (acked.acked_by, acked.ack_sticky) == ("alice", True)
            assert acked.ack_expires_at is not None

            assert await _cli("status") == 0
            (row,) = [line for line in capsys.readouterr().out.splitlines() if "http_down" in line]
            assert row.endswith(f"(acked by alice)  {fp}")

            assert await _cli("unack", fp, "--author", "bob") == 0
            assert capsys.readouterr().out.strip().endswith(": unacknowledged by bob")
            assert app.tracker.get(fp).acked_by is None  # type: ignore[union-attr]

            assert await _cli("ack", fp, "--author", "alice", "--duration", "soon") == 1
            err = capsys.readouterr().err.strip()
            assert err.startswith("opswatch: the daemon answered 400: duration: expected")

            assert await _cli("resolve", fp, "--author", "carol", "--comment", "retired") == 0
            assert capsys.readouterr().out.strip().endswith(": resolved by carol: retired")
            assert app.tracker.get(fp) is None
            kinds = [t.kind for t in await app.store.history()]
            assert (
                kinds[:4]
                == [
                    TransitionKind.RESOLVED,
                    TransitionKind.UNACKNOWLEDGED,
                    TransitionKind.ACKNOWLEDGED,
                    TransitionKind.FIRED,
                ][: len(kinds[:4])]
            )

            assert await _cli("resolve", fp, "--author", "carol") == 1  # no longer active
            assert "answered 404: no active alert" in capsys.readouterr().err

            monkeypatch.setenv("OPSWATCH_API_TOKEN", "wrong-token-value")
            assert await _cli("unack", fp) == 1
            assert "answered 403" in capsys.readouterr().err
        finally:
            await app.stop()
            await webhook.stop()


def test_an_unreachable_daemon_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_API_LISTEN", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("OPSWATCH_API_TOKEN", TOKEN)
    assert main(["ack", "0" * 16, "--author", "alice"]) == 1
    assert "cannot reach the daemon" in capsys.readouterr().err
