"""Operator commands in the domain's words -> the station's OCPP version.

One table per command: how to build the CALL for 1.6 and for 2.0.1, and how
to read the answer's status. The CLI and the admin API speak only these names.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from csms.protocol import OcppError, OcppVersion, Validator

__all__ = [
    "COMMANDS",
    "REDACTED",
    "SECRET_ARGS",
    "BuiltCall",
    "CommandError",
    "build_call",
    "carries_secret",
    "is_secret_name",
    "new_password",
    "password_accepted",
    "redacted_args",
    "redacted_response",
    "result_status",
]

_remote_ids = itertools.count(1)


class CommandError(ValueError):
    """The command's arguments do not make sense for this station."""


@dataclass(frozen=True, slots=True)
class BuiltCall:
    action: str
    payload: dict[str, Any]


def _int(args: dict[str, Any], key: str, default: int | None = None) -> int:
    value = args.get(key, default)
    if value is None:
        raise CommandError(f"missing argument {key!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CommandError(f"{key} must be an integer") from None


def _str(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise CommandError(f"missing argument {key!r}")
    return value


def _start(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    tag = _str(a, "tag")
    connector = a.get("connector")
    if v is OcppVersion.V16:
        p: dict[str, Any] = {"idTag": tag}
        if connector is not None:
            p["connectorId"] = _int(a, "connector")
        return BuiltCall("RemoteStartTransaction", p)
    p = {"idToken": {"idToken": tag, "type": "Central"}, "remoteStartId": next(_remote_ids)}
    if connector is not None:
        p["evseId"] = _int(a, "connector")
    return BuiltCall("RequestStartTransaction", p)


def _stop(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    txid = _str(a, "transaction_id")
    if v is OcppVersion.V16:
        return BuiltCall("RemoteStopTransaction", {"transactionId": _int(a, "transaction_id")})
    return BuiltCall("RequestStopTransaction", {"transactionId": txid})


def _reset(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    hard = bool(a.get("hard", False))
    if v is OcppVersion.V16:
        return BuiltCall("Reset", {"type": "Hard" if hard else "Soft"})
    # 2.0.1 B11/B12: Immediate resets now, OnIdle waits for transactions to end.
    return BuiltCall("Reset", {"type": "Immediate" if hard else "OnIdle"})


def _unlock(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    connector = _int(a, "connector", 1)
    if v is OcppVersion.V16:
        return BuiltCall("UnlockConnector", {"connectorId": connector})
    return BuiltCall("UnlockConnector", {"evseId": connector, "connectorId": 1})


def _availability(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    state = _str(a, "state").lower()
    if state not in ("operative", "inoperative"):
        raise CommandError("availability is operative or inoperative")
    connector = _int(a, "connector", 0)
    word = state.capitalize()
    if v is OcppVersion.V16:
        return BuiltCall("ChangeAvailability", {"connectorId": connector, "type": word})
    p: dict[str, Any] = {"operationalStatus": word}
    if connector:
        p["evse"] = {"id": connector}
    return BuiltCall("ChangeAvailability", p)


def _trigger(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    message = _str(a, "message")
    connector = a.get("connector")
    p: dict[str, Any] = {"requestedMessage": message}
    if connector is not None:
        if v is OcppVersion.V16:
            p["connectorId"] = _int(a, "connector")
        else:
            p["evse"] = {"id": _int(a, "connector")}
    return BuiltCall("TriggerMessage", p)


def _only(version: OcppVersion, name: str, v: OcppVersion) -> None:
    if v is not version:
        other = "variables" if version is OcppVersion.V16 else "config"
        raise CommandError(
            f"{name} is for OCPP {version.short} stations; this one speaks {v.short}"
            f" (use {other})"
        )


def _get_config(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    _only(OcppVersion.V16, "config", v)
    keys = list(a.get("keys") or [])
    return BuiltCall("GetConfiguration", {"key": keys} if keys else {})


def _set_config(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    _only(OcppVersion.V16, "config", v)
    return BuiltCall("ChangeConfiguration", {"key": _str(a, "key"), "value": str(a.get("value"))})


def _component_variable(text: str) -> dict[str, Any]:
    component, dot, variable = text.partition(".")
    if not dot or not component or not variable:
        raise CommandError(f"expected COMPONENT.VARIABLE, got {text!r}")
    return {"component": {"name": component}, "variable": {"name": variable}}


def _get_variables(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    _only(OcppVersion.V201, "variables", v)
    names = list(a.get("variables") or [])
    if not names:
        raise CommandError("name at least one COMPONENT.VARIABLE")
    return BuiltCall("GetVariables", {"getVariableData": [_component_variable(n) for n in names]})


def _set_variables(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    _only(OcppVersion.V201, "variables", v)
    values: dict[str, Any] = a.get("values") or {}
    if not values:
        raise CommandError("give at least one COMPONENT.VARIABLE=VALUE")
    data = [{**_component_variable(k), "attributeValue": str(val)} for k, val in values.items()]
    return BuiltCall("SetVariables", {"setVariableData": data})


def _schedule(a: dict[str, Any]) -> list[dict[str, Any]]:
    periods = a.get("schedule") or [[0, a.get("limit")]]
    out = []
    for start, limit in periods:
        if limit is None:
            raise CommandError("missing argument 'limit'")
        out.append({"startPeriod": int(start), "limit": float(limit)})
    if out[0]["startPeriod"] != 0:
        raise CommandError("a schedule starts at second 0")
    return out


def _set_profile(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    unit = str(a.get("unit", "W")).upper()
    if unit not in ("W", "A"):
        raise CommandError("unit is W or A")
    connector = _int(a, "connector", 0)
    profile_id = _int(a, "profile_id", 1)
    periods = _schedule(a)
    # TxDefaultProfile: applies to every transaction on the connector (1.6 §3.13.2).
    if v is OcppVersion.V16:
        return BuiltCall("SetChargingProfile", {
            "connectorId": connector,
            "csChargingProfiles": {
                "chargingProfileId": profile_id, "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
                "chargingSchedule": {"chargingRateUnit": unit,
                                     "chargingSchedulePeriod": periods},
            },
        })
    return BuiltCall("SetChargingProfile", {
        "evseId": connector,
        "chargingProfile": {
            "id": profile_id, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [{"id": profile_id, "chargingRateUnit": unit,
                                  "chargingSchedulePeriod": periods}],
        },
    })


def _clear_profile(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    profile_id = a.get("profile_id")
    if v is OcppVersion.V16:
        return BuiltCall("ClearChargingProfile",
                         {} if profile_id is None else {"id": _int(a, "profile_id")})
    return BuiltCall("ClearChargingProfile",
                     {} if profile_id is None else {"chargingProfileId": _int(a, "profile_id")})


def _data_transfer(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    p: dict[str, Any] = {"vendorId": _str(a, "vendor")}
    if a.get("message_id"):
        p["messageId"] = str(a["message_id"])
    if a.get("data") is not None:
        p["data"] = a["data"]
    return BuiltCall("DataTransfer", p)


def _send_local_list(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    version = _int(a, "list_version")
    tags: list[dict[str, Any]] = a.get("tags") or []
    if v is OcppVersion.V16:
        entries = [{"idTag": t["tag"], "idTagInfo": {"status": t["status"]}} for t in tags]
        return BuiltCall("SendLocalList", {"listVersion": version, "updateType": "Full",
                                           "localAuthorizationList": entries})
    entries = [{"idToken": {"idToken": t["tag"], "type": "ISO14443"},
                "idTokenInfo": {"status": t["status"]}} for t in tags]
    p: dict[str, Any] = {"versionNumber": version, "updateType": "Full"}
    if entries:
        p["localAuthorizationList"] = entries
    return BuiltCall("SendLocalList", p)


def _local_list_version(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("GetLocalListVersion", {})


def _set_password(v: OcppVersion, a: dict[str, Any]) -> BuiltCall:
    password = _str(a, "password")
    if v is OcppVersion.V16:
        # 1.6 security whitepaper: configuration key AuthorizationKey.
        return BuiltCall("ChangeConfiguration", {"key": "AuthorizationKey", "value": password})
    # 2.0.1 A01: SecurityCtrlr.BasicAuthPassword.
    return BuiltCall("SetVariables", {"setVariableData": [{
        "component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"},
        "attributeValue": password}]})


COMMANDS: dict[str, Callable[[OcppVersion, dict[str, Any]], BuiltCall]] = {
    "start": _start,
    "stop": _stop,
    "reset": _reset,
    "unlock": _unlock,
    "availability": _availability,
    "trigger": _trigger,
    "get-config": _get_config,
    "set-config": _set_config,
    "get-variables": _get_variables,
    "set-variables": _set_variables,
    "set-profile": _set_profile,
    "clear-profile": _clear_profile,
    "data-transfer": _data_transfer,
    "send-local-list": _send_local_list,
    "local-list-version": _local_list_version,
    "set-password": _set_password,
}

# Commands whose arguments must never reach a log or the audit trail.
SECRET_ARGS = {"set-password": ("password",)}
REDACTED = "<redacted>"

# Configuration keys (1.6) and variables (2.0.1) that hold a credential: the 1.6
# security whitepaper's AuthorizationKey, 2.0.1 SecurityCtrlr.BasicAuthPassword, and
# by name anything that looks like a password or a secret.
_SECRET_NAME = re.compile(r"password|passphrase|secret|authorizationkey", re.IGNORECASE)
# The station password a command sets: 1.6 key / 2.0.1 component.variable (A01).
PASSWORD_KEY_16 = "AuthorizationKey"
PASSWORD_VARIABLE_201 = ("SecurityCtrlr", "BasicAuthPassword")


def is_secret_name(name: str) -> bool:
    """A configuration key or COMPONENT.VARIABLE name whose value is a credential."""
    return bool(_SECRET_NAME.search(name))


def new_password(command: str, args: dict[str, Any]) -> str | None:
    """The station password this command sets, if it sets one (set-password, or
    set-config / set-variables of the password key)."""
    if command == "set-password":
        return str(args.get("password", ""))
    if command == "set-config" and str(args.get("key", "")).lower() == PASSWORD_KEY_16.lower():
        return str(args.get("value", ""))
    if command == "set-variables":
        for name, value in (args.get("values") or {}).items():
            component, _, variable = str(name).partition(".")
            if (component.lower(), variable.lower()) == tuple(
                    x.lower() for x in PASSWORD_VARIABLE_201):
                return str(value)
    return None


def carries_secret(command: str, args: dict[str, Any]) -> bool:
    """The command's CALL holds a credential: it is not logged."""
    if command in SECRET_ARGS:
        return True
    if command == "set-config":
        return is_secret_name(str(args.get("key", "")))
    if command == "set-variables":
        return any(is_secret_name(str(k)) for k in (args.get("values") or {}))
    return False


def redacted_args(command: str, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as they may be logged and audited: credentials replaced."""
    out = {k: (REDACTED if k in SECRET_ARGS.get(command, ()) else v) for k, v in args.items()}
    if command == "set-config" and is_secret_name(str(args.get("key", ""))):
        out["value"] = REDACTED
    if command == "set-variables" and isinstance(args.get("values"), dict):
        out["values"] = {k: (REDACTED if is_secret_name(str(k)) else v)
                         for k, v in args["values"].items()}
    return out


def redacted_response(response: dict[str, Any]) -> dict[str, Any]:
    """A station's answer as it may be audited: values of credential keys replaced
    (1.6 GetConfiguration must not return AuthorizationKey, a station may anyway)."""
    keys = response.get("configurationKey")
    if isinstance(keys, list):
        response = {**response, "configurationKey": [
            {**k, "value": REDACTED} if isinstance(k, dict) and "value" in k
            and is_secret_name(str(k.get("key", ""))) else k for k in keys]}
    results = response.get("getVariableResult")
    if isinstance(results, list):
        response = {**response, "getVariableResult": [
            {**r, "attributeValue": REDACTED} if isinstance(r, dict) and "attributeValue" in r
            and is_secret_name(str((r.get("variable") or {}).get("name", ""))) else r
            for r in results]}
    return response


def password_accepted(action: str, response: dict[str, Any]) -> bool:
    """The station took the new password (1.6 ChangeConfiguration Accepted; 2.0.1 the
    BasicAuthPassword entry of SetVariables Accepted)."""
    if action == "ChangeConfiguration":
        return response.get("status") == "Accepted"
    for r in response.get("setVariableResult") or []:
        component = str((r.get("component") or {}).get("name", "")).lower()
        variable = str((r.get("variable") or {}).get("name", "")).lower()
        if (component, variable) == tuple(x.lower() for x in PASSWORD_VARIABLE_201):
            return bool(r.get("attributeStatus") == "Accepted")
    return False


def build_call(version: OcppVersion, command: str, args: dict[str, Any]) -> BuiltCall:
    builder = COMMANDS.get(command)
    if builder is None:
        raise CommandError(f"unknown command {command!r}")
    call = builder(version, args)
    try:
        Validator(version).validate(call.action, call.payload)
    except OcppError as exc:
        raise CommandError(f"invalid {call.action}: {exc.description}") from None
    return call


def result_status(action: str, response: dict[str, Any]) -> str:
    """The one word an operator wants to see (Accepted, Rejected, ...)."""
    if "status" in response and isinstance(response["status"], str):
        return response["status"]
    if action == "GetLocalListVersion":
        return str(response.get("listVersion", response.get("versionNumber")))
    if action in ("GetConfiguration", "GetVariables"):
        return "Accepted"
    for key in ("setVariableResult", "getVariableResult"):
        if key in response:
            return ",".join(r.get("attributeStatus", "?") for r in response[key])
    return "Accepted"


