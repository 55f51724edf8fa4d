"""Which node errors to eth_getLogs refuse only the width of the query (asked again in
halves) in both verifiers, and which end the reading at once."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from settlement.chain import log_range_refused
from support import IN_CI

CHAIN_JS = Path(__file__).resolve().parents[3] / "web" / "verify" / "src" / "chain.js"

# (code, message): what nodes and providers answer a query too wide or too full
REFUSED = [
    (-32005, "query returned more than 10000 results"),  # geth, Infura (documented)
    (-32602, "Query returned more than 10000 results. Try with this block range"
             " [0x118dc91, 0x1198cc3]."),  # zkSync
    (-32000, "exceed maximum block range: 1000"),  # geth --rpc.rangelimit, bor
    (-32602, "query block range exceeds server limit, narrow your filter: 1000"),  # Erigon
    (-32000, "query returns too many logs, narrow your filter: 20000"),  # Erigon
    (-32005, "block range too large, max range: 1000"),  # cdk-erigon
    (-32602, "query exceeds max block range 100000"),  # reth
    (-32602, "query exceeds max results 20000, retry with the range 1-2"),  # reth
    (-32005, "Requested range exceeds maximum RPC range limit"),  # Besu
    (-32602, "range 1000000 exceeds limit of 10000"),  # Infura (live)
    (-32602, "Log response size exceeded. You can make eth_getLogs requests with up to a"
             " 2K block range and no limit on the response size"),  # Alchemy
    (-32614, "eth_getLogs is limited to a 10,000 range"),  # QuickNode
    (-32602, 'invalid params {"payload": "range 9009594 is bigger than range limit 2000"}'),
    (-32000, "block range is too wide (maximum 1024)"),  # Moonbeam
    (-32600, "block range too high"),
    (-32000, "block range is larger than max block range, block range = 5120, max block"
             " range = 5000"),
    (-32005, "query timeout exceeded"),  # Infura: -32005 is "limit exceeded"
]
# what a narrower window does not help: not asked again
NOT_REFUSED = [
    (-32000, "missing trie node 0x12 (path ) state 0x12 is not available"),
    (-32000, "header not found"),
    (-32602, "block range extends beyond current head block"),
    (-32602, "invalid block range params"),
    (-32000, "internal error"),
    (-32601, "the method eth_getLogs does not exist/is not available"),
    (-32029, "Too Many Requests"),
    (None, "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: /"),
]


@pytest.mark.parametrize(("code", "message"), REFUSED)
def test_a_refusal_of_the_querys_width_is_recognized(code: int, message: str) -> None:
    assert log_range_refused(code, message)


@pytest.mark.parametrize(("code", "message"), NOT_REFUSED)
def test_other_errors_are_not_taken_for_a_refusal_of_the_width(code: int | None,
                                                               message: str) -> None:
    assert not log_range_refused(code, message)


def test_the_receipt_page_recognizes_the_same_errors() -> None:
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is required (the receipt page's verifier)")
        pytest.skip("node not installed")
    cases = REFUSED + NOT_REFUSED
    script = (f"import {{ logRangeRefused }} from {json.dumps(CHAIN_JS.as_uri())};\n"
              f"const cases = {json.dumps(cases)};\n"
              "console.log(JSON.stringify(cases.map(([c, m]) => logRangeRefused(c, m))));\n")
    out = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert json.loads(out) == [log_range_refused(c, m) for c, m in cases]
    assert json.loads(out) == [True] * len(REFUSED) + [False] * len(NOT_REFUSED)
