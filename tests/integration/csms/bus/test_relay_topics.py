"""The outbox relay against a station id that is no MQTT topic level: OCPP allows '+' and
'#' in an identity (the central system takes both), MQTT forbids them in a topic a
client publishes to. One such station must not stop the events of every other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from csms.bus.relay import MAX_ATTEMPTS, OutboxRelay
from csms.service.ports import Repository, Tx
from csms.service.topics import level_text, station_level
from csms.storage import open_repository
from support import RunningServer, until
from support.client import RawClient
from support.services import Broker, Subscriber

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}


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


@pytest.mark.parametrize("odd", ["CP+1", "CP#1"])
async def test_a_station_named_with_a_wildcard_does_not_stop_the_others_events(
    mqtt_server: RunningServer, broker: Broker, odd: str,
) -> None:
    sub = Subscriber(broker.port)
    await asyncio.wait_for(sub.ready.wait(), 10)
    await mqtt_server.add_station(odd)
    await mqtt_server.add_station("CP2")
    async with await RawClient.connect(mqtt_server.url, odd) as c:
        await c.result("BootNotification", BOOT16)
    async with await RawClient.connect(mqtt_server.url, "CP2") as c:
        await c.result("BootNotification", BOOT16)
    try:
        # every event of CP2 was written after the odd station's, in the same outbox
        await sub.wait_for(lambda s: "voltledger/CP2/boot" in s.topics, timeout=15)
    except TimeoutError:
        pytest.fail(f"no event of CP2 published after {odd!r}'s: seen {sub.topics}")
    finally:
        await sub.close()


async def test_a_stranger_auto_registered_with_a_wildcard_does_not_stop_the_events(
    csms_server: RunningServer, broker: Broker,
) -> None:
    """With auto_register on, a stranger picks the station id: "X#" is enough."""
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, auto_register=True,
                                   mqtt=f"mqtt://127.0.0.1:{broker.port}")
    await csms_server.start()
    sub = Subscriber(broker.port)
    await asyncio.wait_for(sub.ready.wait(), 10)
    await csms_server.add_station("CP2")
    async with await RawClient.connect(csms_server.url, "X#") as c:
        await c.result("BootNotification", BOOT16)
    async with await RawClient.connect(csms_server.url, "CP2") as c:
        await c.result("BootNotification", BOOT16)
    try:
        await sub.wait_for(lambda s: "voltledger/CP2/boot" in s.topics, timeout=15)
    except TimeoutError:
        pytest.fail(f"no event of CP2 published after the stranger's: seen {sub.topics}")
    finally:
        await sub.close()


async def test_a_stranger_cannot_publish_on_another_stations_topic(
    csms_server: RunningServer, broker: Broker,
) -> None:
    """The stranger picks the id "CP%2B1": the very level CP+1's events are published on.
    Its events go to a level of their own, and CP+1's topics carry CP+1's events only."""
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, auto_register=True,
                                   mqtt=f"mqtt://127.0.0.1:{broker.port}")
    await csms_server.start()
    sub = Subscriber(broker.port)
    await asyncio.wait_for(sub.ready.wait(), 10)
    await csms_server.add_station("CP+1")
    try:
        async with await RawClient.connect(csms_server.url, "CP%2B1") as c:
            await c.result("BootNotification", BOOT16)
        await sub.wait_for(lambda s: "voltledger/CP%252B1/offline" in s.topics, timeout=15)
        assert [t for t in sub.topics if t.startswith("voltledger/CP%2B1/")] == []
        async with await RawClient.connect(csms_server.url, "CP+1") as c:
            await c.result("BootNotification", BOOT16)
        await sub.wait_for(lambda s: "voltledger/CP%2B1/offline" in s.topics, timeout=15)
        levels = {t.split("/")[1] for t in sub.topics}
        assert levels == {"CP%252B1", "CP%2B1"}
        assert {level_text(level) for level in levels} == {"CP%2B1", "CP+1"}
    finally:
        await sub.close()


async def keep_running(relay: OutboxRelay, stop: asyncio.Event) -> None:
    """What the node's supervisor does with the relay, without its backoff."""
    while not stop.is_set():
        try:
            await relay.run(stop)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)


async def add_events(repo: Repository, topics: list[str]) -> None:
    async def work(tx: Tx) -> None:
        for topic in topics:
            await tx.add_outbox(topic, {"topic": topic}, datetime.now(UTC))

    await repo.unit(work)


async def pending(repo: Repository) -> int:
    async def work(tx: Tx) -> int:
        return await tx.count_outbox_pending()

    return await repo.read(work)


async def _none_pending(repo: Repository) -> bool:
    return await pending(repo) == 0


ODD_IDS = ["a/b", "/", "", "x\x00y", "\x01", "\x7f", "\x85", "\ufffe", "\ud800", "Zürich",
           "CP+1", "#", "%", "nodes", "settlement", "\U0001f50c" * 20_000]


async def test_events_of_any_station_id_are_taken_by_the_broker(
    broker: Broker, tmp_path: Path,
) -> None:
    """Ids a station could not connect with too (a '/', control characters, not UTF-8,
    over-long): each event reaches a subscriber, and its level names its station."""
    repo = await open_repository(str(tmp_path / "relay.db"))
    sub = Subscriber(broker.port)
    stop = asyncio.Event()
    relay = OutboxRelay(repo, broker.url, poll_interval=0.05)
    running = asyncio.create_task(keep_running(relay, stop))
    try:
        await asyncio.wait_for(sub.ready.wait(), 10)
        await add_events(repo, [f"voltledger/{station_level(name)}/boot" for name in ODD_IDS]
                         + ["voltledger/CP2/boot"])
        await sub.wait_for(lambda s: "voltledger/CP2/boot" in s.topics, timeout=15)
        assert relay.skipped == 0
        names = [level_text(t.split("/")[1]) for t in sub.topics[:-1]]
        assert names == [*ODD_IDS[:-1], None]  # the over-long one by its digest
        assert all(t.count("/") == 2 for t in sub.topics)
    finally:
        stop.set()
        await running
        await sub.close()
        await repo.close()


async def test_an_event_refused_for_ever_is_skipped_not_holding_the_outbox(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """An event written with a topic the MQTT client refuses (a wildcard: written before
    ids were encoded) and one the broker refuses (it closes the connection on a control
    character): both are skipped, counted and logged, and the events after them go out."""
    repo = await open_repository(str(tmp_path / "relay.db"))
    sub = Subscriber(broker.port)
    stop = asyncio.Event()
    skipped: list[None] = []
    relay = OutboxRelay(repo, broker.url, poll_interval=0.05,
                        on_skipped=lambda: skipped.append(None))
    running = asyncio.create_task(keep_running(relay, stop))
    try:
        await asyncio.wait_for(sub.ready.wait(), 10)
        await add_events(repo, ["voltledger/X#/boot", "voltledger/a\x01b/boot",
                                "voltledger/CP2/boot"])
        await sub.wait_for(lambda s: "voltledger/CP2/boot" in s.topics, timeout=30)
        assert (relay.skipped, len(skipped)) == (2, 2)
        # the relay marks the batch's rows once its publishes are out: the subscriber may
        # see CP2's event first
        await until(lambda: _none_pending(repo), "the outbox emptied")
        assert sub.topics == ["voltledger/CP2/boot"]
    finally:
        stop.set()
        await running
        await sub.close()
        await repo.close()
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 2 and "X#" in lines[0] and "failed 5 times" in lines[1]


async def test_a_broker_outage_skips_no_event(broker: Broker, tmp_path: Path) -> None:
    """The relay fails again and again while the broker is down, more often than an event
    may fail: no event counts these failures, and all are published once it is back."""
    repo = await open_repository(str(tmp_path / "relay.db"))
    broker.stop()
    relay = OutboxRelay(repo, broker.url, poll_interval=0.05)
    stop = asyncio.Event()
    try:
        await add_events(repo, ["voltledger/CP1/boot", "voltledger/CP2/boot"])
        for _ in range(MAX_ATTEMPTS + 2):
            with pytest.raises(aiomqtt.MqttError):
                await relay.run(stop)
        broker.start()
        sub = Subscriber(broker.port)
        await asyncio.wait_for(sub.ready.wait(), 10)
        running = asyncio.create_task(keep_running(relay, stop))
        try:
            await sub.wait_for(lambda s: "voltledger/CP2/boot" in s.topics, timeout=15)
        finally:
            stop.set()
            await running
            await sub.close()
        assert relay.skipped == 0 and sub.topics == ["voltledger/CP1/boot",
                                                     "voltledger/CP2/boot"]
    finally:
        await repo.close()
