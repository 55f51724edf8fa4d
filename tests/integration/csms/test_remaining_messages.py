"""The remaining OCPP messages over real sockets: the authorization cache, composite
schedules, charging profile reports, transaction status, customer information, network
profiles, charging limits and the EV's needs, and every message TriggerMessage allows;
against simulated stations and raw frames."""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import resources
from typing import Any

import pytest

from chargers_sim import Station
from csms.storage.sql import json_value
from support import RunningServer, csms_cli, station_events, until
from support.admin import api
from support.client import RawClient

FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}


async def sim(server: RunningServer, version: str, sid: str = "SIM1",
              **kw: Any) -> Station:
    await server.add_station(sid)
    await server.add_tag("SIMTAG")
    st = Station(server.url, sid, version, seed=7, **{**FAST, **kw})
    await st.start()
    return st


async def command(server: RunningServer, name: str, args: dict[str, Any] | None = None,
                  sid: str = "SIM1") -> dict[str, Any]:
    status, body = await api(server, "POST", f"/stations/{sid}/commands/{name}", args or {})
    assert status == 200, (name, body)
    return dict(body)


async def reports(server: RunningServer, kind: str, sid: str = "SIM1",
                  at_least: int = 1) -> dict[str, Any]:
    # The command runs in a thread: run on this loop, it would stop the server and the
    # station (both here) for as long as it takes, and the report would not come.
    async with asyncio.timeout(30):
        while True:
            out = await asyncio.to_thread(csms_cli, server, "stations", "reports", sid,
                                          "--kind", kind, "--json")
            assert out.returncode == 0, out.stderr
            data: dict[str, Any] = json.loads(out.stdout)
            if len(data[kind]) >= at_least:
                return data
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_clear_cache_empties_the_station_cache(
    csms_server: RunningServer, version: str,
) -> None:
    st = await sim(csms_server, version)
    assert await st.authorize("SIMTAG") == "Accepted"
    assert "SIMTAG" in st.auth_cache
    body = await command(csms_server, "clear-cache")
    assert (body["status"], body["action"]) == ("Accepted", "ClearCache")
    assert st.auth_cache == {}
    await st.close()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_composite_schedule_from_the_installed_profiles(
    csms_server: RunningServer, version: str,
) -> None:
    st = await sim(csms_server, version)
    body = await command(csms_server, "get-composite-schedule", {"connector": 1})
    assert body["status"] == "Rejected"  # no profile installed: nothing to compose
    await command(csms_server, "set-profile", {"limit": 11000, "connector": 0,
                                               "schedule": [[0, 11000], [1800, 7400]]})
    await command(csms_server, "set-profile", {"limit": 16, "unit": "A", "connector": 1,
                                               "profile_id": 2})
    body = await command(csms_server, "get-composite-schedule",
                         {"connector": 1, "duration": 3600, "unit": "W"})
    assert (body["status"], body["action"]) == ("Accepted", "GetCompositeSchedule")
    response = body["response"]
    schedule = response.get("chargingSchedule") or response["schedule"]
    # both are TxDefaultProfile: the connector's (stack level 0, id 2) and the station's
    # (id 1) compose to the lower limit at each moment; 16 A x 230 V x 3 = 11040 W
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 11000.0},
                                                  {"startPeriod": 1800, "limit": 7400.0}]
    await st.close()


async def test_charging_profiles_reported_and_stored(csms_server: RunningServer) -> None:
    st = await sim(csms_server, "2.0.1")
    assert (await command(csms_server, "get-charging-profiles"))["status"] == "NoProfiles"
    await command(csms_server, "set-profile", {"limit": 7400, "connector": 1,
                                               "profile_id": 5})
    body = await command(csms_server, "get-charging-profiles", {"connector": 1})
    assert (body["status"], body["action"]) == ("Accepted", "GetChargingProfiles")
    data = await reports(csms_server, "charging_profiles")
    [report] = data["charging_profiles"]
    assert report["payload"]["chargingProfile"][0]["id"] == 5
    assert report["payload"]["evseId"] == 1
    await st.close()


async def test_transaction_status(csms_server: RunningServer) -> None:
    st = await sim(csms_server, "2.0.1", meter_interval=60)  # nothing queued meanwhile
    await st.start_session(1, "SIMTAG")
    await asyncio.sleep(0.2)
    await st.drain()
    [s] = await csms_server.sessions("SIM1")
    body = await command(csms_server, "get-transaction-status",
                         {"transaction_id": s["transaction_id"]})
    assert body["action"] == "GetTransactionStatus"
    assert body["response"] == {"messagesInQueue": False, "ongoingIndicator": True}
    body = await command(csms_server, "get-transaction-status", {"transaction_id": "GONE"})
    assert body["response"]["ongoingIndicator"] is False
    await st.close()


async def test_customer_information_assembled_from_parts(csms_server: RunningServer) -> None:
    st = await sim(csms_server, "2.0.1")
    assert await st.authorize("SIMTAG") == "Accepted"
    # a customer the station knows much about: its report spans several parts
    st.local_list["SIMTAG"] = "Accepted " + "x" * 1200
    body = await command(csms_server, "customer-information", {"tag": "SIMTAG"})
    assert (body["status"], body["action"]) == ("Accepted", "CustomerInformation")
    data = await reports(csms_server, "customer_information")
    async with asyncio.timeout(30):
        while not data["customer_information"][0]["complete"]:
            data = await reports(csms_server, "customer_information")
    [report] = data["customer_information"]
    assert report["parts"] == 3
    assert report["data"].startswith("customer SIMTAG\nauthorization cache:")
    assert "x" * 1200 in report["data"]
    await command(csms_server, "customer-information", {"tag": "SIMTAG", "clear": True,
                                                        "report": False})
    async with asyncio.timeout(5):
        while "SIMTAG" in st.auth_cache:
            await asyncio.sleep(0.05)
    assert "SIMTAG" not in st.local_list
    await st.close()


async def test_customer_information_flood_is_held_to_the_quota(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("EV1")
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        for n in range(600):  # 600 x ~600 bytes: beyond the 256 kB notification quota
            assert await c.result("NotifyCustomerInformation", {
                "data": "y" * 512, "tbc": True, "seqNo": n, "requestId": 1,
                "generatedAt": "2026-03-01T10:00:00Z"}) == {}
    stored = await station_events(csms_server, "EV1", "customer_information")
    assert 300 < stored[0]["seqNo"] < 599  # the newest stored part: the rest were dropped
    [note] = await station_events(csms_server, "EV1", "quota")
    assert note["kind"] == "notification"


async def test_network_profile_secrets_never_logged_nor_audited(
    csms_server: RunningServer, caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "apn-Secret-7731"
    caplog.set_level(logging.DEBUG)
    st = await sim(csms_server, "2.0.1")
    body = await command(csms_server, "set-network-profile", {
        "url": "wss://csms.example.org/ocpp", "slot": 2, "apn": "internet.example",
        "apn_user": "sim", "apn_password": secret})
    assert (body["status"], body["action"]) == ("Accepted", "SetNetworkProfile")
    assert st.network_profiles[2]["apn"]["apnPassword"] == secret  # the station got it
    assert st.network_profiles[2]["securityProfile"] == 2
    status, audit = await api(csms_server, "GET", "/audit")
    assert status == 200
    assert audit[0]["action"] == "set-network-profile"
    assert secret not in json.dumps(audit)
    assert "<redacted>" in json.dumps(audit[0]["request"])
    central = [r.getMessage() for r in caplog.records
               if r.name.startswith(("csms", "websockets.server"))]
    assert any("SetNetworkProfile" in m for m in central)  # logged, without the secret
    assert not [m for m in central if secret in m]
    await st.close()


async def test_2_0_1_only_commands_are_refused_for_1_6(csms_server: RunningServer) -> None:
    st = await sim(csms_server, "1.6")
    for name, args in (("get-charging-profiles", {}), ("get-transaction-status", {}),
                       ("customer-information", {"tag": "SIMTAG"}),
                       ("set-network-profile", {"url": "ws://x"})):
        status, body = await api(csms_server, "POST", f"/stations/SIM1/commands/{name}", args)
        assert status == 400 and "2.0.1 only" in body["error"], (name, body)
    await st.close()


LIMIT = {"chargingLimitSource": "EMS", "isGridCritical": True}
NEEDS = {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase",
                                        "acChargingParameters": {
                                            "energyAmount": 30000, "evMinCurrent": 6,
                                            "evMaxCurrent": 32, "evMaxVoltage": 400}}}
SCHEDULE = {"timeBase": "2026-03-01T10:00:00Z", "evseId": 1, "chargingSchedule": {
    "id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [
        {"startPeriod": 0, "limit": 11000}]}}


@pytest.mark.parametrize(("action", "payload", "kind", "answer"), [
    ("NotifyChargingLimit", {"chargingLimit": LIMIT}, "charging_limit", {}),
    ("ClearedChargingLimit", {"chargingLimitSource": "EMS", "evseId": 1},
     "charging_limit_cleared", {}),
    ("NotifyEVChargingNeeds", NEEDS, "ev_charging_needs", {"status": "Accepted"}),
    ("NotifyEVChargingSchedule", SCHEDULE, "ev_charging_schedule", {"status": "Accepted"}),
    ("NotifyDisplayMessages", {"requestId": 3, "messageInfo": [{
        "id": 1, "priority": "NormalCycle",
        "message": {"format": "UTF8", "content": "hi"}}]}, "display_messages", {}),
    ("ReportChargingProfiles", {"requestId": 4, "chargingLimitSource": "CSO", "evseId": 1,
                                "chargingProfile": [{
                                    "id": 1, "stackLevel": 0,
                                    "chargingProfilePurpose": "TxDefaultProfile",
                                    "chargingProfileKind": "Relative",
                                    "chargingSchedule": [SCHEDULE["chargingSchedule"]]}]},
     "charging_profiles", {}),
])
async def test_station_reports_stored_and_shown(
    csms_server: RunningServer, action: str, payload: dict[str, Any], kind: str,
    answer: dict[str, Any],
) -> None:
    await csms_server.add_station("EV1")
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        assert await c.result(action, payload) == answer
        # a wrong type is a CALLERROR and the connection lives on
        bad = await c.call(action, {**payload, "evseId": "one"} if "evseId" in payload
                           else {**payload, "requestId": "x"})
        assert bad[0] == 4 and bad[2] in ("TypeConstraintViolation", "FormatViolation")
        assert (await c.result("Heartbeat", {}))["currentTime"]
    data = await reports(csms_server, kind, "EV1")
    [stored] = [r["payload"] for r in data[kind]]
    assert {k: stored[k] for k in payload} == payload  # with the schema's defaults added


@pytest.mark.parametrize(("version", "action", "payload"), [
    ("ocpp1.6", "DiagnosticsStatusNotification", {"status": "Uploaded"}),
    ("ocpp1.6", "SignedFirmwareStatusNotification", {"status": "Installed", "requestId": 1}),
    ("ocpp2.0.1", "NotifyEvent", {
        "generatedAt": "2026-03-01T10:00:00Z", "seqNo": 0, "eventData": [{
            "eventId": 1, "timestamp": "2026-03-01T10:00:00Z", "trigger": "Delta",
            "actualValue": "Faulted", "eventNotificationType": "HardWiredNotification",
            "component": {"name": "Connector"}, "variable": {"name": "AvailabilityState"}}]}),
    ("ocpp2.0.1", "PublishFirmwareStatusNotification", {"status": "Published",
                                                        "location": ["http://x/fw"],
                                                        "requestId": 2}),
])
async def test_status_notifications_are_answered_and_kept(
    csms_server: RunningServer, version: str, action: str, payload: dict[str, Any],
) -> None:
    await csms_server.add_station("ST1")
    async with await RawClient.connect(csms_server.url, "ST1", [version]) as c:
        assert await c.result(action, payload) == {}
        bad = await c.call(action, {})  # required fields missing: a CALLERROR...
        assert bad[0] == 4
        assert (await c.result("Heartbeat", {}))["currentTime"]  # ...and it lives on
    out = await asyncio.to_thread(csms_cli, csms_server, "stations", "show", "ST1", "--json")
    kept = [e["payload"] for e in json.loads(out.stdout)["recent_events"]]
    # as sent, with the schema's defaults (e.g. NotifyEvent's tbc) added
    assert any({k: p.get(k) for k in payload} == payload for p in kept), kept


def requested_messages(version: str, action: str) -> list[str]:
    """The requestedMessage values the official schema of ``action`` allows."""
    folder, name = ("v16", action) if version == "1.6" else ("v201", f"{action}Request")
    schema = json.loads(resources.files("ocpp").joinpath(
        folder, "schemas", f"{name}.json").read_text("utf-8"))
    prop = schema["properties"]["requestedMessage"]
    if "$ref" in prop:
        prop = schema["definitions"][prop["$ref"].rsplit("/", 1)[1]]
    return list(prop["enum"])


# the simulated station has no ISO 15118 (V2G) certificates: it declines those; a
# charging station certificate it asks for with a new key's CSR (test_certificates.py)
DECLINED = {"SignV2GCertificate", "SignCombinedCertificate"}


@pytest.mark.parametrize(("version", "action"), [
    ("1.6", "TriggerMessage"), ("1.6", "ExtendedTriggerMessage"),
    ("2.0.1", "TriggerMessage")])
async def test_trigger_every_message_the_version_allows(
    csms_server: RunningServer, version: str, action: str,
) -> None:
    st = await sim(csms_server, version)
    if version == "2.0.1":
        await st.start_session(1, "SIMTAG")  # TransactionEvent needs a transaction
        await asyncio.sleep(0.2)
        await st.drain()
    messages = requested_messages(version, action)
    assert len(messages) >= 6
    for message in messages:
        before = st.stats.calls_sent
        body = await command(csms_server, "trigger", {
            "message": message, "connector": 1, "extended": action != "TriggerMessage"})
        assert body["action"] == action
        if message in DECLINED:
            assert body["status"] == "Rejected", (message, body)
            continue
        assert body["status"] == "Accepted", (message, body)
        async with asyncio.timeout(5):
            while st.stats.calls_sent == before:
                await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    await st.drain()
    assert st.errors == 0  # every triggered message was taken by the central system
    await st.close()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_triggered_meter_values_are_stored_for_the_station(
    csms_server: RunningServer, version: str,
) -> None:
    """1.6 §5.17 / 2.0.1 F06, J01: a TriggerMessage for MeterValues makes the station send
    MeterValues (in 2.0.1 not a TransactionEvent) with the connector's or EVSE's register;
    the central system keeps the reading for the station, outside any session."""
    st = await sim(csms_server, version)
    try:
        body = await command(csms_server, "trigger", {"message": "MeterValues", "connector": 1})
        assert (body["action"], body["status"]) == ("TriggerMessage", "Accepted")

        async def stored() -> list[Any]:
            return [r for r in await csms_server.repo.read(lambda tx: tx.fetchall(
                "SELECT * FROM meter_readings WHERE station_id = ?", "SIM1"))
                if any(item[6] == "Trigger" for item in json_value(r["samples"]))]

        [row] = await until(stored, "the triggered MeterValues stored")
        assert (row["evse_id"], row["session_id"], row["transaction_id"]) == (1, None, None)
        [item] = json_value(row["samples"])  # [ts, value, measurand, unit, ...]
        assert (item[2], item[3]) == ("Energy.Active.Import.Register", "Wh")
        assert float(item[1]) == st.meters[1].register_wh
        assert await csms_server.sessions() == []
        assert st.errors == 0
    finally:
        await st.close()


async def test_a_trigger_the_schema_does_not_allow_is_refused(
    csms_server: RunningServer,
) -> None:
    st = await sim(csms_server, "1.6")
    status, body = await api(csms_server, "POST", "/stations/SIM1/commands/trigger",
                             {"message": "TransactionEvent"})
    assert status == 400 and "invalid" in body["error"]
    await st.close()
