"""The whole story through the real entry points: serve + settle + receipt + verify."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chargers_sim import Fleet
from settlement.chain import find_anvil
from settlement.receipts import load_receipt, verify_receipt
from support import IN_CI, RunningServer


async def test_serve_settles_while_running(csms_server: RunningServer) -> None:
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, chain="memory", max_wait=0.0)
    await csms_server.start()
    for i in range(1, 5):
        await csms_server.add_station(f"E{i:05d}")
    fleet = Fleet(csms_server.url, 4, mix=True, prefix="E", meter_interval=0.05, seed=5)
    await fleet.start()
    summary = await fleet.run_sessions(1, 0.3)
    await fleet.close()
    repo = csms_server.repo

    async def finalized(tx: Any) -> int:
        row = await tx.fetchone("SELECT count(*) AS n FROM batch_items bi JOIN batches b"
                                " ON b.id = bi.batch_id WHERE b.state = 'finalized'")
        return int(row["n"])

    async with asyncio.timeout(30):
        while await repo.read(finalized) < 4:
            await asyncio.sleep(0.1)
    chain = csms_server.app.chain  # type: ignore[union-attr]
    for s in await csms_server.sessions():
        receipt = await load_receipt(repo, s["id"], None)
        assert verify_receipt(receipt, chain.w3).valid
        assert receipt["record"]["energy_wh"] == summary.per_station[s["station_id"]][0]


def csms(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "csms", *args], capture_output=True, text=True,
                          timeout=180, env={**os.environ, **env, "COLUMNS": "200"})


def test_demo_runs_and_catches_the_forgery(tmp_path: Path) -> None:
    r = csms({}, "demo", "--chain", "memory", "--stations", "4", "--sessions", "1",
             "--folder", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VALID" in r.stdout and "rejected" in r.stdout and "(exact)" in r.stdout
    assert (tmp_path / "demo" / "receipt-1.json").exists()


async def test_cli_settle_receipt_verify_on_the_persistent_local_chain(
    csms_server: RunningServer, tmp_path: Path
) -> None:
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil is required (make install)")
        pytest.skip("anvil not installed")
    for i in range(1, 3):
        await csms_server.add_station(f"L{i:05d}")
    fleet = Fleet(csms_server.url, 2, mix=True, prefix="L", meter_interval=0.05, seed=9)
    await fleet.start()
    await fleet.run_sessions(1, 0.3)
    await fleet.close()
    env = {"CSMS_DB": csms_server.settings.db, "CSMS_DATA_DIR": str(tmp_path / "chain")}
    for args in (("tariffs", "set", "*", "--per-kwh", "0.30"),
                 ("settle", "run", "--json")):
        r = await asyncio.to_thread(csms, env, *args)
        assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sessions"] == 2
    out = tmp_path / "r.json"
    r = await asyncio.to_thread(csms, env, "receipt", "1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    # a new process, a restarted chain from the saved state: still valid, no flags
    r = await asyncio.to_thread(csms, env, "verify", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VALID" in r.stdout
    data = json.loads(out.read_text())
    data["record"]["energy_wh"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    r = await asyncio.to_thread(csms, env, "verify", str(bad))
    assert r.returncode == 1 and "INVALID" in r.stdout
    r = await asyncio.to_thread(csms, env, "verify", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and r.stderr.startswith("error:")
