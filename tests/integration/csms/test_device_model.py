"""The 2.0.1 device model against a simulated station over real sockets: a base report in
parts stored and shown, set-variables checked against it before anything is sent,
monitors set, reported and cleared, the NotifyEvent a monitor raises; a report nobody
asked for."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from chargers_sim import Station
from chargers_sim.device import definitions
from csms.service.device_model import DeviceModel
from support import RunningServer, csms_cli, station_events, until
from support.admin import api
from support.client import RawClient

FAST: dict[str, Any] = {"meter_interval": 60, "call_timeout": 5, "retry_interval": 0.1}


async def command(server: RunningServer, station_id: str, name: str,
                  body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return await api(server, "POST", f"/stations/{station_id}/commands/{name}",
                     {**body, "timeout": 5})


async def variables(server: RunningServer, station_id: str) -> dict[str, dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.device_variables(station_id))

    return {r["var_key"]: r for r in await server.repo.read(work)}


async def monitors(server: RunningServer, station_id: str) -> list[dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.list_monitors(station_id))

    return await server.repo.read(work)


def remote(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    assert server.app is not None and server.app.admin is not None
    return subprocess.run(
        [sys.executable, "-m", "csms", "remote", *args, "--admin-port",
         str(server.app.admin.port), "--data-dir", server.settings.data_dir],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


async def test_a_station_device_model_from_report_to_monitor(csms_server: RunningServer) -> None:
    await csms_server.add_station("SIM1")
    st = Station(csms_server.url, "SIM1", "2.0.1", **FAST)
    await st.start()
    try:
        # before any report the model is unknown: nothing is refused locally
        status, _ = await command(csms_server, "SIM1", "get-variables",
                                  {"variables": ["OCPPCommCtrlr.HeartbeatInterval"]})
        assert status == 200
        status, answer = await command(csms_server, "SIM1", "get-base-report",
                                       {"report_base": "FullInventory"})
        assert status == 200 and answer["status"] == "Accepted", answer
        expected = len(definitions(1, st.power_w))

        async def complete() -> dict[str, dict[str, Any]] | None:
            rows = await variables(csms_server, "SIM1")
            return rows if len(rows) == expected else None

        rows = await until(complete, "the whole report")
        assert expected > 4  # it came in several parts (4 entries each)
        assert rows["SecurityCtrlr.SecurityProfile"]["mutability"] == "ReadOnly"
        assert rows["EVSE@1.Power"]["max_limit"] == str(st.power_w)
        assert rows["SecurityCtrlr.BasicAuthPassword"]["value"] is None  # write-only
        shown = await asyncio.to_thread(csms_cli, csms_server, "stations", "variables", "SIM1",
                                        "--component", "OCPPCommCtrlr", "--json")
        assert shown.returncode == 0, shown.stderr
        assert {r["variable"] for r in json.loads(shown.stdout)} == {
            "HeartbeatInterval", "MessageAttempts", "MessageAttemptInterval"}

        # refused here, with one line, before anything reaches the station
        sent_before = len(st.received_calls)
        refused = await asyncio.to_thread(remote, csms_server, "set-variables", "SIM1",
                                          "ChargingStation.Model=X2")
        assert refused.returncode == 2
        assert refused.stderr.strip() == "error: ChargingStation.Model is ReadOnly on SIM1"
        for body, why in (
                ({"OCPPCommCtrlr.HeartbeatInterval": "0"}, "at least 1"),
                ({"AuthCtrlr.AuthorizeRemoteStart": "maybe"}, "true or false"),
                ({"OCPPCommCtrlr.Nope": "1"}, "no variable"),
                ({"Nope.Nope": "1"}, "no component")):
            status, answer = await command(csms_server, "SIM1", "set-variables",
                                           {"values": body})
            assert status == 400 and why in answer["error"], answer
        assert len(st.received_calls) == sent_before

        # a monitor on the heartbeat interval; a change beyond its delta is an event
        status, answer = await command(csms_server, "SIM1", "set-monitoring", {"monitors": [
            {"variable": "OCPPCommCtrlr.HeartbeatInterval", "type": "Delta", "value": 10,
             "severity": 4}]})
        assert status == 200 and answer["status"] == "Accepted", answer
        [monitor] = await monitors(csms_server, "SIM1")
        assert (monitor["type"], monitor["value"]) == ("Delta", "10.0")
        status, answer = await command(csms_server, "SIM1", "set-variables",
                                       {"values": {"OCPPCommCtrlr.HeartbeatInterval": "200"}})
        assert status == 200 and answer["status"] == "Accepted"
        assert (await variables(csms_server, "SIM1"))[
            "OCPPCommCtrlr.HeartbeatInterval"]["value"] == "200"

        async def notified() -> list[dict[str, Any]]:
            return await station_events(csms_server, "SIM1", "notify_event")

        await until(notified, "the monitor's NotifyEvent")
        shown = await asyncio.to_thread(csms_cli, csms_server, "stations", "events", "SIM1",
                                        "--json")
        [data] = json.loads(shown.stdout)
        assert (data["actualValue"], data["variableMonitoringId"]) == (
            "200", monitor["monitor_id"])

        # the station's own account of its monitors, then cleared
        status, answer = await command(csms_server, "SIM1", "get-monitoring-report", {})
        assert status == 200 and answer["status"] == "Accepted"

        async def reported() -> bool:
            async def work(tx: Any) -> Any:
                return await tx.get_report_request("SIM1", 2)  # after the base report

            request = await csms_server.repo.read(work)
            return bool(request["kind"] == "monitoring" and request["completed_at"])

        await until(reported, "the monitoring report")
        [again] = await monitors(csms_server, "SIM1")
        assert (again["monitor_id"], again["in_transaction"]) == (monitor["monitor_id"], 0)
        status, answer = await command(csms_server, "SIM1", "clear-monitoring",
                                       {"ids": [monitor["monitor_id"]]})
        assert status == 200 and answer["status"] == "Accepted"
        assert await monitors(csms_server, "SIM1") == []
        status, answer = await command(csms_server, "SIM1", "set-monitoring-level",
                                       {"severity": 3})
        assert (status, answer["status"]) == (200, "Accepted")
    finally:
        await st.close()


async def test_reports_for_requests_never_made_are_not_stored(
        csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_station("CP16")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {"reason": "PowerUp", "chargingStation": {
            "vendorName": "V", "model": "M"}})
        answer = await c.result("NotifyReport", {
            "requestId": 99, "generatedAt": "2026-06-01T00:00:00Z", "seqNo": 0,
            "reportData": [{"component": {"name": "SecurityCtrlr"},
                            "variable": {"name": "SecurityProfile"},
                            "variableAttribute": [{"value": "0", "mutability": "ReadWrite"}]}]})
        assert answer == {}  # acknowledged (the message has no refusal), not believed
        assert await variables(csms_server, "CP1") == {}
        [event] = await station_events(csms_server, "CP1", "security")
        assert event == {"type": "UnsolicitedReport", "requestId": 99, "kind": "report"}
        monitor_report = await c.result("NotifyMonitoringReport", {
            "requestId": 99, "generatedAt": "2026-06-01T00:00:00Z", "seqNo": 0})
        assert monitor_report == {} and await monitors(csms_server, "CP1") == []
    async with await RawClient.connect(csms_server.url, "CP16", ["ocpp1.6"]) as c:
        await csms_server.wait_connected("CP16")
        status, answer = await command(csms_server, "CP16", "get-base-report", {})
        assert status == 400 and "2.0.1" in answer["error"]
        status, answer = await command(csms_server, "CP16", "set-monitoring", {"monitors": [
            {"variable": "A.B", "type": "Delta", "value": 1}]})
        assert status == 400 and "2.0.1" in answer["error"]


async def test_a_monitoring_report_stores_a_bounded_number_of_monitors(
        csms_server: RunningServer) -> None:
    """A 2.0.1 station answers a monitoring report asked for with parts (tbc) naming ever
    new monitor ids: each was a row, without end but the hourly quota. A station's
    monitors are bounded like its variables; what is beyond is dropped and noted."""
    csms_server.central.service.quota = None  # the bound, not the hourly quota
    await csms_server.add_station("CP1")

    async def asked(tx: Any) -> int:
        return int(await tx.add_report_request("CP1", "monitoring", datetime.now(UTC)))

    request_id = await csms_server.repo.unit(asked)
    limit = DeviceModel(csms_server.repo).max_variables
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {"reason": "PowerUp", "chargingStation": {
            "vendorName": "V", "model": "M"}})
        for part in range(limit // 100 + 5):
            assert await c.result("NotifyMonitoringReport", {
                "requestId": request_id, "generatedAt": "2026-06-01T00:00:00Z",
                "seqNo": part, "tbc": True, "monitor": [{
                    "component": {"name": "EVSE"}, "variable": {"name": "Power"},
                    "variableMonitoring": [{"id": part * 100 + n, "transaction": False,
                                            "value": 1, "type": "Delta", "severity": 5}
                                           for n in range(100)]}]}) == {}
    assert len(await monitors(csms_server, "CP1")) == limit
    notes = await station_events(csms_server, "CP1", "quota")
    assert notes and all(n["type"] == "MonitorsFull" for n in notes)
    assert sum(n["dropped"] for n in notes) == 500
