"""What the per-version command builders share: the built CALL, the argument errors
and the readers of an operator command's arguments."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "MAX_INT32",
    "BuiltCall",
    "CommandBuilders",
    "CommandError",
    "availability_word",
    "certificate_arg",
    "component_variable",
    "connector_arg",
    "data_transfer",
    "hash_data_arg",
    "int_arg",
    "local_list_version",
    "log_parameters",
    "next_remote_id",
    "profile_unit",
    "retry_fields",
    "schedule",
    "str_arg",
    "wrong_version",
]

_remote_ids = itertools.count(1)


class CommandError(ValueError):
    """The command's arguments do not make sense for this station."""


class WrongVersion(CommandError):
    """The command does not exist in the station's OCPP version, whatever its arguments."""


@dataclass(frozen=True, slots=True)
class BuiltCall:
    action: str
    payload: dict[str, Any]


class CommandBuilders(Protocol):
    """What commands_v16 and commands_v201 both define: one function per command."""

    def start(self, a: dict[str, Any]) -> BuiltCall: ...
    def stop(self, a: dict[str, Any]) -> BuiltCall: ...
    def reset(self, a: dict[str, Any]) -> BuiltCall: ...
    def unlock(self, a: dict[str, Any]) -> BuiltCall: ...
    def availability(self, a: dict[str, Any]) -> BuiltCall: ...
    def trigger(self, a: dict[str, Any]) -> BuiltCall: ...
    def get_config(self, a: dict[str, Any]) -> BuiltCall: ...
    def set_config(self, a: dict[str, Any]) -> BuiltCall: ...
    def get_variables(self, a: dict[str, Any]) -> BuiltCall: ...
    def set_variables(self, a: dict[str, Any]) -> BuiltCall: ...
    def set_profile(self, a: dict[str, Any]) -> BuiltCall: ...
    def clear_profile(self, a: dict[str, Any]) -> BuiltCall: ...
    def data_transfer(self, a: dict[str, Any]) -> BuiltCall: ...
    def send_local_list(self, a: dict[str, Any]) -> BuiltCall: ...
    def local_list_version(self, a: dict[str, Any]) -> BuiltCall: ...
    def set_password(self, a: dict[str, Any]) -> BuiltCall: ...
    # certificates (security profile 3), the device model and monitoring
    def install_certificate(self, a: dict[str, Any]) -> BuiltCall: ...
    def get_installed_certificates(self, a: dict[str, Any]) -> BuiltCall: ...
    def delete_certificate(self, a: dict[str, Any]) -> BuiltCall: ...
    def renew_certificate(self, a: dict[str, Any]) -> BuiltCall: ...
    def get_base_report(self, a: dict[str, Any]) -> BuiltCall: ...
    def get_report(self, a: dict[str, Any]) -> BuiltCall: ...
    def set_monitoring(self, a: dict[str, Any]) -> BuiltCall: ...
    def clear_monitoring(self, a: dict[str, Any]) -> BuiltCall: ...
    def set_monitoring_base(self, a: dict[str, Any]) -> BuiltCall: ...
    def set_monitoring_level(self, a: dict[str, Any]) -> BuiltCall: ...
    def get_monitoring_report(self, a: dict[str, Any]) -> BuiltCall: ...
    def reserve(self, a: dict[str, Any]) -> BuiltCall: ...
    def cancel_reservation(self, a: dict[str, Any]) -> BuiltCall: ...
    def update_firmware(self, a: dict[str, Any]) -> BuiltCall: ...
    def get_log(self, a: dict[str, Any]) -> BuiltCall: ...


def next_remote_id() -> int:
    """A fresh remoteStartId (2.0.1 F01), unique in this process."""
    return next(_remote_ids)


def int_arg(args: dict[str, Any], key: str, default: int | None = None) -> int:
    value = args.get(key, default)
    if value is None:
        raise CommandError(f"missing argument {key!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CommandError(f"{key} must be an integer") from None


# The largest integer a station takes: OCPP's integers are 32-bit.
MAX_INT32 = 2**31 - 1


def connector_arg(args: dict[str, Any], key: str, default: int, low: int) -> int:
    """A connector (1.6) or an EVSE (2.0.1) the operator named: an integer from ``low``
    (0: the whole station, where the message takes it) to :data:`MAX_INT32`."""
    value = int_arg(args, key, default)
    if not low <= value <= MAX_INT32:
        raise CommandError(f"{key} must be an integer from {low} to {MAX_INT32},"
                           f" not {str(value)[:24]}")
    return value


def str_arg(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise CommandError(f"missing argument {key!r}")
    return value


def wrong_version(name: str, for_version: str, station_version: str, other: str) -> CommandError:
    """The error for a command that exists in the other OCPP version only."""
    return WrongVersion(
        f"{name} is for OCPP {for_version} stations; this one speaks {station_version}"
        f" (use {other})"
    )


def component_variable(text: str) -> dict[str, Any]:
    component, dot, variable = text.partition(".")
    if not dot or not component or not variable:
        raise CommandError(f"expected COMPONENT.VARIABLE, got {text!r}")
    return {"component": {"name": component}, "variable": {"name": variable}}


def schedule(a: dict[str, Any]) -> list[dict[str, Any]]:
    periods = a.get("schedule") or [[0, a.get("limit")]]
    if not isinstance(periods, list) or not periods:
        raise CommandError("schedule is a list of [second, limit] pairs")
    out = []
    for period in periods:
        if not isinstance(period, list | tuple) or len(period) != 2:
            raise CommandError("schedule is a list of [second, limit] pairs")
        start, limit = period
        if limit is None:
            raise CommandError("missing argument 'limit'")
        try:
            second, value = int(start), float(limit)
        except (TypeError, ValueError, OverflowError):
            raise CommandError(f"a limit is a number and its start a whole second, not"
                               f" {str(limit)[:20]!r} at {str(start)[:20]!r}") from None
        if not math.isfinite(value) or value < 0 or second < 0:
            raise CommandError("a limit and its start are finite numbers, at least 0")
        out.append({"startPeriod": second, "limit": value})
    if out[0]["startPeriod"] != 0:
        raise CommandError("a schedule starts at second 0")
    return out


def profile_unit(a: dict[str, Any]) -> str:
    unit = str(a.get("unit", "W")).upper()
    if unit not in ("W", "A"):
        raise CommandError("unit is W or A")
    return unit


def availability_word(a: dict[str, Any]) -> str:
    state = str_arg(a, "state").lower()
    if state not in ("operative", "inoperative"):
        raise CommandError("availability is operative or inoperative")
    return state.capitalize()


def data_transfer(a: dict[str, Any]) -> BuiltCall:
    """DataTransfer has the same fields in both versions."""
    p: dict[str, Any] = {"vendorId": str_arg(a, "vendor")}
    if a.get("message_id"):
        p["messageId"] = str(a["message_id"])
    if a.get("data") is not None:
        p["data"] = a["data"]
    return BuiltCall("DataTransfer", p)


def local_list_version(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("GetLocalListVersion", {})


HASH_FIELDS = ("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber")


def hash_data_arg(a: dict[str, Any]) -> dict[str, Any]:
    """CertificateHashDataType from the ``hash`` argument (the same in both versions)."""
    value = a.get("hash")
    if not isinstance(value, dict) or any(not isinstance(value.get(k), str) or not value[k]
                                          for k in HASH_FIELDS):
        raise CommandError("hash needs " + ", ".join(HASH_FIELDS))
    return {k: value[k] for k in HASH_FIELDS}


def certificate_arg(a: dict[str, Any]) -> str:
    pem = str_arg(a, "certificate")
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise CommandError("certificate must be a PEM certificate")
    return pem


def retry_fields(a: dict[str, Any]) -> dict[str, Any]:
    """retries / retryInterval of UpdateFirmware, GetDiagnostics and GetLog (same names in
    both versions), when given."""
    out: dict[str, Any] = {}
    if a.get("retries") is not None:
        out["retries"] = int_arg(a, "retries")
    if a.get("retry_interval") is not None:
        out["retryInterval"] = int_arg(a, "retry_interval")
    return out


def log_parameters(a: dict[str, Any]) -> dict[str, Any]:
    """LogParametersType (1.6 security extension and 2.0.1): where to upload, which span."""
    log: dict[str, Any] = {"remoteLocation": str_arg(a, "location")}
    if a.get("since"):
        log["oldestTimestamp"] = str(a["since"])
    if a.get("until"):
        log["latestTimestamp"] = str(a["until"])
    return log
