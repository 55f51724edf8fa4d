"""Reservations, firmware images and transfers on both backends: round trips, the
once-only upload, unique tokens and versions, the newest transfer of a kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csms.domain.maintenance import (
    FirmwareImage,
    Reservation,
    ReservationState,
    Transfer,
    TransferKind,
)
from csms.service.ports import Repository, StorageError, Tx

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def test_reservations(repo: Repository) -> None:
    async def add(tx: Tx) -> tuple[int, int]:
        a = Reservation("CP1", 1, "TAG", NOW + timedelta(hours=1), NOW, parent_tag="G")
        b = Reservation("CP2", 0, "TAG", NOW + timedelta(hours=2), NOW)
        return await tx.insert_reservation(a), await tx.insert_reservation(b)

    a, b = await repo.unit(add)

    async def accept(tx: Tx) -> None:
        r = await tx.get_reservation(a)
        assert r is not None and r.parent_tag == "G" and r.expires_at == NOW + timedelta(hours=1)
        assert r.move(ReservationState.ACCEPTED, NOW)
        r.answer = "Accepted"
        await tx.update_reservation(r)

    await repo.unit(accept)

    async def read(tx: Tx) -> tuple[list[Reservation], list[Reservation], list[Reservation]]:
        return (await tx.accepted_reservations("CP1"), await tx.list_reservations(),
                await tx.list_reservations("CP2", 5))

    accepted, every, cp2 = await repo.read(read)
    assert [(r.id, r.status, r.answer) for r in accepted] == [
        (a, ReservationState.ACCEPTED, "Accepted")]
    assert [r.id for r in every] == [b, a]
    assert [r.id for r in cp2] == [b]


async def test_firmware_and_transfers(repo: Repository) -> None:
    image = FirmwareImage("2.0", "fw.bin", 10, "a" * 64, NOW, "c2ln", "PEM")

    async def add(tx: Tx) -> tuple[int, int, int]:
        fid = await tx.add_firmware(image)
        f = await tx.insert_transfer(Transfer(TransferKind.FIRMWARE, "CP1", "h1",
                                              NOW + timedelta(days=1), NOW, firmware_id=fid,
                                              detail='{"retries": 1}'))
        log1 = await tx.insert_transfer(Transfer(TransferKind.LOG, "CP1", "h2",
                                                 NOW + timedelta(days=1), NOW,
                                                 log_type="Diagnostics"))
        log2 = await tx.insert_transfer(Transfer(TransferKind.LOG, "CP1", "h3",
                                                 NOW + timedelta(days=1), NOW,
                                                 log_type="SecurityLog"))
        return f, log1, log2

    f, log1, log2 = await repo.unit(add)

    async def duplicate_version(tx: Tx) -> None:
        await tx.add_firmware(image)

    with pytest.raises(StorageError):
        await repo.unit(duplicate_version)

    async def duplicate_token(tx: Tx) -> None:
        await tx.insert_transfer(Transfer(TransferKind.LOG, "CP2", "h2", NOW, NOW))

    with pytest.raises(StorageError):
        await repo.unit(duplicate_token)

    async def upload(tx: Tx) -> tuple[bool, bool]:
        await tx.update_transfer_status(log1, "Uploading", NOW)
        return (await tx.finish_upload(log1, "a.log", 5, NOW),
                await tx.finish_upload(log1, "b.log", 6, NOW))

    assert await repo.unit(upload) == (True, False)

    async def read(tx: Tx) -> dict[str, object]:
        return {
            "by_token": await tx.transfer_by_token("h2"),
            "latest_diag": await tx.latest_transfer("CP1", TransferKind.LOG, "Diagnostics"),
            "latest_log": await tx.latest_transfer("CP1", TransferKind.LOG),
            "none": await tx.latest_transfer("CP2", TransferKind.FIRMWARE),
            "firmware": await tx.list_transfers(TransferKind.FIRMWARE),
            "image": await tx.get_firmware("2.0"),
            "images": await tx.list_firmware(),
        }

    got = await repo.read(read)
    by_token = got["by_token"]
    assert isinstance(by_token, Transfer)
    assert (by_token.id, by_token.status, by_token.file_name, by_token.size) == (
        log1, "Uploading", "a.log", 5)
    assert by_token.uploaded_at == NOW
    latest_diag, latest_log = got["latest_diag"], got["latest_log"]
    assert isinstance(latest_diag, Transfer) and latest_diag.id == log1
    assert isinstance(latest_log, Transfer) and latest_log.id == log2
    assert got["none"] is None
    assert [t.id for t in got["firmware"]] == [f]  # type: ignore[attr-defined]
    assert got["image"] == FirmwareImage("2.0", "fw.bin", 10, "a" * 64, NOW, "c2ln", "PEM",
                                         id=image.id)
    assert len(got["images"]) == 1  # type: ignore[arg-type]
