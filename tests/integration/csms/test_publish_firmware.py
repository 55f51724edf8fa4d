"""2.0.1 firmware publishing by a local controller (L03 PublishFirmware, L04
UnpublishFirmware, PublishFirmwareStatusNotification): the operator's commands through the
admin API, a simulated local controller over real sockets that downloads the image from
the file listener and serves it on its own HTTP server, and stations that lie."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from chargers_sim import Station
from chargers_sim.maintenance import simulator_image
from csms.domain.maintenance import FirmwareImage, TransferKind
from csms.filestore import firmware_path
from csms.service.ports import Tx
from support import RunningServer, station_events, until
from support.admin import api
from support.client import RawClient

FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}


async def command(server: RunningServer, station: str, name: str,
                  body: dict[str, Any]) -> tuple[int, Any]:
    return await api(server, "POST", f"/stations/{station}/commands/{name}", body)


async def transfer(server: RunningServer, rid: int) -> Any:
    async def work(tx: Tx) -> Any:
        return await tx.get_transfer(rid)

    return await server.repo.read(work)


async def transfers(server: RunningServer, kind: TransferKind) -> list[Any]:
    async def work(tx: Tx) -> list[Any]:
        return await tx.list_transfers(kind)

    return await server.repo.read(work)


async def add_firmware(server: RunningServer, version: str, blob: bytes,
                       md5: str | None = None) -> None:
    """An image as `csms firmware add` leaves it (``md5`` None: one added before the MD5
    was recorded, which the central system computes from the file)."""
    digest = hashlib.sha256(blob).hexdigest()
    path = firmware_path(server.settings.data_dir, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)

    async def work(tx: Tx) -> None:
        await tx.add_firmware(FirmwareImage(version, "fw.bin", len(blob), digest,
                                            datetime.now(UTC), md5=md5))

    await server.repo.unit(work)


async def _status_is(server: RunningServer, rid: int, word: str) -> bool:
    return (await transfer(server, rid)).status == word


@pytest.fixture
async def registered(csms_server: RunningServer) -> RunningServer:
    for sid in ("LC1", "LC2", "SIM2", "OLD16"):
        await csms_server.add_station(sid)
    return csms_server


async def test_a_local_controller_publishes_the_exact_image_and_unpublishes_it(
        registered: RunningServer) -> None:
    blob = simulator_image("sim-5.0", 50_000)
    await add_firmware(registered, "sim-5.0", blob)
    st = Station(registered.url, "LC1", "2.0.1", seed=3, local_controller=True, **FAST)
    await st.start()
    try:
        status, result = await command(registered, "LC1", "publish-firmware", {
            "version": "sim-5.0", "retries": 2, "retry_interval": 1})
        assert status == 200 and result["action"] == "PublishFirmware", result
        rid = result["request_id"]
        await until(lambda: _status_is(registered, rid, "Published"))
        assert st.publish_statuses == ["Downloading", "Downloaded", "ChecksumVerified",
                                       "Published"]
        sent = next(p for a, p in st.received_calls if a == "PublishFirmware")
        # 2.0.1 L03: the checksum is the image's MD5 in hex; the URL is the request's own
        assert sent["checksum"] == hashlib.md5(blob, usedforsecurity=False).hexdigest()
        assert sent["requestId"] == rid and sent["retries"] == 2
        assert "sim-5.0" not in sent["location"] and len(sent["location"]) < 512
        t = await transfer(registered, rid)
        locations = json.loads(t.locations)
        assert locations and locations[0].startswith("http://127.0.0.1:")
        # the published URL serves the exact bytes; the admin API shows where
        async with aiohttp.ClientSession() as http:
            async with http.get(locations[0]) as r:
                assert r.status == 200 and await r.read() == blob
            _, listed = await api(registered, "GET", "/transfers?kind=publish")
            assert listed[0]["locations"] == locations and listed[0]["status"] == "Published"
            # the audit trail keeps no working URL
            _, audit = await api(registered, "GET", "/audit?limit=5")
            assert all(sent["location"] not in json.dumps(a) for a in audit)
            status, result = await command(registered, "LC1", "unpublish-firmware",
                                           {"version": "sim-5.0"})
            assert status == 200 and result["status"] == "Unpublished", result
            async with http.get(locations[0]) as r:
                assert r.status == 404
        assert (await transfer(registered, rid)).status == "Unpublished"
        unpublished = await transfer(registered, result["request_id"])
        assert unpublished.kind is TransferKind.UNPUBLISH and unpublished.status == "Unpublished"
        # nothing published under that checksum any more: NoFirmware, recorded as answered
        status, result = await command(registered, "LC1", "unpublish-firmware",
                                       {"version": "sim-5.0"})
        assert status == 200 and result["status"] == "NoFirmware", result
        assert (await transfer(registered, result["request_id"])).status == "NoFirmware"
    finally:
        await st.close()


async def test_a_wrong_checksum_is_never_published(registered: RunningServer) -> None:
    """The image on the file listener does not match the checksum sent (here: an MD5
    recorded for another file): the local controller reports InvalidChecksum and serves
    nothing."""
    await add_firmware(registered, "sim-6.0", simulator_image("sim-6.0"),
                       md5=hashlib.md5(b"another image", usedforsecurity=False).hexdigest())
    st = Station(registered.url, "LC1", "2.0.1", seed=3, local_controller=True, **FAST)
    await st.start()
    try:
        status, result = await command(registered, "LC1", "publish-firmware",
                                       {"version": "sim-6.0"})
        assert status == 200, result
        await until(lambda: _status_is(registered, result["request_id"], "InvalidChecksum"))
        assert st.publish_statuses == ["Downloading", "Downloaded", "InvalidChecksum"]
        assert st.published == {}
        assert (await transfer(registered, result["request_id"])).locations is None
    finally:
        await st.close()


async def test_a_station_that_is_no_local_controller_rejects(
        registered: RunningServer) -> None:
    await add_firmware(registered, "sim-5.0", simulator_image("sim-5.0"))
    st = Station(registered.url, "SIM2", "2.0.1", seed=3, **FAST)
    await st.start()
    try:
        status, result = await command(registered, "SIM2", "publish-firmware",
                                       {"version": "sim-5.0"})
        assert status == 200 and result["status"] == "Rejected"
        assert (await transfer(registered, result["request_id"])).status == "Rejected"
        status, result = await command(registered, "SIM2", "unpublish-firmware",
                                       {"version": "sim-5.0"})
        assert status == 200 and result["status"] == "NoFirmware"
    finally:
        await st.close()


async def test_refused_for_a_1_6_station_or_an_unknown_version(
        registered: RunningServer) -> None:
    await add_firmware(registered, "sim-5.0", simulator_image("sim-5.0"))
    async with await RawClient.connect(registered.url, "OLD16", ["ocpp1.6"]) as c:
        await registered.wait_connected("OLD16")
        assert (await c.result("BootNotification", {
            "chargePointVendor": "v", "chargePointModel": "m"}))["status"] == "Accepted"
        for name in ("publish-firmware", "unpublish-firmware"):
            status, result = await command(registered, "OLD16", name, {"version": "sim-5.0"})
            assert status == 400 and "2.0.1" in result["error"], result
            assert "\n" not in result["error"]
        assert c.calls.empty()
    # offline, but known to speak 1.6: refused too, not queued
    status, result = await command(registered, "OLD16", "publish-firmware",
                                   {"version": "sim-5.0"})
    assert status == 400 and "2.0.1" in result["error"], result
    async with await RawClient.connect(registered.url, "LC1", ["ocpp2.0.1"]) as c:
        await registered.wait_connected("LC1")
        for body in ({"version": "nope"}, {}, {"version": "sim-5.0", "retries": -1},
                     {"version": "sim-5.0", "retry_interval": "soon"}):
            status, result = await command(registered, "LC1", "publish-firmware", body)
            assert status == 400, (body, result)
        assert c.calls.empty()
    assert await transfers(registered, TransferKind.PUBLISH) == []


async def test_status_notifications_of_a_request_never_received_change_nothing(
        registered: RunningServer) -> None:
    """A hostile station reports Published for another station's request, for a request
    that was never made, and for a request of its own still queued (it never got it):
    each is stored as unmatched, and no request changes or gains a location."""
    await add_firmware(registered, "sim-5.0", simulator_image("sim-5.0"))
    # queued for LC2 while it is offline
    status, queued = await command(registered, "LC2", "publish-firmware",
                                   {"version": "sim-5.0"})
    assert status == 202 and queued["status"] == "queued", queued
    async with await RawClient.connect(registered.url, "LC1", ["ocpp2.0.1"]) as c1, \
            await RawClient.connect(registered.url, "SIM2", ["ocpp2.0.1"]) as c2, \
            await RawClient.connect(registered.url, "LC2", ["ocpp2.0.1"]) as c3:
        await registered.wait_connected("LC1")
        await registered.wait_connected("SIM2")
        await registered.wait_connected("LC2")
        task = asyncio.create_task(command(registered, "LC1", "publish-firmware",
                                           {"version": "sim-5.0"}))
        call = await asyncio.wait_for(c1.calls.get(), 5)
        assert call[2] == "PublishFirmware"
        await c1.answer(call[1], {"status": "Accepted"})
        rid = (await task)[1]["request_id"]
        fake = {"status": "Published", "location": ["http://evil.example/fw.bin"]}
        for client, request_id in ((c2, rid), (c2, rid + 1000), (c2, 2**62),
                                   (c3, queued["request_id"])):
            assert await client.result("PublishFirmwareStatusNotification", {
                **fake, "requestId": request_id}) == {}
        for sid, count in (("SIM2", 3), ("LC2", 1)):
            events = await station_events(registered, sid, "publish_firmware_status")
            assert len(events) == count and all(e["unmatched"] for e in events)
        mine = await transfer(registered, rid)
        assert mine.status == "Accepted" and mine.locations is None
        still = await transfer(registered, queued["request_id"])
        assert still.status == "queued" and still.locations is None
        # the controller's own report is taken, with its location
        assert await c1.result("PublishFirmwareStatusNotification", {
            "status": "Published", "location": ["http://10.0.0.2/fw/1"],
            "requestId": rid}) == {}
        mine = await transfer(registered, rid)
        assert mine.status == "Published"
        assert json.loads(mine.locations) == ["http://10.0.0.2/fw/1"]
        # Idle says nothing about a request
        assert await c1.result("PublishFirmwareStatusNotification", {"status": "Idle"}) == {}
        assert (await transfer(registered, rid)).status == "Published"


@pytest.mark.parametrize(("payload", "code"), [
    ({"status": "Shipped", "requestId": 1}, "PropertyConstraintViolation"),
    ({"status": "Published", "location": "http://x/", "requestId": 1},
     "TypeConstraintViolation"),
    ({"requestId": 1}, "OccurrenceConstraintViolation"),
    ({"status": "Published", "location": ["x" * 513], "requestId": 1},
     "TypeConstraintViolation"),  # maxLength: csms.protocol.validation
])
async def test_malformed_publish_notifications_get_a_callerror(
        registered: RunningServer, payload: dict[str, Any], code: str) -> None:
    async with await RawClient.connect(registered.url, "LC1", ["ocpp2.0.1"]) as c:
        answer = await c.call("PublishFirmwareStatusNotification", payload)
        assert answer[0] == 4 and answer[2] == code, answer
        assert (await c.call("Heartbeat", {}))[0] == 3  # the connection lives on


async def test_a_download_that_keeps_failing(registered: RunningServer) -> None:
    """The image is gone from the file listener (404): the local controller retries as
    asked, says DownloadOngoing to an unpublish meanwhile, and ends DownloadFailed."""
    blob = simulator_image("sim-7.0")
    md5 = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    await add_firmware(registered, "sim-7.0", blob, md5=md5)
    firmware_path(registered.settings.data_dir, hashlib.sha256(blob).hexdigest()).unlink()
    st = Station(registered.url, "LC1", "2.0.1", seed=3, local_controller=True, **FAST)
    await st.start()
    try:
        status, result = await command(registered, "LC1", "publish-firmware", {
            "version": "sim-7.0", "retries": 2, "retry_interval": 1})
        assert status == 200 and result["status"] == "Accepted", result

        async def downloading() -> bool:
            return "Downloading" in st.publish_statuses

        await until(downloading)
        status, answer = await command(registered, "LC1", "unpublish-firmware",
                                       {"version": "sim-7.0"})
        assert status == 200 and answer["status"] == "DownloadOngoing", answer
        await until(lambda: _status_is(registered, result["request_id"], "DownloadFailed"))
        assert st.publish_statuses == ["Downloading"] * 3 + ["DownloadFailed"]
        assert st.published == {}
    finally:
        await st.close()
