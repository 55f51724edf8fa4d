"""Reservations, firmware updates and log uploads: the operator's commands through the
admin API, simulated stations of both versions over real sockets, files over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chargers_sim import Station
from chargers_sim.maintenance import simulator_image
from csms.domain.maintenance import FirmwareImage, TransferKind
from csms.filestore import firmware_path, log_path
from csms.service.ports import Tx
from support import RunningServer, station_events, until
from support.admin import api
from support.client import RawClient

VERSIONS = ["1.6", "2.0.1"]
FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}


async def sim(server: RunningServer, version: str, sid: str = "SIM1",
              **kw: Any) -> Station:
    st = Station(server.url, sid, version, seed=7, **{**FAST, **kw})
    await st.start()
    return st


async def command(server: RunningServer, station: str, name: str,
                  body: dict[str, Any]) -> tuple[int, Any]:
    return await api(server, "POST", f"/stations/{station}/commands/{name}", body)


async def reservation(server: RunningServer, rid: int) -> dict[str, Any]:
    async def work(tx: Tx) -> Any:
        return await tx.get_reservation(rid)

    r = await server.repo.read(work)
    assert r is not None
    return {"status": r.state_at(datetime.now(UTC)).value, "answer": r.answer,
            "session_id": r.session_id, "connector": r.connector_id}


async def transfer(server: RunningServer, rid: int) -> Any:
    async def work(tx: Tx) -> Any:
        return await tx.get_transfer(rid)

    return await server.repo.read(work)


async def add_firmware(server: RunningServer, version: str, blob: bytes,
                       signature: str | None = None, cert: str | None = None) -> None:
    import hashlib

    digest = hashlib.sha256(blob).hexdigest()
    path = firmware_path(server.settings.data_dir, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)

    async def work(tx: Tx) -> None:
        await tx.add_firmware(FirmwareImage(version, "fw.bin", len(blob), digest,
                                            datetime.now(UTC), signature, cert))

    await server.repo.unit(work)


@pytest.fixture
async def registered(csms_server: RunningServer) -> RunningServer:
    for sid in ("SIM1", "SIM2"):
        await csms_server.add_station(sid)
    for tag in ("SIMTAG", "HOSTTAG", "OTHER"):
        await csms_server.add_tag(tag)
    return csms_server


# -- reservations ------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
async def test_reservation_is_used_by_its_tag_and_refuses_others(
        registered: RunningServer, version: str) -> None:
    st = await sim(registered, version, connectors=2)
    try:
        status, result = await command(registered, "SIM1", "reserve", {
            "tag": "SIMTAG", "until": "+1h", "connector": 1})
        assert status == 200, result
        assert result["status"] == "Accepted" and result["action"] == "ReserveNow"
        rid = result["reservation_id"]
        assert (await reservation(registered, rid))["status"] == "accepted"
        await until(lambda: _status_is(registered, "SIM1", 1, "Reserved"))
        # another tag: the simulated station refuses a remote start on that connector
        status, result = await command(registered, "SIM1", "start",
                                       {"tag": "OTHER", "connector": 1})
        assert result["status"] == "Rejected"
        # the reserved tag charges there; the start names the reservation, which ends
        await st.start_session(1, "SIMTAG")
        await st.drain()
        await until(lambda: _reservation_is(registered, rid, "used"))
        sessions = await registered.sessions("SIM1")
        assert (await reservation(registered, rid))["session_id"] == sessions[0]["id"]
        assert "reserved_for_other" not in sessions[0]["flags"]
    finally:
        await st.close()


async def _status_is(server: RunningServer, sid: str, connector: int, word: str) -> bool:
    async def work(tx: Tx) -> list[dict[str, Any]]:
        return await tx.list_connectors(sid)

    return any(c["evse_id"] == connector and c["status"] == word
               for c in await server.repo.read(work))


async def _reservation_is(server: RunningServer, rid: int, word: str) -> bool:
    return (await reservation(server, rid))["status"] == word


@pytest.mark.parametrize("version", VERSIONS)
async def test_cancel_and_expiry(registered: RunningServer, version: str) -> None:
    st = await sim(registered, version)
    try:
        _, first = await command(registered, "SIM1", "reserve",
                                 {"tag": "SIMTAG", "until": "+1h", "connector": 1})
        # a second reservation of a reserved connector is refused by the central system
        status, second = await command(registered, "SIM1", "reserve",
                                       {"tag": "OTHER", "until": "+1h", "connector": 1})
        assert status == 400 and "reserved" in second["error"]
        status, result = await command(registered, "SIM1", "cancel-reservation",
                                       {"reservation": first["reservation_id"]})
        assert status == 200 and result["status"] == "Accepted"
        assert await _reservation_is(registered, first["reservation_id"], "cancelled")
        # cancelling it again, or an unknown one, is one error and sends nothing
        sent = len(st.received_calls)
        for rid in (first["reservation_id"], 999_999):
            status, result = await command(registered, "SIM1", "cancel-reservation",
                                           {"reservation": rid})
            assert status == 400, result
        assert len(st.received_calls) == sent
        # a short reservation expires at the station; 2.0.1 says so, 1.6 by the clock
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        _, short = await command(registered, "SIM1", "reserve",
                                 {"tag": "SIMTAG", "until": soon, "connector": 1})
        assert short["status"] == "Accepted"
        await until(lambda: _reservation_is(registered, short["reservation_id"], "expired"))
        await until(lambda: _status_is(registered, "SIM1", 1, "Available"))
        if version == "2.0.1":
            await until(lambda: _has_event(registered, "SIM1", "reservation_status"))
    finally:
        await st.close()


async def _has_event(server: RunningServer, sid: str, kind: str) -> bool:
    return bool(await station_events(server, sid, kind))


@pytest.mark.parametrize(("body", "error"), [
    ({"tag": "STRANGER", "until": "+1h"}, "unknown"),
    ({"tag": "SIMTAG", "until": "-1h"}, "past"),
    ({"tag": "SIMTAG", "until": "+30d"}, "at most"),
    ({"tag": "SIMTAG", "until": "tomorrow"}, "no time"),
    ({"tag": "SIMTAG", "until": 5}, "time"),
    ({"tag": "SIMTAG", "until": "+1h", "connector": "one"}, "integer"),
    ({"tag": "x" * 21, "until": "+1h"}, "20"),
    ({"tag": "SIMTAG", "until": "+1h", "reservation_id": 777, "expiry": "2099-01-01"}, None),
])
async def test_reservation_requests_refused(registered: RunningServer, body: dict[str, Any],
                                            error: str | None) -> None:
    async with await RawClient.connect(registered.url, "SIM1", ["ocpp1.6"]) as c:
        await registered.wait_connected("SIM1")
        if error is None:
            # ids and times the caller made up are not sent: the central system's are
            task = asyncio.create_task(command(registered, "SIM1", "reserve", body))
            call = await asyncio.wait_for(c.calls.get(), 5)
            assert call[3]["reservationId"] != 777 and call[3]["expiryDate"] < "2099"
            await c.answer(call[1], {"status": "Accepted"})
            assert (await task)[0] == 200
            return
        status, result = await command(registered, "SIM1", "reserve", body)
        assert status == 400 and error in result["error"], result
        assert c.calls.empty()


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_station_starting_for_another_tag_is_refused(
        registered: RunningServer, version: str) -> None:
    """A station that ignores the reservation: the central system refuses the other tag
    (1.6 Invalid, 2.0.1 NotAtThisTime), keeps the session flagged, and the reservation
    stays for its tag."""
    async with await RawClient.connect(registered.url, "SIM1", [version]) as c:
        await registered.wait_connected("SIM1")
        task = asyncio.create_task(command(registered, "SIM1", "reserve",
                                           {"tag": "SIMTAG", "until": "+1h", "connector": 1}))
        call = await asyncio.wait_for(c.calls.get(), 5)
        await c.answer(call[1], {"status": "Accepted"})
        rid = (await task)[1]["reservation_id"]
        now = datetime.now(UTC).isoformat()
        if version == "ocpp1.6":
            answer = await c.result("StartTransaction", {
                "connectorId": 1, "idTag": "OTHER", "meterStart": 100, "timestamp": now})
            assert answer["idTagInfo"]["status"] == "Invalid"
            # another connector is free for it
            answer = await c.result("StartTransaction", {
                "connectorId": 2, "idTag": "OTHER", "meterStart": 100, "timestamp": now})
            assert answer["idTagInfo"]["status"] == "Accepted"
        else:
            answer = await c.result("TransactionEvent", {
                "eventType": "Started", "timestamp": now, "triggerReason": "Authorized",
                "seqNo": 0, "transactionInfo": {"transactionId": "T1"},
                "idToken": {"idToken": "OTHER", "type": "ISO14443"},
                "evse": {"id": 1, "connectorId": 1}})
            assert answer["idTokenInfo"]["status"] == "NotAtThisTime"
        on_reserved = [s for s in await registered.sessions("SIM1") if s["connector_id"] == 1]
        assert "reserved_for_other" in on_reserved[0]["flags"]
        assert await _reservation_is(registered, rid, "accepted")


async def test_status_update_of_another_stations_reservation(
        registered: RunningServer) -> None:
    async with await RawClient.connect(registered.url, "SIM1", ["ocpp2.0.1"]) as c1, \
            await RawClient.connect(registered.url, "SIM2", ["ocpp2.0.1"]) as c2:
        await registered.wait_connected("SIM1")
        await registered.wait_connected("SIM2")
        task = asyncio.create_task(command(registered, "SIM1", "reserve",
                                           {"tag": "SIMTAG", "until": "+1h"}))
        call = await asyncio.wait_for(c1.calls.get(), 5)
        assert "evseId" not in call[3]  # any EVSE
        await c1.answer(call[1], {"status": "Accepted"})
        rid = (await task)[1]["reservation_id"]
        for sid, client in (("SIM2", c2), ("SIM2", c2)):
            assert await client.result("ReservationStatusUpdate", {
                "reservationId": rid, "reservationUpdateStatus": "Removed"}) == {}
            assert (await station_events(registered, sid, "reservation_status"))[0][
                "unmatched"] is True
        assert await c2.result("ReservationStatusUpdate", {
            "reservationId": 2**62, "reservationUpdateStatus": "Expired"}) == {}
        assert await _reservation_is(registered, rid, "accepted")
        assert await c1.result("ReservationStatusUpdate", {
            "reservationId": rid, "reservationUpdateStatus": "Removed"}) == {}
        assert await _reservation_is(registered, rid, "removed")


# -- firmware ----------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
async def test_firmware_update_installs_and_reboots(registered: RunningServer,
                                                    version: str) -> None:
    await add_firmware(registered, "sim-2.0", simulator_image("sim-2.0"))
    st = await sim(registered, version)
    try:
        status, result = await command(registered, "SIM1", "update-firmware",
                                       {"version": "sim-2.0", "retries": 2,
                                        "retry_interval": 5})
        assert status == 200, result
        assert result["action"] == "UpdateFirmware"
        rid = result["request_id"]
        await until(lambda: _transfer_is(registered, rid, "Installed"))
        assert st.firmware_statuses == ["Downloading", "Downloaded", "Installing",
                                        "Installed"]
        assert st.connections == 2  # rebooted
        station = await api(registered, "GET", "/stations/SIM1")
        assert station[1]["firmware_version"] == "sim-2.0"
        location = (st.received_calls[-1][1].get("location")
                    or st.received_calls[-1][1]["firmware"]["location"])
        assert "sim-2.0" not in location and len(location.rsplit("/", 1)[1]) >= 40
    finally:
        await st.close()


async def _transfer_is(server: RunningServer, rid: int, word: str) -> bool:
    return (await transfer(server, rid)).status == word


@pytest.mark.parametrize("version", VERSIONS)
async def test_signed_firmware(registered: RunningServer, version: str,
                               tmp_path: Path) -> None:
    from csms.cli.firmware import sign_image
    from support.pki import key_and_cert

    blob = simulator_image("sim-3.0")
    key, cert = key_and_cert(tmp_path)
    await add_firmware(registered, "sim-3.0", blob, sign_image(blob, key, cert),
                       cert.decode())
    await add_firmware(registered, "sim-bad", simulator_image("sim-bad"),
                       sign_image(blob, key, cert), cert.decode())
    st = await sim(registered, version)
    try:
        _, result = await command(registered, "SIM1", "update-firmware",
                                  {"version": "sim-bad"})
        expected = "SignedUpdateFirmware" if version == "1.6" else "UpdateFirmware"
        assert result["action"] == expected
        await until(lambda: _transfer_is(registered, result["request_id"],
                                         "InvalidSignature"))
        _, result = await command(registered, "SIM1", "update-firmware",
                                  {"version": "sim-3.0"})
        await until(lambda: _transfer_is(registered, result["request_id"], "Installed"))
        assert "SignatureVerified" in st.firmware_statuses
        assert st.firmware_version == "sim-3.0"
    finally:
        await st.close()


async def test_firmware_status_for_a_request_never_sent(registered: RunningServer) -> None:
    await add_firmware(registered, "sim-2.0", simulator_image("sim-2.0"))
    async with await RawClient.connect(registered.url, "SIM1", ["ocpp2.0.1"]) as c1, \
            await RawClient.connect(registered.url, "SIM2", ["ocpp2.0.1"]) as c2:
        await registered.wait_connected("SIM1")
        await registered.wait_connected("SIM2")
        task = asyncio.create_task(command(registered, "SIM1", "update-firmware",
                                           {"version": "sim-2.0"}))
        call = await asyncio.wait_for(c1.calls.get(), 5)
        await c1.answer(call[1], {"status": "Accepted"})
        rid = (await task)[1]["request_id"]
        for request_id in (rid, rid + 1000, 2**62):
            assert await c2.result("FirmwareStatusNotification", {
                "status": "InstallationFailed", "requestId": request_id}) == {}
        assert (await transfer(registered, rid)).status == "Accepted"
        events = await station_events(registered, "SIM2", "firmware_status")
        assert len(events) == 3 and all(e["unmatched"] for e in events)
        assert await c1.result("PublishFirmwareStatusNotification", {
            "status": "Published", "location": ["http://lc/fw"], "requestId": 7}) == {}
        assert await _has_event(registered, "SIM1", "publish_firmware_status")


async def test_firmware_url_is_per_request_and_expires(registered: RunningServer) -> None:
    import aiohttp

    blob = simulator_image("sim-2.0")
    await add_firmware(registered, "sim-2.0", blob)
    async with await RawClient.connect(registered.url, "SIM1", ["ocpp2.0.1"]) as c:
        await registered.wait_connected("SIM1")
        urls = []
        for _ in range(2):
            task = asyncio.create_task(command(registered, "SIM1", "update-firmware", {
                "version": "sim-2.0", "window_end": "+2s"}))
            call = await asyncio.wait_for(c.calls.get(), 5)
            await c.answer(call[1], {"status": "Accepted"})
            await task
            urls.append(call[3]["firmware"]["location"])
        assert urls[0] != urls[1]
        base = urls[0].rsplit("/", 1)[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(urls[0]) as r:
                assert r.status == 200 and await r.read() == blob
            for wrong in (base + "/" + "A" * 43, base + "/..%2F..%2Fadmin.token", base):
                async with http.get(wrong) as r:
                    assert r.status == 404
            await asyncio.sleep(2.1)
            async with http.get(urls[1]) as r:
                assert r.status == 404  # its window ended


async def test_unknown_firmware_and_files_off(registered: RunningServer) -> None:
    async with await RawClient.connect(registered.url, "SIM1", ["ocpp1.6"]) as c:
        await registered.wait_connected("SIM1")
        status, result = await command(registered, "SIM1", "update-firmware",
                                       {"version": "nope"})
        assert status == 400 and "no firmware" in result["error"]
        status, result = await command(registered, "SIM1", "update-firmware",
                                       {"version": "nope", "window_start": "+2h",
                                        "window_end": "+1h"})
        assert status == 400
        assert c.calls.empty()


# -- logs --------------------------------------------------------------------------------
# the station's status notification about an upload, and the event the central system
# stores it as (1.6 §6.17 DiagnosticsStatusNotification has no requestId; the security
# extension's and 2.0.1 N01 LogStatusNotification name the GetLog request)
NOTIFICATIONS = {"DiagnosticsStatusNotification": "diagnostics_status",
                 "LogStatusNotification": "log_status"}


@pytest.mark.parametrize(("version", "log_type", "action", "method", "notification"), [
    ("1.6", "Diagnostics", "GetDiagnostics", "POST", "DiagnosticsStatusNotification"),
    ("1.6", "SecurityLog", "GetLog", "PUT", "LogStatusNotification"),
    ("2.0.1", "Diagnostics", "GetLog", "PUT", "LogStatusNotification"),
    ("2.0.1", "SecurityLog", "GetLog", "PUT", "LogStatusNotification"),
])
async def test_log_upload(registered: RunningServer, version: str, log_type: str,
                          action: str, method: str, notification: str) -> None:
    st = await sim(registered, version)
    try:
        status, result = await command(registered, "SIM1", "get-log",
                                       {"type": log_type, "since": "-1d"})
        assert status == 200 and result["action"] == action, result
        rid = result["request_id"]
        await until(lambda: _transfer_is(registered, rid, "Uploaded"))
        t = await transfer(registered, rid)
        assert st.uploads == [(method, t.size)]
        stored = log_path(registered.settings.data_dir, rid).read_bytes()
        assert stored == st.log_text(log_type)[: len(stored)] and len(stored) == t.size
        assert t.file_name and t.file_name.startswith("SIM1-")
        # the notifications the central system stored, newest first: Uploading, then
        # Uploaded once the file is in; the security log's name the request
        events = await station_events(registered, "SIM1", NOTIFICATIONS[notification])
        if notification == "LogStatusNotification":
            assert events == [{"status": "Uploaded", "requestId": rid},
                              {"status": "Uploading", "requestId": rid}]
        else:
            assert events == [{"status": "Uploaded"}, {"status": "Uploading"}]
    finally:
        await st.close()


@pytest.mark.parametrize(("version", "action", "payload", "code"), [
    ("ocpp2.0.1", "ReservationStatusUpdate", {"reservationId": "x",
                                              "reservationUpdateStatus": "Expired"},
     "TypeConstraintViolation"),
    ("ocpp2.0.1", "ReservationStatusUpdate", {"reservationId": 1,
                                              "reservationUpdateStatus": "Gone"},
     "PropertyConstraintViolation"),
    ("ocpp2.0.1", "FirmwareStatusNotification", {"requestId": 1},
     "OccurrenceConstraintViolation"),
    ("ocpp1.6", "DiagnosticsStatusNotification", {"status": "Uploaded", "extra": 1},
     "FormationViolation"),
    ("ocpp1.6", "SignedFirmwareStatusNotification", {"status": "Installed",
                                                     "requestId": "7"},
     "TypeConstraintViolation"),
])
async def test_malformed_notifications_get_a_callerror(
        registered: RunningServer, version: str, action: str, payload: dict[str, Any],
        code: str) -> None:
    async with await RawClient.connect(registered.url, "SIM1", [version]) as c:
        answer = await c.call(action, payload)
        assert answer[0] == 4 and answer[2] == code, answer
        assert (await c.call("Heartbeat", {}))[0] == 3  # the connection lives on


async def test_a_request_the_station_version_cannot_carry_is_not_left_open(
        tmp_path: Path) -> None:
    """A file URL too long for OCPP (a --files-url of 600 characters): the request is
    refused with one error, never sent, and recorded as not sent."""
    from csms.config import Settings

    settings = Settings(db=str(tmp_path / "db.sqlite3"), port=0, admin_port=0,
                        data_dir=str(tmp_path / "data"),
                        files_url="http://files.example/" + "p" * 600)
    server = RunningServer(settings)
    await server.start()
    try:
        await server.add_station("SIM1")
        async with await RawClient.connect(server.url, "SIM1", ["ocpp2.0.1"]) as c:
            await server.wait_connected("SIM1")
            status, result = await command(server, "SIM1", "get-log", {})
            assert status == 400 and "remoteLocation" in result["error"], result
            assert c.calls.empty()
        async def work(tx: Tx) -> list[str]:
            return [t.status for t in await tx.list_transfers(TransferKind.LOG)]

        assert await server.repo.read(work) == ["Invalid"]
    finally:
        await server.stop()
