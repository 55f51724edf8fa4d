"""What a simulated station says in OCPP 1.6-J (same function names as chargers_sim.v201)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from chargers_sim.session import Session, TxMessage, now

if TYPE_CHECKING:
    from chargers_sim.connection import StationCore
    from chargers_sim.handlers import CallHandlers
    from chargers_sim.meter import Meter
    from chargers_sim.transactions import TransactionQueue

__all__ = [
    "authorize_payload",
    "authorize_status",
    "before_sending",
    "boot_payload",
    "charging_limit_call",
    "charging_limit_cleared_call",
    "charging_rate_changed",
    "charging_schedule",
    "delivered",
    "firmware_status_call",
    "handlers",
    "load_start",
    "load_update",
    "log_status_call",
    "meter_values",
    "pnc_over_data_transfer",
    "reservation_expired_call",
    "sampled",
    "security_event_type",
    "start_transaction",
    "status_payload",
    "stop_transaction",
    "uploads_by_form",
]


def boot_payload(station_id: str, firmware_version: str = "sim-1.0") -> dict[str, Any]:
    return {"chargePointVendor": "voltledger", "chargePointModel": "sim-wallbox",
            "firmwareVersion": firmware_version, "chargePointSerialNumber": station_id[-25:]}


def status_payload(connector: int, status: str) -> dict[str, Any]:
    return {"connectorId": connector, "errorCode": "NoError", "status": status,
            "timestamp": now()}


def authorize_payload(id_tag: str) -> dict[str, Any]:
    return {"idTag": id_tag}


def authorize_status(answer: dict[str, Any]) -> str:
    return str(answer["idTagInfo"]["status"])


def sampled(meter: Meter, context: str, *, extra: bool,
            signed: dict[str, str] | None) -> list[dict[str, Any]]:
    """Sampled values: strings, unit Wh (1.6 §7.31); a signed reading as SignedData
    (the OCA "Signed Meter Values in OCPP 1.6" convention)."""
    values: list[dict[str, Any]] = [
        {"value": str(meter.register_wh), "context": context, "unit": "Wh",
         "measurand": "Energy.Active.Import.Register", "location": "Outlet"}]
    if extra:
        values.append({"value": f"{meter.last_power_w:.1f}", "context": context,
                       "unit": "W", "measurand": "Power.Active.Import"})
        for phase in ("L1", "L2", "L3"):
            values.append({"value": f"{meter.current_a():.2f}", "context": context,
                           "unit": "A", "measurand": "Current.Import", "phase": phase})
    if signed is not None:
        values.append({"value": orjson.dumps(signed).decode(), "context": context,
                       "format": "SignedData", "measurand": "Energy.Active.Import.Register",
                       "unit": "Wh"})
    return values


def start_transaction(st: TransactionQueue, s: Session, remote_start_id: int | None) -> None:
    payload: dict[str, Any] = {
        "connectorId": s.connector, "idTag": s.id_tag, "meterStart": s.meter_start_wh,
        "timestamp": now()}
    if s.reservation_id is not None:
        payload["reservationId"] = s.reservation_id  # 1.6 §6.46: the reservation it ends
    st._enqueue("StartTransaction", payload, s)
    if st.signer is not None:
        # an Eichrecht meter's signed begin reading follows the start (OCA 1.6 note)
        st._enqueue("MeterValues", {
            "connectorId": s.connector, "transactionId": 0,
            "meterValue": [{"timestamp": now(), "sampledValue": st._sampled(
                s, "Transaction.Begin", extra=False)}]}, s)


def meter_values(st: TransactionQueue, s: Session) -> None:
    sampled_values = st._sampled(s, "Sample.Periodic", extra=True)
    st._enqueue("MeterValues", {
        "connectorId": s.connector, "transactionId": 0,
        "meterValue": [{"timestamp": now(), "sampledValue": sampled_values}]}, s)


def stop_transaction(st: TransactionQueue, s: Session, reason: str) -> None:
    st._enqueue("StopTransaction", {
        "transactionId": 0, "meterStop": st.meters[s.connector].register_wh,
        "timestamp": now(), "idTag": s.id_tag, "reason": reason,
        "transactionData": [{"timestamp": now(), "sampledValue": st._sampled(
            s, "Transaction.End", extra=False)}]}, s)


def before_sending(msg: TxMessage) -> None:
    if msg.action != "StartTransaction":
        # a message queued before the Start was answered gets the real id
        msg.payload["transactionId"] = int(msg.session.transaction_id or 0)


def delivered(st: TransactionQueue, msg: TxMessage, answer: dict[str, Any]) -> None:
    if msg.action == "StartTransaction":
        msg.session.transaction_id = str(answer["transactionId"])
        st._last_start = dict(msg.payload)
        msg.session.confirmed.set()


# -- answering the central system ------------------------------------------------------
# 1.6 §9.1: keys a charge point reports read-only
READ_ONLY_KEYS = frozenset({"NumberOfConnectors", "GetConfigurationMaxKeys",
                            "SupportedFeatureProfiles"})


def handlers(st: CallHandlers) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    def remote_start(p: dict[str, Any]) -> dict[str, Any]:
        authorize = st.config.get("AuthorizeRemoteTxRequests", "true") == "true"
        return {"status": st._remote_start(p["idTag"], p.get("connectorId"), authorize)}

    def remote_stop(p: dict[str, Any]) -> dict[str, Any]:
        return {"status": st._remote_stop(str(p["transactionId"]))}

    def get_configuration(p: dict[str, Any]) -> dict[str, Any]:
        keys = p.get("key") or list(st.config)
        known = [{"key": k, "readonly": k in READ_ONLY_KEYS, "value": st.config[k]}
                 for k in keys if k in st.config]
        unknown = [k for k in keys if k not in st.config]
        out: dict[str, Any] = {"configurationKey": known}
        if unknown:
            out["unknownKey"] = unknown  # AuthorizationKey is write-only: never read back
        return out

    def change_configuration(p: dict[str, Any]) -> dict[str, Any]:
        key, value = p["key"], p["value"]
        if key == "AuthorizationKey":
            st.password = value  # used from the next connection on
            return {"status": "Accepted"}
        if key not in st.config:
            return {"status": "NotSupported"}
        if key in READ_ONLY_KEYS:
            return {"status": "Rejected"}  # 1.6 §5.3: a read-only key is not changed
        st.config[key] = value
        if key == "HeartbeatInterval":
            st.heartbeat_interval = float(value)
        return {"status": "Accepted"}

    def get_local_list_version(p: dict[str, Any]) -> dict[str, Any]:
        return {"listVersion": st.local_list_version}

    def get_installed_certificates(p: dict[str, Any]) -> dict[str, Any]:
        found = st.pki.installed([p["certificateType"]])
        if not found:
            return {"status": "NotFound"}
        return {"status": "Accepted", "certificateHashData": [data for _, data in found]}
    def reserve_now(p: dict[str, Any]) -> dict[str, Any]:
        return {"status": st._reserve(p["reservationId"], p["connectorId"], p["idTag"],
                                      p.get("parentIdTag"), p["expiryDate"])}

    def cancel_reservation(p: dict[str, Any]) -> dict[str, Any]:
        return {"status": st._cancel_reservation(p["reservationId"])}

    def update_firmware(p: dict[str, Any]) -> dict[str, Any]:
        st._update_firmware(None, p["location"], p["retrieveDate"], None, None)
        return {}

    def signed_update_firmware(p: dict[str, Any]) -> dict[str, Any]:
        fw = p["firmware"]
        st._update_firmware(p["requestId"], fw["location"], fw["retrieveDateTime"],
                            fw["signature"], fw["signingCertificate"])
        return {"status": "Accepted"}

    def get_diagnostics(p: dict[str, Any]) -> dict[str, Any]:
        return {"fileName": st._upload_log(None, "Diagnostics", p["location"])}

    def get_log(p: dict[str, Any]) -> dict[str, Any]:
        name = st._upload_log(p["requestId"], p["logType"], p["log"]["remoteLocation"])
        return {"status": "Accepted", "filename": name}

    return {
        "RemoteStartTransaction": remote_start,
        "RemoteStopTransaction": remote_stop,
        "GetConfiguration": get_configuration,
        "ChangeConfiguration": change_configuration,
        "GetLocalListVersion": get_local_list_version,
        "GetInstalledCertificateIds": get_installed_certificates,
        "ReserveNow": reserve_now,
        "CancelReservation": cancel_reservation,
        "UpdateFirmware": update_firmware,
        "SignedUpdateFirmware": signed_update_firmware,
        "GetDiagnostics": get_diagnostics,
        "GetLog": get_log,
    }


def charging_schedule(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return int(p["connectorId"]), p["csChargingProfiles"]["chargingSchedule"]


# -- load mode ---------------------------------------------------------------------------
async def load_start(st: StationCore, register: int) -> Any:
    answer = await st.call("StartTransaction", {
        "connectorId": 1, "idTag": "LOADTAG", "meterStart": register, "timestamp": now()})
    return answer["transactionId"]


async def load_update(st: StationCore, txid: Any, seq: int, register: int) -> None:
    await st.call("MeterValues", {
        "connectorId": 1, "transactionId": txid, "meterValue": [{
            "timestamp": now(), "sampledValue": [
                {"value": str(register), "measurand": "Energy.Active.Import.Register",
                 "unit": "Wh", "context": "Sample.Periodic"},
                {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"}]}]})


# -- reservations, firmware, logs ----------------------------------------------------------
# 1.6 §7.26 DiagnosticsStatus words for the security extension's UploadLogStatus
_DIAGNOSTICS_WORD = {"Uploading": "Uploading", "Uploaded": "Uploaded",
                     "UploadFailure": "UploadFailed"}


def firmware_status_call(status: str, request_id: int | None,
                         signed: bool) -> tuple[str, dict[str, Any]]:
    if signed:  # security extension: SignedFirmwareStatusNotification with the request id
        return "SignedFirmwareStatusNotification", {"status": status, "requestId": request_id}
    return "FirmwareStatusNotification", {"status": status}  # 1.6 §6.29: no request id


def log_status_call(status: str, request_id: int | None,
                    log_type: str) -> tuple[str, dict[str, Any]]:
    if log_type == "Diagnostics":
        return "DiagnosticsStatusNotification", {"status": _DIAGNOSTICS_WORD[status]}
    return "LogStatusNotification", {"status": status, "requestId": request_id}


def reservation_expired_call(reservation_id: int) -> tuple[str, dict[str, Any]] | None:
    return None  # 1.6 has no message for it: the connector becomes Available


def uploads_by_form(log_type: str) -> bool:
    """1.6 diagnostics go up as an HTTP form (as FTP-less chargers do); logs by PUT."""
    return log_type == "Diagnostics"


def pnc_over_data_transfer() -> bool:
    """1.6 carries ISO 15118 Plug & Charge in DataTransfer (the OCA application
    note; chargers_sim.pnc_v16)."""
    return True


# -- security events and external charging limits -----------------------------------------
# the security whitepaper's names where 2.0.1 renamed the central system (CSMS) and the
# charge point (charging station)
_SECURITY_EVENT_NAMES = {
    "FailedToAuthenticateAtCsms": "FailedToAuthenticateAtCentralSystem",
    "CsmsFailedToAuthenticate": "CentralSystemFailedToAuthenticate",
    "InvalidCsmsCertificate": "InvalidCentralSystemCertificate",
    "InvalidChargingStationCertificate": "InvalidChargePointCertificate",
}


def security_event_type(kind: str) -> str:
    """The security whitepaper's name (1.6 security extension, appendix 1) of an event."""
    return _SECURITY_EVENT_NAMES.get(kind, kind)


def charging_limit_call(watts: float, source: str, evse: int,
                        grid_critical: bool | None) -> tuple[str, dict[str, Any]] | None:
    return None  # 1.6 has no message for an external limit: it is only obeyed


def charging_limit_cleared_call(source: str, evse: int) -> tuple[str, dict[str, Any]] | None:
    return None


def charging_rate_changed(st: TransactionQueue, s: Session) -> None:
    pass  # the next MeterValues show the new power
