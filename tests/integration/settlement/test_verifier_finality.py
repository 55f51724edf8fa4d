"""What the chain's answer is worth: how deep the settle block is (a block can be
reorganised away until enough blocks are on top of it), and whose node answered (the node
a receipt names is its operator's, which can answer anything). On py-evm and on a real
Anvil node, where the receipt page's verifier (web/verify, under Node) must reach the same
checks and verdict, and through ``csms verify``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from settlement.chain import Chain
from settlement.receipts import UNVERIFIED, VALID, load_receipt
from settlement.receipts import verify_receipt as python_verify
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import add_sessions, link_driver, verify_receipt


def unproven(verdict: Any) -> list[tuple[str, bool | None, str]]:
    return [(c.name, c.ok, c.detail) for c in verdict.checks if c.ok is not True]


def check(verdict: Any, name: str) -> Any:
    [found] = [c for c in verdict.checks if c.name == name]
    return found


async def settled_receipt(repo: Any, chain: Chain, hint: str | None = None) -> tuple[
        Kit, Any, dict[str, Any]]:
    """A card session of a driver settled (VALID on a chain that agrees), its receipt
    naming ``hint`` as its node."""
    kit = Kit(chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    [sid] = await add_sessions(repo, 1)
    await SettlementWorker(repo, chain).run_once()
    return kit, driver, await load_receipt(repo, sid, hint)


async def verify_cli(folder: Path, receipt: dict[str, Any], *args: str) -> tuple[int, str]:
    path = folder / "receipt.json"
    path.write_text(json.dumps(receipt), "utf-8")
    r = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "csms", "verify", str(path), *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "400", "CSMS_DATA_DIR": str(folder / "nowhere")})
    assert not r.stderr, r.stderr
    return r.returncode, r.stdout


async def test_a_receipt_is_valid_once_its_settle_block_has_the_confirmations_asked(
    repo: Any, chain: Chain,
) -> None:
    """On a local test chain one confirmation does (the settle transaction is in a block),
    and the verdict says how deep the block is; asked for more, the receipt is UNVERIFIED
    until that many blocks are mined, then VALID."""
    kit, driver, receipt = await settled_receipt(repo, chain)
    block = int(receipt["chain"]["block_number"])
    depth = chain.block_number() - block
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address)
    assert verdict.status == VALID, unproven(verdict)
    found = check(verdict, "confirmations")
    assert found.ok is True
    assert f"settle block {block}, {counted(depth, 'block')} on top of it" in found.detail
    assert f"{counted(depth + 1, 'confirmation')}, 1 required" in found.detail

    want = depth + 3
    for mined in range(2):
        verdict = verify_receipt(receipt, chain.w3, driver=driver.address, confirmations=want)
        assert verdict.status == UNVERIFIED
        [(name, ok, detail)] = unproven(verdict)
        assert (name, ok) == ("confirmations", None)
        assert f"{counted(depth + 1 + mined, 'confirmation')}, {want} required" in detail
        assert "1 confirmations" not in detail and "1 blocks" not in detail
        assert "can still be reorganised away" in detail
        kit.mine(1)
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address, confirmations=want)
    assert verdict.status == VALID, unproven(verdict)
    assert f"{want} confirmations, {want} required" in check(verdict, "confirmations").detail
    with pytest.raises(ValueError, match="at least one"):
        python_verify(receipt, chain.w3, confirmations=0)


def counted(n: int, noun: str) -> str:
    """How the verdict writes ``n`` of ``noun``: "1 block", "0 blocks", "2 blocks"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@pytest.mark.anvil
async def test_a_public_chain_wants_its_settle_block_final_by_default(
    repo: Any, anvil_chain: Chain, tmp_path: Path,
) -> None:
    """A receipt of chain 1 (Ethereum): without --confirmations the verifier asks for 64,
    about two epochs, when a block of Ethereum is final; the verdict is UNVERIFIED (exit 3)
    until then, VALID (exit 0) with 64. The driver may ask for fewer."""
    kit, driver, receipt = await settled_receipt(repo, anvil_chain)
    anvil_chain.w3.provider.make_request("anvil_setChainId", [1])  # type: ignore[arg-type]
    mainnet = {**receipt, "chain": {**receipt["chain"], "chain_id": 1}}
    block = int(receipt["chain"]["block_number"])
    kit.mine(62 - (anvil_chain.block_number() - block))  # 63 confirmations
    verdict = verify_receipt(mainnet, anvil_chain.w3, driver=driver.address)
    assert verdict.status == UNVERIFIED
    [(name, ok, detail)] = unproven(verdict)
    assert (name, ok) == ("confirmations", None)
    assert "63 confirmations, 64 required (the default on chain 1" in detail
    url = str(anvil_chain.rpc_url)
    code, out = await verify_cli(tmp_path, mainnet, "--rpc", url, "--driver", driver.address)
    assert code == 3 and "??  confirmations: settle block" in out, out
    code, out = await verify_cli(tmp_path, mainnet, "--rpc", url, "--driver", driver.address,
                                 "--confirmations", "63")
    assert code == 0 and "VALID receipt" in out, out

    kit.mine(1)
    verdict = verify_receipt(mainnet, anvil_chain.w3, driver=driver.address)
    assert verdict.status == VALID, unproven(verdict)
    assert "64 confirmations, 64 required" in check(verdict, "confirmations").detail
    code, out = await verify_cli(tmp_path, mainnet, "--rpc", url, "--driver", driver.address)
    assert code == 0 and "ok  confirmations: settle block" in out, out


@pytest.mark.anvil
async def test_a_receipt_checked_on_the_node_it_names_proves_nothing_against_its_operator(
    repo: Any, anvil_chain: Chain, tmp_path: Path,
) -> None:
    """The receipt names its operator's node (``chain.rpc_hint``, what the receipt page
    fills in): checked there, every answer is the operator's, so the verdict is UNVERIFIED
    (exit 3) and says so; on a node the driver chose it is VALID and says whose node it
    was."""
    url = str(anvil_chain.rpc_url)
    _, driver, receipt = await settled_receipt(repo, anvil_chain, hint=url)
    assert receipt["chain"]["rpc_hint"] == url
    verdict = verify_receipt(receipt, anvil_chain.w3, driver=driver.address)
    assert verdict.status == UNVERIFIED
    [(name, ok, detail)] = unproven(verdict)
    assert (name, ok) == ("chain node", None)
    assert f"the chain data came from {url}, the node the receipt names" in detail
    assert "the node the receipt names (its operator's)" in verdict.proves
    # the same URL written otherwise is the same node
    spelled = python_verify(receipt, anvil_chain.w3, driver=driver.address,
                            rpc_url=f" {url.upper()}/")
    assert [c.name for c in spelled.checks if c.ok is not True] == ["chain node"]
    code, out = await verify_cli(tmp_path, receipt, "--rpc", url, "--driver", driver.address)
    assert code == 3 and "??  chain node: the chain data came from" in out, out

    # the receipt names another node: the driver's is one of its own choosing
    other = {**receipt, "chain": {**receipt["chain"], "rpc_hint": "http://rpc.operator.test"}}
    verdict = verify_receipt(other, anvil_chain.w3, driver=driver.address)
    assert verdict.status == VALID, unproven(verdict)
    assert f"the chain data came from {url}, a node you chose" in check(
        verdict, "chain node").detail
    assert f"Chain data from {url}, a node you chose" in verdict.proves
    code, out = await verify_cli(tmp_path, other, "--rpc", url, "--driver", driver.address)
    assert code == 0 and "ok  chain node:" in out, out
