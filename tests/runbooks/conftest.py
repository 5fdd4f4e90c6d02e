"""A configuration with a target of every service kind (a password in each URL), a recovery
binding, and a daemon built on it with a real SQLite store and a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from opswatch.daemon.app import App
from opswatch.daemon.configure import AppConfig, load_config
from tests.conftest import ManualClock

#: the password in every target URL: it must never appear in a runbook
PASSWORD = "hunter2-runbook-pw"


def environ(tmp_path: Path) -> dict[str, str]:
    return {
        "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "OPSWATCH_CHECKS": "host,http,postgres,redis,rabbitmq,tcp,process,file",
        "OPSWATCH_HTTP_TARGETS": f"api=https://ops:{PASSWORD}@api.example:8443/health?token={PASSWORD}",
        "OPSWATCH_POSTGRES_TARGETS": f"db=postgresql://app:{PASSWORD}@db.example:5433/shop",
        "OPSWATCH_REDIS_TARGETS": f"cache=redis://:{PASSWORD}@cache.example:6380/0",
        "OPSWATCH_RABBITMQ_TARGETS": f"mq=http://guest:{PASSWORD}@mq.example:15672",
        "OPSWATCH_TCP_TARGETS": "smtp=mail.example:25",
        "OPSWATCH_PROCESS_TARGETS": "web=name:nginx",
        "OPSWATCH_FILE_TARGETS": "backup=/var/backups/*.tar.gz",
        "OPSWATCH_RECOVERY_HTTP_DOWN": "systemd:restart:nginx.service",
    }


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return load_config(environ(tmp_path))


@pytest.fixture
async def app(config: AppConfig, clock: ManualClock) -> AsyncIterator[App]:
    app = App(config, clock=clock)
    await app.store.open()
    yield app
    await app.store.close()
