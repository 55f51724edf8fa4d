"""The strict ocpp-rpc client (npm) on a sample of each functional block (2.0.1) and
feature profile (1.6) the other interop tests leave out: 1.6 FirmwareManagement,
LocalAuthListManagement and RemoteTrigger; 2.0.1 D local list, F remote control, H
reservation, J meter values, M certificates, P data transfer; and the 1.6 FinalCost
DataTransfer the central system sends by itself at a marked station's session end. Our
CALLs must pass its schema checks, and what it sends must pass ours and be kept."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from csms.service.ports import Tx
from support import RunningServer, station_events
from support.admin import api

from .test_interop_ocpp_rpc import NODE_MODULES, node_ready

SCRIPT = Path(__file__).with_name("interop") / "ocpp_rpc_blocks.js"


async def run(server: RunningServer, protocol: str, commands: list[tuple[str, dict[str, Any]]]
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    node = node_ready()
    await server.add_station("INTEROP-B")
    await server.add_tag("CAFE03")
    await server.add_tariff("0.39")
    await server.central.service.set_station_option("INTEROP-B", "running_cost", "on")
    proc = await asyncio.create_subprocess_exec(
        str(node), str(SCRIPT), server.url, "INTEROP-B", protocol, "CAFE03",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert proc.stderr is not None and proc.stdout is not None
    answers = []
    async with asyncio.timeout(40):
        line = await proc.stderr.readline()
        assert line.strip() == b"READY", line
        for command, args in commands:
            if command == "cancel-reservation":
                args = {"reservation": answers[-1]["reservation_id"]}
            status, body = await api(server, "POST",
                                     f"/stations/INTEROP-B/commands/{command}", args)
            assert status == 200, (command, body)
            answers.append(body)
        out, _ = await proc.communicate()
    result = json.loads(out)
    assert "error" not in result, result
    assert result["failures"] == []  # no strict-mode schema failure on either side
    assert result["negotiated"] == protocol
    assert proc.returncode == 0
    return result, answers


async def test_strict_client_1_6_firmware_local_list_and_trigger(
    csms_server: RunningServer,
) -> None:
    result, answers = await run(csms_server, "ocpp1.6", [
        ("local-list-version", {}), ("trigger", {"message": "Heartbeat"}), ("reset", {})])
    assert [c["method"] for c in result["csmsCalls"]] == [
        "DataTransfer", "GetLocalListVersion", "TriggerMessage", "Reset"]
    # FinalCost, by itself, once: 5.5 kWh x 0.39 = 2.145 -> 2.15 (what settlement bills)
    final = result["csmsCalls"][0]["params"]
    assert (final["vendorId"], final["messageId"]) == ("org.openchargealliance.costmsg",
                                                       "FinalCost")
    assert json.loads(final["data"]) == {
        "transactionId": result["responses"]["start"]["transactionId"], "cost": 2.15,
        "priceText": "Total: 2.15 EUR for 5.500 kWh", "qrCodeText": ""}
    assert [a["action"] for a in answers] == [
        "GetLocalListVersion", "TriggerMessage", "Reset"]
    assert answers[0]["response"] == {"listVersion": 3}
    assert answers[1]["response"] == {"status": "Accepted"}
    r = result["responses"]
    assert r["boot"]["status"] == "Accepted"
    assert r["diagnostics"] == r["firmware"] == {}
    assert set(r["triggered"]) == {"currentTime"}  # the triggered Heartbeat was answered
    for kind in ("diagnostics_status", "firmware_status"):
        # kept, and marked as about no request of ours
        assert await station_events(csms_server, "INTEROP-B", kind) == [
            {"status": "Idle", "unmatched": True}]


async def test_strict_client_2_0_1_blocks_d_f_h_j_m_p(csms_server: RunningServer) -> None:
    result, answers = await run(csms_server, "ocpp2.0.1", [
        ("local-list-version", {}),
        ("trigger", {"message": "Heartbeat"}),
        ("reserve", {"tag": "CAFE03", "until": "+1h", "connector": 1}),
        ("cancel-reservation", {}),
        ("get-installed-certificates", {}),
        ("data-transfer", {"vendor": "org.example.interop", "message_id": "ping",
                           "data": "x"}),
        ("reset", {}),
    ])
    assert [c["method"] for c in result["csmsCalls"]] == [
        "GetLocalListVersion", "TriggerMessage", "ReserveNow", "CancelReservation",
        "GetInstalledCertificateIds", "DataTransfer", "Reset"]
    by = {a["action"]: a for a in answers}
    assert by["GetLocalListVersion"]["response"] == {"versionNumber": 3}
    assert by["TriggerMessage"]["response"] == {"status": "Accepted"}
    assert by["ReserveNow"]["response"] == {"status": "Accepted"}
    assert by["CancelReservation"]["response"] == {"status": "Rejected"}
    assert by["GetInstalledCertificateIds"]["response"] == {"status": "NotFound"}
    assert by["DataTransfer"]["response"] == {"status": "UnknownVendorId"}
    calls = {c["method"]: c["params"] for c in result["csmsCalls"]}
    assert calls["ReserveNow"]["idToken"] == {"idToken": "CAFE03", "type": "ISO14443"}
    assert calls["DataTransfer"] == {"vendorId": "org.example.interop", "messageId": "ping",
                                     "data": "x"}
    r = result["responses"]
    assert r["meter"] == {} and r["reservationUpdate"] == {}
    assert r["dataTransfer"] == {"status": "UnknownVendorId"}
    assert set(r["triggered"]) == {"currentTime"}

    async def work(tx: Tx) -> Any:
        return await tx.get_reservation(by["ReserveNow"]["reservation_id"])

    reservation = await csms_server.repo.read(work)
    assert reservation is not None and reservation.status.value == "expired"
    events = await station_events(csms_server, "INTEROP-B", "data_transfer")
    assert {"vendorId": "org.example.interop", "messageId": "hello", "data": {"n": 1}} in events
