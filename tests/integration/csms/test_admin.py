"""The admin API and `csms remote` over real HTTP, against stations of both versions."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import RunningServer
from support.admin import api
from support.client import RawClient


async def answer_next(client: RawClient, payload: dict[str, Any]) -> list[Any]:
    call = await asyncio.wait_for(client.calls.get(), 5)
    await client.answer(call[1], payload)
    return call


@pytest.mark.parametrize("token", [None, "wrong", ""])
async def test_auth_required(csms_server: RunningServer, token: str | None) -> None:
    for path in ("/stations", "/metrics", "/openapi.json", "/audit"):
        status, _ = await api(csms_server, "GET", path, token=token)
        assert status == 401
    status, _ = await api(csms_server, "POST", "/stations/X/commands/reset", {}, token=token)
    assert status == 401
    assert (await api(csms_server, "GET", "/health", token=None))[0] == 200


async def test_health_tells_a_stranger_what_is_down_never_the_error_text(
        csms_server: RunningServer) -> None:
    """/health answers without the token (a load balancer's probe), and it gave every
    task's last error as its exception read: a chain provider's URL with the API key in
    its path ("401 Client Error: Unauthorized for url: https://.../v2/KEY"), a database's
    or a broker's host. A stranger (or a web page, by DNS rebinding) learns what is down;
    the error text only with the token (a wrong one is refused and slows as elsewhere)."""
    key = "k3yOfTheOperatorsChainProvider"
    assert csms_server.app is not None
    report = csms_server.app.tasks.reporter("last-seen")  # how a failing task reports
    report(ConnectionError(f"401 Client Error: Unauthorized for url: https://rpc.example/v2/{key}"))
    status, stranger = await api(csms_server, "GET", "/health", token=None)
    assert status == 200 and stranger["status"] == "degraded", stranger
    assert stranger["down"] == ["last-seen"] and stranger["tasks"]["last-seen"]["failures"] == 1
    assert key not in str(stranger) and "last_error" not in stranger["tasks"]["last-seen"]
    status, operator = await api(csms_server, "GET", "/health")
    assert status == 200 and key in operator["tasks"]["last-seen"]["last_error"], operator
    assert (await api(csms_server, "GET", "/health", token="wrong"))[0] == 401


async def test_token_file_is_private(csms_server: RunningServer) -> None:
    path = Path(csms_server.settings.data_dir) / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == csms_server.admin_token
    assert len(csms_server.admin_token) >= 32


async def test_openapi_lists_the_command_endpoint(csms_server: RunningServer) -> None:
    status, doc = await api(csms_server, "GET", "/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    enum = doc["paths"]["/stations/{station_id}/commands/{command}"]["post"]["parameters"][1]
    assert "start" in enum["schema"]["enum"]


# command, args, 1.6 (action, payload), 2.0.1 (action, payload)
Wire = tuple[str, dict[str, Any]]
COMMANDS: list[tuple[str, dict[str, Any], Wire, Wire]] = [
    ("reset", {"hard": True}, ("Reset", {"type": "Hard"}), ("Reset", {"type": "Immediate"})),
    ("reset", {}, ("Reset", {"type": "Soft"}), ("Reset", {"type": "OnIdle"})),
    ("unlock", {"connector": 2}, ("UnlockConnector", {"connectorId": 2}),
     ("UnlockConnector", {"evseId": 2, "connectorId": 1})),
    ("availability", {"state": "inoperative", "connector": 1},
     ("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}),
     ("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}})),
    ("trigger", {"message": "StatusNotification"},
     ("TriggerMessage", {"requestedMessage": "StatusNotification"}),
     ("TriggerMessage", {"requestedMessage": "StatusNotification"})),
    ("data-transfer", {"vendor": "acme", "data": "x"},
     ("DataTransfer", {"vendorId": "acme", "data": "x"}),
     ("DataTransfer", {"vendorId": "acme", "data": "x"})),
    ("clear-profile", {}, ("ClearChargingProfile", {}), ("ClearChargingProfile", {})),
]


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
@pytest.mark.parametrize(("command", "args", "v16", "v201"), COMMANDS)
async def test_commands_translate_to_the_station_version(
    csms_server: RunningServer, version: str, command: str, args: dict[str, Any],
    v16: tuple[str, dict[str, Any]], v201: tuple[str, dict[str, Any]],
) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", [version]) as c:
        await csms_server.wait_connected("CP1")
        request = asyncio.create_task(
            api(csms_server, "POST", f"/stations/CP1/commands/{command}", args))
        word = "Unlocked" if command == "unlock" else "Accepted"
        call = await answer_next(c, {"status": word})
        status, body = await request
    expected = v16 if version == "ocpp1.6" else v201
    assert (call[2], call[3]) == expected
    assert status == 200
    assert body["status"] == word


async def test_remote_start_and_stop_by_session(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await csms_server.wait_connected("CP1")
        req = asyncio.create_task(api(csms_server, "POST", "/stations/CP1/commands/start",
                                      {"tag": "T1", "connector": 1}))
        call = await answer_next(c, {"status": "Accepted"})
        assert call[2:] == ["RemoteStartTransaction", {"idTag": "T1", "connectorId": 1}]
        assert (await req)[1]["status"] == "Accepted"
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 10, "timestamp": "2026-01-01T00:00:00Z"})
        req = asyncio.create_task(api(csms_server, "POST", "/stations/CP1/commands/stop", {}))
        call = await answer_next(c, {"status": "Accepted"})
        assert call[2:] == ["RemoteStopTransaction", {"transactionId": started["transactionId"]}]
        assert (await req)[0] == 200


async def test_2_0_1_config_is_refused_with_a_hint(csms_server: RunningServer) -> None:
    await csms_server.add_station("EV1")
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]):
        await csms_server.wait_connected("EV1")
        status, body = await api(csms_server, "POST", "/stations/EV1/commands/get-config", {})
    assert status == 400
    assert "variables" in body["error"]


async def test_offline_timeout_and_callerror(csms_server: RunningServer) -> None:
    status, body = await api(csms_server, "POST", "/stations/NOPE/commands/reset", {})
    assert (status, body["status"]) == (409, "Offline")
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await csms_server.wait_connected("CP1")
        status, body = await api(csms_server, "POST", "/stations/CP1/commands/reset",
                                 {"timeout": 0.3})
        assert (status, body["status"]) == (504, "Timeout")
        await asyncio.wait_for(c.calls.get(), 5)  # the unanswered one
        req = asyncio.create_task(api(csms_server, "POST", "/stations/CP1/commands/reset", {}))
        call = await asyncio.wait_for(c.calls.get(), 5)
        await c.send_raw(f'[4,"{call[1]}","NotSupported","nope",{{}}]')
        status, body = await req
        assert (status, body["status"]) == (502, "NotSupported")


async def test_audit_log_records_who_what_when_result(csms_server: RunningServer) -> None:
    await api(csms_server, "POST", "/stations/NOPE/commands/reset", {"hard": True})
    status, rows = await api(csms_server, "GET", "/audit")
    assert status == 200
    [row] = rows
    assert row["action"] == "reset"
    assert row["target"] == "NOPE"
    assert row["request"] == {"hard": True}
    assert row["ok"] is False
    assert row["result"]["status"] == "Offline"
    assert row["actor"].startswith("admin@")
    assert row["at"]


async def test_send_local_list_pushes_all_tags_with_increasing_version(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("EV1")
    await csms_server.add_tag("A1")
    await csms_server.add_tag("B1", "blocked")
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        await csms_server.wait_connected("EV1")
        versions = []
        for _ in range(2):
            req = asyncio.create_task(
                api(csms_server, "POST", "/stations/EV1/commands/send-local-list", {}))
            call = await answer_next(c, {"status": "Accepted"})
            versions.append(call[3]["versionNumber"])
            assert (await req)[0] == 200
        entries = {e["idToken"]["idToken"]: e["idTokenInfo"]["status"]
                   for e in call[3]["localAuthorizationList"]}
        assert entries == {"A1": "Accepted", "B1": "Blocked"}
        assert versions == [1, 2]


async def test_metrics(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await c.result("Heartbeat", {})
        await c.send_raw("junk", "-1")
        await csms_server.wait_connected("CP1")
        status, text = await api(csms_server, "GET", "/metrics")
    assert status == 200
    assert "voltledger_connected_stations 1.0" in text
    assert 'voltledger_messages_total{action="Heartbeat",result="ok"} 1.0' in text
    assert 'voltledger_messages_total{action="-",result="rejected"} 1.0' in text
    assert "voltledger_handler_seconds_bucket" in text
    assert "voltledger_settlement_backlog 0.0" in text
    assert "voltledger_settlement_gas_used 0.0" in text
    # the SQLite file's write turn: held by this node's commits (the station added, ...)
    held = next(line for line in text.splitlines()
                if line.startswith('voltledger_storage_write_turn_seconds_total{state="held"}'))
    assert float(held.split()[-1]) > 0


async def test_station_status_shows_online(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        await c.result("StatusNotification",
                       {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
        _, stations = await api(csms_server, "GET", "/stations")
        assert stations[0]["online"] is True
        _, one = await api(csms_server, "GET", "/stations/CP1")
        assert one["connectors"][0]["status"] == "Available"
        assert one["recent_events"]
    await asyncio.sleep(0.2)
    _, stations = await api(csms_server, "GET", "/stations")
    assert stations[0]["online"] is False


async def run_cli(server: RunningServer, *args: str,
                  env_extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {**os.environ, **(env_extra or {}), "CSMS_DATA_DIR": server.settings.data_dir,
           "CSMS_ADMIN_PORT": str(server.app.admin.port), "CSMS_DB": server.settings.db}  # type: ignore[union-attr]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "csms", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_cli_remote_commands(csms_server: RunningServer, version: str) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", [version]) as c:
        await csms_server.wait_connected("CP1")
        cli = asyncio.create_task(run_cli(csms_server, "remote", "reset", "CP1", "--hard"))
        call = await answer_next(c, {"status": "Accepted"})
        code, out, err = await cli
        assert code == 0, err
        assert "CP1: Accepted" in out
        assert call[2] == "Reset"
        code, out, err = await run_cli(csms_server, "remote", "availability", "CP1", "sideways")
        assert code == 2
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    code, out, err = await run_cli(csms_server, "remote", "reset", "CP1")
    assert code == 1
    assert "not connected" in err


@pytest.mark.parametrize(("user", "recorded"), [
    ("alice", "cli:alice"), ("jos\u00e9", "cli:jos\\xe9")])
async def test_cli_remote_commands_are_audited_as_who_ran_them(
    csms_server: RunningServer, user: str, recorded: str,
) -> None:
    """As the other commands: cli:<the user>, not the bare word "cli"; claimed by the CLI
    (X-Actor) beside the token that really acted."""
    await csms_server.add_station("CP1")
    users = {name: user for name in ("LOGNAME", "USER", "LNAME", "USERNAME")}
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await csms_server.wait_connected("CP1")
        cli = asyncio.create_task(run_cli(csms_server, "remote", "unlock", "CP1",
                                          env_extra=users))
        await answer_next(c, {"status": "Unlocked"})
        code, _, err = await cli
        assert code == 0, err
    code, _, err = await run_cli(csms_server, "remote", "reset", "CP1", env_extra=users)
    assert code == 1, err  # refused (offline): audited all the same
    audit = await csms_server.repo.read(lambda tx: tx.list_audit(10))
    assert [(a["actor"], a["claimed_actor"], a["action"]) for a in audit] == [
        ("admin@127.0.0.1", recorded, "reset"), ("admin@127.0.0.1", recorded, "unlock")]


@pytest.mark.parametrize("path", [
    "/audit?limit=abc", "/audit?limit=-1", "/audit?limit=0", "/audit?limit=1.5",
    "/audit?limit=", "/audit?limit=99999999999999999999", "/audit?limit=1&limit=2",
    "/audit?since=yesterday", "/sessions?active=maybe", "/sessions?limit=x",
    "/sessions?station=a:b", "/sessions?station=" + "x" * 49, "/sessions?order=id",
    "/stations?all=1", "/stations/CP1?x=1", "/sessions/1?x=1", "/metrics?name=x",
    "/openapi.json?v=2",
    # digits Python's isdigit() takes and int() refuses ("²"), or reads ("٣")
    "/audit?limit=%C2%B2", "/audit?limit=%D9%A3", "/sessions/%C2%B2", "/sessions?before=%C2%B2",
])
async def test_bad_query_parameters_get_400(csms_server: RunningServer, path: str) -> None:
    status, body = await api(csms_server, "GET", path)
    assert status == 400, (path, status, body)
    assert isinstance(body, dict) and body["error"]


@pytest.mark.parametrize("path", [
    "/audit", "/audit?limit=5", "/sessions?active=true", "/sessions?active=0",
    "/sessions?station=CP1&limit=10", "/stations", "/metrics"])
async def test_good_query_parameters(csms_server: RunningServer, path: str) -> None:
    assert (await api(csms_server, "GET", path))[0] == 200


async def test_command_metric_labels_come_from_a_fixed_set(csms_server: RunningServer) -> None:
    """Neither a caller (command names) nor a station (status words) adds label values."""
    await csms_server.add_station("CP1")
    for i in range(30):
        status, _ = await api(csms_server, "POST", f"/stations/CP1/commands/evil-{i}", {})
        assert status == 404
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await csms_server.wait_connected("CP1")
        for i in range(5):
            req = asyncio.create_task(api(csms_server, "POST", "/stations/CP1/commands/reset",
                                          {}))
            await answer_next(c, {"status": f"Weird{i}"})
            assert (await req)[0] in (200, 502)
    from csms.admin import COMMAND_RESULTS
    from csms.translate.commands import COMMANDS

    metric = csms_server.central.metrics.commands
    labels = {(s.labels["command"], s.labels["result"])
              for m in metric.collect() for s in m.samples}
    assert {c for c, _ in labels} <= set(COMMANDS) | {"unknown"}
    assert {r for _, r in labels} <= {"accepted", "rejected", "other", "error",
                                     *COMMAND_RESULTS.values()}
    assert ("unknown", "unknown_command") in labels


async def test_admin_beyond_loopback_needs_the_flag(tmp_path: Path) -> None:
    from csms.admin import AdminApi, AdminNotPublic
    from csms.metrics import Metrics

    api_ = AdminApi(None, None, "t" * 32, Metrics(), "0.0.0.0", 0)  # type: ignore[arg-type]
    with pytest.raises(AdminNotPublic):
        await api_.start()


def test_serve_refuses_an_admin_host_beyond_loopback(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "csms", "serve", "--port", "0", "--admin-port", "0",
         "--admin-host", "0.0.0.0", "--db", str(tmp_path / "a.db"),
         "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--admin-public" in refused.stderr


def test_admin_beyond_loopback_with_the_flag_warns(tmp_path: Path) -> None:
    from bench.common import free_port, wait_port

    admin = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "csms", "serve", "--port", "0", "--admin-port", str(admin),
         "--admin-host", "0.0.0.0", "--admin-public", "--db", str(tmp_path / "a.db"),
         "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        wait_port(admin)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert "WARNING" in out and "--admin-public" in out
    assert "reachable beyond this machine" in err  # and in the log
