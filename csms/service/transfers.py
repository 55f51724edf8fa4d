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

2.0.1 L03 PublishFirmware asks a local controller to download an image (from the same
per-request URL) and publish it on URLs of its own for the stations behind it; its
PublishFirmwareStatusNotification is tracked like a firmware update's, the URLs kept
when it reports Published. L04 UnpublishFirmware is recorded with its answer.

A request for a station that is not connected is queued (:meth:`TransferUseCases.
new_firmware_update` and the others with ``queued=True``): no token exists until a node
claims it (:meth:`~TransferUseCases.claim_queued`, one conditional update, so one node
wins) after the station's next accepted BootNotification, or once a station whose last
boot was accepted is heard on a connection it opened without one
(:meth:`~TransferUseCases.queue_released`), and makes its URL
(:meth:`~TransferUseCases.reissue`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from csms.domain.maintenance import FirmwareImage, Transfer, TransferKind, TransferState
from csms.domain.model import BootPolicy
from csms.service import defaults
from csms.service.ports import Tx
from csms.service.stations import BOOT_STATUS_OPTION, StationUseCases

__all__ = ["TransferError", "TransferUseCases", "token_hash"]

# Status words that say nothing about a request: the station is not busy (1.6 Idle,
# sent when triggered).
_IDLE = frozenset({"Idle"})
# at most this many published locations of one request are kept
MAX_LOCATIONS = 20
_QUEUED = TransferState.QUEUED.value
_DOWNLOADS = frozenset({TransferKind.FIRMWARE, TransferKind.PUBLISH})


class TransferError(ValueError):
    """An operator's transfer request that cannot be made (one line)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TransferUseCases(StationUseCases):
    """Firmware updates and log requests, as the operator makes them and as the station
    reports them; the checks of the file listener (:mod:`csms.files`)."""

    transfer_hours: float = defaults.TRANSFER_HOURS

    async def _new_transfer(self, transfer: Transfer, queued: bool = False) -> str:
        """Record a request: the token of its URL ('' when queued: a queued request has
        no URL until it is sent; its token hash is of a token nobody was given)."""
        token = secrets.token_urlsafe(32)
        transfer.token_hash = token_hash(token)
        if queued:
            transfer.status = _QUEUED
            token = ""

        async def work(tx: Tx) -> None:
            if await tx.get_station(transfer.station_id) is None:
                raise TransferError(f"no station {transfer.station_id}")
            await tx.insert_transfer(transfer)

        await self.repo.unit(work)
        return token

    async def find_firmware(self, version: str) -> FirmwareImage:
        """The image of ``version``, or TransferError."""

        async def find(tx: Tx) -> FirmwareImage | None:
            return await tx.get_firmware(version)

        image = await self.repo.read(find)
        if image is None:
            raise TransferError(f"no firmware {version!r} (csms firmware list)")
        return image

    async def remember_md5(self, image: FirmwareImage, md5: str) -> None:
        """Keep an image's MD5 (images added before it was recorded get it on first use)."""
        assert image.id is not None
        image_id = image.id

        async def work(tx: Tx) -> None:
            await tx.set_firmware_md5(image_id, md5)

        await self.repo.unit(work)
        image.md5 = md5

    async def new_firmware_update(self, station_id: str, version: str, until: datetime,
                                  detail: dict[str, Any], *, queued: bool = False
                                  ) -> tuple[Transfer, FirmwareImage, str]:
        """A firmware update about to be sent (or queued): (transfer, image, token). The
        download URL works until ``until`` (the end of the update's window)."""
        now = self.clock()
        if until <= now:
            raise TransferError("the update window ends in the past")
        image = await self.find_firmware(version)
        transfer = Transfer(TransferKind.FIRMWARE, station_id, "", until, now,
                            firmware_id=image.id, updated_at=now,
                            detail=json.dumps(detail, default=str))
        token = await self._new_transfer(transfer, queued)
        return transfer, image, token

    async def new_log_request(self, station_id: str, log_type: str,
                              detail: dict[str, Any], *, queued: bool = False
                              ) -> tuple[Transfer, str]:
        """A log request about to be sent (or queued): (transfer, token for its upload
        URL)."""
        if log_type not in ("Diagnostics", "SecurityLog"):
            raise TransferError("the log type is Diagnostics or SecurityLog")
        now = self.clock()
        transfer = Transfer(TransferKind.LOG, station_id, "",
                            now + timedelta(hours=self.transfer_hours), now,
                            log_type=log_type, updated_at=now,
                            detail=json.dumps(detail, default=str))
        token = await self._new_transfer(transfer, queued)
        return transfer, token

    async def _check_station(self, station_id: str) -> None:
        async def work(tx: Tx) -> bool:
            return await tx.get_station(station_id) is not None

        if not await self.repo.read(work):
            raise TransferError(f"no station {station_id}")

    async def new_publish(self, station_id: str, image: FirmwareImage,
                          detail: dict[str, Any], *, queued: bool = False
                          ) -> tuple[Transfer, str]:
        """A PublishFirmware about to be sent (or queued): (transfer, token of the URL the
        local controller downloads the image from)."""
        await self._check_station(station_id)
        now = self.clock()
        transfer = Transfer(TransferKind.PUBLISH, station_id, "",
                            now + timedelta(hours=self.transfer_hours), now,
                            firmware_id=image.id, updated_at=now,
                            detail=json.dumps(detail, default=str))
        token = await self._new_transfer(transfer, queued)
        return transfer, token

    async def new_unpublish(self, station_id: str, image: FirmwareImage,
                            detail: dict[str, Any]) -> Transfer:
        """An UnpublishFirmware about to be sent (it moves no file: its URL is nobody's)."""
        await self._check_station(station_id)
        now = self.clock()
        transfer = Transfer(TransferKind.UNPUBLISH, station_id, "", now, now,
                            firmware_id=image.id, updated_at=now,
                            detail=json.dumps(detail, default=str))
        await self._new_transfer(transfer)
        return transfer

    async def unpublish_answered(self, transfer_id: int, word: str) -> None:
        """The answer to UnpublishFirmware; Unpublished: the station's publications of
        that image are no more."""
        now = self.clock()

        async def work(tx: Tx) -> None:
            await tx.update_transfer_status(transfer_id, word, now)
            t = await tx.get_transfer(transfer_id)
            if word != "Unpublished" or t is None:
                return
            for p in await tx.list_transfers(TransferKind.PUBLISH, t.station_id, 10_000):
                if p.firmware_id == t.firmware_id and p.status == "Published" \
                        and p.id is not None:
                    await tx.update_transfer_status(p.id, "Unpublished", now)

        await self.repo.unit(work)

    # -- requests kept for stations that are offline -------------------------------------
    async def queue_released(self, station_id: str, version: str) -> bool:
        """Whether the station's queued requests may go to a connection of ``version`` on
        which it sent no BootNotification (1.6 §4.2, 2.0.1 B01-B03: nothing before an
        accepted boot): something is queued for it, the answer to its latest
        BootNotification, as stored with it, was Accepted, that boot was on ``version``,
        and its registration would accept it again (the operator did not set it to
        Pending or Rejected since). Read from the database: it holds after a restart, and
        on whichever node the station comes back to."""

        async def work(tx: Tx) -> bool:
            if not await tx.queued_transfers(station_id, 1):
                return False  # the usual case: nothing queued, one read
            station = await tx.get_station(station_id)
            if station is None or station.boot_policy is not BootPolicy.ACCEPTED \
                    or station.last_boot_at is None or station.ocpp_version != version:
                return False
            return await tx.get_station_option(station_id, BOOT_STATUS_OPTION) == "Accepted"

        return await self.repo.read(work)

    async def unclaim(self, transfer: Transfer) -> bool:
        """Put a claimed request back in the queue (it was not sent: its station may no
        longer get it on this connection); False when it is no longer ``sending``."""
        assert transfer.id is not None
        transfer_id = transfer.id
        now = self.clock()

        async def work(tx: Tx) -> bool:
            return await tx.move_transfer(transfer_id, TransferState.SENDING.value, _QUEUED,
                                          now)

        return await self.repo.unit(work)

    async def claim_queued(self, station_id: str) -> Transfer | None:
        """The station's oldest queued request, now ``sending`` and this caller's (no
        other node or task gets it); queued requests whose window ended on the way are
        marked expired. None: nothing (more) to send."""
        now = self.clock()

        async def waiting(tx: Tx) -> bool:
            return bool(await tx.queued_transfers(station_id, 1))

        if not await self.repo.read(waiting):
            return None  # the usual case at a boot: a read, no write transaction

        async def work(tx: Tx) -> Transfer | None:
            for t in await tx.queued_transfers(station_id, 20):
                assert t.id is not None
                if t.expires_at <= now:
                    if await tx.move_transfer(t.id, _QUEUED, TransferState.EXPIRED, now):
                        await tx.add_station_event(station_id, "transfer_expired", {
                            "requestId": t.id, "kind": t.kind.value}, now)
                    continue
                if await tx.move_transfer(t.id, _QUEUED, TransferState.SENDING, now):
                    t.status = TransferState.SENDING.value
                    return t
            return None

        return await self.repo.unit(work)

    async def reissue(self, transfer: Transfer) -> str:
        """A claimed request's URL token, made now (log and publish URLs work for
        ``transfer_hours`` from now; a firmware update's until its window ends)."""
        assert transfer.id is not None
        transfer_id = transfer.id
        now = self.clock()
        token = secrets.token_urlsafe(32)
        if transfer.kind is not TransferKind.FIRMWARE:
            transfer.expires_at = now + timedelta(hours=self.transfer_hours)
        transfer.token_hash = token_hash(token)

        async def work(tx: Tx) -> None:
            await tx.reissue_transfer(transfer_id, transfer.token_hash, transfer.expires_at,
                                      now)

        await self.repo.unit(work)
        return token

    async def cancel_queued(self, transfer_id: int, kinds: tuple[TransferKind, ...]
                            ) -> Transfer:
        """The operator cancels a queued request (only while it is queued)."""
        now = self.clock()

        async def work(tx: Tx) -> Transfer:
            t = await tx.get_transfer(transfer_id) if 0 < transfer_id < 2**63 else None
            if t is None or t.kind not in kinds:
                raise TransferError(f"no request {transfer_id}")
            if t.status != _QUEUED or t.expires_at <= now:
                raise TransferError(f"request {transfer_id} is {t.state_at(now)}, not queued:"
                                    " only a queued request can be cancelled")
            if not await tx.move_transfer(transfer_id, _QUEUED, TransferState.CANCELLED, now):
                raise TransferError(f"request {transfer_id} is being sent")
            t.status, t.updated_at = TransferState.CANCELLED.value, now
            return t

        return await self.repo.unit(work)

    async def expire_queued(self) -> int:
        """Mark every queued request whose window ended expired: how many."""
        now = self.clock()

        async def work(tx: Tx) -> int:
            n = 0
            for t in await tx.queued_transfers(None, 10_000):
                if t.id is not None and t.expires_at <= now and await tx.move_transfer(
                        t.id, _QUEUED, TransferState.EXPIRED, now):
                    await tx.add_station_event(t.station_id, "transfer_expired", {
                        "requestId": t.id, "kind": t.kind.value}, now)
                    n += 1
            return n

        return await self.repo.unit(work)

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
            # only a request this station received: not another station's, not one
            # still queued (or cancelled, expired, never sent)
            mine = transfer is not None and transfer.station_id == station_id \
                and transfer.kind is kind and transfer.sent
            await self.metered_event(
                tx, station_id, event, payload if mine else {**payload, "unmatched": True},
                now)
            if mine and transfer is not None and transfer.id is not None \
                    and status not in _IDLE:
                await tx.update_transfer_status(transfer.id, status, now)
                locations = payload.get("location")
                if kind is TransferKind.PUBLISH and status == "Published" \
                        and isinstance(locations, list):
                    # 2.0.1 L03: the URLs the local controller serves the image on
                    await tx.set_transfer_locations(
                        transfer.id, json.dumps([str(u) for u in locations[:MAX_LOCATIONS]]),
                        now)

        await self.repo.unit(work)

    # -- the file listener's checks ----------------------------------------------------------
    async def download_target(self, token: str) -> tuple[Transfer, FirmwareImage] | None:
        """The firmware update and image a download URL's token opens, while it works."""
        now = self.clock()

        async def work(tx: Tx) -> tuple[Transfer, FirmwareImage] | None:
            transfer = await tx.transfer_by_token(token_hash(token))
            # a firmware update's image, or the one a local controller publishes (L03)
            if transfer is None or transfer.kind not in _DOWNLOADS \
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
