"""A ledger's billing unit is its for good: a worker configured with another settles
nothing.

The contract knows no currency: its amounts are billing units, and which unit that is was
the central system's setting when the ledger's sessions were billed. An operator who
changes CSMS_BILLING_CURRENCY or CSMS_BILLING_DECIMALS afterwards (cents to mills: ten
times over) would have the same contract take amounts in another unit. The database binds
its ledger's unit with the first settlement, a deployment records it in chain.json (with
the decimals of the escrows' token, read on chain), and a worker configured with another
unit stops with one line, its sessions kept queued.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from csms.bootstrap import open_settlement_chain, settlement_worker
from csms.config import Settings
from csms.domain.tariff import BillingUnit
from settlement.chain import Chain, ContractParams, find_anvil
from settlement.worker import LedgerElsewhere, SettlementWorker
from support.chainkit import Kit

from .conftest import add_sessions, link_driver


async def queued(repo: Any) -> list[int]:
    rows = await repo.read(lambda tx: tx.queued_for_settlement(10))
    return [int(r["session_id"]) for r in rows]


async def test_a_worker_billing_in_another_unit_than_the_ledgers_settles_nothing(
        repo: Any, memory_chain: Chain) -> None:
    await link_driver(repo, Kit(memory_chain), "TAG0")
    await add_sessions(repo, 1)
    summary = await SettlementWorker(repo, memory_chain,
                                     billing=BillingUnit("EUR", 2)).run_once()
    assert summary.finalized == 1
    [second] = await add_sessions(repo, 1)
    for other in (BillingUnit("EUR", 3), BillingUnit("USD", 2)):
        worker = SettlementWorker(repo, memory_chain, billing=other)
        with pytest.raises(LedgerElsewhere, match="this database's ledger bills in EUR with 2"
                                                  " decimals") as caught:
            await worker.run_once(timeout=20)
        assert "\n" not in str(caught.value)
        assert await queued(repo) == [second]  # nothing lost
    # the ledger's own unit settles it
    await SettlementWorker(repo, memory_chain, billing=BillingUnit("EUR", 2)).run_once()
    assert await queued(repo) == []


@pytest.mark.anvil
async def test_a_deployment_records_its_unit_and_a_worker_in_another_settles_nothing(
        repo: Any, tmp_path: Path) -> None:
    if find_anvil() is None:
        pytest.skip("anvil not installed: make install")
    data = tmp_path / "data"
    settings = Settings(chain="local", data_dir=str(data), db=str(tmp_path / "x.sqlite3"))
    chain = open_settlement_chain(settings)
    try:
        [entry] = json.loads((data / "chain.json").read_text()).values()
        assert (entry["currency"], entry["decimals"], entry["token_decimals"]) == ("EUR", 2, 18)
    finally:
        chain.close()
    # the operator changes the billing unit; the contract recorded stays
    settings = Settings(chain="local", data_dir=str(data), db=str(tmp_path / "x.sqlite3"),
                        billing_currency="EUR", billing_decimals=3)
    chain = open_settlement_chain(settings)
    try:
        assert chain.billing == ("EUR", 2)
        await add_sessions(repo, 1)
        with pytest.raises(LedgerElsewhere, match=r"the contract's deployment \(chain.json\)"
                                                  " bills in EUR with 2 decimals"):
            await settlement_worker(settings, repo, chain).run_once(timeout=20)
        assert len(await queued(repo)) == 1
    finally:
        chain.close()


@pytest.mark.anvil
def test_a_deployment_on_a_token_without_decimals_is_recorded(tmp_path: Path) -> None:
    """decimals() is optional in ERC-20: a token answering none has its contract deployed
    and recorded all the same (its receipts' decimals cannot be told from the chain), not
    deployed, then lost for chain.json (the operator paying for a deployment at every try,
    none of them recorded)."""
    if find_anvil() is None:
        pytest.skip("anvil not installed: make install")
    data = tmp_path / "data"
    token = "0x" + "ab" * 20  # answers no decimals()
    settings = Settings(chain="local", data_dir=str(data), db=str(tmp_path / "x.sqlite3"))
    chain = open_settlement_chain(settings, params=ContractParams(token=token))
    try:
        [entry] = json.loads((data / "chain.json").read_text()).values()
        assert entry["contract"] == chain.contract_address
        assert (entry["token"], entry["token_decimals"]) == (token, None)
    finally:
        chain.close()
