"""A start a station sends long after the time it gives for it, over real sockets
(csms.service.core ``start_sent_late``).

A station connected all along sends a transaction's start as it starts; one that says, in a
start it sends now, that the session started half an hour ago although it has been
connected for an hour makes the session half an hour longer than it ran (a price per
minute, more energy allowed for its time): held. A start kept while the station was
offline and sent once it connected again, or dated a few minutes back by a clock behind,
is no such start: billed as before.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from csms.service.core import START_SENT_LATE
from support import RunningServer, is_queued, station_events
from support.client import RawClient

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}
BOOT201 = {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}}


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    await csms_server.add_station("CP16")
    await csms_server.add_station("CP201")
    await csms_server.add_tag("T1")
    return csms_server


async def connect(server: RunningServer, station: str, ago: timedelta) -> RawClient:
    """``station`` connected and booted ``ago`` before now, as the central system's clock
    records it (its clock is the real one again afterwards)."""
    assert server.app is not None
    service = server.app.service
    real: Callable[[], datetime] = service.clock
    service.clock = lambda: datetime.now(UTC) - ago
    try:
        version = "ocpp1.6" if station == "CP16" else "ocpp2.0.1"
        c = await RawClient.connect(server.url, station, [version])
        await c.result("BootNotification", BOOT16 if station == "CP16" else BOOT201)
    finally:
        service.clock = real
    return c


async def session16(c: RawClient, started: datetime) -> int:
    """A 1.6 session the station says started at ``started``, stopped now; its id."""
    answer = await c.result("StartTransaction", {
        "connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": started.isoformat()})
    txid = int(answer["transactionId"])
    await c.result("StopTransaction", {
        "transactionId": txid, "meterStop": 2000, "timestamp": datetime.now(UTC).isoformat(),
        "reason": "Local"})
    return txid


async def session201(server: RunningServer, c: RawClient, started: datetime) -> int:
    """A 2.0.1 transaction whose Started event says it started at ``started``, ended now;
    its session's id."""
    end = datetime.now(UTC)
    for seq, kind, at, extra in (
            (0, "Started", started, {"idToken": {"idToken": "T1", "type": "ISO14443"},
                                     "meterValue": [{"timestamp": started.isoformat(),
                                                     "sampledValue": [{
                                                         "value": 0,
                                                         "context": "Transaction.Begin"}]}]}),
            (1, "Ended", end, {"meterValue": [{"timestamp": end.isoformat(),
                                               "sampledValue": [{
                                                   "value": 2000,
                                                   "context": "Transaction.End"}]}]})):
        info: dict[str, Any] = {"transactionId": "T1"}
        if kind == "Ended":
            info["stoppedReason"] = "Local"
        await c.result("TransactionEvent", {
            "eventType": kind, "timestamp": at.isoformat(), "seqNo": seq,
            "triggerReason": "Authorized" if kind == "Started" else "StopAuthorized",
            "transactionInfo": info, "evse": {"id": 1, "connectorId": 1}, **extra})
    [session] = await server.sessions("CP201")
    return int(session["id"])


async def flags(server: RunningServer, station: str) -> list[str]:
    [session] = await server.sessions(station)
    return list(session["flags"])


@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_start_dated_back_within_a_connection_is_held(
    server: RunningServer, station: str,
) -> None:
    """Connected for an hour, the station sends now a start it dates half an hour back."""
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, station, timedelta(hours=1)) as c:
        sid = await session16(c, started) if station == "CP16" \
            else await session201(server, c, started)
    assert START_SENT_LATE in await flags(server, station)
    assert not await is_queued(server, sid)
    [event] = await station_events(server, station, START_SENT_LATE)
    assert event["session_id"] == sid
    assert datetime.fromisoformat(event["started_at"]) == started
    assert datetime.fromisoformat(event["connected_at"]) < started


@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_start_kept_offline_and_sent_on_reconnecting_is_not_held(
    server: RunningServer, station: str,
) -> None:
    """Connected an hour ago, gone, back now: the start it kept while offline, half an
    hour ago, is sent on the new connection. Billed as before."""
    first = await connect(server, station, timedelta(hours=1))
    await first.close()
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, station, timedelta(0)) as c:
        sid = await session16(c, started) if station == "CP16" \
            else await session201(server, c, started)
    assert START_SENT_LATE not in await flags(server, station)
    assert await is_queued(server, sid)
    assert await station_events(server, station, START_SENT_LATE) == []


@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_clock_a_few_minutes_behind_is_not_held(
    server: RunningServer, station: str,
) -> None:
    """Connected for an hour, the station's clock five minutes behind (within
    ``time_future``): its start, sent at once, is dated five minutes back. Billed as
    before."""
    started = datetime.now(UTC) - timedelta(minutes=5)
    async with await connect(server, station, timedelta(hours=1)) as c:
        sid = await session16(c, started) if station == "CP16" \
            else await session201(server, c, started)
    assert START_SENT_LATE not in await flags(server, station)
    assert await is_queued(server, sid)
