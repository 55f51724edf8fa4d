"""What the commands print, read at 80 columns: tables that fit, a banner that keeps paths
whole, counts in words, and a log that is not one line per station connection."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chargers_sim import Fleet
from support import RunningServer, require_anvil
from support.client import RawClient
from support.services import free_port


def csms(*args: str, cwd: Path | None = None, columns: int = 80,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    return subprocess.run([sys.executable, "-m", "csms", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120,
                          env={**clean, "COLUMNS": str(columns), **(env or {})})


async def charge(server: RunningServer, stations: int, prefix: str) -> None:
    for i in range(1, stations + 1):
        await server.add_station(f"{prefix}{i:05d}")
    fleet = Fleet(server.url, stations, mix=True, prefix=prefix, meter_interval=0.05, seed=5)
    await fleet.start()
    await fleet.run_sessions(1, 0.3)
    await fleet.close()


async def test_sessions_list_fits_the_terminal_and_wide_shows_all(
        csms_server: RunningServer) -> None:
    await charge(csms_server, 3, "W")
    db = csms_server.settings.db
    r = await asyncio.to_thread(csms, "sessions", "list", "--db", db)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), r.stdout
    header = next(line for line in lines if "station" in line)
    for column in ("id", "station", "kWh", "status", "started"):
        assert f" {column} " in header, header
    assert "tx id" not in header
    assert "not shown:" in r.stdout and "tx id" in r.stdout and "--wide" in r.stdout
    rows = [line for line in lines if "W0000" in line]
    assert len(rows) == 3  # one line per session: nothing wrapped
    wide = await asyncio.to_thread(csms, "sessions", "list", "--wide", "--db", db)
    header = next(line for line in wide.stdout.splitlines() if "station" in line)
    for column in ("conn", "tag", "OCPP", "tx id", "stopped", "reason"):
        assert f" {column} " in header, header
    assert "not shown" not in wide.stdout
    assert len([line for line in wide.stdout.splitlines() if "W0000" in line]) == 3
    roomy = await asyncio.to_thread(csms, "sessions", "list", "--db", db, columns=250)
    assert "not shown" not in roomy.stdout  # all fit: all shown
    shown = json.loads((await asyncio.to_thread(
        csms, "sessions", "list", "--json", "--db", db)).stdout)
    assert len(shown) == 3 and shown[0]["started_at"].endswith("+00:00")  # JSON unchanged


async def test_settle_run_counts_batches_in_words(csms_server: RunningServer,
                                                  tmp_path: Path) -> None:
    require_anvil()
    await charge(csms_server, 2, "B")
    env = {"CSMS_DB": csms_server.settings.db, "CSMS_DATA_DIR": str(tmp_path / "chain")}
    r = await asyncio.to_thread(csms, "tariffs", "set", "*", "--per-kwh", "0.30",
                                "--valid-from", "2020-01-01", env=env)
    assert r.returncode == 0, r.stderr
    r = await asyncio.to_thread(csms, "settle", "run", env=env)
    assert r.returncode == 0, r.stderr
    assert "settled 2 sessions in 1 batch; 1 batch finalized in all" in r.stdout, r.stdout
    r = await asyncio.to_thread(csms, "settle", "run", env=env)
    assert "settled 0 sessions in 0 batches; 1 batch finalized in all" in r.stdout, r.stdout
    assert "(es)" not in r.stdout and "(s)" not in r.stdout


class Serve:
    def __init__(self, cwd: Path, *args: str) -> None:
        self.port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "csms", "serve", "--db", "c.db", "--port", str(self.port),
             *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**clean, "COLUMNS": "80"})
        deadline = time.monotonic() + 30
        import socket

        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)

    def stop(self) -> tuple[str, str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=30)
        return out, err


def test_the_serve_banner_keeps_paths_whole(tmp_path: Path) -> None:
    folder = tmp_path / ("a-data-folder-with-a-rather-long-name-" * 2) / "and-more"
    server = Serve(tmp_path, "--admin-port", "0", "--data-dir", str(folder))
    out, _ = server.stop()
    token = str(folder / "admin.token")
    assert len(token) > 80
    assert any(token in line for line in out.splitlines()), out
    assert any(line.rstrip().endswith("c.db") for line in out.splitlines()), out


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_websockets_connection_lines_only_at_debug(tmp_path: Path, level: str) -> None:
    assert csms("stations", "add", "CP1", "--db", "c.db", cwd=tmp_path).returncode == 0
    server = await asyncio.to_thread(Serve, tmp_path, "--admin-port", "-1", "--log-level",
                                     level)
    try:
        for _ in range(3):
            async with await RawClient.connect(f"ws://127.0.0.1:{server.port}", "CP1") as c:
                await c.result("Heartbeat", {})
    finally:
        _, err = await asyncio.to_thread(server.stop)
    assert err.count("= CP1 connected") == 3, err  # ours: one line per connection
    if level == "info":
        assert "connection open" not in err and "connection closed" not in err, err
    else:
        assert "connection open" in err
