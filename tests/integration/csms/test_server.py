"""The WebSocket server over real sockets: handshake, errors, concurrency, replacement."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import http.client
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from csms.server import CallTimeout, StationOffline
from csms.service.ports import Tx
from csms.service.views import station_detail
from support import RunningServer
from support.client import RawClient

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}
BOOT201 = {"chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"}


def http_status(server: RunningServer, path: str, headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", path, headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
        "Sec-WebSocket-Protocol": "ocpp1.6", **(headers or {}),
    })
    status = conn.getresponse().status
    conn.close()
    return status


async def test_unknown_station_gets_404_before_upgrade(csms_server: RunningServer) -> None:
    assert await asyncio.to_thread(http_status, csms_server, "/NOPE") == 404
    with pytest.raises(InvalidStatus) as info:
        await RawClient.connect(csms_server.url, "NOPE")
    assert info.value.response.status_code == 404


@pytest.mark.parametrize("path", ["/" + "A" * 49, "/CP%3A1", "/"])
async def test_invalid_station_id_gets_400(csms_server: RunningServer, path: str) -> None:
    assert await asyncio.to_thread(http_status, csms_server, path) == 400


async def test_auto_register_is_off_by_default_and_works_when_on(tmp_path: Any) -> None:
    from csms.config import Settings

    assert Settings.load(env={}).auto_register is False
    server = RunningServer(Settings(db=str(tmp_path / "a.db"), port=0, auto_register=True,
                                    admin_port=-1))
    await server.start()
    try:
        async with await RawClient.connect(server.url, "NEW1") as c:
            assert (await c.result("BootNotification", BOOT16))["status"] == "Accepted"

        async def read(tx: Any) -> Any:
            return await tx.get_station("NEW1")

        assert (await server.repo.read(read)) is not None
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["ocpp1.6", "ocpp2.0.1"], "ocpp1.6"),
        (["ocpp2.0.1", "ocpp1.6"], "ocpp2.0.1"),
        (["ocpp2.1", "ocpp2.0.1"], "ocpp2.0.1"),
    ],
)
async def test_subprotocol_follows_client_preference(
    csms_server: RunningServer, offered: list[str], chosen: str
) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", offered) as c:
        assert c.ws.subprotocol == chosen


async def test_no_shared_subprotocol_completes_handshake_then_closes(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("CP1")
    async with connect(f"{csms_server.url}/CP1", subprotocols=["ocpp1.5"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol is None  # handshake completed without the header
        await ws.wait_closed()
        assert ws.close_code == 1002


async def test_basic_auth(csms_server: RunningServer) -> None:
    pw = "correct-horse-battery"
    await csms_server.add_station("CP1", password=pw)
    with pytest.raises(InvalidStatus) as info:
        await RawClient.connect(csms_server.url, "CP1")
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        await RawClient.connect(csms_server.url, "CP1", password="wrong-password-123")
    with pytest.raises(InvalidStatus):  # username must equal the station id
        await RawClient.connect(csms_server.url, "CP1", password=pw, user="CP2")
    async with await RawClient.connect(csms_server.url, "CP1", password=pw) as c:
        assert (await c.result("BootNotification", BOOT16))["status"] == "Accepted"
    # profile 1 without a stored password: nobody gets in (not even without credentials)
    await csms_server.add_station("NOPW", profile=1)
    with pytest.raises(InvalidStatus) as info:
        await RawClient.connect(csms_server.url, "NOPW", password=pw)
    assert info.value.response.status_code == 401


@pytest.mark.parametrize(
    ("version", "text", "code", "message_id"),
    [
        ("ocpp1.6", "{not json", "FormationViolation", "-1"),
        ("ocpp2.0.1", "{not json", "RpcFrameworkError", "-1"),
        ("ocpp1.6", '[2, 17, "Heartbeat", {}]', "FormationViolation", "-1"),
        ("ocpp1.6", '[2, "a1", "Heartbeat", []]', "FormationViolation", "a1"),
        ("ocpp2.0.1", '[2, "a1", "Heartbeat", []]', "FormatViolation", "a1"),
        ("ocpp1.6", '[2, "a1", "Teleport", {}]', "NotImplemented", "a1"),
        ("ocpp2.0.1", '[2, "a1", "Teleport", {}]', "NotImplemented", "a1"),
        ("ocpp1.6", '[2, "a1", "Reset", {"type": "Hard"}]', "NotSupported", "a1"),
        ("ocpp2.0.1", '[2, "a1", "GetVariables", {"getVariableData": []}]', "NotSupported",
         "a1"),
        ("ocpp1.6", '[2, "a1", "Heartbeat", {"x": 1}]', "FormationViolation", "a1"),
        ("ocpp1.6", '[2, "a1", "StatusNotification", {"connectorId": "1", "errorCode":'
         ' "NoError", "status": "Available"}]', "TypeConstraintViolation", "a1"),
        ("ocpp1.6", '[2, "a1", "Authorize", {}]', "OccurenceConstraintViolation", "a1"),
        ("ocpp2.0.1", '[2, "a1", "Authorize", {}]', "OccurrenceConstraintViolation", "a1"),
        ("ocpp2.0.1", '[8, "a1", "Heartbeat", {}]', "MessageTypeNotSupported", "a1"),
    ],
)
async def test_bad_frames_get_the_right_callerror_and_connection_lives(
    csms_server: RunningServer, version: str, text: str, code: str, message_id: str
) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", [version]) as c:
        answer = await c.send_raw(text, message_id)
        assert answer is not None
        assert answer[:3] == [4, message_id, code]
        # the connection is still up and serving
        assert "currentTime" in await c.result("Heartbeat", {})


async def test_duplicate_message_id_is_not_processed_twice(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    start = {"connectorId": 1, "idTag": "T1", "meterStart": 100,
             "timestamp": "2026-01-01T00:00:00Z"}
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        first = await c.call("StartTransaction", start, message_id="dup")
        again = await c.call("StartTransaction", start, message_id="dup")
        assert again == first  # the same frame again: the stored answer, nothing stored twice
    assert len(await csms_server.sessions()) == 1


async def test_a_reused_message_id_is_a_new_message_never_another_answer(
    csms_server: RunningServer,
) -> None:
    """A station that reuses a message id for another message gets that message handled,
    not the cached answer of the earlier one (a StopTransaction answered as the
    StartTransaction before it, and never applied)."""
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    start = {"connectorId": 1, "idTag": "T1", "meterStart": 100,
             "timestamp": "2026-01-01T00:00:00Z"}
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        first = await c.call("StartTransaction", start, message_id="same")
        txid = first[2]["transactionId"]
        stop = await c.call("StopTransaction", {"transactionId": txid, "meterStop": 600,
                                                "timestamp": "2026-01-01T00:10:00Z"},
                            message_id="same")
        assert stop == [3, "same", {}]
        other = await c.call("StartTransaction", {**start, "meterStart": 999},
                             message_id="same")
        assert other[2]["transactionId"] != txid
    sessions = await csms_server.sessions()
    assert [(s["status"], s["energy_wh"]) for s in sessions] == [
        ("completed", 500), ("active", None)]


async def test_csms_call_while_station_call_is_being_handled(
    csms_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow handler does not hold up the central system's own CALLs."""
    await csms_server.add_station("CP1")
    release = asyncio.Event()
    service = csms_server.central.service
    original = service.heartbeat

    async def slow_heartbeat(station_id: str) -> Any:
        await release.wait()
        return await original(station_id)

    monkeypatch.setattr(service, "heartbeat", slow_heartbeat)
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        heartbeat = asyncio.create_task(c.call("Heartbeat", {}))
        await asyncio.sleep(0.05)
        csms_call = asyncio.create_task(
            csms_server.call("CP1", "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
        )
        incoming = await asyncio.wait_for(c.calls.get(), 5)
        assert incoming[2] == "ChangeAvailability"
        await c.answer(incoming[1], {"status": "Accepted"})
        assert await csms_call == {"status": "Accepted"}
        assert not heartbeat.done()
        release.set()
        assert (await heartbeat)[0] == 3


async def test_one_csms_call_in_flight_with_timeout(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await csms_server.wait_connected("CP1")
        first = asyncio.create_task(
            csms_server.central.call("CP1", "Reset", {"type": "Soft"}, 0.5)
        )
        second = asyncio.create_task(
            csms_server.central.call("CP1", "Reset", {"type": "Hard"}, 2)
        )
        msg1 = await asyncio.wait_for(c.calls.get(), 5)
        assert msg1[3] == {"type": "Soft"}
        await asyncio.sleep(0.1)
        assert c.calls.empty()  # the second waits for the first
        with pytest.raises(CallTimeout):
            await first
        msg2 = await asyncio.wait_for(c.calls.get(), 5)
        assert msg2[3] == {"type": "Hard"}
        # a late answer to the first is ignored; the second gets its own
        await c.answer(msg1[1], {"status": "Rejected"})
        await c.answer(msg2[1], {"status": "Accepted"})
        assert await second == {"status": "Accepted"}


async def test_call_to_offline_station(csms_server: RunningServer) -> None:
    with pytest.raises(StationOffline):
        await csms_server.central.call("GHOST", "Reset", {"type": "Soft"})


async def test_second_connection_replaces_first_without_being_closed_by_teardown(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("CP1")
    old = await RawClient.connect(csms_server.url, "CP1")
    await csms_server.wait_connected("CP1")
    first_conn = csms_server.central.connections["CP1"]
    await asyncio.wait_for(first_conn.recorded.wait(), 5)  # its since: in the event
    new = await RawClient.connect(csms_server.url, "CP1")
    await asyncio.wait_for(old.ws.wait_closed(), 5)
    await asyncio.sleep(0.1)
    current = csms_server.central.connections["CP1"]
    assert current is not first_conn
    # the new connection still works after the old one's teardown ran
    assert "currentTime" in await new.result("Heartbeat", {})
    task = asyncio.create_task(csms_server.call("CP1", "Reset", {"type": "Soft"}))
    msg = await asyncio.wait_for(new.calls.get(), 5)
    await new.answer(msg[1], {"status": "Accepted"})
    assert await task == {"status": "Accepted"}
    await new.close()
    await old.close()

    async def events(tx: Any) -> list[dict[str, Any]]:
        return await tx.list_station_events("CP1", "security")

    found = await csms_server.repo.read(events)
    # the same payload as a connection replaced on another node (csms.service.stations
    # connection_opened; tests/integration/csms/storage/test_station_rows_across_nodes.py)
    node, since = csms_server.central.node_id, first_conn.since
    assert since is not None
    [replaced] = [e["payload"] for e in found if e["payload"]["type"] == "ConnectionReplaced"]
    assert "127.0.0.1" in replaced.pop("remote")
    assert replaced == {"type": "ConnectionReplaced", "node": node, "previous_node": node,
                        "previous_connected_at": since.isoformat()}


async def test_boot_policies(csms_server: RunningServer) -> None:
    await csms_server.add_station("P1", boot="pending")
    await csms_server.add_station("R1", boot="rejected")
    async with await RawClient.connect(csms_server.url, "P1", ["ocpp2.0.1"]) as c:
        r = await c.result("BootNotification", BOOT201)
        assert r["status"] == "Pending"
        assert r["interval"] > 0
        await csms_server.set_boot("P1", "accepted")
        r = await c.result("BootNotification", BOOT201)
        assert (r["status"], r["interval"]) == ("Accepted", 60)
    async with await RawClient.connect(csms_server.url, "R1") as c:
        assert (await c.result("BootNotification", BOOT16))["status"] == "Rejected"


async def test_a_16_station_not_accepted_is_still_served(csms_server: RunningServer) -> None:
    """1.6 §4.2 asks the charge point, not the central system: a 1.6 station answered
    Pending or Rejected that sends anyway is served (docs/ocpp-coverage.md; 2.0.1 refuses it:
    test_boot_not_accepted_v201.py)."""
    await csms_server.add_station("CP1", boot="pending")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        assert (await c.result("BootNotification", BOOT16))["status"] == "Pending"
        answer = await c.result("Authorize", {"idTag": "T1"})
        assert answer["idTagInfo"]["status"] == "Accepted"


async def test_a_16_station_not_accepted_is_served_after_a_reconnect_too(
        csms_server: RunningServer) -> None:
    """The stored verdict counts on a new connection as it does on 2.0.1, with 1.6's
    behaviour: a station last answered Rejected that reconnects without booting is
    served, not refused (1.6 has no SecurityError; §4.2 asks the charge point)."""
    await csms_server.add_station("CP1", boot="rejected")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        assert (await c.result("BootNotification", BOOT16))["status"] == "Rejected"
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        answer = await c.result("Authorize", {"idTag": "T1"})
        assert answer["idTagInfo"]["status"] == "Accepted"
        conn = csms_server.central.connections["CP1"]
        assert (conn.boot_status, conn.may_send_queued) == ("Rejected", False)


async def test_status_and_station_info_are_kept(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await c.result("BootNotification", {**BOOT16, "firmwareVersion": "1.2.3"})
        await c.result("StatusNotification",
                       {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
        await c.result("StatusNotification",
                       {"connectorId": 2, "errorCode": "GroundFailure", "status": "Faulted"})

    async def read(tx: Any) -> tuple[Any, list[dict[str, Any]]]:
        return await tx.get_station("CP1"), await tx.list_connectors("CP1")

    station, connectors = await csms_server.repo.read(read)
    assert (station.vendor, station.firmware_version, station.ocpp_version) == (
        "V", "1.2.3", "ocpp1.6")
    assert [(c["connector_id"], c["status"], c["error_code"]) for c in connectors] == [
        (1, "Charging", None), (2, "Faulted", "GroundFailure")]


@pytest.mark.parametrize(
    ("version", "action", "payload"),
    [
        ("ocpp1.6", "DataTransfer", {"vendorId": "acme", "messageId": "x", "data": "hello"}),
        ("ocpp2.0.1", "DataTransfer", {"vendorId": "acme", "messageId": "x", "data": "hello"}),
        ("ocpp1.6", "SecurityEventNotification",
         {"type": "FirmwareUpdated", "timestamp": "2026-01-01T00:00:00Z"}),
        ("ocpp2.0.1", "SecurityEventNotification",
         {"type": "FirmwareUpdated", "timestamp": "2026-01-01T00:00:00Z", "techInfo": "x"}),
    ],
)
async def test_data_transfer_and_security_events_are_stored(
    csms_server: RunningServer, version: str, action: str, payload: dict[str, Any]
) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", [version]) as c:
        answer = await c.result(action, payload)
    if action == "DataTransfer":
        assert answer == {"status": "UnknownVendorId"}
    else:
        assert answer == {}
    kind = "data_transfer" if action == "DataTransfer" else "security"

    async def read(tx: Any) -> list[dict[str, Any]]:
        return await tx.list_station_events("CP1", kind)

    events = await csms_server.repo.read(read)
    assert events[0]["payload"] == payload


@pytest.mark.parametrize(
    ("version", "tag", "status"),
    [
        ("ocpp1.6", "GOOD", "Accepted"),
        ("ocpp1.6", "BLOCK", "Blocked"),
        ("ocpp1.6", "OLD", "Expired"),
        ("ocpp1.6", "NOBODY", "Invalid"),
        ("ocpp2.0.1", "GOOD", "Accepted"),
        ("ocpp2.0.1", "BLOCK", "Blocked"),
        ("ocpp2.0.1", "OLD", "Expired"),
        ("ocpp2.0.1", "NOBODY", "Unknown"),
    ],
)
async def test_authorize(csms_server: RunningServer, version: str, tag: str, status: str) -> None:
    from datetime import UTC, datetime, timedelta

    await csms_server.add_station("CP1")
    await csms_server.add_tag("GOOD")
    await csms_server.add_tag("BLOCK", "blocked")
    await csms_server.add_tag("OLD", expires=datetime.now(UTC) - timedelta(days=1))
    async with await RawClient.connect(csms_server.url, "CP1", [version]) as c:
        if version == "ocpp1.6":
            r = await c.result("Authorize", {"idTag": tag})
            assert r["idTagInfo"]["status"] == status
        else:
            r = await c.result("Authorize", {"idToken": {"idToken": tag, "type": "ISO14443"}})
            assert r["idTokenInfo"]["status"] == status



@pytest.mark.parametrize(("mode", "header"), [
    ("stateless", "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
                  " server_max_window_bits=12; client_max_window_bits=12"),
    ("context", "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
    ("off", None),
])
async def test_compression_modes(tmp_path: Any, mode: str, header: str | None) -> None:
    """stateless (the default) keeps no zlib context between messages; messages still flow."""
    from csms.config import Settings

    server = RunningServer(Settings(db=str(tmp_path / "c.db"), port=0, admin_port=-1,
                                    data_dir=str(tmp_path / "d"), ws_compression=mode,
                                    boot_get_configuration=False))
    await server.start()
    try:
        await server.add_station("CP1")
        async with connect(f"{server.url}/CP1", subprotocols=["ocpp1.6"]) as ws:
            assert ws.response is not None
            assert ws.response.headers.get("Sec-WebSocket-Extensions") == header
            big = {"chargePointVendor": "V" * 20, "chargePointModel": "M" * 20,
                   "firmwareVersion": "1" * 50}
            for i in range(3):  # several messages through fresh contexts each time
                await ws.send(json.dumps([2, str(i), "BootNotification", big]))
                answer = await ws.recv()
                assert f'[3,"{i}",' in str(answer) and "Accepted" in str(answer)
    finally:
        await server.stop()


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_binary_frames_are_refused(csms_server: RunningServer, version: str) -> None:
    await csms_server.add_station("BIN")
    await csms_server.add_station("OK1")
    await csms_server.add_tag("T1")
    good = await RawClient.connect(csms_server.url, "OK1", [version])
    c = await RawClient.connect(csms_server.url, "BIN", [version])
    # a well-formed CALL, but in a binary frame: not an OCPP message, never processed
    await c.ws.send(b'[2,"b1","StartTransaction",{"connectorId":1,"idTag":"T1",'
                    b'"meterStart":0,"timestamp":"2026-01-01T00:00:00Z"}]')
    await asyncio.wait_for(c.ws.wait_closed(), 5)
    assert c.ws.close_code == 1003
    assert c.unmatched == [] and await csms_server.sessions("BIN") == []
    assert "currentTime" in await good.result("Heartbeat", {})
    await good.close()

    async def events(tx: Any) -> list[dict[str, Any]]:
        return await tx.list_station_events("BIN", "security")

    assert any(e["payload"]["type"] == "BinaryFrame" for e in await csms_server.repo.read(events))
    cut = csms_server.central.metrics.connections_cut.labels("binary_frame")._value.get()
    assert cut == 1


async def everything_kept(server: RunningServer, station_id: str) -> str:
    """All the central system stored about a station, as one text: its row, its
    connectors, its events (every kind) and its device model. A value a station sent is
    kept when it is found anywhere in it."""

    async def work(tx: Tx) -> dict[str, Any]:
        station = await tx.get_station(station_id)
        return {
            "station": dataclasses.asdict(station) if station is not None else None,
            "connectors": await tx.list_connectors(station_id),
            "events": await tx.list_station_events(station_id, None, 10_000),
            "device_model": await tx.device_variables(station_id),
        }

    return json.dumps(await server.repo.read(work), default=str)


# OCPP 1.6 §6.47 StatusNotification.req carries, beside errorCode, `info` ("additional
# free format information related to the error"), `vendorId` and `vendorErrorCode` ("the
# vendor-specific error code"). EVerest's OCPP 1.6 module reports every fault as errorCode
# OtherError and puts the error's origin in `info` and its type in `vendorErrorCode`
# (EVerest/EVerest#949, EVerest/libocpp#395); the CharIN unified error codes put the code
# itself in vendorErrorCode (charinev/unified-error-codes#84). Dropped, they left the
# operator with "OtherError" for every fault of such a station.
async def test_a_16_fault_keeps_its_info_and_vendor_error_code(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("EVR1")
    async with await RawClient.connect(csms_server.url, "EVR1", ["ocpp1.6"]) as c:
        assert (await c.result("BootNotification", {
            "chargePointVendor": "Pionix", "chargePointModel": "Yeti"}))["status"] == "Accepted"
        assert await c.result("StatusNotification", {
            "connectorId": 1, "errorCode": "OtherError", "status": "Faulted",
            "timestamp": "2026-03-01T10:00:00Z",
            "info": "evse_manager/connector_1",
            "vendorId": "org.charin.uec.v1",
            "vendorErrorCode": "ConnectorLockFailure/MREC1"}) == {}
    kept = await everything_kept(csms_server, "EVR1")
    assert "OtherError" in kept
    for value in ("evse_manager/connector_1", "org.charin.uec.v1", "ConnectorLockFailure/MREC1"):
        assert value in kept, f"{value!r} of the StatusNotification was not stored"
    detail = await csms_server.repo.read(lambda tx: station_detail(tx, "EVR1"))
    assert detail is not None
    shown = detail["connectors"][0]["fault"]  # what `csms stations show` and the console show
    assert shown == ("OtherError: ConnectorLockFailure/MREC1 (org.charin.uec.v1),"
                     " evse_manager/connector_1")


# OCPP 1.6 §6.3 BootNotification.req: chargeBoxSerialNumber (deprecated but still sent),
# chargePointSerialNumber, iccid, imsi, meterSerialNumber, meterType. The frame with both
# serial numbers is EVerest's, as posted in EVerest/libocpp#478. The meter's serial number
# is what the signed readings of an Eichrecht meter name (OCMF "MS"). 2.0.1
# ChargingStationType.modem carries iccid and imsi (the SIM the station is reached through).
@pytest.mark.parametrize(("version", "payload", "values"), [
    ("ocpp1.6", {"chargePointVendor": "Pionix", "chargePointModel": "model",
                 "chargeBoxSerialNumber": "serial1", "chargePointSerialNumber": "serial2",
                 "firmwareVersion": "1.0.0"},
     ["serial1", "serial2"]),
    ("ocpp1.6", {"chargePointVendor": "V", "chargePointModel": "M",
                 "meterType": "DZG DVH4013", "meterSerialNumber": "1DZG0012345678",
                 "iccid": "8949020000012345678", "imsi": "262011234567890"},
     ["DZG DVH4013", "1DZG0012345678", "8949020000012345678", "262011234567890"]),
    ("ocpp2.0.1", {"reason": "PowerUp", "chargingStation": {
        "vendorName": "V", "model": "M", "serialNumber": "S1",
        "modem": {"iccid": "8949020000012345678", "imsi": "262011234567890"}}},
     ["8949020000012345678", "262011234567890"]),
])
async def test_a_boot_keeps_what_identifies_the_hardware(
    csms_server: RunningServer, version: str, payload: dict[str, Any], values: list[str],
) -> None:
    await csms_server.add_station("HW1")
    async with await RawClient.connect(csms_server.url, "HW1", [version]) as c:
        assert (await c.result("BootNotification", payload))["status"] == "Accepted"
    kept = await everything_kept(csms_server, "HW1")
    for value in values:
        assert value in kept, f"{value!r} of the BootNotification was not stored"


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_station_inventing_connectors_adds_no_rows_beyond_the_limit(
    csms_server: RunningServer, version: str,
) -> None:
    """A hostile station sends StatusNotification for ever new EVSE and connector ids:
    at most max_connectors rows are stored; each one beyond is still answered (1.6 §6.47
    has no refusal) and recorded as a ConnectorLimit security event. A 2.0.1 status for
    EVSE 0 or connector 0 names no connector (both are numbered from 1): refused."""
    limit = csms_server.central.service.max_connectors
    await csms_server.add_station("HOST1")
    async with await RawClient.connect(csms_server.url, "HOST1", [version]) as c:
        for n in range(1, limit + 11):
            if version == "ocpp1.6":
                payload: dict[str, Any] = {"connectorId": n, "errorCode": "NoError",
                                           "status": "Available"}
            else:
                payload = {"timestamp": "2026-03-01T10:00:00Z", "connectorStatus": "Available",
                           "evseId": n, "connectorId": n}
            assert await c.result("StatusNotification", payload) == {}
        if version == "ocpp2.0.1":
            for evse, connector in ((0, 1), (1, 0), (0, 0), (-5, 1)):
                answer = await c.call("StatusNotification", {
                    "timestamp": "2026-03-01T10:00:00Z", "connectorStatus": "Available",
                    "evseId": evse, "connectorId": connector})
                assert answer[0] == 4 and answer[2] == "PropertyConstraintViolation", answer
        assert "currentTime" in await c.result("Heartbeat", {})

    async def read(tx: Tx) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return (await tx.list_connectors("HOST1"),
                await tx.list_station_events("HOST1", "security", 1000))

    connectors, security = await csms_server.repo.read(read)
    assert len(connectors) == limit
    assert max(c["evse_id"] for c in connectors) == limit
    assert all(c["evse_id"] > 0 for c in connectors)
    assert sum(e["payload"]["type"] == "ConnectorLimit" for e in security) == 10
