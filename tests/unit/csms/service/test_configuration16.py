"""A 1.6 station's configuration kept as its device model: GetConfiguration answers to rows,
what a hostile station answers, ChangeConfiguration checked before it is sent and written
back after, and the Plug & Charge announcement."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from csms.service.device_model import (
    OCPP16,
    DeviceModel,
    ModelRefusal,
    rows_from_configuration,
)
from support.memory import MemoryRepository

NOW = datetime(2026, 6, 1, tzinfo=UTC)

# A real charger's GetConfiguration answer (an ABL wallbox, from the log in evcc-io/evcc
# issue #7458), its first entries as logged: note "HeartBeatInterval" (1.6 keys are
# CiString: case does not matter) and a key with a newline in it.
ABL_FRAME = (
    '[3, "3966531343" ,{"configurationKey":[{"key":"ConnectionTimeOut","readonly":false,'
    '"value":"0"},{"key":"HeartBeatInterval","readonly":false,"value":"60"},{"key":'
    '"ClockAlignedDataInterval","readonly":false,"value":"0"},{"key":"MeterValuesAlignedData",'
    '"readonly":false,"value":""},{"key":"StopTxnAlignedData","readonly":false,"value":""},'
    '{"key":"MeterValueSampleInterval","readonly":false,"value":"60"},{"key":'
    '"MinimumStatusDuration","readonly":false,"value":"0"},{"key":"MeterValuesSampledData",'
    '"readonly":false,"value":"Energy.Active.Import.Register"},{"key":"StopTxnSampledData",'
    '"readonly":false,"value":"Energy.Active.Import.Register"},{"key":"LocalPreAuthorize",'
    '"readonly":false,"value":"false"},{"key":"LocalAuthorizeOffline","readonly":false,'
    '"value":"false"},{"key":"StopTransactionOnInvalidId","readonly":false,"value":"false"},'
    '{"key":"NumberOfConnectors","readonly":true,"value":"1"},{"key":"AuthorizationCacheEnabled'
    '\\n","readonly":false,"value":"true"},{"key":"AllowOfflineTxForUnknownId","readonly":'
    'false,"value":"false"},{"key":"WebSocketPingInterval","readonly":false,"value":"30"}]}]')
ABL: dict[str, Any] = {**json.loads(ABL_FRAME)[2], "unknownKey": ["ISO15118PnCEnabled"]}


def model(repo: MemoryRepository, limit: int = 5000) -> DeviceModel:
    return DeviceModel(repo, clock=lambda: NOW, max_variables=limit)


def test_keys_become_rows_of_component_ocpp16() -> None:
    rows, dropped = rows_from_configuration(ABL)
    assert dropped == {}
    by = {r["variable"]: r for r in rows}
    assert len(by) == 17
    assert by["NumberOfConnectors"]["mutability"] == "ReadOnly"
    assert by["HeartBeatInterval"] == {**by["HeartBeatInterval"], "var_key":
                                       "OCPP16.HeartBeatInterval", "component": OCPP16,
                                       "value": "60", "mutability": "ReadWrite",
                                       "data_type": None, "unknown": None}
    assert by["MeterValuesAlignedData"]["value"] == ""
    assert by["AuthorizationCacheEnabled\n"]["value"] == "true"  # kept as the station wrote it
    assert by["ISO15118PnCEnabled"]["unknown"] == 1
    assert by["ISO15118PnCEnabled"]["value"] is None


def test_what_a_hostile_station_answers_is_bounded_and_counted() -> None:
    answer = {"configurationKey": [
        {"key": "K" * 51, "readonly": False, "value": "1"},
        {"key": "Big", "readonly": False, "value": "v" * 501},
        {"key": "Fine", "readonly": False, "value": "v" * 500},
        {"key": "Fine", "readonly": True, "value": "second"},   # the first wins
        {"key": "fine", "readonly": True, "value": "third"},    # CiString: same key
        {"key": "", "readonly": False, "value": "x"},
        {"key": 7, "value": "x"},
        "not an object",
        {"key": "Nested", "value": {"a": 1}},
        {"key": "NoValue", "readonly": True},
    ], "unknownKey": ["Fine", "X" * 51, 3, "Missing"]}
    rows, dropped = rows_from_configuration(answer)
    by = {r["variable"]: r for r in rows}
    assert set(by) == {"Fine", "NoValue", "Missing"}
    assert by["Fine"]["value"] == "v" * 500 and by["Fine"]["mutability"] == "ReadWrite"
    assert by["NoValue"]["value"] is None and by["NoValue"]["mutability"] == "ReadOnly"
    assert dropped == {"long_key": 2, "long_value": 1, "duplicate": 3, "unreadable": 5}


def test_a_credential_is_never_stored() -> None:
    rows, _ = rows_from_configuration(
        {"configurationKey": [{"key": "AuthorizationKey", "readonly": False,
                               "value": "0123456789abcdef"}]},
        hidden=lambda key: key == "AuthorizationKey")
    assert rows[0]["value"] is None


async def test_a_full_answer_replaces_and_a_partial_one_updates() -> None:
    repo = MemoryRepository()
    m = model(repo)
    assert not await m.configuration_known("CP-1")
    assert await m.record_configuration("CP-1", ABL) == 17
    assert await m.configuration_known("CP-1")
    await m.record_configuration("CP-1", {"configurationKey": [
        {"key": "ConnectionTimeOut", "readonly": False, "value": "90"}]}, ["ConnectionTimeOut"])
    rows = {r["variable"]: r for r in await m.variables("CP-1", OCPP16)}
    assert len(rows) == 17 and rows["ConnectionTimeOut"]["value"] == "90"
    # every key again: what the station no longer reports is gone
    await m.record_configuration("CP-1", {"configurationKey": [
        {"key": "HeartbeatInterval", "readonly": False, "value": "60"}]})
    assert [r["variable"] for r in await m.variables("CP-1", OCPP16)] == ["HeartbeatInterval"]
    assert await m.variables("CP-2") == []


async def test_thousands_of_keys_stop_at_the_row_quota_and_are_noted() -> None:
    repo = MemoryRepository()
    m = model(repo, limit=100)
    answer = {"configurationKey": [{"key": f"Key{i}", "readonly": False, "value": str(i)}
                                   for i in range(3000)]}
    assert await m.record_configuration("CP-1", answer) == 3000
    assert len(await m.variables("CP-1")) == 100
    notes = [e["payload"] for e in repo.state.station_events]
    assert {"type": "DeviceModelFull", "limit": 100, "dropped": 2900} in notes
    # a hostile answer's dropped entries are a security event
    await m.record_configuration("CP-1", {"configurationKey": [{"key": "K" * 60}]}, ["x"])
    assert {"type": "ConfigurationNotStored", "long_key": 1} in [
        e["payload"] for e in repo.state.station_events]


async def test_change_configuration_is_checked_against_the_stored_keys() -> None:
    repo = MemoryRepository()
    m = model(repo)
    # nothing stored: sent, with a warning
    warning = await m.check_change("CP-1", "HeartbeatInterval", "60")
    assert warning is not None and "no stored configuration" in warning
    await m.record_configuration("CP-1", ABL)
    assert await m.check_change("CP-1", "HeartbeatInterval", "60") is None
    assert await m.check_change("CP-1", "heartbeatinterval", "60") is None  # CiString
    with pytest.raises(ModelRefusal, match="NumberOfConnectors is ReadOnly on CP-1"):
        await m.check_change("CP-1", "NumberOfConnectors", "2")
    warning = await m.check_change("CP-1", "VendorSpecificKey", "1")
    assert warning is not None and "did not report 'VendorSpecificKey'" in warning
    warning = await m.check_change("CP-1", "ISO15118PnCEnabled", "true")  # reported unknown
    assert warning is not None
    with pytest.raises(ModelRefusal, match="at most 50"):
        await m.check_change("CP-1", "K" * 51, "1")
    with pytest.raises(ModelRefusal, match="at most 500"):
        await m.check_change("CP-1", "HeartbeatInterval", "9" * 501)


async def test_an_accepted_change_is_written_back() -> None:
    repo = MemoryRepository()
    m = model(repo)
    await m.record_configuration("CP-1", ABL)
    await m.configuration_changed("CP-1", "HeartbeatInterval", "90")  # CiString
    await m.configuration_changed("CP-1", "ISO15118PnCEnabled", "true")  # it took it
    await m.configuration_changed("CP-1", "AuthorizationKey", None)  # a credential
    rows = {r["variable"]: r for r in await m.variables("CP-1", OCPP16)}
    assert rows["HeartBeatInterval"]["value"] == "90"
    assert rows["ISO15118PnCEnabled"]["value"] == "true"
    assert rows["AuthorizationKey"]["value"] is None


async def test_plug_and_charge_is_announced_by_the_key_or_set_by_the_operator() -> None:
    repo = MemoryRepository()
    m = model(repo)
    assert not await m.plug_and_charge("CP-1")
    await m.record_configuration("CP-1", ABL)  # ISO15118PnCEnabled unknown
    assert not await m.plug_and_charge("CP-1")
    await m.record_configuration("CP-1", {"configurationKey": [
        {"key": "ISO15118PnCEnabled", "readonly": False, "value": "false"}]})
    assert await m.plug_and_charge("CP-1")  # §2.1: present means supported

    async def option(tx: Any) -> None:
        await tx.set_station_option("CP-1", "pnc", "off")

    await repo.unit(option)
    assert not await m.plug_and_charge("CP-1")
