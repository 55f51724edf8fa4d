"""The Vyper contract on py-evm: access control, replay protection, escrow, capped claims."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode
from eth_hash.auto import keccak
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from settlement.chain import Chain
from settlement.merkle import MerkleTree

CAP = 10**15  # the driver accepts at most 0.001 coin per kWh


def reverts(reason: str) -> Any:
    # py-evm through eth-tester raises TransactionFailed, a JSON-RPC node ContractLogicError
    return pytest.raises((ContractLogicError, TransactionFailed), match=reason)


def leaf(record: bytes, tag: bytes, energy: int, amount: int, payee: str) -> bytes:
    return bytes(keccak(b"\x00" + encode(["bytes32", "bytes32", "uint256", "uint256", "address"],
                                         [record, tag, energy, amount, payee])))


@pytest.fixture
def setup(memory_chain: Chain) -> dict[str, Any]:
    w3 = memory_chain.w3
    accounts = w3.eth.accounts
    driver, station_owner, stranger = accounts[1], accounts[2], accounts[3]
    tag = bytes(keccak(b"DRIVER-TAG"))
    c = memory_chain.contract
    c.functions.deposit(tag, CAP).transact({"from": driver, "value": 10**18})
    claims = [  # (record hash, energy Wh, amount)
        (bytes(keccak(b"r1")), 7_500, 7_500 * CAP // 1000),  # exactly at the cap
        (bytes(keccak(b"r2")), 10_000, 9 * 10**15),
        (bytes(keccak(b"r3")), 1_000, 2 * 10**15),  # above the cap (1 kWh x 0.001 = 1e15)
    ]
    leaves = [leaf(r, tag, e, a, station_owner) for r, e, a in claims]
    tree = MerkleTree(leaves)
    raw, _ = memory_chain.sign_anchor(tree.root, 3, 1, memory_chain.next_nonce(),
                                      *memory_chain.fees())
    memory_chain.broadcast(raw)
    return {"chain": memory_chain, "c": c, "tree": tree, "claims": claims, "tag": tag,
            "driver": driver, "owner": station_owner, "stranger": stranger, "w3": w3}


def claim_args(s: dict[str, Any], i: int) -> tuple[Any, ...]:
    record, energy, amount = s["claims"][i]
    return (s["tree"].root, record, s["tag"], energy, amount, s["owner"], s["tree"].proof(i),
            bytes(32))


def test_only_the_operator_anchors_and_a_root_only_once(setup: dict[str, Any]) -> None:
    c, stranger = setup["c"], setup["stranger"]
    with reverts("only the operator"):
        c.functions.anchor(bytes(keccak(b"x")), 1, 99).transact({"from": stranger})
    chain: Chain = setup["chain"]
    assert c.functions.anchored_block(setup["tree"].root).call() > 0
    with reverts("root already anchored"):
        chain.w3.eth.call({"from": chain.operator.address, "to": chain.contract_address,
                           "data": c.encode_abi("anchor", [setup["tree"].root, 3, 2])})


def test_claim_pays_once_and_never_above_the_cap(setup: dict[str, Any]) -> None:
    c, w3, owner = setup["c"], setup["w3"], setup["owner"]
    before = w3.eth.get_balance(owner)
    c.functions.claim(claim_args(setup, 0)).transact({"from": setup["stranger"]})
    assert w3.eth.get_balance(owner) - before == setup["claims"][0][2]
    with reverts("already claimed"):
        c.functions.claim(claim_args(setup, 0)).transact({"from": setup["stranger"]})
    with reverts("above the driver's cap"):
        c.functions.claim(claim_args(setup, 2)).transact({"from": setup["stranger"]})
    assert c.functions.is_claimed(setup["tree"].levels[0][0]).call()
    escrow = c.functions.escrows(setup["tag"]).call()
    assert escrow[1] == 10**18 - setup["claims"][0][2]


def test_forged_claims_are_refused(setup: dict[str, Any]) -> None:
    c = setup["c"]
    args = list(claim_args(setup, 1))
    args[4] = args[4] + 1  # one more unit than was anchored
    with reverts("invalid proof"):
        c.functions.claim(tuple(args)).transact({"from": setup["stranger"]})
    args = list(claim_args(setup, 1))
    args[0] = bytes(keccak(b"not anchored"))
    with reverts("root not anchored"):
        c.functions.claim(tuple(args)).transact({"from": setup["stranger"]})


def test_batch_claim(setup: dict[str, Any]) -> None:
    c = setup["c"]
    c.functions.claim_batch([claim_args(setup, 0), claim_args(setup, 1)]).transact(
        {"from": setup["stranger"]})
    assert all(c.functions.is_claimed(lf).call() for lf in setup["tree"].levels[0][:2])


def test_withdrawal_needs_notice(setup: dict[str, Any]) -> None:
    c, driver, w3 = setup["c"], setup["driver"], setup["w3"]
    with reverts("request a withdrawal first"):
        c.functions.withdraw(setup["tag"]).transact({"from": driver})
    with reverts("not the owner"):
        c.functions.request_withdrawal(setup["tag"]).transact({"from": setup["stranger"]})
    c.functions.request_withdrawal(setup["tag"]).transact({"from": driver})
    with reverts("notice period not over"):
        c.functions.withdraw(setup["tag"]).transact({"from": driver})
    tester = w3.provider.ethereum_tester
    tester.time_travel(w3.eth.get_block("latest")["timestamp"] + 7 * 24 * 3600 + 1)
    tester.mine_blocks()
    before = w3.eth.get_balance(driver)
    c.functions.withdraw(setup["tag"]).transact({"from": driver})
    assert w3.eth.get_balance(driver) > before
    assert c.functions.escrows(setup["tag"]).call()[1] == 0
    with reverts("not the owner"):
        c.functions.deposit(setup["tag"], CAP).transact({"from": setup["stranger"], "value": 1})


PAID = b"\x00" * 31 + b"\x01"


def test_netted_payment_pays_each_chunk_once_in_order(memory_chain: Chain) -> None:
    """One line per driver, chunked and hash-chained; uncovered lines fall back to claims."""
    from settlement.payouts import Line, anchor_key, chain_hashes

    w3, c = memory_chain.w3, memory_chain.contract
    d1, d2, d3, owner, stranger = w3.eth.accounts[1:6]
    t1, t2, t3 = (bytes(keccak(t)) for t in (b"T1", b"T2", b"T3"))
    c.functions.deposit(t1, CAP).transact({"from": d1, "value": 10**16})
    c.functions.deposit(t2, CAP).transact({"from": d2, "value": 10**16})
    lines = [Line(t1, owner, 10_000, 5 * 10**15), Line(t2, owner, 2_000, 2 * 10**15),
             Line(t3, owner, 1_000, 10**15)]  # d3 has no escrow yet
    chunks = [lines[:2], lines[2:]]
    h0, h1 = chain_hashes(chunks)
    sessions = [(bytes(keccak(b"s1")), t1, 10_000, 5 * 10**15),
                (bytes(keccak(b"s3")), t3, 1_000, 10**15)]
    tree = MerkleTree([leaf(r, t, e, a, owner) for r, t, e, a in sessions])
    key = anchor_key(tree.root, h0)
    raw, _ = memory_chain.sign_anchor(key, 3, 7, memory_chain.next_nonce(),
                                      *memory_chain.fees())
    memory_chain.broadcast(raw)

    def pay(chunk: list[Line], following: bytes, head: bytes = h0) -> Any:
        return c.functions.pay(tree.root, head, [x.as_tuple() for x in chunk],
                               following).transact({"from": stranger})

    def claim(i: int, head: bytes = h0) -> Any:
        r, t, e, a = sessions[i]
        return c.functions.claim((tree.root, r, t, e, a, owner, tree.proof(i), head)).transact(
            {"from": stranger})

    with reverts("not anchored for netted payment"):
        pay(chunks[0], h1, head=h1)  # another head: not what was anchored
    with reverts("root not anchored"):
        claim(1, head=bytes(32))  # the plain root was never anchored

    with reverts("not the next chunk"):
        pay(chunks[1], bytes(32))
    with reverts("netted payment in progress"):
        claim(1)
    with reverts("not the next chunk"):  # one amount changed: not what was anchored
        pay([Line(t1, owner, 10_000, 6 * 10**15), lines[1]], h1)
    pay(chunks[0], h1)
    assert c.functions.escrows(t1).call()[1] == 10**16 - 5 * 10**15
    assert c.functions.escrows(t2).call()[1] == 10**16 - 2 * 10**15
    assert c.functions.earnings(owner).call() == 7 * 10**15
    with reverts("not the next chunk"):
        pay(chunks[0], h1)  # the same chunk twice
    receipt = w3.eth.get_transaction_receipt(pay(chunks[1], bytes(32)))
    unpaid = c.events.Unpaid().process_receipt(receipt, errors=DISCARD)
    assert [e["args"]["tag_hash"] for e in unpaid] == [t3]
    [done] = c.events.ChunkPaid().process_receipt(receipt, errors=DISCARD)
    assert (done["args"]["lines"], done["args"]["unpaid"], done["args"]["total"]) == (1, 1, 0)
    assert c.functions.payout_pending(key).call() == PAID
    with reverts("nothing to pay"):
        pay(chunks[0], h1)
    # paid drivers' sessions cannot be claimed again; the uncovered driver's can
    with reverts("paid in the netted batch"):
        claim(0)
    c.functions.deposit(t3, CAP).transact({"from": d3, "value": 10**16})
    claim(1)
    assert c.functions.escrows(t3).call()[1] == 10**16 - 10**15
    before = w3.eth.get_balance(owner)
    c.functions.withdraw_earnings().transact({"from": owner})
    assert w3.eth.get_balance(owner) > before + 7 * 10**15 - 10**15  # minus gas
    assert c.functions.earnings(owner).call() == 0
    with reverts("nothing earned"):
        c.functions.withdraw_earnings().transact({"from": owner})


def test_a_line_above_the_drivers_cap_is_not_paid(memory_chain: Chain) -> None:
    from settlement.payouts import Line, anchor_key, chain_hashes

    w3, c = memory_chain.w3, memory_chain.contract
    driver, owner = w3.eth.accounts[1:3]
    tag = bytes(keccak(b"CAPPED"))
    c.functions.deposit(tag, CAP).transact({"from": driver, "value": 10**18})
    line = Line(tag, owner, 1_000, CAP + 1)  # 1 kWh at more than the cap
    [head] = chain_hashes([[line]])
    root = bytes(keccak(b"capped-batch"))
    key = anchor_key(root, head)
    raw, _ = memory_chain.sign_anchor(key, 1, 8, memory_chain.next_nonce(),
                                      *memory_chain.fees())
    memory_chain.broadcast(raw)
    c.functions.pay(root, head, [line.as_tuple()], bytes(32)).transact({"from": driver})
    assert c.functions.escrows(tag).call()[1] == 10**18
    assert c.functions.earnings(owner).call() == 0
    assert c.functions.unpaid(bytes(keccak(key + tag))).call()


def deploy_test_token(chain: Chain) -> Any:
    """A plain ERC-20 (tests/support/contracts/TestToken.vy) on the same chain."""
    from pathlib import Path

    import vyper

    source = (Path(__file__).parents[2] / "support" / "contracts" / "TestToken.vy").read_text()
    out = vyper.compile_code(source, output_formats=["abi", "bytecode"])
    w3 = chain.w3
    factory = w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor().transact({"from": w3.eth.accounts[0]}))
    return w3.eth.contract(address=receipt["contractAddress"], abi=out["abi"])


def test_escrow_in_an_erc20_token(memory_chain: Chain) -> None:
    """Deposits, netted payment, single claims and earnings in a stablecoin-like token."""
    from settlement.payouts import Line, anchor_key, chain_hashes

    w3 = memory_chain.w3
    token = deploy_test_token(memory_chain)
    memory_chain.deploy(token=token.address)
    c = memory_chain.contract
    assert c.functions.token().call() == token.address
    assert memory_chain.escrow_token() == token.address.lower()
    driver, owner = w3.eth.accounts[1:3]
    tag = bytes(keccak(b"TOKEN-DRIVER"))
    token.functions.mint(driver, 10_000_000).transact({"from": driver})
    with reverts("deposit_token"):
        c.functions.deposit(tag, CAP).transact({"from": driver, "value": 1})
    with reverts("token transfer failed|revert"):  # not approved yet
        c.functions.deposit_token(tag, 10**6, 5_000_000).transact({"from": driver})
    token.functions.approve(c.address, 5_000_000).transact({"from": driver})
    c.functions.deposit_token(tag, 10**6, 5_000_000).transact({"from": driver})
    assert token.functions.balanceOf(c.address).call() == 5_000_000
    assert memory_chain.escrow(tag) == (5_000_000, 10**6)
    # a netted batch: 2.5 kWh for 1.2 (6 decimals) and a plain batch claimed by proof
    line = Line(tag, owner, 2_500, 1_200_000)
    [head] = chain_hashes([[line]])
    root = bytes(keccak(b"token-batch"))
    raw, _ = memory_chain.sign_anchor(anchor_key(root, head), 1, 1, memory_chain.next_nonce(),
                                      *memory_chain.fees())
    memory_chain.broadcast(raw)
    c.functions.pay(root, head, [line.as_tuple()], bytes(32)).transact({"from": owner})
    record = bytes(keccak(b"token-session"))
    tree = MerkleTree([leaf(record, tag, 1_000, 300_000, owner)])
    raw, _ = memory_chain.sign_anchor(tree.root, 1, 2, memory_chain.next_nonce(),
                                      *memory_chain.fees())
    memory_chain.broadcast(raw)
    c.functions.claim((tree.root, record, tag, 1_000, 300_000, owner, tree.proof(0),
                       bytes(32))).transact({"from": owner})
    assert token.functions.balanceOf(owner).call() == 300_000  # the claim paid directly
    c.functions.withdraw_earnings().transact({"from": owner})
    assert token.functions.balanceOf(owner).call() == 1_500_000
    assert memory_chain.escrow(tag) == (3_500_000, 10**6)
    assert token.functions.balanceOf(c.address).call() == 3_500_000
