"""A card session charged to a driver on a card that is not the driver's, its record's kind
written as text. The contract pays entry kind 0 under the driver's standing terms without
seeing the card; the verifier's card check is what tells the driver the card is theirs, and
it was asked only when ``record["kind"] == 0``, which "0" is not (the entry packs "0" as 0
all the same). Now a record whose integers are not JSON integers is not read, and the checks
of a kind follow the kind the entry packs."""

from __future__ import annotations

import copy
from typing import Any

from settlement.chain import Chain
from settlement.receipts import VALID, load_receipt
from settlement.records import chunk_digest, entry_of
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import add_sessions, link_driver, verify_receipt


def settle_record(kit: Kit, receipt: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The operator settles ``record`` as the next chunk of its ledger (one entry) and
    writes its receipt: every hash matches what the chain holds."""
    chain = kit.chain
    ledger = int(record["ledger"])
    first = chain.ledger_next(ledger)
    record = {**record, "seq": first}
    entry = entry_of(record, 0)
    max_fee, tip = chain.fees()
    with chain._sending:
        raw, tx_hash = chain.sign_settle(ledger, first, [entry], [], chain.next_nonce(),
                                         max_fee, tip, 8_000_000)
        chain.broadcast(raw)
    if chain.kind != "memory":
        chain.w3.eth.wait_for_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    mined = chain.receipt(tx_hash)
    assert mined is not None and mined.status == 1
    out = copy.deepcopy(receipt)
    out["record"] = record
    out["entry"] = {"record_hash": "0x" + entry[0].hex(), "packed": hex(entry[1]),
                    "position": 0}
    out["chunk"] = {"ledger": str(ledger), "first_seq": first, "count": 1,
                    "digest": "0x" + chunk_digest(ledger, first, [entry]).hex()}
    out["chain"] = {**out["chain"], "tx_hash": "0x" + tx_hash.removeprefix("0x"),
                    "block_number": mined.block_number}
    return out


async def test_a_stranger_s_card_charged_to_the_driver_with_kind_as_text_is_not_valid(
    repo: Any, chain: Chain,
) -> None:
    kit = Kit(chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    [sid] = await add_sessions(repo, 1)
    await SettlementWorker(repo, chain).run_once()
    honest = await load_receipt(repo, sid, None)
    salt = (await repo.read(lambda tx: tx.card_of("TAG0")))["salt"]
    w3 = chain.w3
    assert verify_receipt(honest, w3, driver=driver.address,
                          cards=[("TAG0", salt)]).status == VALID
    before = kit.balance(driver)
    # the same charge for a session of a card that is not the driver's: caught
    stranger = {**honest["record"], "session_id": 2, "id_tag": "STRANGER"}
    caught = verify_receipt(settle_record(kit, honest, stranger), w3, driver=driver.address,
                            cards=[("TAG0", salt)])
    assert caught.status != VALID
    # ... and with the record's kind written "0": the driver's escrow pays it all the same
    texted = {**stranger, "session_id": 3, "kind": "0"}
    receipt = settle_record(kit, honest, texted)
    assert kit.balance(driver) == before - 2 * honest["record"]["price_minor"]
    verdict = verify_receipt(receipt, w3, driver=driver.address, cards=[("TAG0", salt)])
    assert verdict.status != VALID, [(c.name, c.ok, c.detail) for c in verdict.checks]
