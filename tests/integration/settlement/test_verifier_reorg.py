"""A receipt checked while its settle block is reorganised away (before the check or during
it): the honest verdict is UNVERIFIED (not final, or no longer on the chain), never INVALID
(an accusation of the operator) nor VALID. Both verifiers, on a real Anvil node."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

from settlement.chain import Chain, rpc_client
from settlement.receipts import UNVERIFIED, VALID, load_receipt
from settlement.receipts import verify_receipt as python_verify
from settlement.records import unpack_entry
from settlement.worker import SettlementWorker
from support import IN_CI
from support.chainkit import Kit, Row
from support.rpcproxy import RpcProxy

from .conftest import PAGE_CLI, add_sessions, link_driver, verify_receipt

pytestmark = pytest.mark.anvil

CHUNK_DIGEST = "0x4fd5ef96"  # chunk_digest(uint256,uint256), checked below


def unproven(verdict: Any) -> list[tuple[str, bool | None]]:
    return [(c.name, c.ok) for c in verdict.checks if c.ok is not True]


def detail(verdict: Any, name: str) -> str:
    [found] = [c.detail for c in verdict.checks if c.name == name and c.ok is not True]
    return str(found)


async def settled_after_a_snapshot(repo: Any, chain: Chain) -> tuple[
        Kit, Any, dict[str, Any], str]:
    """A card session of a driver settled (its receipt), and a snapshot of the chain just
    before its settle transaction (its ledger and station registered)."""
    kit = Kit(chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    [sid] = await add_sessions(repo, 1)
    worker = SettlementWorker(repo, chain)
    await worker.build_batches(force=True)  # registers the ledger and the station
    snapshot = rpc(chain, "evm_snapshot")
    await worker.run_once(timeout=60)
    receipt = await load_receipt(repo, sid, None)
    assert verify_receipt(receipt, chain.w3, driver=driver.address).status == VALID
    return kit, driver, receipt, snapshot


def rpc(chain: Chain, method: str, *params: Any) -> Any:
    answer = chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in answer, answer
    return answer["result"]


def settle_another_chunk(kit: Kit, receipt: dict[str, Any]) -> None:
    """Another chunk for the receipt's sequence numbers of its ledger: the chain reorganised,
    and the operator settled other entries there."""
    ledger, first_seq = int(receipt["chunk"]["ledger"]), int(receipt["chunk"]["first_seq"])
    kit.registered.add(ledger)
    station = unpack_entry(int(receipt["entry"]["packed"], 16))["chain_station"]
    kit.settle([Row(station, 0, 500, 600, 20)], first_seq=first_seq, ledger=ledger)
    assert kit.chain.chunk_digest(ledger, first_seq) != receipt["chunk"]["digest"]


async def test_a_settle_transaction_reorganised_away_is_unverified_not_invalid(
    repo: Any, anvil_chain: Chain,
) -> None:
    """The settle block is reorganised away: the transaction is in no block (dropped, or
    back in the node's pool, not mined), then mined again in another block than the receipt
    names. Each time the verdict is UNVERIFIED with one line that says so, whether the
    driver names its address or the contract."""
    chain = anvil_chain
    kit, driver, receipt, snapshot = await settled_after_a_snapshot(repo, chain)
    tx = receipt["chain"]["tx_hash"]
    raw = rpc(chain, "eth_getRawTransactionByHash", tx)
    rpc(chain, "evm_revert", snapshot)
    kit.mine(3)
    ways = ({"driver": driver.address}, {"contract": receipt["chain"]["contract"]})

    def unverified(*words: str) -> None:
        for options in ways:
            verdict = verify_receipt(receipt, chain.w3, same_detail=("settle transaction",),
                                     **options)
            assert verdict.status == UNVERIFIED, unproven(verdict)
            assert unproven(verdict) == [("settle transaction", None)], verdict.checks
            for word in words:
                assert word in detail(verdict, "settle transaction")

    unverified(f"{tx} is in no block", "reorganised away", "check again later")
    rpc(chain, "evm_setAutomine", False)  # back in the node's pool, not mined
    try:
        assert rpc(chain, "eth_sendRawTransaction", raw) == tx
        assert chain.w3.eth.get_transaction(tx)["blockNumber"] is None
        unverified(f"{tx} is in no block")
    finally:
        rpc(chain, "evm_setAutomine", True)
    kit.mine(1)  # mined again, in another block than the receipt names
    block = int(chain.w3.eth.get_transaction_receipt(tx)["blockNumber"])
    assert block != receipt["chain"]["block_number"]
    unverified(f"succeeded in block {block}, not in block {receipt['chain']['block_number']}",
               "reorganised")
    # the receipt the central system writes of it now names the block: VALID
    moved = {**receipt, "chain": {**receipt["chain"], "block_number": block}}
    assert verify_receipt(moved, chain.w3, driver=driver.address).status == VALID


async def test_a_receipt_of_sequence_numbers_settled_again_otherwise_is_not_valid(
    repo: Any, anvil_chain: Chain,
) -> None:
    """The settle block is reorganised away and another chunk settled for the same sequence
    numbers at the same height: the receipt is UNVERIFIED, never VALID."""
    chain = anvil_chain
    kit, driver, receipt, snapshot = await settled_after_a_snapshot(repo, chain)
    rpc(chain, "evm_revert", snapshot)
    settle_another_chunk(kit, receipt)
    assert chain.block_number() >= receipt["chain"]["block_number"]
    for options in ({"driver": driver.address}, {"contract": receipt["chain"]["contract"]}):
        verdict = verify_receipt(receipt, chain.w3, **options)
        assert verdict.status == UNVERIFIED, unproven(verdict)
        assert unproven(verdict) == [("settle transaction", None)]


class ReorganisingProxy(RpcProxy):
    """A node through which the chain reorganises the moment the verifier asks the contract
    for a chunk's digest (once per :meth:`arm`), before it is answered."""

    def __init__(self, upstream: str, reorganise: Callable[[], None]) -> None:
        super().__init__(upstream, lambda first, last, logs: None)
        self.reorganise, self.armed = reorganise, False

    def arm(self) -> None:
        self.armed = True

    def handle(self, body: bytes) -> tuple[int, bytes]:
        request = json.loads(body)
        if (self.armed and isinstance(request, dict) and request.get("method") == "eth_call"
                and str(request["params"][0].get("data", "")).startswith(CHUNK_DIGEST)):
            self.armed = False
            self.reorganise()
        return super().handle(body)


def page_verdict(receipt: dict[str, Any], url: str, *args: str) -> tuple[
        list[tuple[str, bool | None]], str]:
    """The receipt page's verifier under Node: (its not-ok checks, its verdict)."""
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is required (the receipt page's verifier)")
        pytest.skip("node not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(receipt, f)
        f.flush()
        out = subprocess.run([node, str(PAGE_CLI), f.name, "--rpc", url, *args],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    *checks, last = [json.loads(line) for line in out.splitlines()]
    return [(c["name"], c["ok"]) for c in checks if c["ok"] is not True], str(last["status"])


async def test_a_reorganisation_while_the_receipt_is_checked_is_unverified_not_invalid(
    repo: Any, anvil_chain: Chain,
) -> None:
    """The chain reorganises the settle block while the verifier reads it, another chunk
    settled for the receipt's sequence numbers at the same height: what the contract holds
    then is not the receipt's chunk, yet the operator settled it once on the chain the check
    began on. The verdict is UNVERIFIED (the chain moved: check again), not INVALID."""
    chain = anvil_chain
    kit, driver, receipt, snapshot = await settled_after_a_snapshot(repo, chain)
    tx = receipt["chain"]["tx_hash"]
    raw = rpc(chain, "eth_getRawTransactionByHash", tx)
    assert chain.w3.keccak(text="chunk_digest(uint256,uint256)")[:4].hex() in CHUNK_DIGEST
    pre = [snapshot]

    def back_to_before() -> None:
        rpc(chain, "evm_revert", pre[0])
        pre[0] = rpc(chain, "evm_snapshot")

    def reorganise() -> None:
        back_to_before()
        settle_another_chunk(kit, receipt)

    def settled_as_the_receipt_says() -> None:
        back_to_before()
        assert rpc(chain, "eth_sendRawTransaction", raw) == tx
        # Anvil may answer before its block is mined: its receipt is then not there yet
        assert int(chain.w3.eth.wait_for_transaction_receipt(tx, 30)["blockNumber"]) \
            == receipt["chain"]["block_number"]

    proxy = ReorganisingProxy(str(chain.rpc_url), reorganise)
    try:
        for options in ({"driver": driver.address}, {"contract": receipt["chain"]["contract"]}):
            settled_as_the_receipt_says()
            proxy.arm()
            verdict = python_verify(receipt, rpc_client(proxy.url), rpc_url=proxy.url,
                                    **options)
            assert not proxy.armed, "the verifier read no chunk digest"
            assert verdict.status == UNVERIFIED, unproven(verdict)
            assert unproven(verdict) == [("settle transaction", None)]
            assert "reorganised" in detail(verdict, "settle transaction")

            settled_as_the_receipt_says()
            proxy.arm()
            [(name, value)] = options.items()
            checks, status = page_verdict(receipt, proxy.url, f"--{name}", value)
            assert not proxy.armed, "the page's verifier read no chunk digest"
            assert (status, checks) == (UNVERIFIED, [("settle transaction", None)])
    finally:
        proxy.close()
