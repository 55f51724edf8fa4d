"""Operator commands -> OCPP 2.0.1 CALLs: the cache, composite schedules and charging
profiles, transaction status, customer information, network profiles, display messages and
the driver's running cost (same function names as :mod:`csms.translate.more_commands_v16`)."""

from __future__ import annotations

from typing import Any

from csms.translate.command_args import (
    BuiltCall,
    CommandError,
    int_arg,
    profile_unit,
    retry_fields,
    str_arg,
)
from csms.translate.more_args import amount, message_content, next_request_id

__all__ = [
    "clear_cache", "clear_display_message", "cost_updated", "customer_information",
    "get_charging_profiles", "get_composite_schedule", "get_display_messages",
    "get_transaction_status", "publish_firmware", "set_display_message",
    "set_network_profile", "unpublish_firmware",
]

_PURPOSES = ("ChargingStationExternalConstraints", "ChargingStationMaxProfile",
             "TxDefaultProfile", "TxProfile")
_PRIORITIES = ("AlwaysFront", "InFront", "NormalCycle")
_STATES = ("Charging", "Faulted", "Idle", "Unavailable")


def _choice(a: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    value = a.get(key)
    if value is None:
        return None
    if value not in allowed:
        raise CommandError(f"{key} is one of {', '.join(allowed)}")
    return str(value)


def clear_cache(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("ClearCache", {})  # 2.0.1 C11


def get_composite_schedule(a: dict[str, Any]) -> BuiltCall:
    p: dict[str, Any] = {"evseId": int_arg(a, "connector", 0),
                         "duration": int_arg(a, "duration", 3600)}
    if a.get("unit"):
        p["chargingRateUnit"] = profile_unit(a)
    return BuiltCall("GetCompositeSchedule", p)  # 2.0.1 K08


def get_charging_profiles(a: dict[str, Any]) -> BuiltCall:
    criterion: dict[str, Any] = {}
    purpose = _choice(a, "purpose", _PURPOSES)
    if purpose:
        criterion["chargingProfilePurpose"] = purpose
    if a.get("profile_id") is not None:
        criterion["chargingProfileId"] = [int_arg(a, "profile_id")]
    p: dict[str, Any] = {"requestId": int_arg(a, "request_id", next_request_id()),
                         "chargingProfile": criterion}
    if a.get("connector") is not None:
        p["evseId"] = int_arg(a, "connector")
    return BuiltCall("GetChargingProfiles", p)  # 2.0.1 K09


def get_transaction_status(a: dict[str, Any]) -> BuiltCall:
    p: dict[str, Any] = {}
    if a.get("transaction_id"):
        p["transactionId"] = str_arg(a, "transaction_id")
    return BuiltCall("GetTransactionStatus", p)  # 2.0.1 E14


def customer_information(a: dict[str, Any]) -> BuiltCall:
    report, clear = bool(a.get("report", True)), bool(a.get("clear", False))
    if not report and not clear:
        raise CommandError("ask for a report, a clear, or both")
    p: dict[str, Any] = {"requestId": int_arg(a, "request_id", next_request_id()),
                         "report": report, "clear": clear}
    if a.get("tag"):
        p["idToken"] = {"idToken": str_arg(a, "tag"), "type": "ISO14443"}
    elif a.get("customer"):
        p["customerIdentifier"] = str_arg(a, "customer")
    else:
        raise CommandError("name the customer: a tag or a customer identifier")
    return BuiltCall("CustomerInformation", p)  # 2.0.1 N09/N10


def set_network_profile(a: dict[str, Any]) -> BuiltCall:
    url = str_arg(a, "url")
    if not url.startswith(("ws://", "wss://")):
        raise CommandError("url is a ws:// or wss:// address")
    data: dict[str, Any] = {
        "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": url,
        "messageTimeout": int_arg(a, "message_timeout", 30),
        "securityProfile": int_arg(a, "security_profile", 2 if url.startswith("wss") else 1),
        "ocppInterface": str(a.get("interface") or "Wired0"),
    }
    if a.get("apn"):
        apn: dict[str, Any] = {"apn": str(a["apn"]), "apnAuthentication": "AUTO"}
        if a.get("apn_user"):
            apn["apnUserName"] = str(a["apn_user"])
        if a.get("apn_password"):
            apn["apnPassword"] = str(a["apn_password"])
        data["apn"] = apn
    return BuiltCall("SetNetworkProfile", {"configurationSlot": int_arg(a, "slot", 1),
                                           "connectionData": data})  # 2.0.1 B09


def set_display_message(a: dict[str, Any]) -> BuiltCall:
    info: dict[str, Any] = {
        "id": int_arg(a, "message_id"),
        "priority": _choice(a, "priority", _PRIORITIES) or "NormalCycle",
        "message": message_content(a.get("text"), a.get("language"), a.get("format")),
    }
    state = _choice(a, "state", _STATES)
    if state:
        info["state"] = state
    for key, field in (("start", "startDateTime"), ("end", "endDateTime")):
        if a.get(key):
            info[field] = str(a[key])
    if a.get("transaction_id"):
        info["transactionId"] = str_arg(a, "transaction_id")
    return BuiltCall("SetDisplayMessage", {"message": info})  # 2.0.1 O01


def get_display_messages(a: dict[str, Any]) -> BuiltCall:
    p: dict[str, Any] = {"requestId": int_arg(a, "request_id", next_request_id())}
    if a.get("message_id") is not None:
        p["id"] = [int_arg(a, "message_id")]
    priority = _choice(a, "priority", _PRIORITIES)
    if priority:
        p["priority"] = priority
    state = _choice(a, "state", _STATES)
    if state:
        p["state"] = state
    return BuiltCall("GetDisplayMessages", p)  # 2.0.1 O04


def clear_display_message(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("ClearDisplayMessage", {"id": int_arg(a, "message_id")})  # 2.0.1 O05


def cost_updated(a: dict[str, Any]) -> BuiltCall:
    # 2.0.1 I04 / I02.FR.03: the running cost of a transaction, in the station's currency.
    return BuiltCall("CostUpdated", {"totalCost": float(amount(a)),
                                     "transactionId": str_arg(a, "transaction_id")})


def publish_firmware(a: dict[str, Any]) -> BuiltCall:
    # 2.0.1 L03: a local controller downloads the image and publishes it; the checksum
    # is the image's MD5 in hex
    return BuiltCall("PublishFirmware", {"location": str_arg(a, "location"),
                                         "checksum": str_arg(a, "checksum"),
                                         "requestId": int_arg(a, "request_id"),
                                         **retry_fields(a)})


def unpublish_firmware(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("UnpublishFirmware", {"checksum": str_arg(a, "checksum")})  # 2.0.1 L04
