"""Use cases of file transfers between the central system and stations: firmware updates
(1.6 §5.19 UpdateFirmware, the security extension's SignedUpdateFirmware, 2.0.1 L01/L02)
and log uploads (1.6 §5.7 GetDiagnostics, the security extension's GetLog, 2.0.1 N01).

Each request gets a :class:`~csms.domain.maintenance.Transfer` whose id is the OCPP
requestId and a secret token (32 random bytes) that is the only way to its URL; the
central system keeps the token's SHA-256 only, so the database does not hold a working
URL. The station's answer and its status notifications are the transfer's ``status``;
a notification for a request the station never got is stored as an event and changes
nothing (``unmatched``). 1.6 FirmwareStatusNotification and DiagnosticsStatusNotification
carry no requestId: they are about the station's latest request of that kind.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from csms.domain.maintenance import FirmwareImage, Transfer, TransferKind
from csms.service import defaults
from csms.service.ports import Tx
from csms.service.stations import StationUseCases

__all__ = ["TransferError", "TransferUseCases", "token_hash"]

# Status words that say nothing about a request: the station is not busy (1.6 Idle,
# sent when triggered).
_IDLE = frozenset({"Idle"})


class TransferError(ValueError):
    """An operator's transfer request that cannot be made (one line)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TransferUseCases(StationUseCases):
    """Firmware updates and log requests, as the operator makes them and as the station
    reports them; the checks of the file listener (:mod:`csms.files`)."""

    transfer_hours: float = defaults.TRANSFER_HOURS

    async def _new_transfer(self, transfer: Transfer) -> str:
        token = secrets.token_urlsafe(32)
        transfer.token_hash = token_hash(token)

        async def work(tx: Tx) -> None:
            if await tx.get_station(transfer.station_id) is None:
                raise TransferError(f"no station {transfer.station_id}")
            await tx.insert_transfer(transfer)

        await self.repo.unit(work)
        return token

    async def new_firmware_update(self, station_id: str, version: str, until: datetime,
                                  detail: dict[str, Any]) -> tuple[Transfer, FirmwareImage,
                                                                   str]:
        """A firmware update about to be sent: (transfer, image, token). The download URL
        works until ``until`` (the end of the update's window)."""
        now = self.clock()
        if until <= now:
            raise TransferError("the update window ends in the past")

        async def find(tx: Tx) -> FirmwareImage | None:
            return await tx.get_firmware(version)

        image = await self.repo.read(find)
        if image is None:
            raise TransferError(f"no firmware {version!r} (csms firmware list)")
        transfer = Transfer(TransferKind.FIRMWARE, station_id, "", until, now,
                            firmware_id=image.id, updated_at=now,
                            detail=json.dumps(detail, default=str))
        token = await self._new_transfer(transfer)
        return transfer, image, token

    async def new_log_request(self, station_id: str, log_type: str,
                              detail: dict[str, Any]) -> tuple[Transfer, str]:
        """A log request about to be sent: (transfer, token for its upload URL)."""
        if log_type not in ("Diagnostics", "SecurityLog"):
            raise TransferError("the log type is Diagnostics or SecurityLog")
        now = self.clock()
        transfer = Transfer(TransferKind.LOG, station_id, "",
                            now + timedelta(hours=self.transfer_hours), now,
                            log_type=log_type, updated_at=now,
                            detail=json.dumps(detail, default=str))
        token = await self._new_transfer(transfer)
        return transfer, token

    async def transfer_answered(self, transfer_id: int, word: str) -> None:
        """The station's answer to the request (or Offline / Timeout / a CALLERROR code)."""
        now = self.clock()

        async def work(tx: Tx) -> None:
            await tx.update_transfer_status(transfer_id, word, now)

        await self.repo.unit(work)

    async def transfer_status(self, station_id: str, kind: TransferKind, event: str,
                              payload: dict[str, Any], request_id: int | None,
                              log_type: str | None = None) -> None:
        """A station's status notification about a transfer: stored as an event ``event``;
        the transfer it names (or, without a requestId, the station's latest of ``kind``)
        takes its status."""
        now = self.clock()
        status = str(payload.get("status", ""))

        async def work(tx: Tx) -> None:
            if request_id is None:
                transfer = await tx.latest_transfer(station_id, kind, log_type)
            else:
                transfer = await tx.get_transfer(request_id) \
                    if 0 < request_id < 2**63 else None
            mine = transfer is not None and transfer.station_id == station_id \
                and transfer.kind is kind
            await self._metered_event(
                tx, station_id, event, payload if mine else {**payload, "unmatched": True},
                now)
            if mine and transfer is not None and transfer.id is not None \
                    and status not in _IDLE:
                await tx.update_transfer_status(transfer.id, status, now)

        await self.repo.unit(work)

    # -- the file listener's checks ----------------------------------------------------------
    async def download_target(self, token: str) -> tuple[Transfer, FirmwareImage] | None:
        """The firmware update and image a download URL's token opens, while it works."""
        now = self.clock()

        async def work(tx: Tx) -> tuple[Transfer, FirmwareImage] | None:
            transfer = await tx.transfer_by_token(token_hash(token))
            if transfer is None or transfer.kind is not TransferKind.FIRMWARE \
                    or not transfer.open_at(now) or transfer.firmware_id is None:
                return None
            image = await tx.firmware_by_id(transfer.firmware_id)
            return None if image is None else (transfer, image)

        return await self.repo.read(work)

    async def upload_target(self, token: str) -> Transfer | None:
        """The log request an upload URL's token opens: while it works, once."""
        now = self.clock()

        async def work(tx: Tx) -> Transfer | None:
            return await tx.transfer_by_token(token_hash(token))

        transfer = await self.repo.read(work)
        if transfer is None or transfer.kind is not TransferKind.LOG \
                or not transfer.open_at(now) or transfer.uploaded_at is not None:
            return None
        return transfer

    async def upload_finished(self, transfer: Transfer, file_name: str, size: int) -> bool:
        """Record the upload (False: another upload with the token came first)."""
        now = self.clock()
        assert transfer.id is not None
        transfer_id = transfer.id

        async def work(tx: Tx) -> bool:
            done = await tx.finish_upload(transfer_id, file_name, size, now)
            if done:
                await tx.add_station_event(transfer.station_id, "log_uploaded", {
                    "requestId": transfer_id, "file_name": file_name, "bytes": size}, now)
            return done

        return await self.repo.unit(work)
