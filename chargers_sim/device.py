"""A simulated 2.0.1 station's device model: components and variables with their
characteristics (2.0.1 part 2, appendix: referenced components and variables), the
reports that describe it (NotifyReport in parts), and variable monitors that raise
NotifyEvent when a monitored value changes (N04, N07).

Values live in the station's ``variables`` dict (``Component.Variable`` names, or
``Component@EVSE.Variable`` for an EVSE's); this module adds what a report tells about
each: mutability, data type, unit, limits, values list.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

__all__ = ["REPORT_PART_SIZE", "SimDeviceModel", "VariableDef"]

REPORT_PART_SIZE = 4  # ReportData entries per NotifyReport part


@dataclass(frozen=True, slots=True)
class VariableDef:
    component: str
    variable: str
    data_type: str = "string"
    mutability: str = "ReadWrite"
    evse: int | None = None
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: str | None = None
    monitorable: bool = False
    default: str = ""

    @property
    def name(self) -> str:
        at = f"@{self.evse}" if self.evse is not None else ""
        return f"{self.component}{at}.{self.variable}"

    def component_type(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.component}
        if self.evse is not None:
            out["evse"] = {"id": self.evse}
        return out


@functools.cache
def definitions(connectors: int, power_w: float) -> tuple[VariableDef, ...]:
    defs = [
        VariableDef("OCPPCommCtrlr", "HeartbeatInterval", "integer", unit="s", min_limit=1,
                    max_limit=86400, monitorable=True),
        VariableDef("OCPPCommCtrlr", "MessageAttempts", "integer", min_limit=0, max_limit=10),
        VariableDef("OCPPCommCtrlr", "MessageAttemptInterval", "decimal", unit="s",
                    min_limit=0),
        VariableDef("SampledDataCtrlr", "TxUpdatedInterval", "integer", unit="s",
                    min_limit=0, max_limit=3600),
        VariableDef("AuthCtrlr", "AuthorizeRemoteStart", "boolean"),
        # C16: tokens of this group stop transactions and start none
        VariableDef("AuthCtrlr", "MasterPassGroupId", "string", max_limit=36),
        VariableDef("SecurityCtrlr", "BasicAuthPassword", "string", "WriteOnly",
                    max_limit=40),
        VariableDef("SecurityCtrlr", "SecurityProfile", "integer", "ReadOnly", default="1"),
        VariableDef("SecurityCtrlr", "OrganizationName", "string", default=""),
        VariableDef("ChargingStation", "Model", "string", "ReadOnly", default="sim-wallbox"),
        VariableDef("ChargingStation", "VendorName", "string", "ReadOnly",
                    default="voltledger"),
        VariableDef("ChargingStation", "AvailabilityState", "OptionList",
                    values_list="Available,Occupied,Reserved,Unavailable,Faulted",
                    default="Available", monitorable=True),
        VariableDef("DeviceDataCtrlr", "ItemsPerMessage", "integer", "ReadOnly",
                    default="16"),
        VariableDef("TxCtrlr", "TxStartPoint", "MemberList",
                    values_list="ParkingBayOccupancy,EVConnected,Authorized,PowerPathClosed",
                    default="PowerPathClosed"),
        VariableDef("TempSensor", "Temperature", "decimal", "ReadOnly", unit="Celsius",
                    min_limit=-40, max_limit=120, default="21.5", monitorable=True),
    ]
    for evse in range(1, connectors + 1):
        defs.append(VariableDef("EVSE", "Power", "decimal", "ReadOnly", evse=evse, unit="W",
                                min_limit=0, max_limit=power_w, default="0",
                                monitorable=True))
        defs.append(VariableDef("EVSE", "AvailabilityState", "OptionList", "ReadOnly",
                                evse=evse, values_list="Available,Occupied,Unavailable",
                                default="Available"))
    return tuple(defs)


class SimDeviceModel:
    """The device model and monitors of one simulated station."""

    def __init__(self, variables: dict[str, str], connectors: int, power_w: float) -> None:
        self.values = variables  # shared with the station: the values themselves
        self.defs = {d.name: d for d in definitions(connectors, power_w)}
        for d in self.defs.values():
            if d.mutability != "WriteOnly":
                self.values.setdefault(d.name, d.default)
        self.monitors: dict[int, dict[str, Any]] = {}
        self._monitor_ids = itertools.count(1)
        self._event_ids = itertools.count(1)
        self.monitoring_level = 9
        self.reports_sent = 0

    # -- reports ---------------------------------------------------------------------
    def report_data(self, base: str = "FullInventory",
                    wanted: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """ReportDataType entries (2.0.1 B07/B08): a ConfigurationInventory holds only what
        can be set; a SummaryInventory only the availability states."""
        out = []
        for d in self.defs.values():
            if base == "ConfigurationInventory" and d.mutability == "ReadOnly":
                continue
            if base == "SummaryInventory" and d.variable != "AvailabilityState":
                continue
            if wanted and not any(_matches(d, w) for w in wanted):
                continue
            attribute: dict[str, Any] = {"type": "Actual", "mutability": d.mutability}
            if d.mutability != "WriteOnly":
                attribute["value"] = self.values.get(d.name, d.default)[:2500]
            chars: dict[str, Any] = {"dataType": d.data_type,
                                     "supportsMonitoring": d.monitorable}
            for key, value in (("unit", d.unit), ("minLimit", d.min_limit),
                               ("maxLimit", d.max_limit), ("valuesList", d.values_list)):
                if value is not None:
                    chars[key] = value
            out.append({"component": d.component_type(), "variable": {"name": d.variable},
                        "variableAttribute": [attribute], "variableCharacteristics": chars})
        return out

    @staticmethod
    def parts(items: list[Any], size: int = REPORT_PART_SIZE) -> list[list[Any]]:
        return [items[i:i + size] for i in range(0, len(items), size)] or [[]]

    # -- variables -------------------------------------------------------------------
    def get(self, name: str) -> tuple[str, str | None]:
        d = self.defs.get(name)
        if d is None:
            if name in self.values:
                return "Accepted", self.values[name]
            component = name.split(".")[0].split("@")[0]
            known = any(x.component == component for x in self.defs.values())
            return ("UnknownVariable" if known else "UnknownComponent"), None
        if d.mutability == "WriteOnly":
            return "Rejected", None
        return "Accepted", self.values.get(name, d.default)

    def check_set(self, name: str, value: str) -> str:
        d = self.defs.get(name)
        if d is None:
            if name in self.values:
                return "Accepted"
            component = name.split(".")[0].split("@")[0]
            known = any(x.component == component for x in self.defs.values())
            return "UnknownVariable" if known else "UnknownComponent"
        if d.mutability == "ReadOnly":
            return "Rejected"
        if d.data_type in ("integer", "decimal"):
            try:
                number = float(value) if d.data_type == "decimal" else int(value)
            except ValueError:
                return "Rejected"
            if (d.min_limit is not None and number < d.min_limit) or (
                    d.max_limit is not None and number > d.max_limit):
                return "Rejected"
        if d.data_type == "boolean" and value not in ("true", "false"):
            return "Rejected"
        if d.data_type == "OptionList" and value not in (d.values_list or "").split(","):
            return "Rejected"
        return "Accepted"

    # -- monitors (N04) ----------------------------------------------------------------
    def set_monitor(self, item: dict[str, Any]) -> dict[str, Any]:
        name = _name(item["component"], item["variable"])
        d = self.defs.get(name)
        result: dict[str, Any] = {"type": item["type"], "severity": item["severity"],
                                  "component": item["component"], "variable": item["variable"]}
        if d is None:
            result["status"] = "UnknownVariable"
        elif not d.monitorable or item["type"] not in (
                "UpperThreshold", "LowerThreshold", "Delta"):
            result["status"] = "UnsupportedMonitorType"
        else:
            monitor_id = int(item["id"]) if "id" in item else next(self._monitor_ids)
            self.monitors[monitor_id] = {**item, "id": monitor_id, "name": name,
                                         "last": self.values.get(name, d.default)}
            result.update(status="Accepted", id=monitor_id)
        return result

    def clear_monitor(self, monitor_id: int) -> dict[str, Any]:
        found = self.monitors.pop(monitor_id, None)
        return {"id": monitor_id, "status": "Accepted" if found else "NotFound"}

    def monitoring_report(self, wanted: list[dict[str, Any]] | None = None
                          ) -> list[dict[str, Any]]:
        by_variable: dict[str, dict[str, Any]] = {}
        for m in self.monitors.values():
            d = self.defs[m["name"]]
            if wanted and not any(_matches(d, w) for w in wanted):
                continue
            entry = by_variable.setdefault(m["name"], {
                "component": d.component_type(), "variable": {"name": d.variable},
                "variableMonitoring": []})
            entry["variableMonitoring"].append({
                "id": m["id"], "transaction": bool(m.get("transaction", False)),
                "value": m["value"], "type": m["type"], "severity": m["severity"]})
        return list(by_variable.values())

    def changed(self, name: str, value: str, timestamp: str) -> list[dict[str, Any]]:
        """EventDataType entries for the monitors a new value trips (N07)."""
        events = []
        for m in self.monitors.values():
            if m["name"] != name or int(m["severity"]) > self.monitoring_level:
                continue
            try:
                new, old = float(value), float(m["last"])
            except ValueError:
                continue
            limit = float(m["value"])
            tripped = (m["type"] == "UpperThreshold" and new > limit >= old) or (
                m["type"] == "LowerThreshold" and new < limit <= old) or (
                m["type"] == "Delta" and abs(new - old) >= limit)
            m["last"] = value
            if tripped:
                d = self.defs[name]
                events.append({
                    "eventId": next(self._event_ids), "timestamp": timestamp,
                    "trigger": "Delta" if m["type"] == "Delta" else "Alerting",
                    "actualValue": value[:2500], "eventNotificationType": "CustomMonitor",
                    "variableMonitoringId": m["id"], "component": d.component_type(),
                    "variable": {"name": d.variable}})
        return events


def _name(component: dict[str, Any], variable: dict[str, Any]) -> str:
    evse = component.get("evse")
    at = f"@{evse['id']}" if isinstance(evse, dict) and "id" in evse else ""
    return f"{component['name']}{at}.{variable['name']}"


def _matches(d: VariableDef, wanted: dict[str, Any]) -> bool:
    component = wanted.get("component") or {}
    if component.get("name") != d.component:
        return False
    evse = component.get("evse")
    if isinstance(evse, dict) and evse.get("id") != d.evse:
        return False
    variable = wanted.get("variable")
    return variable is None or variable.get("name") == d.variable
