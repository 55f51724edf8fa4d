"""kill -9 of the server in the middle of 50 stations' sessions: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from bench.common import free_port, wait_port
from chargers_sim import Fleet
from csms.service.views import session_json
from csms.storage.sqlite import SqliteRepository

STATIONS = 50


def start_server(db: Path, port: int, folder: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "csms", "serve", "--port", str(port), "--db", str(db),
         "--auto-register", "--admin-port", "-1", "--data-dir", str(folder),
         "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


async def test_kill_minus_9_mid_sessions(tmp_path: Path) -> None:
    db, port = tmp_path / "k.sqlite3", free_port()
    server = start_server(db, port, tmp_path)
    fleet = Fleet(f"ws://127.0.0.1:{port}", STATIONS, mix=True, prefix="K", seed=11,
                  meter_interval=0.1, call_timeout=3, retry_interval=0.2, backoff_cap=0.5,
                  message_attempts=1000)
    try:
        await fleet.start()
        running = asyncio.create_task(fleet.run_sessions(2, 1.0))
        await asyncio.sleep(1.2)  # the first sessions are half way
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        await asyncio.sleep(0.5)
        server = start_server(db, port, tmp_path)
        summary = await asyncio.wait_for(running, 120)
    finally:
        await fleet.close()
        server.terminate()
        server.wait(20)
    repo = SqliteRepository(db)

    async def read(tx: object) -> list[dict[str, object]]:
        return [session_json(s) for s in await tx.list_sessions(limit=10000)]  # type: ignore[attr-defined]

    sessions = await repo.read(read)
    await repo.close()
    assert summary.sessions == STATIONS * 2
    assert len(sessions) == STATIONS * 2  # none lost, none doubled
    assert all(s["status"] == "completed" for s in sessions)
    by_station: dict[str, list[int]] = {}
    for s in sorted(sessions, key=lambda s: int(s["id"])):  # type: ignore[call-overload]
        by_station.setdefault(str(s["station_id"]), []).append(int(s["energy_wh"]))  # type: ignore[call-overload]
    assert by_station == summary.per_station  # exact energy, session by session
