"""The strict ocpp-rpc client (npm) doing ISO 15118 Plug & Charge over 1.6 DataTransfer:
our wrapped answers and CALLs must pass its 1.6 schema checks, its wrapped 2.0.1 messages
ours."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support import RunningServer
from support.admin import api

from .test_interop_ocpp_rpc import NODE_MODULES, node_ready

SCRIPT = Path(__file__).with_name("interop") / "ocpp_rpc_pnc16.js"
EMAID = "DEMA1234567890"


async def test_strict_1_6_client_does_plug_and_charge_over_data_transfer(
    csms_server: RunningServer, tmp_path: Path,
) -> None:
    node = node_ready()
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, v2g_sign=True,
                                   boot_get_configuration=True)
    await csms_server.start()
    await csms_server.add_station("INTEROP-PNC")
    await csms_server.add_tag(EMAID)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "INTEROP-PNC")])).sign(
        ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    csr_file = tmp_path / "v2g.csr"
    csr_file.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    proc = await asyncio.create_subprocess_exec(
        str(node), str(SCRIPT), csms_server.url, "INTEROP-PNC", str(csr_file), EMAID,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert proc.stderr is not None and proc.stdout is not None
    async with asyncio.timeout(40):
        line = await proc.stderr.readline()
        assert line.strip() == b"READY", line
        root = csms_server.app.service.certificates.ca.cert_pem
        status, body = await api(csms_server, "POST",
                                 "/stations/INTEROP-PNC/commands/install-certificate",
                                 {"type": "V2GRootCertificate", "certificate": root})
        assert status == 200 and (body["status"], body["via"]) == ("Accepted", "DataTransfer")
        out, _ = await proc.communicate()
    result = json.loads(out)
    assert "error" not in result, result
    assert result["failures"] == []  # no strict-mode schema failure on either side
    r = result["responses"]
    assert r["authorize"] == {"status": "Accepted",
                              "inner": {"idTokenInfo": {"status": "Accepted"}}}
    assert r["sign"] == {"status": "Accepted", "inner": {"status": "Accepted"}}
    assert r["broken"]["status"] == "Rejected" and "Authorize request" in r["broken"]["data"]
    assert "currentTime" in r["heartbeat"]
    calls = result["csmsCalls"]
    assert [c["method"] for c in calls] == ["GetConfiguration", "DataTransfer", "DataTransfer"]
    signed, install = calls[1], calls[2]
    assert (signed["vendorId"], signed["messageId"]) == (
        "org.openchargealliance.iso15118pnc", "CertificateSigned")
    assert signed["inner"]["certificateType"] == "V2GCertificate"
    leaf = x509.load_pem_x509_certificates(signed["inner"]["certificateChain"].encode())[0]
    assert leaf.subject.rfc4514_string() == "CN=INTEROP-PNC"
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    assert install["messageId"] == "InstallCertificate"
    assert install["inner"] == {"certificateType": "V2GRootCertificate", "certificate": root}

    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.list_issued_certificates("INTEROP-PNC"))

    async with asyncio.timeout(5):  # the station's answer is kept once it is read
        while [i["status"] for i in await csms_server.repo.read(work)] != ["Accepted"]:
            await asyncio.sleep(0.02)
    assert proc.returncode == 0
