"""A reorganisation deeper than the worker's confirmations, after it finalized a batch:
the chain no longer holds the chunk the database calls paid."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.model import MeterSample, Session, SessionStatus
from settlement.chain import Chain
from settlement.receipts import VALID, ReceiptNotReady, load_receipt, verify_receipt
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import T0, add_sessions, link_driver

pytestmark = pytest.mark.anvil

# add_sessions: session i has (700 + i) Wh at 0.40 EUR/kWh, tag TAG{i % 3}
PRICE = {i + 1: round((700 + i) * 0.40 / 10) for i in range(20)}


async def test_a_finalized_batch_reorganised_away_is_settled_again_not_left_for_ever(
    repo: Any, anvil_chain: Chain
) -> None:
    """The worker finalized batch 1 (session 1 "paid") after its confirmations; a deeper
    reorganisation then drops the settle block (no chain promises more than its finality;
    CSMS_CONFIRMATIONS is a guess at it). The chain's ledger is back at sequence number 1,
    the driver's escrow was never charged, yet the database says paid and never looks
    again: every later chunk waits for ever for "an earlier chunk" (no error, nothing
    settles any more). The same signed transaction is valid again (its nonce is free
    again): the worker should see the chain behind a batch it finalized and send it again,
    so the driver pays each session once and the later sessions are settled."""
    kit = Kit(anvil_chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    await add_sessions(repo, 1)  # session 1: TAG0
    worker = SettlementWorker(repo, anvil_chain, batch_size=10)
    await worker.build_batches(force=True)  # registers the ledger and the station
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    snapshot = rpc("evm_snapshot", [])["result"]
    await worker.run_once(timeout=60)
    assert kit.balance(driver) == 10**6 - PRICE[1]
    batch_ledger = await worker.check_ledger()
    rpc("evm_revert", [snapshot])  # the settle block is gone
    for _ in range(3):
        rpc("evm_mine", [])
    assert kit.balance(driver) == 10**6
    await add_sessions(repo, 3, station="CP2")  # sessions 2..4: TAG0, TAG1, TAG2
    try:
        await worker.run_once(timeout=30)
    except TimeoutError:
        async def open_batches(tx: Any) -> list[tuple[int, str, int]]:
            return [(b["id"], b["state"], b["first_seq"])
                    for b in await tx.ledger_batches(int(await tx.ledger_value("ledger_id")))]

        pytest.fail(f"nothing settles any more: batches {await repo.read(open_batches)},"
                    f" the chain's next sequence number"
                    f" {anvil_chain.ledger_next(int(batch_ledger))}")

    async def states(tx: Any) -> dict[int, str]:
        return {sid: (await tx.session_settlement(sid))["settlement_state"]
                for sid in range(1, 5)}

    assert await repo.read(states) == {1: "paid", 2: "paid", 3: "unpaid", 4: "unpaid"}
    assert kit.balance(driver) == 10**6 - 2 * PRICE[1]  # session 2 is priced as 1


async def add_later_session(repo: Any, hours: int, tag: str = "TAG0") -> int:
    """A session at CP1 ``hours`` after add_sessions' first, after all of its (800 Wh on a
    meter beyond theirs): settled at the station already registered on chain."""

    async def work(tx: Any) -> int:
        start = T0 + timedelta(hours=hours)
        begin = Decimal(100_000 + 1000 * hours)
        s = Session(station_id="CP1", ocpp_version="ocpp1.6", transaction_id="",
                    started_at=start, stopped_at=start + timedelta(minutes=30),
                    connector_id=1, evse_id=1, id_tag=tag, meter_start_wh=begin,
                    meter_stop_wh=begin + 800, energy_wh=800,
                    status=SessionStatus.COMPLETED, stop_reason="Local")
        sid = await tx.insert_session(s)
        await tx.add_samples("CP1", [
            MeterSample(start, str(begin), context="Transaction.Begin"),
            MeterSample(start + timedelta(minutes=30), str(begin + 800),
                        context="Transaction.End")],
            session_id=sid, evse_id=1, connector_id=1, transaction_id="")
        await tx.enqueue_settlement(sid, start)
        return int(sid)

    return int(await repo.unit(work))


LATER_PRICE = round(800 * 0.40 / 10)


async def batch_rows(repo: Any) -> dict[int, dict[str, Any]]:
    async def work(tx: Any) -> dict[int, dict[str, Any]]:
        return {b["id"]: dict(await tx.get_batch(b["id"]))
                for b in await tx.ledger_batches(int(await tx.ledger_value("ledger_id")))}

    return dict(await repo.read(work))


async def settlement_states(repo: Any, ids: range) -> dict[int, tuple[str, int | None]]:
    async def work(tx: Any) -> dict[int, tuple[str, int | None]]:
        out = {}
        for sid in ids:
            s = await tx.session_settlement(sid)
            out[sid] = (s["settlement_state"], s["unpaid_reason"])
        return out

    return dict(await repo.read(work))


async def test_a_lost_batch_is_unsettled_until_its_stored_transaction_is_mined_again(
    repo: Any, anvil_chain: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker re-checks its finalized batch when the next one waits for it: the chain
    lost it, so its sessions are no longer paid nor refused (no receipt claims either), an
    error names the batch and its sequence numbers, and the same signed transaction (its
    nonce is free again: the operator key sent nothing since) is sent again."""
    kit = Kit(anvil_chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    await add_sessions(repo, 3)  # sessions 1..3: TAG0 (paid), TAG1, TAG2 (no driver)
    worker = SettlementWorker(repo, anvil_chain, batch_size=10)
    await worker.build_batches(force=True)
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    snapshot = rpc("evm_snapshot", [])["result"]
    await worker.run_once(timeout=60)
    finalized = await settlement_states(repo, range(1, 4))
    assert finalized[1] == ("paid", None)
    assert {finalized[2][0], finalized[3][0]} == {"unpaid"}
    assert None not in (finalized[2][1], finalized[3][1])
    [before] = (await batch_rows(repo)).values()
    rpc("evm_revert", [snapshot])
    for _ in range(3):
        rpc("evm_mine", [])
    later = await add_later_session(repo, 5)
    await worker.build_batches(force=True)  # batch 2, from sequence number 4: waits

    caplog.set_level(logging.ERROR, logger="settlement.worker")
    await worker.advance()
    rows = await batch_rows(repo)
    assert (rows[1]["state"], rows[2]["state"]) == ("broadcast", "pending")
    assert await settlement_states(repo, range(1, 4)) == {
        sid: ("batched", None) for sid in range(1, 4)}
    for sid in range(1, 4):
        with pytest.raises(ReceiptNotReady, match="batch 1 is broadcast"):
            await load_receipt(repo, sid, anvil_chain.rpc_url)
    ledger = await worker.check_ledger()
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"batch 1 (sequence numbers 1..3 of ledger {ledger})" in error
    assert "next sequence number of the ledger is 1" in error

    await worker.run_once(timeout=60)
    rows = await batch_rows(repo)
    assert (rows[1]["state"], rows[2]["state"]) == ("finalized", "finalized")
    assert (rows[1]["tx_hash"], rows[1]["nonce"]) == (before["tx_hash"], before["nonce"])
    assert await settlement_states(repo, range(1, 4)) == finalized
    assert (await settlement_states(repo, range(later, later + 1)))[later][0] == "paid"
    assert kit.balance(driver) == 10**6 - PRICE[1] - LATER_PRICE
    receipt = await load_receipt(repo, 1, anvil_chain.rpc_url)
    verdict = verify_receipt(receipt, anvil_chain.w3, driver=driver.address)
    assert verdict.status == VALID, [(c.name, c.detail) for c in verdict.checks
                                     if c.ok is not True]


async def test_a_finalized_batch_the_chain_still_holds_is_left_as_it_is(
    repo: Any, anvil_chain: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    """The reorganisation takes batch 2's block only: batch 1, re-checked on the way down,
    is on chain as recorded and is left exactly as it was (nothing sent for it again, not
    a column changed); batch 2 is sent again; each driver pays each session once."""
    kit = Kit(anvil_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    d1, _ = await link_driver(repo, kit, "TAG1")
    await add_sessions(repo, 2)  # session 1: TAG0, session 2: TAG1; one batch each
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    snapshots: list[str] = []

    def before_batch_2_is_sent(batch_id: int) -> None:
        if batch_id == 2:  # batch 1 is final by now
            snapshots.append(rpc("evm_snapshot", [])["result"])

    worker = SettlementWorker(repo, anvil_chain, batch_size=1,
                              hooks={"after_sign": before_batch_2_is_sent})
    await worker.run_once(timeout=60)
    assert kit.balance(d0) == 10**6 - PRICE[1] and kit.balance(d1) == 10**6 - PRICE[2]
    before = await batch_rows(repo)
    assert [b["state"] for b in before.values()] == ["finalized", "finalized"]
    rpc("evm_revert", [snapshots[0]])  # batch 2's block is gone, batch 1's is kept
    for _ in range(3):
        rpc("evm_mine", [])
    assert kit.balance(d0) == 10**6 - PRICE[1] and kit.balance(d1) == 10**6
    later = await add_later_session(repo, 5)  # batch 3, from sequence number 3

    caplog.set_level(logging.INFO, logger="settlement.worker")
    await worker.run_once(timeout=60)
    after = await batch_rows(repo)
    assert after[1] == before[1]  # not re-sent, not re-signed, not touched
    assert not [r for r in caplog.records if r.getMessage().startswith("! batch 1 ")
                or r.getMessage().startswith("= batch 1:")]
    assert [after[b]["state"] for b in (2, 3)] == ["finalized", "finalized"]
    assert after[2]["tx_hash"] == before[2]["tx_hash"]  # the stored transaction, again
    assert await settlement_states(repo, range(1, 3)) == {1: ("paid", None),
                                                          2: ("paid", None)}
    assert (await settlement_states(repo, range(later, later + 1)))[later][0] == "paid"
    assert kit.balance(d0) == 10**6 - PRICE[1] - LATER_PRICE
    assert kit.balance(d1) == 10**6 - PRICE[2]


async def test_on_a_chain_that_reorganises_a_batch_is_final_after_64_blocks_by_default(
    repo: Any, anvil_chain: Chain
) -> None:
    """1 confirmation is only the default on the local test chains: on any other (here the
    node answers with Sepolia's chain id) the worker waits as many blocks as a driver's
    verifier asks for by default before its sessions are paid and receipts written."""
    kit = Kit(anvil_chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    await add_sessions(repo, 1)
    assert SettlementWorker(repo, anvil_chain).confirmations == 1
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    rpc("anvil_setChainId", [11155111])
    sepolia = Chain(anvil_chain.w3, anvil_chain.operator, "rpc")
    sepolia.use(str(anvil_chain.contract_address), anvil_chain.deploy_tx)
    assert SettlementWorker(repo, sepolia, confirmations=12).confirmations == 12
    worker = SettlementWorker(repo, sepolia)
    assert worker.confirmations == 64
    await worker.build_batches(force=True)
    await worker.advance()
    [batch] = (await batch_rows(repo)).values()
    assert batch["state"] == "included"
    rpc("anvil_mine", [hex(64 - 2)])  # the settle block and 62 on top of it: 63
    await worker.advance()
    assert (await settlement_states(repo, range(1, 2)))[1] == ("batched", None)
    rpc("anvil_mine", [hex(1)])
    await worker.advance()
    assert (await settlement_states(repo, range(1, 2)))[1] == ("paid", None)
    assert kit.balance(driver) == 10**6 - PRICE[1]


async def test_a_finalized_batch_included_again_in_another_block_is_found_there(
    repo: Any, anvil_chain: Chain
) -> None:
    """The reorganisation drops the blocks of batches 1 and 2; the network includes batch
    1's transaction again, in another block, batch 2's not. Re-checked on the way down from
    batch 2, batch 1 is found in its new block (its transaction not sent again) and its
    receipts name that block, so a driver's verifier finds them VALID."""
    kit = Kit(anvil_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    d1, _ = await link_driver(repo, kit, "TAG1")
    await add_sessions(repo, 2)  # session 1: TAG0, session 2: TAG1; one batch each
    worker = SettlementWorker(repo, anvil_chain, batch_size=1)
    await worker.build_batches(force=True)
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    snapshot = rpc("evm_snapshot", [])["result"]
    await worker.run_once(timeout=60)
    before = await batch_rows(repo)
    rpc("evm_revert", [snapshot])
    for _ in range(3):
        rpc("evm_mine", [])
    anvil_chain.broadcast(before[1]["raw_tx"])  # included again, in a later block
    moved = anvil_chain.receipt(before[1]["tx_hash"])
    assert moved is not None and moved.block_number != before[1]["block_number"]
    assert kit.balance(d0) == 10**6 - PRICE[1] and kit.balance(d1) == 10**6
    nonce = anvil_chain.next_nonce()
    later = await add_later_session(repo, 5)

    await worker.run_once(timeout=60)
    after = await batch_rows(repo)
    assert [after[b]["state"] for b in (1, 2, 3)] == ["finalized"] * 3
    assert (after[1]["tx_hash"], after[1]["block_number"], after[1]["block_hash"]) == (
        before[1]["tx_hash"], moved.block_number, moved.block_hash)
    assert after[2]["tx_hash"] == before[2]["tx_hash"]
    assert anvil_chain.next_nonce() == nonce + 2  # batch 2 again, batch 3: nothing else
    assert kit.balance(d0) == 10**6 - PRICE[1] - LATER_PRICE
    assert kit.balance(d1) == 10**6 - PRICE[2]
    assert await settlement_states(repo, range(1, 3)) == {1: ("paid", None),
                                                          2: ("paid", None)}
    assert (await settlement_states(repo, range(later, later + 1)))[later][0] == "paid"
    receipt = await load_receipt(repo, 1, anvil_chain.rpc_url)
    verdict = verify_receipt(receipt, anvil_chain.w3, driver=d0.address)
    assert verdict.status == VALID, [(c.name, c.detail) for c in verdict.checks
                                     if c.ok is not True]
