"""OCPP 2.0.1 payloads <-> service calls."""

from __future__ import annotations

from typing import Any

from csms.domain.model import AuthStatus, MeterSample
from csms.service.charging import BootInfo, ChargingService, TransactionEventIn
from csms.translate.common import (
    Handler,
    data_transfer,
    notification,
    ocpp_time,
    parse_time,
)

__all__ = ["ROUTES", "samples_from_meter_values"]


def _id_token_info(status: AuthStatus, expires: Any = None) -> dict[str, Any]:
    info: dict[str, Any] = {"status": status.value}
    if expires is not None:
        info["cacheExpiryDateTime"] = ocpp_time(expires)
    return info


def _number_text(value: Any) -> str:
    # Keep the number as the station wrote it (an int stays an int).
    return str(value)


def samples_from_meter_values(
    meter_value: list[dict[str, Any]], seq_no: int | None = None
) -> list[MeterSample]:
    """2.0.1 MeterValueType/SampledValueType: numbers with unitOfMeasure (unit, 10^multiplier)."""
    samples: list[MeterSample] = []
    for mv in meter_value:
        ts = parse_time(mv["timestamp"])
        for sv in mv["sampledValue"]:
            uom = sv.get("unitOfMeasure") or {}
            signed = sv.get("signedMeterValue")
            samples.append(
                MeterSample(
                    timestamp=ts,
                    value=_number_text(sv["value"]),
                    measurand=sv.get("measurand", "Energy.Active.Import.Register"),
                    unit=uom.get("unit", "Wh"),
                    multiplier=int(uom.get("multiplier", 0)),
                    phase=sv.get("phase"),
                    context=sv.get("context"),
                    location=sv.get("location"),
                    format="SignedMeterValue" if signed else None,
                    signed=signed,
                    seq_no=seq_no,
                )
            )
    return samples


async def boot_notification(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    cs = p["chargingStation"]
    info = BootInfo(
        vendor=cs.get("vendorName"),
        model=cs.get("model"),
        firmware_version=cs.get("firmwareVersion"),
        serial_number=cs.get("serialNumber"),
        reason=p.get("reason"),
    )
    d = await svc.boot(station_id, "ocpp2.0.1", info)
    return {"currentTime": ocpp_time(d.current_time), "interval": d.interval, "status": d.status}


async def heartbeat(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    return {"currentTime": ocpp_time(await svc.heartbeat(station_id))}


async def status_notification(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    await svc.status(
        station_id, int(p["evseId"]), int(p["connectorId"]), p["connectorStatus"], None,
        parse_time(p["timestamp"]),
    )
    return {}


async def authorize(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    status, expires = await svc.authorize(p["idToken"]["idToken"])
    return {"idTokenInfo": _id_token_info(status, expires)}


async def transaction_event(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    info = p["transactionInfo"]
    evse = p.get("evse") or {}
    token = p.get("idToken")
    seq_no = int(p["seqNo"])
    ev = TransactionEventIn(
        event_type=p["eventType"],
        timestamp=parse_time(p["timestamp"]),
        trigger_reason=p["triggerReason"],
        seq_no=seq_no,
        transaction_id=info["transactionId"],
        offline=bool(p.get("offline", False)),
        charging_state=info.get("chargingState"),
        stopped_reason=info.get("stoppedReason"),
        evse_id=evse.get("id"),
        connector_id=evse.get("connectorId"),
        # 2.0.1: an idToken of type NoAuthorization carries no identity.
        id_tag=token["idToken"] if token and token.get("type") != "NoAuthorization" else None,
        remote_start_id=info.get("remoteStartId"),
        samples=samples_from_meter_values(p.get("meterValue", []), seq_no),
    )
    status = await svc.transaction_event(station_id, ev)
    return {} if status is None else {"idTokenInfo": _id_token_info(status)}


async def meter_values(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    # 2.0.1 J01: MeterValues outside a transaction (evseId 0 = the main meter).
    await svc.meter_values(
        station_id, int(p["evseId"]), None, samples_from_meter_values(p["meterValue"])
    )
    return {}


ROUTES: dict[str, Handler] = {
    "BootNotification": boot_notification,
    "Heartbeat": heartbeat,
    "StatusNotification": status_notification,
    "Authorize": authorize,
    "TransactionEvent": transaction_event,
    "MeterValues": meter_values,
    "DataTransfer": data_transfer,
    "SecurityEventNotification": notification("security"),
    "NotifyEvent": notification("notify_event"),
    "NotifyReport": notification("notify_report"),
    "FirmwareStatusNotification": notification("firmware_status"),
    "LogStatusNotification": notification("log_status"),
}
