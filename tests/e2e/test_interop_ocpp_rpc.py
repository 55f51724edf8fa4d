"""An independent strict OCPP client (ocpp-rpc from npm) runs full sessions against us."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from support import IN_CI, RunningServer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("interop") / "ocpp_rpc_session.js"
NODE_MODULES = ROOT / ".tools" / "node_modules"


def node_ready() -> str | None:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "ocpp-rpc").is_dir():
        if IN_CI:
            pytest.fail("node and .tools/node_modules/ocpp-rpc are required (make install)")
        pytest.skip("node or ocpp-rpc missing: run make install")
    return node


@pytest.mark.parametrize(("protocol", "version"), [("ocpp1.6", "1.6"), ("ocpp2.0.1", "2.0.1")])
async def test_strict_ocpp_rpc_client_full_session(
    csms_server: RunningServer, protocol: str, version: str
) -> None:
    node = node_ready()
    await csms_server.add_station("INTEROP-1")
    await csms_server.add_tag("CAFE01")
    proc = await asyncio.create_subprocess_exec(
        str(node), str(SCRIPT), csms_server.url, "INTEROP-1", protocol, "CAFE01",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert proc.stderr is not None and proc.stdout is not None
    async with asyncio.timeout(30):
        line = await proc.stderr.readline()
        assert line.strip() == b"READY", line
        reset = {"type": "Soft"} if version == "1.6" else {"type": "Immediate"}
        assert await csms_server.call("INTEROP-1", "Reset", reset) == {"status": "Accepted"}
        out, _ = await proc.communicate()
    result = json.loads(out)
    assert "error" not in result, result
    assert result["failures"] == []  # no strict-mode schema failure on either side
    assert result["negotiated"] == protocol
    assert result["responses"]["boot"]["status"] == "Accepted"
    assert result["responses"]["authorize"] in (
        {"idTagInfo": {"status": "Accepted"}}, {"idTokenInfo": {"status": "Accepted"}})
    assert result["csmsCalls"] == [{"method": "Reset", "params": reset}]
    assert proc.returncode == 0
    [session] = await csms_server.sessions("INTEROP-1")
    assert session["status"] == "completed"
    assert session["ocpp_version"] == version
    assert session["energy_wh"] == result["expectedEnergyWh"]
    assert session["stop_reason"] == "EVDisconnected"
