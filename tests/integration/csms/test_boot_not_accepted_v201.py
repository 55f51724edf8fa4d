"""A 2.0.1 station whose BootNotification was answered Pending or Rejected, over real
sockets: until it is accepted, the central system answers its other requests with a
CALLERROR SecurityError (2.0.1 Part 2 B02.FR.09 for Pending, B03.FR.07 for Rejected;
OCTT TC_B_30_CSMS), rather than acting on them, on its connection and on a new one it
opens without booting (the stored verdict)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from support import RunningServer
from support.client import RawClient

BOOT = {"chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"}
TOKEN = {"idToken": "T1", "type": "ISO14443"}


@pytest.mark.parametrize(("policy", "status"), [("pending", "Pending"),
                                                 ("rejected", "Rejected")])
async def test_requests_after_a_boot_not_accepted_get_security_error(
    csms_server: RunningServer, policy: str, status: str,
) -> None:
    await csms_server.add_station("EV1", boot=policy)
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        assert (await c.result("BootNotification", BOOT))["status"] == status
        answer = await c.call("Authorize", {"idToken": TOKEN})
        assert answer[0] == 4 and answer[2] == "SecurityError", answer
        answer = await c.call("TransactionEvent", {
            "eventType": "Started", "timestamp": "2026-03-01T10:00:00Z", "seqNo": 0,
            "triggerReason": "Authorized", "transactionInfo": {"transactionId": "tx-1"},
            "idToken": TOKEN, "evse": {"id": 1, "connectorId": 1}})
        assert answer[0] == 4 and answer[2] == "SecurityError", answer
    assert await csms_server.sessions("EV1") == []


STATUS = {"timestamp": "2026-03-01T10:00:00Z", "connectorStatus": "Available", "evseId": 1,
          "connectorId": 1}


async def answer_next(c: RawClient, action: str, payload: dict[str, Any]) -> None:
    async with asyncio.timeout(5):
        msg = await c.calls.get()
    assert msg[2] == action, msg
    await c.answer(msg[1], payload)


async def test_a_pending_station_may_send_what_it_was_triggered_for(
        csms_server: RunningServer) -> None:
    """B02.FR.09: a message the CSMS asked for with TriggerMessage (or a NotifyReport after
    GetBaseReport) is let through while Pending; one whose trigger the station refused,
    and every other request, are not."""
    await csms_server.add_station("EV1", boot="pending")
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Pending"
        # a trigger the station refuses lets nothing through
        asking = asyncio.create_task(csms_server.call(
            "EV1", "TriggerMessage", {"requestedMessage": "Heartbeat"}))
        await answer_next(c, "TriggerMessage", {"status": "Rejected"})
        assert (await asking)["status"] == "Rejected"
        answer = await c.call("Heartbeat", {})
        assert answer[0] == 4 and answer[2] == "SecurityError", answer
        # an accepted one does
        asking = asyncio.create_task(csms_server.call(
            "EV1", "TriggerMessage", {"requestedMessage": "StatusNotification",
                                      "evse": {"id": 1, "connectorId": 1}}))
        await answer_next(c, "TriggerMessage", {"status": "Accepted"})
        await asking
        assert await c.result("StatusNotification", STATUS) == {}
        answer = await c.call("Heartbeat", {})  # not asked for
        assert answer[0] == 4 and answer[2] == "SecurityError", answer
        asking = asyncio.create_task(csms_server.call(
            "EV1", "GetBaseReport", {"requestId": 7, "reportBase": "SummaryInventory"}))
        await answer_next(c, "GetBaseReport", {"status": "Accepted"})
        await asking
        assert await c.result("NotifyReport", {
            "requestId": 7, "generatedAt": "2026-03-01T10:00:00Z", "seqNo": 0}) == {}
        # accepted at the next boot: served again
        await csms_server.set_boot("EV1", "accepted")
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
        assert "currentTime" in await c.result("Heartbeat", {})


async def test_a_rejected_station_boots_again_and_is_accepted(
        csms_server: RunningServer) -> None:
    await csms_server.add_station("EV1", boot="rejected")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Rejected"
        answer = await c.call("Authorize", {"idToken": TOKEN}, message_id="auth-1")
        assert answer[0] == 4 and answer[2] == "SecurityError", answer
        await csms_server.set_boot("EV1", "accepted")
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
        # the refused message again, with the same message id: handled now, not replayed
        again = await c.call("Authorize", {"idToken": TOKEN}, message_id="auth-1")
        assert again[0] == 3 and again[2]["idTokenInfo"]["status"] == "Accepted", again


@pytest.mark.parametrize("boot", ["never", "accepted"])
async def test_a_station_not_booted_on_this_connection_is_served(
        csms_server: RunningServer, boot: str) -> None:
    """A reconnecting station may send before its BootNotification: served as before when
    its last boot, on another connection, was Accepted, or it never booted."""
    await csms_server.add_station("EV1")
    await csms_server.add_tag("T1")
    if boot == "accepted":
        async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
            assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
        # what the station was answered decides, not the policy changed since
        await csms_server.set_boot("EV1", "rejected")
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        answer = await c.result("Authorize", {"idToken": TOKEN})
        assert answer["idTokenInfo"]["status"] == "Accepted"


# FR.04 (2.0.1 Part 2 §3, Table 10, quoted in EVerest/libocpp#317): "When the CSMS did
# not accept the BootNotificationRequest from the Charging Station AND the Charging
# Station sends a message other than BootNotificationRequest, the CSMS SHALL respond with
# a RPC Framework: CALLERROR: SecurityError". It is about the central system's verdict on
# the station, not about one connection: a Rejected station (unknown, stolen,
# decommissioned) that closed its socket and reconnected without booting was served in
# full, its transactions stored and billed.
@pytest.mark.parametrize(("policy", "status"), [("pending", "Pending"),
                                                 ("rejected", "Rejected")])
async def test_a_station_not_accepted_that_reconnects_without_booting_is_still_refused(
    csms_server: RunningServer, policy: str, status: str,
) -> None:
    await csms_server.add_station("REJ1", boot=policy)
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "REJ1", ["ocpp2.0.1"]) as c:
        assert (await c.result("BootNotification", BOOT))["status"] == status
    async with await RawClient.connect(csms_server.url, "REJ1", ["ocpp2.0.1"]) as c:
        answer = await c.call("TransactionEvent", {
            "eventType": "Started", "timestamp": "2026-03-01T10:00:00Z", "seqNo": 0,
            "triggerReason": "Authorized", "transactionInfo": {"transactionId": "tx-1"},
            "idToken": TOKEN, "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": "2026-03-01T10:00:00Z",
                            "sampledValue": [{"value": 1000}]}]})
        assert answer[0] == 4 and answer[2] == "SecurityError", answer
        # the connection lives, and the boot is still the way in
        assert (await c.result("BootNotification", BOOT))["status"] == status
        await csms_server.set_boot("REJ1", "accepted")
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
        answer = await c.result("Authorize", {"idToken": TOKEN})
        assert answer["idTokenInfo"]["status"] == "Accepted"
    assert await csms_server.sessions("REJ1") == []
    # accepted now: a later reconnect without a boot is served
    async with await RawClient.connect(csms_server.url, "REJ1", ["ocpp2.0.1"]) as c:
        answer = await c.result("Authorize", {"idToken": TOKEN})
        assert answer["idTokenInfo"]["status"] == "Accepted"
