"""TLS state: what OpenSSL itself keeps per server-side TLS connection.

The server's TLS connections are ``ssl.SSLObject`` s over two memory BIOs (asyncio's
TLS layer, and :class:`csms.transport.LeanSSLProtocol` on it). Here N of them are made
in one process, with no sockets, no event loop and no WebSocket: each one is created
(``SSL_new``), and, unless ``--no-handshake``, takes a full handshake with an in-memory
client and one record each way; the clients are then freed. The growth of this
process's RSS divided by N is OpenSSL's state per connection, which no change above
the ``ssl`` module can lower. The same is measured for a connection that only exists
(created, no handshake) and for the two memory BIOs alone (the baseline in the same
run, taken off). ``ratio_of_budget``: OpenSSL's state over the 16 KiB a whole idle TLS
connection should cost.

``--library pyopenssl`` measures the same with pyOpenSSL over the OpenSSL that the
``cryptography`` wheel carries (a newer one than the system's, which the ``ssl`` module
uses): whether another OpenSSL a Python program can load keeps less. Its memory BIOs
live inside each connection and are counted with it (``memory_bios_kib`` is null), as
is its Python wrapper: an upper bound of that OpenSSL's own state.

    python -m bench.tls_state --connections 3000
    python -m bench.tls_state --connections 3000 --library pyopenssl
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import rss_kib
from bench.soak import write_tls_pair
from csms.transport import malloc_trim

__all__ = ["main", "measure", "measure_pyopenssl"]

_Side = tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]

# memory per idle connection with TLS that the project aims at (docs/benchmarks.md)
BUDGET_KIB = 16.0


_MALLOC_TRIM = malloc_trim()


def _trim() -> None:
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _side(ctx: ssl.SSLContext, server: bool) -> _Side:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=server,
                       server_hostname=None if server else "127.0.0.1")
    return obj, incoming, outgoing


def _until_handshaken(steps: tuple[Callable[[], Any], ...],
                      want_read: type[Exception], exchange: Callable[[], None]) -> None:
    """Each side's handshake step (the client's first) and the bytes between the sides
    (``exchange``), round after round, until no side waits to read (at most ten)."""
    for _ in range(10):
        done = True
        for step in steps:
            try:
                step()
            except want_read:
                done = False
        exchange()
        if done:
            return
    raise RuntimeError("the in-memory TLS handshake did not finish")


def _handshake(server: _Side, client: _Side) -> None:
    """A full handshake in memory, then 100 bytes each way (the first records)."""
    def exchange() -> None:
        server[1].write(client[2].read())
        client[1].write(server[2].read())

    _until_handshaken((client[0].do_handshake, server[0].do_handshake),
                      ssl.SSLWantReadError, exchange)
    client[0].write(b"c" * 100)
    server[1].write(client[2].read())
    server[0].read(1024)
    server[0].write(b"s" * 100)
    client[1].write(server[2].read())
    client[0].read(1024)


def _per_connection(n: int, make: Any) -> float:
    """RSS growth per kept object, in KiB, after ``n`` calls of ``make()``."""
    _trim()
    before = rss_kib(os.getpid())
    kept = [make() for _ in range(n)]
    _trim()
    after = rss_kib(os.getpid())
    del kept
    _trim()
    return round((after - before) / n, 2)


def measure(n: int, tls12: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        cert, key = write_tls_pair(Path(folder))
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        if tls12:
            server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.load_verify_locations(cert)

    def connected() -> _Side:
        server, client = _side(server_ctx, True), _side(client_ctx, False)
        _handshake(server, client)
        return server

    for _ in range(50):  # warm-up: the contexts' lazily built state
        connected()
    bios = _per_connection(n, lambda: (ssl.MemoryBIO(), ssl.MemoryBIO()))
    created = _per_connection(n, lambda: _side(server_ctx, True))
    after = _per_connection(n, connected)
    return _result(n, "ssl", ssl.OPENSSL_VERSION, tls12, bios, created, after)


def _result(n: int, library: str, openssl: str, tls12: bool, bios: float | None,
            created: float, after: float) -> dict[str, Any]:
    """The benchmark's line; ``bios``: the memory BIOs' KiB a connection, taken off, or
    None where they live inside the connection (counted with it)."""
    state = after if bios is None else round(after - bios, 2)
    return {"benchmark": "tls_state", "connections": n, "library": library,
            "openssl": openssl, "tls": "1.2" if tls12 else "1.3", "memory_bios_kib": bios,
            "created_kib": created, "after_handshake_kib": after,
            "openssl_after_handshake_kib": state,
            # the share of the whole per-connection budget (16 KiB, with TLS) that this
            # state takes before a byte of WebSocket, OCPP or asyncio
            "ratio_of_budget": round(state / BUDGET_KIB, 3)}


def measure_pyopenssl(n: int, tls12: bool = False) -> dict[str, Any]:
    """:func:`measure` with pyOpenSSL's connections over the ``cryptography`` wheel's
    OpenSSL (server side over memory BIOs, the same handshake and records)."""
    from OpenSSL import SSL

    with tempfile.TemporaryDirectory() as folder:
        cert, key = write_tls_pair(Path(folder))
        server_ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        server_ctx.use_certificate_file(str(cert))
        server_ctx.use_privatekey_file(str(key))
    if tls12:
        server_ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    server_ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)  # as the ssl module sets it
    client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)

    def move(source: SSL.Connection, to: SSL.Connection) -> None:
        with contextlib.suppress(SSL.WantReadError):  # nothing to send
            to.bio_write(source.bio_read(1 << 16))

    def connected() -> SSL.Connection:
        server, client = SSL.Connection(server_ctx, None), SSL.Connection(client_ctx, None)
        server.set_accept_state()
        client.set_connect_state()

        def exchange() -> None:
            move(client, server)
            move(server, client)

        _until_handshaken((client.do_handshake, server.do_handshake), SSL.WantReadError,
                          exchange)
        client.send(b"c" * 100)
        move(client, server)
        server.recv(1024)
        server.send(b"s" * 100)
        move(server, client)
        client.recv(1024)
        return server

    for _ in range(50):
        connected()
    created = _per_connection(n, lambda: SSL.Connection(server_ctx, None))
    after = _per_connection(n, connected)
    return _result(n, "pyopenssl", SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode(), tls12,
                   None, created, after)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--tls12", action="store_true", help="TLS 1.2 instead of 1.3")
    parser.add_argument("--library", choices=("ssl", "pyopenssl"), default="ssl",
                        help="the ssl module (the server's), or pyOpenSSL over the"
                             " cryptography wheel's OpenSSL")
    args = parser.parse_args(argv)
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    if args.library == "pyopenssl":
        try:
            import OpenSSL  # noqa: F401
        except ImportError:
            parser.error("--library pyopenssl needs pyOpenSSL (pip install pyopenssl)")
        print(json.dumps(measure_pyopenssl(args.connections, args.tls12)))
        return
    print(json.dumps(measure(args.connections, args.tls12)))


if __name__ == "__main__":
    main()
