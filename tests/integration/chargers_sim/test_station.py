"""Simulated stations against the real central system, both OCPP versions."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest

from chargers_sim import Fleet, Station
from support import RunningServer

VERSIONS = ["1.6", "2.0.1"]
FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}


async def station(server: RunningServer, version: str, sid: str = "SIM1",
                  **kw: Any) -> Station:
    st = Station(server.url, sid, version, seed=7, **{**FAST, **kw})
    await st.start()
    return st


@pytest.fixture
async def registered(csms_server: RunningServer) -> RunningServer:
    for sid in ("SIM1", "SIM2"):
        await csms_server.add_station(sid)
    await csms_server.add_tag("SIMTAG")
    return csms_server


@pytest.mark.parametrize("version", VERSIONS)
async def test_sessions_have_exact_energy(registered: RunningServer, version: str) -> None:
    st = await station(registered, version)
    await st.run_sessions(2, 0.3)
    await st.drain()
    sessions = await registered.sessions("SIM1")
    assert [s["energy_wh"] for s in sessions] == [c.energy_wh for c in st.completed]
    assert all(s["status"] == "completed" and s["flags"] == [] for s in sessions)
    assert all(c.energy_wh > 0 for c in st.completed)
    await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_offline_session_is_queued_and_delivered_exactly_once(
    registered: RunningServer, version: str
) -> None:
    st = await station(registered, version)
    await st.go_offline()
    await st.start_session(1, "SIMTAG")
    await asyncio.sleep(0.3)
    done = await st.stop_session(1)
    assert st.pending_messages >= 3  # start, meter values, stop all waiting
    assert await registered.sessions("SIM1") == []
    st.go_online()
    await st.drain()
    [s] = await registered.sessions("SIM1")
    assert (s["status"], s["energy_wh"]) == ("completed", done.energy_wh)
    if version == "2.0.1":
        assert "offline_events" in s["flags"] and "seq_gap" not in s["flags"]
    await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_connection_dropped_mid_session(registered: RunningServer, version: str) -> None:
    st = await station(registered, version)
    await st.start_session(1, "SIMTAG")
    await asyncio.sleep(0.15)
    await st.drop_connection()
    await asyncio.sleep(0.2)
    await st.start()  # reconnected and booted again by itself
    done = await st.stop_session(1)
    await st.drain()
    [s] = await registered.sessions("SIM1")
    assert s["energy_wh"] == done.energy_wh
    assert st.connections >= 2
    await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_server_down_then_back(registered: RunningServer, version: str) -> None:
    st = await station(registered, version, backoff_cap=0.5)
    await st.start_session(1, "SIMTAG")
    await asyncio.sleep(0.1)
    await registered.stop()
    await asyncio.sleep(0.3)
    done = await st.stop_session(1)
    await registered.start()
    await st.drain(30)
    [s] = await registered.sessions("SIM1")
    assert (s["status"], s["energy_wh"]) == ("completed", done.energy_wh)
    await st.close()


async def test_boot_pending_then_accepted(registered: RunningServer) -> None:
    await registered.set_boot("SIM1", "pending")
    registered.central.service.boot_retry_interval = 1
    st = Station(registered.url, "SIM1", "1.6", **FAST)
    starting = asyncio.create_task(st.start())
    await asyncio.sleep(0.3)
    assert st.boot_status == "Pending" and not st.online
    await registered.set_boot("SIM1", "accepted")
    await starting
    assert st.boot_status == "Accepted"
    assert st.heartbeat_interval == 60  # the interval of the Accepted answer
    await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_remote_start_and_stop(registered: RunningServer, version: str) -> None:
    st = await station(registered, version)
    if version == "1.6":
        r = await registered.call("SIM1", "RemoteStartTransaction",
                                  {"idTag": "SIMTAG", "connectorId": 1})
    else:
        r = await registered.call("SIM1", "RequestStartTransaction", {
            "idToken": {"idToken": "SIMTAG", "type": "Central"}, "remoteStartId": 5,
            "evseId": 1})
    assert r["status"] == "Accepted"
    await asyncio.sleep(0.2)
    await st.drain()
    [s] = await registered.sessions("SIM1")
    assert s["status"] == "active"
    txid = s["transaction_id"]
    if version == "1.6":
        r = await registered.call("SIM1", "RemoteStopTransaction", {"transactionId": int(txid)})
    else:
        r = await registered.call("SIM1", "RequestStopTransaction", {"transactionId": txid})
    assert r["status"] == "Accepted"
    await asyncio.sleep(0.2)
    await st.drain()
    [s] = await registered.sessions("SIM1")
    assert (s["status"], s["stop_reason"]) == ("completed", "Remote")
    assert s["energy_wh"] == st.completed[0].energy_wh
    await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_charging_profile_limits_power(registered: RunningServer, version: str) -> None:
    st = await station(registered, version)
    if version == "1.6":
        profile = {"connectorId": 1, "csChargingProfiles": {
            "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": {
                "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0,
                                                                     "limit": 2000}]}}}
    else:
        profile = {"evseId": 1, "chargingProfile": {
            "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": [{
                "id": 1, "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 2000}]}]}}
    assert (await registered.call("SIM1", "SetChargingProfile", profile))["status"] == "Accepted"
    await st.start_session(1, "SIMTAG")
    await asyncio.sleep(0.5)
    assert 0 < st.meters[1].last_power_w <= 2000
    await registered.call("SIM1", "ClearChargingProfile", {})
    await asyncio.sleep(0.3)
    assert st.meters[1].last_power_w > 2000
    await st.stop_session(1)
    await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_password_change_then_reconnect(csms_server: RunningServer, version: str) -> None:
    old, new = "first-password-123456", "second-password-98765"
    await csms_server.add_station("SIM1", password=old)
    st = Station(csms_server.url, "SIM1", version, password=old, **FAST)
    await st.start()
    if version == "1.6":
        r = await csms_server.call("SIM1", "ChangeConfiguration",
                                   {"key": "AuthorizationKey", "value": new})
        assert r["status"] == "Accepted"
    else:
        r = await csms_server.call("SIM1", "SetVariables", {"setVariableData": [{
            "component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"},
            "attributeValue": new}]})
        assert r["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert st.password == new
    await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_configuration_and_other_calls(registered: RunningServer, version: str) -> None:
    st = await station(registered, version)
    if version == "1.6":
        r = await registered.call("SIM1", "ChangeConfiguration",
                                  {"key": "HeartbeatInterval", "value": "42"})
        assert r["status"] == "Accepted"
        r = await registered.call("SIM1", "GetConfiguration", {"key": ["HeartbeatInterval",
                                                                       "AuthorizationKey"]})
        assert r["configurationKey"][0]["value"] == "42"
        assert r["unknownKey"] == ["AuthorizationKey"]  # write-only
        calls: list[tuple[str, dict[str, Any]]] = [
            ("ChangeAvailability", {"connectorId": 0, "type": "Operative"}),
            ("TriggerMessage", {"requestedMessage": "Heartbeat"}),
            ("UnlockConnector", {"connectorId": 1}),
            ("SendLocalList", {"listVersion": 3, "updateType": "Full",
                               "localAuthorizationList": [{"idTag": "A",
                                                           "idTagInfo": {"status": "Accepted"}}]}),
        ]
    else:
        r = await registered.call("SIM1", "SetVariables", {"setVariableData": [{
            "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
            "attributeValue": "42"}]})
        assert r["setVariableResult"][0]["attributeStatus"] == "Accepted"
        r = await registered.call("SIM1", "GetVariables", {"getVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}]})
        assert r["getVariableResult"][0]["attributeValue"] == "42"
        assert r["getVariableResult"][1]["attributeStatus"] == "Rejected"
        calls = [
            ("ChangeAvailability", {"operationalStatus": "Operative"}),
            ("TriggerMessage", {"requestedMessage": "Heartbeat"}),
            ("UnlockConnector", {"evseId": 1, "connectorId": 1}),
            ("SendLocalList", {"versionNumber": 3, "updateType": "Full"}),
        ]
    assert st.heartbeat_interval == 42
    for action, payload in calls:
        answer = await registered.call("SIM1", action, payload)
        assert answer["status"] in ("Accepted", "Unlocked"), (action, answer)
    r = await registered.call("SIM1", "GetLocalListVersion", {})
    assert r == ({"listVersion": 3} if version == "1.6" else {"versionNumber": 3})
    connections = st.connections
    r = await registered.call("SIM1", "Reset", {"type": "Soft" if version == "1.6" else "OnIdle"})
    assert r["status"] == "Accepted"
    await asyncio.sleep(0.3)
    await st.start()  # rebooted: a new connection and a new BootNotification
    assert st.connections == connections + 1
    await st.close()


async def test_fault_hooks(registered: RunningServer) -> None:
    st = await station(registered, "1.6")
    answer = await st.send_raw("this is not json")
    assert answer is not None and json.loads(answer)[:3] == [4, "-1", "FormationViolation"]
    first, second = await st.send_duplicate("Heartbeat", {})
    assert first == second and first[0] == 3
    await st.start_session(1, "SIMTAG")
    await st.drain()
    txid = await st.resend_last_start()
    assert str(txid) == st.session_transaction_id(1)
    st.reply_delay = 1.0
    from csms.server import CallTimeout

    with pytest.raises(CallTimeout):
        await registered.central.call("SIM1", "UnlockConnector", {"connectorId": 1}, 0.3)
    st.reply_delay = 0
    await st.stop_session(1)
    await st.drain()
    assert len(await registered.sessions("SIM1")) == 1
    await st.close()


async def test_fleet_mix_and_signed(registered: RunningServer) -> None:
    for i in range(1, 5):
        await registered.add_station(f"F{i:05d}")
    fleet = Fleet(registered.url, 4, mix=True, prefix="F", seed=3, signed=True, **FAST)
    await fleet.start()
    summary = await fleet.run_sessions(1, 0.2)
    await fleet.close()
    assert summary.sessions == 4 and summary.errors == 0
    sessions = await registered.sessions()
    assert sorted(s["ocpp_version"] for s in sessions) == ["1.6", "1.6", "2.0.1", "2.0.1"]
    for s in sessions:
        assert s["energy_wh"] == summary.per_station[s["station_id"]][0]


async def test_cli_runs_sessions_and_reports(registered: RunningServer) -> None:
    for i in range(1, 4):
        await registered.add_station(f"CLI{i:05d}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chargers_sim", "--url", registered.url, "--count", "3",
        "--sessions", "2", "--session-seconds", "0.2", "--meter-interval", "0.05",
        "--id-prefix", "CLI", "--mix", "--json", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    report = json.loads(out)
    assert (report["stations"], report["sessions"], report["errors"]) == (3, 6, 0)
    sessions = await registered.sessions()
    assert len(sessions) == 6
    assert sum(s["energy_wh"] for s in sessions) == report["energy_wh"]


def test_cli_bad_arguments() -> None:
    for args in (["--count", "x"], ["--url", "ws://x", "--ocpp", "1.5"], ["load"]):
        r = subprocess.run([sys.executable, "-m", "chargers_sim", *args], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:")


async def test_idle_mode_stays_online_until_interrupted(registered: RunningServer) -> None:
    import signal

    await registered.add_station("IDLE00001")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chargers_sim", "--url", registered.url, "--count", "1",
        "--sessions", "0", "--id-prefix", "IDLE", "--json", stdout=asyncio.subprocess.PIPE)
    await registered.wait_connected("IDLE00001", timeout=15)
    # online and idle: it answers the central system's calls
    assert (await registered.call("IDLE00001", "UnlockConnector",
                                  {"connectorId": 1}))["status"] == "Unlocked"
    proc.send_signal(signal.SIGINT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert json.loads(out)["sessions"] == 0


async def test_refused_transaction_message_is_retried_with_the_same_payload(
    registered: RunningServer,
) -> None:
    import sqlite3

    st = await station(registered, "1.6", message_attempts=50, retry_interval=0.1)
    other = sqlite3.connect(registered.settings.db, isolation_level=None, timeout=0)
    registered.repo._write.execute("PRAGMA busy_timeout = 50")  # fail fast while locked
    other.execute("BEGIN EXCLUSIVE")
    await st.start_session(1, "SIMTAG")
    await asyncio.sleep(0.6)  # StartTransaction refused (InternalError) and retried
    assert st.errors >= 1 and st.pending_messages >= 1
    other.execute("COMMIT")
    other.close()
    registered.repo._write.execute("PRAGMA busy_timeout = 10000")
    done = await st.stop_session(1)
    await st.drain()
    [s] = await registered.sessions("SIM1")
    assert (s["status"], s["energy_wh"]) == ("completed", done.energy_wh)
    await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_every_operator_command_against_a_simulated_station(
    registered: RunningServer, version: str
) -> None:
    """The admin API's commands, in the domain's words, reach a simulated station of either
    version as that version's OCPP and come back with the station's answer."""
    from support.admin import api

    st = await station(registered, version)
    config = ("get-config", {"keys": ["HeartbeatInterval"]}) if version == "1.6" else (
        "get-variables", {"variables": ["OCPPCommCtrlr.HeartbeatInterval"]})
    set_config = ("set-config", {"key": "HeartbeatInterval", "value": "77"}) if version == "1.6" \
        else ("set-variables", {"values": {"OCPPCommCtrlr.HeartbeatInterval": "77"}})
    commands: list[tuple[str, dict[str, Any], set[str]]] = [
        ("start", {"tag": "SIMTAG", "connector": 1}, {"Accepted"}),
        ("stop", {}, {"Accepted"}),
        ("unlock", {"connector": 1}, {"Unlocked"}),
        ("availability", {"state": "inoperative"}, {"Accepted", "Scheduled"}),
        ("availability", {"state": "operative"}, {"Accepted", "Scheduled"}),
        ("trigger", {"message": "Heartbeat"}, {"Accepted"}),
        (config[0], config[1], {"Accepted"}),
        (set_config[0], set_config[1], {"Accepted"}),
        ("set-profile", {"limit": 3000, "unit": "W", "connector": 1}, {"Accepted"}),
        ("clear-profile", {}, {"Accepted"}),
        ("data-transfer", {"vendor": "acme", "data": "x"}, {"UnknownVendorId"}),
        ("send-local-list", {}, {"Accepted"}),
        ("local-list-version", {}, {"1"}),
        ("reset", {"hard": False}, {"Accepted"}),
    ]
    for command, args, expected in commands:
        if command == "stop":
            await asyncio.sleep(0.3)
            await st.drain()
        status, body = await api(registered, "POST", f"/stations/SIM1/commands/{command}", args)
        assert status == 200, (command, body)
        assert body["status"] in expected, (command, body)
    assert st.heartbeat_interval == 77
    assert st.local_list == {"SIMTAG": "Accepted"}
    await asyncio.sleep(0.3)
    await st.drain()
    [s] = await registered.sessions("SIM1")
    assert (s["status"], s["stop_reason"]) == ("completed", "Remote")
    await st.close()
