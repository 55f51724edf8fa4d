"""2.0.1 C16 master passes over real sockets: the central system sets the station's
AuthCtrlr.MasterPassGroupId to the operator's master pass group; a tag of that group is
authorized with it as groupIdToken (the station then starts nothing for it), stops any
transaction, and a transaction a hostile station starts with it anyway is stored, answered
Invalid, flagged and never billed. 1.6 keeps its own rules (a master of its group)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from chargers_sim import StartRefused, Station
from csms.domain.model import IdTag
from csms.service.ports import Tx
from support import RunningServer, csms_cli, is_queued, station_events
from support.admin import api
from support.client import RawClient

FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}
T0 = "2026-03-01T10:00:00Z"


async def tags(server: RunningServer, master_group: str | None = "POLICE") -> None:
    async def work(tx: Tx) -> None:
        for tag, group, master in (("ALICE", "FLEET-A", False), ("BOB", "FLEET-B", False),
                                   ("BOSS-A", "FLEET-A", True), ("OFFICER", "POLICE", True),
                                   ("POLICE", None, False)):
            await tx.put_tag(IdTag(tag, "accepted", None, group, master))
        await tx.set_central_option("master_pass_group", master_group)

    await server.repo.unit(work)


async def until(check: Any) -> None:
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0.02)


async def test_simulated_station_gets_the_group_starts_nothing_and_stops_everything(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("SIM1")
    await tags(csms_server)
    st = Station(csms_server.url, "SIM1", "2.0.1", seed=5, connectors=3, **FAST)
    await st.start()
    # set after the accepted boot (B01), answered Accepted and kept
    await until(lambda: st.variables.get("AuthCtrlr.MasterPassGroupId") == "POLICE")
    async with asyncio.timeout(10):
        while not await station_events(csms_server, "SIM1", "master_pass_group"):
            await asyncio.sleep(0.02)
    assert await station_events(csms_server, "SIM1", "master_pass_group") == [
        {"group": "POLICE", "status": "Accepted"}]
    await st.start_session(1, "ALICE")
    await st.start_session(2, "BOB")  # another group: a master pass stops it all the same
    with pytest.raises(StartRefused):  # authorized, then not started by the station
        await st.start_session(3, "OFFICER")
    assert 3 not in st._sessions
    stopped = await st.present_master_pass("OFFICER")
    assert sorted(s.connector for s in stopped) == [1, 2]
    await st.drain()
    sessions = await csms_server.sessions("SIM1")
    assert sorted((s["id_tag"], s["status"], s["stop_reason"]) for s in sessions) == [
        ("ALICE", "completed", "MasterPass"), ("BOB", "completed", "MasterPass")]
    assert not any("master_pass_start" in s["flags"] for s in sessions)
    assert [e for e in await station_events(csms_server, "SIM1", "security")
            if e.get("type") in ("StopNotAllowed", "MasterPassStart")] == []
    # the simulated station was answered Accepted for each stop (it caches the answer)
    assert st.group("OFFICER") == "POLICE"
    await st.close()


# each transaction at T0 on an EVSE of its own: two at once on one EVSE are held
# (overlaps_session, csms.service.sessions)
EVSES = {"TX-M": 1, "TX-N": 2, "TX-B": 3, "TX-A": 4, "TX-C": 5, "TX-CABLE": 6}


def started(tag: str, tx_id: str = "TX-M", seq: int = 0, **extra: Any) -> dict[str, Any]:
    return {"eventType": "Started", "timestamp": T0, "triggerReason": "Authorized",
            "seqNo": seq, "transactionInfo": {"transactionId": tx_id},
            "idToken": {"idToken": tag, "type": "ISO14443"},
            "evse": {"id": EVSES.get(tx_id, 1), "connectorId": 1},
            "meterValue": [{"timestamp": T0, "sampledValue": [
                {"value": 1000, "context": "Transaction.Begin"}]}], **extra}


def ended(tag: str | None, tx_id: str, seq: int, reason: str = "MasterPass"
          ) -> dict[str, Any]:
    p: dict[str, Any] = {
        "eventType": "Ended", "timestamp": "2026-03-01T10:20:00Z",
        "triggerReason": "StopAuthorized", "seqNo": seq,
        "transactionInfo": {"transactionId": tx_id, "stoppedReason": reason},
        "meterValue": [{"timestamp": "2026-03-01T10:20:00Z", "sampledValue": [
            {"value": 6000, "context": "Transaction.End"}]}]}
    if tag:
        p["idToken"] = {"idToken": tag, "type": "ISO14443"}
    return p


async def boot201(c: RawClient) -> dict[str, Any]:
    """Boot; the central system follows the accepted boot with the MasterPassGroupId."""
    boot = await c.result("BootNotification", {
        "chargingStation": {"vendorName": "x", "model": "y"}, "reason": "PowerUp"})
    assert boot["status"] == "Accepted"
    async with asyncio.timeout(5):
        _, msg_id, action, payload = await c.calls.get()
    assert action == "SetVariables"
    await c.answer(msg_id, {"setVariableResult": [{
        "attributeStatus": "Accepted", "component": {"name": "AuthCtrlr"},
        "variable": {"name": "MasterPassGroupId"}}]})
    return dict(payload)


async def test_a_hostile_station_that_starts_with_a_master_pass(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("EV1")
    await csms_server.add_tariff("0.39")
    await tags(csms_server)
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        assert await boot201(c) == {"setVariableData": [{
            "attributeValue": "POLICE", "component": {"name": "AuthCtrlr"},
            "variable": {"name": "MasterPassGroupId"}}]}
        # C16 / TC_C_47: Accepted, with the master pass group, so the station starts none
        assert await c.result("Authorize", {"idToken": {"idToken": "OFFICER",
                                                        "type": "ISO14443"}}) == {
            "idTokenInfo": {"status": "Accepted",
                            "groupIdToken": {"idToken": "POLICE", "type": "Central"}}}
        first = await c.result("TransactionEvent", started("OFFICER"))
        assert first["idTokenInfo"]["status"] == "Invalid"
        again = await c.result("TransactionEvent", started("OFFICER"))  # a retry
        assert again["idTokenInfo"]["status"] == "Invalid"
        updated = {**started("OFFICER", seq=1), "eventType": "Updated",
                   "triggerReason": "MeterValuePeriodic"}
        assert (await c.result("TransactionEvent", updated))["idTokenInfo"]["status"] \
            == "Invalid"
        assert "totalCost" not in await c.result("TransactionEvent", ended(
            "OFFICER", "TX-M", 2, reason="Local"))  # held: no cost shown either
        # a tag merely named like the group, and another group's master, are not masters
        named = await c.result("TransactionEvent", started("POLICE", "TX-N"))
        assert named["idTokenInfo"]["status"] == "Accepted"
        boss = await c.result("TransactionEvent", started("BOSS-A", "TX-B"))
        assert boss["idTokenInfo"]["status"] == "Accepted"
        # the master pass stops anyone's transaction (C16.FR.01/02), whatever the group
        await c.result("TransactionEvent", started("ALICE", "TX-A"))
        stop = await c.result("TransactionEvent", ended("OFFICER", "TX-A", 1))
        assert stop["idTokenInfo"] == {"status": "Accepted",
                                       "groupIdToken": {"idToken": "POLICE", "type": "Central"}}
        # another group's master stops only its own group's (as before)
        await c.result("TransactionEvent", started("BOB", "TX-C"))
        refused = await c.result("TransactionEvent", ended("BOSS-A", "TX-C", 1, "Local"))
        assert refused["idTokenInfo"]["status"] == "Invalid"
        # a transaction started by cable (no token), stopped by the master pass: the
        # master pass does not become its owner, nor is it flagged as its start
        cable = {**started("X", "TX-CABLE"), "triggerReason": "CablePluggedIn"}
        del cable["idToken"]
        await c.result("TransactionEvent", cable)
        await c.result("TransactionEvent", {**ended("OFFICER", "TX-CABLE", 1),
                                            "eventType": "Updated"})
        # the operator cannot start a transaction with it remotely either
        status, body = await api(csms_server, "POST", "/stations/EV1/commands/start",
                                 {"tag": "OFFICER", "connector": 1})
        assert status == 400 and "master pass" in body["error"], body
        assert c.calls.empty()  # nothing was sent to the station
    by = {s["transaction_id"]: s for s in await csms_server.sessions("EV1")}
    m = by["TX-M"]
    assert (m["status"], m["id_tag"]) == ("completed", "OFFICER")  # stored, whoever
    assert "master_pass_start" in m["flags"]
    assert not await is_queued(csms_server, m["id"])  # never billed to anyone
    # not even by an operator's release (a reject is fine)
    out = await asyncio.to_thread(csms_cli, csms_server, "sessions", "release", str(m["id"]))
    assert out.returncode == 2 and "master pass" in out.stderr, out
    assert "Traceback" not in out.stderr and not await is_queued(csms_server, m["id"])
    out = await asyncio.to_thread(csms_cli, csms_server, "sessions", "reject", str(m["id"]))
    assert out.returncode == 0, out.stderr
    for tx_id in ("TX-N", "TX-B", "TX-A", "TX-C"):
        assert "master_pass_start" not in by[tx_id]["flags"], tx_id
    assert by["TX-A"]["id_tag"] == "ALICE" and by["TX-A"]["stop_reason"] == "MasterPass"
    assert await is_queued(csms_server, by["TX-A"]["id"])  # ALICE's session is billed
    assert by["TX-CABLE"]["id_tag"] is None and by["TX-CABLE"]["flags"] == []
    security = await station_events(csms_server, "EV1", "security")
    [start_event] = [e for e in security if e.get("type") == "MasterPassStart"]
    assert (start_event["tag"], start_event["transaction_id"]) == ("OFFICER", "TX-M")
    assert [e["transaction_id"] for e in security if e.get("type") == "StopNotAllowed"] \
        == ["TX-C"]


async def test_a_master_pass_cannot_authorize_a_transaction_nobody_pays_for(
    csms_server: RunningServer,
) -> None:
    """A transaction started at plug-in (no token) or on a refused token, then a master
    pass presented to authorize it (not to stop it): answered Accepted, the station would
    charge on the master pass with nobody to pay; C16: a master pass owns no transaction,
    so it is answered Invalid and does not pay for either (the plug-in one is held as
    started by it, as a Started event of it is)."""
    await csms_server.add_station("EV1")
    await tags(csms_server)
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        await boot201(c)
        cable = {**started("X", "TX-PLUG"), "triggerReason": "CablePluggedIn"}
        del cable["idToken"]
        await c.result("TransactionEvent", cable)
        refused = await c.result("TransactionEvent", started("NOBODY", "TX-REF"))
        assert refused["idTokenInfo"]["status"] == "Unknown"
        for tx_id in ("TX-PLUG", "TX-REF"):
            tapped = {**started("OFFICER", tx_id, seq=1), "eventType": "Updated"}
            del tapped["meterValue"]
            answer = await c.result("TransactionEvent", tapped)
            assert answer["idTokenInfo"]["status"] == "Invalid", (tx_id, answer)
    by = {s["transaction_id"]: s for s in await csms_server.sessions("EV1")}
    assert "master_pass_start" in by["TX-PLUG"]["flags"]
    assert by["TX-REF"]["id_tag"] == "NOBODY" and "master_pass_start" not in by["TX-REF"]["flags"]


async def test_1_6_keeps_its_rules_and_no_group_means_no_master_pass(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_station("EV2")
    await tags(csms_server)
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "x", "chargePointModel": "y"})
        answer = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "OFFICER", "meterStart": 0, "timestamp": T0})
        assert answer["idTagInfo"] == {"status": "Accepted", "parentIdTag": "POLICE"}
        assert c.calls.empty()  # 1.6 has no MasterPassGroupId
    [s] = await csms_server.sessions("CP1")
    assert s["flags"] == []
    await tags(csms_server, master_group=None)  # the operator has no master pass group
    async with await RawClient.connect(csms_server.url, "EV2", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {
            "chargingStation": {"vendorName": "x", "model": "y"}, "reason": "PowerUp"})
        first = await c.result("TransactionEvent", started("OFFICER"))
        assert first["idTokenInfo"]["status"] == "Accepted"
        assert c.calls.empty()  # nothing to set


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``csms`` as a process, told where the running server's admin API is."""
    port = server.admin_url.rsplit(":", 1)[1]
    return subprocess.run(
        [sys.executable, "-m", "csms", *args, "--db", server.settings.db,
         "--data-dir", str(server.settings.data_dir)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200", "CSMS_ADMIN_PORT": port})


async def test_the_operator_sets_the_master_pass_group_live(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("SIM1")
    st = Station(csms_server.url, "SIM1", "2.0.1", seed=5, **FAST)
    await st.start()
    out = await asyncio.to_thread(cli, csms_server, "tags", "add", "OFFICER", "--group",
                                  "POLICE", "--master")
    assert out.returncode == 0, out.stderr
    assert "2.0.1 master pass group: POLICE" in out.stdout
    assert "SIM1: MasterPassGroupId Accepted" in out.stdout
    assert st.variables["AuthCtrlr.MasterPassGroupId"] == "POLICE"
    # a master of another group leaves the group as it is, and says so
    out = await asyncio.to_thread(cli, csms_server, "tags", "add", "CHIEF", "--group",
                                  "FIRE", "--master")
    assert out.returncode == 0 and "stays POLICE" in out.stderr, out
    out = await asyncio.to_thread(cli, csms_server, "tags", "master-group", "FIRE")
    assert out.returncode == 0 and "SIM1: MasterPassGroupId Accepted" in out.stdout, out
    assert st.variables["AuthCtrlr.MasterPassGroupId"] == "FIRE"
    out = await asyncio.to_thread(cli, csms_server, "tags", "master-group", "--json")
    assert json.loads(out.stdout) == {"master_pass_group": "FIRE", "tags": ["CHIEF"]}
    for args, why in ((["FIRE", "--none"], "not both"), (["G" * 21], "1 to 20")):
        out = await asyncio.to_thread(cli, csms_server, "tags", "master-group", *args)
        assert out.returncode == 2 and why in out.stderr and "Traceback" not in out.stderr
    await st.close()
    out = await asyncio.to_thread(csms_cli, csms_server, "tags", "master-group",
                                  "--none")  # no server named
    assert out.returncode == 0 and "no 2.0.1 master pass group" in out.stdout, out
    audit = await csms_server.repo.read(lambda tx: tx.list_audit())
    assert [a["target"] for a in reversed(audit) if a["action"] == "tags.master-group"] == [
        "FIRE", None]  # each change of the group, audited; a look at it is not
