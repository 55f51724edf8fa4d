"""An independent strict OCPP client (ocpp-rpc from npm) runs full sessions against us."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

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


async def test_strict_ocpp_rpc_client_certificate_and_base_report(
    csms_server: RunningServer, tmp_path: Path
) -> None:
    """2.0.1 SignCertificate -> CertificateSigned and GetBaseReport -> NotifyReport in two
    parts, with a strict client on the other side."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from support.admin import api

    node = node_ready()
    await csms_server.add_station("INTEROP-2")
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "INTEROP-2")])).sign(
        ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    csr_file = tmp_path / "interop.csr"
    csr_file.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    proc = await asyncio.create_subprocess_exec(
        str(node), str(SCRIPT.with_name("ocpp_rpc_security.js")), csms_server.url, "INTEROP-2",
        str(csr_file), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert proc.stderr is not None and proc.stdout is not None
    async with asyncio.timeout(30):
        line = await proc.stderr.readline()
        assert line.strip() == b"READY", line
        status, answer = await api(csms_server, "POST",
                                   "/stations/INTEROP-2/commands/get-base-report",
                                   {"timeout": 5})
        assert status == 200 and answer["status"] == "Accepted", answer
        out, _ = await proc.communicate()
    result = json.loads(out)
    assert "error" not in result, result
    assert result["failures"] == []  # no strict-mode schema failure on either side
    assert result["responses"]["sign"] == {"status": "Accepted"}
    signed, report = result["csmsCalls"]
    assert signed["method"] == "CertificateSigned"
    leaf = x509.load_pem_x509_certificates(signed["params"]["certificateChain"].encode())[0]
    assert leaf.subject.rfc4514_string() == "CN=INTEROP-2"
    assert report["method"] == "GetBaseReport"
    assert report["params"]["reportBase"] == "FullInventory"
    assert result["responses"]["report0"] == result["responses"]["report1"] == {}

    async def work(tx: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return (list(await tx.device_variables("INTEROP-2")),
                list(await tx.list_issued_certificates("INTEROP-2")))

    rows, issued = await csms_server.repo.read(work)
    assert {r["var_key"]: r["mutability"] for r in rows} == {
        "OCPPCommCtrlr.HeartbeatInterval": "ReadWrite",
        "OCPPCommCtrlr.MessageAttempts": "ReadOnly"}
    async with asyncio.timeout(5):  # the station's answer is kept once it is read
        while [i["status"] for i in issued] != ["Accepted"]:
            await asyncio.sleep(0.02)
            rows, issued = await csms_server.repo.read(work)
