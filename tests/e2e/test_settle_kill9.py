"""kill -9 of ``csms settle run`` at each batch state, then another run: each session
paid exactly once, every receipt VALID.

Everything goes through the commands an operator and a driver use: the driver makes
a key, funds an escrow, states terms and links a card on the managed local chain
(Anvil under its guard); the operator links the card. After each kill the test
checks that the Anvil node did not outlive the killed run, then runs ``csms settle
run`` again. At the end the driver's escrow fell by exactly the sum of the receipts'
prices, and each receipt verifies against the chain's saved state.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from csms.domain.model import MeterSample, Session, SessionStatus
from csms.domain.tariff import Tariff
from csms.service.charging import new_station
from csms.storage.sqlite import SqliteRepository
from settlement.chain import AnvilNode, find_anvil, rpc_client
from settlement.receipts import load_receipt, verify_receipt
from support import IN_CI
from support.services import alive

CRASH = Path(__file__).resolve().parents[1] / "support" / "crashing_settle.py"
POINTS = ["pending", "signed", "sent", "broadcast", "included", "finalized"]
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
TAG = "04A2C3D4E5F601"
DEPOSIT = 10_000  # cents


async def add_sessions(db: Path, n: int, first: int) -> None:
    repo = SqliteRepository(db)

    async def work(tx: Any) -> None:
        if await tx.get_station("CP1") is None:
            await tx.insert_station(new_station("CP1"))
            await tx.add_tariff(Tariff("*", Decimal("0.40"), "EUR", 2,
                                       valid_from=datetime(2000, 1, 1, tzinfo=UTC)))
        for i in range(first, first + n):  # ~0.9 kWh in 40 minutes at 0.40/kWh
            start = T0 + timedelta(hours=i)
            s = Session(station_id="CP1", ocpp_version="ocpp1.6", transaction_id=str(i),
                        started_at=start, stopped_at=start + timedelta(minutes=40),
                        connector_id=1, evse_id=1, id_tag=TAG,
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
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "400"})


def ok(*args: str) -> str:
    r = csms(*args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def test_kill_9_of_settle_run_at_each_batch_state(tmp_path: Path) -> None:
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil is required (make install)")
        pytest.skip("anvil not installed: make install")
    db, data = tmp_path / "settle.sqlite3", tmp_path / "data"
    pidfile = data / "anvil-state.json.pid"
    where = ["--db", str(db), "--data-dir", str(data)]
    common = [*where, "--batch-size", "3"]
    # the operator's contract; a driver with an escrow and a card linked on chain
    ok("contract", "deploy", "--chain", "local", "--data-dir", str(data))
    key = ["--keystore", str(tmp_path / "driver.json"),
           "--password-file", str(tmp_path / "driver.pw"), "--data-dir", str(data)]
    driver = re.search(r"0x[0-9a-fA-F]{40}", ok("wallet", "new", *key, "--fund"))
    assert driver is not None
    ok("wallet", "deposit", str(DEPOSIT), *key)
    ok("wallet", "terms", "--per-kwh", "40", *key)
    salt = re.search(r"--salt\s+(0x[0-9a-f]{64})", ok("wallet", "link-card", TAG, *key))
    assert salt is not None
    asyncio.run(add_sessions(db, 0, 0))  # the schema and station before linking
    ok("drivers", "link", TAG, "--driver", driver.group(0), "--salt", salt.group(1), *where)
    for n, point in enumerate(POINTS):
        asyncio.run(add_sessions(db, 3, 3 * n))
        crashed = subprocess.run([sys.executable, str(CRASH), point, "settle", "run", *common],
                                 capture_output=True, text=True, timeout=300)
        assert crashed.returncode == -9, (point, crashed.stderr)
        # the managed node does not outlive the killed run (it saves its state and exits)
        try:  # the guard removes the file when the node is gone: it may go while we read
            record = json.loads(pidfile.read_text())
        except FileNotFoundError:
            record = None
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
                verdicts = [verify_receipt(r, w3, driver=driver.group(0)) for r in receipts]
            finally:
                node.stop()
        finally:
            await repo.close()
        bad = [(r["record"]["session_id"], [c.detail for c in v.checks if c.ok is False])
               for r, v in zip(receipts, verdicts, strict=True) if v.status != "VALID"]
        assert not bad, bad
        return receipts

    receipts = asyncio.run(check())
    assert len(receipts) == total
    assert len({r["record"]["session_id"] for r in receipts}) == total
    # paid exactly once: the escrow fell by the sum of the prices, no more, no less
    prices = [r["record"]["price_minor"] for r in receipts]
    assert all(p > 0 for p in prices)
    status = json.loads(ok("wallet", "status", *key, "--json"))
    assert status["driver"]["balance"] == DEPOSIT - sum(prices)
    # and through the command an operator or driver uses, for one receipt per batch
    for sid in range(1, total + 1, 3):
        out = tmp_path / f"receipt-{sid}.json"
        assert csms("receipt", str(sid), "-o", str(out), "--db", str(db)).returncode == 0
        verdict = csms("verify", str(out), "--data-dir", str(data),
                       "--driver", driver.group(0))
        assert verdict.returncode == 0 and "VALID" in verdict.stdout, verdict.stdout
