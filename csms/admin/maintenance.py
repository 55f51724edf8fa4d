"""The operator's commands that leave a record: reservations (``reserve``,
``cancel-reservation``), firmware updates (``update-firmware``), log requests
(``get-log``) and a local controller's firmware publications (``publish-firmware``,
``unpublish-firmware``, 2.0.1 L03/L04). Before the CALL,
:meth:`MaintenanceCommands.prepare` checks what the operator asked for and records it
(the reservation or transfer whose id the CALL carries); after it,
:meth:`MaintenanceCommands.settle` records the station's answer.

``update-firmware``, ``get-log`` and ``publish-firmware`` for a station that is not
connected are recorded as queued (``prepare(..., queued=True)``: the same checks, no
URL); :meth:`MaintenanceCommands.resume` makes the CALL's arguments of a queued request
once a node claimed it for sending.

The arguments the CALL builders read are made here from the operator's only: a caller
cannot hand a station a URL, a request id or a reservation id of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from csms.config import Settings
from csms.domain.maintenance import FirmwareImage, Transfer, TransferKind, parse_when
from csms.filestore import firmware_path
from csms.service.charging import ChargingService
from csms.service.ports import Tx
from csms.service.reservations import ReservationError
from csms.service.transfers import TransferError
from csms.translate.command_args import CommandError
from csms.translate.common import ocpp_time

__all__ = ["QUEUEABLE", "RECORDED", "FileUrls", "MaintenanceCommands"]

RECORDED = frozenset({"reserve", "cancel-reservation", "update-firmware", "get-log",
                      "publish-firmware", "unpublish-firmware"})
# Requests kept for a station that is not connected, sent when it is back (by kind).
QUEUEABLE: dict[str, TransferKind] = {"update-firmware": TransferKind.FIRMWARE,
                                      "get-log": TransferKind.LOG,
                                      "publish-firmware": TransferKind.PUBLISH}
_COMMAND_OF = {kind: command for command, kind in QUEUEABLE.items()}
# the longest firmware window, and the retries a station is asked for
MAX_WINDOW = timedelta(days=30)
MAX_RETRIES = 100
MAX_RETRY_INTERVAL = 86400


class FileUrls(Protocol):
    """The station file listener's URLs (csms.files.FileServer)."""

    def firmware_url(self, token: str) -> str: ...
    def upload_url(self, token: str) -> str: ...


def _when(args: dict[str, Any], key: str, svc: ChargingService, default: str | None
          ) -> Any:
    raw = args.get(key, default)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise CommandError(f"{key} must be a time (RFC 3339 or +2h)")
    try:
        return parse_when(raw, svc.clock())
    except ValueError as exc:
        raise CommandError(f"{key}: {exc}") from None


def _md5_of(data_dir: str, sha256: str) -> str | None:
    """The MD5 of the image file, if it is the file of ``sha256``."""
    try:
        blob = firmware_path(Path(data_dir).expanduser(), sha256).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(blob).hexdigest() != sha256:
        return None
    return hashlib.md5(blob, usedforsecurity=False).hexdigest()


def _bounded(args: dict[str, Any], key: str, high: int) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise CommandError(f"{key} must be an integer from 0 to {high}")
    return value


class ServiceHolder(Protocol):
    """What holds the charging service (csms.server.CentralSystem)."""

    service: ChargingService
    settings: Settings


class MaintenanceCommands:
    def __init__(self, central: ServiceHolder) -> None:
        self.central = central
        self.files: FileUrls | None = None  # set when the file listener runs

    @property
    def service(self) -> ChargingService:
        return self.central.service

    @property
    def data_dir(self) -> str:
        """Where this node keeps firmware images (csms.filestore)."""
        return self.central.settings.data_dir

    def _urls(self) -> FileUrls:
        if self.files is None:
            raise CommandError("file transfers are off on this node (--files-port -1)")
        return self.files

    async def prepare(self, station_id: str, command: str, args: dict[str, Any], *,
                      queued: bool = False) -> dict[str, Any]:
        """The CALL's arguments, once what the operator asked for is recorded (queued:
        recorded as waiting for the station, which is not connected; only
        ``request_id`` is returned)."""
        try:
            return await self._prepare(station_id, command, args, queued)
        except (ReservationError, TransferError) as exc:
            raise CommandError(str(exc)) from None

    async def _checksum(self, image: FirmwareImage) -> str:
        """The image's MD5, hex (2.0.1 L03 PublishFirmware / L04 UnpublishFirmware)."""
        if image.md5:
            return image.md5
        md5 = await asyncio.to_thread(_md5_of, self.data_dir, image.sha256)
        if md5 is None:
            raise CommandError(f"the image of firmware {image.version} is not in the data"
                               " folder of this node")
        await self.service.remember_md5(image, md5)
        return md5

    async def _prepare(self, station_id: str, command: str,
                       args: dict[str, Any], queued: bool) -> dict[str, Any]:
        svc = self.service
        if command == "reserve":
            tag = args.get("tag")
            if not isinstance(tag, str) or not 0 < len(tag) <= 20:
                raise CommandError("tag: 1 to 20 characters (1.6 IdToken)")
            until = _when(args, "until", svc, None)
            if until is None:
                raise CommandError("missing argument 'until'")
            connector = args.get("connector", 0)
            if isinstance(connector, bool) or not isinstance(connector, int):
                raise CommandError("connector must be an integer")
            r = await svc.new_reservation(station_id, tag, connector, until)
            return {"reservation_id": r.id, "tag": r.id_tag, "parent_tag": r.parent_tag,
                    "connector": r.connector_id, "expiry": ocpp_time(r.expires_at)}
        if command == "cancel-reservation":
            rid = args.get("reservation")
            if isinstance(rid, bool) or not isinstance(rid, int) or not 0 < rid < 2**31:
                raise CommandError("reservation must be a reservation id")
            r = await svc.cancellable(station_id, rid)
            return {"reservation_id": r.id}
        if command == "update-firmware":
            urls = None if queued else self._urls()
            version = args.get("version")
            if not isinstance(version, str) or not version:
                raise CommandError("missing argument 'version'")
            start = _when(args, "window_start", svc, "now")
            end = _when(args, "window_end", svc, None) or start + timedelta(days=1)
            if end <= start:
                raise CommandError("window_end must come after window_start")
            if end - start > MAX_WINDOW:
                raise CommandError(f"an update window lasts at most {MAX_WINDOW.days} days")
            retries = _bounded(args, "retries", MAX_RETRIES)
            interval = _bounded(args, "retry_interval", MAX_RETRY_INTERVAL)
            detail = {"version": version, "window_start": start.isoformat(),
                      "window_end": end.isoformat(), "retries": retries,
                      "retry_interval": interval}
            transfer, image, token = await svc.new_firmware_update(
                station_id, version, end, detail, queued=queued)
            if urls is None:
                return {"request_id": transfer.id}
            return {"request_id": transfer.id, "location": urls.firmware_url(token),
                    "retrieve": ocpp_time(start), "retries": retries,
                    "retry_interval": interval, "signature": image.signature,
                    "signing_cert": image.signing_cert}
        if command == "get-log":
            urls = None if queued else self._urls()
            log_type = args.get("type", "Diagnostics")
            since = _when(args, "since", svc, None)
            until = _when(args, "until", svc, None)
            if since is not None and until is not None and until <= since:
                raise CommandError("until must come after since")
            retries = _bounded(args, "retries", MAX_RETRIES)
            interval = _bounded(args, "retry_interval", MAX_RETRY_INTERVAL)
            transfer, token = await svc.new_log_request(
                station_id, str(log_type),
                {"since": since and since.isoformat(), "until": until and until.isoformat(),
                 "retries": retries, "retry_interval": interval}, queued=queued)
            if urls is None:
                return {"request_id": transfer.id}
            return {"request_id": transfer.id, "log_type": transfer.log_type,
                    "location": urls.upload_url(token),
                    "since": since and ocpp_time(since), "until": until and ocpp_time(until),
                    "retries": retries, "retry_interval": interval}
        if command in ("publish-firmware", "unpublish-firmware"):
            urls = None if queued or command == "unpublish-firmware" else self._urls()
            version = args.get("version")
            if not isinstance(version, str) or not version:
                raise CommandError("missing argument 'version'")
            image = await svc.find_firmware(version)
            checksum = await self._checksum(image)
            if command == "unpublish-firmware":
                t = await svc.new_unpublish(station_id, image, {
                    "version": version, "checksum": checksum})
                return {"request_id": t.id, "checksum": checksum}
            retries = _bounded(args, "retries", MAX_RETRIES)
            interval = _bounded(args, "retry_interval", MAX_RETRY_INTERVAL)
            transfer, token = await svc.new_publish(station_id, image, {
                "version": version, "checksum": checksum, "retries": retries,
                "retry_interval": interval}, queued=queued)
            if urls is None:
                return {"request_id": transfer.id}
            return {"request_id": transfer.id, "location": urls.firmware_url(token),
                    "checksum": checksum, "retries": retries, "retry_interval": interval}
        return args

    async def resume(self, transfer: Transfer) -> tuple[str, dict[str, Any]]:
        """A queued request a node claimed: (command, the CALL's arguments), with a URL
        made now."""
        svc = self.service
        urls = self._urls()
        command = _COMMAND_OF[transfer.kind]
        detail: dict[str, Any] = json.loads(transfer.detail or "{}")
        image = None
        if transfer.firmware_id is not None:
            async def find(tx: Tx) -> FirmwareImage | None:
                assert transfer.firmware_id is not None
                return await tx.firmware_by_id(transfer.firmware_id)

            image = await svc.repo.read(find)
            if image is None:
                raise CommandError("its firmware image is gone")
        token = await svc.reissue(transfer)
        retries, interval = detail.get("retries"), detail.get("retry_interval")
        base = {"request_id": transfer.id, "retries": retries, "retry_interval": interval}
        if transfer.kind is TransferKind.FIRMWARE:
            assert image is not None
            start = parse_when(str(detail.get("window_start", "now")), svc.clock())
            return command, {**base, "location": urls.firmware_url(token),
                             "retrieve": ocpp_time(start), "signature": image.signature,
                             "signing_cert": image.signing_cert}
        if transfer.kind is TransferKind.LOG:
            since, until = detail.get("since"), detail.get("until")
            return command, {**base, "log_type": transfer.log_type,
                             "location": urls.upload_url(token),
                             "since": since and ocpp_time(parse_when(since, svc.clock())),
                             "until": until and ocpp_time(parse_when(until, svc.clock()))}
        return command, {**base, "location": urls.firmware_url(token),
                         "checksum": detail["checksum"]}

    async def settle(self, command: str, args: dict[str, Any], word: str | None,
                     response: dict[str, Any] | None) -> dict[str, Any]:
        """Record the station's answer (``word`` None: none came, or a CALLERROR); what the
        operator's answer adds (the reservation's or request's id)."""
        svc = self.service
        if command == "reserve":
            await svc.reservation_answered(int(args["reservation_id"]),
                                           word if response is not None else None)
            return {"reservation_id": args["reservation_id"]}
        if command == "cancel-reservation":
            await svc.reservation_cancelled(int(args["reservation_id"]),
                                            word if response is not None else None)
            return {"reservation_id": args["reservation_id"]}
        if command in ("update-firmware", "get-log", "publish-firmware"):
            await svc.transfer_answered(int(args["request_id"]), word or "Failed")
            return {"request_id": args["request_id"]}
        if command == "unpublish-firmware":
            await svc.unpublish_answered(int(args["request_id"]), word or "Failed")
            return {"request_id": args["request_id"]}
        return {}
