"""Handlers of the station's status notifications about reservations and file transfers,
shared by the version modules (each names the fields its version has)."""

from __future__ import annotations

from typing import Any

from csms.domain.maintenance import TransferKind
from csms.service.charging import ChargingService
from csms.translate.common import Handler

__all__ = ["reservation_status_update", "transfer_notification"]


def transfer_notification(kind: TransferKind, event: str, *, request_id: bool,
                          log_type: str | None = None) -> Handler:
    """A status notification about a firmware update or a log upload: stored as a station
    event ``event``, and the status of the request it is about (by ``requestId`` when the
    message has one, else the station's latest request of ``kind``)."""

    async def handler(svc: ChargingService, station_id: str,
                      p: dict[str, Any]) -> dict[str, Any]:
        rid = p.get("requestId") if request_id else None
        await svc.transfer_status(station_id, kind, event, p,
                                  int(rid) if rid is not None else None, log_type)
        return {}

    return handler


async def reservation_status_update(svc: ChargingService, station_id: str,
                                    p: dict[str, Any]) -> dict[str, Any]:
    """2.0.1 H05 ReservationStatusUpdate: a reservation expired or was removed."""
    await svc.reservation_status_update(station_id, int(p["reservationId"]),
                                        str(p["reservationUpdateStatus"]))
    return {}
