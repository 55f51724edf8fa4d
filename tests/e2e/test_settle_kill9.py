"""kill -9 of ``csms settle run`` at each batch state, then another run: every receipt VALID.

The run uses the managed local chain (Anvil under its guard). After each kill
the test checks that the Anvil node did not outlive the killed run, then runs
``csms settle run`` again, as an operator would; at the end every session's
receipt is verified against the chain's saved state.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from csms.domain.model import MeterSample, Session, SessionStatus
from csms.service.charging import new_station
from csms.storage.sqlite import SqliteRepository
from settlement.chain import AnvilNode, find_anvil, rpc_client
from settlement.receipts import load_receipt, verify_receipt
from support import IN_CI

CRASH = Path(__file__).resolve().parents[1] / "support" / "crashing_settle.py"
POINTS = ["pending", "signed", "sent", "broadcast", "included", "finalized"]
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


async def add_sessions(db: Path, n: int, first: int) -> None:
    repo = SqliteRepository(db)

    async def work(tx: Any) -> None:
        if await tx.get_station("CP1") is None:
            await tx.insert_station(new_station("CP1"))
            await tx.execute(
                "INSERT INTO tariffs (station_id, version, per_kwh, currency, decimals,"
                " valid_from) VALUES ('*', 1, '0.40', 'EUR', 2, '2000-01-01T00:00:00+00:00')")
        for i in range(first, first + n):
            start = T0 + timedelta(hours=i)
            s = Session(station_id="CP1", ocpp_version="ocpp1.6", transaction_id=str(i),
                        started_at=start, stopped_at=start + timedelta(minutes=40),
                        connector_id=1, evse_id=1, id_tag=f"TAG{i}",
                        meter_start_wh=Decimal(10_000 * i),
                        meter_stop_wh=Decimal(10_000 * i + 900 + i), energy_wh=900 + i,
                        status=SessionStatus.COMPLETED, stop_reason="Local")
            sid = await tx.insert_session(s)
            await tx.add_samples("CP1", [
                MeterSample(start, str(10_000 * i), context="Transaction.Begin"),
                MeterSample(start + timedelta(minutes=40), str(10_000 * i + 900 + i),
                            context="Transaction.End")],
                session_id=sid, evse_id=1, connector_id=1, transaction_id=str(i))
            await tx.enqueue_settlement(sid, start)

    try:
        await repo.unit(work)
    finally:
        await repo.close()


def csms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "csms", *args], capture_output=True,
                          text=True, timeout=300)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_kill_9_of_settle_run_at_each_batch_state(tmp_path: Path) -> None:
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil is required (make install)")
        pytest.skip("anvil not installed: make install")
    db, data = tmp_path / "settle.sqlite3", tmp_path / "data"
    pidfile = data / "anvil-state.json.pid"
    common = ["--db", str(db), "--data-dir", str(data), "--batch-size", "3"]
    for n, point in enumerate(POINTS):
        asyncio.run(add_sessions(db, 3, 3 * n))
        crashed = subprocess.run([sys.executable, str(CRASH), point, "settle", "run", *common],
                                 capture_output=True, text=True, timeout=300)
        assert crashed.returncode == -9, (point, crashed.stderr)
        # the managed node does not outlive the killed run (it saves its state and exits)
        record = json.loads(pidfile.read_text()) if pidfile.exists() else None
        if record is not None:
            deadline = time.monotonic() + 45
            while alive(int(record["anvil"])) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not alive(int(record["anvil"])), f"anvil outlived the run killed at {point}"
        again = csms("settle", "run", *common, "--json")
        assert again.returncode == 0, (point, again.stderr)
    total = 3 * len(POINTS)

    async def check() -> list[dict[str, Any]]:
        repo = SqliteRepository(db)
        try:
            batches = await repo.read(lambda tx: tx.fetchall("SELECT state FROM batches"))
            assert {b["state"] for b in batches} == {"finalized"}
            node = AnvilNode(data / "anvil-state.json")
            try:
                w3 = rpc_client(node.url)
                receipts = [await load_receipt(repo, sid, node.url)
                            for sid in range(1, total + 1)]
                verdicts = [verify_receipt(r, w3) for r in receipts]
            finally:
                node.stop()
        finally:
            await repo.close()
        bad = [(r["record"]["session_id"], [c.detail for c in v.checks if not c.ok])
               for r, v in zip(receipts, verdicts, strict=True) if not v.valid]
        assert not bad, bad
        return receipts

    receipts = asyncio.run(check())
    assert len(receipts) == total
    # and through the command an operator or driver uses, for one receipt per batch
    for sid in range(1, total + 1, 3):
        out = tmp_path / f"receipt-{sid}.json"
        assert csms("receipt", str(sid), "-o", str(out), "--db", str(db)).returncode == 0
        verdict = csms("verify", str(out), "--data-dir", str(data))
        assert verdict.returncode == 0 and "VALID" in verdict.stdout, verdict.stdout
