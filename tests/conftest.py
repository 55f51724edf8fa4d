"""Shared fixtures: a real central system on a loopback port with a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from csms.config import Settings
from support import RunningServer


@pytest.fixture
async def csms_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = Settings(
        db=str(tmp_path / "csms.sqlite3"), host="127.0.0.1", port=0,
        data_dir=str(tmp_path / "data"), heartbeat_interval=60, call_timeout=5, admin_port=0,
    )
    server = RunningServer(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
