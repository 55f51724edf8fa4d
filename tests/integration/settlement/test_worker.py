"""The settlement worker on py-evm and on a real Anvil: exactly once, crashes, reorgs, stuck."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from settlement.chain import AnvilNode, Chain, ContractMissing
from settlement.receipts import load_receipt, verify_receipt
from settlement.worker import SettlementWorker

from .conftest import add_sessions


class Crash(Exception):
    pass


async def batches(repo: Any) -> list[dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return await tx.fetchall("SELECT * FROM batches ORDER BY id")

    return await repo.read(work)


async def settled_sessions(repo: Any) -> list[int]:
    async def work(tx: Any) -> list[int]:
        rows = await tx.fetchall("SELECT session_id FROM batch_items ORDER BY session_id")
        return [r["session_id"] for r in rows]

    return await repo.read(work)


@pytest.mark.parametrize("chain_name", ["memory_chain", "anvil_chain"])
async def test_settles_every_session_once_with_valid_receipts(
    repo: Any, chain_name: str, request: pytest.FixtureRequest
) -> None:
    chain: Chain = request.getfixturevalue(chain_name)
    ids = await add_sessions(repo, 7)
    worker = SettlementWorker(repo, chain, batch_size=3)
    summary = await worker.run_once()
    assert (summary.batches_created, summary.sessions_batched) == (3, 7)
    assert await settled_sessions(repo) == ids
    assert all(b["state"] == "finalized" for b in await batches(repo))
    again = await worker.run_once()
    assert again.sessions_batched == 0  # nothing twice
    for sid in ids:
        receipt = await load_receipt(repo, sid, chain.rpc_url)
        verdict = verify_receipt(receipt, chain.w3)
        assert verdict.valid, [(c.name, c.detail) for c in verdict.checks if not c.ok]
        assert receipt["record"]["price_minor"] == round((700 + sid - 1) * 0.40 / 10)
    receipt = await load_receipt(repo, ids[0], chain.rpc_url)
    for path, delta in ((("record", "energy_wh"), 1), (("record", "price_minor"), 1)):
        bad = copy.deepcopy(receipt)
        bad[path[0]][path[1]] += delta
        assert not verify_receipt(bad, chain.w3).valid
    bad = copy.deepcopy(receipt)
    bad["samples"][0]["value"] = "999"
    assert not verify_receipt(bad, chain.w3).valid


@pytest.mark.parametrize("crash_point", ["after_sign", "after_broadcast"])
async def test_crash_then_restart_rebroadcasts_the_same_transaction(
    repo: Any, memory_chain: Chain, crash_point: str
) -> None:
    await add_sessions(repo, 4)

    def crash(batch_id: int) -> None:
        raise Crash(crash_point)

    first = SettlementWorker(repo, memory_chain, batch_size=10, hooks={crash_point: crash})
    with pytest.raises(Crash):
        await first.run_once()
    [before] = await batches(repo)
    assert before["raw_tx"] and before["tx_hash"] and before["nonce"] is not None
    nonce_before = memory_chain.next_nonce()
    # a fresh worker, as after a restart of the process
    second = SettlementWorker(repo, memory_chain, batch_size=10)
    await second.run_once()
    [after] = await batches(repo)
    assert after["state"] == "finalized"
    assert (after["tx_hash"], after["nonce"]) == (before["tx_hash"], before["nonce"])
    assert memory_chain.next_nonce() <= nonce_before + 1  # one anchor transaction, not two
    assert len(await settled_sessions(repo)) == 4


async def test_reset_chain_is_detected_not_reanchored(repo: Any, memory_chain: Chain) -> None:
    await add_sessions(repo, 2)
    memory_chain.contract_address = "0x" + "11" * 20  # an address without code: a reset chain
    with pytest.raises(ContractMissing):
        await SettlementWorker(repo, memory_chain).run_once()
    assert await batches(repo) == [] or all(b["state"] == "pending" for b in await batches(repo))


async def test_reorg_moves_the_batch_back(repo: Any, anvil_chain: Chain) -> None:
    await add_sessions(repo, 3)
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    snapshot = rpc("evm_snapshot", [])["result"]
    worker = SettlementWorker(repo, anvil_chain, batch_size=10, confirmations=3)
    await worker.build_batches(force=True)
    for _ in range(4):  # pending -> signed -> broadcast -> included
        await worker.advance()
    [b] = await batches(repo)
    assert b["state"] == "included"
    rpc("evm_revert", [snapshot])  # the block with our anchor is gone
    rpc("evm_mine", [])
    await worker.advance()
    [b] = await batches(repo)
    assert b["state"] == "broadcast" and b["block_number"] is None
    await worker.advance()  # the same raw transaction again; automine includes it
    await worker.advance()
    [b] = await batches(repo)
    assert b["state"] == "included"
    for _ in range(3):
        rpc("evm_mine", [])
    await worker.advance()
    [b] = await batches(repo)
    assert b["state"] == "finalized"
    receipt = await load_receipt(repo, 1, anvil_chain.rpc_url)
    assert verify_receipt(receipt, anvil_chain.w3).valid


async def test_stuck_transaction_is_replaced_with_bumped_fees(
    repo: Any, anvil_chain: Chain
) -> None:
    await add_sessions(repo, 2)
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    rpc("evm_setAutomine", [False])
    worker = SettlementWorker(repo, anvil_chain, batch_size=10, stuck_after=0)
    await worker.build_batches(force=True)
    await worker.advance()  # signed
    await worker.advance()  # broadcast, but nothing is mined
    [b] = await batches(repo)
    first_hash, first_fee = b["tx_hash"], int(b["max_fee"])
    await worker.advance()  # stuck -> replaced: signed again with the same nonce
    [b] = await batches(repo)
    assert b["state"] == "signed" and b["tx_hash"] != first_hash
    assert int(b["max_fee"]) >= first_fee * 5 // 4 and first_hash in b["replaced"]
    await worker.advance()  # the replacement is broadcast
    rpc("evm_setAutomine", [True])
    rpc("evm_mine", [])
    await worker.run_once(timeout=60)
    [b] = await batches(repo)
    assert b["state"] == "finalized"
    receipt = anvil_chain.receipt(b["tx_hash"])
    assert receipt is not None and receipt.status == 1


async def test_dropped_transaction_is_broadcast_again(repo: Any, anvil_chain: Chain) -> None:
    await add_sessions(repo, 1)
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    rpc("evm_setAutomine", [False])
    worker = SettlementWorker(repo, anvil_chain, stuck_after=3600)
    await worker.build_batches(force=True)
    await worker.advance()
    await worker.advance()
    [b] = await batches(repo)
    rpc("anvil_dropTransaction", [b["tx_hash"]])
    assert not anvil_chain.known(b["tx_hash"])
    await worker.advance()  # sees it missing: the same raw transaction again
    assert anvil_chain.known(b["tx_hash"])
    rpc("evm_setAutomine", [True])
    rpc("evm_mine", [])
    await worker.run_once(timeout=60)
    [b2] = await batches(repo)
    assert (b2["state"], b2["tx_hash"]) == ("finalized", b["tx_hash"])


async def test_chain_down_sessions_wait_and_settle_later(
    repo: Any, anvil_chain: Chain
) -> None:
    await add_sessions(repo, 3)
    worker = SettlementWorker(repo, anvil_chain, max_wait=0)
    assert anvil_chain.node is not None
    state_file, port = anvil_chain.node.state_file, anvil_chain.node.port
    anvil_chain.node.stop()  # the chain endpoint goes away
    stop = asyncio.Event()
    loop_task = asyncio.create_task(worker.run_forever(stop, interval=0.1))
    await asyncio.sleep(1.0)
    assert not loop_task.done()  # the worker keeps going, logging the failures
    assert all(b["state"] in ("pending", "signed") for b in await batches(repo))
    anvil_chain.node = AnvilNode(state_file, port=port)  # back, with its saved state
    async with asyncio.timeout(30):
        while not (bs := await batches(repo)) or any(b["state"] != "finalized" for b in bs):
            await asyncio.sleep(0.1)
    stop.set()
    await loop_task
    assert len(await settled_sessions(repo)) == 3


async def _deposit(chain: Chain, tag: str, value: int, cap: int) -> None:
    from settlement.records import tag_hash

    account = chain.w3.eth.accounts[1]
    chain.contract.functions.deposit(tag_hash(tag), cap).transact(
        {"from": account, "value": value})


async def _escrow(chain: Chain, tag: str) -> int:
    from settlement.records import tag_hash

    return int(chain.contract.functions.escrows(tag_hash(tag)).call()[1])


async def session_states(repo: Any) -> dict[int, str | None]:
    async def work(tx: Any) -> dict[int, str | None]:
        rows = await tx.fetchall("SELECT id, settlement_state, id_tag FROM sessions")
        return {r["id"]: (r["id_tag"], r["settlement_state"]) for r in rows}

    return await repo.read(work)


@pytest.mark.parametrize("crash_point", [None, "after_pay_sign", "after_pay_broadcast"])
async def test_batches_are_paid_netted_per_driver_exactly_once(
    repo: Any, memory_chain: Chain, crash_point: str | None
) -> None:
    # TAG0 and TAG1 have escrows; TAG2 has none and is billed off-chain
    ids = await add_sessions(repo, 9)
    await _deposit(memory_chain, "TAG0", 10**18, 10**18)
    await _deposit(memory_chain, "TAG1", 10**18, 10**18)
    hooks = {}
    if crash_point:
        def crash(batch_id: int) -> None:
            raise Crash(crash_point)

        hooks = {crash_point: crash}
    first = SettlementWorker(repo, memory_chain, batch_size=100, hooks=hooks)
    if crash_point:
        with pytest.raises(Crash):
            await first.run_once()
        await SettlementWorker(repo, memory_chain, batch_size=100).run_once()  # restarted
    else:
        await first.run_once()

    async def payouts(tx: Any) -> list[dict[str, Any]]:
        return await tx.fetchall("SELECT * FROM payouts")

    [payout] = await repo.read(payouts)
    assert (payout["state"], payout["paid"], payout["unpaid"]) == ("done", 2, 0)
    states = await session_states(repo)
    price = {sid: round((700 + sid - 1) * 0.40 / 10) for sid in ids}  # as priced
    for tag in ("TAG0", "TAG1"):
        mine = [sid for sid in ids if states[sid][0] == tag]
        assert {states[sid][1] for sid in mine} == {"paid"}
        assert await _escrow(memory_chain, tag) == 10**18 - sum(price[s] for s in mine)
    assert {states[sid][1] for sid in ids if states[sid][0] == "TAG2"} == {"anchored"}
    operator = memory_chain.operator.address
    expected = sum(price[s] for s in ids if states[s][0] != "TAG2")
    assert memory_chain.contract.functions.earnings(operator).call() == expected
    # receipts of paid sessions still verify
    receipt = await load_receipt(repo, ids[0], None)
    assert verify_receipt(receipt, memory_chain.w3).valid
    again = await SettlementWorker(repo, memory_chain, batch_size=100).run_once()
    assert again.sessions_batched == 0
    assert memory_chain.contract.functions.earnings(operator).call() == expected  # once


async def test_two_databases_share_one_contract(tmp_path: Any, memory_chain: Chain) -> None:
    """Batch ids on chain carry a per-database ledger id: local ids 1, 1 never collide."""
    from csms.storage.sqlite import SqliteRepository

    repos = [SqliteRepository(tmp_path / f"ledger{i}.sqlite3") for i in range(2)]
    try:
        for n, r in enumerate(repos):
            await add_sessions(r, 2, station=f"CP{n}")  # different records, same local ids
            await SettlementWorker(r, memory_chain, batch_size=10).run_once()
        ids = []
        for r in repos:
            [batch] = await batches(r)
            assert (batch["id"], batch["state"]) == (1, "finalized")
            ids.append(int(batch["chain_batch_id"]))
            receipt = await load_receipt(r, 1, None)
            assert receipt["batch_id"] == int(batch["chain_batch_id"])
            assert verify_receipt(receipt, memory_chain.w3).valid
        assert ids[0] != ids[1] and all(i % 2**64 == 1 for i in ids)
    finally:
        for r in repos:
            await r.close()


async def test_one_worker_settles_at_a_time_and_another_takes_over(
    repo: Any, memory_chain: Chain
) -> None:
    """Two nodes' workers on one database: the lease holder settles; when it stops, the
    other one takes over; no session in two batches, every batch anchored once."""
    from datetime import timedelta

    from csms.service.cluster import lease_holder
    from settlement.worker import LeaseHeld

    ttl = timedelta(seconds=1)
    stops = {"A": asyncio.Event(), "B": asyncio.Event()}
    workers = {h: SettlementWorker(repo, memory_chain, batch_size=100, max_wait=0, holder=h,
                                   lease_ttl=ttl) for h in stops}
    tasks = {h: asyncio.create_task(w.run_forever(stops[h], interval=0.1))
             for h, w in workers.items()}

    async def holder() -> str | None:
        async def work(tx: Any) -> str | None:
            from datetime import UTC, datetime

            return await lease_holder(tx, "settlement", datetime.now(UTC))

        return await repo.read(work)

    async def settled(n: int) -> None:
        async with asyncio.timeout(30):
            while len(await settled_sessions(repo)) < n or any(
                    b["state"] != "finalized" for b in await batches(repo)):
                await asyncio.sleep(0.1)

    try:
        await add_sessions(repo, 4)
        await settled(4)
        first = await holder()
        assert first in ("A", "B")
        with pytest.raises(LeaseHeld, match=first):
            await SettlementWorker(repo, memory_chain, holder="C").run_once()
        stops[first].set()
        await tasks[first]
        await add_sessions(repo, 3, station="CP2")
        await settled(7)
        second = await holder()
        assert second is not None and second != first
    finally:
        for h in stops:
            stops[h].set()
        await asyncio.gather(*tasks.values())
    assert await settled_sessions(repo) == sorted(set(await settled_sessions(repo)))
    assert [(b["state"], b["replaced"]) for b in await batches(repo)] == [("finalized", "[]")] * 2


async def test_payment_in_an_erc20_token(repo: Any, memory_chain: Chain) -> None:
    """The worker pays netted batches from token escrows just as from native ones."""
    from settlement.records import tag_hash

    from .test_contract import deploy_test_token

    token = deploy_test_token(memory_chain)
    memory_chain.deploy(token=token.address)
    driver = memory_chain.w3.eth.accounts[1]
    c = memory_chain.contract
    token.functions.mint(driver, 10**9).transact({"from": driver})
    token.functions.approve(c.address, 10**9).transact({"from": driver})
    for tag in ("TAG0", "TAG1", "TAG2"):
        c.functions.deposit_token(tag_hash(tag), 10**6, 10**6).transact({"from": driver})
    ids = await add_sessions(repo, 6)
    await SettlementWorker(repo, memory_chain, batch_size=100).run_once()
    states = await session_states(repo)
    assert {states[sid][1] for sid in ids} == {"paid"}
    total = sum(round((700 + sid - 1) * 0.40 / 10) for sid in ids)
    operator = memory_chain.operator.address
    assert c.functions.earnings(operator).call() == total
    assert token.functions.balanceOf(c.address).call() == 3 * 10**6
