"""Which node errors to eth_getLogs refuse only the width of the query (asked again in
halves) in both verifiers, and which end the reading at once; which failed requests the
verifier's JSON-RPC client sends again."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from settlement.chain import _rpc_error, log_range_refused, rpc_client
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
    # rate limits under -32005 ("limit exceeded"): a narrower window is refused the same
    (-32005, "daily request count exceeded, request rate limited"),  # Infura
    (-32005, "project ID request rate exceeded"),  # Infura
    (-32005, "Your app has exceeded its compute units per second capacity"),  # Alchemy
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


@contextmanager
def node_answering(statuses: dict[str, list[int]]) -> Iterator[tuple[str, list[str]]]:
    """A JSON-RPC endpoint answering each method's requests with the HTTP statuses given
    in turn (then 200): an error object under an error status, as QuickNode refuses a
    range with 413. Its URL and the methods asked, in order."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            method = request["method"]
            asked.append(method)
            left = statuses.get(method, [])
            status = left.pop(0) if left else 200
            answer: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
            if status == 200:
                answer["result"] = [] if method == "eth_getLogs" else "0x10"
            else:
                answer["error"] = {"code": -32614,
                                   "message": "eth_getLogs is limited to a 10,000 range"}
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_request_the_node_refuses_with_a_client_error_is_not_asked_again() -> None:
    """A provider refusing a range under HTTP 413 answers the same request the same way:
    the verifier reads the refusal at once (and asks for half the range), it does not send
    it again and again with a backoff."""
    with node_answering({"eth_getLogs": [413] * 10}) as (url, asked), \
            pytest.raises(Exception) as refused:
        rpc_client(url).eth.get_logs({"fromBlock": 0, "toBlock": 20_000})
    assert asked == ["eth_getLogs"]
    code, message = _rpc_error(refused.value)
    assert log_range_refused(code, message)


@pytest.mark.parametrize("status", [429, 503])
def test_a_request_that_may_pass_later_is_asked_again(status: int) -> None:
    """A rate limit or a server's failure may pass: asked again, as web3 does."""
    with node_answering({"eth_blockNumber": [status, status]}) as (url, asked):
        assert rpc_client(url).eth.block_number == 16
    assert asked == ["eth_blockNumber"] * 3
