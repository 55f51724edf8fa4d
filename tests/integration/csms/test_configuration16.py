"""A 1.6 station's configuration kept as its device model, over real sockets: the
GetConfiguration after a boot (and its off switch), the operator's get-config and
set-config checked and written back, the CLI, and what a hostile station answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from chargers_sim import Station
from csms.translate.commands import REDACTED
from support import RunningServer, station_events, until
from support.admin import api
from support.client import RawClient

from .test_admin import run_cli

FAST: dict[str, Any] = {"meter_interval": 60, "call_timeout": 5, "retry_interval": 0.1,
                        "backoff_base": 0.05, "backoff_cap": 0.2}
BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": "1.0"}


async def config(server: RunningServer, station_id: str) -> dict[str, dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.device_variables(station_id, "OCPP16"))

    return {r["variable"]: r for r in await server.repo.read(work)}


@pytest.fixture
async def reading_server(csms_server: RunningServer) -> RunningServer:
    """The central system as `csms serve` runs it: GetConfiguration after a 1.6 boot."""
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, boot_get_configuration=True)
    await csms_server.start()
    return csms_server


def gets(st: Station) -> int:
    return sum(1 for action, _ in st.received_calls if action == "GetConfiguration")


async def test_a_boot_brings_the_configuration_once_per_firmware(
        reading_server: RunningServer) -> None:
    server = reading_server
    await server.add_station("CP-C")
    st = Station(server.url, "CP-C", "1.6", **FAST)
    await st.start()
    try:
        rows = await until(lambda: config(server, "CP-C"), "the configuration")
        assert rows["HeartbeatInterval"]["mutability"] == "ReadWrite"
        assert rows["NumberOfConnectors"] == {**rows["NumberOfConnectors"], "value": "1",
                                              "mutability": "ReadOnly",
                                              "var_key": "OCPP16.NumberOfConnectors"}
        assert gets(st) == 1
        # reconnect, same firmware: the stored configuration stands
        await st.drop_connection()
        await until(lambda: _true(st.connections == 2 and st.online), "back online")
        await asyncio.sleep(0.3)
        assert gets(st) == 1
        # another firmware: read again
        st.firmware_version = "sim-2.0"
        st.config["MeterValueSampleInterval"] = "77"
        await st.drop_connection()
        await until(lambda: _true(gets(st) == 2), "a second GetConfiguration")
        rows = await until(lambda: _when(config(server, "CP-C"),
                                         lambda r: r["MeterValueSampleInterval"]["value"] == "77"),
                           "the new configuration")
        # csms stations variables shows it, as a table and as JSON
        code, out, err = await run_cli(server, "stations", "variables", "CP-C")
        assert code == 0, err
        assert "OCPP16.NumberOfConnectors" in out and "ReadOnly" in out
        code, out, err = await run_cli(server, "stations", "variables", "CP-C", "--json")
        assert {r["var_key"] for r in json.loads(out)} >= {"OCPP16.HeartbeatInterval"}
    finally:
        await st.close()


async def test_the_off_switch(csms_server: RunningServer) -> None:
    # the fixture's central system has boot_get_configuration off
    await csms_server.add_station("CP-OFF")
    st = Station(csms_server.url, "CP-OFF", "1.6", **FAST)
    await st.start()
    try:
        await asyncio.sleep(0.3)
        assert gets(st) == 0 and await config(csms_server, "CP-OFF") == {}
        # the operator's get-config fills it
        status, body = await api(csms_server, "POST", "/stations/CP-OFF/commands/get-config",
                                 {})
        assert status == 200, body
        assert "HeartbeatInterval" in await config(csms_server, "CP-OFF")
    finally:
        await st.close()


async def test_set_config_is_checked_and_written_back(csms_server: RunningServer) -> None:
    server = csms_server
    await server.add_station("CP-S")
    st = Station(server.url, "CP-S", "1.6", **FAST)
    await st.start()
    try:
        path = "/stations/CP-S/commands/"
        # nothing stored yet: sent, with a warning
        status, body = await api(server, "POST", path + "set-config",
                                 {"key": "HeartbeatInterval", "value": "120"})
        assert status == 200 and body["status"] == "Accepted"
        assert "no stored configuration" in body["warning"]
        status, body = await api(server, "POST", path + "get-config",
                                 {"keys": ["HeartbeatInterval", "NumberOfConnectors", "Nope"]})
        assert status == 200, body
        rows = await config(server, "CP-S")
        assert set(rows) == {"HeartbeatInterval", "NumberOfConnectors", "Nope"}
        assert rows["Nope"]["unknown"] == 1 and rows["HeartbeatInterval"]["value"] == "120"
        # a ReadOnly key: refused before anything is sent
        sent = len(st.received_calls)
        status, body = await api(server, "POST", path + "set-config",
                                 {"key": "NumberOfConnectors", "value": "4"})
        assert status == 400 and body["error"] == "NumberOfConnectors is ReadOnly on CP-S"
        assert len(st.received_calls) == sent
        # a key the station reported unknown: sent, warned, and its answer kept
        status, body = await api(server, "POST", path + "set-config",
                                 {"key": "Nope", "value": "1"})
        assert status == 200 and body["status"] == "NotSupported"
        assert "did not report 'Nope'" in body["warning"]
        # Accepted: the stored value follows
        status, body = await api(server, "POST", path + "set-config",
                                 {"key": "HeartbeatInterval", "value": "90"})
        assert status == 200 and body["status"] == "Accepted" and "warning" not in body
        assert (await config(server, "CP-S"))["HeartbeatInterval"]["value"] == "90"
        # the CLI: one line and exit code 2 for the refusal, the warning on stderr
        code, _, err = await run_cli(server, "remote", "set-config", "CP-S",
                                       "NumberOfConnectors", "4")
        assert code == 2 and "ReadOnly" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        code, _, err = await run_cli(server, "remote", "set-config", "CP-S", "Vendor", "x")
        assert code == 0 and "did not report 'Vendor'" in err
    finally:
        await st.close()


async def test_what_a_hostile_station_answers_to_get_configuration(
        csms_server: RunningServer) -> None:
    server = csms_server
    await server.stop()
    # room for a station that answers with thousands of keys in one frame
    server.settings = replace(server.settings, max_frame_bytes=1 << 20)
    await server.start()
    await server.add_station("CP-X")
    async with await RawClient.connect(server.url, "CP-X", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)

        async def get_config(answer: dict[str, Any]) -> tuple[int, Any]:
            command = asyncio.create_task(api(server, "POST",
                                              "/stations/CP-X/commands/get-config", {}))
            call = await c.calls.get()
            assert call[2] == "GetConfiguration"
            await c.answer(call[1], answer)
            return await command

        # duplicates (in any case) and an unknownKey that repeats a key: the first wins
        status, body = await get_config({"configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "60"},
            {"key": "HeartbeatInterval", "readonly": True, "value": "1"},
            {"key": "HEARTBEATINTERVAL", "readonly": True, "value": "2"},
            {"key": "AuthorizationKey", "readonly": False, "value": "0123456789abcdef"}],
            "unknownKey": ["HeartbeatInterval"]})
        assert status == 200, body
        # a credential the station returned anyway is not passed on (1.6 AuthorizationKey
        # is write-only), the other keys are, as the station sent them
        assert [(k["key"], k["value"]) for k in body["response"]["configurationKey"]] == [
            ("HeartbeatInterval", "60"), ("HeartbeatInterval", "1"), ("HEARTBEATINTERVAL", "2"),
            ("AuthorizationKey", REDACTED)]
        status, audit = await api(server, "GET", "/audit")
        assert "0123456789abcdef" not in json.dumps(audit)
        rows = await config(server, "CP-X")
        assert rows["HeartbeatInterval"]["value"] == "60"
        assert rows["HeartbeatInterval"]["mutability"] == "ReadWrite"
        assert rows["AuthorizationKey"]["value"] is None  # a credential is never stored
        # over-long values: not the 1.6 answer; nothing stored, nothing lost
        status, body = await get_config({"configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "9" * 501}]})
        assert status == 502 and "invalid response" in body["error"]
        assert (await config(server, "CP-X"))["HeartbeatInterval"]["value"] == "60"
        status, body = await get_config({"configurationKey": [
            {"key": "K" * 51, "readonly": False, "value": "1"}]})
        assert status == 502
        # thousands of keys: the station's row quota holds
        status, body = await get_config({"configurationKey": [
            {"key": f"VendorKey{i}", "readonly": False, "value": str(i)} for i in range(6000)]})
        assert status == 200
        assert len(await config(server, "CP-X")) == 5000
        # the connection lives
        assert "currentTime" in await c.result("Heartbeat", {})
    notes = await station_events(server, "CP-X", "security")
    assert {"type": "ConfigurationNotStored", "duplicate": 3} in notes
    quota = await station_events(server, "CP-X", "quota")
    assert {"type": "DeviceModelFull", "limit": 5000, "dropped": 1000} in quota


async def _true(value: bool) -> bool:
    return value


async def _when(rows: Awaitable[dict[str, Any]],
                check: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    value = await rows
    return value if value and check(value) else None
