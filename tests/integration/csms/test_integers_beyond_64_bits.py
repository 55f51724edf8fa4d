"""Integers no 64-bit column can hold, from a hostile station, through real sockets.

The OCPP schemas bound none of their integers, and fastjsonschema takes 2**70 (and, in
the draft-6 schemas of 2.0.1, 1e300) as one. Outside transactions such a message used
to reach storage, where SQLite raised OverflowError: an InternalError and a logged
traceback for every message the station cared to send. It is now refused with
TypeConstraintViolation, and transaction messages are still acknowledged (their
translation notes the number and holds the session instead).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from support import RunningServer
from support.client import RawClient

T = "2026-03-01T10:01:00Z"


async def boot(c: RawClient, version: str) -> None:
    if version == "1.6":
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    else:
        await c.result("BootNotification", {"reason": "PowerUp",
                                            "chargingStation": {"vendorName": "V", "model": "M"}})


def status(version: str, value: Any) -> dict[str, Any]:
    if version == "1.6":
        return {"connectorId": value, "errorCode": "NoError", "status": "Available"}
    return {"timestamp": T, "connectorStatus": "Available", "evseId": value, "connectorId": 1}


@pytest.mark.parametrize(("version", "value"), [
    ("1.6", 2**70), ("1.6", 2**63), ("1.6", -(2**63) - 1),
    ("2.0.1", 2**70), ("2.0.1", -(2**70)), ("2.0.1", 1e300), ("2.0.1", 2**64),
])
async def test_a_status_beyond_64_bits_is_refused_and_the_connection_lives(
    csms_server: RunningServer, caplog: pytest.LogCaptureFixture, version: str, value: Any,
) -> None:
    await csms_server.add_station("CP1")
    field = "connectorId" if version == "1.6" else "evseId"
    async with await RawClient.connect(csms_server.url, "CP1", [f"ocpp{version}"]) as c:
        await boot(c, version)
        answer = await c.call("StatusNotification", status(version, value))
        assert answer[0] == 4 and answer[2] == "TypeConstraintViolation", answer
        assert answer[3] == f"{field}: an integer beyond 64 bits"
        assert "currentTime" in await c.result("Heartbeat", {})
        # the edge itself is stored
        assert (await c.call("StatusNotification", status(version, 2**63 - 1)))[0] == 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_nested_integers_are_found_with_their_path(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp2.0.1"]) as c:
        await boot(c, "2.0.1")
        answer = await c.call("NotifyEvent", {
            "generatedAt": T, "seqNo": 0, "eventData": [
                {"eventId": 1, "timestamp": T, "trigger": "Alerting", "actualValue": "1",
                 "eventNotificationType": "HardWiredNotification",
                 "component": {"name": "EVSE", "evse": {"id": 1}},
                 "variable": {"name": "Problem"}},
                {"eventId": 2, "timestamp": T, "trigger": "Alerting", "actualValue": "1",
                 "eventNotificationType": "HardWiredNotification",
                 "component": {"name": "EVSE", "evse": {"id": 2**70}},
                 "variable": {"name": "Problem"}}]})
        assert answer[2] == "TypeConstraintViolation"
        assert answer[3] == "eventData[1].component.evse.id: an integer beyond 64 bits"


@pytest.mark.parametrize("value", [2**70, 2**63])
async def test_transaction_messages_are_still_acknowledged(
    csms_server: RunningServer, value: int,
) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp2.0.1"]) as c:
        await boot(c, "2.0.1")
        answer = await c.call("TransactionEvent", {
            "eventType": "Started", "timestamp": T, "triggerReason": "Authorized",
            "seqNo": value, "transactionInfo": {"transactionId": "tx1"},
            "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": "T1", "type": "ISO14443"}})
        assert answer[0] == 3, answer
    (session,) = await csms_server.sessions("CP1")
    assert session["transaction_id"] == "tx1"


async def test_a_start_just_below_the_64_bit_range_is_acknowledged(
    csms_server: RunningServer,
) -> None:
    # -2**63 - 1 has 19 digits: orjson reads it as a float, which the schema's integer
    # refused, so a transaction message was refused for its value. It is read exactly.
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await boot(c, "1.6")
        answer = await c.call("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": -(2**63) - 1, "timestamp": T})
        assert answer[0] == 3, answer
    (session,) = await csms_server.sessions("CP1")
    assert "value_out_of_range" in session["flags"]  # noted, and the session held
