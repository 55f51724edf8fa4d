"""Operator commands -> OCPP 2.0.1 CALLs (same function names as commands_v16)."""

from __future__ import annotations

from typing import Any

from csms.service.device_model import ModelRefusal, parse_key
from csms.translate.command_args import (
    BuiltCall,
    CommandError,
    availability_word,
    certificate_arg,
    component_variable,
    connector_arg,
    data_transfer,
    hash_data_arg,
    int_arg,
    local_list_version,
    log_parameters,
    next_remote_id,
    profile_unit,
    retry_fields,
    schedule,
    str_arg,
    wrong_version,
)

__all__ = [
    "availability",
    "cancel_reservation",
    "clear_monitoring",
    "clear_profile",
    "data_transfer",
    "delete_certificate",
    "get_base_report",
    "get_config",
    "get_installed_certificates",
    "get_log",
    "get_monitoring_report",
    "get_report",
    "get_variables",
    "install_certificate",
    "local_list_version",
    "renew_certificate",
    "reserve",
    "reset",
    "send_local_list",
    "set_config",
    "set_monitoring",
    "set_monitoring_base",
    "set_monitoring_level",
    "set_password",
    "set_profile",
    "set_variables",
    "start",
    "stop",
    "trigger",
    "unlock",
    "update_firmware",
]


def start(a: dict[str, Any]) -> BuiltCall:
    tag = str_arg(a, "tag")
    p: dict[str, Any] = {"idToken": {"idToken": tag, "type": "Central"},
                         "remoteStartId": next_remote_id()}
    if a.get("connector") is not None:
        p["evseId"] = connector_arg(a, "connector", 1, 1)
    return BuiltCall("RequestStartTransaction", p)


def stop(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("RequestStopTransaction", {"transactionId": str_arg(a, "transaction_id")})


def reset(a: dict[str, Any]) -> BuiltCall:
    # 2.0.1 B11/B12: Immediate resets now, OnIdle waits for transactions to end.
    return BuiltCall("Reset", {"type": "Immediate" if a.get("hard", False) else "OnIdle"})


def unlock(a: dict[str, Any]) -> BuiltCall:
    # 2.0.1 F05: an EVSE's connector; EVSE ids start at 1 (0 is the station itself)
    return BuiltCall("UnlockConnector",
                     {"evseId": connector_arg(a, "connector", 1, 1), "connectorId": 1})


def availability(a: dict[str, Any]) -> BuiltCall:
    word = availability_word(a)
    connector = connector_arg(a, "connector", 0, 0)
    p: dict[str, Any] = {"operationalStatus": word}
    if connector:
        p["evse"] = {"id": connector}
    return BuiltCall("ChangeAvailability", p)


def trigger(a: dict[str, Any]) -> BuiltCall:
    p: dict[str, Any] = {"requestedMessage": str_arg(a, "message")}
    if a.get("connector") is not None:
        p["evse"] = {"id": connector_arg(a, "connector", 0, 0)}
    return BuiltCall("TriggerMessage", p)


def get_config(a: dict[str, Any]) -> BuiltCall:
    raise wrong_version("config", "1.6", "2.0.1", "variables")


def set_config(a: dict[str, Any]) -> BuiltCall:
    raise wrong_version("config", "1.6", "2.0.1", "variables")


def get_variables(a: dict[str, Any]) -> BuiltCall:
    names = list(a.get("variables") or [])
    if not names:
        raise CommandError("name at least one COMPONENT.VARIABLE")
    return BuiltCall("GetVariables", {"getVariableData": [component_variable(n) for n in names]})


def set_variables(a: dict[str, Any]) -> BuiltCall:
    values: dict[str, Any] = a.get("values") or {}
    if not values:
        raise CommandError("give at least one COMPONENT.VARIABLE=VALUE")
    data = [{**component_variable(k), "attributeValue": str(val)} for k, val in values.items()]
    return BuiltCall("SetVariables", {"setVariableData": data})


def set_profile(a: dict[str, Any]) -> BuiltCall:
    unit = profile_unit(a)
    connector = connector_arg(a, "connector", 0, 0)
    profile_id = int_arg(a, "profile_id", 1)
    periods = schedule(a)
    # TxDefaultProfile: applies to every transaction on the EVSE (2.0.1 K01).
    return BuiltCall("SetChargingProfile", {
        "evseId": connector,
        "chargingProfile": {
            "id": profile_id, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [{"id": profile_id, "chargingRateUnit": unit,
                                  "chargingSchedulePeriod": periods}],
        },
    })


def clear_profile(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("ClearChargingProfile", {} if a.get("profile_id") is None
                     else {"chargingProfileId": int_arg(a, "profile_id")})


def send_local_list(a: dict[str, Any]) -> BuiltCall:
    version = int_arg(a, "list_version")
    tags: list[dict[str, Any]] = a.get("tags") or []
    entries = [{"idToken": {"idToken": t["tag"], "type": "ISO14443"},
                "idTokenInfo": {"status": t["status"]}} for t in tags]
    p: dict[str, Any] = {"versionNumber": version, "updateType": "Full"}
    if entries:
        p["localAuthorizationList"] = entries
    return BuiltCall("SendLocalList", p)


def set_password(a: dict[str, Any]) -> BuiltCall:
    # 2.0.1 A01: SecurityCtrlr.BasicAuthPassword.
    return BuiltCall("SetVariables", {"setVariableData": [{
        "component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"},
        "attributeValue": str_arg(a, "password")}]})


# -- certificates (2.0.1 M03-M05, A02/A03) --------------------------------------------------
INSTALL_TYPES = ("V2GRootCertificate", "MORootCertificate", "CSMSRootCertificate",
                 "ManufacturerRootCertificate")
INSTALLED_TYPES = (*INSTALL_TYPES, "V2GCertificateChain")


def install_certificate(a: dict[str, Any]) -> BuiltCall:
    use = str_arg(a, "type")
    if use not in INSTALL_TYPES:
        raise CommandError(f"certificate type is one of {', '.join(INSTALL_TYPES)}")
    return BuiltCall("InstallCertificate", {"certificateType": use,
                                            "certificate": certificate_arg(a)})


def get_installed_certificates(a: dict[str, Any]) -> BuiltCall:
    types = [str(t) for t in a.get("types") or []]
    bad = [t for t in types if t not in INSTALLED_TYPES]
    if bad:
        raise CommandError(f"certificate type is one of {', '.join(INSTALLED_TYPES)}")
    return BuiltCall("GetInstalledCertificateIds", {"certificateType": types} if types else {})


def delete_certificate(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("DeleteCertificate", {"certificateHashData": hash_data_arg(a)})


def renew_certificate(a: dict[str, Any]) -> BuiltCall:
    # A02: the station answers with SignCertificate and a new CSR
    return BuiltCall("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})


# -- the device model (B07, B08) and monitoring (N02-N07) -------------------------------
def _component_variable(text: str) -> dict[str, Any]:
    """COMPONENT or COMPONENT.VARIABLE (with [instance] and @EVSE, as csms stations
    variables shows them)."""
    whole = "." in text
    try:
        component, variable, _ = parse_key(text if whole else text + ".x")
    except ModelRefusal:
        raise CommandError(f"expected COMPONENT or COMPONENT.VARIABLE, got {text!r}") from None
    return {"component": component, "variable": variable} if whole else {
        "component": component}


def get_base_report(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("GetBaseReport", {"requestId": int_arg(a, "request_id"),
                                       "reportBase": str(a.get("report_base")
                                                         or "FullInventory")})


def get_report(a: dict[str, Any]) -> BuiltCall:
    p: dict[str, Any] = {"requestId": int_arg(a, "request_id")}
    names = [str(n) for n in a.get("variables") or []]
    if names:
        p["componentVariable"] = [_component_variable(n) for n in names]
    if a.get("criteria"):
        p["componentCriteria"] = [str(c) for c in a["criteria"]]
    return BuiltCall("GetReport", p)


def set_monitoring(a: dict[str, Any]) -> BuiltCall:
    monitors = a.get("monitors")
    if not isinstance(monitors, list) or not monitors:
        raise CommandError("give at least one monitor")
    data = []
    for m in monitors:
        if not isinstance(m, dict):
            raise CommandError("a monitor is an object")
        target = _component_variable(str_arg(m, "variable"))
        if "variable" not in target:
            raise CommandError("a monitor watches a COMPONENT.VARIABLE")
        try:
            value = float(m.get("value"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise CommandError("a monitor's value is a number") from None
        entry: dict[str, Any] = {**target, "value": value, "type": str_arg(m, "type"),
                                 "severity": int_arg(m, "severity", 5),
                                 "transaction": bool(m.get("transaction", False))}
        if m.get("id") is not None:
            entry["id"] = int_arg(m, "id")
        data.append(entry)
    return BuiltCall("SetVariableMonitoring", {"setMonitoringData": data})


def clear_monitoring(a: dict[str, Any]) -> BuiltCall:
    ids = a.get("ids")
    if not isinstance(ids, list) or not ids:
        raise CommandError("give at least one monitor id")
    try:
        return BuiltCall("ClearVariableMonitoring", {"id": [int(i) for i in ids]})
    except (TypeError, ValueError):
        raise CommandError("monitor ids are integers") from None


def set_monitoring_base(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("SetMonitoringBase", {"monitoringBase": str_arg(a, "base")})


def set_monitoring_level(a: dict[str, Any]) -> BuiltCall:
    severity = int_arg(a, "severity")
    if not 0 <= severity <= 9:
        raise CommandError("severity is 0 (danger) to 9 (debug)")
    return BuiltCall("SetMonitoringLevel", {"severity": severity})


def get_monitoring_report(a: dict[str, Any]) -> BuiltCall:
    p: dict[str, Any] = {"requestId": int_arg(a, "request_id")}
    names = [str(n) for n in a.get("variables") or []]
    if names:
        p["componentVariable"] = [_component_variable(n) for n in names]
    if a.get("criteria"):
        p["monitoringCriteria"] = [str(c) for c in a["criteria"]]
    return BuiltCall("GetMonitoringReport", p)


# -- reservations, firmware, logs (arguments filled in by csms.admin.maintenance) -------------
def reserve(a: dict[str, Any]) -> BuiltCall:
    # 2.0.1 H01 ReserveNow: evseId optional (none: any EVSE)
    p: dict[str, Any] = {"id": int_arg(a, "reservation_id"),
                         "expiryDateTime": str_arg(a, "expiry"),
                         "idToken": {"idToken": str_arg(a, "tag"), "type": "ISO14443"}}
    if connector_arg(a, "connector", 0, 0):
        p["evseId"] = connector_arg(a, "connector", 0, 0)
    if a.get("parent_tag"):
        p["groupIdToken"] = {"idToken": str(a["parent_tag"]), "type": "Central"}
    return BuiltCall("ReserveNow", p)


def cancel_reservation(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("CancelReservation", {"reservationId": int_arg(a, "reservation_id")})


def update_firmware(a: dict[str, Any]) -> BuiltCall:
    # 2.0.1 L01 (signed) / L02 (unsigned) UpdateFirmware
    firmware: dict[str, Any] = {"location": str_arg(a, "location"),
                                "retrieveDateTime": str_arg(a, "retrieve")}
    if a.get("signature"):
        firmware["signature"] = str_arg(a, "signature")
        firmware["signingCertificate"] = str_arg(a, "signing_cert")
    return BuiltCall("UpdateFirmware", {"requestId": int_arg(a, "request_id"),
                                        "firmware": firmware, **retry_fields(a)})


def get_log(a: dict[str, Any]) -> BuiltCall:
    # 2.0.1 N01 GetLog
    word = {"Diagnostics": "DiagnosticsLog", "SecurityLog": "SecurityLog"}.get(
        str_arg(a, "log_type"))
    if word is None:
        raise CommandError("the log type is Diagnostics or SecurityLog")
    return BuiltCall("GetLog", {"logType": word, "requestId": int_arg(a, "request_id"),
                                "log": log_parameters(a), **retry_fields(a)})


def plug_and_charge(command: str, a: dict[str, Any]) -> str:
    """2.0.1 has the ISO 15118 messages themselves: never wrapped in DataTransfer."""
    if a.get("pnc") is True:
        raise CommandError("Plug & Charge over DataTransfer is for 1.6 stations; a 2.0.1"
                           " station takes these messages as they are")
    return "no"
