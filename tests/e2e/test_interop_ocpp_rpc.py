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


MAINTENANCE = Path(__file__).with_name("interop") / "ocpp_rpc_maintenance.js"


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_strict_ocpp_rpc_client_reservation_and_firmware(
    csms_server: RunningServer, protocol: str
) -> None:
    """1.6: the operator's ReserveNow, then a start on the reservation, which it ends;
    2.0.1: UpdateFirmware, the download from the file listener and its status flow."""
    import hashlib

    from csms.domain.maintenance import FirmwareImage
    from csms.filestore import firmware_path
    from csms.service.ports import Tx
    from support.admin import api

    node = node_ready()
    await csms_server.add_station("INTEROP-2")
    await csms_server.add_tag("CAFE02")
    blob = b"interop firmware image\n" * 100
    digest = hashlib.sha256(blob).hexdigest()
    path = firmware_path(csms_server.settings.data_dir, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)

    async def add(tx: Tx) -> None:
        from datetime import UTC, datetime

        await tx.add_firmware(FirmwareImage("interop-2", "fw.bin", len(blob), digest,
                                            datetime.now(UTC)))

    await csms_server.repo.unit(add)
    proc = await asyncio.create_subprocess_exec(
        str(node), str(MAINTENANCE), csms_server.url, "INTEROP-2", protocol, "CAFE02",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert proc.stderr is not None and proc.stdout is not None
    async with asyncio.timeout(30):
        line = await proc.stderr.readline()
        assert line.strip() == b"READY", line
        await csms_server.wait_connected("INTEROP-2")
        if protocol == "ocpp1.6":
            status, answer = await api(csms_server, "POST",
                                       "/stations/INTEROP-2/commands/reserve",
                                       {"tag": "CAFE02", "until": "+1h", "connector": 1})
        else:
            status, answer = await api(csms_server, "POST",
                                       "/stations/INTEROP-2/commands/update-firmware",
                                       {"version": "interop-2"})
        assert status == 200 and answer["status"] == "Accepted", answer
        out, _ = await proc.communicate()
    result = json.loads(out)
    assert "error" not in result, result
    assert result["failures"] == []  # no strict-mode schema failure on either side
    assert proc.returncode == 0

    async def read(tx: Tx) -> str | None:
        if protocol == "ocpp1.6":
            r = await tx.get_reservation(answer["reservation_id"])
            return None if r is None else r.status.value
        t = await tx.get_transfer(answer["request_id"])
        return None if t is None else t.status

    recorded = await csms_server.repo.read(read)
    if protocol == "ocpp1.6":
        [call] = result["csmsCalls"]
        assert call["params"]["reservationId"] == answer["reservation_id"]
        assert result["responses"]["start"]["idTagInfo"]["status"] == "Accepted"
        assert recorded == "used"
    else:
        assert result["downloadStatus"] == 200 and result["downloadBytes"] == len(blob)
        assert result["statuses"] == ["Downloading", "Downloaded", "Installing", "Installed"]
        assert recorded == "Installed"
