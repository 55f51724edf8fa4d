"""A JSON-RPC proxy in front of a node that refuses ``eth_getLogs`` as public nodes and
providers do (too wide a block range, too many results), everything else passed through.

A real HTTP server on loopback in a thread: both verifiers (web3.py and the receipt page's
``fetch`` under Node) talk to it like to any node. ``rule`` sees each ``eth_getLogs``
query's block range and the node's answer and returns the JSON-RPC error object to answer
instead, or None to pass the answer on.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "RpcProxy",
    "Rule",
    "refuse_blocks",
    "refuse_range",
    "refuse_range_http",
    "refuse_results",
    "rpc_proxy",
]

# (from block, to block, the node's logs) -> the error to answer, or None
Rule = Callable[[int, int, list[Any]], dict[str, Any] | None]


def refuse_range(limit: int) -> Rule:
    """Infura's refusal of a range wider than ``limit`` blocks, whatever it holds."""

    def rule(first: int, last: int, logs: list[Any]) -> dict[str, Any] | None:
        width = last - first + 1
        return {"code": -32602, "message": f"range {width} exceeds limit of {limit}"} \
            if width > limit else None

    return rule


def refuse_range_http(limit: int) -> Rule:
    """QuickNode's refusal of a range wider than ``limit`` blocks: a JSON-RPC error under
    HTTP status 413 (``http_status`` is not sent in the error)."""

    def rule(first: int, last: int, logs: list[Any]) -> dict[str, Any] | None:
        return {"code": -32614, "message": f"eth_getLogs is limited to a {limit:,} range",
                "http_status": 413} if last - first + 1 > limit else None

    return rule


def refuse_results(limit: int) -> Rule:
    """geth's (and Infura's) refusal of a query with more than ``limit`` logs."""

    def rule(first: int, last: int, logs: list[Any]) -> dict[str, Any] | None:
        return {"code": -32005, "message": f"query returned more than {limit} results"} \
            if len(logs) > limit else None

    return rule


def refuse_blocks(block: int, error: dict[str, Any]) -> Rule:
    """A node that refuses every query covering ``block`` with ``error`` (one block too):
    the logs of that block never reach the verifier."""

    def rule(first: int, last: int, logs: list[Any]) -> dict[str, Any] | None:
        return error if first <= block <= last else None

    return rule


def _number(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    return None  # a tag ("latest"): passed through as asked


class RpcProxy:
    """``url`` answers as ``upstream`` does, but for the ``eth_getLogs`` ``rule`` refuses;
    ``served`` and ``refused`` hold the (from, to) ranges of the queries, ``requests``
    every request's (method, params)."""

    def __init__(self, upstream: str, rule: Rule) -> None:
        self.upstream, self.rule = upstream, rule
        self.served: list[tuple[int, int]] = []
        self.refused: list[tuple[int, int]] = []
        self.requests: list[tuple[str, Any]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = proxy.handle(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.upstream, body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())

    def handle(self, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, body) of the answer to one request."""
        answer = self.forward(body)
        request = json.loads(body)
        for one in request if isinstance(request, list) else [request]:
            if isinstance(one, dict):
                self.requests.append((str(one.get("method")), one.get("params")))
        if not isinstance(request, dict) or request.get("method") != "eth_getLogs":
            return 200, answer
        query = request["params"][0]
        first, last = _number(query.get("fromBlock")), _number(query.get("toBlock"))
        result = json.loads(answer).get("result")
        if first is None or last is None or not isinstance(result, list):
            return 200, answer
        error = self.rule(first, last, result)
        if error is None:
            self.served.append((first, last))
            return 200, answer
        self.refused.append((first, last))
        error = dict(error)
        status = int(error.pop("http_status", 200))
        return status, json.dumps({"jsonrpc": "2.0", "id": request.get("id"),
                                   "error": error}).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextmanager
def rpc_proxy(upstream: str, rule: Rule) -> Iterator[RpcProxy]:
    proxy = RpcProxy(upstream, rule)
    try:
        yield proxy
    finally:
        proxy.close()
