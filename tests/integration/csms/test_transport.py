"""Bounded memory per connection, as a hostile peer would test it: real sockets, real TLS.

Silent sockets on both ports, handshakes that never finish, more sockets than the
handshake limit, pings without reading, pings with reading, a station that stops
reading what we send. No timing asserts: counts, states and who got closed.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import gc
import json
import logging
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

import csms.server
import csms.transport
from bench.soak import ping_frame, write_tls_pair
from csms.gcpolicy import POLICY as GC_POLICY
from csms.server import CallTimeout, StationOffline
from csms.transport import LeanSSLProtocol
from support import RunningServer, periodic_readings, station_events
from support.client import RawClient
from support.wire import (
    client_frame,
    frame_header,
    is_switching,
    upgrade_blocking,
    upgrade_request,
)

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


@pytest.fixture
async def guarded(csms_server: RunningServer, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server on ws:// and wss:// with small limits, so a test reaches them."""
    cert, key = write_tls_pair(tmp_path)
    await csms_server.stop()
    csms_server.settings = replace(
        csms_server.settings, tls_cert=str(cert), tls_key=str(key), tls_port=0,
        max_handshakes=20, handshake_queue=10, handshake_timeout=1.0,
        write_buffer_limit=16384,
        ping_interval=0, ping_timeout=0.5, close_timeout=0.5)
    await csms_server.start()
    yield csms_server


def ports(server: RunningServer) -> dict[str, int]:
    return {"ws": server.central.port if server.central._server else 0,
            "wss": server.central.tls_port}


async def silent_sockets(port: int, n: int, source: str = "127.0.0.1",
                         ) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``n`` sockets that send nothing, from ``source`` (another loopback address,
    127.0.0.0/8, stands for another client)."""
    return [await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            for _ in range(n)]


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 10) -> bool:
    """True when the server closed the socket (EOF or reset) within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:  # before OSError, which it subclasses
        return False
    except (ConnectionError, OSError):
        return True
    return True


async def wait_for(predicate: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def count(server: RunningServer, reason: str) -> float:
    value = server.central.metrics.connections_cut.labels(reason)._value.get()
    return float(value)


@pytest.mark.parametrize("listener", ["ws", "wss"])
async def test_handshake_limit_queues_then_drops_extra_sockets(guarded: RunningServer,
                                                              listener: str) -> None:
    gate = guarded.central.gates[listener]
    socks = await silent_sockets(ports(guarded)[listener], 50)
    await wait_for(lambda: gate.pending + gate.queued + gate.refused >= 50)
    # never more than the limit in handshake at once; ten wait for a turn, the rest
    # are closed on arrival
    assert gate.peak == 20 and gate.queued == 10 and gate.refused == 20
    dropped = await asyncio.gather(*(closed_by_server(r, 0.5) for r, _ in socks[30:]))
    assert all(dropped)
    # the queued sockets stay silent: their handshake timeout (from accept) ends them
    assert all(await asyncio.gather(*(closed_by_server(r) for r, _ in socks[20:30])))
    await wait_for(lambda: gate.queued == 0)
    for _, w in socks:
        w.close()
    await wait_for(lambda: gate.pending == 0)
    # once the silent sockets are gone, stations get in again
    await guarded.add_station("CP1")
    async with await RawClient.connect(guarded.url, "CP1") as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"


async def restart_with(server: RunningServer, **settings: Any) -> None:
    await server.stop()
    server.settings = replace(server.settings, **settings)
    await server.start()


def tls_client(tmp_path: Path) -> ssl.SSLContext:
    """A client context trusting the guarded server's self-signed certificate."""
    return ssl.create_default_context(cafile=str(tmp_path / "server.pem"))


@pytest.mark.parametrize("listener", ["ws", "wss"])
async def test_a_queued_station_gets_its_turn(guarded: RunningServer, listener: str,
                                              tmp_path: Path) -> None:
    """A station that arrives while every handshake slot is taken waits, unread, and
    is let in when a slot frees: what it sent meanwhile (its ClientHello, its HTTP
    upgrade) is read then, nothing is lost. Metrics count it."""
    await guarded.add_station("LATE")
    await restart_with(guarded, handshake_timeout=30.0)
    gate = guarded.central.gates[listener]
    holders = await silent_sockets(ports(guarded)[listener], 20)
    await wait_for(lambda: gate.pending == 20)
    url = (guarded.url if listener == "ws"
           else f"wss://127.0.0.1:{guarded.central.tls_port}")
    late = asyncio.create_task(RawClient.connect(url, "LATE",
                                                 ssl=tls_client(tmp_path)
                                                 if listener == "wss" else None))
    await wait_for(lambda: gate.queued == 1)
    await asyncio.sleep(0.2)
    assert not late.done() and gate.pending == 20  # it waits, it is not dropped
    for _, w in holders[:5]:
        w.close()
    async with await late as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
    assert gate.refused == 0 and gate.queued == 0
    queued = guarded.central.metrics.handshakes_queued.labels(listener)._value.get()
    assert queued == 1
    for _, w in holders[5:]:
        w.close()
    await wait_for(lambda: gate.pending == 0)


@pytest.mark.parametrize("listener", ["ws", "wss"])
async def test_a_queued_socket_that_leaves_frees_its_place(guarded: RunningServer,
                                                           listener: str) -> None:
    """A peer that gives up while it waits leaves the queue then, not at its timeout,
    and releases no handshake slot it never had."""
    await restart_with(guarded, handshake_timeout=30.0)
    gate = guarded.central.gates[listener]
    port = ports(guarded)[listener]
    holders = await silent_sockets(port, 20)
    await wait_for(lambda: gate.pending == 20)
    queued = await silent_sockets(port, 10)
    await wait_for(lambda: gate.queued == 10)
    for _, w in queued:
        w.close()  # the peer gives up while it waits
    await wait_for(lambda: gate.queued == 0)
    assert gate.pending == 20  # no slot was released for a socket that never had one
    more = await silent_sockets(port, 10)
    await wait_for(lambda: gate.queued == 10)
    assert gate.refused == 0
    for _, w in holders + more:
        w.close()
    await wait_for(lambda: gate.pending == 0 and gate.queued == 0)


async def still_open(socks: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
                    ) -> list[bool]:
    """Which of ``socks`` the server has not closed (a short look at each)."""
    return [not closed for closed in
            await asyncio.gather(*(closed_by_server(r, 0.05) for r, _ in socks))]


@pytest.mark.parametrize("listener", ["ws", "wss"])
async def test_one_address_filling_the_gate_cannot_lock_a_station_out(
    guarded: RunningServer, listener: str, tmp_path: Path,
) -> None:
    """An address that fills every handshake slot and the whole queue with silent
    sockets gives up its newest queued socket to a station from another address: the
    station waits its turn and completes its session within its handshake timeout."""
    await guarded.add_station("FAIR")
    await restart_with(guarded, max_handshakes=4, handshake_queue=4, handshake_timeout=3.0)
    gate = guarded.central.gates[listener]
    port = ports(guarded)[listener]
    attacker = await silent_sockets(port, 8)
    await wait_for(lambda: gate.pending == 4 and gate.queued == 4)
    # more from the address that holds the most are dropped on arrival, as before
    extra = await silent_sockets(port, 2)
    assert all(await asyncio.gather(*(closed_by_server(r, 1) for r, _ in extra)))
    assert gate.refused == 2
    await asyncio.sleep(0.3)
    url = (guarded.url if listener == "ws"
           else f"wss://127.0.0.1:{guarded.central.tls_port}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    station = asyncio.create_task(RawClient.connect(
        url, "FAIR", local_addr="127.0.0.2",
        ssl=tls_client(tmp_path) if listener == "wss" else None))
    # the attacker's newest queued socket made way; its slots and older ones are intact
    assert await closed_by_server(attacker[7][0], 1)
    assert await still_open(attacker[:7]) == [True] * 7
    assert count(guarded, "handshake_evicted") == 1
    async with await station as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
        assert loop.time() - started < 3.0
    assert gate.refused == 2 and count(guarded, "handshake_evicted") == 1
    for _, w in attacker + extra:
        w.close()
    await wait_for(lambda: gate.pending == 0 and gate.queued == 0)


async def known_login(server: RunningServer, station: str, password: str,
                      address: str) -> None:
    """One accepted login of ``station`` (its password checked) from ``address``."""
    async with await RawClient.connect(server.url, station, password=password,
                                       local_addr=address) as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"


async def test_strangers_from_many_addresses_cannot_delay_a_known_station(
    guarded: RunningServer,
) -> None:
    """Strangers with an address per socket (a botnet, an IPv6 /48 has 65,536 /64s) keep
    every handshake slot and the queue full, each socket a fresh address that holds no
    more than the station does, so none gives way to it. A registered station that
    logged in from its address before a restart is known there after it: it takes a slot
    of the reserve strangers never take, and completes its login in time."""
    await guarded.add_station("KNOWN", password="known-station-password")
    await known_login(guarded, "KNOWN", "known-station-password", "127.0.0.2")
    await restart_with(guarded, max_handshakes=4, handshake_queue=4, handshake_timeout=2.0)
    gate = guarded.central.gates["ws"]
    port = ports(guarded)["ws"]
    addresses = (f"127.0.{i // 250 + 1}.{i % 250 + 1}" for i in range(100_000))
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def stranger() -> None:
        while True:  # one silent socket from a fresh address; again when it is closed
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(next(addresses), 0))
            except OSError:
                await asyncio.sleep(0.05)
                continue
            held.append((reader, writer))
            await closed_by_server(reader, 30)
            writer.close()

    async with asyncio.TaskGroup() as strangers:
        tasks = [strangers.create_task(stranger()) for _ in range(12)]
        await wait_for(lambda: gate.pending == 4 and gate.queued == 4)
        await asyncio.sleep(0.5)
        assert gate.pending == 4  # strangers never take the reserve
        try:
            started = asyncio.get_running_loop().time()
            async with asyncio.timeout(2.0), await RawClient.connect(
                    guarded.url, "KNOWN", password="known-station-password",
                    local_addr="127.0.0.2") as c:
                assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
            assert asyncio.get_running_loop().time() - started < 2.0
        finally:
            for task in tasks:
                task.cancel()
    assert reserved(guarded, "ws") >= 1
    for _, w in held:
        w.close()


def reserved(server: RunningServer, listener: str) -> float:
    value = server.central.metrics.handshakes_reserved.labels(listener)._value.get()
    return float(value)


async def known_stations(server: RunningServer, n: int) -> list[str]:
    """``n`` stations with passwords, each logged in once from an address of its own
    (127.0.1.i): those addresses are known, each from one station."""
    addresses = []
    for i in range(n):
        name, address = f"K{i}", f"127.0.1.{i + 1}"
        await server.add_station(name, password=f"{name}-password")
        await known_login(server, name, f"{name}-password", address)
        addresses.append(address)
    return addresses


async def test_a_stranger_never_takes_the_reserve_nor_a_known_clients_place(
    guarded: RunningServer,
) -> None:
    """Known stations that fill every slot, the reserve and the queue keep them against
    strangers: a stranger (holding nothing) is dropped on arrival, where against another
    stranger it would have taken a queued place. When the known sockets are gone,
    strangers get no more than ``max_handshakes`` slots: the reserve stays free."""
    addresses = await known_stations(guarded, 9)
    await restart_with(guarded, max_handshakes=4, handshake_queue=4, handshake_timeout=30.0)
    gate = guarded.central.gates["ws"]
    assert (gate.reserve, gate.share) == (1, 1)
    known = [s for address in addresses for s in await silent_sockets(guarded.port, 1, address)]
    await wait_for(lambda: gate.pending == 5 and gate.queued == 4)
    assert gate.lanes[True].queued == 4 and reserved(guarded, "ws") == 1
    strangers = await silent_sockets(guarded.port, 2, "127.0.0.3")
    assert all(await asyncio.gather(*(closed_by_server(r, 1) for r, _ in strangers)))
    assert await still_open(known) == [True] * 9
    assert gate.refused == 2 and count(guarded, "handshake_evicted") == 0
    for _, w in known:
        w.close()
    await wait_for(lambda: gate.pending == 0 and gate.queued == 0)
    strangers = await silent_sockets(guarded.port, 6, "127.0.0.3")
    await wait_for(lambda: gate.pending + gate.queued == 6)
    assert (gate.pending, gate.queued) == (4, 2)
    for _, w in strangers:
        w.close()
    await wait_for(lambda: gate.pending == 0 and gate.queued == 0)


async def test_a_known_station_takes_a_strangers_queued_place(guarded: RunningServer) -> None:
    """Slots, reserve and queue full: a known station's socket takes the place of a
    stranger's newest queued one (closed), and waits ahead of the strangers' queue."""
    addresses = await known_stations(guarded, 3)
    await restart_with(guarded, max_handshakes=4, handshake_queue=4, handshake_timeout=30.0)
    gate = guarded.central.gates["ws"]
    known = await silent_sockets(guarded.port, 1, addresses[0])  # it takes a slot
    strangers = [s for i in range(7)
                 for s in await silent_sockets(guarded.port, 1, f"127.0.3.{i + 1}")]
    await wait_for(lambda: gate.pending == 4 and gate.queued == 4)
    known += await silent_sockets(guarded.port, 1, addresses[1])  # the reserve
    await wait_for(lambda: gate.pending == 5)
    known += await silent_sockets(guarded.port, 1, addresses[2])  # a stranger's place
    assert await closed_by_server(strangers[-1][0], 1)
    assert count(guarded, "handshake_evicted_for_known") == 1
    assert await still_open(strangers[:6]) == [True] * 6
    # the first slot to free goes to the known socket, not to the older strangers
    strangers[0][1].close()
    await wait_for(lambda: gate.queued == 3)
    assert gate.pending == 5 and gate.lanes[True].queued == 0
    assert await still_open(known) == [True] * 3
    for _, w in known + strangers:
        w.close()
    await wait_for(lambda: gate.pending == 0 and gate.queued == 0)


async def test_a_known_address_cannot_lock_other_known_stations_out(
    guarded: RunningServer,
) -> None:
    """A known address that fills the slots and the queue holds one place of the known
    lane (its station's share): its other sockets are a stranger's, and the reserve is
    left for another known station, which completes its login within its handshake
    timeout without waiting for a turn."""
    for name, address in (("K1", "127.0.0.2"), ("K2", "127.0.0.4")):
        await guarded.add_station(name, password=f"{name}-password")
        await known_login(guarded, name, f"{name}-password", address)
    await restart_with(guarded, max_handshakes=4, handshake_queue=4, handshake_timeout=3.0)
    gate = guarded.central.gates["ws"]
    hog = await silent_sockets(guarded.port, 9, "127.0.0.2")
    await wait_for(lambda: gate.pending + gate.queued + gate.refused == 9)
    assert (gate.pending, gate.queued, gate.refused) == (4, 4, 1)
    assert gate.lanes[True].held.count == {"K1": 1}
    await asyncio.sleep(0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with await RawClient.connect(guarded.url, "K2", password="K2-password",
                                       local_addr="127.0.0.4") as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
        assert loop.time() - started < 3.0
    assert reserved(guarded, "ws") == 1 and count(guarded, "handshake_evicted") == 0
    for _, w in hog:
        w.close()
    await wait_for(lambda: gate.pending == 0 and gate.queued == 0)


async def test_a_known_address_filling_the_gate_cannot_lock_a_station_out(
    guarded: RunningServer,
) -> None:
    """A hostile station logs in with its own password: its address is known. It then
    fills every slot, the reserve and the queue with silent sockets, as one address could
    before there was a known lane. A station it does not know (no password, security
    profile 0; or one whose address changed) still takes the place of its newest queued
    socket and completes its login in time: a known client's priority covers its
    station's share of the known lane, the rest of its sockets are a stranger's."""
    await guarded.add_station("HOG", password="hog-password")
    await guarded.add_station("FAIR")
    await known_login(guarded, "HOG", "hog-password", "127.0.0.2")
    await restart_with(guarded, max_handshakes=4, handshake_queue=4, handshake_timeout=3.0)
    gate = guarded.central.gates["ws"]
    hog = await silent_sockets(guarded.port, 10, "127.0.0.2")
    await wait_for(lambda: gate.pending + gate.queued + gate.refused >= 10)
    assert gate.queued == 4
    await asyncio.sleep(0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    station = asyncio.create_task(RawClient.connect(guarded.url, "FAIR",
                                                    local_addr="127.0.0.5"))
    # its newest queued socket made way; its slots and older ones are intact
    assert await closed_by_server(hog[7][0], 1)
    assert await still_open(hog[:7]) == [True] * 7
    assert count(guarded, "handshake_evicted") == 1
    async with await station as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
        assert loop.time() - started < 3.0
    for _, w in hog:
        w.close()
    await wait_for(lambda: gate.pending == 0 and gate.queued == 0)


async def test_only_a_login_that_proved_a_secret_makes_an_address_known(
    guarded: RunningServer,
) -> None:
    """A station without a password (security profile 0) lets anyone who knows its id log
    in: its logins make no address known, nor do refused ones. A password checked does."""
    await guarded.add_station("OPEN")
    await guarded.add_station("LOCKED", password="locked-password")
    async with await RawClient.connect(guarded.url, "OPEN", local_addr="127.0.0.5") as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
    with pytest.raises(Exception, match="401"):
        await RawClient.connect(guarded.url, "LOCKED", password="wrong",
                                local_addr="127.0.0.6")
    known = guarded.central.known
    assert "127.0.0.5" not in known and "127.0.0.6" not in known
    await known_login(guarded, "LOCKED", "locked-password", "127.0.0.7")
    assert "127.0.0.7" in known and len(known) == 1


async def test_a_handshake_refused_after_its_password_makes_no_address_known(
    guarded: RunningServer,
) -> None:
    """The password is checked before websockets reads the upgrade's own headers and
    before a subprotocol is chosen: a request with the right password that is no valid
    upgrade (refused with 400), or that offers no OCPP subprotocol (closed with 1002), is
    no login, and makes no address known."""
    await guarded.add_station("LOCKED", password="locked-password")
    token = base64.b64encode(b"LOCKED:locked-password").decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded.port,
                                                   local_addr=("127.0.0.8", 0))
    writer.write(f"GET /ocpp/LOCKED HTTP/1.1\r\nHost: csms\r\nAuthorization: Basic {token}"
                 "\r\n\r\n".encode())
    assert (await reader.readline()).startswith(b"HTTP/1.1 4")
    writer.close()
    assert await closed_by_server(reader, 5)
    with pytest.raises(Exception, match="1002"):
        async with await RawClient.connect(guarded.url, "LOCKED", password="locked-password",
                                           local_addr="127.0.0.9", protocols=["ocpp0.1"]
                                           ) as c:
            await c.result("BootNotification", BOOT)
    known = guarded.central.known
    assert "127.0.0.8" not in known and "127.0.0.9" not in known and len(known) == 0
    await known_login(guarded, "LOCKED", "locked-password", "127.0.0.7")
    assert "127.0.0.7" in known


async def test_a_fleet_behind_one_address_still_takes_the_whole_gate(
    guarded: RunningServer,
) -> None:
    """Without anyone else waiting, one address (a NAT) takes every slot and the whole
    queue: stations reconnecting at once get in, none is dropped or evicted."""
    await restart_with(guarded, max_handshakes=4, handshake_queue=4, handshake_timeout=3.0)
    gate = guarded.central.gates["ws"]
    names = [f"NAT{i}" for i in range(8)]
    for name in names:
        await guarded.add_station(name)
    # 8 at once against 4 slots and a queue of 4: everyone fits
    clients = await asyncio.gather(*(RawClient.connect(guarded.url, name,
                                                       local_addr="127.0.0.3")
                                     for name in names))
    try:
        for c in clients:
            assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
        assert gate.refused == 0 and count(guarded, "handshake_evicted") == 0
    finally:
        for c in clients:
            await c.close()
    # silent sockets from one address fill every slot and the queue, the rest dropped
    socks = await silent_sockets(guarded.port, 12, "127.0.0.3")
    await wait_for(lambda: gate.pending + gate.queued + gate.refused >= 12)
    assert (gate.pending, gate.queued, gate.refused) == (4, 4, 4)
    assert count(guarded, "handshake_evicted") == 0
    for _, w in socks:
        w.close()
    await wait_for(lambda: gate.pending == 0 and gate.queued == 0)


async def test_only_the_address_holding_the_most_gives_way(guarded: RunningServer) -> None:
    """A newcomer takes a queued place only from an address that holds more of the gate
    than the newcomer would after taking it: the newest queued socket of that address
    is closed. Once the two hold as many, newcomers are dropped again."""
    await restart_with(guarded, max_handshakes=4, handshake_queue=4, handshake_timeout=30.0)
    gate = guarded.central.gates["ws"]
    port = guarded.port
    a = await silent_sockets(port, 6, "127.0.0.1")  # 4 slots and 2 queued
    await wait_for(lambda: gate.pending == 4 and gate.queued == 2)
    b = await silent_sockets(port, 2, "127.0.0.2")  # the queue is full: 6 against 2
    await wait_for(lambda: gate.queued == 4)
    b += await silent_sockets(port, 1, "127.0.0.2")  # 3 < 6: a's newest gives way
    assert await closed_by_server(a[5][0], 1)
    b += await silent_sockets(port, 1, "127.0.0.2")  # 4 < 5: a's last queued one
    assert await closed_by_server(a[4][0], 1)
    # a holds 4 (its slots), b 4 (queued): nobody gains from more evictions
    late = await silent_sockets(port, 1, "127.0.0.2")
    late += await silent_sockets(port, 1, "127.0.0.1")
    assert all(await asyncio.gather(*(closed_by_server(r, 1) for r, _ in late)))
    assert gate.refused == 2 and count(guarded, "handshake_evicted") == 2
    assert await still_open(a[:4] + b) == [True] * 8
    assert gate.pending == 4 and gate.queued == 4
    for _, w in a + b + late:
        w.close()
    await wait_for(lambda: gate.pending == 0 and gate.queued == 0)


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


UPGRADE = ("GET /{station} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n")
# Sockets whose WebSocket never opens, as a stranger makes them: the listener, the
# bytes sent in the clear, whether TLS is completed first and what is sent over it, and
# whether the test closes the socket (False: it waits for the server's handshake
# timeout).
NEVER_OPEN: dict[str, tuple[str, bytes, bool, bytes, bool]] = {
    "silent": ("ws", b"", False, b"", True),
    "silent, timed out": ("ws", b"", False, b"", False),
    "half a request": ("ws", b"GET /CP1 HTTP/1.1\r\n", False, b"", True),
    "half a request, timed out": ("ws", b"GET /CP1 HTTP/1.1\r\n", False, b"", False),
    "not HTTP": ("ws", b"\x00\x01garbage\r\n\r\n", False, b"", True),
    "upgrade refused": ("ws", UPGRADE.format(station="UNKNOWN").encode(), False, b"", True),
    "no TLS": ("wss", b"", False, b"", True),
    "not TLS": ("wss", b"\x16\x03\x01\x00\x05hello, not TLS", False, b"", True),
    "half a ClientHello, timed out": ("wss", b"\x16\x03\x01\x02\x00\x01", False, b"",
                                      False),
    "TLS, nothing more": ("wss", b"", True, b"", True),
    "TLS, upgrade refused": ("wss", b"", True, UPGRADE.format(station="UNKNOWN").encode(),
                             True),
}


def never_open(port: int, n: int, plain: bytes, tls: ssl.SSLContext | None,
               then: bytes) -> list[socket.socket]:
    """``n`` blocking sockets (a thread's: no asyncio objects on the client side)."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(s)
        with contextlib.suppress(OSError):  # dropped on arrival (the gate is full)
            s.sendall(plain)
            if tls is not None:
                socks[-1] = s = tls.wrap_socket(s, server_hostname="127.0.0.1")
                s.sendall(then)
    return socks


def wait_closed_by_server(socks: list[socket.socket]) -> None:
    for s in socks:
        s.settimeout(10)
        with contextlib.suppress(OSError):
            while s.recv(65536):
                pass


# what a connection is made of on the server side (the test's client sockets are blocking
# ones: none of these)
CONNECTION_TYPES = frozenset({
    "csms.transport._OnFirstByte", "csms.transport.GuardedConnection",
    "csms.transport.LeanSSLProtocol", "websockets.server.ServerProtocol",
    "websockets.streams.StreamReader", "websockets.http11.Request",
    "asyncio.selector_events._SelectorSocketTransport", "asyncio.sslproto._SSLProtocolTransport",
    "uvloop.loop.TCPTransport", "ssl.SSLObject",
})


def connection_objects() -> collections.Counter[str]:
    """The objects of CONNECTION_TYPES that exist, frozen or not, by type."""
    gc.unfreeze()  # the policy freezes again at its next collection
    names = (f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    return collections.Counter(name for name in names if name in CONNECTION_TYPES)


@pytest.mark.parametrize("way", NEVER_OPEN)
async def test_sockets_that_never_open_leave_nothing_to_collect(
        guarded: RunningServer, tmp_path: Path, way: str) -> None:
    """A socket whose WebSocket never opened is freed by reference counting when it
    closes, whatever the collector's policy froze meanwhile (csms/gcpolicy.py): its
    objects referred to each other (websockets' protocol, asyncio's transport, a TLS
    error's traceback), so every such socket left ~7 KB in the frozen heap until the
    next thaw (at most an hour), and a stranger opening and closing sockets grew the
    server by gigabytes an hour. They are not counted as churn (a connect storm would
    thaw the heap again and again): nothing of theirs may wait for a collection."""
    listener, plain, with_tls, then, we_close = NEVER_OPEN[way]
    port = ports(guarded)[listener]
    tls = tls_client(tmp_path) if with_tls else None
    central = guarded.central
    gates = central.gates.values()
    servers = [s for s in (central._server, central._tls_server) if s is not None]
    before = connection_objects()
    grown: list[collections.Counter[str]] = []
    for _ in range(2):
        # more than the gate's 20 slots and 10 places in its queue: some are queued,
        # some dropped on arrival
        socks = await asyncio.to_thread(never_open, port, 40, plain, tls, then)
        # the policy freezes what the server made for them
        await wait_for(lambda due=GC_POLICY.freezes + 2: GC_POLICY.freezes >= due)
        if not we_close:
            await asyncio.to_thread(wait_closed_by_server, socks)
        for s in socks:
            s.close()
        del socks
        await wait_for(lambda: all(g.pending == g.queued == 0 and not g.silent
                                   for g in gates)
                       and not any(s.handler_tasks for s in servers))
        await asyncio.sleep(0.1)  # what connection_lost() schedules
        grown.append(connection_objects() - before)
    assert GC_POLICY.active
    assert grown == [collections.Counter()] * 2


async def raw_upgrade(port: int, station: str, rcvbuf: int | None = None,
                      source: str = "127.0.0.1", password: str | None = None,
                      early: bytes = b"") -> socket.socket:
    """A WebSocket client made by hand: it reads only what the test tells it to. From
    ``source`` (another loopback address stands for another client), with ``password``
    when given (HTTP Basic); ``early`` is sent with the request, before the answer."""
    loop = asyncio.get_running_loop()
    s = socket.socket()
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((source, 0))
    s.setblocking(False)
    await loop.sock_connect(s, ("127.0.0.1", port))
    await loop.sock_sendall(s, upgrade_request(station, basic_auth(station, password))
                            + early)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(s, 1)  # byte by byte: nothing after the head is read
    assert is_switching(head), head
    return s


def basic_auth(station: str, password: str | None) -> str:
    """The Authorization header line of ``station``'s ``password`` ('' without one)."""
    if password is None:
        return ""
    token = base64.b64encode(f"{station}:{password}".encode()).decode()
    return f"Authorization: Basic {token}\r\n"


async def send_until_closed(s: socket.socket, data: bytes, limit: float = 10) -> bool:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(limit):
            while True:
                await loop.sock_sendall(s, data)
    except TimeoutError:  # before OSError, which it subclasses
        return False
    except (ConnectionError, OSError):
        return True


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
    # 1,000 sockets a round against 500 handshake slots: the rest wait for a turn
    # (in the queue of 2,000) or, beyond it, are dropped
    waited = sum(v for k, v in cut.items() if k.startswith("voltledger_handshakes_queued_total"))
    assert waited + cut.get('voltledger_connections_cut_total{reason="handshake_limit"}', 0) >= 1000


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ServerFrames:
    """The frames a raw socket received from the server: (opcode, payload)."""

    def __init__(self, s: socket.socket) -> None:
        self.s, self.buf = s, b""
        self.closed = False  # the server closed the socket (EOF or reset)

    async def read(self, timeout: float) -> list[tuple[int, bytes]]:
        """What arrives within ``timeout`` s (stops early at EOF).

        The socket is read only once it is readable, outside any await a timeout could
        cancel: ``sock_recv`` under a timeout loses what it read when the timeout fires
        between its read and the task's resumption (a ping then never answered)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self.s.fileno(), _wake, readable)
            try:
                await asyncio.wait_for(readable, left)
            except TimeoutError:
                break
            finally:
                loop.remove_reader(self.s.fileno())
            try:
                chunk = self.s.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            self.buf += chunk
        frames = []
        while (header := frame_header(self.buf)) is not None:
            n, at = header
            if len(self.buf) < at + n:
                break
            frames.append((self.buf[0] & 0x0F, self.buf[at:at + n]))
            self.buf = self.buf[at + n:]
        return frames


async def keepalive_station(guarded: RunningServer,
                            station_id: str) -> tuple[socket.socket, ServerFrames]:
    """A raw station, connected to the server restarted with a keepalive that pings after
    1 s of silence and waits 1 s for the pong."""
    await restart_with(guarded, ping_interval=1.0, ping_timeout=1.0)
    await guarded.add_station(station_id)
    s = await raw_upgrade(guarded.port, station_id)
    try:
        await guarded.wait_connected(station_id)
    except BaseException:
        s.close()
        raise
    return s, ServerFrames(s)


async def send_every(s: socket.socket, frames: ServerFrames, frame: Callable[[int], bytes],
                     times: int, every: float) -> list[int]:
    """Send ``frame(i)`` ``times`` times, ``every`` s apart; the opcodes received meanwhile."""
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, bytes]] = []
    for i in range(times):
        await loop.sock_sendall(s, frame(i))
        seen += await frames.read(every)
    return [op for op, _ in seen]


async def test_keepalive_pings_only_a_silent_station(guarded: RunningServer) -> None:
    """A station that sends is not pinged; one that goes quiet is pinged after the
    interval, and closed when it does not answer (a half-open connection)."""
    s, frames = await keepalive_station(guarded, "TALKY")
    try:
        # 4 s of a call every 0.2 s: four intervals
        opcodes = await send_every(s, frames, lambda i: client_frame(
            0x81, json.dumps([2, f"hb{i}", "Heartbeat", {}]).encode()), 20, 0.2)
        assert 0x9 not in opcodes  # never pinged while it talked
        assert opcodes.count(0x1) >= 15  # its heartbeats were answered meanwhile
        # silence: a ping comes, is not answered, and the connection is closed
        quiet = await frames.read(8.0)
        assert [op for op, _ in quiet][:1] == [0x9]
        await wait_for(lambda: "TALKY" not in guarded.central.connections)
    finally:
        s.close()


async def test_keepalive_counts_a_stations_own_pings(guarded: RunningServer) -> None:
    """A station that only pings us (OCPP's WebSocketPingInterval) is alive too: it
    gets pongs, no pings of ours, and stays connected."""
    s, frames = await keepalive_station(guarded, "PINGER")
    try:
        # 4 s, a ping every 0.4 s (within the control-frame rate)
        opcodes = await send_every(s, frames, lambda _: client_frame(0x89, b"alive"), 10, 0.4)
        assert 0x9 not in opcodes and opcodes.count(0xA) >= 8
        assert "PINGER" in guarded.central.connections
    finally:
        s.close()


async def test_keepalive_pings_a_silent_station_again_after_each_pong(
    guarded: RunningServer,
) -> None:
    """A quiet station that answers our pings stays connected and is pinged once per
    silent interval; between pings its connection runs no task for the keepalive, only
    a timer, and keeps none of the handshake's headers."""
    s, frames = await keepalive_station(guarded, "QUIET")
    try:
        ws = guarded.central.connections["QUIET"].channel.ws  # type: ignore[attr-defined]
        assert ws.request.path == "/QUIET" and not ws.request.headers
        assert ws.response.status_code == 101 and not ws.response.headers
        loop = asyncio.get_running_loop()
        pings = 0
        idle_checks = 0
        deadline = loop.time() + 4.5
        while loop.time() < deadline:
            for op, payload in await frames.read(0.1):
                assert op == 0x9, op
                pings += 1
                await loop.sock_sendall(s, client_frame(0x8A, payload))
            if ws.keepalive_task is None:
                # between pings: nothing but the timer waits for the next look
                assert ws._keepalive_timer is not None
                idle_checks += 1
        # 1 s interval, 4.5 s of silence: a ping per interval, each answered
        assert 3 <= pings <= 5, pings
        assert idle_checks > 10
        assert guarded.central.connections.get("QUIET") is not None
        assert guarded.central.connections["QUIET"].channel.ws is ws
    finally:
        s.close()
    # once closed, no timer is left armed
    await wait_for(lambda: "QUIET" not in guarded.central.connections)
    await wait_for(lambda: ws._keepalive_timer is None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads ss(8) of Linux")
async def test_listeners_take_a_fleets_burst_of_connects(guarded: RunningServer) -> None:
    """Both listeners ask for the largest accept backlog the kernel allows (asyncio's
    default of 100 made a fleet reconnecting at once lose SYNs and wait seconds)."""
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    for port in ports(guarded).values():
        listed = await asyncio.to_thread(subprocess.run, ["ss", "-ltnH", f"sport = :{port}"],
                                         capture_output=True, text=True, check=True)
        out = listed.stdout.split()
        assert int(out[2]) == min(somaxconn, csms.server.LISTEN_BACKLOG) > 100, out


async def read_frame(s: socket.socket) -> tuple[bytes, bytes]:
    """One whole frame from the server, as it came on the wire: (header, payload)."""
    loop = asyncio.get_running_loop()

    async def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await loop.sock_recv(s, n - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data

    head = await exactly(2)
    while (header := frame_header(head)) is None:
        head += await exactly(1)
    return head, await exactly(header[0])


async def test_our_frames_are_the_ones_websockets_writes(csms_server: RunningServer) -> None:
    """Answers and CALLs are written as one text frame each, without websockets' send
    path: byte for byte what websockets would write (RFC 6455 §5.2: FIN, text, no mask,
    the shortest length form), on both sides of each length boundary (125/126 and
    65,535/65,536 bytes of payload), with multi-byte UTF-8 in them."""
    from websockets.frames import Frame, Opcode

    await csms_server.add_station("WIRE")
    s = await raw_upgrade(csms_server.port, "WIRE")
    loop = asyncio.get_running_loop()
    lengths: set[int] = set()
    try:
        await csms_server.wait_connected("WIRE")
        # an answer: the station's Heartbeat
        await loop.sock_sendall(s, client_frame(0x81, b'[2,"h1","Heartbeat",{}]'))
        head, payload = await read_frame(s)
        assert head + payload == Frame(Opcode.TEXT, payload).serialize(mask=False,
                                                                        extensions=[])
        assert json.loads(payload)[:2] == [3, "h1"]
        # CALLs of every size around the boundaries, "é" (2 bytes) in some
        for size in [*range(40, 110), *range(65_430, 65_500)]:
            data = "é" + "x" * (size - 2) if size % 2 else "x" * size
            call = asyncio.create_task(csms_server.call(
                "WIRE", "DataTransfer", {"vendorId": "v", "data": data}, timeout=5))
            head, payload = await read_frame(s)
            assert head + payload == Frame(Opcode.TEXT, payload).serialize(mask=False,
                                                                            extensions=[])
            message = json.loads(payload)
            assert message[3]["data"] == data
            lengths.add(len(payload))
            answer = json.dumps([3, message[1], {"status": "Accepted"}]).encode()
            await loop.sock_sendall(s, client_frame(0x81, answer))
            assert (await call)["status"] == "Accepted"
    finally:
        s.close()
    assert {125, 126, 65_535, 65_536} <= lengths


async def test_frames_read_whole_or_in_pieces_are_answered_alike(
    csms_server: RunningServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read that is one whole masked text frame skips websockets' parser
    (GuardedConnection._whole_text_frame); every other read goes through it. Both give
    the same answers: a 7-bit and a 16-bit length, two frames in one read, a frame
    split over two reads, multi-byte UTF-8; and the same closes: a frame over the
    limit (1009), invalid UTF-8 (1007), an unmasked frame and an RSV bit (1002)."""
    taken: list[bool] = []
    whole = csms.transport.GuardedConnection._whole_text_frame

    def spy(self: csms.transport.GuardedConnection, data: bytes) -> bool:
        result = whole(self, data)
        if self.protocol.state.name == "OPEN" or result:
            taken.append(result)
        return result

    monkeypatch.setattr(csms.transport.GuardedConnection, "_whole_text_frame", spy)
    await restart_with(csms_server, max_frame_bytes=4000)
    loop = asyncio.get_running_loop()

    def call(message_id: str, data: str) -> bytes:
        return json.dumps([2, message_id, "DataTransfer", {"vendorId": "v", "data": data}],
                          ensure_ascii=False).encode()

    async def answered(s: socket.socket, *ids: str) -> None:
        for message_id in ids:
            _, payload = await asyncio.wait_for(read_frame(s), 10)
            assert json.loads(payload)[:2] == [3, message_id]

    await csms_server.add_station("WHOLE")
    s = await raw_upgrade(csms_server.port, "WHOLE")
    try:
        await csms_server.wait_connected("WHOLE")
        taken.clear()
        await loop.sock_sendall(s, client_frame(0x81, call("a", "short")))  # 7-bit length
        await answered(s, "a")
        await loop.sock_sendall(s, client_frame(0x81, call("b", "é" * 900)))  # 16-bit
        await answered(s, "b")
        assert taken == [True, True]
        # two frames in one read, then one frame in two reads: the parser's
        taken.clear()
        await loop.sock_sendall(s, client_frame(0x81, call("c", "1")) + client_frame(
            0x81, call("d", "2")))
        await answered(s, "c", "d")
        # its second read looks like a whole frame on its own: its key is the first
        # one's bytes 3-6 (the parser's reader holds the first read, so it is not one)
        message = call("e", "x" * 40)  # a 7-bit length
        split = client_frame(0x81, message, mask=bytes([0x81, 0x80 | len(message) - 2]) + b"ab")
        await loop.sock_sendall(s, split[:2])
        await asyncio.sleep(0.2)
        await loop.sock_sendall(s, split[2:])
        await answered(s, "e")
        assert True not in taken, taken
        # the parser's reader is empty again: a whole frame takes the short path
        taken.clear()
        await loop.sock_sendall(s, client_frame(0x81, call("f", "ok")))
        await answered(s, "f")
        assert taken == [True]
    finally:
        s.close()

    bad = {
        "over the limit": (client_frame(0x81, call("g", "x" * 4000)), 1009),
        "invalid UTF-8": (client_frame(0x81, b'[2,"h","Heartbeat",{"\xff":1}]'), 1007),
        # 22 bytes, the mask bit clear
        "unmasked": (bytes([0x81, 22]) + b'[2,"i","Heartbeat",{}]', 1002),
        "RSV1 set": (client_frame(0xC1, b'[2,"j","Heartbeat",{}]'), 1002),
    }
    for i, (what, (frame, code)) in enumerate(bad.items()):
        station = f"BAD{i}"
        await csms_server.add_station(station)
        s = await raw_upgrade(csms_server.port, station)
        try:
            await csms_server.wait_connected(station)
            await loop.sock_sendall(s, frame)
            frames = ServerFrames(s)
            got = await frames.read(3)
            assert closed_with(got) == code, what
        finally:
            s.close()


def large_frame_head(n: int) -> bytes:
    """The head of a client text frame of ``n`` payload bytes (a 64-bit length, RFC 6455
    §5.2), masked with a zero key: the payload that follows is sent as is."""
    return bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big") + bytes(4)


def closed_with(frames: list[tuple[int, bytes]]) -> int | None:
    """The code of the close frame among ``frames``, if any."""
    for opcode, payload in frames:
        if opcode == 0x8 and len(payload) >= 2:
            return int.from_bytes(payload[:2], "big")
    return None


async def test_many_connections_sending_big_frames_hold_at_most_the_budget(
        csms_server: RunningServer) -> None:
    """Strangers (auto-registration on) open connections that each send a big frame and
    never finish it, then others that each send a whole one at once: what the node holds
    in large frames never exceeds large_frame_budget; a connection whose frame does not
    fit is closed with 1013 (try again later). Once they are gone, an honest station's
    big message is answered."""
    budget = 1 << 20
    await restart_with(csms_server, auto_register=True, large_frame_budget=budget,
                       max_frame_bytes=1 << 20)
    large = csms_server.central.large_frames
    loop = asyncio.get_running_loop()
    # ten frames of 900 KB announced, 300 KB of each sent: three fit in 1 MiB
    trickling = [await raw_upgrade(csms_server.port, f"STRANGER{i}") for i in range(10)]
    for s in trickling:
        await loop.sock_sendall(s, large_frame_head(900_000) + b"x" * 300_000)
    await wait_for(lambda: large.refused >= 7)
    codes = [closed_with(await ServerFrames(s).read(0.5)) for s in trickling]
    assert codes.count(1013) == 7 and codes.count(None) == 3, codes
    assert large.held <= budget and large.peak <= budget
    assert count(csms_server, "large_frames") == 7
    for s in trickling:
        s.close()
    await wait_for(lambda: large.held == 0)
    # ten whole frames of 400 KB at once (DataTransfer, stored and answered): at most two
    # are held at a time
    data = json.dumps([2, "m1", "DataTransfer", {"vendorId": "x", "data": "y" * 400_000}])
    whole = [await raw_upgrade(csms_server.port, f"WHOLE{i}") for i in range(10)]
    await asyncio.gather(*(loop.sock_sendall(s, large_frame_head(len(data)) + data.encode())
                           for s in whole))
    results = [await ServerFrames(s).read(1.0) for s in whole]
    answered = sum(any(op == 0x1 for op, _ in frames) for frames in results)
    refused = sum(closed_with(frames) == 1013 for frames in results)
    assert answered + refused == 10 and answered >= 2, (answered, refused)
    assert large.peak <= budget
    for s in whole:
        s.close()
    await wait_for(lambda: large.held == 0)
    # an honest station's big message gets through
    async with await RawClient.connect(csms_server.url, "HONEST") as c:
        answer = await c.call("DataTransfer", {"vendorId": "x", "data": "z" * 900_000},
                              timeout=10)
        assert answer[0] == 3, answer[:3]
    await wait_for(lambda: large.held == 0)


@pytest.mark.parametrize("attacker", ["strangers", "one_station"])
async def test_one_address_holding_the_large_frame_budget_cannot_delay_a_stop(
        csms_server: RunningServer, attacker: str) -> None:
    """One address opens eight connections that each announce a frame of the limit and
    send all but a few bytes of it, never the rest: strangers (auto-registration on), or
    one station reconnecting under its id (each connection replaces the one before, which
    lingers while its close waits for the peer). Together they hold the node's whole
    budget for large frames. An honest station from another address sends the
    StopTransaction of a long session (~300 KB): it is answered, and its session
    completed, while the attack holds its connections open; one of the attacker's
    connections gives way (1013), and never more than the budget is held. The attacker
    filling the budget again gets what is free and no more, and the station's next big
    message gets in again."""
    budget, limit = 8 << 20, 1 << 20
    await restart_with(csms_server, auto_register=attacker == "strangers",
                       large_frame_budget=budget, max_frame_bytes=limit, close_timeout=30)
    await csms_server.add_station("HONEST")
    await csms_server.add_station("HOSTILE")
    await csms_server.add_tag("TAG1")
    large = csms_server.central.large_frames
    loop = asyncio.get_running_loop()
    honest = await RawClient.connect(csms_server.url, "HONEST", ["ocpp1.6"],
                                     local_addr="127.0.0.2")
    attack: list[socket.socket] = []
    try:
        assert (await honest.result("BootNotification", BOOT))["status"] == "Accepted"
        start = await honest.result("StartTransaction", {
            "connectorId": 1, "idTag": "TAG1", "meterStart": 1_000_000,
            "timestamp": "2026-03-01T20:00:00.000Z"})
        # ~25 hours sampled once a minute: ~280 KB
        stop = {"transactionId": start["transactionId"], "meterStop": 1_180_000,
                "timestamp": "2026-03-02T21:00:00.000Z", "reason": "EVDisconnected",
                "transactionData": periodic_readings(datetime(2026, 3, 1, 20, tzinfo=UTC),
                                                     1500)}
        assert 250_000 < len(json.dumps(stop)) < limit
        # eight frames of 1,048,000 bytes announced, all but 1,000 of each sent: 12,608
        # bytes of the budget left
        for i in range(8):
            station = f"STRANGER{i}" if attacker == "strangers" else "HOSTILE"
            attack.append(s := await raw_upgrade(csms_server.port, station))
            await loop.sock_sendall(s, large_frame_head(1_048_000) + b"x" * 1_047_000)
        await wait_for(lambda: large.held == 8 * 1_047_000)
        answer = await honest.call("StopTransaction", stop, timeout=10)
        assert answer[0] == 3, answer[:3]
        # one of the attacker's connections gave way (closed at once, 1013 when it was
        # still open); the others still hold their frames
        seen = [ServerFrames(s) for s in attack]
        codes = [closed_with(await frames.read(0.3)) for frames in seen]
        assert [frames.closed for frames in seen].count(True) == 1, codes
        if attacker == "strangers":
            assert codes.count(1013) == 1, codes
        assert count(csms_server, "large_frames_evicted") == 1
        assert count(csms_server, "large_frames") == 0
        await wait_for(lambda: large.held == 7 * 1_047_000)
        # the attacker fills the budget again: its address gets what is free, never a
        # share of another's (nobody else holds any: its next connection is refused)
        for i in range(8, 10):
            station = f"STRANGER{i}" if attacker == "strangers" else "HOSTILE"
            attack.append(s := await raw_upgrade(csms_server.port, station))
            await loop.sock_sendall(s, large_frame_head(1_048_000) + b"x" * 1_047_000)
        await wait_for(lambda: large.refused == 1)
        assert large.held == 8 * 1_047_000
        # and the honest station's next big message gets in again
        answer = await honest.call("DataTransfer", {"vendorId": "x", "data": "z" * 300_000},
                                   timeout=10)
        assert answer[0] == 3, answer[:3]
        assert count(csms_server, "large_frames_evicted") == 2
        assert large.peak <= budget
    finally:
        await honest.close()
        for s in attack:
            s.close()
    sessions = await csms_server.sessions("HONEST")
    assert [s["status"] for s in sessions] == ["completed"], sessions
    await wait_for(lambda: large.held == 0)
    # nothing kept per address or connection once all is given back
    assert large.of == large._arriving == {False: {}, True: {}}


async def test_strangers_from_many_addresses_cannot_keep_a_proven_stations_stop_out(
        csms_server: RunningServer) -> None:
    """Strangers (auto-registration on) from 32 addresses each hold less than an honest
    station's ~280 KB StopTransaction weighs, in frames they never finish, and leave less
    than the stop free: no address holds more than the station would, so fairness per
    address made none of them give way, and the stop was closed with 1013 at every try.
    The station's login proved its password: its stop makes strangers' frames give way
    (1013), just enough of them, and its session is completed. A station whose login
    proved nothing (no password) is served as before: its big message is refused."""
    budget, limit = 8 << 20, 1 << 20
    await restart_with(csms_server, auto_register=True, large_frame_budget=budget,
                       max_frame_bytes=limit)
    await csms_server.add_station("HONEST", password="honest-station-password")
    await csms_server.add_station("OPEN")
    await csms_server.add_tag("TAG1")
    large = csms_server.central.large_frames
    loop = asyncio.get_running_loop()
    honest = await RawClient.connect(csms_server.url, "HONEST", ["ocpp1.6"],
                                     password="honest-station-password",
                                     local_addr="127.0.0.2")
    open_station = await RawClient.connect(csms_server.url, "OPEN", ["ocpp1.6"],
                                           local_addr="127.0.0.3")
    attack: list[socket.socket] = []
    try:
        assert (await honest.result("BootNotification", BOOT))["status"] == "Accepted"
        assert (await open_station.result("BootNotification", BOOT))["status"] == "Accepted"
        start = await honest.result("StartTransaction", {
            "connectorId": 1, "idTag": "TAG1", "meterStart": 1_000_000,
            "timestamp": "2026-03-01T20:00:00.000Z"})
        stop = {"transactionId": start["transactionId"], "meterStop": 1_180_000,
                "timestamp": "2026-03-02T21:00:00.000Z", "reason": "EVDisconnected",
                "transactionData": periodic_readings(datetime(2026, 3, 1, 20, tzinfo=UTC),
                                                     1500)}
        weighs = len(json.dumps(stop, separators=(",", ":")))  # as the client sends it
        assert 250_000 < weighs < limit
        # 32 addresses hold `each` (less than the stop), leaving `free` (less than the
        # stop, no less than any of them holds)
        free = weighs - 20_000
        each = (budget - free) // 32
        assert each <= free
        for i in range(32):
            attack.append(s := await raw_upgrade(csms_server.port, f"STRANGER{i}",
                                                 source=f"127.0.1.{i + 1}"))
            await loop.sock_sendall(s, large_frame_head(each + 1000) + b"x" * each)
        await wait_for(lambda: large.held == 32 * each)
        # a station that proved nothing is one address among others: refused (1013)
        with pytest.raises((ConnectionError, ConnectionClosed)):
            await open_station.call("DataTransfer", {"vendorId": "x", "data": "z" * weighs},
                                    timeout=10)
        assert count(csms_server, "large_frames") == 1
        assert count(csms_server, "large_frames_evicted_for_proven") == 0
        # the proven station's stop gets in: strangers' frames give way
        answer = await honest.call("StopTransaction", stop, timeout=10)
        assert answer[0] == 3, answer[:3]
        seen = [ServerFrames(s) for s in attack]
        codes = [closed_with(await frames.read(0.3)) for frames in seen]
        gave_way = count(csms_server, "large_frames_evicted_for_proven")
        assert 1 <= gave_way <= 2 and codes.count(1013) == gave_way, codes
        assert [frames.closed for frames in seen].count(True) == gave_way
        assert count(csms_server, "large_frames") == 1
        assert count(csms_server, "large_frames_evicted") == 0
        assert large.peak <= budget
    finally:
        await honest.close()
        await open_station.close()
        for s in attack:
            s.close()
    sessions = await csms_server.sessions("HONEST")
    assert [s["status"] for s in sessions] == ["completed"], sessions
    await wait_for(lambda: large.held == 0)
    assert large.of == large._arriving == {False: {}, True: {}}
    # each station closed is told why: refused, or gave way
    told = {f"STRANGER{i}": True for i, code in enumerate(codes) if code == 1013}
    told["OPEN"] = False
    async with asyncio.timeout(10):
        while True:
            events = {station: [e["gave_way"] for e in await station_events(
                csms_server, station, "security") if e["type"] == "LargeFramesBusy"]
                for station in told}
            if all(events.values()):
                break
            await asyncio.sleep(0.05)
    assert events == {station: [gave_way] for station, gave_way in told.items()}


async def test_a_proven_station_never_gives_way_to_a_stranger(
        csms_server: RunningServer) -> None:
    """Eight stations whose logins proved their passwords, behind one address, each hold a
    frame of the limit still arriving (one sent it with its request, before its password
    was checked): the whole budget. A stranger from another address
    (holding less than their address would) is refused (1013), and none of theirs gives
    way. Among proven stations fairness per address holds as before: another proven
    station's big message makes one of them give way."""
    budget, limit = 8 << 20, 1 << 20
    await restart_with(csms_server, auto_register=True, large_frame_budget=budget,
                       max_frame_bytes=limit)
    for i in range(8):
        await csms_server.add_station(f"FLEET{i}", password=f"fleet-password-{i}")
    await csms_server.add_station("OTHER", password="other-station-password")
    large = csms_server.central.large_frames
    loop = asyncio.get_running_loop()
    fleet: list[socket.socket] = []
    stranger: socket.socket | None = None
    other = await RawClient.connect(csms_server.url, "OTHER", ["ocpp1.6"],
                                    password="other-station-password",
                                    local_addr="127.0.0.4")
    try:
        frame = large_frame_head(1_048_000) + b"x" * 1_047_000
        for i in range(8):
            # the first sends its frame with its request: held while its password is
            # checked, then counted as proven
            fleet.append(s := await raw_upgrade(csms_server.port, f"FLEET{i}",
                                                source="127.0.0.3",
                                                password=f"fleet-password-{i}",
                                                early=frame if i == 0 else b""))
            if i:
                await loop.sock_sendall(s, frame)
        await wait_for(lambda: large.held == 8 * 1_047_000)
        assert large.of == {False: {}, True: {"127.0.0.3": 8 * 1_047_000}}
        stranger = await raw_upgrade(csms_server.port, "STRANGER", source="127.0.0.5")
        await loop.sock_sendall(stranger, large_frame_head(300_000) + b"x" * 299_000)
        await wait_for(lambda: large.refused == 1)
        assert closed_with(await ServerFrames(stranger).read(0.5)) == 1013
        assert large.evicted == 0 and large.held == 8 * 1_047_000
        assert count(csms_server, "large_frames") == 1
        # another proven address: the fleet's address holds more than it would
        answer = await other.call("DataTransfer", {"vendorId": "x", "data": "z" * 300_000},
                                  timeout=10)
        assert answer[0] == 3, answer[:3]
        seen = [ServerFrames(s) for s in fleet]
        codes = [closed_with(await frames.read(0.3)) for frames in seen]
        assert codes.count(1013) == 1 and large.evicted == 1, codes
        assert count(csms_server, "large_frames_evicted") == 1
        assert count(csms_server, "large_frames_evicted_for_proven") == 0
    finally:
        await other.close()
        for s in [*fleet, *([stranger] if stranger is not None else [])]:
            s.close()
    await wait_for(lambda: large.held == 0)
    assert large.of == large._arriving == {False: {}, True: {}}


def frame_head(n: int, opcode: int = 0x1, fin: bool = True) -> bytes:
    """The head of a client frame of ``n`` payload bytes (a 64-bit length), masked with a
    zero key: the payload that follows is sent as is. Opcode 0 continues a message."""
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | 127]) + n.to_bytes(8, "big") + bytes(4)


async def open_raw(port: int, station: str, source: str,
                   tls: ssl.SSLContext | None) -> tuple[asyncio.StreamReader,
                                                        asyncio.StreamWriter]:
    """A WebSocket client by hand over ws:// or wss://, from ``source``."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, local_addr=(source, 0),
        server_hostname="127.0.0.1" if tls else None)
    writer.write(upgrade_request(station))
    head = await reader.readuntil(b"\r\n\r\n")
    assert is_switching(head), head
    return reader, writer


# what a connection has sent when it goes: every state a large message is held in
LARGE_STATES = {
    # a frame announced and never finished
    "trickling": frame_head(400_000) + b"x" * 300_000,
    # a message in fragments: a whole first one, the next one arriving
    "fragmented": frame_head(100_000, fin=False) + b"[" * 100_000
    + frame_head(300_000, opcode=0x0, fin=False) + b"x" * 150_000,
    # complete messages after each other, handled one at a time (queued)
    "queued": b"".join(
        frame_head(len(m)) + m for m in [json.dumps(
            [2, f"m{i}", "DataTransfer", {"vendorId": "x", "data": "y" * 200_000}]).encode()
            for i in range(3)]),
    # a close frame between the fragments of a message
    "closing": frame_head(100_000, fin=False) + b"[" * 100_000
    + bytes([0x88, 0x82]) + bytes(4) + (1000).to_bytes(2, "big"),
}


@pytest.mark.parametrize("listener", ["ws", "wss"])
async def test_large_frames_are_all_given_back_however_connections_go(
        guarded: RunningServer, listener: str, tmp_path: Path) -> None:
    """Connections from four addresses, in every state a large message is held in (a
    frame still arriving, a message in fragments, complete messages queued for the loop,
    a close between fragments), in a budget they overfill (some are refused, some give
    way to another address), go every way a peer goes: reset, closed, half-closed, or
    left to the server's close. Once all are gone, nothing of the budget is held, and
    nothing is kept per address or connection: a leak would shrink it for good."""
    await restart_with(guarded, auto_register=True, large_frame_budget=1 << 20,
                       max_frame_bytes=1 << 20, max_handshakes=200, handshake_queue=0)
    large = guarded.central.large_frames
    port = ports(guarded)[listener]
    tls = tls_client(tmp_path) if listener == "wss" else None
    endings = ["reset", "close", "half_close", "linger"]
    for rnd in range(2):
        opened: list[tuple[str, asyncio.StreamWriter]] = []
        for i, data in enumerate(d for d in LARGE_STATES.values() for _ in range(3)):
            source = f"127.0.0.{2 + i % 4}"
            try:
                _, writer = await open_raw(port, f"L{rnd}X{i}", source, tls)
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                continue  # refused at the handshake gate: gone already
            writer.write(data)
            opened.append((endings[(i + rnd) % 4], writer))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert large.peak <= 1 << 20
        for ending, writer in opened:
            if ending == "reset":
                writer.transport.abort()
            elif ending == "close":
                writer.close()
            elif ending == "half_close" and writer.can_write_eof():
                with contextlib.suppress(Exception):
                    writer.write_eof()
        await asyncio.sleep(0.5)
        for ending, writer in opened:
            # a TLS transport closed already: some Python 3.11 releases (3.11.2) raise on
            # its abort() (its protocol is gone), later ones do nothing
            if ending != "close":
                writer.transport.abort()
    await wait_for(lambda: large.held == 0)
    assert large.of == large._arriving == {False: {}, True: {}}
    assert large.refused + large.evicted > 0  # the budget was overfilled


def tls_upgrade(port: int, station: str, source: str, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A WebSocket client by hand over wss:// on a blocking socket (run it in a thread):
    its socket can be reset at once, between two steps of the loop (``reset``)."""
    s = context.wrap_socket(socket.create_connection(("127.0.0.1", port),
                                                     source_address=(source, 0)),
                            server_hostname="127.0.0.1")
    upgrade_blocking(s, station)
    return s


def reset(s: socket.socket) -> None:
    """Close ``s`` with a TCP reset now: no TLS close_notify, no FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


async def test_a_tls_connection_lost_as_it_gives_way_costs_the_newcomer_nothing(
        guarded: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A wss:// connection holding most of the large frames' budget is reset by its peer;
    before its WebSocket learns it (asyncio's TLS layer tells it one loop step after the
    socket's), another address's bytes need room and make it give way: closing an
    asyncio TLS transport that is closed already drops its TLS layer (CPython 3.11), and
    touching it then (pausing its reads, aborting it: 3.11.2 raises on both) failed the
    newcomer's read, which dropped the newcomer. Now the newcomer's message is answered,
    and the loop reports no error."""
    await restart_with(guarded, auto_register=True, large_frame_budget=1 << 20,
                       max_frame_bytes=1 << 20)
    large = guarded.central.large_frames
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    message = json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": ""}])
    payload = message.replace('""', '"' + "y" * (1_000_000 - len(message)) + '"').encode()
    assert len(payload) == 1_000_000
    victim = await asyncio.to_thread(tls_upgrade, guarded.central.tls_port, "VICTIM",
                                     "127.0.0.2", tls_client(tmp_path))
    newcomer = await raw_upgrade(guarded.port, "NEWCOMER", source="127.0.0.3")
    try:
        # the victim holds 900,000 bytes of a frame it never finishes, the newcomer
        # 140,000 of its message: 8,576 bytes of the budget left
        await asyncio.to_thread(victim.sendall, frame_head(1_000_000) + b"x" * 900_000)
        await loop.sock_sendall(newcomer, frame_head(1_000_000) + payload[:140_000])
        await wait_for(lambda: large.held == 1_040_000)
        # reset now; the newcomer's next bytes arrive the loop step after the server reads
        # the reset, when only the victim's TLS layer knows it is gone
        reset(victim)
        await asyncio.sleep(0)
        assert newcomer.send(payload[140_000:160_000]) == 20_000
        await loop.sock_sendall(newcomer, payload[160_000:])
        seen, frames = ServerFrames(newcomer), []
        async with asyncio.timeout(10):
            while not frames and not seen.closed:
                frames = await seen.read(0.2)
        assert frames and frames[0][0] == 0x1, frames
        assert json.loads(frames[0][1])[:2] == [3, "big"]
    finally:
        newcomer.close()
        loop.set_exception_handler(before)
    await wait_for(lambda: large.held == 0)
    assert errors == []
    # the victim's handler ended as any other's (it failed aborting its transport)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert count(guarded, "large_frames_evicted") == 1
    assert large.of == large._arriving == {False: {}, True: {}}
