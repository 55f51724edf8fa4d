"""Bounded memory per connection, as a hostile peer would test it: real sockets, real TLS.

Silent sockets on both ports, handshakes that never finish, more sockets than the
handshake limit, pings without reading, pings with reading, a station that stops
reading what we send. No timing asserts: counts, states and who got closed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import csms.transport
from bench.soak import ping_frame, write_tls_pair
from csms.server import CallTimeout, StationOffline
from csms.transport import LeanSSLProtocol
from support import RunningServer
from support.client import RawClient

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


@pytest.fixture
async def guarded(csms_server: RunningServer, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server on ws:// and wss:// with small limits, so a test reaches them."""
    cert, key = write_tls_pair(tmp_path)
    await csms_server.stop()
    csms_server.settings = replace(
        csms_server.settings, tls_cert=str(cert), tls_key=str(key), tls_port=0,
        max_handshakes=20, handshake_timeout=1.0, write_buffer_limit=16384,
        ping_interval=0, ping_timeout=0.5, close_timeout=0.5)
    await csms_server.start()
    yield csms_server


def ports(server: RunningServer) -> dict[str, int]:
    return {"ws": server.central.port if server.central._server else 0,
            "wss": server.central.tls_port}


async def silent_sockets(port: int, n: int) -> list[tuple[asyncio.StreamReader,
                                                             asyncio.StreamWriter]]:
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 10) -> bool:
    """True when the server closed the socket (EOF or reset) within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except (ConnectionError, OSError):
        return True
    except TimeoutError:
        return False
    return True


async def wait_for(predicate: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def count(server: RunningServer, reason: str) -> float:
    value = server.central.metrics.connections_cut.labels(reason)._value.get()
    return float(value)


@pytest.mark.parametrize("listener", ["ws", "wss"])
async def test_handshake_limit_drops_extra_sockets(guarded: RunningServer,
                                                   listener: str) -> None:
    gate = guarded.central.gates[listener]
    socks = await silent_sockets(ports(guarded)[listener], 50)
    await wait_for(lambda: gate.pending + gate.refused >= 50)
    # never more than the limit in handshake at once; the rest closed on arrival
    assert gate.peak == 20 and gate.refused == 30
    dropped = await asyncio.gather(*(closed_by_server(r, 0.5) for r, _ in socks[20:]))
    assert all(dropped)
    for _, w in socks:
        w.close()
    await wait_for(lambda: gate.pending == 0)
    # once the silent sockets are gone, stations get in again
    await guarded.add_station("CP1")
    async with await RawClient.connect(guarded.url, "CP1") as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"


@pytest.mark.parametrize("listener", ["ws", "wss"])
async def test_silent_and_stalled_handshakes_time_out(guarded: RunningServer,
                                                      listener: str) -> None:
    port = ports(guarded)[listener]
    gate = guarded.central.gates[listener]
    silent = await silent_sockets(port, 3)
    # a handshake that starts and stalls: half a ClientHello / half an HTTP request
    stalled = await silent_sockets(port, 3)
    first = (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" if listener == "wss"
             else b"GET /CP1 HTTP/1.1\r\nHost: x\r\n")
    for _, w in stalled:
        w.write(first)
    results = await asyncio.gather(*(closed_by_server(r) for r, _ in silent + stalled))
    assert all(results)
    await wait_for(lambda: gate.pending == 0)
    for _, w in silent + stalled:
        w.close()


async def test_a_silent_tls_socket_holds_no_tls_state(guarded: RunningServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    created = 0
    original = LeanSSLProtocol.__init__

    def counting(self: LeanSSLProtocol, *args: Any, **kwargs: Any) -> None:
        nonlocal created
        created += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(LeanSSLProtocol, "__init__", counting)
    gate = guarded.central.gates["wss"]
    socks = await silent_sockets(ports(guarded)["wss"], 10)
    await wait_for(lambda: gate.pending == 10)
    assert created == 0  # no SSL object until a ClientHello arrives
    for _, w in socks:
        w.close()
    await wait_for(lambda: gate.pending == 0)


async def raw_upgrade(port: int, station: str, rcvbuf: int | None = None) -> socket.socket:
    """A WebSocket client made by hand: it reads only what the test tells it to."""
    loop = asyncio.get_running_loop()
    s = socket.socket()
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setblocking(False)
    await loop.sock_connect(s, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(s, (
        f"GET /{station} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(s, 1)  # byte by byte: nothing after the head is read
    assert b" 101 " in head.split(b"\r\n")[0], head
    return s


async def send_until_closed(s: socket.socket, data: bytes, limit: float = 10) -> bool:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(limit):
            while True:
                await loop.sock_sendall(s, data)
    except (ConnectionError, OSError):
        return True
    except TimeoutError:
        return False


async def test_ping_flood_is_closed_with_1008(guarded: RunningServer) -> None:
    await guarded.add_station("FLOOD")
    await guarded.add_station("OK1")
    good = await RawClient.connect(guarded.url, "OK1")
    async with await RawClient.connect(guarded.url, "FLOOD") as flooder:
        for _ in range(200):
            with contextlib.suppress(Exception):
                await flooder.ws.ping()
        await asyncio.wait_for(flooder.ws.wait_closed(), 5)
        assert flooder.ws.close_code == 1008
    assert count(guarded, "ping_flood") == 1
    assert "currentTime" in await good.result("Heartbeat", {})
    await good.close()


async def test_pings_without_reading_are_cut_at_the_buffer_limit(
    guarded: RunningServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a peer within the ping rate: only the unread pongs grow
    monkeypatch.setattr(csms.transport, "CONTROL_FRAME_BURST", 1e12)
    await guarded.add_station("DEAF")
    s = await raw_upgrade(guarded.port, "DEAF", rcvbuf=4096)
    try:
        assert await send_until_closed(s, ping_frame() * 256)
    finally:
        s.close()
    await wait_for(lambda: "DEAF" not in guarded.central.connections)
    assert count(guarded, "write_buffer") == 1


async def test_a_station_that_stops_reading_our_calls_is_cut(guarded: RunningServer) -> None:
    await guarded.add_station("SLOW")
    s = await raw_upgrade(guarded.port, "SLOW", rcvbuf=4096)
    try:
        await guarded.wait_connected("SLOW")
        big = {"vendorId": "v", "data": "x" * 60000}
        with pytest.raises((CallTimeout, StationOffline)):
            for _ in range(200):  # until the kernel buffers are full and we wait
                with contextlib.suppress(CallTimeout):
                    await guarded.call("SLOW", "DataTransfer", big, timeout=0.01)
        await wait_for(lambda: "SLOW" not in guarded.central.connections)
    finally:
        s.close()
    assert count(guarded, "write_timeout") == 1


def test_soak_short(tmp_path: Path) -> None:
    """The soak of bench.soak at a small size: memory comes back, stations are served.

    The full run (5,000 sockets twice, 30 s of flood) is ``python -m bench.soak``;
    its figures are in docs/reliability.md.
    """
    r = subprocess.run([sys.executable, "-m", "bench.soak", "--sockets", "1000",
                        "--flood", "5", "--settle", "12", "--hold", "1"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=1))
    assert result["heartbeat"]["failures"] == 0
    assert result["heartbeat"]["ping_flood"]["n"] > 0
    # the bound: RSS back within 20% of where it started
    assert result["rss_end_kib"] <= 1.2 * result["rss_start_kib"]
    cut = result["server_counted"]
    assert cut['voltledger_connections_cut_total{reason="ping_flood"}'] >= 2
    assert cut['voltledger_connections_cut_total{reason="handshake_limit"}'] >= 1000
