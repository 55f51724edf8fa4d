"""JSON views of domain records, shared by the CLI and the admin API."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from csms.domain.model import Session

__all__ = ["iso", "number", "session_json"]


def number(value: Decimal | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def session_json(s: Session) -> dict[str, Any]:
    """A session as the CLI's ``--json`` and the admin API show it."""
    return {
        "id": s.id,
        "station_id": s.station_id,
        "connector_id": s.connector_id,
        "evse_id": s.evse_id,
        "id_tag": s.id_tag,
        "ocpp_version": s.ocpp_version.removeprefix("ocpp"),
        "transaction_id": s.transaction_id,
        "started_at": iso(s.started_at),
        "stopped_at": iso(s.stopped_at),
        "meter_start_wh": number(s.meter_start_wh),
        "meter_stop_wh": number(s.meter_stop_wh),
        "energy_wh": s.energy_wh,
        "status": s.status.value,
        "stop_reason": s.stop_reason,
        "flags": list(s.flags),
    }
