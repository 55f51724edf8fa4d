"""The operator's commands that leave a record: reservations (``reserve``,
``cancel-reservation``), firmware updates (``update-firmware``) and log requests
(``get-log``). Before the CALL, :meth:`MaintenanceCommands.prepare` checks what the
operator asked for and records it (the reservation or transfer whose id the CALL
carries); after it, :meth:`MaintenanceCommands.settle` records the station's answer.

The arguments the CALL builders read are made here from the operator's only: a caller
cannot hand a station a URL, a request id or a reservation id of its own.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from csms.domain.maintenance import parse_when
from csms.service.charging import ChargingService
from csms.service.reservations import ReservationError
from csms.service.transfers import TransferError
from csms.translate.command_args import CommandError
from csms.translate.common import ocpp_time

__all__ = ["RECORDED", "FileUrls", "MaintenanceCommands"]

RECORDED = frozenset({"reserve", "cancel-reservation", "update-firmware", "get-log"})
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


class MaintenanceCommands:
    def __init__(self, central: ServiceHolder) -> None:
        self.central = central
        self.files: FileUrls | None = None  # set when the file listener runs

    @property
    def service(self) -> ChargingService:
        return self.central.service

    def _urls(self) -> FileUrls:
        if self.files is None:
            raise CommandError("file transfers are off on this node (--files-port -1)")
        return self.files

    async def prepare(self, station_id: str, command: str,
                      args: dict[str, Any]) -> dict[str, Any]:
        """The CALL's arguments, once what the operator asked for is recorded."""
        try:
            return await self._prepare(station_id, command, args)
        except (ReservationError, TransferError) as exc:
            raise CommandError(str(exc)) from None

    async def _prepare(self, station_id: str, command: str,
                       args: dict[str, Any]) -> dict[str, Any]:
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
            urls = self._urls()
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
            transfer, image, token = await svc.new_firmware_update(station_id, version, end,
                                                                  detail)
            return {"request_id": transfer.id, "location": urls.firmware_url(token),
                    "retrieve": ocpp_time(start), "retries": retries,
                    "retry_interval": interval, "signature": image.signature,
                    "signing_cert": image.signing_cert}
        if command == "get-log":
            urls = self._urls()
            log_type = args.get("type", "Diagnostics")
            since = _when(args, "since", svc, None)
            until = _when(args, "until", svc, None)
            if since is not None and until is not None and until <= since:
                raise CommandError("until must come after since")
            retries = _bounded(args, "retries", MAX_RETRIES)
            interval = _bounded(args, "retry_interval", MAX_RETRY_INTERVAL)
            transfer, token = await svc.new_log_request(
                station_id, str(log_type),
                {"since": since and since.isoformat(), "until": until and until.isoformat()})
            return {"request_id": transfer.id, "log_type": transfer.log_type,
                    "location": urls.upload_url(token),
                    "since": since and ocpp_time(since), "until": until and ocpp_time(until),
                    "retries": retries, "retry_interval": interval}
        return args

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
        if command in ("update-firmware", "get-log"):
            await svc.transfer_answered(int(args["request_id"]), word or "Failed")
            return {"request_id": args["request_id"]}
        return {}
