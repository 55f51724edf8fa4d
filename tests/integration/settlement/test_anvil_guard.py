"""The guard of the managed node stops it once what it was mining is mined: the state it
writes holds every transaction's block with the transaction's effect."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from settlement.anvil_guard import rpc
from settlement.chain import find_anvil, free_local_port
from support import require_anvil

SENDER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # Anvil's first account
RECEIVER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.fixture(autouse=True)
def anvil_installed() -> None:
    require_anvil()


def _rpc(url: str, method: str, *params: Any) -> Any:
    return rpc(url, method, *params, timeout=10)


def _guarded(state: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """A node on ``state`` under its guard, as AnvilNode starts one; its RPC address."""
    anvil = find_anvil()
    assert anvil is not None
    port = free_local_port()
    guard = subprocess.Popen(
        [sys.executable, "-m", "settlement.anvil_guard", "-", str(os.getpid()), "--", anvil,
         "--host", "127.0.0.1", "--port", str(port), "--silent", "--state", str(state), *args],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert guard.poll() is None and time.monotonic() < deadline, "anvil did not start"
            time.sleep(0.05)
    return guard, f"http://127.0.0.1:{port}"


def _stop(guard: subprocess.Popen[bytes]) -> None:
    assert guard.stdin is not None
    guard.stdin.close()  # the owner is gone
    guard.wait(60)


def _answers(url: str) -> bool:
    try:
        _rpc(url, "eth_blockNumber")
    except OSError:
        return False
    return True


def test_a_transaction_being_mined_as_the_owner_dies_is_saved_with_its_block(
        tmp_path: Path) -> None:
    """Mining held back (``--no-mining``) stands for a transaction the owner sent a moment
    before it was killed: the guard stopped the node at once, and a state written before
    the block was stored held the transaction's effect without it (about one stop in a
    hundred with the managed node's mining at once)."""
    state = tmp_path / "anvil-state.json"
    guard, url = _guarded(state, "--no-mining")
    sent = _rpc(url, "eth_sendTransaction", {"from": SENDER, "to": RECEIVER, "value": "0x1"})
    assert guard.stdin is not None
    guard.stdin.close()  # the owner is gone, the transaction not mined yet
    time.sleep(0.5)
    assert _answers(url), "the node was stopped with a transaction still to be mined"
    _rpc(url, "evm_mine")
    guard.wait(60)  # stopped once it was mined
    assert not _answers(url)

    again, url = _guarded(state)
    try:
        receipt = _rpc(url, "eth_getTransactionReceipt", sent)
        assert receipt is not None and int(receipt["status"], 16) == 1
        block = _rpc(url, "eth_getBlockByNumber", receipt["blockNumber"], False)
        assert sent in block["transactions"]
        assert int(_rpc(url, "eth_getTransactionCount", SENDER, "latest"), 16) == 1
    finally:
        _stop(again)


def test_a_transaction_that_is_never_mined_does_not_keep_the_node_up(tmp_path: Path) -> None:
    """The wait is bounded: a node that cannot mine what it holds is stopped all the same,
    its pending transaction lost with it (as before), its state consistent."""
    state = tmp_path / "anvil-state.json"
    guard, url = _guarded(state, "--no-mining")
    _rpc(url, "eth_sendTransaction", {"from": SENDER, "to": RECEIVER, "value": "0x1"})
    _stop(guard)
    assert guard.returncode is not None and not _answers(url)

    again, url = _guarded(state)
    try:
        assert int(_rpc(url, "eth_getTransactionCount", SENDER, "latest"), 16) == 0
        assert int(_rpc(url, "eth_blockNumber"), 16) == 0
    finally:
        _stop(again)
