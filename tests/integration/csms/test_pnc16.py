"""ISO 15118 Plug & Charge with OCPP 1.6 (the OCA application note) over real sockets: the
simulated 1.6 station's wrapped Authorize, Get15118EVCertificate, GetCertificateStatus and
V2G SignCertificate; the operator's certificate commands wrapped for it; and what a hostile
or broken station puts in the DataTransfer."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chargers_sim import Station
from csms.protocol.pnc16 import PNC_VENDOR_ID, wrap
from csms.service.certificates import hash_data, new_ca
from support import RunningServer, station_events, until
from support.admin import api
from support.client import RawClient

from .test_certificates import csr

FAST: dict[str, Any] = {"meter_interval": 60, "call_timeout": 5, "retry_interval": 0.1,
                        "backoff_base": 0.05, "backoff_cap": 0.2}
EMAID = "DEMA1234567890"
BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}


@pytest.fixture
async def pnc_server(csms_server: RunningServer, tmp_path: Path) -> RunningServer:
    """The central system with V2G CSRs signed, EV certificate answers in a folder, and
    the GetConfiguration after a 1.6 boot (how a station announces Plug & Charge)."""
    await csms_server.stop()
    folder = tmp_path / "ev"
    folder.mkdir()
    csms_server.settings = replace(csms_server.settings, ev_cert_dir=str(folder),
                                   v2g_sign=True, boot_get_configuration=True)
    await csms_server.start()
    return csms_server


def contract(server: RunningServer, emaid: str = EMAID,
             days: int = 30) -> tuple[str, x509.Certificate]:
    """A contract certificate the central system's CA issues (as a mobility operator's
    would be), PEM and parsed."""
    certs = server.app.service.certificates
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, emaid)])).sign(key, hashes.SHA256())
    cert = certs.ca.sign(request, days, dt.datetime.now(dt.UTC))
    return cert.public_bytes(serialization.Encoding.PEM).decode(), cert


async def keep(server: RunningServer, station_id: str, cert: x509.Certificate) -> None:
    """Record a certificate as issued (the local provider knows what it issued)."""
    async def work(tx: Any) -> None:
        await tx.add_issued_certificate(
            format(cert.serial_number, "x"), station_id, cert.not_valid_before_utc,
            cert.not_valid_after_utc, cert.public_bytes(serialization.Encoding.PEM).decode(),
            dt.datetime.now(dt.UTC), "ContractCertificate")

    await server.repo.unit(work)


async def variables(server: RunningServer, station_id: str) -> dict[str, dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.device_variables(station_id))

    return {r["var_key"]: r for r in await server.repo.read(work)}


async def test_a_1_6_station_does_plug_and_charge_over_data_transfer(
        pnc_server: RunningServer) -> None:
    server = pnc_server
    await server.add_station("CP-PNC")
    await server.add_tag(EMAID)
    st = Station(server.url, "CP-PNC", "1.6", pnc=True, **FAST)
    await st.start()
    try:
        # the boot brought a GetConfiguration: the station announced Plug & Charge
        rows = await until(lambda: variables(server, "CP-PNC"), "the stored configuration")
        assert rows["OCPP16.ISO15118PnCEnabled"]["value"] == "true"

        # SignCertificate V2GCertificate -> Accepted -> CertificateSigned in a DataTransfer
        assert await st.pnc_sign_v2g() == {"status": "Accepted"}
        await until(lambda: _true(st.pki.v2g_chain is not None), "the V2G chain installed")
        assert st.pki.v2g_chain is not None
        leaf = x509.load_pem_x509_certificates(st.pki.v2g_chain.encode())[0]
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]  # the SECC is a TLS server
        issued = await until(lambda: _issued(server, "CP-PNC", "Accepted"),
                             "CertificateSigned answered Accepted")
        assert [r["certificate_type"] for r in issued] == ["V2GCertificate"]
        assert await server.app.service.certificates.due_for_renewal() == []

        # Authorize with a contract certificate the CA issued: Accepted, and its status
        pem, cert = contract(server)
        await keep(server, "MO", cert)
        answer = await st.pnc_authorize(EMAID, certificate=pem)
        assert answer == {"idTokenInfo": {"status": "Accepted"}, "certificateStatus": "Accepted"}
        by_hash = hash_data(cert, server.app.service.certificates.ca.cert)
        answer = await st.pnc_authorize(EMAID, hash_data=[
            {**by_hash, "responderURL": "http://ocsp.example"}])
        assert answer["certificateStatus"] == "Accepted"
        # another CA's contract: not authorized, and why
        other = new_ca("Elsewhere")
        key = ec.generate_private_key(ec.SECP256R1())
        foreign = other.sign(x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, EMAID)])).sign(key, hashes.SHA256()), 30,
            dt.datetime.now(dt.UTC))
        answer = await st.pnc_authorize(
            EMAID, certificate=foreign.public_bytes(serialization.Encoding.PEM).decode())
        assert answer == {"idTokenInfo": {"status": "Invalid"},
                          "certificateStatus": "CertChainError"}
        # the eMAID written with separators is the same contract
        await server.add_tag("DE-MA1-234567890")
        answer = await st.pnc_authorize("DE-MA1-234567890", certificate=pem)
        assert answer["certificateStatus"] == "Accepted"
        # another eMAID with this certificate: not its contract
        await server.add_tag("DEMA0000000000")
        answer = await st.pnc_authorize("DEMA0000000000", certificate=pem)
        assert answer == {"idTokenInfo": {"status": "Invalid"},
                          "certificateStatus": "CertChainError"}
        # the station passes its own SECC certificate (issued by the same CA, CN = its
        # id) off as a contract for a tag named like it: refused
        await server.add_tag("CP-PNC")
        answer = await st.pnc_authorize("CP-PNC", certificate=st.pki.v2g_chain)
        assert answer == {"idTokenInfo": {"status": "Invalid"},
                          "certificateStatus": "CertChainError"}
        # an expired contract
        _, old = contract(server, days=0)
        await keep(server, "MO", old)
        answer = await st.pnc_authorize(EMAID, hash_data=[{
            **hash_data(old, server.app.service.certificates.ca.cert),
            "responderURL": "http://ocsp.example"}])
        assert answer == {"idTokenInfo": {"status": "Invalid"},
                          "certificateStatus": "CertificateExpired"}
        # an eMAID we do not know, with its good certificate: the token decides
        unknown_pem, unknown = contract(server, "DEMA9999999999")
        await keep(server, "MO", unknown)
        answer = await st.pnc_authorize("DEMA9999999999", certificate=unknown_pem)
        assert answer == {"idTokenInfo": {"status": "Unknown"},
                          "certificateStatus": "Accepted"}

        # GetCertificateStatus: a real OCSP answer for what the CA issued
        answer = await st.pnc_certificate_status({**by_hash,
                                                  "responderURL": "http://ocsp.example"})
        assert answer["status"] == "Accepted"
        response = ocsp.load_der_ocsp_response(base64.b64decode(answer["ocspResult"]))
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == cert.serial_number

        # Get15118EVCertificate from the local provider's folder
        exi = base64.b64encode(b"certificate installation request").decode()
        missing = await st.pnc_ev_certificate(exi)
        assert missing["status"] == "Failed" and missing["exiResponse"] == ""
        exi_answer = base64.b64encode(b"certificate installation response").decode()
        (Path(server.settings.ev_cert_dir) / (hashlib.sha256(exi.encode()).hexdigest()
                                              + ".exi")).write_text(exi_answer)
        assert await st.pnc_ev_certificate(exi) == {"status": "Accepted",
                                                    "exiResponse": exi_answer}
    finally:
        await st.close()


async def test_the_operator_manages_a_1_6_stations_iso15118_certificates(
        pnc_server: RunningServer) -> None:
    server = pnc_server
    await server.add_station("CP-OPS")
    st = Station(server.url, "CP-OPS", "1.6", pnc=True, **FAST)
    await st.start()
    try:
        await until(lambda: variables(server, "CP-OPS"), "the stored configuration")
        root = server.app.service.certificates.ca.cert_pem
        path = "/stations/CP-OPS/commands/"
        status, body = await api(server, "POST", path + "install-certificate",
                                 {"type": "V2GRootCertificate", "certificate": root})
        assert status == 200, body
        assert (body["status"], body["action"], body["via"]) == (
            "Accepted", "InstallCertificate", "DataTransfer")
        assert st.pnc_received[-1][0] == "InstallCertificate"
        assert st.pki.roots["V2GRootCertificate"]

        status, body = await api(server, "POST", path + "get-installed-certificates",
                                 {"types": ["V2GRootCertificate"]})
        assert status == 200 and body["status"] == "Accepted", body
        [entry] = body["response"]["certificateHashDataChain"]
        assert entry["certificateType"] == "V2GRootCertificate"

        # the station announced Plug & Charge: DeleteCertificate goes wrapped
        status, body = await api(server, "POST", path + "delete-certificate",
                                 {"hash": entry["certificateHashData"]})
        assert status == 200 and (body["status"], body["via"]) == ("Accepted", "DataTransfer")
        assert st.pki.roots["V2GRootCertificate"] == []
        status, body = await api(server, "POST", path + "delete-certificate",
                                 {"hash": entry["certificateHashData"]})
        assert status == 200 and body["status"] == "NotFound"
        # ... unless the operator says the security extension's
        status, body = await api(server, "POST", path + "delete-certificate",
                                 {"hash": entry["certificateHashData"], "pnc": False})
        assert status == 200 and body["action"] == "DeleteCertificate" and "via" not in body

        # TriggerMessage: the station sends a V2G CSR, and gets its certificate
        status, body = await api(server, "POST", path + "trigger",
                                 {"message": "V2GCertificate"})
        assert status == 200 and (body["status"], body["action"]) == ("Accepted",
                                                                      "TriggerMessage")
        assert st.pnc_received[-1] == ("TriggerMessage",
                                       {"requestedMessage": "SignV2GCertificate"})
        await until(lambda: _issued(server, "CP-OPS", "Accepted"), "the V2G certificate")
        assert st.pki.v2g_chain is not None
    finally:
        await st.close()


async def test_a_station_without_plug_and_charge_is_not_sent_it(
        pnc_server: RunningServer) -> None:
    server = pnc_server
    await server.add_station("CP-PLAIN")
    st = Station(server.url, "CP-PLAIN", "1.6", **FAST)
    await st.start()
    try:
        await until(lambda: variables(server, "CP-PLAIN"), "the stored configuration")
        root = server.app.service.certificates.ca.cert_pem
        status, body = await api(server, "POST", "/stations/CP-PLAIN/commands/"
                                 "install-certificate",
                                 {"type": "MORootCertificate", "certificate": root})
        assert status == 400 and "has not announced ISO 15118 Plug & Charge" in body["error"]
        assert "\n" not in body["error"]
        # a station that answers the DataTransfer UnknownVendorId: a clear error
        status, body = await api(server, "POST", "/stations/CP-PLAIN/commands/"
                                 "install-certificate",
                                 {"type": "MORootCertificate", "certificate": root,
                                  "pnc": True})
        assert status == 502 and "UnknownVendorId" in body["error"], body
        # the operator's word (station option) makes it a Plug & Charge station
        async def option(tx: Any) -> None:
            await tx.set_station_option("CP-PLAIN", "pnc", "on")

        await server.repo.unit(option)
        status, body = await api(server, "POST", "/stations/CP-PLAIN/commands/trigger",
                                 {"message": "V2GCertificate"})
        assert status == 502  # sent (the operator said so), and the station cannot read it
        assert st.online
    finally:
        await st.close()


async def test_what_a_hostile_or_broken_station_puts_in_the_data_transfer(
        csms_server: RunningServer) -> None:
    """A malformed inner payload is Rejected with the reason in ``data``; a CSR for another
    station's id is refused exactly as in 2.0.1; the connection lives throughout."""
    server = csms_server
    await server.add_station("CP-H")
    await server.add_station("CP-VICTIM")
    async with await RawClient.connect(server.url, "CP-H", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)

        async def transfer(message_id: Any, data: Any) -> dict[str, Any]:
            payload: dict[str, Any] = {"vendorId": PNC_VENDOR_ID}
            if message_id is not None:
                payload["messageId"] = message_id
            if data is not None:
                payload["data"] = data
            return await c.result("DataTransfer", payload)

        # MaEVe's real frame: read, and answered by the provider (another issuer)
        answer = await c.result("DataTransfer", MAEVE_FRAME)
        assert answer["status"] == "Accepted"
        inner = json.loads(answer["data"])
        assert inner["status"] == "Failed" and "not issued" in inner["statusInfo"][
            "additionalInfo"]
        cases = [
            ("Authorize", "{not json", "not JSON"),
            ("Authorize", "[]", "not a JSON object"),
            ("Authorize", json.dumps({"idTag": EMAID}), "Authorize request"),
            ("Authorize", None, "JSON string"),
            ("SignCertificate", json.dumps({"csr": 5}), "SignCertificate request"),
            ("Get15118EVCertificate", json.dumps({"iso15118SchemaVersion": "x",
                                                  "action": "Steal", "exiRequest": "AA=="}),
             "Get15118EVCertificate request"),
            ("GetCertificateStatus", "[" * 50_000, "not JSON"),
        ]
        for message_id, data, reason in cases:
            answer = await transfer(message_id, data)
            assert answer["status"] == "Rejected", (message_id, answer)
            assert reason in answer["data"] and "\n" not in answer["data"], answer
        # messages of the note the other way round, or none of the note's
        for message_id in ("CertificateSigned", "TriggerMessage", "Steal", None):
            assert await transfer(message_id, "{}") == {"status": "UnknownMessageId"}
        # another vendor: as before
        assert await c.result("DataTransfer", {"vendorId": "com.example"}) == {
            "status": "UnknownVendorId"}
        # a CSR for another station's id: refused as in 2.0.1 (V2G signing is off here)
        answer = await transfer("SignCertificate", json.dumps(
            {"csr": csr("CP-VICTIM"), "certificateType": "V2GCertificate"}))
        assert answer["status"] == "Accepted"
        assert json.loads(answer["data"])["status"] == "Rejected"
        # the connection lives
        assert "currentTime" in await c.result("Heartbeat", {})
        assert c.calls.empty()
    reasons = [e["reason"] for e in await station_events(server, "CP-H", "data_transfer")
               if e.get("status") == "Rejected"]
    assert len(reasons) == len(cases)


async def test_a_csr_for_another_station_is_refused_even_with_v2g_signing_on(
        pnc_server: RunningServer) -> None:
    server = pnc_server
    await server.add_station("CP-H2")
    await server.add_station("CP-VICTIM")
    async with await RawClient.connect(server.url, "CP-H2", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        get_config = await c.calls.get()  # the boot's GetConfiguration
        assert get_config[2] == "GetConfiguration"
        await c.answer(get_config[1], {"configurationKey": [
            {"key": "ISO15118PnCEnabled", "readonly": False, "value": "true"}]})
        answer = await c.result("DataTransfer", wrap("SignCertificate", {
            "csr": csr("CP-VICTIM"), "certificateType": "V2GCertificate"}))
        inner = json.loads(answer["data"])
        assert inner["status"] == "Rejected"
        assert "is not the station id 'CP-H2'" in inner["statusInfo"]["additionalInfo"]
        # nothing follows: no CertificateSigned for a refused CSR
        await asyncio.sleep(0.2)
        assert c.calls.empty()
        # its own id: signed, and CertificateSigned arrives in a DataTransfer
        answer = await c.result("DataTransfer", wrap("SignCertificate", {
            "csr": csr("CP-H2"), "certificateType": "V2GCertificate"}))
        assert json.loads(answer["data"]) == {"status": "Accepted"}
        async with asyncio.timeout(5):
            call = await c.calls.get()
        assert call[2] == "DataTransfer" and call[3]["messageId"] == "CertificateSigned"
        signed = json.loads(call[3]["data"])
        assert signed["certificateType"] == "V2GCertificate"
        # the station answers with something that is no CertificateSignedResponse
        await c.answer(call[1], {"status": "Accepted", "data": "{\"status\": \"Maybe\"}"})
        issued = await until(lambda: _issued(server, "CP-H2", "Unreadable"),
                             "the unreadable answer kept")
        assert len(issued) == 1
    events = await station_events(server, "CP-H2", "security")
    assert any(e.get("type") == "CsrRejected" and "CP-VICTIM" in e.get("reason", "")
               for e in events)
    assert any(e.get("type") == "CertificateSignedRejected" for e in events)


MAEVE_FRAME = {
    "vendorId": "org.openchargealliance.iso15118pnc",
    "messageId": "GetCertificateStatus",
    "data": "{\"ocspRequestData\":{\"hashAlgorithm\":\"SHA256\",\"issuerKeyHash\":\"key-hash\","
            "\"issuerNameHash\":\"name-hash\",\"responderURL\":\"http://ocsp-qa.example.com:8080\","
            "\"serialNumber\":\"serial-number\"}}",
}


async def _true(value: bool) -> bool:
    return value


async def _issued(server: RunningServer, station_id: str, status: str) -> list[dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.list_issued_certificates(station_id))

    rows = await server.repo.read(work)
    return [r for r in rows if r["status"] == status]


async def test_the_cli(pnc_server: RunningServer, tmp_path: Path) -> None:
    from .test_admin import run_cli

    server = pnc_server
    await server.add_station("CP-CLI")
    code, _, err = await run_cli(server, "stations", "pnc", "CP-CLI", "sideways")
    assert code == 2 and "one of on, off, auto" in err and "Traceback" not in err
    code, _, err = await run_cli(server, "stations", "pnc", "NOPE", "on")
    assert code == 2 and "no station 'NOPE'" in err
    st = Station(server.url, "CP-CLI", "1.6", pnc=True, **FAST)
    await st.start()
    try:
        await until(lambda: variables(server, "CP-CLI"), "the stored configuration")
        root = tmp_path / "root.pem"
        root.write_text(server.app.service.certificates.ca.cert_pem)
        code, out, err = await run_cli(server, "certificates", "install", "CP-CLI", str(root),
                                       "--type", "MORootCertificate")
        assert code == 0, err
        assert "CP-CLI: Accepted (InstallCertificate in DataTransfer)" in out
        code, out, err = await run_cli(server, "certificates", "list-installed", "CP-CLI",
                                       "--type", "MORootCertificate", "--json")
        assert code == 0, err
        body = json.loads(out)
        assert body["via"] == "DataTransfer"
        assert body["response"]["certificateHashDataChain"][0]["certificateType"] == \
            "MORootCertificate"
        # off: the V2G commands are refused with one line
        code, _, err = await run_cli(server, "stations", "pnc", "CP-CLI", "off")
        assert code == 0
        code, _, err = await run_cli(server, "remote", "trigger", "CP-CLI", "V2GCertificate")
        assert code == 2 and "has not announced ISO 15118 Plug & Charge" in err
        assert len(err.strip().splitlines()) == 1
    finally:
        await st.close()
