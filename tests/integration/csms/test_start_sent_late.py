"""A start a station sends long after the time it gives for it, over real sockets
(csms.service.core ``start_sent_late``).

A station connected all along sends a transaction's start as it starts; one that says, in a
start it sends now, that the session started half an hour ago although it has been
connected for an hour makes the session half an hour longer than it ran (a price per
minute, more energy allowed for its time): held when it completes. The station's clock is
judged by its own stop: one whose clock runs behind dates its start and its stop back
alike, and its sessions are as long as they ran. A start kept while the station was
offline and sent once it connected again, a stop sent late after a start sent at once, or
a start dated a few minutes back by a clock behind, is no such start: billed as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from csms.service.core import START_SENT_LATE
from support import RunningServer, is_queued, later, station_events
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


async def close_at(server: RunningServer, c: RawClient, station: str, ago: timedelta) -> None:
    """Close ``c`` with the central system's clock ``ago`` behind the real one, as a
    connection it saw end then (its ``offline`` event stored at that time)."""
    assert server.app is not None
    service = server.app.service
    real: Callable[[], datetime] = service.clock
    before = len(await station_events(server, station, "offline"))
    service.clock = lambda: datetime.now(UTC) - ago
    try:
        await c.close()
        for _ in range(200):
            if len(await station_events(server, station, "offline")) > before:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the connection's end was not recorded")
    finally:
        service.clock = real


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
    """Connected an hour ago, gone 31 minutes ago, back now: the start it kept while
    offline, half an hour ago, is sent on the new connection. Billed as before."""
    first = await connect(server, station, timedelta(hours=1))
    await close_at(server, first, station, timedelta(minutes=31))
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, station, timedelta(0)) as c:
        sid = await session16(c, started) if station == "CP16" \
            else await session201(server, c, started)
    assert START_SENT_LATE not in await flags(server, station)
    assert await is_queued(server, sid)
    assert await station_events(server, station, START_SENT_LATE) == []


@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_start_sent_on_a_connection_not_kept_over_the_quota_is_not_held(
    server: RunningServer, station: str,
) -> None:
    """As above, but the station is over its hourly quota of connection events: the new
    connection's ``online`` event is not kept, and the connection the start came over is
    not known. Its latest kept one, made an hour ago, is not taken for it: billed as
    before (the station held for a start it kept offline otherwise)."""
    await server.stop()
    server.settings = replace(server.settings, quota_connection_events=256)
    await server.start()
    first = await connect(server, station, timedelta(hours=1))
    await first.close()
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, station, timedelta(0)) as c:
        sid = await session16(c, started) if station == "CP16" \
            else await session201(server, c, started)
    assert len(await station_events(server, station, "online")) == 1
    assert START_SENT_LATE not in await flags(server, station)
    assert await is_queued(server, sid)


@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_start_sent_on_a_connection_made_while_the_disk_was_low_is_not_held(
    server: RunningServer, station: str,
) -> None:
    """As above, but the station reconnects while the database has less free space than
    the reserve kept for transaction data: no quota note says that an ``online`` event
    was dropped, yet the one of the connection the start came over must not be (the
    latest kept one, an hour old, would be taken for it and the start held)."""
    first = await connect(server, station, timedelta(hours=1))
    await close_at(server, first, station, timedelta(minutes=31))
    await server.stop()
    server.settings = replace(server.settings, storage_reserve=1 << 60)  # any disk is low
    await server.start()
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, station, timedelta(0)) as c:
        sid = await session16(c, started) if station == "CP16" \
            else await session201(server, c, started)
    assert START_SENT_LATE not in await flags(server, station)
    assert await is_queued(server, sid)


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


@pytest.mark.parametrize("csms_db", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)],
                         indirect=True)
@pytest.mark.parametrize("behind", [timedelta(minutes=20), timedelta(hours=5)])
async def test_a_station_whose_clock_is_behind_is_not_held_for_every_session(
    server: RunningServer, behind: timedelta,
) -> None:
    """Connected for six hours, the station's clock runs ``behind`` (never synchronised,
    or local time of UTC-5 sent as UTC): every time it sends is that far back, its start
    sent at once, its stop a minute later by its own clock. Nothing was sent late; the
    session is as long as it ran, and was billed before start_sent_late existed."""
    async with await connect(server, "CP16", timedelta(hours=6)) as c:
        started = datetime.now(UTC) - behind
        answer = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 0,
            "timestamp": started.isoformat()})
        await c.result("StopTransaction", {
            "transactionId": int(answer["transactionId"]), "meterStop": 2000,
            "timestamp": (started + timedelta(minutes=1)).isoformat(), "reason": "Local"})
    assert START_SENT_LATE not in await flags(server, "CP16")
    assert await station_events(server, "CP16", START_SENT_LATE) == []


@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_start_dated_back_is_held_when_the_session_completes(
    server: RunningServer, station: str,
) -> None:
    """The start dated half an hour back is judged when the session completes, against the
    station's clock as its stop shows it (the stop is what tells a clock behind from a
    start dated back): nothing is held while it runs, and it is held, never queued for
    settlement, once its stop comes."""
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, station, timedelta(hours=1)) as c:
        if station == "CP16":
            answer = await c.result("StartTransaction", {
                "connectorId": 1, "idTag": "T1", "meterStart": 0,
                "timestamp": started.isoformat()})
        else:
            await c.result("TransactionEvent", {
                "eventType": "Started", "timestamp": started.isoformat(), "seqNo": 0,
                "triggerReason": "Authorized", "transactionInfo": {"transactionId": "T1"},
                "idToken": {"idToken": "T1", "type": "ISO14443"},
                "evse": {"id": 1, "connectorId": 1},
                "meterValue": [{"timestamp": started.isoformat(), "sampledValue": [{
                    "value": 0, "context": "Transaction.Begin"}]}]})
        [running] = await server.sessions(station)
        assert running["status"] == "active" and START_SENT_LATE not in running["flags"]
        assert await station_events(server, station, START_SENT_LATE) == []
        end = datetime.now(UTC)
        if station == "CP16":
            await c.result("StopTransaction", {
                "transactionId": int(answer["transactionId"]), "meterStop": 2000,
                "timestamp": end.isoformat(), "reason": "Local"})
        else:
            await c.result("TransactionEvent", {
                "eventType": "Ended", "timestamp": end.isoformat(), "seqNo": 1,
                "triggerReason": "StopAuthorized",
                "transactionInfo": {"transactionId": "T1", "stoppedReason": "Local"},
                "evse": {"id": 1, "connectorId": 1},
                "meterValue": [{"timestamp": end.isoformat(), "sampledValue": [{
                    "value": 2000, "context": "Transaction.End"}]}]})
    assert START_SENT_LATE in await flags(server, station)
    assert not await is_queued(server, int(running["id"]))
    [event] = await station_events(server, station, START_SENT_LATE)
    assert datetime.fromisoformat(event["stopped_at"]) == end


@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_session_kept_offline_and_replayed_on_reconnecting_is_not_held(
    server: RunningServer, station: str,
) -> None:
    """Connected two hours ago, gone: a whole session, started 90 and stopped 30 minutes
    ago, kept while offline, both its start and its stop sent on the new connection."""
    first = await connect(server, station, timedelta(hours=2))
    await close_at(server, first, station, timedelta(minutes=91))
    started = datetime.now(UTC) - timedelta(minutes=90)
    stopped = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, station, timedelta(0)) as c:
        if station == "CP16":
            answer = await c.result("StartTransaction", {
                "connectorId": 1, "idTag": "T1", "meterStart": 0,
                "timestamp": started.isoformat()})
            await c.result("StopTransaction", {
                "transactionId": int(answer["transactionId"]), "meterStop": 2000,
                "timestamp": stopped.isoformat(), "reason": "Local"})
        else:
            for seq, kind, at in ((0, "Started", started), (1, "Ended", stopped)):
                await c.result("TransactionEvent", {
                    "eventType": kind, "timestamp": at.isoformat(), "seqNo": seq,
                    "offline": True, "triggerReason": "Authorized",
                    "transactionInfo": {"transactionId": "T1", **(
                        {"stoppedReason": "Local"} if kind == "Ended" else {})},
                    "evse": {"id": 1, "connectorId": 1},
                    **({"idToken": {"idToken": "T1", "type": "ISO14443"}}
                       if kind == "Started" else {}),
                    "meterValue": [{"timestamp": at.isoformat(), "sampledValue": [{
                        "value": 0 if kind == "Started" else 2000,
                        "context": "Transaction.Begin" if kind == "Started"
                        else "Transaction.End"}]}]})
    assert START_SENT_LATE not in await flags(server, station)
    assert await station_events(server, station, START_SENT_LATE) == []


@pytest.mark.parametrize("csms_db", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)],
                         indirect=True)
@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_stop_sent_late_after_a_start_sent_at_once_is_not_held(
    server: RunningServer, station: str,
) -> None:
    """Connected for an hour, the station sends its start at once; its stop, an hour
    later by its clock, reaches the central system only two hours after the start (kept
    in the station's queue). The stop's lag moves the station's start later by our clock:
    nothing was dated back, and nothing is held (``offline_events`` aside)."""
    started = datetime.now(UTC)
    stopped = started + timedelta(hours=1)
    async with await connect(server, station, timedelta(hours=1)) as c:
        if station == "CP16":
            answer = await c.result("StartTransaction", {
                "connectorId": 1, "idTag": "T1", "meterStart": 0,
                "timestamp": started.isoformat()})
            with later(server, timedelta(hours=2)):
                await c.result("StopTransaction", {
                    "transactionId": int(answer["transactionId"]), "meterStop": 2000,
                    "timestamp": stopped.isoformat(), "reason": "Local"})
        else:
            await c.result("TransactionEvent", {
                "eventType": "Started", "timestamp": started.isoformat(), "seqNo": 0,
                "triggerReason": "Authorized", "transactionInfo": {"transactionId": "T1"},
                "idToken": {"idToken": "T1", "type": "ISO14443"},
                "evse": {"id": 1, "connectorId": 1},
                "meterValue": [{"timestamp": started.isoformat(), "sampledValue": [{
                    "value": 0, "context": "Transaction.Begin"}]}]})
            with later(server, timedelta(hours=2)):
                await c.result("TransactionEvent", {
                    "eventType": "Ended", "timestamp": stopped.isoformat(), "seqNo": 1,
                    "triggerReason": "StopAuthorized",
                    "transactionInfo": {"transactionId": "T1", "stoppedReason": "Local"},
                    "evse": {"id": 1, "connectorId": 1},
                    "meterValue": [{"timestamp": stopped.isoformat(), "sampledValue": [{
                        "value": 2000, "context": "Transaction.End"}]}]})
    assert START_SENT_LATE not in await flags(server, station)
    assert await station_events(server, station, START_SENT_LATE) == []
    [session] = await server.sessions(station)
    assert await is_queued(server, int(session["id"]))


@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_start_dated_back_within_a_connection_is_held_after_a_reconnect(
    server: RunningServer, station: str,
) -> None:
    """Connected for an hour, the station sends now a start it dates half an hour back
    (held before the start was judged at the completion), then drops its connection and
    connects again before it sends its stop, dated as sent. The start was sent on a
    connection made long before it: a reconnect after it changes nothing of that, and must
    not let a station that dated its start back escape ``start_sent_late`` by reconnecting
    once during each session."""
    started = datetime.now(UTC) - timedelta(minutes=30)
    first = await connect(server, station, timedelta(hours=1))
    if station == "CP16":
        answer = await first.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 0,
            "timestamp": started.isoformat()})
    else:
        await first.result("TransactionEvent", {
            "eventType": "Started", "timestamp": started.isoformat(), "seqNo": 0,
            "triggerReason": "Authorized", "transactionInfo": {"transactionId": "T1"},
            "idToken": {"idToken": "T1", "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": started.isoformat(), "sampledValue": [{
                "value": 0, "context": "Transaction.Begin"}]}]})
    await first.close()
    end = datetime.now(UTC)
    async with await connect(server, station, timedelta(0)) as c:
        if station == "CP16":
            await c.result("StopTransaction", {
                "transactionId": int(answer["transactionId"]), "meterStop": 2000,
                "timestamp": end.isoformat(), "reason": "Local"})
        else:
            await c.result("TransactionEvent", {
                "eventType": "Ended", "timestamp": end.isoformat(), "seqNo": 1,
                "triggerReason": "StopAuthorized",
                "transactionInfo": {"transactionId": "T1", "stoppedReason": "Local"},
                "evse": {"id": 1, "connectorId": 1},
                "meterValue": [{"timestamp": end.isoformat(), "sampledValue": [{
                    "value": 2000, "context": "Transaction.End"}]}]})
    assert START_SENT_LATE in await flags(server, station)


@pytest.mark.parametrize("csms_db", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)],
                         indirect=True)
@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_start_dated_back_into_an_earlier_connection_is_held(
    server: RunningServer, station: str,
) -> None:
    """Connected two hours ago and until a minute ago, the station connects again and
    sends now a start it dates half an hour back, and its stop: it was connected at that
    start and for 29 minutes after it (its connection pinged, alive) and sent no start.
    A reconnect made for it must not let a start dated back escape: held."""
    first = await connect(server, station, timedelta(hours=2))
    await close_at(server, first, station, timedelta(minutes=1))
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, station, timedelta(0)) as c:
        sid = await session16(c, started) if station == "CP16" \
            else await session201(server, c, started)
    assert START_SENT_LATE in await flags(server, station)
    assert not await is_queued(server, sid)
    [event] = await station_events(server, station, START_SENT_LATE)
    assert event["session_id"] == sid
    assert datetime.fromisoformat(event["connected_at"]) < started
    # alive until its end less a ping interval and its timeout (70 s)
    assert datetime.fromisoformat(event["connected_until"]) > started + timedelta(minutes=27)


@pytest.mark.parametrize("until", [timedelta(minutes=31), timedelta(minutes=25)])
async def test_a_start_kept_after_a_connection_lost_at_or_just_after_it_is_not_held(
    server: RunningServer, until: timedelta,
) -> None:
    """The station's earlier connection ended ``until`` ago: before its start, half an hour
    ago, or five minutes after it (the station lost its network as it started, within
    ``time_future``): the start it kept is sent on the new connection. Billed as before."""
    first = await connect(server, "CP16", timedelta(hours=2))
    await close_at(server, first, "CP16", until)
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, "CP16", timedelta(0)) as c:
        sid = await session16(c, started)
    assert START_SENT_LATE not in await flags(server, "CP16")
    assert await is_queued(server, sid)


@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_start_dated_back_into_a_connection_it_replaced_is_held(
    server: RunningServer, station: str,
) -> None:
    """Connected two hours ago, the station opens a second connection (the first, alive
    and pinged until then, is replaced by it) and sends on it a start dated half an hour
    back: it was connected at that start and long after. Held as above."""
    first = await connect(server, station, timedelta(hours=2))
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, station, timedelta(0)) as c:
        [replaced] = await station_events(server, station, "security")
        assert replaced["type"] == "ConnectionReplaced"
        sid = await session16(c, started) if station == "CP16" \
            else await session201(server, c, started)
    await first.close()
    assert START_SENT_LATE in await flags(server, station)
    assert not await is_queued(server, sid)


async def test_without_pings_an_earlier_connections_end_holds_no_start(
    csms_server: RunningServer,
) -> None:
    """Without pings (``ping_interval`` 0) the central system does not know when a
    connection died: one it closed late (a dead link's TCP timeout), or still held when
    the station connected again, says nothing of whether the station was connected at a
    start it kept offline. The same session as the one held above: billed as before."""
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, ping_interval=0)
    await csms_server.start()
    server = csms_server
    await server.add_station("CP16")
    await server.add_tag("T1")
    first = await connect(server, "CP16", timedelta(hours=2))
    await close_at(server, first, "CP16", timedelta(minutes=1))
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, "CP16", timedelta(0)) as c:
        sid = await session16(c, started)
    assert START_SENT_LATE not in await flags(server, "CP16")
    assert await is_queued(server, sid)


async def test_a_start_dated_back_behind_many_reconnects_is_held(
    server: RunningServer,
) -> None:
    """As above, with 60 short connections made between the one open at the start and the
    one the start is sent on (more than the latest connections a check reads): the
    connection open at the start is found by its time, not among the latest. Held."""
    first = await connect(server, "CP16", timedelta(hours=2))
    await close_at(server, first, "CP16", timedelta(minutes=1))
    for _ in range(60):
        c = await RawClient.connect(server.url, "CP16", ["ocpp1.6"])
        await c.close()
    started = datetime.now(UTC) - timedelta(minutes=30)
    async with await connect(server, "CP16", timedelta(0)) as c:
        sid = await session16(c, started)
    assert START_SENT_LATE in await flags(server, "CP16")
    assert not await is_queued(server, sid)


@pytest.mark.parametrize("station", ["CP16", "CP201"])
async def test_a_start_dated_back_into_a_connection_the_station_closed_is_held(
    server: RunningServer, station: str,
) -> None:
    """Connected two hours ago, the station closes its connection itself (its close frame
    received: alive to its end, not a link a ping found dead), connects again at once and
    sends a start dated 650 s back: more than ``time_future`` (600 s) inside the closed
    connection's life. Held: the ping interval and timeout (70 s) are no allowance for a
    connection the station ended itself."""
    first = await connect(server, station, timedelta(hours=2))
    await close_at(server, first, station, timedelta(0))
    [ended] = await station_events(server, station, "offline")
    assert ended["closed_by_station"] is True
    started = datetime.now(UTC) - timedelta(seconds=650)
    async with await connect(server, station, timedelta(0)) as c:
        sid = await session16(c, started) if station == "CP16" \
            else await session201(server, c, started)
    assert START_SENT_LATE in await flags(server, station)
    assert not await is_queued(server, sid)
