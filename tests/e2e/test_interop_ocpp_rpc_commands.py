"""The strict ocpp-rpc client (npm) against what the driver sees and the remaining
messages: our CALLs (CostUpdated, display messages, ClearCache, GetCompositeSchedule,
PublishFirmware / UnpublishFirmware to a local controller...) must pass its schema
checks, and its reports must pass ours."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from support import RunningServer, csms_cli
from support.admin import api

from .test_interop_ocpp_rpc import NODE_MODULES, node_ready

SCRIPT = Path(__file__).with_name("interop") / "ocpp_rpc_commands.js"

# protocol -> (command, args, the action the client must see)
COMMANDS: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    "ocpp1.6": [
        ("clear-cache", {}, "ClearCache"),
        ("get-composite-schedule", {"connector": 1, "duration": 600}, "GetCompositeSchedule"),
        ("trigger", {"message": "LogStatusNotification"}, "ExtendedTriggerMessage"),
        ("cost-updated", {}, "DataTransfer"),
    ],
    "ocpp2.0.1": [
        ("cost-updated", {}, "CostUpdated"),
        ("set-display-message", {"message_id": 7, "text": "Willkommen", "language": "de"},
         "SetDisplayMessage"),
        ("get-display-messages", {}, "GetDisplayMessages"),
        ("clear-display-message", {"message_id": 7}, "ClearDisplayMessage"),
        ("clear-cache", {}, "ClearCache"),
        ("get-composite-schedule", {"connector": 1, "duration": 600}, "GetCompositeSchedule"),
        ("get-transaction-status", {"transaction_id": "interop-cost-1"},
         "GetTransactionStatus"),
        ("customer-information", {"tag": "CAFE01"}, "CustomerInformation"),
        ("set-network-profile", {"url": "wss://csms.example.org/ocpp"}, "SetNetworkProfile"),
        ("get-charging-profiles", {}, "GetChargingProfiles"),
        ("publish-firmware", {"version": "lc-1", "retries": 2, "retry_interval": 30},
         "PublishFirmware"),
        ("unpublish-firmware", {"version": "lc-1"}, "UnpublishFirmware"),
    ],
}
LC_IMAGE = b"local controller image\n" * 64


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_strict_client_takes_our_commands_and_we_take_its_reports(
    csms_server: RunningServer, protocol: str,
) -> None:
    node = node_ready()
    await csms_server.add_station("INTEROP-2")
    await csms_server.add_tag("CAFE01")
    await csms_server.add_tariff("0.39")
    marked = await asyncio.to_thread(csms_cli, csms_server, "stations", "running-cost",
                                     "INTEROP-2")
    assert marked.returncode == 0
    image = csms_server.settings.data_dir + "/lc-1.bin"
    Path(image).parent.mkdir(parents=True, exist_ok=True)
    Path(image).write_bytes(LC_IMAGE)
    added = await asyncio.to_thread(csms_cli, csms_server, "firmware", "add", image,
                                    "--version", "lc-1", "--data-dir",
                                    csms_server.settings.data_dir)
    assert added.returncode == 0, added.stderr
    proc = await asyncio.create_subprocess_exec(
        str(node), str(SCRIPT), csms_server.url, "INTEROP-2", protocol, "CAFE01",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert proc.stderr is not None and proc.stdout is not None
    async with asyncio.timeout(40):
        line = await proc.stderr.readline()
        assert line.strip() == b"READY", line
        for command, args, action in COMMANDS[protocol]:
            status, body = await api(csms_server, "POST",
                                     f"/stations/INTEROP-2/commands/{command}", args)
            assert (status, body.get("action")) == (200, action), (command, body)
        status, body = await api(csms_server, "POST", "/stations/INTEROP-2/commands/reset", {})
        assert status == 200
        out, _ = await proc.communicate()
    result = json.loads(out)
    assert "error" not in result, result
    assert result["failures"] == []  # no strict-mode schema failure on either side
    seen = [c["method"] for c in result["csmsCalls"]]
    assert seen == [a for _, _, a in COMMANDS[protocol]] + ["Reset"]
    calls = {c["method"]: c["params"] for c in result["csmsCalls"]}
    r = result["responses"]
    if protocol == "ocpp1.6":
        assert r["start"]["idTagInfo"]["status"] == "Accepted"
        cost = json.loads(calls["DataTransfer"]["data"])
        assert (calls["DataTransfer"]["messageId"], cost["cost"]) == ("RunningCost", 1.56)
    else:
        assert r["updated"]["totalCost"] == 1.56  # 4 kWh x 0.39
        assert calls["CostUpdated"] == {"totalCost": 1.56, "transactionId": "interop-cost-1"}
        assert r["evNeeds"] == {"status": "Accepted"}
        assert r["displayMessages"] == {} and r["customer"] == {}
        published = calls["PublishFirmware"]
        md5 = hashlib.md5(LC_IMAGE, usedforsecurity=False).hexdigest()
        assert published["checksum"] == md5 and published["retries"] == 2
        assert calls["UnpublishFirmware"] == {"checksum": md5}
        assert r["published"] == {}
        _, rows = await api(csms_server, "GET", "/transfers?kind=publish")
        assert rows[0]["id"] == published["requestId"]
        # Published (its location kept), then Unpublished by the operator's command
        assert rows[0]["locations"] == [f"http://192.0.2.10/fw/{md5}"]
        assert rows[0]["status"] in ("Published", "Unpublished")
    assert proc.returncode == 0
