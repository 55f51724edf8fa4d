"""The whole story through the real entry points: serve + settle + receipt + verify."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chargers_sim import Fleet
from settlement.chain import AnvilNode, find_anvil
from settlement.receipts import load_receipt, verify_receipt
from support import IN_CI, RunningServer


async def test_serve_settles_while_running(csms_server: RunningServer) -> None:
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, chain="memory", max_wait=0.0)
    await csms_server.start()
    await csms_server.add_tariff()
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
        assert verify_receipt(receipt, chain.w3, contract=chain.contract_address).valid
        assert receipt["record"]["energy_wh"] == summary.per_station[s["station_id"]][0]


def csms(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "csms", *args], capture_output=True, text=True,
                          timeout=180, env={**os.environ, **env, "COLUMNS": "200"})


def test_demo_runs_and_catches_the_forgery(tmp_path: Path) -> None:
    """The demo on the managed local chain, then the verify command it prints, as is."""
    chain = "local" if find_anvil() is not None or IN_CI else "memory"
    r = csms({}, "demo", "--chain", chain, "--stations", "4", "--sessions", "1",
             "--folder", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VALID" in r.stdout and "rejected" in r.stdout and "(exact)" in r.stdout
    assert (tmp_path / "demo" / "receipt-1.json").exists()
    if chain == "memory":
        return
    [line] = [x for x in r.stdout.splitlines() if x.startswith("check it yourself: ")]
    command = shlex.split(line.removeprefix("check it yourself: "))
    assert command[:2] == ["csms", "verify"]
    checked = csms({}, *command[1:])
    assert checked.returncode == 0 and "VALID" in checked.stdout, checked.stdout + checked.stderr


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
    for args in (("tariffs", "set", "*", "--per-kwh", "0.30", "--valid-from", "2020-01-01"),
                 ("settle", "run", "--json")):
        r = await asyncio.to_thread(csms, env, *args)
        assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sessions"] == 2
    out = tmp_path / "r.json"
    r = await asyncio.to_thread(csms, env, "receipt", "1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    # a new process, a restarted chain from the saved state: still valid, no flags
    contract = next(iter(json.loads((tmp_path / "chain" / "chain.json").read_text())
                         .values()))["contract"]
    r = await asyncio.to_thread(csms, env, "verify", str(out), "--contract", contract)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VALID" in r.stdout
    # the operator's own data folder: the contract it deployed is trusted, and it says so
    r = await asyncio.to_thread(csms, env, "verify", str(out))
    assert r.returncode == 0 and "trusting contract" in r.stdout, r.stdout + r.stderr
    # elsewhere, on the same chain, without saying which contract is the real one: not
    # proven (exit 3)
    node = AnvilNode(tmp_path / "chain" / "anvil-state.json", attach=True)
    try:
        r = await asyncio.to_thread(csms, {**env, "CSMS_DATA_DIR": str(tmp_path / "other")},
                                    "verify", str(out), "--rpc", node.url)
    finally:
        node.stop()
    assert r.returncode == 3 and "UNVERIFIED" in r.stdout, r.stdout
    data = json.loads(out.read_text())
    data["record"]["energy_wh"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    r = await asyncio.to_thread(csms, env, "verify", str(bad), "--contract", contract)
    assert r.returncode == 1 and "INVALID" in r.stdout
    r = await asyncio.to_thread(csms, env, "verify", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and r.stderr.startswith("error:")


async def test_signed_meter_data_travels_into_receipts_the_verifier_checks(
    csms_server: RunningServer,
) -> None:
    """OCMF-signing stations of both versions -> verified, settled, receipts that prove the
    energy; altered signed data fails; a released mismatch is visible to the driver."""
    from datetime import UTC, datetime

    from csms.service.holds import decide
    from support.client import RawClient
    from support.ocmf_vectors import KEBA, KEBA_KEY

    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, chain="memory", max_wait=0.0)
    await csms_server.start()
    await csms_server.add_tariff()
    for i in range(1, 5):
        await csms_server.add_station(f"S{i:05d}")
    fleet = Fleet(csms_server.url, 4, mix=True, prefix="S", meter_interval=0.05, seed=8,
                  signed=True)
    await fleet.start()
    await fleet.run_sessions(1, 0.3)
    await fleet.close()
    repo = csms_server.repo

    # a real meter's record, billed 40 Wh more than it signed, released by an operator
    await csms_server.add_station("KEBA1")
    await csms_server.add_tag("T1")

    async def set_key(tx: Any) -> None:
        await tx.set_meter_key("KEBA1", KEBA_KEY.lower(), "operator")

    await repo.unit(set_key)
    async with await RawClient.connect(csms_server.url, "KEBA1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "K", "chargePointModel": "M"})
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 260,
            "timestamp": "2019-08-13T10:03:15Z"})
        await c.result("StopTransaction", {
            "transactionId": start["transactionId"], "meterStop": 300,
            "timestamp": "2019-08-13T10:03:36Z", "transactionData": [{
                "timestamp": "2019-08-13T10:03:36Z", "sampledValue": [
                    {"value": KEBA, "context": "Transaction.End", "format": "SignedData"}]}]})
    [held] = await csms_server.sessions("KEBA1")
    assert "signed_energy_mismatch" in held["flags"]

    async def release(tx: Any) -> None:
        await decide(tx, held["id"], "released", actor="test", reason=None,
                     now=datetime.now(UTC))

    await repo.unit(release)

    async def finalized(tx: Any) -> int:
        row = await tx.fetchone("SELECT count(*) AS n FROM batch_items bi JOIN batches b"
                                " ON b.id = bi.batch_id WHERE b.state = 'finalized'")
        return int(row["n"])

    async with asyncio.timeout(30):
        while await repo.read(finalized) < 5:
            await asyncio.sleep(0.1)
    chain = csms_server.app.chain  # type: ignore[union-attr]
    for s in await csms_server.sessions():
        receipt = await load_receipt(repo, s["id"], None)
        verdict = verify_receipt(receipt, chain.w3, contract=chain.contract_address)
        names = {c.name: c for c in verdict.checks}
        if s["station_id"] == "KEBA1":
            # settled as billed, but the meter signed something else: the driver sees it
            assert names["settled once"].ok and names["meter signature 1"].ok
            assert not names["signed readings = billed readings"].ok
            assert "billed 300 Wh, meter signed 259.7000 Wh" in \
                names["signed readings = billed readings"].detail
            assert not verdict.valid
            continue
        assert verdict.valid, [(c.name, c.detail) for c in verdict.checks if not c.ok]
        assert names["meter signature 1"].ok and names["meter signature 2"].ok
        assert "the energy figure is the one the calibrated meter signed" in verdict.proves
        assert receipt["record"]["meter_public_key"]
        # one altered character in the signed data: its signature fails
        bad = copy.deepcopy(receipt)
        signed = next(x["signed"] for x in bad["samples"] if x["signed"])
        field = "signedData" if "signedData" in signed else "signedMeterData"
        signed[field] = signed[field][:40] + ("A" if signed[field][40] != "A" else "B") + \
            signed[field][41:]
        bad_verdict = verify_receipt(bad, chain.w3, contract=chain.contract_address)
        assert not bad_verdict.valid
        assert not {c.name: c for c in bad_verdict.checks}["samples hash"].ok
        assert any(c.name.startswith("meter signature") and not c.ok
                   for c in bad_verdict.checks)
        # another key swapped into the record: its hash no longer matches
        bad = copy.deepcopy(receipt)
        bad["record"]["meter_public_key"] = KEBA_KEY.lower()
        checks = verify_receipt(bad, chain.w3, contract=chain.contract_address).checks
        assert not {c.name: c for c in checks}["record hash"].ok
