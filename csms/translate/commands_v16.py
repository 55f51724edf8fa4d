"""Operator commands -> OCPP 1.6 CALLs (same function names as commands_v201)."""

from __future__ import annotations

from typing import Any

from csms.translate.command_args import (
    BuiltCall,
    CommandError,
    availability_word,
    certificate_arg,
    connector_arg,
    data_transfer,
    hash_data_arg,
    int_arg,
    local_list_version,
    log_parameters,
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
    p: dict[str, Any] = {"idTag": str_arg(a, "tag")}
    if a.get("connector") is not None:
        p["connectorId"] = connector_arg(a, "connector", 1, 1)
    return BuiltCall("RemoteStartTransaction", p)


def stop(a: dict[str, Any]) -> BuiltCall:
    str_arg(a, "transaction_id")
    return BuiltCall("RemoteStopTransaction", {"transactionId": int_arg(a, "transaction_id")})


def reset(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("Reset", {"type": "Hard" if a.get("hard", False) else "Soft"})


def unlock(a: dict[str, Any]) -> BuiltCall:
    # UnlockConnector.req: connectorId above 0 (connector 0 is the station itself)
    return BuiltCall("UnlockConnector", {"connectorId": connector_arg(a, "connector", 1, 1)})


def availability(a: dict[str, Any]) -> BuiltCall:
    word = availability_word(a)
    return BuiltCall("ChangeAvailability",
                     {"connectorId": connector_arg(a, "connector", 0, 0), "type": word})


# Messages only the security extension's ExtendedTriggerMessage asks for.
_EXTENDED_ONLY = ("LogStatusNotification", "SignChargePointCertificate")


def trigger(a: dict[str, Any]) -> BuiltCall:
    p: dict[str, Any] = {"requestedMessage": str_arg(a, "message")}
    if a.get("connector") is not None:
        p["connectorId"] = connector_arg(a, "connector", 1, 1)
    # 1.6 §5.17 TriggerMessage; the security whitepaper's ExtendedTriggerMessage when
    # asked for, or for the messages only it knows
    if a.get("extended") or p["requestedMessage"] in _EXTENDED_ONLY:
        return BuiltCall("ExtendedTriggerMessage", p)
    return BuiltCall("TriggerMessage", p)


def get_config(a: dict[str, Any]) -> BuiltCall:
    keys = list(a.get("keys") or [])
    return BuiltCall("GetConfiguration", {"key": keys} if keys else {})


def set_config(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("ChangeConfiguration",
                     {"key": str_arg(a, "key"), "value": str(a.get("value"))})


def get_variables(a: dict[str, Any]) -> BuiltCall:
    raise wrong_version("variables", "2.0.1", "1.6", "config")


def set_variables(a: dict[str, Any]) -> BuiltCall:
    raise wrong_version("variables", "2.0.1", "1.6", "config")


def set_profile(a: dict[str, Any]) -> BuiltCall:
    unit = profile_unit(a)
    connector = connector_arg(a, "connector", 0, 0)
    profile_id = int_arg(a, "profile_id", 1)
    periods = schedule(a)
    # TxDefaultProfile: applies to every transaction on the connector (1.6 §3.13.2).
    return BuiltCall("SetChargingProfile", {
        "connectorId": connector,
        "csChargingProfiles": {
            "chargingProfileId": profile_id, "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": unit, "chargingSchedulePeriod": periods},
        },
    })


def clear_profile(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("ClearChargingProfile", {} if a.get("profile_id") is None
                     else {"id": int_arg(a, "profile_id")})


def send_local_list(a: dict[str, Any]) -> BuiltCall:
    version = int_arg(a, "list_version")
    tags: list[dict[str, Any]] = a.get("tags") or []
    entries = [{"idTag": t["tag"], "idTagInfo": {"status": t["status"]}} for t in tags]
    return BuiltCall("SendLocalList", {"listVersion": version, "updateType": "Full",
                                       "localAuthorizationList": entries})


def set_password(a: dict[str, Any]) -> BuiltCall:
    # 1.6 security whitepaper: configuration key AuthorizationKey.
    return BuiltCall("ChangeConfiguration",
                     {"key": "AuthorizationKey", "value": str_arg(a, "password")})


# -- the security extension (1.6 security whitepaper, edition 2) -------------------------
# Certificate uses as the operator names them (2.0.1 words) -> 1.6 words.
_CERTIFICATE_USE = {"CSMSRootCertificate": "CentralSystemRootCertificate",
                    "CentralSystemRootCertificate": "CentralSystemRootCertificate",
                    "ManufacturerRootCertificate": "ManufacturerRootCertificate"}


def _use(word: str) -> str:
    use = _CERTIFICATE_USE.get(word)
    if use is None:
        raise CommandError(f"{word} is not a certificate type of OCPP 1.6 (the security"
                           " extension has CSMSRootCertificate, ManufacturerRootCertificate)")
    return use


def install_certificate(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("InstallCertificate", {"certificateType": _use(str_arg(a, "type")),
                                            "certificate": certificate_arg(a)})


def get_installed_certificates(a: dict[str, Any]) -> BuiltCall:
    types = list(a.get("types") or ["CSMSRootCertificate"])
    if len(types) != 1:
        raise CommandError("OCPP 1.6 asks for one certificate type at a time")
    return BuiltCall("GetInstalledCertificateIds", {"certificateType": _use(str(types[0]))})


def delete_certificate(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("DeleteCertificate", {"certificateHashData": hash_data_arg(a)})


def renew_certificate(a: dict[str, Any]) -> BuiltCall:
    # the station sends SignCertificate with a new CSR
    return BuiltCall("ExtendedTriggerMessage",
                     {"requestedMessage": "SignChargePointCertificate"})


def get_base_report(a: dict[str, Any]) -> BuiltCall:
    raise wrong_version("reports", "2.0.1", "1.6", "get-config")


def get_report(a: dict[str, Any]) -> BuiltCall:
    raise wrong_version("reports", "2.0.1", "1.6", "get-config")


def _no_monitoring() -> CommandError:
    return CommandError("variable monitoring is for OCPP 2.0.1 stations; this one speaks 1.6")


def set_monitoring(a: dict[str, Any]) -> BuiltCall:
    raise _no_monitoring()


def clear_monitoring(a: dict[str, Any]) -> BuiltCall:
    raise _no_monitoring()


def set_monitoring_base(a: dict[str, Any]) -> BuiltCall:
    raise _no_monitoring()


def set_monitoring_level(a: dict[str, Any]) -> BuiltCall:
    raise _no_monitoring()


def get_monitoring_report(a: dict[str, Any]) -> BuiltCall:
    raise _no_monitoring()


# -- reservations, firmware, logs (arguments filled in by csms.admin.maintenance) -------------
def reserve(a: dict[str, Any]) -> BuiltCall:
    # 1.6 §6.41 ReserveNow: connector 0 reserves any connector (if the station supports it)
    p: dict[str, Any] = {"connectorId": connector_arg(a, "connector", 0, 0),
                         "expiryDate": str_arg(a, "expiry"), "idTag": str_arg(a, "tag"),
                         "reservationId": int_arg(a, "reservation_id")}
    if a.get("parent_tag"):
        p["parentIdTag"] = str(a["parent_tag"])
    return BuiltCall("ReserveNow", p)


def cancel_reservation(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("CancelReservation", {"reservationId": int_arg(a, "reservation_id")})


def update_firmware(a: dict[str, Any]) -> BuiltCall:
    if a.get("signature"):
        # the 1.6 security extension's SignedUpdateFirmware (with signature and certificate)
        firmware = {"location": str_arg(a, "location"),
                    "retrieveDateTime": str_arg(a, "retrieve"),
                    "signingCertificate": str_arg(a, "signing_cert"),
                    "signature": str_arg(a, "signature")}
        p: dict[str, Any] = {"requestId": int_arg(a, "request_id"), "firmware": firmware,
                             **retry_fields(a)}
        return BuiltCall("SignedUpdateFirmware", p)
    # 1.6 §6.53 UpdateFirmware: no request id, no signature
    return BuiltCall("UpdateFirmware", {"location": str_arg(a, "location"),
                                        "retrieveDate": str_arg(a, "retrieve"),
                                        **retry_fields(a)})


def get_log(a: dict[str, Any]) -> BuiltCall:
    if str_arg(a, "log_type") == "Diagnostics":
        # 1.6 §6.25 GetDiagnostics: no request id (the status notifications have none)
        p: dict[str, Any] = {"location": str_arg(a, "location"), **retry_fields(a)}
        if a.get("since"):
            p["startTime"] = str(a["since"])
        if a.get("until"):
            p["stopTime"] = str(a["until"])
        return BuiltCall("GetDiagnostics", p)
    return BuiltCall("GetLog", {"logType": "SecurityLog", "requestId": int_arg(a, "request_id"),
                                "log": log_parameters(a), **retry_fields(a)})


# -- ISO 15118 Plug & Charge over DataTransfer (OCA application note; csms.translate.pnc16) --
# operator commands that have a Plug & Charge form for a 1.6 station
PNC_COMMANDS = ("install-certificate", "get-installed-certificates", "delete-certificate",
                "trigger")
# certificate types only the application note carries to a 1.6 station
_PNC_TYPES = ("V2GRootCertificate", "MORootCertificate", "V2GCertificateChain")
# the operator may name the trigger with the note's word or 2.0.1's
V2G_TRIGGER = ("V2GCertificate", "SignV2GCertificate")


def plug_and_charge(command: str, a: dict[str, Any]) -> str:
    """How ``command`` reaches a 1.6 station: "no" (as 1.6 and its security extension
    say it), "yes" (the operator asked: ``pnc`` true), "needed" (only the Plug & Charge
    DataTransfer can say it: V2G and MO roots, the V2G CSR trigger), or "announced" (a
    DeleteCertificate: wrapped when the station takes Plug & Charge)."""
    if command not in PNC_COMMANDS or a.get("pnc") is False:
        return "no"
    if a.get("pnc") is True:
        return "yes"
    if command == "trigger":
        return "needed" if str(a.get("message")) in V2G_TRIGGER else "no"
    if command == "install-certificate":
        return "needed" if str(a.get("type")) in _PNC_TYPES else "no"
    if command == "get-installed-certificates":
        return "needed" if any(str(t) in _PNC_TYPES for t in a.get("types") or []) else "no"
    return "announced"
