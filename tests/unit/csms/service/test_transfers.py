"""Firmware publications and queued requests on the in-memory storage fake: a queued
request is claimed once, expires with its window, is cancelled only while queued, and a
notification about a request the station never got (queued, another station's) changes
nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from csms.domain.maintenance import FirmwareImage, Transfer, TransferKind, TransferState
from csms.service.charging import ChargingService, new_station
from csms.service.ports import Tx
from csms.service.transfers import TransferError
from support.memory import MemoryRepository

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def svc() -> ChargingService:
    service = ChargingService(MemoryRepository(), clock=Clock())

    async def setup(tx: Tx) -> None:
        for sid in ("LC1", "CP2"):
            await tx.insert_station(new_station(sid))
        await tx.add_firmware(FirmwareImage("fw-1", "fw.bin", 10, "a" * 64, NOW, md5="b" * 32))

    await service.repo.unit(setup)
    return service


def clock(svc: ChargingService) -> Clock:
    assert isinstance(svc.clock, Clock)
    return svc.clock


async def get(svc: ChargingService, rid: int | None) -> Transfer:
    assert rid is not None

    async def work(tx: Tx) -> Transfer | None:
        return await tx.get_transfer(rid)

    t = await svc.repo.read(work)
    assert t is not None
    return t


async def test_a_queued_request_is_claimed_once_in_order(svc: ChargingService) -> None:
    image = await svc.find_firmware("fw-1")
    first, token = await svc.new_publish("LC1", image, {"checksum": "b" * 32}, queued=True)
    assert token == "" and first.status == "queued" and not first.sent
    second, _ = await svc.new_log_request("LC1", "Diagnostics", {}, queued=True)
    other, _ = await svc.new_log_request("CP2", "Diagnostics", {}, queued=True)
    claimed = await svc.claim_queued("LC1")
    assert claimed is not None and claimed.id == first.id and claimed.status == "sending"
    nxt = await svc.claim_queued("LC1")
    assert nxt is not None and nxt.id == second.id
    assert await svc.claim_queued("LC1") is None  # nothing left, nothing twice
    assert (await get(svc, other.id)).status == "queued"
    # the URL token is made at sending time, and only then opens the URL
    token = await svc.reissue(claimed)
    found = await svc.download_target(token)
    assert found is not None and found[0].id == first.id


async def test_a_queued_request_has_no_url(svc: ChargingService) -> None:
    t, image, token = await svc.new_firmware_update("LC1", "fw-1", NOW + timedelta(hours=1),
                                                    {}, queued=True)
    assert token == ""
    assert not t.open_at(NOW)
    assert image.version == "fw-1"


async def test_a_window_that_ends_while_queued_expires(svc: ChargingService) -> None:
    t, _, _ = await svc.new_firmware_update("LC1", "fw-1", NOW + timedelta(minutes=5), {},
                                            queued=True)
    assert t.state_at(NOW) == "queued"
    assert t.state_at(NOW + timedelta(minutes=5)) == "expired"  # shown at once
    clock(svc).now = NOW + timedelta(minutes=6)
    assert await svc.claim_queued("LC1") is None
    assert (await get(svc, t.id)).status == "expired"
    t2, _ = await svc.new_log_request("LC1", "SecurityLog", {}, queued=True)
    clock(svc).now += timedelta(hours=25)
    assert await svc.expire_queued() == 1
    assert (await get(svc, t2.id)).status == "expired"


async def test_cancel_only_while_queued_and_of_its_kind(svc: ChargingService) -> None:
    t, _ = await svc.new_log_request("LC1", "Diagnostics", {}, queued=True)
    assert t.id is not None
    with pytest.raises(TransferError, match="no request"):
        await svc.cancel_queued(t.id, (TransferKind.FIRMWARE, TransferKind.PUBLISH))
    with pytest.raises(TransferError, match="no request"):
        await svc.cancel_queued(2**63, (TransferKind.LOG,))
    assert (await svc.cancel_queued(t.id, (TransferKind.LOG,))).status == "cancelled"
    with pytest.raises(TransferError, match="cancelled, not queued"):
        await svc.cancel_queued(t.id, (TransferKind.LOG,))
    assert await svc.claim_queued("LC1") is None
    sent, _ = await svc.new_log_request("LC1", "Diagnostics", {})
    assert sent.id is not None
    with pytest.raises(TransferError, match="Requested, not queued"):
        await svc.cancel_queued(sent.id, (TransferKind.LOG,))


async def test_publish_notifications_of_requests_never_received(svc: ChargingService) -> None:
    image = await svc.find_firmware("fw-1")
    sent, _ = await svc.new_publish("LC1", image, {})
    queued, _ = await svc.new_publish("LC1", image, {}, queued=True)
    published = {"status": "Published", "location": ["http://lc/fw"]}
    for station, rid in (("CP2", sent.id), ("LC1", queued.id), ("LC1", 10**6)):
        await svc.transfer_status(station, TransferKind.PUBLISH, "publish_firmware_status",
                                  {**published, "requestId": rid}, rid)
    assert (await get(svc, sent.id)).status == "Requested"
    assert (await get(svc, queued.id)).status == "queued"
    assert (await get(svc, queued.id)).locations is None
    await svc.transfer_status("LC1", TransferKind.PUBLISH, "publish_firmware_status",
                              {**published, "requestId": sent.id}, sent.id)
    mine = await get(svc, sent.id)
    assert mine.status == "Published" and json.loads(mine.locations or "") == ["http://lc/fw"]
    # a firmware update's notification naming the publication is not about it either
    await svc.transfer_status("LC1", TransferKind.FIRMWARE, "firmware_status",
                              {"status": "Installed", "requestId": sent.id}, sent.id)
    assert (await get(svc, sent.id)).status == "Published"
    # unpublished: the station's publications of the image say so
    un = await svc.new_unpublish("LC1", image, {})
    assert un.id is not None
    await svc.unpublish_answered(un.id, "Unpublished")
    assert (await get(svc, sent.id)).status == "Unpublished"


async def test_state_table_words() -> None:
    t = Transfer(TransferKind.LOG, "LC1", "h", NOW + timedelta(hours=1), NOW)
    assert t.sent and t.open_at(NOW)
    for word in ("queued", "cancelled", "expired", "Invalid"):
        t.status = word
        assert not t.sent and not t.open_at(NOW)
    t.status = TransferState.SENDING.value
    assert t.sent and t.open_at(NOW)  # the station may answer before its answer is stored
