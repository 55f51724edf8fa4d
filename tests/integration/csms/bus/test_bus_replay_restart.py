"""A command captured on the broker, sent again to its node after that node restarted
(through a real Mosquitto): the ids a node has served live in its memory only, so the
restarted node runs the captured command a second time while its wait window lasts."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiomqtt
import orjson
import pytest

from csms.bus.commands import CommandBus
from support import RunningServer, require_service
from support.client import RawClient

HOST, PORT = "127.0.0.1", 1883
URL = f"mqtt://{HOST}:{PORT}"
BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}


@pytest.fixture
async def node(csms_server: RunningServer) -> AsyncIterator[RunningServer]:
    require_service("Mosquitto", HOST, PORT)
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, mqtt=URL,
                                   node_id=f"replay-{secrets.token_hex(4)}")
    await csms_server.start()
    assert csms_server.app is not None and csms_server.app.bus is not None
    async with asyncio.timeout(10):
        await csms_server.app.bus.connected.wait()
    await csms_server.add_station("CP1")
    yield csms_server


async def next_call(c: RawClient, wait: float) -> list[Any] | None:
    try:
        async with asyncio.timeout(wait):
            return await c.calls.get()
    except TimeoutError:
        return None


async def test_a_captured_command_is_not_run_again_by_the_restarted_node(
    node: RunningServer,
) -> None:
    node_id = node.central.node_id
    assert node.app is not None and node.app.bus is not None
    # another node of the cluster, with the secret the nodes share through the database
    asker = CommandBus(URL, f"asker-{secrets.token_hex(4)}", secret=node.app.bus.secret)
    stop = asyncio.Event()

    async def nothing(*_: Any) -> tuple[int, dict[str, Any]]:
        return 500, {}

    captured: list[bytes] = []

    async def spy(ready: asyncio.Event) -> None:
        async with aiomqtt.Client(HOST, PORT, identifier=f"spy-{secrets.token_hex(4)}") as s:
            await s.subscribe(f"voltledger/nodes/{node_id}/commands", qos=1)
            ready.set()
            async for message in s.messages:
                captured.append(bytes(message.payload))  # type: ignore[arg-type,unused-ignore]
                return

    ready = asyncio.Event()
    spying = asyncio.create_task(spy(ready))
    task = asyncio.create_task(asker.run(nothing, stop))
    try:
        async with asyncio.timeout(10):
            await asker.connected.wait()
            await ready.wait()
        async with await RawClient.connect(node.url, "CP1", ["ocpp1.6"]) as c:
            await c.result("BootNotification", BOOT16)
            # a wait window of 60 s (a command timeout of 55 s asks for as much)
            asked = asyncio.create_task(asker.request(node_id, "CP1", "unlock",
                                                      {"connector": 1}, 55, wait=60))
            call = await next_call(c, 5)
            assert call is not None and call[2] == "UnlockConnector"
            await c.answer(call[1], {"status": "Unlocked"})
            assert (await asked)[0] == 200
            async with asyncio.timeout(5):
                await spying
        assert orjson.loads(captured[0])["to"] == node_id
        # the node restarts (an upgrade, a crash): same node id, same database, same secret
        await node.stop()
        await node.start()
        assert node.app is not None and node.app.bus is not None
        async with asyncio.timeout(10):
            await node.app.bus.connected.wait()
        async with await RawClient.connect(node.url, "CP1", ["ocpp1.6"]) as c:
            await c.result("BootNotification", BOOT16)
            await node.wait_connected("CP1")
            async with aiomqtt.Client(HOST, PORT,
                                      identifier=f"replayer-{secrets.token_hex(4)}") as r:
                await r.publish(f"voltledger/nodes/{node_id}/commands", captured[0], qos=1)
            again = await next_call(c, 3)
            if again is not None:
                await c.answer(again[1], {"status": "Unlocked"})
        assert again is None, f"the replayed command reached the station: {again}"
    finally:
        stop.set()
        spying.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_stranger_s_flood_on_the_broker_is_counted_not_logged_line_by_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whoever may publish on the broker sends a node junk on its command topic: every
    message is dropped (and counted), but each also wrote a WARNING line, so a stranger
    decides how fast the node's log grows (the station file listener logs the first drop
    and every thousandth)."""
    require_service("Mosquitto", HOST, PORT)
    bus = CommandBus(URL, f"flooded-{secrets.token_hex(4)}")

    async def nothing(*_: Any) -> tuple[int, dict[str, Any]]:
        return 500, {}

    stop = asyncio.Event()
    task = asyncio.create_task(bus.run(nothing, stop))
    sent = 500
    try:
        async with asyncio.timeout(10):
            await bus.connected.wait()
        caplog.set_level("WARNING", logger="csms.bus")
        async with aiomqtt.Client(HOST, PORT,
                                  identifier=f"stranger-{secrets.token_hex(4)}") as s:
            for i in range(sent):
                await s.publish(f"voltledger/nodes/{bus.node_id}/commands",
                                orjson.dumps({"id": f"j{i}", "junk": True}), qos=1)
        async with asyncio.timeout(10):
            while sum(bus.dropped.values()) < sent:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
    lines = [r for r in caplog.records if r.name == "csms.bus" and "dropped" in r.getMessage()]
    assert bus.dropped["unsigned"] == sent
    assert len(lines) <= 10, f"{len(lines)} log lines for {sent} junk messages"
