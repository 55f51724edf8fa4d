"""OCPP 2.0.1 payloads <-> service calls."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from csms.domain.energy import MAX_PLAUSIBLE_POWER_W
from csms.domain.maintenance import TransferKind
from csms.domain.model import AuthStatus, MeterSample
from csms.protocol import Fault, OcppError
from csms.service.charging import BootInfo, ChargingService, TransactionEventIn
from csms.service.driver import MASTER_PASS_VARIABLE, RunningCost, personal_message
from csms.service.retries import event_digest
from csms.translate import commands_v201, security
from csms.translate.common import (
    INT64_MAX,
    INT64_MIN,
    BootGate,
    Handler,
    Notes,
    at_once,
    data_transfer,
    notification,
    ocpp_time,
    parse_time,
    stop_at_limit,
    stored_status,
)
from csms.translate.maintenance import reservation_status_update, transfer_notification

__all__ = ["BOOT_GATE", "ROUTES", "samples_from_meter_values"]

log = logging.getLogger("csms.translate")


def _id_token_info(status: AuthStatus, expires: Any = None,
                   group: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"status": status.value}
    if expires is not None:
        info["cacheExpiryDateTime"] = ocpp_time(expires)
    if group:  # C09: the station compares groups to let another token stop a session
        info["groupIdToken"] = {"idToken": group[:36], "type": "Central"}
    return info


def _number_text(value: Any) -> str:
    # Keep the number as the station wrote it (an int stays an int).
    return str(value)


def samples_from_meter_values(
    meter_value: list[dict[str, Any]], notes: Notes, seq_no: int | None = None
) -> list[MeterSample]:
    """2.0.1 MeterValueType/SampledValueType: numbers with unitOfMeasure (unit, 10^multiplier).

    A sampled value with ``signedMeterValue`` is evidence: its ``value`` is whatever the
    station put beside the signed data (KEBA writes the OCMF reading in kWh there, with no
    unit, i.e. "Wh" by default), so it is stored as ``SignedData`` and never read as a
    register (DESIGN.md "Signed meter data as evidence").
    """
    samples: list[MeterSample] = []
    for n, mv in enumerate(meter_value):
        ts = notes.time(mv["timestamp"], f"meterValue[{n}].timestamp")
        for k, sv in enumerate(mv["sampledValue"]):
            uom = sv.get("unitOfMeasure") or {}
            signed = sv.get("signedMeterValue")
            multiplier = int(uom.get("multiplier", 0))
            if not INT64_MIN <= multiplier <= INT64_MAX:  # the field's path built only here
                notes.int64(
                    multiplier, f"meterValue[{n}].sampledValue[{k}].unitOfMeasure.multiplier")
                # beyond 64 bits: kept beyond any unit, never billed
                multiplier = INT64_MAX if multiplier > 0 else INT64_MIN
            samples.append(
                MeterSample(
                    timestamp=ts,
                    value=_number_text(sv["value"]),
                    measurand=sv.get("measurand", "Energy.Active.Import.Register"),
                    unit=uom.get("unit", "Wh"),
                    multiplier=multiplier,
                    phase=sv.get("phase"),
                    context=sv.get("context"),
                    location=sv.get("location"),
                    format="SignedData" if signed else None,
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
        # ChargingStationType.modem: the SIM the station is reached through
        hardware={name: str(value) for name, value in (cs.get("modem") or {}).items()
                  if name in ("iccid", "imsi") and value},
    )
    d = await svc.boot(station_id, "ocpp2.0.1", info)
    if d.status == "Accepted":
        await set_master_pass_group(svc, station_id)
    return {"currentTime": ocpp_time(d.current_time), "interval": d.interval, "status": d.status}


async def set_master_pass_group(svc: ChargingService, station_id: str) -> None:
    """C16: the station knows master passes by its AuthCtrlr.MasterPassGroupId; the
    central system sets it to the operator's master pass group once the station is
    accepted (B01: not before), at every boot, so a station that was reset or replaced
    gets it again. The answer is kept as a station event."""
    if svc.outbound is None:
        return
    try:
        group = await svc.master_pass_group()
    except Exception as exc:  # the boot's answer never waits on it
        log.warning("! %s: master pass group not read: %s", station_id, exc)
        return
    if group is None:
        return
    component, variable = MASTER_PASS_VARIABLE

    async def answered(answer: dict[str, Any] | None) -> None:
        await svc.master_pass_answered(station_id, group, answer)

    # once: one pending per connection, however often the station boots meanwhile
    svc.outbound.after_reply(station_id, "SetVariables", {"setVariableData": [{
        "attributeValue": group[:1000], "component": {"name": component},
        "variable": {"name": variable}}]}, answered, once=True)


async def heartbeat(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    return {"currentTime": ocpp_time(await svc.heartbeat(station_id))}


async def status_notification(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    evse, connector = int(p["evseId"]), int(p["connectorId"])
    if evse < 1 or connector < 1:
        # 2.0.1 Part 1, the 3-tier model's numbering: EVSEs are numbered from 1 (id 0
        # is the Charging Station as a whole, which has no connector status) and
        # connectors from 1 within their EVSE: no connector has this id, none is stored
        raise OcppError(Fault.PROPERTY_CONSTRAINT,
                        f"no connector {connector} of EVSE {evse}: both are numbered from 1")
    await svc.status(station_id, evse, connector, p["connectorStatus"], None,
                     parse_time(p["timestamp"]))
    return {}


async def authorize(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    """C01 Authorize; with a contract certificate (C07, ISO 15118 Plug & Charge) also its
    status, and a contract whose certificate is not Accepted is not authorized."""
    tag = p["idToken"]["idToken"]
    # the token's group read beside the authorization, not after it (one batch of reads)
    (status, expires), group = await at_once(svc.authorize(tag, station_id),
                                             svc.tag_group(tag),
                                             together=svc.repo.reads_together)
    certificate = await security.contract_certificate_status(svc, p)
    if certificate not in (None, "Accepted") and status is AuthStatus.ACCEPTED:
        status, expires = AuthStatus.INVALID, None
    answer: dict[str, Any] = {"idTokenInfo": _id_token_info(status, expires, group)}
    if certificate is not None:
        answer["certificateStatus"] = certificate
    return answer


async def transaction_event(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    info = p["transactionInfo"]
    evse = p.get("evse") or {}
    token = p.get("idToken")
    notes = Notes(svc.clock())
    seq_no = notes.int64(p["seqNo"], "seqNo")
    ev = TransactionEventIn(
        event_type=p["eventType"],
        timestamp=notes.time(p["timestamp"], "timestamp"),
        trigger_reason=p["triggerReason"],
        seq_no=seq_no,
        transaction_id=info["transactionId"],
        offline=bool(p.get("offline", False)),
        charging_state=info.get("chargingState"),
        stopped_reason=info.get("stoppedReason"),
        evse_id=notes.int64(evse["id"], "evse.id") if "id" in evse else None,
        connector_id=notes.int64(evse["connectorId"], "evse.connectorId")
        if "connectorId" in evse else None,
        # 2.0.1: an idToken of type NoAuthorization carries no identity.
        id_tag=token["idToken"] if token and token.get("type") != "NoAuthorization" else None,
        remote_start_id=info.get("remoteStartId"),
        reservation_id=p.get("reservationId"),
        samples=samples_from_meter_values(p.get("meterValue", []), notes, seq_no),
    )
    ev.notes = notes.items
    if seq_no is not None:
        ev.digest = retry_digest(p)
    cost: RunningCost | None = None
    if ev.event_type == "Started":
        status = await svc.transaction_event(station_id, ev)
    else:
        # I02: the cost so far, read in the unit that stores the event; a session at
        # its driver's limit is stopped
        status, cost, reached = await svc.transaction_event_with_cost(station_id, ev)
        stop_at_limit(svc, station_id, reached, commands_v201.stop)
    tag = ev.id_tag if status is not None else None
    # what follows the stored event, read at once: the token's group, whether it may end
    # the transaction
    group, decision = await at_once(
        svc.tag_group(tag) if tag is not None else None,
        svc.check_stop(station_id, ev.transaction_id, tag, ev.evse_id)
        if tag is not None and ev.event_type == "Ended" else None,
        together=svc.repo.reads_together)
    answer: dict[str, Any] = {}
    if status is not None and tag is not None:
        if decision is not None and not decision.allowed:
            status = AuthStatus.INVALID  # C09/C16: not this session's tag, group or master
        answer["idTokenInfo"] = _id_token_info(status, None, group)
    answer.update(cost_answer(cost))
    return answer


def retry_digest(p: dict[str, Any]) -> int:
    """The digest of a TransactionEvent (csms.service.retries): a copy sent again under
    its seqNo must give the same. Its parts as the station wrote them (objects' keys
    sorted), but its key (transactionId, seqNo), its ``offline`` flag (a station may set
    it on a retry) and its customData: written out, not built from what was read of them
    (a third of the time)."""
    info = p["transactionInfo"]
    values = ((p["eventType"], p["triggerReason"], info.get("chargingState"),
               info.get("stoppedReason"), info.get("remoteStartId"), p.get("reservationId"),
               p.get("numberOfPhasesUsed"), p.get("cableMaxCurrent")),
              p["timestamp"], p.get("idToken"), p.get("evse"), p.get("meterValue"))
    try:
        parts = [orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values]
    except TypeError:  # an integer beyond 64 bits (read exactly by the frame's parser)
        parts = [json.dumps(v, sort_keys=True).encode() for v in values]
    return event_digest(parts)


def cost_answer(cost: RunningCost | None) -> dict[str, Any]:
    """totalCost and the driver's line of a TransactionEventResponse ({} without a cost)."""
    if cost is None:
        return {}
    return {"totalCost": float(cost.total), "updatedPersonalMessage": {
        "format": "UTF8", "language": "en", "content": personal_message(cost)}}


_POWER_UNITS = {"W": Decimal(1), "kW": Decimal(1000)}


def reported_max_power_w(report_data: list[dict[str, Any]]) -> Decimal | None:
    """The most power a station says it delivers, in W, from a NotifyReport: the
    ``maxLimit`` characteristic of the ``Power`` variable of an ``EVSE`` (or of the
    ``ChargingStation``) component (2.0.1 Part 2, appendix: referenced components and
    variables). None when the report holds no such value. A value above what any charger
    delivers (``MAX_PLAUSIBLE_POWER_W``) is none: the power is the bound the station's
    energy is held to (``energy_above_max_power``), not the station's to lift."""
    found: list[Decimal] = []
    for item in report_data:
        component = (item.get("component") or {}).get("name")
        variable = (item.get("variable") or {}).get("name")
        chars = item.get("variableCharacteristics") or {}
        limit = chars.get("maxLimit")
        if component not in ("EVSE", "ChargingStation") or variable != "Power" \
                or not isinstance(limit, int | float) or isinstance(limit, bool):
            continue
        factor = _POWER_UNITS.get(str(chars.get("unit") or "W"))
        if factor is None or not 0 < limit < 1e8:
            continue
        watts = Decimal(str(limit)) * factor
        if watts > MAX_PLAUSIBLE_POWER_W:
            continue  # no charger's: it would lift the station's own plausibility bound
        found.append(watts)
    return max(found) if found else None


async def notify_report(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    """B07/B08 NotifyReport: a part of a report this central system asked for is stored in
    the station's device model (csms.service.device_model); the station's maximum power is
    kept for plausibility."""
    await security.device_model(svc).notify_report(station_id, p)
    power = reported_max_power_w(p.get("reportData") or [])
    if power is not None:
        await svc.reported_max_power(station_id, power)
    return {}


async def meter_values(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    # 2.0.1 J01: MeterValues outside a transaction (evseId 0 = the main meter).
    notes = Notes(svc.clock())
    evse_id = notes.int64(p["evseId"], "evseId")
    samples = samples_from_meter_values(p["meterValue"], notes)
    await svc.meter_values(station_id, evse_id, None, samples, notes=notes.items)
    return {}


async def sign_certificate(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    """A02/A03 SignCertificate: the CSR checked and signed; CertificateSigned follows."""
    kind = p.get("certificateType", "ChargingStationCertificate")
    outcome = await security.sign(svc, station_id, p["csr"], kind, {"certificateType": kind})
    if outcome.accepted:
        return {"status": "Accepted"}
    return {"status": "Rejected",
            "statusInfo": {"reasonCode": "InvalidCSR", "additionalInfo": outcome.reason[:512]}}


def _no_provider(what: str) -> dict[str, Any]:
    return {"reasonCode": "NoProvider",
            "additionalInfo": f"no ISO 15118 provider for {what} on this central system"}


async def get_15118_ev_certificate(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    """M01/M02 Get15118EVCertificate: answered by the configured ISO 15118 provider."""
    provider = svc.certificates.iso15118 if svc.certificates is not None else None
    if provider is None:
        return {"status": "Failed", "exiResponse": "",
                "statusInfo": _no_provider("EV contract certificates")}
    status, exi, reason = await provider.ev_certificate(
        station_id, p["iso15118SchemaVersion"], p["action"], p["exiRequest"])
    answer: dict[str, Any] = {"status": status, "exiResponse": exi}
    if reason:
        answer["statusInfo"] = {"reasonCode": "Provider", "additionalInfo": reason[:512]}
    return answer


async def get_certificate_status(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    """M06 GetCertificateStatus: an OCSP answer from the configured provider."""
    provider = svc.certificates.iso15118 if svc.certificates is not None else None
    if provider is None:
        return {"status": "Failed", "statusInfo": _no_provider("certificate status")}
    status, ocsp, reason = await provider.certificate_status(station_id, p["ocspRequestData"])
    answer: dict[str, Any] = {"status": status}
    if ocsp:
        answer["ocspResult"] = ocsp
    if reason:
        answer["statusInfo"] = {"reasonCode": "Provider", "additionalInfo": reason[:512]}
    return answer


async def notify_monitoring_report(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    """N02 NotifyMonitoringReport: a part of a monitoring report asked for, stored."""
    await security.device_model(svc).notify_report(station_id, p, "monitoring")
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
    "NotifyReport": notify_report,
    "FirmwareStatusNotification": transfer_notification(
        TransferKind.FIRMWARE, "firmware_status", request_id=True),
    "LogStatusNotification": transfer_notification(
        TransferKind.LOG, "log_status", request_id=True),
    # L03: a local controller's publication of a firmware image
    "PublishFirmwareStatusNotification": transfer_notification(
        TransferKind.PUBLISH, "publish_firmware_status", request_id=True),
    "ReservationStatusUpdate": reservation_status_update,
    # smart charging reports, display messages, customer information: stored and shown
    # (csms stations reports), within the station's notification quota
    "NotifyChargingLimit": notification("charging_limit"),
    "ClearedChargingLimit": notification("charging_limit_cleared"),
    "ReportChargingProfiles": notification("charging_profiles"),
    "NotifyEVChargingNeeds": stored_status("ev_charging_needs"),
    "NotifyEVChargingSchedule": stored_status("ev_charging_schedule"),
    "NotifyDisplayMessages": notification("display_messages"),
    "NotifyCustomerInformation": notification("customer_information"),
    "SignCertificate": sign_certificate,
    "Get15118EVCertificate": get_15118_ev_certificate,
    "GetCertificateStatus": get_certificate_status,
    "NotifyMonitoringReport": notify_monitoring_report,
}


# F06 TriggerMessage's requestedMessage -> the message the station then sends
_TRIGGERED = {"SignChargingStationCertificate": "SignCertificate",
              "SignV2GCertificate": "SignCertificate",
              "SignCombinedCertificate": "SignCertificate"}


def _triggered(p: Mapping[str, Any]) -> tuple[str, ...]:
    requested = str(p.get("requestedMessage", ""))
    return (_TRIGGERED.get(requested, requested),)


def _report(p: Mapping[str, Any]) -> tuple[str, ...]:
    return ("NotifyReport",)


# B02.FR.09 (Pending) / B03.FR.07 (Rejected), OCTT TC_B_30_CSMS: until a station's boot
# is Accepted, the CSMS answers its CALLs other than BootNotification with SecurityError;
# a Pending station may still send what the CSMS asked for with TriggerMessage,
# GetBaseReport or GetReport (B02.FR.01: the CSMS may read or set its configuration then).
BOOT_GATE = BootGate(
    refuses=True,
    rule="While its latest BootNotification is answered Pending or Rejected, a station's"
    " other requests are answered with a CALLERROR SecurityError and not acted on"
    " (B02.FR.09, B03.FR.07); a Pending station's messages asked for with TriggerMessage,"
    " GetBaseReport or GetReport (NotifyReport) are let through. The verdict is the"
    " station's, as stored: one that reconnects without booting is refused as well"
    " while its last boot was answered Pending or Rejected, and served (a reconnect)"
    " when it was Accepted or it never booted.",
    asks={"TriggerMessage": _triggered, "GetBaseReport": _report, "GetReport": _report},
)
