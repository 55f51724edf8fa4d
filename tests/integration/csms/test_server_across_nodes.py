"""One station identity connected on two nodes (one PostgreSQL database, the real
Mosquitto): the node where it connected last has the other close its connection over the
command bus, as one node closes its own older connection; a stale row of a node that died
neither holds up nor costs the new connection anything."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import csms.server
from csms.config import Settings
from csms.server import CLOSE_REPLACED
from csms.service.cluster import beat
from csms.service.ports import Tx
from support import RunningServer, require_service, station_events, until
from support.client import RawClient

MQTT = "mqtt://127.0.0.1:1883"
BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}


@dataclass
class Nodes:
    a: RunningServer
    b: RunningServer


def _settings(db: str, folder: Path, node: str, mqtt: str = MQTT) -> Settings:
    return Settings(db=db, host="127.0.0.1", port=0, data_dir=str(folder / node),
                    heartbeat_interval=60, call_timeout=5, admin_port=-1,
                    boot_get_configuration=False, mqtt=mqtt, node_id=node,
                    close_timeout=1.0)


@pytest.fixture
async def nodes(postgres_url: str, tmp_path: Path) -> AsyncIterator[Nodes]:
    require_service("Mosquitto", "127.0.0.1", 1883)
    run = secrets.token_hex(3)
    started: list[RunningServer] = []
    try:
        for name in ("a", "b"):
            node = RunningServer(_settings(postgres_url, tmp_path, f"node-{name}-{run}"))
            await node.start()
            started.append(node)
            assert node.app is not None and node.app.bus is not None
            async with asyncio.timeout(10):
                await node.app.bus.connected.wait()
        await started[0].add_station("CP1")
        yield Nodes(*started)
    finally:
        for node in started:
            await node.stop()


async def _connected(server: RunningServer) -> RawClient:
    client = await RawClient.connect(server.url, "CP1", ["ocpp1.6"])
    assert (await client.result("BootNotification", BOOT16))["status"] == "Accepted"
    return client


async def _asked(server: RunningServer) -> None:
    """Until the node's requests to close connections elsewhere are answered or given up."""
    async def done() -> bool:
        return not server.central._closing_elsewhere

    await until(done, "the other node's answer")


def _closed(client: RawClient) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return client.ws.close_code is not None

    return check


async def _node_of(server: RunningServer) -> str | None:
    async def work(tx: Tx) -> str | None:
        station = await tx.get_station("CP1")
        assert station is not None
        return station.connected_node

    return await server.repo.read(work)


async def _replaced(server: RunningServer) -> list[dict[str, Any]]:
    return [e for e in await station_events(server, "CP1", "security")
            if e.get("type") == "ConnectionReplaced"]


async def _beat(server: RunningServer, node: str, at: datetime) -> None:
    async def work(tx: Tx) -> None:
        await beat(tx, node, at)
        await tx.set_station_connection("CP1", node, at)

    await server.repo.unit(work)


async def test_two_devices_with_one_identity_replace_each_other_one_at_a_time(
    nodes: Nodes,
) -> None:
    """X on node a, then Y (a clone) on node b: b closes X's connection on a. X comes
    back on a: a closes Y's on b. Each connection replaces the one before it, never
    itself or a newer one: the last device to connect is the one connected, on the node
    the row names, and every replacement across nodes is recorded naming both nodes."""
    a, b = nodes.a, nodes.b
    x = await _connected(a)
    y = await _connected(b)
    try:
        await until(_closed(x), "X's connection on node a closed")
        await _asked(b)
        assert y.ws.close_code is None and "currentTime" in await y.result("Heartbeat", {})
        assert await _node_of(a) == b.central.node_id
        x2 = await _connected(a)
        try:
            await until(_closed(y), "Y's connection on node b closed")
            await _asked(a)
            assert x2.ws.close_code is None
            assert "currentTime" in await x2.result("Heartbeat", {})
            assert list(a.central.connections) == ["CP1"] and not b.central.connections
            assert await _node_of(b) == a.central.node_id
        finally:
            await x2.close()
    finally:
        await x.close()
        await y.close()
    found = [(e["node"], e["previous_node"]) for e in await _replaced(a)]
    assert found == [(a.central.node_id, b.central.node_id),  # newest first
                     (b.central.node_id, a.central.node_id)]


async def test_a_request_for_an_older_connection_never_closes_a_newer_one(
    nodes: Nodes,
) -> None:
    """Requests cross on the bus when both devices come back at once: node a's request,
    for the connection b recorded before, reaches b after the station connected on b
    again. It closes only the connection it names, or an older one: b's newer connection
    stays, and nothing closes both devices over and over."""
    a, b = nodes.a, nodes.b
    assert b.app is not None and b.app.bus is not None
    x = await _connected(a)
    try:
        since = a.central.connections["CP1"].since
        assert since is not None
        node = a.central.node_id

        async def ask(connected_at: datetime) -> tuple[int, dict[str, Any]]:
            assert b.app is not None and b.app.bus is not None
            return await b.app.bus.request(node, "CP1", CLOSE_REPLACED, {
                "node": b.central.node_id, "connected_at": connected_at.isoformat()},
                None, 10)

        assert await ask(since - timedelta(microseconds=1)) == (
            200, {"closed": False, "connected": True})
        assert x.ws.close_code is None and "currentTime" in await x.result("Heartbeat", {})
        assert await ask(since) == (200, {"closed": True})
        await until(_closed(x), "the connection named closed")
        # malformed: refused, nothing closed
        status, _ = await b.app.bus.request(node, "CP1", CLOSE_REPLACED, {"node": "n"},
                                            None, 10)
        assert status == 400
    finally:
        await x.close()


async def test_the_stale_row_of_a_node_dead_for_long_costs_the_connection_nothing(
    nodes: Nodes,
) -> None:
    """A node killed with -9 left the station's row naming it, and stopped beating long
    ago: the station connects on node a and is served as any other, no event is stored
    and nothing is asked of the dead node."""
    a = nodes.a
    await _beat(a, "node-dead", datetime.now(UTC) - timedelta(minutes=10))
    x = await _connected(a)
    try:
        assert not a.central._closing_elsewhere  # nothing asked
        assert "currentTime" in await x.result("Heartbeat", {})
        assert await _node_of(a) == a.central.node_id
        assert await _replaced(a) == []
    finally:
        await x.close()


async def test_a_node_that_died_just_now_does_not_hold_up_the_connection(
    nodes: Nodes, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The row names a node that still beat a moment ago but answers nothing (killed
    with -9 seconds ago, or cut off from the broker): the station is served while that
    node is asked, the replacement is recorded all the same, and the operator is told
    when no answer comes."""
    caplog.set_level(logging.WARNING, logger="csms.server")
    monkeypatch.setattr(csms.server, "CLOSE_REPLACED_MARGIN", 2.0)
    a = nodes.a
    await _beat(a, "node-gone", datetime.now(UTC))
    x = await _connected(a)
    try:
        asking = list(a.central._closing_elsewhere)
        assert "currentTime" in await x.result("Heartbeat", {})
        assert asking and not any(task.done() for task in asking)  # served meanwhile
        assert [(e["node"], e["previous_node"]) for e in await _replaced(a)] == [
            (a.central.node_id, "node-gone")]
        await _asked(a)
        assert any("node-gone was not reached" in r.getMessage() for r in caplog.records)
        assert x.ws.close_code is None and await _node_of(a) == a.central.node_id
    finally:
        await x.close()


async def test_without_a_bus_the_replacement_is_recorded_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A node without MQTT cannot ask the other node: the event is stored and a warning
    says the station may still be connected there."""
    caplog.set_level(logging.WARNING, logger="csms.server")
    server = RunningServer(_settings(str(tmp_path / "csms.sqlite3"), tmp_path, "node-alone",
                                     mqtt=""))
    await server.start()
    try:
        await server.add_station("CP1")
        await _beat(server, "node-other", datetime.now(UTC))
        x = await _connected(server)
        try:
            assert [(e["node"], e["previous_node"]) for e in await _replaced(server)] == [
                ("node-alone", "node-other")]
            assert any("no command bus" in r.getMessage() for r in caplog.records)
            assert "currentTime" in await x.result("Heartbeat", {})
        finally:
            await x.close()
    finally:
        await server.stop()
