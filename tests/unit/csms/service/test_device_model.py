"""The device model: report parts stored per request, bounds, and the checks of a
SetVariables against the stored model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from csms.service.device_model import (
    DeviceModel,
    ModelRefusal,
    check_value,
    parse_key,
    rows_from_report,
    var_key,
)
from csms.service.quota import PayloadQuota
from support.memory import MemoryRepository

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def item(component: str, variable: str, value: str | None = "1", *, evse: int | None = None,
         mutability: str = "ReadWrite", data_type: str = "integer",
         **chars: Any) -> dict[str, Any]:
    comp: dict[str, Any] = {"name": component}
    if evse is not None:
        comp["evse"] = {"id": evse}
    attr: dict[str, Any] = {"type": "Actual", "mutability": mutability}
    if value is not None:
        attr["value"] = value
    return {"component": comp, "variable": {"name": variable}, "variableAttribute": [attr],
            "variableCharacteristics": {"dataType": data_type, "supportsMonitoring": False,
                                        **chars}}


REPORT = [
    item("OCPPCommCtrlr", "HeartbeatInterval", "60", minLimit=1, maxLimit=86400),
    item("ChargingStation", "Model", "X1", mutability="ReadOnly", data_type="string"),
    item("AuthCtrlr", "AuthorizeRemoteStart", "true", data_type="boolean"),
    item("TxCtrlr", "TxStartPoint", "Authorized", data_type="MemberList",
         valuesList="EVConnected,Authorized"),
    item("ChargingStation", "AvailabilityState", "Available", data_type="OptionList",
         valuesList="Available,Unavailable"),
    item("EVSE", "Power", "0", evse=1, mutability="ReadOnly", data_type="decimal"),
    item("SecurityCtrlr", "BasicAuthPassword", None, mutability="WriteOnly",
         data_type="string", maxLimit=40),
]


def part(request_id: int, seq_no: int, data: list[dict[str, Any]],
         tbc: bool = False) -> dict[str, Any]:
    return {"requestId": request_id, "generatedAt": "2026-06-01T00:00:00Z", "seqNo": seq_no,
            "tbc": tbc, "reportData": data}


def test_keys_name_instances_evses_and_attribute_types() -> None:
    assert var_key({"name": "EVSE", "evse": {"id": 1, "connectorId": 2}},
                   {"name": "Power"}) == "EVSE@1:2.Power"
    assert var_key({"name": "Fan", "instance": "2"}, {"name": "Speed", "instance": "rpm"},
                   "Target") == "Fan[2].Speed[rpm]/Target"
    component, variable, kind = parse_key("Fan[2]@3:1.Speed[rpm]/MaxSet")
    assert component == {"name": "Fan", "instance": "2", "evse": {"id": 3, "connectorId": 1}}
    assert (variable, kind) == ({"name": "Speed", "instance": "rpm"}, "MaxSet")
    for bad in ("NoDot", ".Var", "A.B.C", "A@x.B"):
        with pytest.raises(ModelRefusal):
            parse_key(bad)


@pytest.mark.parametrize(("row", "value", "wrong"), [
    ({"data_type": "integer", "min_limit": "1", "max_limit": "10"}, "5", None),
    ({"data_type": "integer", "min_limit": "1", "max_limit": "10"}, "0", "at least 1"),
    ({"data_type": "integer", "min_limit": "1", "max_limit": "10"}, "11", "at most 10"),
    ({"data_type": "integer"}, "1.5", "an integer"),
    ({"data_type": "integer"}, "9" * 40, "an integer"),
    ({"data_type": "decimal"}, "NaN", "a decimal"),
    ({"data_type": "decimal"}, "2.5", None),
    ({"data_type": "boolean"}, "True", "true or false"),
    ({"data_type": "dateTime"}, "yesterday", "RFC 3339"),
    ({"data_type": "OptionList", "values_list": "A,B"}, "C", "one of A, B"),
    ({"data_type": "MemberList", "values_list": "A,B"}, "A,B", None),
    ({"data_type": "MemberList", "values_list": "A,B"}, "A,X", "members of"),
    ({"data_type": "string", "max_limit": "3"}, "abcd", "at most 3 characters"),
])
def test_values_are_checked_against_the_characteristics(row: dict[str, Any], value: str,
                                                        wrong: str | None) -> None:
    why = check_value(row, value)
    assert (why is None) if wrong is None else (why is not None and wrong in why)


async def test_a_report_in_parts_is_stored_and_the_latest_wins() -> None:
    repo = MemoryRepository()
    model = DeviceModel(repo, clock=lambda: NOW)
    request_id = await model.request_report("CP-1", "base")
    assert await model.notify_report("CP-1", part(request_id, 0, REPORT[:4], True)) == "stored"
    assert await model.notify_report("CP-1", part(request_id, 1, REPORT[4:])) == "stored"
    rows = {r["var_key"]: r for r in await model.variables("CP-1")}
    assert len(rows) == len(REPORT) == len(rows_from_report(REPORT))
    assert rows["EVSE@1.Power"]["mutability"] == "ReadOnly"
    assert rows["SecurityCtrlr.BasicAuthPassword"]["value"] is None
    assert repo.state.report_requests["CP-1", request_id]["completed_at"] == NOW
    again = await model.request_report("CP-1", "custom")
    assert again == request_id + 1
    await model.notify_report("CP-1", part(again, 0, [
        item("OCPPCommCtrlr", "HeartbeatInterval", "90", minLimit=1, maxLimit=86400)]))
    rows = {r["var_key"]: r for r in await model.variables("CP-1")}
    assert rows["OCPPCommCtrlr.HeartbeatInterval"]["value"] == "90"
    assert await model.variables("CP-2") == []  # per station


async def test_a_report_nobody_asked_for_is_not_stored() -> None:
    repo = MemoryRepository()
    model = DeviceModel(repo, clock=lambda: NOW)
    assert await model.notify_report("CP-1", part(7, 0, REPORT)) == "unsolicited"
    other = await model.request_report("CP-2", "base")  # another station's request
    assert await model.notify_report("CP-1", part(other, 0, REPORT)) == "unsolicited"
    monitoring = await model.request_report("CP-1", "monitoring")  # of another kind
    assert await model.notify_report("CP-1", part(monitoring, 0, REPORT)) == "unsolicited"
    assert await model.variables("CP-1") == []
    kinds = [e["payload"]["type"] for e in repo.state.station_events]
    assert kinds == ["UnsolicitedReport"] * 3


async def test_a_huge_model_is_bounded_and_reports_are_metered() -> None:
    repo = MemoryRepository()
    model = DeviceModel(repo, clock=lambda: NOW, max_variables=10)
    request_id = await model.request_report("CP-1", "base")
    many = [item("Fan", f"V{n}", str(n)) for n in range(25)]
    await model.notify_report("CP-1", part(request_id, 0, many))
    assert len(await model.variables("CP-1")) == 10
    assert repo.state.station_events[-1]["payload"] == {
        "type": "DeviceModelFull", "limit": 10, "dropped": 15}
    # known rows are still updated when the model is full
    await model.notify_report("CP-1", part(request_id, 1, [item("Fan", "V0", "new")]))
    assert {r["var_key"]: r["value"] for r in await model.variables("CP-1")}["Fan.V0"] == "new"
    quota = PayloadQuota({"notification": 2000}, clock=lambda: 0.0)
    metered = DeviceModel(repo, quota=quota, clock=lambda: NOW)
    second = await metered.request_report("CP-2", "base")
    assert await metered.notify_report("CP-2", part(second, 0, REPORT[:2])) == "stored"
    assert await metered.notify_report("CP-2", part(second, 1, REPORT)) == "quota"


async def test_set_and_get_are_checked_against_the_stored_model() -> None:
    repo = MemoryRepository()
    model = DeviceModel(repo, clock=lambda: NOW)
    await model.check_set("CP-1", {"Any.Thing": "x"})  # no model stored: not checked
    request_id = await model.request_report("CP-1", "base")
    await model.notify_report("CP-1", part(request_id, 0, REPORT))
    await model.check_set("CP-1", {"OCPPCommCtrlr.HeartbeatInterval": "120",
                                   "TxCtrlr.TxStartPoint": "EVConnected,Authorized"})
    refusals = {
        "ChargingStation.Model": ("X2", "ReadOnly"),
        "OCPPCommCtrlr.HeartbeatInterval": ("0", "at least 1"),
        "AuthCtrlr.AuthorizeRemoteStart": ("yes", "true or false"),
        "ChargingStation.AvailabilityState": ("Broken", "one of Available, Unavailable"),
        "OCPPCommCtrlr.NoSuchThing": ("1", "no variable"),
        "NoSuchComponent.X": ("1", "no component"),
        "SecurityCtrlr.BasicAuthPassword": ("x" * 41, "at most 40"),
    }
    for name, (value, why) in refusals.items():
        with pytest.raises(ModelRefusal, match=why):
            await model.check_set("CP-1", {name: value})
    with pytest.raises(ModelRefusal, match="WriteOnly"):
        await model.check_get("CP-1", ["SecurityCtrlr.BasicAuthPassword"])
    await model.record_results("CP-1", {"setVariableResult": [
        {"attributeStatus": "Accepted", "component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "HeartbeatInterval"}}]},
        {"OCPPCommCtrlr.HeartbeatInterval": "120"})
    await model.record_results("CP-1", {"getVariableResult": [
        {"attributeStatus": "Accepted", "component": {"name": "EVSE", "evse": {"id": 1}},
         "variable": {"name": "Power"}, "attributeValue": "7200"}]})
    values = {r["var_key"]: r["value"] for r in await model.variables("CP-1")}
    assert values["OCPPCommCtrlr.HeartbeatInterval"] == "120"
    assert values["EVSE@1.Power"] == "7200"


async def test_monitors_are_kept_as_the_station_answers() -> None:
    repo = MemoryRepository()
    model = DeviceModel(repo, clock=lambda: NOW)
    sent = [{"value": 30.0, "type": "UpperThreshold", "severity": 3, "transaction": False,
             "component": {"name": "TempSensor"}, "variable": {"name": "Temperature"}},
            {"value": 1.0, "type": "Delta", "severity": 3,
             "component": {"name": "X"}, "variable": {"name": "Y"}}]
    await model.monitors_set("CP-1", sent, {"setMonitoringResult": [
        {"id": 4, "status": "Accepted", "type": "UpperThreshold", "severity": 3,
         "component": {"name": "TempSensor"}, "variable": {"name": "Temperature"}},
        {"status": "UnknownVariable", "type": "Delta", "severity": 3,
         "component": {"name": "X"}, "variable": {"name": "Y"}}]})
    [monitor] = await model.monitors("CP-1")
    assert (monitor["monitor_id"], monitor["value"], monitor["var_key"]) == (
        4, "30.0", "TempSensor.Temperature")
    request_id = await model.request_report("CP-1", "monitoring")
    await model.notify_report("CP-1", {
        "requestId": request_id, "generatedAt": "2026-06-01T00:00:00Z", "seqNo": 0,
        "monitor": [{"component": {"name": "EVSE", "evse": {"id": 1}},
                     "variable": {"name": "Power"}, "variableMonitoring": [
                         {"id": 9, "transaction": True, "value": 7000, "type": "UpperThreshold",
                          "severity": 5}]}]}, "monitoring")
    assert [m["monitor_id"] for m in await model.monitors("CP-1")] == [4, 9]
    await model.monitors_cleared("CP-1", {"clearMonitoringResult": [
        {"id": 4, "status": "Accepted"}, {"id": 5, "status": "NotFound"}]})
    assert [m["monitor_id"] for m in await model.monitors("CP-1")] == [9]
