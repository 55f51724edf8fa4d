"""The JSON shapes of reservations, firmware images and file transfers (one per record),
shared by the CLI and the admin API."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from csms.domain.maintenance import FirmwareImage, Reservation, Transfer
from csms.service.views import iso

__all__ = ["firmware_json", "reservation_json", "transfer_json"]


def reservation_json(r: Reservation, now: datetime) -> dict[str, Any]:
    return {"id": r.id, "station_id": r.station_id, "connector_id": r.connector_id,
            "id_tag": r.id_tag, "expires_at": iso(r.expires_at),
            "status": r.state_at(now).value, "answer": r.answer, "session_id": r.session_id,
            "created_at": iso(r.created_at), "updated_at": iso(r.updated_at)}


def firmware_json(f: FirmwareImage) -> dict[str, Any]:
    return {"id": f.id, "version": f.version, "file_name": f.file_name, "size": f.size,
            "sha256": f.sha256, "md5": f.md5, "signed": f.signature is not None,
            "created_at": iso(f.created_at)}


def transfer_json(t: Transfer, now: datetime, version: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": t.id, "kind": t.kind.value, "station_id": t.station_id,
        "status": t.state_at(now),
        "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
        "url_expires_at": iso(t.expires_at), "url_open": t.open_at(now)}
    if version is not None:
        out["version"] = version
    if t.log_type is not None:
        out.update({"log_type": t.log_type, "file_name": t.file_name, "size": t.size,
                    "uploaded_at": iso(t.uploaded_at)})
    if t.locations is not None:
        out["locations"] = json.loads(t.locations)  # where a local controller published it
    if t.detail:
        out["request"] = json.loads(t.detail)
    return out
