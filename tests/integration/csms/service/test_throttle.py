"""A station flooding transaction data is slowed by its byte budget, never refused.

Over real sockets, one station sends transaction messages just under the 64 KiB frame
limit as fast as it is answered, with a budget small enough that the throttle, not the
machine, binds; what it got answered (and so stored) is bounded by the budget, every one of
its messages is answered and stored, and another station sending meter values on the same
server meanwhile is never delayed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import orjson
import pytest

from support import RunningServer
from support.client import RawClient

RATE = 64 * 1024  # bytes a second
BURST = 128 * 1024
WINDOW = 2.0  # seconds of flood
TS = "2026-03-01T10:00:00Z"


async def restart(server: RunningServer, **changes: Any) -> None:
    await server.stop()
    server.settings = replace(server.settings, **changes)
    await server.start()


def samples(count: int) -> list[dict[str, Any]]:
    return [{"value": "230.10", "context": "Sample.Periodic", "measurand": "Voltage",
             "phase": "L1-N", "unit": "V"} for _ in range(count)]


def samples201(count: int) -> list[dict[str, Any]]:
    return [{"value": 230.1, "context": "Sample.Periodic", "measurand": "Voltage",
             "phase": "L1-N", "unitOfMeasure": {"unit": "V"}} for _ in range(count)]


class Station:
    """A station with a session running, sending meter values of ``count`` samples."""

    def __init__(self, client: RawClient, version: str, name: str) -> None:
        self.client = client
        self.version = version
        self.name = name
        self.seq = 0
        self.sent = 0
        self.transaction_id: int | str = 0

    async def start(self) -> None:
        if self.version == "ocpp1.6":
            answer = await self.client.result("StartTransaction", {
                "connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": TS})
            self.transaction_id = answer["transactionId"]
        else:
            self.transaction_id = f"tx-{self.name}"
            await self.client.result("TransactionEvent", {
                "eventType": "Started", "timestamp": TS, "seqNo": 0,
                "triggerReason": "Authorized", "evse": {"id": 1, "connectorId": 1},
                "transactionInfo": {"transactionId": self.transaction_id},
                "idToken": {"idToken": "T1", "type": "ISO14443"}})

    def message(self, count: int) -> tuple[str, dict[str, Any]]:
        if self.version == "ocpp1.6":
            return "MeterValues", {"connectorId": 1, "transactionId": self.transaction_id,
                                   "meterValue": [{"timestamp": TS,
                                                   "sampledValue": samples(count)}]}
        self.seq += 1
        return "TransactionEvent", {
            "eventType": "Updated", "timestamp": TS, "seqNo": self.seq,
            "triggerReason": "MeterValuePeriodic",
            "transactionInfo": {"transactionId": self.transaction_id},
            "meterValue": [{"timestamp": TS, "sampledValue": samples201(count)}]}

    async def send(self, count: int) -> int:
        """One message, answered: its frame's size."""
        action, payload = self.message(count)
        self.sent += 1
        mid = f"{self.name}-{self.sent}"
        text = orjson.dumps([2, mid, action, payload]).decode()
        answer = await self.client.send_raw(text, mid, timeout=10)  # > the 5 s cap
        assert answer is not None and answer[0] == 3, answer  # acknowledged, never an error
        return len(text.encode())


async def stored_samples(server: RunningServer, station: str) -> int:
    async def work(tx: Any) -> int:
        [session] = await tx.list_sessions(station)
        return len(await tx.session_samples(session.id))

    return int(await server.repo.read(work))


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_flood_of_transaction_data_is_slowed_and_all_of_it_stored(
    csms_server: RunningServer, version: str,
) -> None:
    await restart(csms_server, transaction_bytes_per_s=RATE, transaction_burst_bytes=BURST)
    await csms_server.add_station("FLOOD")
    await csms_server.add_station("HONEST")
    await csms_server.add_tag("T1")
    per_frame = 650 if version == "ocpp1.6" else 560  # just under 64 KiB framed
    async with await RawClient.connect(csms_server.url, "FLOOD", [version]) as f, \
            await RawClient.connect(csms_server.url, "HONEST", [version]) as h:
        flood, honest = Station(f, version, "FLOOD"), Station(h, version, "HONEST")
        await flood.start()
        await honest.start()
        stop = asyncio.Event()

        async def flooding() -> tuple[int, int, float]:
            sent = size = 0
            started = time.monotonic()
            while time.monotonic() - started < WINDOW:
                size += await flood.send(per_frame)
                sent += 1
            stop.set()
            return sent, size, time.monotonic() - started

        async def sampling() -> int:
            sent = 0
            while not stop.is_set():
                await honest.send(20)
                sent += 1
                await asyncio.sleep(0.05)
            return sent

        (sent, size, took), honest_sent = await asyncio.gather(flooding(), sampling())
        conns = csms_server.central.connections
        flood_delays = conns["FLOOD"].delayed
        honest_delays = conns["HONEST"].delayed
    frame = size // sent
    print(f"\n{version}: {sent} frames of {frame} bytes answered in {took:.2f} s"
          f" ({size / took:,.0f} B/s), {flood_delays} delayed; honest: {honest_sent} sent")
    assert frame > 60_000
    # what was answered (and so stored) is the budget's: the burst and the rate, at most
    # one frame more (the last one's wait counts from its arrival)
    assert size <= BURST + RATE * took + frame
    assert flood_delays >= sent - BURST // frame - 1  # all but the burst waited
    # nothing lost: every message answered was stored whole
    assert await stored_samples(csms_server, "FLOOD") == sent * per_frame
    # the honest station on the same server: never delayed, all of it stored
    assert honest_delays == 0
    assert honest_sent > 0
    assert await stored_samples(csms_server, "HONEST") == honest_sent * 20
    metrics = csms_server.central.metrics
    action = "MeterValues" if version == "ocpp1.6" else "TransactionEvent"
    assert metrics.answers_delayed.labels(action)._value.get() == flood_delays
    assert metrics.answers_delayed_seconds.labels(action)._value.get() > 0
    # the station was told once, in its events
    events = await csms_server.repo.read(
        lambda tx: tx.list_station_events("FLOOD", "quota", limit=10))
    assert [e["payload"]["type"] for e in events] == ["TransactionDataDelayed"]


async def test_without_a_budget_nothing_waits(csms_server: RunningServer) -> None:
    await restart(csms_server, transaction_bytes_per_s=0)
    await csms_server.add_station("FLOOD")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "FLOOD", ["ocpp1.6"]) as f:
        flood = Station(f, "ocpp1.6", "FLOOD")
        await flood.start()
        for _ in range(5):
            await flood.send(650)
        assert csms_server.central.connections["FLOOD"].delayed == 0


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_small_messages_take_at_least_the_minimum_charge(
    csms_server: RunningServer, version: str,
) -> None:
    """A station starts sessions as fast as it is answered, on ever new connectors, each
    start a frame of ~150 bytes that stores a session row, its index entries and events
    (~0.5 to ~1.3 KB): each takes at least ``TRANSACTION_MIN_CHARGE`` from its budget, so
    the rows it makes are the budget's, not ten times more (charged by its frames, it got
    ~8 to 16 times as many starts answered in the same time)."""
    from csms.service.defaults import TRANSACTION_MIN_CHARGE

    rate, burst = 4 * TRANSACTION_MIN_CHARGE, 4 * TRANSACTION_MIN_CHARGE
    await restart(csms_server, transaction_bytes_per_s=rate, transaction_burst_bytes=burst)
    await csms_server.add_station("STARTS")
    async with await RawClient.connect(csms_server.url, "STARTS", [version]) as c:
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < WINDOW:
            answered += 1
            if version == "ocpp1.6":
                await c.result("StartTransaction", {
                    "connectorId": answered, "idTag": f"X{answered}", "meterStart": 0,
                    "timestamp": TS})
            else:
                await c.result("TransactionEvent", {
                    "eventType": "Started", "timestamp": TS, "seqNo": 0,
                    "triggerReason": "Authorized", "evse": {"id": answered, "connectorId": 1},
                    "transactionInfo": {"transactionId": f"tx-{answered}"},
                    "idToken": {"idToken": f"X{answered}", "type": "ISO14443"}})
        took = time.monotonic() - started
    print(f"\n{version}: {answered} starts answered in {took:.2f} s")
    # the burst and the rate, in minimum charges, and the last one (its wait counts from
    # its arrival)
    assert answered <= (burst + rate * took) / TRANSACTION_MIN_CHARGE + 1
    assert len(await csms_server.sessions("STARTS")) == answered  # every one stored
