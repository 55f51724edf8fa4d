"""A 2.0.1 station's credentials never enter its stored device model, whoever names them:
a report part that gives SecurityCtrlr.BasicAuthPassword a value (a station that reports
a write-only variable anyway, or calls it ReadWrite), a GetVariables answer that reads it
back, and a SetVariables of it the station accepted (the operator's new password). Each was
stored in clear, shown by ``csms stations variables`` and the admin API to anyone who may
read the device model: as good as the station's login. The 1.6 configuration already keeps
no AuthorizationKey (test_configuration16)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from support import RunningServer, csms_cli
from support.admin import api
from support.client import RawClient

BOOT201 = {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}}
PASSWORD = "BasicAuthPassword"
REPORTED = "reported-secret-0123456789"
READ_BACK = "read-back-secret-0123456789"
NEW = "NewStationPassword-0123456789"


async def _rows(server: RunningServer, station_id: str) -> dict[str, dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.device_variables(station_id))

    return {r["var_key"]: r for r in await server.repo.read(work)}


async def _answered(server: RunningServer, c: RawClient, command: str, body: dict[str, Any],
                    answer: dict[str, Any]) -> tuple[int, Any, list[Any]]:
    """Run an operator command; the station answers its CALL with ``answer``."""
    task = asyncio.create_task(api(server, "POST", f"/stations/CP-P/commands/{command}",
                                   {**body, "timeout": 5}))
    call = await asyncio.wait_for(c.calls.get(), 5)
    await c.answer(call[1], answer)
    status, result = await task
    return status, result, call


async def test_a_stations_password_is_never_stored_in_its_device_model(
        csms_server: RunningServer) -> None:
    server = csms_server
    await server.add_station("CP-P")
    async with await RawClient.connect(server.url, "CP-P", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        await server.wait_connected("CP-P")
        # a base report whose part gives the password a value, and calls it ReadWrite
        status, result, call = await _answered(server, c, "get-base-report",
                                               {"report_base": "FullInventory"},
                                               {"status": "Accepted"})
        assert status == 200, result
        assert await c.result("NotifyReport", {
            "requestId": call[3]["requestId"], "generatedAt": "2026-06-01T00:00:00Z",
            "seqNo": 0, "reportData": [
                {"component": {"name": "SecurityCtrlr"}, "variable": {"name": PASSWORD},
                 "variableAttribute": [{"value": REPORTED, "mutability": "ReadWrite"}]},
                {"component": {"name": "OCPPCommCtrlr"},
                 "variable": {"name": "HeartbeatInterval"},
                 "variableAttribute": [{"value": "60", "mutability": "ReadWrite"}],
                 "variableCharacteristics": {"dataType": "integer",
                                             "supportsMonitoring": False}}]}) == {}
        rows = await _rows(server, "CP-P")
        assert rows["OCPPCommCtrlr.HeartbeatInterval"]["value"] == "60"  # the rest is kept
        assert rows[f"SecurityCtrlr.{PASSWORD}"]["value"] is None

        # read back with GetVariables: redacted in the answer, and not stored either
        status, result, _ = await _answered(
            server, c, "get-variables", {"variables": [f"SecurityCtrlr.{PASSWORD}"]},
            {"getVariableResult": [{
                "attributeStatus": "Accepted", "attributeValue": READ_BACK,
                "component": {"name": "SecurityCtrlr"}, "variable": {"name": PASSWORD}}]})
        assert status == 200, result
        assert READ_BACK not in json.dumps(result)
        assert (await _rows(server, "CP-P"))[f"SecurityCtrlr.{PASSWORD}"]["value"] is None

        # the operator's new password, accepted: the login switches, the model keeps none
        status, result, call = await _answered(
            server, c, "set-variables", {"values": {f"SecurityCtrlr.{PASSWORD}": NEW}},
            {"setVariableResult": [{
                "attributeStatus": "Accepted", "component": {"name": "SecurityCtrlr"},
                "variable": {"name": PASSWORD}}]})
        assert status == 200 and result["switched"] is True, result
        assert call[3]["setVariableData"][0]["attributeValue"] == NEW  # it was sent
        assert (await _rows(server, "CP-P"))[f"SecurityCtrlr.{PASSWORD}"]["value"] is None

    shown = await asyncio.to_thread(csms_cli, server, "stations", "variables", "CP-P",
                                    "--json")
    assert shown.returncode == 0, shown.stderr
    assert f"SecurityCtrlr.{PASSWORD}" in shown.stdout
    for secret in (REPORTED, READ_BACK, NEW):
        assert secret not in shown.stdout


async def test_a_refused_password_is_not_quoted_in_the_answer_or_the_audit(
        csms_server: RunningServer) -> None:
    """A station that reports its password variable as an integer has the operator's new
    password refused by the model check: the refusal quoted the value (up to 40 characters,
    a whole password), and the audit log kept it."""
    server = csms_server
    await server.add_station("CP-P")
    async with await RawClient.connect(server.url, "CP-P", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        await server.wait_connected("CP-P")
        status, result, call = await _answered(server, c, "get-base-report",
                                               {"report_base": "FullInventory"},
                                               {"status": "Accepted"})
        assert status == 200, result
        assert await c.result("NotifyReport", {
            "requestId": call[3]["requestId"], "generatedAt": "2026-06-01T00:00:00Z",
            "seqNo": 0, "reportData": [
                {"component": {"name": "SecurityCtrlr"}, "variable": {"name": PASSWORD},
                 "variableAttribute": [{"mutability": "WriteOnly"}],
                 "variableCharacteristics": {"dataType": "integer",
                                             "supportsMonitoring": False}}]}) == {}
        status, result = await api(server, "POST", "/stations/CP-P/commands/set-variables",
                                   {"values": {f"SecurityCtrlr.{PASSWORD}": NEW}})
        assert status == 400 and "takes an integer" in result["error"], result
        assert NEW not in result["error"]
    status, audit = await api(server, "GET", "/audit")
    assert status == 200 and any(e["action"] == "set-variables" for e in audit), audit
    assert NEW not in json.dumps(audit)
