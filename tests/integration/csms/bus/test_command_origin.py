"""Audit: who may make a node command its stations over the bus, through a real Mosquitto.

The bus carries an operator's command from the node the operator used to the node that
holds the station's socket. Whoever can publish on the broker (a stranger on a shared
broker, a station-side component given broker access for events) must not be able to
command stations, replay a command or answer in a node's place."""

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
from csms.service.auth import verify_password
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
                                   node_id=f"audit-{secrets.token_hex(4)}")
    await csms_server.start()
    assert csms_server.app is not None and csms_server.app.bus is not None
    async with asyncio.timeout(10):
        await csms_server.app.bus.connected.wait()
    await csms_server.add_station("CP1")
    yield csms_server


async def publish(topic: str, body: dict[str, Any] | bytes) -> None:
    """What anyone with access to the broker can do: no credential of the operator's."""
    async with aiomqtt.Client(HOST, PORT, identifier=f"stranger-{secrets.token_hex(4)}") as c:
        await c.publish(topic, body if isinstance(body, bytes) else orjson.dumps(body), qos=1)


async def next_call(c: RawClient, wait: float) -> list[Any] | None:
    try:
        async with asyncio.timeout(wait):
            return await c.calls.get()
    except TimeoutError:
        return None


async def test_a_stranger_on_the_broker_cannot_command_a_station(
    node: RunningServer,
) -> None:
    node_id = node.central.node_id
    async with await RawClient.connect(node.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        await publish(f"voltledger/nodes/{node_id}/commands", {
            "id": "x1", "reply_to": "stranger", "station_id": "CP1",
            "command": "set-password", "args": {"password": "chosen-by-a-stranger-1"},
            "timeout": 5})
        call = await next_call(c, 3)
        if call is not None:  # a station takes what its central system asks
            await c.answer(call[1], {"status": "Accepted"})
            await asyncio.sleep(1)

    async def stored(tx: Any) -> str | None:
        st = await tx.get_station("CP1")
        return None if st is None else st.password_hash

    digest = await node.repo.read(stored)
    # the stranger's password is now the station's: it can connect as CP1
    taken = digest is not None and verify_password("chosen-by-a-stranger-1", digest)
    assert (call, taken) == (None, False), (call, taken)


async def test_a_captured_command_cannot_be_replayed(node: RunningServer) -> None:
    """A genuine forwarded command (another node's), seen on the broker, is sent again."""
    node_id = node.central.node_id
    assert node.app is not None and node.app.bus is not None
    # another node of the cluster: it holds the secret the nodes share through the database
    asker = CommandBus(URL, f"asker-{secrets.token_hex(4)}", secret=node.app.bus.secret)
    stop = asyncio.Event()

    async def nothing(*_: Any) -> tuple[int, dict[str, Any]]:
        return 500, {}

    captured: list[bytes] = []

    async def spy(ready: asyncio.Event) -> None:
        async with aiomqtt.Client(HOST, PORT, identifier=f"spy-{secrets.token_hex(4)}") as s:
            await s.subscribe("voltledger/nodes/+/commands", qos=1)
            ready.set()
            async for message in s.messages:
                captured.append(bytes(message.payload))  # type: ignore[arg-type]
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
            asked = asyncio.create_task(asker.request(node_id, "CP1", "unlock",
                                                      {"connector": 1}, 5, wait=10))
            call = await next_call(c, 5)
            assert call is not None and call[2] == "UnlockConnector"
            await c.answer(call[1], {"status": "Unlocked"})
            assert (await asked)[0] == 200
            async with asyncio.timeout(5):
                await spying
            await publish(f"voltledger/nodes/{node_id}/commands", captured[0])
            again = await next_call(c, 3)
            if again is not None:
                await c.answer(again[1], {"status": "Unlocked"})
        assert again is None, f"the replayed command reached the station: {again}"
    finally:
        stop.set()
        spying.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_stranger_cannot_answer_in_a_nodes_place() -> None:
    require_service("Mosquitto", HOST, PORT)
    run = secrets.token_hex(4)
    asker, holder = CommandBus(URL, f"a-{run}"), CommandBus(URL, f"b-{run}")

    async def on_holder(station_id: str, command: str, args: dict[str, Any],
                        timeout: float | None) -> tuple[int, dict[str, Any]]:
        await asyncio.sleep(1)  # the station takes a moment to answer
        return 200, {"status": "Rejected"}

    async def on_asker(*_: Any) -> tuple[int, dict[str, Any]]:
        return 500, {}

    async def stranger(ready: asyncio.Event) -> None:
        async with aiomqtt.Client(HOST, PORT, identifier=f"stranger-{run}") as s:
            await s.subscribe(f"voltledger/nodes/b-{run}/commands", qos=1)
            ready.set()
            async for message in s.messages:
                body = orjson.loads(bytes(message.payload))  # type: ignore[arg-type]
                await s.publish(f"voltledger/nodes/{body['reply_to']}/replies/{body['id']}",
                                orjson.dumps({"status": 200, "result": {"status": "Accepted"}}),
                                qos=1)
                return

    stop, ready = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(holder.run(on_holder, stop)),
             asyncio.create_task(asker.run(on_asker, stop)),
             asyncio.create_task(stranger(ready))]
    try:
        async with asyncio.timeout(10):
            await holder.connected.wait()
            await asker.connected.wait()
            await ready.wait()
        status, result = await asker.request(holder.node_id, "CP1", "reset", {}, 5, wait=5)
        assert (status, result) == (200, {"status": "Rejected"})
    finally:
        stop.set()
        tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_listener_on_the_broker_reads_no_arguments_and_no_results() -> None:
    """A station's new password goes over the bus to the node that sends it, a
    configuration read comes back: anyone subscribed to the broker sees neither."""
    require_service("Mosquitto", HOST, PORT)
    run = secrets.token_hex(4)
    secret = secrets.token_bytes(32)
    asker = CommandBus(URL, f"a-{run}", secret=secret)
    holder = CommandBus(URL, f"b-{run}", secret=secret)
    taken: list[dict[str, Any]] = []

    async def on_holder(station_id: str, command: str, args: dict[str, Any],
                        timeout: float | None) -> tuple[int, dict[str, Any]]:
        taken.append(args)
        return 200, {"status": "Accepted", "key": "AuthorizationKey=f00dfeedcafe"}

    async def on_asker(*_: Any) -> tuple[int, dict[str, Any]]:
        return 500, {}

    heard: list[bytes] = []

    async def listener(ready: asyncio.Event) -> None:
        async with aiomqtt.Client(HOST, PORT, identifier=f"listener-{run}") as s:
            await s.subscribe("voltledger/nodes/#", qos=1)
            ready.set()
            async for message in s.messages:
                heard.append(bytes(message.payload))  # type: ignore[arg-type]

    stop, ready = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(holder.run(on_holder, stop)),
             asyncio.create_task(asker.run(on_asker, stop)),
             asyncio.create_task(listener(ready))]
    try:
        async with asyncio.timeout(10):
            await holder.connected.wait()
            await asker.connected.wait()
            await ready.wait()
        status, result = await asker.request(
            holder.node_id, "CP1", "set-password", {"password": "s3cret-of-the-station"}, 5,
            wait=5)
        await asyncio.sleep(0.5)  # the listener has its copy of the reply
    finally:
        stop.set()
        tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert (status, result["key"]) == (200, "AuthorizationKey=f00dfeedcafe")
    assert taken == [{"password": "s3cret-of-the-station"}]
    assert len(heard) == 2  # the command and its reply
    assert not any(b"s3cret" in m or b"f00dfeed" in m for m in heard), heard
