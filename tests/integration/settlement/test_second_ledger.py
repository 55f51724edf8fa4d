"""One database's ledger settles on one contract: a second contract never pays its sessions
again.

The contract takes a ledger's sequence numbers once, in order, but only its own: an
operator who deploys a second contract (a new version, another chain, or the same address
again on a chain that was reset) and points the same database at it finds that contract
knowing nothing of the ledger. Its worker would register the ledger there from number 1,
see its next chunk wait for numbers the new contract never saw, take the finalized chunks
for ones a reorganisation lost, and send them again: every session paid on the first
contract paid a second time from the same driver's escrow on the second. The database
binds its ledger to the contract it settles on, and a worker meeting another stops with
one line, its sessions kept as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from csms.storage.open import open_repository
from settlement import wallet
from settlement.chain import Chain, ContractParams, open_chain
from settlement.worker import LedgerElsewhere, SettlementWorker
from support.chainkit import Kit

from .conftest import add_sessions, link_driver


async def settled_on_first(repo: Any, chain: Chain) -> tuple[LocalAccount, int]:
    """A driver's card session paid on the first contract: (driver, its price)."""
    driver, _ = await link_driver(repo, Kit(chain), "TAG0")
    [sid] = await add_sessions(repo, 1)
    summary = await SettlementWorker(repo, chain).run_once()
    assert summary.finalized == 1 and not summary.errors

    async def price(tx: Any) -> int:
        row = await tx.session_settlement(sid)
        assert row["settlement_state"] == "paid"
        return int(row["price_minor"])

    return driver, int(await repo.read(price))


async def same_parties_on(repo: Any, chain: Chain, driver: LocalAccount) -> None:
    """The operator's station registered on ``chain``'s contract again (under its index),
    the driver's escrow there too, the same card linked to it."""
    chain.register_station(22_000)
    Kit(chain).fund(driver.address)
    wallet.set_terms(chain, driver, wallet.DriverTerms(
        max_per_kwh=40, max_per_minute=0, max_session_fee=50, max_per_session=10_000,
        max_per_day=1_000_000, allow_cards=True))
    wallet.deposit(chain, driver, 10**6)
    card = await repo.read(lambda tx: tx.card_of("TAG0"))
    wallet.link_card(chain, driver, "TAG0", bytes.fromhex(card["salt"][2:]))


async def states(repo: Any) -> list[str]:
    async def work(tx: Any) -> list[str]:
        rows = await tx.fetchall("SELECT settlement_state FROM sessions ORDER BY id")
        return [r["settlement_state"] for r in rows]

    return await repo.read(work)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Any]:
    repo = await open_repository(db_url)
    yield repo
    await repo.close()


async def test_a_second_contract_on_the_chain_settles_nothing_of_the_ledger(
        db: Any, memory_chain: Chain) -> None:
    repo, chain = db, memory_chain
    driver, _ = await settled_on_first(repo, chain)
    first = chain.contract_address
    # the operator deploys another contract and points the same database at it
    chain.deploy(fee_bps=500)
    assert chain.contract_address != first
    await same_parties_on(repo, chain, driver)
    await add_sessions(repo, 1)
    before = chain.driver_state(driver.address).balance
    with pytest.raises(LedgerElsewhere, match="not on another contract"):
        await SettlementWorker(repo, chain).run_once(timeout=20)
    # nothing moved: the first session stays paid, the second queued
    assert await states(repo) == ["paid", None]
    assert chain.driver_state(driver.address).balance == before
    assert await repo.read(lambda tx: tx.queued_for_settlement(10))


async def test_a_reset_chain_with_the_contract_at_its_address_pays_nothing_twice(
        repo: Any, memory_chain: Chain, tmp_path: Path) -> None:
    """The chain was reset (a local node's state lost) and the operator's key deployed the
    contract again: its first transaction, so at the same address as before. The finalized
    chunk's stored settle transaction is valid there."""
    driver, price = await settled_on_first(repo, memory_chain)
    fresh = open_chain("memory", tmp_path / "fresh", params=ContractParams(fee_bps=500))
    fresh.operator = memory_chain.operator
    Kit(fresh).fund(fresh.operator.address)
    fresh.deploy(fee_bps=500)
    assert fresh.contract_address == memory_chain.contract_address
    await same_parties_on(repo, fresh, driver)
    await add_sessions(repo, 1)
    before = fresh.driver_state(driver.address).balance
    with pytest.raises(LedgerElsewhere, match="does not know this database's ledger"):
        await SettlementWorker(repo, fresh).run_once(timeout=20)
    # nothing moved (before: the first session's chunk sent again, 2 x its price taken)
    assert fresh.driver_state(driver.address).balance == before
    assert price > 0 and await states(repo) == ["paid", None]
