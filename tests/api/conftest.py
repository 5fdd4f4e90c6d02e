"""A started daemon (host check only, an hour between runs) with the write token, for the
API tests that need no alert."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from opswatch.daemon.app import App
from opswatch.daemon.configure import load_config

TOKEN = "s3cret-token-value"


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    """The daemon's API base URL (``http://127.0.0.1:PORT``)."""
    app = App(
        load_config(
            {
                "OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"),
                "OPSWATCH_API_LISTEN": "127.0.0.1:0",
                "OPSWATCH_API_TOKEN": TOKEN,
                "OPSWATCH_INTERVAL": "1h",
            }
        )
    )
    await app.start()
    try:
        yield f"http://127.0.0.1:{app.api.port}"
    finally:
        await app.stop()
