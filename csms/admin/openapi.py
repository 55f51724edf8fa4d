"""The admin API's OpenAPI 3.1 document (served at ``/openapi.json``).

Every body has a JSON schema (2020-12, as OpenAPI 3.1 takes them): each record the read
endpoints answer (the shapes of :mod:`csms.service.views`), each operator command's
arguments (one path per command, besides the generic one), its answer and the errors.
``tests/integration/csms/test_openapi.py`` checks real requests and answers against it.
"""

from __future__ import annotations

from typing import Any

from csms.service.billing import BillingState
from csms.translate.command_args import MAX_INT32
from csms.translate.commands import COMMANDS

__all__ = ["COMMAND_BODIES", "openapi_document"]

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = (),
            closed: bool = True, description: str = "") -> Schema:
    out: Schema = {"type": "object", "properties": properties,
                   "required": list(required)}
    if closed:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    return out


_STR: Schema = {"type": "string"}
_STR_OR_NULL: Schema = {"type": ["string", "null"]}
_INT_OR_NULL: Schema = {"type": ["integer", "null"]}
_TIME: Schema = {"type": "string", "format": "date-time"}
_TIME_OR_NULL: Schema = {"type": ["string", "null"], "format": "date-time"}
# a reading: a number, or its exact text beyond 64 bits (csms.service.views.number)
_READING: Schema = {"type": ["number", "string", "null"]}
_TIMEOUT: Schema = {"type": ["number", "null"], "exclusiveMinimum": 0,
                    "description": "Seconds to wait for the station's answer"
                                   " [default: the node's call timeout]"}
# 1.6 only: send the 2.0.1 message in a DataTransfer of the OCA Plug & Charge application
# note (true), or never (false); by default when only that form can say it, or (delete)
# when the station announced Plug & Charge
_PNC: Schema = {"type": "boolean", "description": "1.6: ISO 15118 Plug & Charge over"
                " DataTransfer [default: when needed, or announced]"}
_CONNECTOR: Schema = {"type": "integer", "minimum": 0,
                      "description": "Connector (1.6) or EVSE (2.0.1); 0: the whole station"}


def _command(properties: dict[str, Schema], required: tuple[str, ...] = (),
             description: str = "") -> Schema:
    return _object({**properties, "timeout": _TIMEOUT}, required, description=description)


# The arguments of each operator command (csms.translate.commands_v16 / _v201 read them).
COMMAND_BODIES: dict[str, Schema] = {
    "start": _command({
        "tag": {"type": "string", "minLength": 1, "maxLength": 36},
        "connector": {**_CONNECTOR, "minimum": 1},
        "authorization": {"type": "object",
                          "description": "A driver's signed app-session authorization"
                                         " (csms wallet authorize); it binds the session"
                                         " of this start only, and is withdrawn when the"
                                         " start fails"},
    }, ("tag",), "1.6 RemoteStartTransaction, 2.0.1 RequestStartTransaction"),
    "stop": _command({
        "session": {"type": "integer", "minimum": 1,
                     "description": "The session [default: the station's active one]"},
    }, description=(
        "1.6 RemoteStopTransaction, 2.0.1 RequestStopTransaction. Accepted, the stop is"
        " recorded (a remote_stop station event, the session flagged remote_stop_accepted,"
        " its id in the answer's session) and the session held at its completion if it"
        " charged on (charged_after_remote_stop); a session whose stop was accepted more"
        " than a minute before is still_charging in the answer")),
    "reset": _command({"hard": {"type": "boolean", "default": False}}),
    "unlock": _command({"connector": {**_CONNECTOR, "minimum": 1, "maximum": MAX_INT32,
                                      "default": 1}}),
    "availability": _command({
        "state": {"type": "string", "enum": ["operative", "inoperative", "Operative",
                                              "Inoperative"]},
        "connector": {**_CONNECTOR, "default": 0},
    }, ("state",)),
    "trigger": _command({
        "message": {"type": "string", "minLength": 1,
                    "examples": ["StatusNotification", "MeterValues", "Heartbeat"]},
        "connector": _CONNECTOR,
        "extended": {"type": "boolean", "default": False,
                     "description": "1.6: ExtendedTriggerMessage (security extension)"},
        "pnc": _PNC,
    }, ("message",), "TriggerMessage; V2GCertificate asks a 1.6 Plug & Charge station for"
       " a V2G CSR (SignV2GCertificate in a DataTransfer)"),
    "get-config": _command({"keys": {"type": "array", "items": _STR,
                                     "description": "[default: every key]"}},
                           description="1.6 GetConfiguration"),
    "set-config": _command({"key": {"type": "string", "minLength": 1}, "value": _STR},
                           ("key", "value"), "1.6 ChangeConfiguration"),
    "get-variables": _command({
        "variables": {"type": "array", "minItems": 1,
                      "items": {"type": "string", "pattern": r"^[^.]+\.[^.]+"},
                      "description": "COMPONENT.VARIABLE names"},
    }, ("variables",), "2.0.1 GetVariables"),
    "set-variables": _command({
        "values": {"type": "object", "minProperties": 1,
                   "propertyNames": {"pattern": r"^[^.]+\.[^.]+"},
                   "additionalProperties": _STR,
                   "description": "COMPONENT.VARIABLE -> value"},
    }, ("values",), "2.0.1 SetVariables"),
    "set-profile": _command({
        "limit": {"type": "number", "minimum": 0, "description": "W or A"},
        "unit": {"type": "string", "enum": ["W", "A", "w", "a"], "default": "W"},
        "connector": {**_CONNECTOR, "default": 0},
        "profile_id": {"type": "integer", "minimum": 0, "default": 1},
        "schedule": {"type": "array", "minItems": 1, "items": {
            "type": "array", "prefixItems": [{"type": "integer", "minimum": 0},
                                             {"type": "number", "minimum": 0}],
            "minItems": 2, "maxItems": 2},
            "description": "[seconds from the start, limit] periods, the first at 0"},
    }, ("limit",), "A default charging profile (1.6 TxDefaultProfile)"),
    "clear-profile": _command({"profile_id": {"type": "integer", "minimum": 0,
                                              "description": "[default: every profile]"}}),
    "data-transfer": _command({"vendor": {"type": "string", "minLength": 1},
                               "message_id": _STR_OR_NULL, "data": {}}, ("vendor",)),
    "send-local-list": _command({}, description=(
        "The full local list: to a station of the operator's (no host), every id tag; to a"
        " station with a host, only the tags a session at that station was started with"
        " (a host never collects the card tags of drivers who never charged there)")),
    "local-list-version": _command({}),
    "set-password": _command({"password": {"type": "string", "minLength": 16,
                                           "maxLength": 40}}, ("password",),
                             "Switched once the station accepts it"),
    "install-certificate": _command({
        "type": {"type": "string", "enum": ["CSMSRootCertificate", "ManufacturerRootCertificate",
                                            "V2GRootCertificate", "MORootCertificate"]},
        "certificate": {"type": "string", "minLength": 1, "maxLength": 5500,
                        "description": "PEM"},
        "pnc": _PNC,
    }, ("type", "certificate"), "InstallCertificate (1.6 security extension, 2.0.1 M05; a"
       " V2G or MO root goes to a 1.6 station in a Plug & Charge DataTransfer)"),
    "get-installed-certificates": _command({
        "types": {"type": "array", "items": _STR,
                  "description": "Certificate types [default: 1.6 CSMSRootCertificate;"
                                 " 2.0.1 every type]"},
        "pnc": _PNC,
    }, description="GetInstalledCertificateIds"),
    "delete-certificate": _command({
        "hash": _object({k: {"type": "string", "minLength": 1} for k in (
            "hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber")},
            ("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber")),
        "pnc": _PNC,
    }, ("hash",), "DeleteCertificate by its CertificateHashData"),
    "renew-certificate": _command({}, description="Ask for a new CSR (2.0.1 TriggerMessage"
                                  " SignChargingStationCertificate, 1.6 ExtendedTriggerMessage"
                                  " SignChargePointCertificate)"),
    "get-base-report": _command({
        "report_base": {"type": "string", "enum": ["FullInventory", "ConfigurationInventory",
                                                   "SummaryInventory"],
                        "default": "FullInventory"},
    }, description="2.0.1 GetBaseReport; the NotifyReport parts fill the device model"),
    "get-report": _command({
        "variables": {"type": "array", "items": _STR,
                      "description": "COMPONENT or COMPONENT.VARIABLE names"},
        "criteria": {"type": "array", "items": {"type": "string", "enum": [
            "Active", "Available", "Enabled", "Problem"]}},
    }, description="2.0.1 GetReport"),
    "set-monitoring": _command({
        "monitors": {"type": "array", "minItems": 1, "items": _object({
            "variable": {"type": "string", "description": "COMPONENT.VARIABLE"},
            "type": {"type": "string", "enum": ["UpperThreshold", "LowerThreshold", "Delta",
                                                "Periodic", "PeriodicClockAligned"]},
            "value": {"type": "number"},
            "severity": {"type": "integer", "minimum": 0, "maximum": 9, "default": 5},
            "transaction": {"type": "boolean", "default": False},
            "id": {"type": "integer", "description": "Replace this monitor"},
        }, ("variable", "type", "value"))},
    }, ("monitors",), "2.0.1 SetVariableMonitoring"),
    "clear-monitoring": _command({
        "ids": {"type": "array", "minItems": 1, "items": {"type": "integer"}},
    }, ("ids",), "2.0.1 ClearVariableMonitoring"),
    "set-monitoring-base": _command({
        "base": {"type": "string", "enum": ["All", "FactoryDefault", "HardWiredOnly"]},
    }, ("base",), "2.0.1 SetMonitoringBase"),
    "set-monitoring-level": _command({
        "severity": {"type": "integer", "minimum": 0, "maximum": 9},
    }, ("severity",), "2.0.1 SetMonitoringLevel"),
    "get-monitoring-report": _command({
        "variables": {"type": "array", "items": _STR,
                      "description": "COMPONENT or COMPONENT.VARIABLE names"},
        "criteria": {"type": "array", "items": {"type": "string", "enum": [
            "ThresholdMonitoring", "DeltaMonitoring", "PeriodicMonitoring"]}},
    }, description="2.0.1 GetMonitoringReport; NotifyMonitoringReport fills the monitors"),
    "reserve": _command({
        "tag": {"type": "string", "minLength": 1, "maxLength": 20},
        "until": {"type": "string", "minLength": 1,
                  "description": "RFC 3339, or relative to now (+2h, +30m); at most 7 days"
                                 " ahead"},
        "connector": {**_CONNECTOR, "default": 0,
                      "description": "Connector (1.6) or EVSE (2.0.1); 0: any"},
    }, ("tag", "until"), "1.6 / 2.0.1 ReserveNow; the answer carries the reservation_id"),
    "cancel-reservation": _command({
        "reservation": {"type": "integer", "minimum": 1},
    }, ("reservation",), "1.6 / 2.0.1 CancelReservation of a live reservation"),
    "update-firmware": _command({
        "version": {"type": "string", "minLength": 1,
                    "description": "A firmware version added with csms firmware add"},
        "window_start": {"type": "string", "default": "now",
                         "description": "When the station fetches it (RFC 3339 or +2h)"},
        "window_end": {"type": "string", "description": "When the download URL stops"
                                                        " working [default: start + 1 day]"},
        "retries": {"type": "integer", "minimum": 0, "maximum": 100},
        "retry_interval": {"type": "integer", "minimum": 0, "maximum": 86400},
    }, ("version",), "1.6 UpdateFirmware, or SignedUpdateFirmware for a signed image;"
                     " 2.0.1 UpdateFirmware. The answer carries the request_id; 202 when"
                     " queued for a station that is offline"),
    "get-log": _command({
        "type": {"type": "string", "enum": ["Diagnostics", "SecurityLog"],
                 "default": "Diagnostics"},
        "since": {"type": "string", "description": "Oldest entries (RFC 3339 or -1d)"},
        "until": {"type": "string", "description": "Newest entries (RFC 3339 or -1h)"},
        "retries": {"type": "integer", "minimum": 0, "maximum": 100},
        "retry_interval": {"type": "integer", "minimum": 0, "maximum": 86400},
    }, description="1.6 GetDiagnostics (Diagnostics) or GetLog (SecurityLog); 2.0.1 GetLog."
                   " The answer carries the request_id; 202 when queued for a station that"
                   " is offline"),
    "publish-firmware": _command({
        "version": {"type": "string", "minLength": 1,
                    "description": "A firmware version added with csms firmware add"},
        "retries": {"type": "integer", "minimum": 0, "maximum": 100},
        "retry_interval": {"type": "integer", "minimum": 0, "maximum": 86400},
    }, ("version",), "2.0.1 PublishFirmware to a local controller (the image's URL on the"
                     " file listener, its MD5 as checksum). The answer carries the"
                     " request_id; 202 when queued for a station that is offline"),
    "unpublish-firmware": _command({
        "version": {"type": "string", "minLength": 1,
                    "description": "A firmware version added with csms firmware add"},
    }, ("version",), "2.0.1 UnpublishFirmware (the image's MD5); the answer is"
                     " Unpublished, NoFirmware or DownloadOngoing"),
    "clear-cache": _command({}, description="ClearCache: the station's authorization cache"),
    "get-composite-schedule": _command({
        "connector": {**_CONNECTOR, "default": 0},
        "duration": {"type": "integer", "minimum": 1, "default": 3600,
                     "description": "Seconds from now"},
        "unit": {"type": "string", "enum": ["W", "A", "w", "a"]},
    }, description="GetCompositeSchedule"),
    "get-charging-profiles": _command({
        "connector": _CONNECTOR,
        "purpose": {"type": "string", "enum": [
            "ChargingStationExternalConstraints", "ChargingStationMaxProfile",
            "TxDefaultProfile", "TxProfile"]},
        "profile_id": {"type": "integer", "minimum": 0},
    }, description="2.0.1 GetChargingProfiles; the profiles come in ReportChargingProfiles"),
    "get-transaction-status": _command({
        "transaction_id": {"type": "string", "minLength": 1, "maxLength": 36},
    }, description="2.0.1 GetTransactionStatus"),
    "customer-information": _command({
        "tag": {"type": "string", "minLength": 1, "maxLength": 36},
        "customer": {"type": "string", "minLength": 1, "maxLength": 64},
        "report": {"type": "boolean", "default": True},
        "clear": {"type": "boolean", "default": False},
    }, description="2.0.1 CustomerInformation; the report comes in NotifyCustomerInformation"),
    "set-network-profile": _command({
        "slot": {"type": "integer", "minimum": 0, "default": 1},
        "url": {"type": "string", "pattern": "^wss?://", "maxLength": 512},
        "security_profile": {"type": "integer", "minimum": 0, "maximum": 3},
        "message_timeout": {"type": "integer", "minimum": 1, "default": 30},
        "interface": {"type": "string", "default": "Wired0"},
        "apn": {"type": "string", "maxLength": 512},
        "apn_user": {"type": "string", "maxLength": 20},
        "apn_password": {"type": "string", "maxLength": 20,
                         "description": "never logged nor audited"},
    }, ("url",), "2.0.1 SetNetworkProfile"),
    "set-display-message": _command({
        "message_id": {"type": "integer", "minimum": 0},
        "text": {"type": "string", "minLength": 1, "maxLength": 512},
        "language": {"type": "string", "maxLength": 8},
        "format": {"type": "string", "enum": ["UTF8", "ASCII", "URI", "HTML"],
                   "default": "UTF8"},
        "priority": {"type": "string", "enum": ["AlwaysFront", "InFront", "NormalCycle"],
                     "default": "NormalCycle"},
        "state": {"type": "string", "enum": ["Charging", "Faulted", "Idle", "Unavailable"]},
        "start": _TIME, "end": _TIME,
        "transaction_id": {"type": "string", "maxLength": 36},
    }, ("message_id", "text"), "2.0.1 SetDisplayMessage"),
    "get-display-messages": _command({
        "message_id": {"type": "integer", "minimum": 0},
        "priority": {"type": "string", "enum": ["AlwaysFront", "InFront", "NormalCycle"]},
        "state": {"type": "string", "enum": ["Charging", "Faulted", "Idle", "Unavailable"]},
    }, description="2.0.1 GetDisplayMessages; the messages come in NotifyDisplayMessages"),
    "clear-display-message": _command({"message_id": {"type": "integer", "minimum": 0}},
                                      ("message_id",), "2.0.1 ClearDisplayMessage"),
    "cost-updated": _command({
        "session": {"type": "integer", "minimum": 1,
                    "description": "The session [default: the station's active one]"},
    }, description="2.0.1 CostUpdated with the session's cost from its tariff; 1.6: the OCA"
                   " RunningCost DataTransfer, to stations that announced it"),
}
assert set(COMMAND_BODIES) == set(COMMANDS), "a command without its body's schema"

_CONNECTOR_STATE = _object({
    "evse_id": _INT_OR_NULL, "connector_id": {"type": "integer"}, "status": _STR_OR_NULL,
    "error_code": _STR_OR_NULL, "error_info": _STR_OR_NULL, "vendor_id": _STR_OR_NULL,
    "vendor_error_code": _STR_OR_NULL, "fault": _STR_OR_NULL, "updated_at": _STR_OR_NULL})
_STATION = _object({
    "id": _STR, "online": {"type": "boolean"}, "node": _STR_OR_NULL,
    "ocpp_version": {"type": ["string", "null"], "enum": ["1.6", "2.0.1", None]},
    "boot": {"type": "string", "enum": ["accepted", "pending", "rejected"]},
    "security_profile": {"type": "integer", "minimum": 0, "maximum": 3},
    "vendor": _STR_OR_NULL, "model": _STR_OR_NULL, "firmware_version": _STR_OR_NULL,
    "last_boot_at": _TIME_OR_NULL, "last_seen_at": _TIME_OR_NULL,
    "max_power_w": _READING, "reported_max_power_w": _READING,
    "connectors": {"type": "array", "items": _ref("Connector")},
}, tuple(["id", "online", "ocpp_version", "boot", "security_profile", "connectors"]))
_SESSION = _object({
    "id": {"type": "integer"}, "station_id": _STR, "connector_id": _INT_OR_NULL,
    "evse_id": _INT_OR_NULL, "id_tag": _STR_OR_NULL,
    "ocpp_version": {"type": "string", "enum": ["1.6", "2.0.1"]},
    "transaction_id": _STR, "started_at": _TIME, "stopped_at": _TIME_OR_NULL,
    "meter_start_wh": _READING, "meter_stop_wh": _READING, "energy_wh": _INT_OR_NULL,
    "status": {"type": "string", "enum": ["active", "completed"]},
    "stop_reason": _STR_OR_NULL, "flags": {"type": "array", "items": _STR},
    "limit_minor": _INT_OR_NULL,
}, ("id", "station_id", "ocpp_version", "transaction_id", "started_at", "status", "flags"))
# /sessions and /sessions/{id}: as csms sessions list / show --json (csms.service.holds
# hold_fields)
_SESSION_BILLED = _object({
    **_SESSION["properties"],
    "billing": {"type": "string", "enum": [b.value for b in BillingState]},
    "decide_by": {**_TIME_OR_NULL, "description": "A held session's time to be released or"
                  " rejected by (its start plus the contract's notice period, less an hour to"
                  " settle): released later, its host may not be paid. null when not held, or"
                  " before a settlement worker read the contract's notice period"},
    "decide_by_state": {"type": ["string", "null"], "enum": ["ahead", "near", "passed", None],
                        "description": "Where the central system's clock stands to"
                        " decide_by: near within a day of it, passed at or after it"},
}, (*_SESSION["required"], "billing", "decide_by", "decide_by_state"))
_EVENT = _object({"id": {"type": "integer"}, "station_id": _STR, "kind": _STR, "ts": _STR,
                  "payload": {}}, ("id", "station_id", "kind", "ts", "payload"))
_STATION_DETAIL = _object({
    **_STATION["properties"],
    "meter_public_key": _STR_OR_NULL,
    "meter_key_source": {"type": ["string", "null"], "enum": ["operator", "first_use", None]},
    "evse_meter_keys": {
        "type": "array", "description": "The meter keys the operator registered per EVSE (a"
        " station with a calibrated meter per EVSE): a session on one of these EVSEs is"
        " verified with its key, the others with meter_public_key",
        "items": _object({"evse_id": {"type": "integer", "minimum": 1},
                          "public_key": _STR}, ("evse_id", "public_key"))},
    "recent_events": {"type": "array", "items": _ref("StationEvent")},
    "active_sessions": {"type": "array", "items": _ref("Session")},
}, (*_STATION["required"], "meter_public_key", "evse_meter_keys", "recent_events",
    "active_sessions"))
_AUDIT = _object({"id": {"type": "integer"}, "at": _STR, "actor": _STR,
                  "claimed_actor": _STR_OR_NULL, "action": _STR, "target": _STR_OR_NULL,
                  "request": {"type": "object"},
                  "result": {"type": "object"}, "ok": {"type": "boolean"}},
                 ("id", "at", "actor", "action", "request", "result", "ok"))
_TASK = _object({"state": {"type": "string", "enum": ["up", "down", "stopped", "starting"]},
                 "restarts": {"type": "integer"}, "failures": {"type": "integer"},
                 "last_error": _STR_OR_NULL, "since": _STR_OR_NULL},
                ("state", "restarts", "failures"), closed=False)
_HEALTH = _object({"status": {"type": "string", "enum": ["ok", "degraded"]}, "node": _STR,
                   "down": {"type": "array", "items": _STR},
                   "tasks": {"type": "object", "additionalProperties": _ref("Task")}},
                  ("status", "node", "down", "tasks"))
_COMMAND_RESULT = _object({
    "status": {"type": "string", "description": "The station's answer in one word"
                                                " (Accepted, Rejected, ...)"},
    "action": {"type": "string", "description": "The OCPP action sent"},
    "ocpp_version": {"type": "string", "enum": ["1.6", "2.0.1"]},
    "response": {"type": "object", "description": "The station's CALLRESULT payload"},
    "switched": {"type": "boolean", "description": "set-password: the new password is in"
                                                   " use"},
    "node": {"type": "string", "description": "The node that holds the station's socket"},
    "via": {"type": "string", "enum": ["DataTransfer"],
            "description": "1.6 Plug & Charge: the 2.0.1 action went in a DataTransfer, and"
                           " response is the 2.0.1 answer read out of its answer"},
    "warning": {"type": "string", "description": "set-config: sent, although the station's"
                                                 " stored configuration cannot vouch for"
                                                 " the key; stop: the session is still"
                                                 " charging after a stop it accepted"},
    "session": {"type": "integer", "description": "stop: the session stopped (once the"
                                                  " station accepted; its stop is recorded)"},
    "still_charging": {"type": "boolean",
                       "description": "stop: a stop of the session was accepted more than"
                                      " a minute before, and it is still active"},
    "stop_accepted_at": {"type": "string", "format": "date-time",
                         "description": "stop, still_charging: when the station first"
                                        " accepted a stop of it (the central system's"
                                        " clock)"},
    "reservation_id": {"type": "integer", "description": "reserve, cancel-reservation:"
                                                         " the reservation"},
    "request_id": {"type": "integer", "description": "update-firmware, get-log,"
                                                     " publish-firmware, unpublish-firmware:"
                                                     " the request (csms firmware status,"
                                                     " csms logs list)"},
}, ("status", "action", "ocpp_version", "response"))
_QUEUED = _object({
    "status": {"type": "string", "enum": ["queued"]},
    "request_id": {"type": "integer", "description": "The queued request (csms firmware"
                                                     " status, csms logs list)"},
    "error": {"type": "null"}, "note": _STR, "node": _STR,
}, ("status", "request_id"))
_CANCELLED = _object({"status": {"type": "string", "enum": ["cancelled"]},
                      "request_id": {"type": "integer"}}, ("status", "request_id"))
_ERROR = _object({
    "error": {"type": "string", "minLength": 1},
    "status": {"type": "string", "description": "Offline, Timeout or the CALLERROR code"},
    "action": _STR, "node": _STR,
    "commands": {"type": "array", "items": _STR},
    "connected": {"type": "boolean", "description": "false: connected to no live node"},
}, ("error",))


_RESERVATION = _object({
    "id": {"type": "integer"}, "station_id": _STR, "connector_id": {"type": "integer"},
    "id_tag": _STR, "expires_at": _TIME,
    "status": {"type": "string", "enum": ["requested", "accepted", "refused", "failed",
                                          "used", "cancelled", "removed", "expired"]},
    "answer": _STR_OR_NULL, "session_id": _INT_OR_NULL, "created_at": _TIME,
    "updated_at": _TIME_OR_NULL,
}, ("id", "station_id", "connector_id", "id_tag", "expires_at", "status"))
_FIRMWARE = _object({
    "id": {"type": "integer"}, "version": _STR, "file_name": _STR, "size": {"type": "integer"},
    "sha256": _STR, "md5": _STR_OR_NULL, "signed": {"type": "boolean"}, "created_at": _TIME,
}, ("id", "version", "file_name", "size", "sha256", "signed", "created_at"))
_TRANSFER = _object({
    "id": {"type": "integer", "description": "The OCPP requestId"},
    "kind": {"type": "string", "enum": ["firmware", "log", "publish", "unpublish"]},
    "station_id": _STR,
    "status": {"type": "string", "description": "The station's last word about it, or"
                                                " queued, sending, cancelled, expired"},
    "locations": {"type": "array", "items": _STR,
                  "description": "publish: the URLs the local controller serves it on"},
    "created_at": _TIME, "updated_at": _TIME_OR_NULL, "url_expires_at": _TIME,
    "url_open": {"type": "boolean"}, "version": _STR,
    "log_type": {"type": "string", "enum": ["Diagnostics", "SecurityLog"]},
    "file_name": _STR_OR_NULL, "size": _INT_OR_NULL, "uploaded_at": _TIME_OR_NULL,
    "request": {"type": "object"},
}, ("id", "kind", "station_id", "status", "created_at", "url_expires_at", "url_open"))


def _json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json_body(_ref("Error"), description)


_UNAUTHORIZED = {"401": _error("Missing or wrong bearer token")}
_BAD_QUERY = {"400": _error("Unknown query parameter or unusable value")}
_COMMAND_RESPONSES = {
    "200": _json_body(_ref("CommandResult"), "The station's answer"),
    "202": _json_body(_ref("Queued"), "update-firmware, get-log, publish-firmware for a"
                                      " station connected nowhere: queued, sent when it is"
                                      " back (after an accepted BootNotification, or once"
                                      " it is heard if its last boot was accepted)"),
    "400": _error("Invalid arguments for this command or station"),
    **_UNAUTHORIZED,
    "404": _error("Unknown command"),
    "409": _error("Station not connected (to this node, or to any live node)"),
    "502": _error("Station answered with a CALLERROR"),
    "504": _error("Station (or the node holding it) did not answer in time"),
}
_STATION_ID = {"name": "station_id", "in": "path", "required": True,
               "schema": {"type": "string", "minLength": 1, "maxLength": 48}}
_LIMIT = {"name": "limit", "in": "query",
          "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}


def _command_path(name: str) -> Schema:
    return {"post": {
        "summary": f"Operator command {name}",
        "description": COMMAND_BODIES[name].get("description", ""),
        "parameters": [_STATION_ID],
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": _ref(f"Command_{name}")}}},
        "responses": _COMMAND_RESPONSES,
    }}


def openapi_document() -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    schemas: dict[str, Schema] = {
        "Connector": _CONNECTOR_STATE, "Station": _STATION, "StationDetail": _STATION_DETAIL,
        "StationEvent": _EVENT, "Session": _SESSION,
        "SessionBilled": _SESSION_BILLED, "AuditEntry": _AUDIT, "Task": _TASK,
        "Health": _HEALTH, "CommandResult": _COMMAND_RESULT, "Error": _ERROR,
        "Reservation": _RESERVATION, "Firmware": _FIRMWARE, "Transfer": _TRANSFER,
        "Queued": _QUEUED, "Cancelled": _CANCELLED,
        **{f"Command_{name}": body for name, body in COMMAND_BODIES.items()},
    }
    paths: dict[str, Schema] = {
        "/health": {"get": {"security": [], "responses": {
            "200": _json_body(_ref("Health"), "The node and its background tasks")}}},
        "/openapi.json": {"get": {"responses": {
            "200": _json_body({"type": "object", "required": ["openapi", "paths"]},
                              "This document"), **_BAD_QUERY, **_UNAUTHORIZED}}},
        "/metrics": {"get": {"responses": {
            "200": {"description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_BAD_QUERY, **_UNAUTHORIZED}}},
        "/stations": {"get": {"responses": {
            "200": _json_body({"type": "array", "items": _ref("Station")}, "Every station"),
            **_BAD_QUERY, **_UNAUTHORIZED}}},
        "/stations/{station_id}": {"get": {"parameters": [_STATION_ID], "responses": {
            "200": _json_body(_ref("StationDetail"), "One station"),
            "404": _error("No such station"), **_BAD_QUERY, **_UNAUTHORIZED}}},
        "/sessions": {"get": {"parameters": [
            {"name": "station", "in": "query", "schema": {"type": "string"}},
            {"name": "active", "in": "query", "schema": {"type": "boolean"}}, _LIMIT],
            "responses": {
                "200": _json_body({"type": "array", "items": _ref("SessionBilled")},
                                  "Sessions, newest first"),
                **_BAD_QUERY, **_UNAUTHORIZED}}},
        "/sessions/{session_id}": {"get": {"parameters": [
            {"name": "session_id", "in": "path", "required": True,
             "schema": {"type": "integer"}}], "responses": {
            "200": _json_body(_ref("SessionBilled"), "One session"),
            "400": _error("Not a session id"), "404": _error("No such session"),
            **_UNAUTHORIZED}}},
        "/audit": {"get": {"parameters": [_LIMIT], "responses": {
            "200": _json_body({"type": "array", "items": _ref("AuditEntry")},
                              "Operator commands, newest first"),
            **_BAD_QUERY, **_UNAUTHORIZED}}},
        "/stations/{station_id}/commands/{command}": {"post": {
            "description": "Send a command to a connected station and wait for its answer."
                           " Commands: " + ", ".join(sorted(COMMANDS)) + "; each one's"
                           " arguments are under its own path.",
            "parameters": [
                _STATION_ID,
                {"name": "command", "in": "path", "required": True,
                 "schema": {"type": "string", "enum": sorted(COMMANDS)}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "anyOf": [_ref(f"Command_{name}") for name in sorted(COMMANDS)]}}}},
            "responses": _COMMAND_RESPONSES,
        }},
        **{f"/stations/{{station_id}}/commands/{name}": _command_path(name)
           for name in sorted(COMMANDS)},
        "/reservations": {"get": {"parameters": [
            {"name": "station", "in": "query", "schema": {"type": "string"}}, _LIMIT],
            "responses": {
                "200": _json_body({"type": "array", "items": _ref("Reservation")},
                                  "Reservations, newest first"),
                **_BAD_QUERY, **_UNAUTHORIZED}}},
        "/firmware": {"get": {"responses": {
            "200": _json_body({"type": "array", "items": _ref("Firmware")},
                              "Firmware images (csms firmware add)"),
            **_BAD_QUERY, **_UNAUTHORIZED}}},
        "/transfers": {"get": {"parameters": [
            {"name": "kind", "in": "query",
             "schema": {"type": "string", "enum": ["firmware", "log", "publish", "unpublish"],
                        "default": "log"}},
            {"name": "station", "in": "query", "schema": {"type": "string"}}, _LIMIT],
            "responses": {
                "200": _json_body({"type": "array", "items": _ref("Transfer")},
                                  "Firmware updates, log requests or publications, newest"
                                  " first"),
                **_BAD_QUERY, **_UNAUTHORIZED}}},
        "/transfers/{transfer_id}/cancel": {"post": {
            "description": "Cancel a request still queued for a station that is offline"
                           " (audited)",
            "parameters": [{"name": "transfer_id", "in": "path", "required": True,
                            "schema": {"type": "integer"}}],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": _object({"kinds": {
                    "type": "array", "minItems": 1, "items": {
                        "type": "string", "enum": ["firmware", "log", "publish"]},
                    "description": "Only a request of these kinds [default: any]"}})}}},
            "responses": {
                "200": _json_body(_ref("Cancelled"), "Cancelled: it will not be sent"),
                "400": _error("Not a queued request of these kinds"), **_UNAUTHORIZED}}},
        "/transfers/{transfer_id}/file": {"get": {"parameters": [
            {"name": "transfer_id", "in": "path", "required": True,
             "schema": {"type": "integer"}}], "responses": {
            "200": {"description": "The uploaded log",
                    "content": {"application/octet-stream": {
                        "schema": {"type": "string", "contentMediaType":
                                   "application/octet-stream"}}}},
            "400": _error("Not a request id"),
            "404": _error("No uploaded log for it on this node"), **_UNAUTHORIZED}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "voltledger admin API", "version": "1"},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": schemas},
        "security": bearer,
        "paths": paths,
    }
