"""Operator commands in the domain's words -> the station's OCPP version.

One table of command names; the CALL of each is built by the function of the same
name in :mod:`csms.translate.commands_v16` or :mod:`csms.translate.commands_v201`.
Here too: which arguments are secret, and how to read the answer's status. The CLI
and the admin API speak only these names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from csms.protocol import OcppError, OcppVersion, Validator
from csms.service.device_model import is_secret_name
from csms.translate import commands_v16, commands_v201, more_commands_v16, more_commands_v201
from csms.translate.command_args import BuiltCall, CommandBuilders, CommandError, WrongVersion

__all__ = [
    "COMMANDS",
    "REDACTED",
    "SECRET_ARGS",
    "BuiltCall",
    "CommandError",
    "build_call",
    "builder_for",
    "carries_secret",
    "is_secret_name",
    "new_password",
    "password_accepted",
    "plug_and_charge",
    "redacted_args",
    "redacted_response",
    "result_status",
    "version_refusal",
]

# Operator command -> the function that builds its CALL, by the same name in
# commands_v16 and commands_v201.
COMMANDS: dict[str, str] = {
    "start": "start",
    "stop": "stop",
    "reset": "reset",
    "unlock": "unlock",
    "availability": "availability",
    "trigger": "trigger",
    "get-config": "get_config",
    "set-config": "set_config",
    "get-variables": "get_variables",
    "set-variables": "set_variables",
    "set-profile": "set_profile",
    "clear-profile": "clear_profile",
    "data-transfer": "data_transfer",
    "send-local-list": "send_local_list",
    "local-list-version": "local_list_version",
    "set-password": "set_password",
    "install-certificate": "install_certificate",
    "get-installed-certificates": "get_installed_certificates",
    "delete-certificate": "delete_certificate",
    "renew-certificate": "renew_certificate",
    "get-base-report": "get_base_report",
    "get-report": "get_report",
    "set-monitoring": "set_monitoring",
    "clear-monitoring": "clear_monitoring",
    "set-monitoring-base": "set_monitoring_base",
    "set-monitoring-level": "set_monitoring_level",
    "get-monitoring-report": "get_monitoring_report",
    "reserve": "reserve",
    "cancel-reservation": "cancel_reservation",
    "update-firmware": "update_firmware",
    "get-log": "get_log",
    # the cache, schedules, transaction status, customers, network, what the driver sees
    # (csms.translate.more_commands_v16 / more_commands_v201)
    "clear-cache": "clear_cache",
    "get-composite-schedule": "get_composite_schedule",
    "get-charging-profiles": "get_charging_profiles",
    "get-transaction-status": "get_transaction_status",
    "customer-information": "customer_information",
    "set-network-profile": "set_network_profile",
    "set-display-message": "set_display_message",
    "get-display-messages": "get_display_messages",
    "clear-display-message": "clear_display_message",
    "cost-updated": "cost_updated",
    # firmware publishing by a local controller (2.0.1 L03/L04)
    "publish-firmware": "publish_firmware",
    "unpublish-firmware": "unpublish_firmware",
}
# The one place that picks the builders of a version.
_BUILDERS: dict[OcppVersion, CommandBuilders] = {
    OcppVersion.V16: commands_v16, OcppVersion.V201: commands_v201,
}
_MORE_BUILDERS: dict[OcppVersion, object] = {
    OcppVersion.V16: more_commands_v16, OcppVersion.V201: more_commands_v201,
}

# Commands whose arguments must never reach a log or the audit trail.
# A firmware or log URL holds its request's token: as good as a key to it.
SECRET_ARGS = {"set-password": ("password",), "update-firmware": ("location",),
               "get-log": ("location",), "publish-firmware": ("location",),
               "set-network-profile": ("apn_password",)}
REDACTED = "<redacted>"

# The station password a command sets: 1.6 key / 2.0.1 component.variable (A01).
PASSWORD_KEY_16 = "AuthorizationKey"
PASSWORD_VARIABLE_201 = ("SecurityCtrlr", "BasicAuthPassword")


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


def builder_for(version: OcppVersion, command: str) -> Callable[[dict[str, Any]], BuiltCall]:
    """The function that builds ``command``'s CALL for a station of ``version``."""
    name = COMMANDS.get(command)
    if name is None:
        raise CommandError(f"unknown command {command!r}")
    return cast(Callable[[dict[str, Any]], BuiltCall],
                getattr(_BUILDERS[version], name, None)
                or getattr(_MORE_BUILDERS[version], name))


def version_refusal(version: OcppVersion, command: str) -> str | None:
    """Why ``command`` cannot be sent to a station of ``version`` at all (it exists in the
    other version only), or None: checked before a request is queued for the station."""
    try:
        builder_for(version, command)({})
    except WrongVersion as exc:
        return str(exc)
    except (CommandError, KeyError, TypeError, ValueError):
        return None  # the arguments are missing: the command itself exists
    return None


def build_call(version: OcppVersion, command: str, args: dict[str, Any]) -> BuiltCall:
    call = builder_for(version, command)(args)
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
    for key in ("setMonitoringResult", "clearMonitoringResult"):
        if key in response:
            return ",".join(r.get("status", "?") for r in response[key])
    return "Accepted"




def plug_and_charge(version: OcppVersion, command: str, args: dict[str, Any]) -> str:
    """Whether ``command`` goes as a Plug & Charge DataTransfer: "no", "yes", "needed" or
    "announced" (see :func:`csms.translate.commands_v16.plug_and_charge`)."""
    # not in the builders' __all__ (that lists commands only): looked up by name
    decide = cast(Callable[[str, dict[str, Any]], str],
                  getattr(_BUILDERS[version], "plug_and_charge"))  # noqa: B009
    return decide(command, args)
