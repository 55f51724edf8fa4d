"""OCPP 1.6-J payloads <-> service calls."""

from __future__ import annotations

import logging
from typing import Any

from csms.domain.maintenance import TransferKind
from csms.domain.model import AuthStatus, ErrorDetail, MeterSample
from csms.service.charging import BootInfo, ChargingService, StopInfo
from csms.translate import commands_v16, more_commands_v16, pnc16, security
from csms.translate.commands import is_secret_name
from csms.translate.common import (
    BootGate,
    Handler,
    Notes,
    at_once,
    notification,
    ocpp_time,
    parse_time,
    stop_at_limit,
)
from csms.translate.maintenance import transfer_notification

__all__ = ["BOOT_GATE", "ROUTES", "final_cost", "samples_from_meter_values"]

log = logging.getLogger("csms.translate")


def _id_tag_info(status: AuthStatus, expires: Any = None,
                 group: str | None = None) -> dict[str, Any]:
    # 1.6 §7.2 AuthorizationStatus has no "Unknown": an unknown tag is Invalid; nor
    # "NoCredit": a tag whose driver's escrow does not cover a charge is Blocked; nor
    # "NotAtThisTime": a tag on a connector reserved for another (§5.13) is Invalid.
    wire = {AuthStatus.UNKNOWN: "Invalid", AuthStatus.NO_CREDIT: "Blocked",
            AuthStatus.NOT_AT_THIS_TIME: "Invalid"}.get(status, status.value)
    info: dict[str, Any] = {"status": wire}
    if expires is not None:
        info["expiryDate"] = ocpp_time(expires)
    if group:  # §3.5.1: a tag with the same parentIdTag may stop the transaction
        info["parentIdTag"] = group[:20]
    return info


def samples_from_meter_values(meter_value: list[dict[str, Any]], notes: Notes,
                              field: str = "meterValue") -> list[MeterSample]:
    """1.6 §7.31 MeterValue/SampledValue: strings, defaults Energy.Active.Import.Register, Wh."""
    samples: list[MeterSample] = []
    for n, mv in enumerate(meter_value):
        ts = notes.time(mv["timestamp"], f"{field}[{n}].timestamp")
        for sv in mv["sampledValue"]:
            fmt = sv.get("format")
            signed = {"signedData": sv["value"]} if fmt == "SignedData" else None
            samples.append(
                MeterSample(
                    timestamp=ts,
                    value=sv["value"],
                    measurand=sv.get("measurand", "Energy.Active.Import.Register"),
                    unit=sv.get("unit", "Wh"),
                    phase=sv.get("phase"),
                    context=sv.get("context"),
                    location=sv.get("location"),
                    format=fmt,
                    signed=signed,
                )
            )
    return samples


# 1.6 §6.3 BootNotification.req: what identifies the hardware beside the serial number
# the station row keeps (chargePointSerialNumber, else chargeBoxSerialNumber), kept in
# the boot event: EVerest sends both serial numbers, and they differ
_HARDWARE = {"chargeBoxSerialNumber": "charge_box_serial_number",
             "meterType": "meter_type", "meterSerialNumber": "meter_serial_number",
             "iccid": "iccid", "imsi": "imsi"}


async def boot_notification(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    info = BootInfo(
        vendor=p.get("chargePointVendor"),
        model=p.get("chargePointModel"),
        firmware_version=p.get("firmwareVersion"),
        serial_number=p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber"),
        hardware={name: p[field] for field, name in _HARDWARE.items() if p.get(field)},
    )
    d = await svc.boot(station_id, "ocpp1.6", info)
    if d.status == "Accepted" and svc.boot_get_configuration:
        await read_configuration_after_boot(svc, station_id, d.firmware_changed)
    return {"status": d.status, "currentTime": ocpp_time(d.current_time), "interval": d.interval}


async def read_configuration_after_boot(svc: ChargingService, station_id: str,
                                        firmware_changed: bool) -> None:
    """GetConfiguration of every key once the BootNotification is answered (1.6 §4.2:
    the central system may send after an Accepted boot), when no configuration of the
    station is stored or it booted with another firmware; the answer becomes its device
    model (csms.service.device_model). At most one is pending per connection."""
    model = security.device_model(svc)
    if svc.outbound is None or (not firmware_changed
                                and await model.configuration_known(station_id)):
        return

    async def then(answer: dict[str, Any] | None) -> None:
        if answer is not None:
            await model.record_configuration(station_id, answer, None, is_secret_name)

    # once: a station that boots again and again without answering has one read pending
    # on its connection, not one per boot; once that one is answered or failed, the next
    # boot may read again
    svc.outbound.after_reply(station_id, "GetConfiguration", {}, then, once=True)


async def heartbeat(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    return {"currentTime": ocpp_time(await svc.heartbeat(station_id))}


async def status_notification(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    # 1.6 has no EVSE level: connector n is EVSE n; connector 0 is the whole station.
    # §6.47: info, vendorId and vendorErrorCode say what the error is beside errorCode
    # (EVerest sends every fault as OtherError, the error in them); kept with any code.
    connector = int(p["connectorId"])
    at = parse_time(p["timestamp"]) if "timestamp" in p else None
    error = p.get("errorCode")
    await svc.status(
        station_id, connector, connector, p["status"],
        None if error == "NoError" else error, at,
        error=ErrorDetail(p.get("info"), p.get("vendorId"), p.get("vendorErrorCode")),
    )
    return {}


async def authorize(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    # the tag's group read beside the authorization, not after it (one batch of reads)
    (status, expires), group = await at_once(
        svc.authorize(p["idTag"], station_id), svc.tag_group(p["idTag"]),
        together=svc.repo.reads_together)
    return {"idTagInfo": _id_tag_info(status, expires, group)}


async def start_transaction(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    notes = Notes(svc.clock())
    # the tag's group (what the start does not change) read while the start is stored
    (txid, status, expires), group = await at_once(svc.start_transaction(
        station_id,
        notes.int64(p["connectorId"], "connectorId"),
        p["idTag"],
        notes.register_wh(p["meterStart"], "meterStart"),
        notes.time(p["timestamp"], "timestamp"),
        p.get("reservationId"),
        notes=notes.items,
    ), svc.tag_group(p["idTag"]), together=svc.repo.reads_together)
    return {"transactionId": txid, "idTagInfo": _id_tag_info(status, expires, group)}


async def stop_transaction(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    notes = Notes(svc.clock())
    stop = StopInfo(
        transaction_id=int(p["transactionId"]),
        meter_stop_wh=notes.register_wh(p["meterStop"], "meterStop"),
        timestamp=notes.time(p["timestamp"], "timestamp"),
        reason=p.get("reason"),
        id_tag=p.get("idTag"),
        samples=samples_from_meter_values(p.get("transactionData", []), notes,
                                          "transactionData"),
        notes=notes.items,
    )
    for s in stop.samples:
        # 1.6 §7.45: a sampled value without a context is Sample.Periodic, and §9.1
        # StopTxnSampledData fills transactionData with the session's periodic readings:
        # they are no end readings (each compared with meterStop as one, an honest
        # session's were three stops that differ). One without a context stamped at the
        # stop or after it is the register at the stop: an end reading, compared with
        # meterStop (a meterStop above the station's own reading at that moment is a
        # stop in dispute, csms.domain.energy).
        if s.context is None and s.timestamp >= stop.timestamp:
            s.context = "Transaction.End"
    txid = str(stop.transaction_id)
    final_cost(svc, station_id, txid)  # once the answer is out
    if stop.id_tag is None:
        await svc.stop_transaction(station_id, stop)
        return {}
    # May this tag end the session, and its group: read while the stop is stored (the
    # stop changes neither), so the answer waits for one trip through storage, not two.
    status, decision, group = await at_once(
        svc.stop_transaction(station_id, stop), svc.check_stop(station_id, txid, stop.id_tag),
        svc.tag_group(stop.id_tag), together=svc.repo.reads_together)
    if status is None:
        return {}
    if not decision.allowed:
        status = AuthStatus.INVALID  # §3.5.1: not the session's tag nor of its group
    return {"idTagInfo": _id_tag_info(status, None, group)}


def final_cost(svc: ChargingService, station_id: str, transaction_id: str) -> None:
    """The OCA California Pricing note's FinalCost DataTransfer (§3.1: the total of a
    finished transaction), sent by itself once the StopTransaction is stored and answered,
    to a station marked for the running-cost convention; once per session, never for a
    held one (csms.service.driver final_cost_args). Its cost is read once the answer is
    out: it never delays nor fails the stop's acknowledgement."""
    if svc.outbound is None:
        return
    session_id = 0  # the priced session's, once payload() has read it

    async def payload() -> dict[str, Any] | None:
        nonlocal session_id
        try:
            args = await svc.final_cost_args(station_id, transaction_id)
        except Exception as exc:  # no cost is sent rather than a wrong one
            log.warning("! %s: no final cost for %s: %s", station_id, transaction_id, exc)
            return None
        if args is None:
            return None
        built = more_commands_v16.cost_updated(args)
        session_id = int(args["session"])
        return built.payload

    async def answered(answer: dict[str, Any] | None) -> None:
        await svc.final_cost_answered(session_id, answer)

    svc.outbound.after_reply(station_id, "DataTransfer", payload, answered)


async def meter_values(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    txid = p.get("transactionId")
    notes = Notes(svc.clock())
    connector = notes.int64(p["connectorId"], "connectorId")
    samples = samples_from_meter_values(p["meterValue"], notes)
    reached = await svc.meter_values(
        station_id, connector, None if txid is None else str(txid), samples, notes=notes.items)
    stop_at_limit(svc, station_id, reached, commands_v16.stop)  # at the driver's limit
    return {}


async def sign_certificate(
    svc: ChargingService, station_id: str, p: dict[str, Any]
) -> dict[str, Any]:
    """Security whitepaper SignCertificate: the CSR checked and signed; CertificateSigned
    (with the chain only: 1.6 has no certificate type) follows."""
    outcome = await security.sign(svc, station_id, p["csr"], "ChargingStationCertificate", {})
    return {"status": "Accepted" if outcome.accepted else "Rejected"}


ROUTES: dict[str, Handler] = {
    "BootNotification": boot_notification,
    "Heartbeat": heartbeat,
    "StatusNotification": status_notification,
    "Authorize": authorize,
    "StartTransaction": start_transaction,
    "StopTransaction": stop_transaction,
    "MeterValues": meter_values,
    # ISO 15118 Plug & Charge (the OCA application note) inside, else stored
    "DataTransfer": pnc16.data_transfer,
    "SecurityEventNotification": notification("security"),
    # 1.6 §6.17 / §6.29 carry no requestId: about the station's latest request
    "DiagnosticsStatusNotification": transfer_notification(
        TransferKind.LOG, "diagnostics_status", request_id=False, log_type="Diagnostics"),
    "FirmwareStatusNotification": transfer_notification(
        TransferKind.FIRMWARE, "firmware_status", request_id=False),
    # the 1.6 security extension's: with a requestId
    "LogStatusNotification": transfer_notification(
        TransferKind.LOG, "log_status", request_id=True),
    "SignedFirmwareStatusNotification": transfer_notification(
        TransferKind.FIRMWARE, "firmware_status", request_id=True),
    "SignCertificate": sign_certificate,
}



# 1.6 §4.2 tells a charge point answered Pending to send no request unless asked with
# TriggerMessage, and one answered Rejected to send nothing until the interval ends; it
# asks nothing of the central system for a charge point that does send: it is served
# (1.6 stations commonly send StatusNotification while Pending).
BOOT_GATE = BootGate(
    refuses=False,
    rule="A station whose BootNotification was answered Pending or Rejected (on its"
    " connection, or last, as stored, when it reconnects without booting) is still"
    " served: §4.2 tells a charge point answered Pending to send no request unless asked"
    " with TriggerMessage, and one answered Rejected nothing until the interval ends, but"
    " does not ask the central system to refuse what it sends anyway (2.0.1 does).",
)
