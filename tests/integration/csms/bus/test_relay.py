"""Bus events through a real Mosquitto, including a broker restart in the middle."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from csms.config import Settings
from support import IN_CI, RunningServer, require_service
from support.client import RawClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A Mosquitto process of the test's own, on a free loopback port."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        # Persistence keeps the subscriber's durable session (clean_session=False)
        # across the restart, so events published before it resubscribes are queued
        # for it rather than dropped.
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {folder}/\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        if IN_CI:
            pytest.fail("mosquitto binary is required")
        pytest.skip("mosquitto is not installed")
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


class Subscriber:
    def __init__(self, port: int) -> None:
        self.port = port
        self.events: list[dict[str, Any]] = []
        self.topics: list[str] = []
        self.ready = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier="test-sub",
                                          clean_session=False) as client:
                    await client.subscribe("voltledger/#", qos=1)
                    self.ready.set()
                    async for message in client.messages:
                        self.topics.append(str(message.topic))
                        self.events.append(orjson.loads(message.payload))  # type: ignore[arg-type]
            except aiomqtt.MqttError:
                self.ready.clear()
                await asyncio.sleep(0.2)

    async def wait_for(self, predicate: Any, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


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
