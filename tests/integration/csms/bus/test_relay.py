"""Bus events through a real Mosquitto, including a broker restart in the middle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from csms.config import Settings
from support import RunningServer, require_service
from support.client import RawClient
from support.services import Broker, Subscriber


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
async def mqtt_server(csms_server: RunningServer, broker: Broker) -> AsyncIterator[RunningServer]:
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, mqtt=f"mqtt://127.0.0.1:{broker.port}")
    await csms_server.start()
    yield csms_server


async def charge(server: RunningServer, station: str, start: int, stop: int) -> None:
    async with await RawClient.connect(server.url, station) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        await c.result("StatusNotification",
                       {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
        txid = (await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": start,
            "timestamp": "2026-01-01T10:00:00Z"}))["transactionId"]
        await c.result("MeterValues", {"connectorId": 1, "transactionId": txid, "meterValue": [
            {"timestamp": "2026-01-01T10:10:00Z", "sampledValue": [{"value": str(start + 10)}]}]})
        await c.result("StopTransaction", {"transactionId": txid, "meterStop": stop,
                                           "timestamp": "2026-01-01T11:00:00Z"})


async def outbox_ids(server: RunningServer) -> set[str]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return await tx.fetchall("SELECT event_id FROM outbox")

    return {r["event_id"] for r in await server.repo.read(work)}


async def test_events_published_with_ids(mqtt_server: RunningServer, broker: Broker) -> None:
    sub = Subscriber(broker.port)
    await asyncio.wait_for(sub.ready.wait(), 10)
    await mqtt_server.add_station("CP1")
    await mqtt_server.add_tag("T1")
    await charge(mqtt_server, "CP1", 1000, 4500)
    await sub.wait_for(lambda s: "voltledger/CP1/session/completed" in s.topics)
    await sub.wait_for(lambda s: "voltledger/CP1/offline" in s.topics)
    topics = sub.topics
    for expected in ("online", "boot", "status", "session/started", "session/updated",
                     "session/completed", "offline"):
        assert f"voltledger/CP1/{expected}" in topics
    completed = sub.events[topics.index("voltledger/CP1/session/completed")]
    assert completed["energy_wh"] == 3500
    assert all(e["event_id"] for e in sub.events)
    assert len({e["event_id"] for e in sub.events}) == len(sub.events)
    await sub.close()


async def test_broker_restart_loses_nothing(mqtt_server: RunningServer, broker: Broker) -> None:
    sub = Subscriber(broker.port)
    await asyncio.wait_for(sub.ready.wait(), 10)
    await mqtt_server.add_station("CP1")
    await mqtt_server.add_station("CP2")
    await mqtt_server.add_tag("T1")
    await charge(mqtt_server, "CP1", 0, 1000)
    await sub.wait_for(lambda s: "voltledger/CP1/offline" in s.topics)

    broker.stop()
    # the broker is down: stations are still served, events wait in the outbox
    await charge(mqtt_server, "CP2", 5000, 7500)
    sessions = await mqtt_server.sessions("CP2")
    assert sessions[0]["energy_wh"] == 2500
    broker.start()

    expected = await outbox_ids(mqtt_server)
    await sub.wait_for(lambda s: expected <= {e["event_id"] for e in s.events}, timeout=30)
    assert "voltledger/CP2/session/completed" in sub.topics
    await sub.close()


async def test_system_mosquitto_is_reachable_for_deployments(tmp_path: Path) -> None:
    """The shared broker of the development/CI machine (SERVICES.md) works with the relay."""
    require_service("Mosquitto", "127.0.0.1", 1883)
    server = RunningServer(Settings(db=str(tmp_path / "m.db"), port=0, admin_port=-1,
                                    mqtt="mqtt://127.0.0.1:1883", data_dir=str(tmp_path)))
    await server.start()
    try:
        assert server.app is not None and server.app.relay is not None
        await asyncio.wait_for(server.app.relay.connected.wait(), 10)
    finally:
        await server.stop()


async def test_an_idle_relay_learns_the_broker_is_gone(broker: Broker, tmp_path: Path) -> None:
    """With nothing to publish, the relay raises as soon as the broker goes away (its
    supervisor reconnects), and the reason aiomqtt keeps is read: no "Future exception was
    never retrieved" when the client is collected."""
    import gc

    from csms.bus.relay import OutboxRelay
    from csms.storage import open_repository

    reported: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda loop, context: reported.append(str(context.get("message"))))
    repo = await open_repository(str(tmp_path / "relay.db"))
    try:
        relay = OutboxRelay(repo, broker.url, poll_interval=0.05)
        stop = asyncio.Event()
        running = asyncio.create_task(relay.run(stop))
        await asyncio.wait_for(relay.connected.wait(), 10)
        broker.stop()
        with pytest.raises(aiomqtt.MqttError):
            await asyncio.wait_for(running, 5)
        assert not relay.connected.is_set()
        del running, relay
        gc.collect()
        await asyncio.sleep(0.05)
    finally:
        await repo.close()
    assert reported == []
