"""Receipts verified through the nodes drivers have: a full node that keeps no state of the
settle block (Anvil with ``--prune-history``), and public endpoints that refuse
``eth_getLogs`` over a wide block range or with too many results (a real JSON-RPC proxy in
front of Anvil answering as providers do). Both verifiers, check for check; a node that
keeps the logs of a block from the verifier never makes a receipt VALID."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from settlement.chain import Chain, ContractParams, open_chain, rpc_client
from settlement.receipts import INVALID, UNVERIFIED, VALID
from settlement.records import card_commitment
from settlement.wallet import DriverTerms, link_card, new_salt, set_terms
from support import require_anvil
from support.chainkit import Kit
from support.rpcproxy import (
    refuse_blocks,
    refuse_range,
    refuse_range_http,
    refuse_results,
    rpc_proxy,
)

from .conftest import add_sessions, link_driver, verify_receipt
from .test_verifier_origin import check, failed, settled, settled_at_limits

pytestmark = pytest.mark.anvil

KEPT = 16  # the states the node keeps: of the latest blocks only


@pytest.fixture
def pruned_chain(tmp_path: Path) -> Iterator[Chain]:
    """The contract on an Anvil node that keeps the state of its last ``KEPT`` blocks only,
    as a full (non-archive) node does."""
    require_anvil()
    chain = open_chain("local", tmp_path / "anvil-data", params=ContractParams(fee_bps=500),
                       prune_history=KEPT)
    yield chain
    chain.close()


def forget(chain: Chain, block: int) -> None:
    """Mine until the node keeps no state of ``block`` (its logs it keeps)."""
    chain.w3.provider.make_request("anvil_mine", [hex(4 * KEPT)])  # type: ignore[arg-type]
    with pytest.raises(Exception, match=r"(?i)block"):
        chain.contract.functions.driver_index(chain.operator.address).call(
            block_identifier=block)


async def card_receipts(repo: Any, chain: Chain) -> tuple[list[dict[str, Any]], list[Any]]:
    """A card session of a driver who linked its card (VALID), one of a card linked only
    after the session was settled (INVALID), the first card unlinked afterwards."""
    kit = Kit(chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    late, _ = kit.driver()
    salt = new_salt()

    async def work(tx: Any) -> None:
        await tx.link_card("TAG1", late.address, "0x" + salt.hex(),
                           "0x" + card_commitment(late.address, "TAG1", salt).hex(),
                           datetime.now(UTC))

    await repo.unit(work)
    receipts = [await settled(repo, chain, sid) for sid in await add_sessions(repo, 2)]
    commitment = bytes.fromhex(receipts[0]["record"]["card_commitment"][2:])
    chain.transact(driver, "link_card", commitment, False)
    link_card(chain, late, "TAG1", salt)
    return receipts, [driver, late]


async def limit_receipts(repo: Any, chain: Chain) -> tuple[list[dict[str, Any]], Any]:
    """A card session billed at its limit 20 within the driver's 20 a session (VALID: the
    15 announced before is not in force yet), one at an invented limit 25 (INVALID); the
    driver lowers its limit to 10 afterwards (in force after the notice period)."""
    kit, driver, receipts = await settled_at_limits(repo, chain)
    set_terms(chain, driver, DriverTerms(max_per_kwh=40, max_session_fee=50, max_per_session=10,
                                         max_per_day=1_000_000))
    kit.advance(8 * 24 * 3600)
    assert chain.driver_state(driver.address).terms_ahead(kit.now()).max_per_session == 10
    return receipts, driver


async def test_receipts_verify_on_a_node_that_keeps_no_state_of_the_settle_block(
    repo: Any, pruned_chain: Chain,
) -> None:
    """On a full node past its state window the verifier reads the contract's events: a
    VALID receipt stays VALID, a card linked only after settling leaves its receipt
    INVALID, terms lowered after settling are read as they were."""
    chain = pruned_chain
    receipts, (driver, late) = await card_receipts(repo, chain)
    forget(chain, int(receipts[0]["chain"]["block_number"]))
    first = verify_receipt(receipts[0], chain.w3, driver=driver.address)
    assert first.status == VALID, failed(first)
    second = verify_receipt(receipts[1], chain.w3, driver=late.address)
    assert second.status == INVALID
    assert [c.name for c in second.checks if c.ok is False] == ["the driver's card"]
    assert "when the session was settled" in check(second, "the driver's card").detail


async def test_terms_lowered_after_settling_are_read_as_they_were_on_a_full_node(
    repo: Any, pruned_chain: Chain,
) -> None:
    chain = pruned_chain
    (capped, invented), driver = await limit_receipts(repo, chain)
    forget(chain, int(capped["chain"]["block_number"]))
    verdict = verify_receipt(capped, chain.w3, driver=driver.address)
    assert verdict.status == VALID, failed(verdict)
    assert "within the 20 a session" in check(verdict, "session limit").detail
    verdict = verify_receipt(invented, chain.w3, driver=driver.address)
    assert verdict.status == INVALID
    assert [c.name for c in verdict.checks if c.ok is False] == ["session limit"]


@pytest.mark.parametrize("rule", [refuse_range(4), refuse_range_http(4), refuse_results(1)],
                         ids=["range", "range-http-413", "results"])
async def test_receipts_verify_through_a_node_that_limits_its_log_queries(
    repo: Any, pruned_chain: Chain, rule: Any, tmp_path: Path,
) -> None:
    """A public endpoint refuses wide log queries (Infura's range limit, QuickNode's under
    HTTP 413) or ones with many results (geth's): the verifiers read the logs in narrower
    windows, and reach the same verdicts as on the node itself."""
    chain = pruned_chain
    receipts, (driver, late) = await card_receipts(repo, chain)
    (capped, invented), payer = await limit_receipts(repo, chain)
    forget(chain, int(capped["chain"]["block_number"]))
    assert chain.node is not None
    with rpc_proxy(chain.node.url, rule) as proxy:
        w3 = rpc_client(proxy.url)
        for receipt, who, status in ((receipts[0], driver, VALID), (receipts[1], late, INVALID),
                                     (capped, payer, VALID), (invented, payer, INVALID)):
            verdict = verify_receipt(receipt, w3, driver=who.address)
            assert verdict.status == status, failed(verdict)
            assert not [c for c in verdict.checks if c.ok is None]
        assert proxy.refused, "the node refused no query: the windows were not exercised"
        # a narrower first window than the default: read in windows of 3 blocks at most
        served = len(proxy.served)
        verdict = verify_receipt(capped, w3, driver=payer.address, log_window=3)
        assert verdict.status == VALID, failed(verdict)
        assert all(last - first < 3 for first, last in proxy.served[served:])
        # the driver's command, its window named
        path = tmp_path / "receipt.json"
        path.write_text(json.dumps(capped), "utf-8")
        served = len(proxy.served)
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "csms", "verify", str(path), "--rpc",
                             proxy.url, "--driver", payer.address, "--log-window", "2"],
            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
        assert done.returncode == 0, done.stdout + done.stderr
        assert "VALID receipt" in done.stdout
        assert proxy.served[served:] and all(
            last - first < 2 for first, last in proxy.served[served:])


@pytest.mark.parametrize("error", [
    {"code": -32602, "message": "range 1 exceeds limit of 0"},
    {"code": -32000, "message": "internal error"},
    # Infura's rate limit, under the code its range refusals have: a narrower query would be
    # refused all the same (and cost the driver more of their quota)
    {"code": -32005, "message": "daily request count exceeded, request rate limited"}],
    ids=["recognized", "unrecognized", "rate-limited"])
async def test_a_block_whose_logs_the_node_keeps_back_makes_no_receipt_valid(
    repo: Any, pruned_chain: Chain, error: dict[str, Any],
) -> None:
    """A dishonest operator's node, or a failing one, answering every query that covers the
    block where the driver unlinked its card with an error: a card unlinked before the
    session was settled must not read as linked. The window is not taken as empty: the
    verdict is UNVERIFIED (an error the verifiers do not know is not retried at all, a
    refusal of its range down to one block only)."""
    chain = pruned_chain
    kit = Kit(chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    [sid] = await add_sessions(repo, 1)
    commitment = card_commitment(driver.address, "TAG0", bytes.fromhex(
        (await repo.read(lambda tx: tx.card_of("TAG0")))["salt"][2:]))
    unlinked = chain.transact(driver, "link_card", commitment, False)
    receipt = await settled(repo, chain, sid)
    block = int(receipt["chain"]["block_number"])
    forget(chain, block)
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address)
    assert verdict.status == INVALID  # the node itself tells: not linked when settled
    assert check(verdict, "the driver's card").ok is False
    assert chain.node is not None
    at = int(unlinked["blockNumber"])
    with rpc_proxy(chain.node.url, refuse_blocks(at, error)) as proxy:
        verdict = verify_receipt(receipt, rpc_client(proxy.url), driver=driver.address)
        assert verdict.status == UNVERIFIED, failed(verdict)
        assert not [c for c in verdict.checks if c.name == "the driver's card"]
        detail = check(verdict, "on chain").detail
        if error["code"] == -32602:
            assert f"one block ({at})" in detail, detail
        else:
            assert error["message"] in detail, detail
            # the query refused is not asked again, nor a narrower one
            assert len(proxy.refused) == (2 if shutil.which("node") else 1)  # each verifier
