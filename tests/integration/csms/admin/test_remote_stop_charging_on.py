"""A remote stop the station accepts and does not carry out, over real sockets and the
admin API (csms.service.remote_stops).

``csms remote stop`` showed "stop: Accepted" and nothing more: a hostile host's station
that answers Accepted and keeps charging went on billing the driver, its session settled
as any other. An accepted stop is now recorded (a ``remote_stop`` station event, the
session flagged ``remote_stop_accepted``) and the session, if it charged on after it
(energy grown beyond what was delivered before the stop, or a stop dated later than the
clock's tolerance), is held (``charged_after_remote_stop``) at its completion. A station
that stops when asked is billed as before, its stop sent late or not.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from conftest import BACKENDS

from csms.domain.model import BILLING_HOLD_FLAGS
from csms.domain.tariff import Tariff
from csms.service.ports import Tx
from csms.service.remote_stops import CHARGED_ON_FLAG, STOP_ACCEPTED_FLAG
from support import LONG_AGO, RunningServer, is_queued, later, station_events
from support.admin import api
from support.client import RawClient

pytestmark = pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}
MAX_POWER_W = 22_000


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    await csms_server.add_tariff()

    async def power(tx: Tx) -> None:  # a 22 kW wallbox, as registered
        station = await tx.get_station("CP1")
        assert station is not None
        station.max_power_w = Decimal(MAX_POWER_W)
        await tx.update_station(station)

    await csms_server.repo.unit(power)
    return csms_server


async def charging(server: RunningServer, c: RawClient) -> tuple[int, int]:
    """A 1.6 session started two hours ago, 14 kWh delivered so far: (transaction, session)."""
    await c.result("BootNotification", BOOT16)
    now = datetime.now(UTC)
    started = await c.result("StartTransaction", {
        "connectorId": 1, "idTag": "T1", "meterStart": 1000,
        "timestamp": (now - timedelta(hours=2)).isoformat()})
    txid = int(started["transactionId"])
    await c.result("MeterValues", {"connectorId": 1, "transactionId": txid, "meterValue": [
        {"timestamp": now.isoformat(), "sampledValue": [{"value": "15000"}]}]})
    [session] = [s for s in await server.sessions("CP1") if s["status"] == "active"]
    return txid, int(session["id"])


async def remote_stop(server: RunningServer, c: RawClient, txid: int,
                      args: dict[str, Any]) -> dict[str, Any]:
    """The operator's stop through the admin API, the station answering Accepted."""
    request = asyncio.create_task(api(server, "POST", "/stations/CP1/commands/stop", args))
    call = await asyncio.wait_for(c.calls.get(), 5)
    assert call[2:] == ["RemoteStopTransaction", {"transactionId": txid}]
    await c.answer(call[1], {"status": "Accepted"})
    status, body = await request
    assert status == 200 and body["status"] == "Accepted", body
    return body


async def stop(c: RawClient, txid: int, meter_stop: int, at: datetime) -> None:
    await c.result("StopTransaction", {"transactionId": txid, "meterStop": meter_stop,
                                       "timestamp": at.isoformat(), "reason": "Remote"})


async def completed(server: RunningServer, session_id: int) -> dict[str, Any]:
    [row] = [s for s in await server.sessions("CP1") if s["id"] == session_id]
    assert row["status"] == "completed", row
    return row


async def test_an_accepted_stop_is_recorded_with_the_session(server: RunningServer) -> None:
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        txid, session_id = await charging(server, c)
        body = await remote_stop(server, c, txid, {})
        assert body["session"] == session_id and "still_charging" not in body
        [event] = await station_events(server, "CP1", "remote_stop")
        assert event["session_id"] == session_id and event["energy_wh"] == 14000
        assert abs(datetime.fromisoformat(event["accepted_at"])
                   - datetime.now(UTC)) < timedelta(seconds=30)
        [row] = await server.sessions("CP1")
        assert STOP_ACCEPTED_FLAG in row["flags"]
        assert STOP_ACCEPTED_FLAG not in BILLING_HOLD_FLAGS
        # asked again minutes later, the session still active: the operator is told
        with later(server, timedelta(minutes=5)):
            again = await remote_stop(server, c, txid, {"session": session_id})
        assert again["still_charging"] is True and "still charging" in again["warning"]
        assert again["stop_accepted_at"] == event["accepted_at"]


async def test_energy_grown_after_an_accepted_stop_is_held(server: RunningServer) -> None:
    """The station accepts, charges on for half an hour (11 kW) and dates its stop as if it
    had stopped at once: the energy after the accept gives it away."""
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        txid, session_id = await charging(server, c)
        await remote_stop(server, c, txid, {"session": session_id})
        accepted = datetime.now(UTC)
        with later(server, timedelta(minutes=30)):
            await stop(c, txid, 15000 + 5500, accepted + timedelta(seconds=5))
    row = await completed(server, session_id)
    assert CHARGED_ON_FLAG in row["flags"] and CHARGED_ON_FLAG in BILLING_HOLD_FLAGS, row
    assert not await is_queued(server, session_id)
    [held] = await station_events(server, "CP1", CHARGED_ON_FLAG)
    assert held["session_id"] == session_id and held["energy_after_wh"] == 5500
    assert 0 < held["allowed_wh"] < 5500, held


@pytest.mark.parametrize("per_minute", ["0.05", None])
async def test_a_stop_dated_long_after_the_accept_is_held(server: RunningServer,
                                                         per_minute: str | None) -> None:
    """The station accepts, delivers nothing more (a full car) and stops 30 minutes later:
    30 minutes billed after the stop the operator made under a price per minute (parking),
    held; under a price by energy alone nothing more is billed (a 2.0.1 transaction that
    ends at the unplug ends late honestly), not held."""
    if per_minute is not None:
        async def by_minute(tx: Tx) -> None:
            await tx.add_tariff(Tariff("CP1", Decimal("0.39"), "EUR", 2,
                                       per_minute=Decimal(per_minute), valid_from=LONG_AGO))

        await server.repo.unit(by_minute)
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        txid, session_id = await charging(server, c)
        await remote_stop(server, c, txid, {})
        with later(server, timedelta(minutes=30)):
            await stop(c, txid, 15000, datetime.now(UTC) + timedelta(minutes=30))
    row = await completed(server, session_id)
    if per_minute is None:
        assert not BILLING_HOLD_FLAGS.intersection(row["flags"]), row
        assert await station_events(server, "CP1", CHARGED_ON_FLAG) == []
        return
    assert CHARGED_ON_FLAG in row["flags"], row
    [held] = await station_events(server, "CP1", CHARGED_ON_FLAG)
    assert held["stop_late_s"] >= 29 * 60 and held["energy_after_wh"] == 0


@pytest.mark.parametrize("sent_after", [timedelta(0), timedelta(minutes=40)])
async def test_a_station_that_stops_when_asked_is_billed(
        server: RunningServer, sent_after: timedelta) -> None:
    """Stopped at once (what it delivered since its last reading, before the stop, in its
    meterStop), its stop sent at once or, after a lost connection, 40 minutes later."""
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        txid, session_id = await charging(server, c)
        await remote_stop(server, c, txid, {})
        accepted = datetime.now(UTC)
        with later(server, sent_after):
            await stop(c, txid, 15000 + 150, accepted + timedelta(seconds=3))
    row = await completed(server, session_id)
    assert STOP_ACCEPTED_FLAG in row["flags"], row
    assert not BILLING_HOLD_FLAGS.intersection(row["flags"]), row
    assert await is_queued(server, session_id)
    assert await station_events(server, "CP1", CHARGED_ON_FLAG) == []


async def test_a_rejected_stop_records_nothing(server: RunningServer) -> None:
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        txid, session_id = await charging(server, c)
        request = asyncio.create_task(api(server, "POST", "/stations/CP1/commands/stop", {}))
        call = await asyncio.wait_for(c.calls.get(), 5)
        await c.answer(call[1], {"status": "Rejected"})
        assert (await request)[1]["status"] == "Rejected"
        assert await station_events(server, "CP1", "remote_stop") == []
        await stop(c, txid, 15000, datetime.now(UTC))
    row = await completed(server, session_id)
    assert STOP_ACCEPTED_FLAG not in row["flags"] and CHARGED_ON_FLAG not in row["flags"]


BOOT201 = {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}}


async def event201(c: RawClient, seq: int, kind: str, at: datetime, wh: int,
                   trigger: str) -> None:
    info: dict[str, Any] = {"transactionId": "TX1"}
    if kind == "Ended":
        info["stoppedReason"] = "Remote"
    context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}.get(
        kind, "Sample.Periodic")
    await c.result("TransactionEvent", {
        "eventType": kind, "timestamp": at.isoformat(), "seqNo": seq,
        "triggerReason": trigger, "transactionInfo": info,
        "evse": {"id": 1, "connectorId": 1},
        **({"idToken": {"idToken": "T1", "type": "ISO14443"}} if kind == "Started" else {}),
        "meterValue": [{"timestamp": at.isoformat(),
                        "sampledValue": [{"value": wh, "context": context}]}]})


@pytest.mark.parametrize("after_wh", [5500, 150])
async def test_a_2_0_1_request_stop_accepted(server: RunningServer, after_wh: int) -> None:
    """2.0.1 RequestStopTransaction: the station accepts, and either charges on (5.5 kWh
    more, reported after the accept, its Ended event dated at the accept) or stops."""
    await server.add_station("CP2")

    async def power(tx: Tx) -> None:
        station = await tx.get_station("CP2")
        assert station is not None
        station.max_power_w = Decimal(MAX_POWER_W)
        await tx.update_station(station)

    await server.repo.unit(power)
    async with await RawClient.connect(server.url, "CP2", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        now = datetime.now(UTC)
        await event201(c, 0, "Started", now - timedelta(hours=2), 1000, "Authorized")
        await event201(c, 1, "Updated", now, 15000, "MeterValuePeriodic")
        [session] = [s for s in await server.sessions("CP2")]
        request = asyncio.create_task(api(server, "POST", "/stations/CP2/commands/stop", {}))
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RequestStopTransaction", {"transactionId": "TX1"}]
        await c.answer(call[1], {"status": "Accepted"})
        assert (await request)[1]["session"] == session["id"]
        accepted = datetime.now(UTC)
        with later(server, timedelta(minutes=20)):
            if after_wh > 1000:  # charging on: a reading after the accept, backdated
                await event201(c, 2, "Updated", accepted, 15000 + after_wh,
                               "MeterValuePeriodic")
            await event201(c, 3, "Ended", accepted + timedelta(seconds=5),
                           15000 + after_wh, "RemoteStop")
    [row] = [s for s in await server.sessions("CP2") if s["id"] == session["id"]]
    assert row["status"] == "completed", row
    if after_wh > 1000:
        assert CHARGED_ON_FLAG in row["flags"], row
        assert not await is_queued(server, int(row["id"]))
    else:
        assert not BILLING_HOLD_FLAGS.intersection(row["flags"]), row
        assert await is_queued(server, int(row["id"]))


async def test_a_stop_naming_the_transaction_is_recorded_too(server: RunningServer) -> None:
    """The admin API takes the station's transactionId as well: the stop is recorded for
    its session all the same (not a way around the record)."""
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        txid, session_id = await charging(server, c)
        body = await remote_stop(server, c, txid, {"transaction_id": str(txid)})
        assert body["session"] == session_id
        [event] = await station_events(server, "CP1", "remote_stop")
        assert event["session_id"] == session_id
