"""The compose stack's settlement chain of commands, run for real without Docker.

The same command lines as docker/compose.yaml (``operator`` -> ``contract-deploy``
-> ``settler``), with the service names swapped for loopback addresses: a real
Anvil node, a real PostgreSQL database, the operator keystore made by
docker/dev_operator.py, ``csms contract deploy`` and one settlement pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from csms.domain.model import MeterSample, Session, SessionStatus, Station
from csms.service.ports import Tx
from csms.storage import open_repository
from settlement.chain import AnvilNode
from support import require_anvil

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
STACK_CHAIN = "http://anvil:8545"
STACK_DATA = "/var/lib/voltledger"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)

pytestmark = [pytest.mark.anvil, pytest.mark.postgres]


def stack_command(service: str, chain: str, data: Path) -> list[str]:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text("utf-8"))
    command = compose["services"][service]["command"]
    return [str(a).replace(STACK_CHAIN, chain).replace(STACK_DATA, str(data)) for a in command]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


async def seed(db: str) -> None:
    repo = await open_repository(db)

    async def work(tx: Tx) -> None:
        await tx.insert_station(Station("CP1", created_at=T0))
        session = Session("CP1", "ocpp1.6", "", T0, connector_id=1, evse_id=1, id_tag="T1",
                          stopped_at=T0 + timedelta(minutes=30), meter_start_wh=Decimal(1000),
                          meter_stop_wh=Decimal(8700), energy_wh=7700,
                          status=SessionStatus.COMPLETED, stop_reason="Local")
        sid = await tx.insert_session(session)
        await tx.add_samples("CP1", [MeterSample(T0, "1000", context="Transaction.Begin")],
                             session_id=sid, evse_id=1, connector_id=1,
                             transaction_id=session.transaction_id)
        await tx.enqueue_settlement(sid, session.stopped_at or T0)
        await tx.execute(
            "INSERT INTO tariffs (station_id, version, per_kwh, currency, decimals, valid_from)"
            " VALUES (?, ?, ?, ?, ?, ?)", "*", 1, "0.40", "EUR", 2, "2000-01-01T00:00:00+00:00")

    try:
        await repo.unit(work)
    finally:
        await repo.close()


@pytest.fixture
def anvil_url() -> Any:
    require_anvil()
    node = AnvilNode()
    yield node.url
    node.stop()


def test_operator_deploy_and_settle_on_postgres(
    tmp_path: Path, anvil_url: str, postgres_url: str
) -> None:
    data = tmp_path / "data"
    env = {"CSMS_DB": postgres_url, "CSMS_DATA_DIR": str(data)}
    operator = stack_command("operator", anvil_url, data)
    run([sys.executable, str(DOCKER / "dev_operator.py"), *operator], env)
    again = run([sys.executable, str(DOCKER / "dev_operator.py"), *operator], env)
    assert "funded" in again.stdout  # a second start keeps the same key

    run([sys.executable, "-m", "csms", *stack_command("contract-deploy", anvil_url, data)], env)
    [entry] = json.loads((data / "chain.json").read_text("utf-8")).values()
    assert entry["contract"].startswith("0x")

    asyncio.run(seed(postgres_url))
    settler = stack_command("settler", anvil_url, data)
    assert settler[:2] == ["settle", "worker"]
    # one pass of what the settler service runs in a loop, with the same options
    out = run([sys.executable, "-m", "csms", "settle", "run", *settler[2:], "--json"], env)
    summary = json.loads(out.stdout)
    assert (summary["sessions"], summary["batches"], summary["finalized_batches_total"]) == (
        1, 1, 1)
    receipt = run([sys.executable, "-m", "csms", "receipt", "1"], env)
    assert json.loads(receipt.stdout)["record"]["price_minor"] == 308  # 7.7 kWh at 0.40
