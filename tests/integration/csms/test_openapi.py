"""The admin API's OpenAPI document: every route has a real schema for what it takes and
answers, and real requests and answers of a running server validate against it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from csms.admin.maintenance import QUEUEABLE
from csms.admin.openapi import COMMAND_BODIES
from csms.translate.commands import COMMANDS
from support import RunningServer
from support.admin import api
from support.client import RawClient

DOC_URI = "urn:voltledger:admin-openapi"

# what a station answers each action with (valid per the OCPP schemas)
ANSWERS: dict[str, dict[str, Any]] = {
    "RemoteStartTransaction": {"status": "Accepted"},
    "RemoteStopTransaction": {"status": "Accepted"},
    "Reset": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
    "ChangeAvailability": {"status": "Accepted"},
    "TriggerMessage": {"status": "Accepted"},
    "GetConfiguration": {"configurationKey": [
        {"key": "HeartbeatInterval", "readonly": False, "value": "60"}]},
    "ChangeConfiguration": {"status": "Accepted"},
    "SetChargingProfile": {"status": "Accepted"},
    "ClearChargingProfile": {"status": "Accepted"},
    "DataTransfer": {"status": "Accepted", "data": "ok"},
    "SendLocalList": {"status": "Accepted"},
    "GetLocalListVersion": {"listVersion": 3},
    "GetVariables": {"getVariableResult": [
        {"attributeStatus": "Accepted", "component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "HeartbeatInterval"}, "attributeValue": "60"}]},
    "SetVariables": {"setVariableResult": [
        {"attributeStatus": "Accepted", "component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "HeartbeatInterval"}}]},
    "InstallCertificate": {"status": "Accepted"},
    "GetInstalledCertificateIds": {"status": "NotFound"},
    "DeleteCertificate": {"status": "NotFound"},
    "ExtendedTriggerMessage": {"status": "Accepted"},
    "GetBaseReport": {"status": "Accepted"},
    "GetReport": {"status": "EmptyResultSet"},
    "SetVariableMonitoring": {"setMonitoringResult": [
        {"id": 3, "status": "Accepted", "type": "UpperThreshold", "severity": 5,
         "component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}}]},
    "ClearVariableMonitoring": {"clearMonitoringResult": [{"status": "Accepted", "id": 3}]},
    "SetMonitoringBase": {"status": "Accepted"},
    "SetMonitoringLevel": {"status": "Accepted"},
    "GetMonitoringReport": {"status": "Accepted"},
    "ReserveNow": {"status": "Accepted"},
    "CancelReservation": {"status": "Accepted"},
    "UpdateFirmware": {"status": "Accepted"},
    "GetLog": {"status": "Accepted", "filename": "log.txt"},
    "PublishFirmware": {"status": "Accepted"},
    "UnpublishFirmware": {"status": "Unpublished"},
    "ClearCache": {"status": "Accepted"},
    "GetCompositeSchedule": {"status": "Accepted", "connectorId": 1,
                             "scheduleStart": "2026-01-01T00:00:00Z", "chargingSchedule": {
                                 "chargingRateUnit": "W", "chargingSchedulePeriod": [
                                     {"startPeriod": 0, "limit": 7400.0}]}},
    "GetChargingProfiles": {"status": "NoProfiles"},
    "GetTransactionStatus": {"messagesInQueue": False},
    "CustomerInformation": {"status": "Accepted"},
    "SetNetworkProfile": {"status": "Accepted"},
    "SetDisplayMessage": {"status": "Accepted"},
    "GetDisplayMessages": {"status": "Unknown"},
    "ClearDisplayMessage": {"status": "Unknown"},
    "CostUpdated": {},
}
HASH = {"hashAlgorithm": "SHA256", "issuerNameHash": "ab" * 32, "issuerKeyHash": "cd" * 32,
        "serialNumber": "1f"}

# command -> (the station's OCPP version, a body as the CLI sends it)
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "start": ("ocpp1.6", {"tag": "T1", "connector": 1, "timeout": 5}),
    "stop": ("ocpp1.6", {"timeout": 5}),
    "reset": ("ocpp1.6", {"hard": True, "timeout": 5}),
    "unlock": ("ocpp1.6", {"connector": 1, "timeout": 5}),
    "availability": ("ocpp1.6", {"state": "inoperative", "connector": 0, "timeout": 5}),
    "trigger": ("ocpp1.6", {"message": "Heartbeat", "timeout": 5}),
    "get-config": ("ocpp1.6", {"keys": ["HeartbeatInterval"], "timeout": 5}),
    "set-config": ("ocpp1.6", {"key": "HeartbeatInterval", "value": "60", "timeout": 5}),
    "get-variables": ("ocpp2.0.1", {"variables": ["OCPPCommCtrlr.HeartbeatInterval"],
                                    "timeout": 5}),
    "set-variables": ("ocpp2.0.1", {"values": {"OCPPCommCtrlr.HeartbeatInterval": "60"},
                                    "timeout": 5}),
    "set-profile": ("ocpp1.6", {"limit": 11000, "unit": "W", "connector": 0,
                                "schedule": [[0, 11000.0], [3600, 7400.0]], "timeout": 5}),
    "clear-profile": ("ocpp1.6", {"timeout": 5}),
    "data-transfer": ("ocpp1.6", {"vendor": "acme", "message_id": None, "data": "x",
                                  "timeout": 5}),
    "send-local-list": ("ocpp1.6", {"timeout": 5}),
    "local-list-version": ("ocpp1.6", {"timeout": 5}),
    "set-password": ("ocpp1.6", {"password": "a-new-password-of-24-ch", "timeout": 5}),
    "install-certificate": ("ocpp2.0.1", {
        "type": "CSMSRootCertificate", "timeout": 5,
        "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}),
    "get-installed-certificates": ("ocpp1.6", {"types": ["CSMSRootCertificate"],
                                               "timeout": 5}),
    "delete-certificate": ("ocpp2.0.1", {"hash": HASH, "timeout": 5}),
    "renew-certificate": ("ocpp1.6", {"timeout": 5}),
    "get-base-report": ("ocpp2.0.1", {"report_base": "ConfigurationInventory", "timeout": 5}),
    "get-report": ("ocpp2.0.1", {"variables": ["EVSE@1.Power"], "criteria": ["Problem"],
                                 "timeout": 5}),
    "set-monitoring": ("ocpp2.0.1", {"monitors": [
        {"variable": "EVSE@1.Power", "type": "UpperThreshold", "value": 7000, "severity": 5}],
        "timeout": 5}),
    "clear-monitoring": ("ocpp2.0.1", {"ids": [3], "timeout": 5}),
    "set-monitoring-base": ("ocpp2.0.1", {"base": "All", "timeout": 5}),
    "set-monitoring-level": ("ocpp2.0.1", {"severity": 4, "timeout": 5}),
    "get-monitoring-report": ("ocpp2.0.1", {"criteria": ["ThresholdMonitoring"],
                                            "timeout": 5}),
    "reserve": ("ocpp1.6", {"tag": "T1", "until": "+1h", "connector": 1, "timeout": 5}),
    "cancel-reservation": ("ocpp2.0.1", {"reservation": 1, "timeout": 5}),
    "update-firmware": ("ocpp2.0.1", {"version": "fw-2", "window_start": "now",
                                      "window_end": "+2h", "retries": 1,
                                      "retry_interval": 30, "timeout": 5}),
    "get-log": ("ocpp2.0.1", {"type": "SecurityLog", "since": "-1d", "until": "now",
                              "timeout": 5}),
    "clear-cache": ("ocpp1.6", {"timeout": 5}),
    "get-composite-schedule": ("ocpp1.6", {"connector": 1, "duration": 600, "unit": "W",
                                           "timeout": 5}),
    "get-charging-profiles": ("ocpp2.0.1", {"purpose": "TxDefaultProfile", "timeout": 5}),
    "get-transaction-status": ("ocpp2.0.1", {"transaction_id": "T-1", "timeout": 5}),
    "customer-information": ("ocpp2.0.1", {"tag": "T1", "report": True, "clear": False,
                                           "timeout": 5}),
    "set-network-profile": ("ocpp2.0.1", {"url": "wss://csms.example.org/ocpp", "slot": 1,
                                          "apn": "internet", "apn_password": "secret-1",
                                          "timeout": 5}),
    "set-display-message": ("ocpp2.0.1", {"message_id": 1, "text": "Welcome",
                                          "language": "en", "priority": "NormalCycle",
                                          "timeout": 5}),
    "get-display-messages": ("ocpp2.0.1", {"message_id": 1, "timeout": 5}),
    "clear-display-message": ("ocpp2.0.1", {"message_id": 1, "timeout": 5}),
    "cost-updated": ("ocpp2.0.1", {"timeout": 5}),
    "publish-firmware": ("ocpp2.0.1", {"version": "fw-2", "retries": 2, "retry_interval": 5,
                                       "timeout": 5}),
    "unpublish-firmware": ("ocpp2.0.1", {"version": "fw-2", "timeout": 5}),
}


async def _prepared(server: RunningServer, command: str) -> None:
    """What a command needs first: a live reservation to cancel, an image to install."""
    from datetime import UTC, datetime, timedelta

    from csms.domain.maintenance import FirmwareImage, Reservation, ReservationState

    now = datetime.now(UTC)

    async def work(tx: Any) -> None:
        if command == "cancel-reservation":
            await tx.insert_reservation(Reservation(
                "CP1", 1, "T1", now + timedelta(hours=1), now,
                status=ReservationState.ACCEPTED))
        if command in ("update-firmware", "publish-firmware", "unpublish-firmware"):
            await tx.add_firmware(FirmwareImage("fw-2", "fw.bin", 3, "0" * 64, now,
                                                md5="1" * 32))

    await server.repo.unit(work)


class Document:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(
            DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))

    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        return Draft202012Validator(schema, registry=self.registry)

    def check(self, schema: dict[str, Any], value: Any, what: str) -> None:
        resolved = self._absolute(schema)
        errors = sorted(self.validator(resolved).iter_errors(value), key=str)
        assert not errors, f"{what}: {errors[0].message} at {list(errors[0].absolute_path)}"

    def _absolute(self, schema: Any) -> Any:
        """Refs of the form #/components/... made absolute to the registered document."""
        if isinstance(schema, dict):
            return {k: (DOC_URI + v if k == "$ref" and v.startswith("#") else self._absolute(v))
                    for k, v in schema.items()}
        if isinstance(schema, list):
            return [self._absolute(v) for v in schema]
        return schema

    def response(self, path: str, method: str, status: int) -> dict[str, Any]:
        responses = self.doc["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method} {path}: {status} is not documented"
        content = responses[str(status)]["content"]
        schema: dict[str, Any] = next(iter(content.values()))["schema"]
        return schema

    def request(self, path: str) -> dict[str, Any]:
        schema: dict[str, Any] = \
            self.doc["paths"][path]["post"]["requestBody"]["content"]["application/json"][
                "schema"]
        return schema


def trivial(schema: dict[str, Any]) -> bool:
    """No more than 'an object' or 'anything'."""
    keys = set(schema) - {"description"}
    return not keys or schema in ({"type": "object"}, {"type": "object", "description": ""})


async def document(server: RunningServer) -> Document:
    status, doc = await api(server, "GET", "/openapi.json")
    assert status == 200
    return Document(doc)


async def test_every_route_has_a_real_schema(csms_server: RunningServer) -> None:
    d = await document(csms_server)
    assert d.doc["openapi"].startswith("3.1")
    for name, schema in d.doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        assert not trivial(schema), name
    assert csms_server.app is not None and csms_server.app.admin is not None
    routes = {(r.method.lower(), r.resource.canonical) for r in
              csms_server.app.admin.app.router.routes() if r.resource is not None
              and r.method != "HEAD"
              # the console's HTML pages are not the API (csms.admin.console)
              and not r.resource.canonical.startswith("/console")}
    assert routes, "the admin API has routes"
    for method, path in routes:
        assert method in d.doc["paths"].get(path, {}), f"{method} {path} is not documented"
    for path, operations in d.doc["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                content = response.get("content")
                assert content, f"{method} {path} {status}: no content"
                for media, body in content.items():
                    schema = body["schema"]
                    assert not trivial(schema), f"{method} {path} {status} {media}: {schema}"
            if method == "post":
                assert not trivial(d.request(path)), path
    for name in COMMANDS:
        path = f"/stations/{{station_id}}/commands/{name}"
        assert d.doc["paths"][path]["post"]["requestBody"]["content"]["application/json"][
            "schema"] == {"$ref": f"#/components/schemas/Command_{name}"}
        assert "timeout" in COMMAND_BODIES[name]["properties"]


async def test_real_answers_of_the_read_endpoints_validate(csms_server: RunningServer) -> None:
    d = await document(csms_server)
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        await c.result("StatusNotification",
                       {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
        tx = (await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 1000,
            "timestamp": "2026-01-01T10:00:00Z"}))["transactionId"]
        await c.result("StopTransaction", {"transactionId": tx, "meterStop": 2500,
                                           "timestamp": "2026-01-01T11:00:00Z"})
        await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 2500,
            "timestamp": "2026-01-01T12:00:00Z"})
        await csms_server.wait_connected("CP1")
        request = asyncio.create_task(api(csms_server, "POST", "/stations/CP1/commands/reset",
                                          {}))
        call = await asyncio.wait_for(c.calls.get(), 5)
        await c.answer(call[1], {"status": "Accepted"})
        await request
        checks = [
            ("/health", "/health", 200), ("/stations", "/stations", 200),
            ("/stations/CP1", "/stations/{station_id}", 200),
            ("/stations/NOPE", "/stations/{station_id}", 404),
            ("/sessions", "/sessions", 200), ("/sessions?active=true&limit=5", "/sessions", 200),
            ("/sessions?limit=x", "/sessions", 400),
            ("/sessions/1", "/sessions/{session_id}", 200),
            ("/sessions/999", "/sessions/{session_id}", 404),
            ("/sessions/x", "/sessions/{session_id}", 400),
            ("/audit", "/audit", 200), ("/openapi.json", "/openapi.json", 200),
        ]
        for url, path, expected in checks:
            status, body = await api(csms_server, "GET", url)
            assert status == expected, (url, status, body)
            d.check(d.response(path, "get", status), body, f"GET {url} {status}")
        status, text = await api(csms_server, "GET", "/metrics")
        d.check(d.response("/metrics", "get", status), text, "GET /metrics")
        _, sessions = await api(csms_server, "GET", "/sessions")
        assert {s["status"] for s in sessions} == {"active", "completed"}
        _, station = await api(csms_server, "GET", "/stations/CP1")
        assert station["active_sessions"] and station["recent_events"]
    status, body = await api(csms_server, "GET", "/stations", token="wrong")
    d.check(d.response("/stations", "get", status), body, "401")


async def test_a_held_session_s_time_to_decide_it_by_validates(
        csms_server: RunningServer, tmp_path: Path) -> None:
    """A held session as the admin API answers it (its billing, its time to be decided by
    and whether that passed, once a settlement worker read the contract's notice period)
    validates against the document, in the list and alone."""
    from settlement.chain import open_chain
    from settlement.worker import SettlementWorker

    d = await document(csms_server)
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        tx = (await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 5000,
            "timestamp": "2026-01-01T10:00:00Z"}))["transactionId"]
        # the meter went backwards: held for an operator
        await c.result("StopTransaction", {"transactionId": tx, "meterStop": 2500,
                                           "timestamp": "2026-01-01T11:00:00Z"})
    await SettlementWorker(csms_server.repo, open_chain("memory", tmp_path / "data")).run_once()
    status, [listed] = await api(csms_server, "GET", "/sessions")
    d.check(d.response("/sessions", "get", status), [listed], "GET /sessions")
    status, one = await api(csms_server, "GET", f"/sessions/{listed['id']}")
    d.check(d.response("/sessions/{session_id}", "get", status), one, "GET /sessions/{id}")
    assert one == listed
    assert (one["billing"], one["decide_by"], one["decide_by_state"]) == (
        "held", "2026-01-08T09:00:00+00:00", "passed")


@pytest.mark.parametrize("command", sorted(COMMANDS))
async def test_real_commands_and_answers_validate(csms_server: RunningServer,
                                                  command: str) -> None:
    d = await document(csms_server)
    version, body = REQUESTS[command]
    specific = f"/stations/{{station_id}}/commands/{command}"
    d.check(d.request(specific), body, f"{command} request")
    d.check(d.request("/stations/{station_id}/commands/{command}"), body,
            f"{command} request (generic path)")
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    await _prepared(csms_server, command)
    async with await RawClient.connect(csms_server.url, "CP1", [version]) as c:
        await csms_server.wait_connected("CP1")
        if command == "stop":
            await c.result("StartTransaction", {
                "connectorId": 1, "idTag": "T1", "meterStart": 10,
                "timestamp": "2026-01-01T00:00:00Z"})
        if command == "cost-updated":  # the cost of an active session under a tariff
            await csms_server.add_tariff("0.39")
            await c.result("TransactionEvent", {
                "eventType": "Started", "timestamp": "2026-01-01T00:00:00Z",
                "triggerReason": "Authorized", "seqNo": 0,
                "transactionInfo": {"transactionId": "T-1"}})
        request = asyncio.create_task(
            api(csms_server, "POST", f"/stations/CP1/commands/{command}", body))
        call = await asyncio.wait_for(c.calls.get(), 5)
        await c.answer(call[1], ANSWERS[call[2]])
        status, answer = await request
    assert status == 200, answer
    d.check(d.response(specific, "post", status), answer, f"{command} answer")
    # the errors an operator meets, documented as they are
    errors = [
        # the station left: refused, or queued for its return
        ("/stations/CP1/commands/" + command, body, 202 if command in QUEUEABLE else 409),
        ("/stations/CP1/commands/launch", {}, 404),
    ]
    for url, payload, expected in errors:
        status, answer = await api(csms_server, "POST", url, payload)
        assert status == expected, (url, status, answer)
        d.check(d.response("/stations/{station_id}/commands/{command}", "post", status),
                answer, f"{url} {status}")


async def test_an_invalid_command_answer_validates(csms_server: RunningServer) -> None:
    d = await document(csms_server)
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await csms_server.wait_connected("CP1")
        status, answer = await api(csms_server, "POST", "/stations/CP1/commands/get-variables",
                                   {"variables": ["A.B"]})
        assert status == 400
        d.check(d.response("/stations/{station_id}/commands/get-variables", "post", 400),
                answer, "400")
        request = asyncio.create_task(api(csms_server, "POST", "/stations/CP1/commands/reset",
                                          {"timeout": 5}))
        call = await asyncio.wait_for(c.calls.get(), 5)
        await c.ws.send(orjson.dumps([4, call[1], "NotSupported", "no", {}]).decode())
        status, answer = await request
        assert status == 502
        d.check(d.response("/stations/{station_id}/commands/reset", "post", 502), answer,
                "502")


async def test_reservations_firmware_and_transfers_validate(csms_server: RunningServer) -> None:
    """The read endpoints of reservations, firmware and transfers, and an uploaded log's
    file, as real answers after a simulated station uploaded a log."""
    from chargers_sim import Station

    d = await document(csms_server)
    await csms_server.add_station("SIM1")
    await csms_server.add_tag("T1")
    await _prepared(csms_server, "update-firmware")
    await _prepared(csms_server, "cancel-reservation")
    st = Station(csms_server.url, "SIM1", "2.0.1", seed=1, call_timeout=3)
    await st.start()
    try:
        status, answer = await api(csms_server, "POST", "/stations/SIM1/commands/get-log",
                                   {"type": "Diagnostics"})
        assert status == 200, answer
        async with asyncio.timeout(10):
            while not st.uploads or st.log_statuses[-1:] != ["Uploaded"]:
                await asyncio.sleep(0.02)
        rid = answer["request_id"]
        checks = [
            ("/reservations", "/reservations", 200), ("/reservations?limit=0",
                                                      "/reservations", 400),
            ("/firmware", "/firmware", 200), ("/transfers", "/transfers", 200),
            ("/transfers?kind=firmware&station=SIM1", "/transfers", 200),
            ("/transfers?kind=disk", "/transfers", 400),
            (f"/transfers/{rid}/file", "/transfers/{transfer_id}/file", 200),
            ("/transfers/999/file", "/transfers/{transfer_id}/file", 404),
            ("/transfers/..%2Fadmin.token/file", "/transfers/{transfer_id}/file", 400),
        ]
        for url, path, expected in checks:
            status, body = await api(csms_server, "GET", url)
            assert status == expected, (url, status, body)
            if status != 200 or not path.endswith("/file"):
                d.check(d.response(path, "get", status), body, f"GET {url} {status}")
            else:
                assert body == st.log_text("Diagnostics").decode()[:len(body)] and body
        _, logs = await api(csms_server, "GET", "/transfers")
        assert logs[0]["status"] == "Uploaded" and logs[0]["log_type"] == "Diagnostics"
    finally:
        await st.close()
