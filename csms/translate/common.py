"""Helpers shared by the version modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from csms.protocol import Fault, OcppError
from csms.service.charging import ChargingService

__all__ = ["Handler", "data_transfer", "notification", "ocpp_time", "parse_time"]

# (service, station id, payload) -> response payload
Handler = Callable[[ChargingService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def parse_time(text: str) -> datetime:
    """An OCPP dateTime (RFC 3339); a value without offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise OcppError(Fault.PROPERTY_CONSTRAINT, f"invalid dateTime {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def ocpp_time(value: datetime) -> str:
    """Format a UTC time the way stations expect: milliseconds and 'Z'."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


async def data_transfer(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    """DataTransfer, either version: stored, and answered truthfully - no vendor extension is
    implemented (1.6 §7.23 / 2.0.1 DataTransferStatusEnumType)."""
    await svc.station_event(station_id, "data_transfer", p)
    return {"status": "UnknownVendorId"}


def notification(kind: str) -> Handler:
    """A handler that stores a notification as a station event and answers ``{}``."""

    async def handler(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
        await svc.station_event(station_id, kind, p)
        return {}

    return handler
