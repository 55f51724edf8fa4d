"""The verifier against a dishonest operator, on py-evm and on a real Anvil node: where the
contract comes from (its creation transaction ran Settlement's own creation code, so its
escrows and cards were written by Settlement's code only), and the driver's escrow and
card as they were when the session was settled (not as they are when the receipt is
checked)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak

from settlement.chain import Chain, open_chain
from settlement.contract import code_fingerprint
from settlement.receipts import INVALID, UNVERIFIED, VALID, load_receipt
from settlement.wallet import DriverTerms, link_card, new_salt, set_terms
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import add_sessions, link_driver, set_limit, verify_receipt


@contextlib.contextmanager
def restarted(chain: Chain) -> Iterator[Chain]:
    """The Anvil node of ``chain`` stopped and started again from its saved state (which
    keeps no state of the blocks before)."""
    folder = chain.node.state_file.parent  # type: ignore[union-attr]
    chain.close()
    again = open_chain("local", folder)
    try:
        yield again
    finally:
        again.close()

# Settlement.vy's storage slots (vyper -f layout)
DRIVER_INDEX, CARDS, LEDGER_NEXT = 0, 6, 11

def failed(verdict: Any) -> list[tuple[str, bool | None, str]]:
    return [(c.name, c.ok, c.detail) for c in verdict.checks if c.ok is not True]


def check(verdict: Any, name: str) -> Any:
    [found] = [c for c in verdict.checks if c.name == name]
    return found


def slot(base: int, *keys: bytes) -> int:
    """A HashMap entry's storage slot as vyper lays it out: keccak256(slot ++ key)."""
    at = base.to_bytes(32, "big")
    for key in keys:
        at = bytes(keccak(at + key.rjust(32, b"\0")))
    return int.from_bytes(at, "big")


def send(chain: Chain, account: LocalAccount, tx: dict[str, Any]) -> Any:
    max_fee, tip = chain.fees()
    tx = {"from": account.address, "chainId": chain.chain_id, "maxFeePerGas": max_fee,
          "maxPriorityFeePerGas": tip, "value": 0,
          "nonce": chain.w3.eth.get_transaction_count(account.address), **tx}
    tx["gas"] = int(chain.w3.eth.estimate_gas(cast(Any, tx))) + 100_000
    signed = account.sign_transaction(tx)
    receipt = chain.w3.eth.wait_for_transaction_receipt(
        chain.w3.eth.send_raw_transaction(signed.raw_transaction))
    assert receipt["status"] == 1
    return receipt


def impostor(chain: Chain, attacker: LocalAccount, writes: dict[int, int]) -> Any:
    """A contract whose creation code writes ``writes`` (slot -> value) to its own storage,
    then returns the genuine contract's runtime code with the attacker as its operator: the
    code at its address is Settlement's, byte for byte but for an immutable."""
    fp = code_fingerprint()
    code = bytes(chain.w3.eth.get_code(cast(Any, chain.contract_address)))
    size = int(fp["runtime_size"])
    code = code[:size] + bytes.fromhex(attacker.address[2:]).rjust(32, b"\0") \
        + code[size + 32:]  # the operator is the first immutable
    init = b"".join(b"\x7f" + value.to_bytes(32, "big") + b"\x7f" + key.to_bytes(32, "big")
                    + b"\x55" for key, value in writes.items())  # PUSH32 PUSH32 SSTORE
    n = len(code).to_bytes(2, "big")
    offset = (len(init) + 15).to_bytes(2, "big")
    # CODECOPY(0, offset, n); RETURN(0, n)
    init += b"\x61" + n + b"\x61" + offset + b"\x60\x00\x39" + b"\x61" + n + b"\x60\x00\xf3"
    return send(chain, attacker, {"data": "0x" + (init + code).hex()})


async def settled(repo: Any, chain: Chain, sid: int) -> dict[str, Any]:
    await SettlementWorker(repo, chain).run_once()
    # no node named, as `csms receipt` writes it: the node is the verifier's choice (a
    # receipt checked on the node it names is not proven: test_verifier_finality.py)
    return await load_receipt(repo, sid, None)


async def test_a_contract_created_by_other_code_than_settlements_is_invalid(
    repo: Any, chain: Chain,
) -> None:
    """A stranger's contract whose creation code wrote a fake escrow and card of the
    driver, then returned Settlement's genuine runtime code: the code check cannot tell it
    from the real one, its creation transaction does. A receipt naming another contract's
    creation, or a transaction that created nothing, is INVALID too; a receipt that names no
    creation is not VALID on the contract's code alone, unless the driver pins the
    contract."""
    kit = Kit(chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    [sid] = await add_sessions(repo, 1)
    real = await settled(repo, chain, sid)
    assert real["chain"]["deploy_tx"] == chain.deploy_tx
    verdict = verify_receipt(real, chain.w3, driver=driver.address)
    assert verdict.status == VALID, failed(verdict)
    assert check(verdict, "contract origin").ok is True

    # the stranger's contract: the record's driver has escrow index 1 there and the card is
    # linked, by its creation code alone; it settles the genuine chunk (unpaid: no station)
    record = real["record"]
    index = int(record["driver_index"])
    commitment = bytes.fromhex(record["card_commitment"][2:])
    ledger, seq = int(record["ledger"]), int(record["seq"])
    attacker = kit.account()
    created = impostor(chain, attacker, {
        slot(DRIVER_INDEX, bytes.fromhex(driver.address[2:])): index,
        slot(CARDS, index.to_bytes(32, "big"), commitment): 1,
        slot(LEDGER_NEXT, ledger.to_bytes(32, "big")): seq})
    fake = chain.w3.eth.contract(address=created["contractAddress"], abi=chain.artifact["abi"])
    assert fake.functions.driver_index(driver.address).call() == index
    assert fake.functions.cards(index, commitment).call() is True
    entry = (bytes.fromhex(real["entry"]["record_hash"][2:]), int(real["entry"]["packed"], 16))
    settle = send(chain, attacker, {"to": fake.address, "data": chain.settle_calldata(
        ledger, seq, [entry], [])})
    forged = {**real, "payment": {**real["payment"], "paid": False, "reason": 1},
              "chain": {**real["chain"], "contract": fake.address,
                        "tx_hash": "0x" + bytes(settle["transactionHash"]).hex(),
                        "block_number": int(settle["blockNumber"]),
                        "deploy_tx": "0x" + bytes(created["transactionHash"]).hex()}}
    verdict = verify_receipt(forged, chain.w3, driver=driver.address)
    assert verdict.status == INVALID, failed(verdict)
    assert check(verdict, "contract code").ok is True  # the code alone cannot tell
    origin = check(verdict, "contract origin")
    assert origin.ok is False and "other creation code" in origin.detail
    # the same receipt naming the real contract's creation: it did not create this one
    named = {**forged, "chain": {**forged["chain"], "deploy_tx": chain.deploy_tx}}
    verdict = verify_receipt(named, chain.w3, driver=driver.address)
    assert verdict.status == INVALID and "did not create" in check(
        verdict, "contract origin").detail
    # without a creation to check, the driver's word is not enough: UNVERIFIED
    bare = {**forged, "chain": {k: v for k, v in forged["chain"].items() if k != "deploy_tx"}}
    verdict = verify_receipt(bare, chain.w3, driver=driver.address)
    assert verdict.status == UNVERIFIED, failed(verdict)
    assert [c.name for c in verdict.checks if c.ok is not True] == ["contract origin"]

    # the genuine receipt naming another genuine contract's creation, or the settle
    # transaction (a call: it created nothing)
    other = Chain(chain.w3, chain.operator, chain.kind)
    other.deploy(fee_bps=500)
    for deploy_tx in (other.deploy_tx, real["chain"]["tx_hash"]):
        moved = {**real, "chain": {**real["chain"], "deploy_tx": deploy_tx}}
        verdict = verify_receipt(moved, chain.w3, driver=driver.address)
        assert verdict.status == INVALID, deploy_tx
        assert check(verdict, "contract origin").ok is False
    # a receipt of before the creation was recorded: UNVERIFIED with --driver, VALID when
    # the driver pins the contract
    older = {**real, "chain": {k: v for k, v in real["chain"].items() if k != "deploy_tx"}}
    verdict = verify_receipt(older, chain.w3, driver=driver.address)
    assert verdict.status == UNVERIFIED
    assert "--contract" in check(verdict, "contract origin").detail
    pinned = verify_receipt(older, chain.w3, contract=real["chain"]["contract"])
    assert pinned.status == VALID, failed(pinned)
    assert not [c for c in pinned.checks if c.name == "contract origin"]


async def test_the_escrow_and_card_are_read_as_they_were_when_the_session_was_settled(
    repo: Any, chain: Chain,
) -> None:
    """A card the driver unlinks after the session was settled does not make its receipt
    INVALID; a card linked only after the session was settled does not make it VALID. On
    Anvil, also after the node was restarted from its saved state (it then keeps no state
    of earlier blocks: the contract's events tell)."""
    kit = Kit(chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    # a second driver gave the operator card TAG1 but never linked it on chain
    late, _ = kit.driver()
    salt = new_salt()
    tag1 = (late.address, "TAG1", salt)

    async def work(tx: Any) -> None:
        from settlement.records import card_commitment

        await tx.link_card("TAG1", late.address, "0x" + salt.hex(),
                           "0x" + card_commitment(*tag1).hex(), datetime.now(UTC))

    await repo.unit(work)
    ids = await add_sessions(repo, 2)  # TAG0, TAG1
    receipts = [await settled(repo, chain, sid) for sid in ids]
    for receipt, who in zip(receipts, (driver, late), strict=True):
        verdict = verify_receipt(receipt, chain.w3, driver=who.address)
        assert verdict.status == (VALID if who is driver else INVALID), failed(verdict)
    # afterwards: the driver unlinks TAG0, the other one links TAG1
    commitment = bytes.fromhex(receipts[0]["record"]["card_commitment"][2:])
    chain.transact(driver, "link_card", commitment, False)
    link_card(chain, late, "TAG1", salt)
    assert kit.c.functions.cards(receipts[0]["record"]["driver_index"], commitment).call() \
        is False

    def verdicts(w3: Any) -> list[tuple[str, Any]]:
        out = []
        for receipt, who in zip(receipts, (driver, late), strict=True):
            v = verify_receipt(receipt, w3, driver=who.address)
            out.append((v.status, check(v, "the driver's card")))
        return out

    (first, card0), (second, card1) = verdicts(chain.w3)
    assert first == VALID and card0.ok is True, card0
    assert second == INVALID and "when the session was settled" in card1.detail, card1
    if chain.node is None:
        return
    # Anvil restarted from its saved state: no state of the settle blocks, the same verdicts
    with restarted(chain) as again:
        block = int(receipts[0]["chain"]["block_number"])
        with pytest.raises(Exception, match=r"(?i)block"):
            again.contract.functions.cards(1, commitment).call(block_identifier=block)
        assert verdicts(again.w3) == [(VALID, card0), (INVALID, card1)]


async def settled_at_limits(repo: Any, chain: Chain) -> tuple[Kit, Any, list[dict[str, Any]]]:
    """A card session billed at its limit 20, within the driver's 20 a session (the 15 it
    announced is not in force yet), and one at an invented limit 25, above it: settled."""
    kit = Kit(chain)
    driver, _ = await link_driver(repo, kit, "TAG0", max_per_session=20)
    set_terms(chain, driver, DriverTerms(max_per_kwh=40, max_session_fee=50, max_per_session=15,
                                         max_per_day=1_000_000))
    ids = await add_sessions(repo, 4)  # 1 and 4: TAG0, 28 each
    await set_limit(repo, ids[0], 20)
    await set_limit(repo, ids[3], 25)  # above the driver's 20: an invented limit
    return kit, driver, [await settled(repo, chain, sid) for sid in (ids[0], ids[3])]


async def test_a_card_session_billed_at_its_limit_is_valid_within_the_drivers_terms(
    repo: Any, chain: Chain,
) -> None:
    """A session priced above its limit is billed its limit: VALID when the limit is within
    the driver's limit per session as the contract held it when the session was settled
    (lower terms announced before apply after their notice: not yet); a limit above it is
    one the driver never agreed to (the contract refuses the entry; the receipt is
    INVALID). On Anvil, also after the node was restarted from its saved state (the
    driver's TermsSet events tell its terms at the settle block)."""
    _, driver, (capped, invented) = await settled_at_limits(repo, chain)
    assert (capped["record"]["price_minor"], capped["payment"]["paid"]) == (20, True)
    assert (invented["record"]["price_minor"], invented["payment"]["paid"]) == (25, False)
    # afterwards the driver raises its limit per session (at once): not what it agreed to then
    set_terms(chain, driver, DriverTerms(max_per_kwh=40, max_session_fee=50, max_per_session=30,
                                         max_per_day=1_000_000))

    def verdicts(w3: Any) -> list[tuple[str, Any]]:
        out = []
        for receipt in (capped, invented):
            v = verify_receipt(receipt, w3, driver=driver.address)
            out.append((v.status, check(v, "session limit")))
        return out

    (first, limit0), (second, limit1) = verdicts(chain.w3)
    assert first == VALID and limit0.ok is True, failed(verify_receipt(capped, chain.w3))
    assert "within the 20 a session" in limit0.detail
    assert second == INVALID and limit1.ok is False, limit1
    assert "above the 20 a session the driver accepted" in limit1.detail
    assert [c.name for c in verify_receipt(invented, chain.w3, driver=driver.address).checks
            if c.ok is False] == ["session limit"]
    if chain.node is None:
        return
    with restarted(chain) as again:
        block = int(capped["chain"]["block_number"])
        with pytest.raises(Exception, match=r"(?i)block"):
            again.contract.functions.driver_state(driver.address).call(block_identifier=block)
        assert verdicts(again.w3) == [(VALID, limit0), (INVALID, limit1)]


@pytest.mark.anvil
def test_the_deployment_records_the_transaction_that_created_the_contract(
    anvil_chain: Chain,
) -> None:
    """chain.json keeps the creation transaction next to the address: the worker puts it
    in every batch it settles (and so in every receipt) after a restart too."""
    deploy_tx = anvil_chain.deploy_tx
    assert deploy_tx is not None
    created = anvil_chain.w3.eth.get_transaction_receipt(cast(Any, deploy_tx))
    assert created["contractAddress"] == anvil_chain.contract_address
    with restarted(anvil_chain) as again:
        assert (again.contract_address, again.deploy_tx) == (anvil_chain.contract_address,
                                                             deploy_tx)
