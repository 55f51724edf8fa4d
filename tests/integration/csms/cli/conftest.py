"""The folder a new operator's first hour runs in: a station registered, a tariff, two
simulated sessions charged through a real ``csms serve`` (built once a module), copied
for each test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from support.first_hour import PASSWORD, Serve, csms, ok


@pytest.fixture(scope="module")
def charged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """README's walkthrough up to ``csms sessions list``: two stations registered with a
    password, a card, a tariff, one session each by the simulator; the server stopped."""
    work = tmp_path_factory.mktemp("charged")
    for station in ("SIM00001", "SIM00002"):
        ok(csms("stations", "add", station, "--password", PASSWORD, cwd=work))
    ok(csms("tags", "add", "SIMTAG", cwd=work))
    ok(csms("tariffs", "set", "*", "--per-kwh", "0.39", "--session-fee", "0.50",
            "--currency", "EUR", cwd=work))
    server = Serve(work)
    try:
        sim = subprocess.run(
            [sys.executable, "-m", "chargers_sim", "run", "--url",
             f"ws://127.0.0.1:{server.port}", "--count", "2", "--password", PASSWORD,
             "--sessions", "1", "--session-seconds", "1", "--json"],
            cwd=work, capture_output=True, text=True, timeout=120)
        assert sim.returncode == 0, sim.stdout + sim.stderr
        assert orjson.loads(sim.stdout)["sessions"] == 2
    finally:
        server.stop()
    sessions = orjson.loads(ok(csms("sessions", "list", "--json", cwd=work)))
    assert [s["status"] for s in sessions] == ["completed", "completed"]
    return work


@pytest.fixture
def work(charged: Path, tmp_path: Path) -> Path:
    """A copy of the charged folder for one test (the server is stopped: the files are
    whole)."""
    copy = tmp_path / "work"
    shutil.copytree(charged, copy)
    return copy
