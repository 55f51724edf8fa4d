"""JSON views of domain records, shared by the CLI, the admin API and the MQTT events."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from csms.domain.model import Session, Station
from csms.domain.tariff import major_units
from csms.service.cluster import live_nodes
from csms.service.ports import Tx

__all__ = [
    "connector_fault",
    "iso",
    "number",
    "price_text",
    "session_json",
    "session_price",
    "station_detail",
    "station_json",
    "stations_view",
]


def connector_fault(c: dict[str, Any]) -> str | None:
    """A connector's error in a line, as the operator reads it: its error code (none for
    NoError) and what the station said beside it (1.6 §6.47: vendorErrorCode with its
    vendorId, info), e.g. ``OtherError: ConnectorLockFailure/MREC1 (org.charin.uec.v1),
    evse_manager/connector_1``; None without an error."""
    code = c.get("error_code")
    head = code if code and code != "NoError" else None
    vendor = c.get("vendor_error_code")
    if vendor and c.get("vendor_id"):
        vendor = f"{vendor} ({c['vendor_id']})"
    detail = ", ".join(x for x in (vendor, c.get("error_info")) if x)
    if head and detail:
        return f"{head}: {detail}"
    return head or detail or None


def number(value: Decimal | None) -> int | float | str | None:
    """A reading for JSON: an integer or a float, or its exact text when it is beyond
    what JSON consumers read as a number (64-bit integers; such a value is flagged
    ``value_out_of_range`` and never billed)."""
    if value is None:
        return None
    if not value.is_finite() or abs(value) >= 2**63:
        return str(value)
    return int(value) if value == value.to_integral_value() else float(value)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def session_json(s: Session) -> dict[str, Any]:
    """A session as the CLI's ``--json``, the admin API and the MQTT session events show
    it (one shape for all three; times in UTC)."""
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
        # the most the driver's escrow pays for it (the tariff's minor units), None: no
        # limit; a session stopped there is flagged limit_reached, one stopped before its
        # driver's signature expires authorization_expiring, one charging for nearly the
        # driver's notice period notice_ending (csms.service.limits)
        "limit_minor": s.limit_minor,
    }


def station_json(s: Station, connectors: list[dict[str, Any]],
                 live: set[str] | None = None) -> dict[str, Any]:
    """A station as ``csms stations list --json`` and the admin API show it.

    ``live``: the nodes still beating; a socket on a dead node is offline.
    """
    online = s.connected_node is not None and (live is None or s.connected_node in live)
    return {
        "id": s.id,
        "online": online,
        "node": s.connected_node if online else None,
        "ocpp_version": s.ocpp_version.removeprefix("ocpp") if s.ocpp_version else None,
        "boot": s.boot_policy.value,
        "security_profile": s.security_profile,
        "vendor": s.vendor,
        "model": s.model,
        "firmware_version": s.firmware_version,
        "last_boot_at": iso(s.last_boot_at),
        "last_seen_at": iso(s.last_seen_at),
        "max_power_w": number(s.max_power_w),
        "reported_max_power_w": number(s.reported_max_power_w),
        "connectors": [
            {"evse_id": c["evse_id"], "connector_id": c["connector_id"], "status": c["status"],
             "error_code": c["error_code"], "error_info": c.get("error_info"),
             "vendor_id": c.get("vendor_id"), "vendor_error_code": c.get("vendor_error_code"),
             "fault": connector_fault(c), "updated_at": c["updated_at"]}
            for c in connectors
        ],
    }


async def stations_view(tx: Tx, station_id: str | None = None) -> list[dict[str, Any]]:
    """Every station (or one) with its connectors, in one read."""
    connectors: dict[str, list[dict[str, Any]]] = {}
    for c in await tx.list_connectors(station_id):
        connectors.setdefault(c["station_id"], []).append(c)
    if station_id is not None:
        one = await tx.get_station(station_id)
        stations = [] if one is None else [one]
    else:
        stations = await tx.list_stations()
    live = await live_nodes(tx, datetime.now(UTC))
    return [station_json(s, connectors.get(s.id, []), live) for s in stations]


async def station_detail(tx: Tx, station_id: str) -> dict[str, Any] | None:
    """One station with its recent messages/events and active sessions."""
    found = await stations_view(tx, station_id)
    if not found:
        return None
    out = found[0]
    key, source = await tx.get_meter_key(station_id)
    out["meter_public_key"] = key
    out["meter_key_source"] = source  # operator | first_use
    # an EVSE with a meter of its own (a key the operator registered): its sessions are
    # verified with that key, the others' with the station's
    out["evse_meter_keys"] = [{"evse_id": evse, "public_key": k}
                              for evse, k in (await tx.get_evse_meter_keys(station_id)).items()]
    out["recent_events"] = await tx.list_station_events(station_id, limit=20)
    out["active_sessions"] = [session_json(x) for x in await tx.list_sessions(station_id, True, 10)]
    return out


def price_text(minor: int, currency: str | None, decimals: int | None) -> str:
    """What a priced session costs, for people: in major units with its tariff's minor
    digits ("0.280 KWD"), or in minor units where those are not known."""
    if decimals is None:
        return f"{minor} minor units of {currency}"
    return f"{major_units(minor, decimals)} {currency}"


async def session_price(tx: Tx, s: Session) -> dict[str, Any]:
    """What the session costs once settlement priced it (None before): ``price_minor`` in
    the minor units of its tariff's currency, ``price`` in major units (a string, as exact
    as the tariff's decimals), and those ``decimals`` (None: the tariff is not known)."""
    price: str | None = None
    decimals: int | None = None
    if s.price_minor is not None and s.id is not None:
        billed = await tx.session_settlement(s.id) or {}
        decimals = next((t.decimals for t in await tx.list_tariffs()
                         if t.id is not None and t.id == billed.get("tariff_id")), None)
        if decimals is not None:
            price = major_units(s.price_minor, decimals)
    return {"price": price, "price_minor": s.price_minor, "currency": s.currency,
            "decimals": decimals}
