"""Security profile 3 lifecycle over real TLS: a station's CSR signed by the built-in CA,
CertificateSigned after the answer, the station back with its new certificate, renewal,
and what hostile stations try; the local ISO 15118 provider."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from websockets.exceptions import InvalidMessage, InvalidStatus

from chargers_sim import Station
from csms.renewal import renew_due
from csms.service.certificates import hash_data
from support import RunningServer, station_events, until
from support.admin import api
from support.client import RawClient
from support.tls import ServerTls, client_certificate, server_tls

PASSWORD = "a-station-password-of-24"
FAST: dict[str, Any] = {"meter_interval": 60, "call_timeout": 5, "retry_interval": 0.1,
                        "backoff_base": 0.05, "backoff_cap": 0.2}
BOOT201 = {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}}


def csr(cn: str, key: Any = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM).decode()


async def issued(server: RunningServer, station_id: str) -> list[dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.list_issued_certificates(station_id))

    return list(reversed(await server.repo.read(work)))


async def set_profile(server: RunningServer, station_id: str, profile: int) -> None:
    async def work(tx: Any) -> None:
        station = await tx.get_station(station_id)
        station.security_profile = profile
        await tx.update_station(station)

    await server.repo.unit(work)


@pytest.fixture
async def tls(csms_server: RunningServer, tmp_path: Path) -> tuple[RunningServer, ServerTls]:
    files = server_tls(tmp_path)
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, tls_cert=str(files.cert),
                                   tls_key=str(files.key), tls_port=0)
    await csms_server.start()
    return csms_server, files


def wss(server: RunningServer) -> str:
    return f"wss://127.0.0.1:{server.central.tls_port}"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_station_gets_its_certificate_and_comes_back_with_it(
        tls: tuple[RunningServer, ServerTls], version: str, tmp_path: Path) -> None:
    server, files = tls
    await server.add_station("CP-A", password=PASSWORD, profile=2)
    st = Station(wss(server), "CP-A", version, password=PASSWORD, tls_ca=str(files.ca), **FAST)
    await st.start()
    try:
        status, answer = await api(server, "POST", "/stations/CP-A/commands/renew-certificate",
                                   {"timeout": 5})
        assert status == 200 and answer["status"] == "Accepted", answer
        # SignCertificate -> Accepted -> CertificateSigned -> installed -> reconnected
        await until(lambda: _true(st.pki.installed_chains == 1 and st.connections == 2
                                  and st.online), "the new certificate in use")
        [row] = await until(lambda: _accepted(server, "CP-A"), "CertificateSigned Accepted")
        cert = st.pki.certificate
        assert cert is not None and format(cert.serial_number, "x") == row["serial"]
        # the server trusts the built-in CA: profile 3, no password any more
        await set_profile(server, "CP-A", 3)
        st.password = None
        await st.drop_connection()
        await until(lambda: _true(st.connections == 3 and st.online),
                    "back on its certificate alone")
        assert server.central.connections["CP-A"] is not None
        # a certificate the CA issued to another station does not open CP-A
        other = await server.app.service.certificates.sign(
            "CP-B", csr("CP-B", key := ec.generate_private_key(ec.SECP256R1())),
            "ChargingStationCertificate")
        (tmp_path / "b.pem").write_text(other.chain)
        (tmp_path / "b.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        ctx = ssl.create_default_context(cafile=str(files.ca))
        ctx.load_cert_chain(tmp_path / "b.pem", tmp_path / "b.key")
        with pytest.raises(InvalidStatus) as refused:
            await RawClient.connect(wss(server), "CP-A", ["ocpp2.0.1"], ssl=ctx)
        assert refused.value.response.status_code == 403
        # nor does a certificate of a CA nobody configured, whatever its CN
        stranger = ssl.create_default_context(cafile=str(files.ca))
        stranger.load_cert_chain(*client_certificate(tmp_path, "CP-A"))
        with pytest.raises((ssl.SSLError, OSError, InvalidMessage)):
            await RawClient.connect(wss(server), "CP-A", ["ocpp2.0.1"], ssl=stranger)
    finally:
        await st.close()


async def _true(value: bool) -> bool:
    return value


async def _accepted(server: RunningServer, station_id: str) -> list[dict[str, Any]] | None:
    rows = await issued(server, station_id)
    return rows if rows and all(r["status"] == "Accepted" for r in rows) else None


async def test_hostile_csrs_are_answered_rejected_and_recorded(
        csms_server: RunningServer) -> None:
    await csms_server.add_station("CP-H")
    async with await RawClient.connect(csms_server.url, "CP-H", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        for bad in (csr("CP-OTHER"), csr("CP-H", rsa.generate_private_key(65537, 1024)),
                    "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE"
                    " REQUEST-----\n"):
            answer = await c.result("SignCertificate", {"csr": bad})
            assert answer["status"] == "Rejected"
            assert answer["statusInfo"]["reasonCode"] == "InvalidCSR"
        # beyond the schema's 5500 characters: a CALLERROR, and the connection lives on
        error = await c.call("SignCertificate", {"csr": "A" * 6000})
        assert error[0] == 4
        assert (await c.result("Heartbeat", {}))["currentTime"]
        # a good one: Accepted, then CertificateSigned with the chain
        answer = await c.result("SignCertificate", {"csr": csr("CP-H"),
                                                    "certificateType":
                                                    "ChargingStationCertificate"})
        assert answer == {"status": "Accepted"}
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2] == "CertificateSigned"
        chain = x509.load_pem_x509_certificates(call[3]["certificateChain"].encode())
        assert chain[0].subject.rfc4514_string() == "CN=CP-H" and len(chain) == 2
        await c.answer(call[1], {"status": "Rejected"})
        [_row] = await until(lambda: _rejected(csms_server, "CP-H"), "Rejected kept")
        # a flood of CSRs: 10 an hour, refused ones included (each costs a check)
        words = [(await c.result("SignCertificate", {"csr": csr("CP-H")}))["status"]
                 for _ in range(8)]
        assert words == ["Accepted"] * 6 + ["Rejected"] * 2
    events = await station_events(csms_server, "CP-H", "security")
    reasons = [e.get("reason", "") for e in events if e["type"] == "CsrRejected"]
    assert any("not the station id" in r for r in reasons)
    assert any("1024 bits" in r for r in reasons)
    assert any("too many" in r for r in reasons)
    assert any(e["type"] == "CertificateSignedRejected" for e in events)


async def _rejected(server: RunningServer, station_id: str) -> list[dict[str, Any]] | None:
    rows = await issued(server, station_id)
    return rows if rows and rows[0]["status"] == "Rejected" else None


async def test_a_certificate_near_its_end_is_renewed(csms_server: RunningServer) -> None:
    await csms_server.stop()
    # every certificate is issued inside the renewal window
    csms_server.settings = replace(csms_server.settings, cert_days=1, cert_renew_days=2)
    await csms_server.start()
    await csms_server.add_station("CP-R")
    st = Station(csms_server.url, "CP-R", "2.0.1", **FAST)
    await st.start()
    try:
        status, _ = await api(csms_server, "POST", "/stations/CP-R/commands/renew-certificate",
                              {"timeout": 5})
        assert status == 200
        await until(lambda: _true(st.pki.installed_chains == 1), "the first certificate")
        certs = csms_server.app.service.certificates
        assert await renew_due(csms_server.central, certs) == ["CP-R"]
        await until(lambda: _true(st.pki.installed_chains == 2), "the renewed certificate")
        first, second = await issued(csms_server, "CP-R")
        assert first["renewal_requested_at"] is not None
        assert second["serial"] != first["serial"]
        # asked once per certificate: the new one is due in turn, the old one not again
        assert [r["serial"] for r in await certs.due_for_renewal()] == [second["serial"]]
    finally:
        await st.close()


async def test_the_local_iso15118_provider(csms_server: RunningServer,
                                           tmp_path: Path) -> None:
    await csms_server.stop()
    folder = tmp_path / "ev"
    folder.mkdir()
    csms_server.settings = replace(csms_server.settings, ev_cert_dir=str(folder))
    await csms_server.start()
    await csms_server.add_station("CP-P")
    certs = csms_server.app.service.certificates
    mine = await certs.sign("CP-P", csr("CP-P"), "ChargingStationCertificate")
    leaf = x509.load_pem_x509_certificates(mine.chain.encode())[0]
    async with await RawClient.connect(csms_server.url, "CP-P", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        request = hash_data(leaf, certs.ca.cert)
        answer = await c.result("GetCertificateStatus", {"ocspRequestData": {
            **request, "responderURL": "http://ocsp.example"}})
        assert answer["status"] == "Accepted"
        response = ocsp.load_der_ocsp_response(base64.b64decode(answer["ocspResult"]))
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == leaf.serial_number
        unknown = await c.result("GetCertificateStatus", {"ocspRequestData": {
            **request, "serialNumber": "abc", "responderURL": "http://ocsp.example"}})
        assert ocsp.load_der_ocsp_response(base64.b64decode(
            unknown["ocspResult"])).certificate_status == ocsp.OCSPCertStatus.UNKNOWN
        foreign = await c.result("GetCertificateStatus", {"ocspRequestData": {
            **request, "issuerKeyHash": "00" * 32, "responderURL": "http://ocsp.example"}})
        assert foreign["status"] == "Failed" and "not issued" in foreign["statusInfo"][
            "additionalInfo"]
        exi = base64.b64encode(b"exi request").decode()
        missing = await c.result("Get15118EVCertificate", {
            "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install",
            "exiRequest": exi})
        assert missing["status"] == "Failed" and missing["exiResponse"] == ""
        answer_text = base64.b64encode(b"exi response").decode()
        (folder / (hashlib.sha256(exi.encode()).hexdigest() + ".exi")).write_text(answer_text)
        found = await c.result("Get15118EVCertificate", {
            "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install",
            "exiRequest": exi})
        assert found == {"status": "Accepted", "exiResponse": answer_text}
        # a V2G certificate is not signed by the station CA: refused, and said why
        v2g = await c.result("SignCertificate", {"csr": csr("CP-P"),
                                                 "certificateType": "V2GCertificate"})
        assert v2g["status"] == "Rejected" and "V2GCertificate" in v2g["statusInfo"][
            "additionalInfo"]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_root_certificates_installed_listed_and_deleted(csms_server: RunningServer,
                                                              version: str) -> None:
    await csms_server.add_station("CP-I")
    st = Station(csms_server.url, "CP-I", version, **FAST)
    await st.start()
    ca = csms_server.app.service.certificates.ca
    hashed = hash_data(ca.cert)

    async def run(name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return await api(csms_server, "POST", f"/stations/CP-I/commands/{name}",
                         {**body, "timeout": 5})

    try:
        status, answer = await run("get-installed-certificates", {})
        assert (status, answer["status"]) == (200, "NotFound")
        status, answer = await run("install-certificate", {"type": "CSMSRootCertificate",
                                                           "certificate": ca.cert_pem})
        assert (status, answer["status"]) == (200, "Accepted")
        status, answer = await run("get-installed-certificates",
                                   {"types": ["CSMSRootCertificate"]})
        assert (status, answer["status"]) == (200, "Accepted")
        listed = answer["response"].get("certificateHashData") or [
            c["certificateHashData"] for c in answer["response"]["certificateHashDataChain"]]
        assert listed == [hashed]
        unknown = {**hashed, "serialNumber": "123"}
        status, answer = await run("delete-certificate", {"hash": unknown})
        assert (status, answer["status"]) == (200, "NotFound")
        status, answer = await run("delete-certificate", {"hash": hashed})
        assert (status, answer["status"]) == (200, "Accepted")
        status, answer = await run("delete-certificate", {"hash": hashed})
        assert (status, answer["status"]) == (200, "NotFound")
        status, answer = await run("install-certificate", {"type": "V2GRootCertificate",
                                                           "certificate": ca.cert_pem})
        if version == "1.6":
            # only ISO 15118 Plug & Charge over DataTransfer carries it to a 1.6 station
            assert status == 400 and "has not announced ISO 15118 Plug & Charge" in answer[
                "error"]
        else:
            assert (status, answer["status"]) == (200, "Accepted")
        status, answer = await run("install-certificate", {"type": "CSMSRootCertificate",
                                                           "certificate": "not a PEM"})
        assert status == 400 and "PEM" in answer["error"]
    finally:
        await st.close()


async def _certified(server: RunningServer, station_id: str) -> RawClient:
    """A raw 2.0.1 station, connected, holding a certificate of the central system's CA
    (inside the renewal window with the test's settings)."""
    await server.add_station(station_id)
    c = await RawClient.connect(server.url, station_id, ["ocpp2.0.1"])
    try:
        await c.result("BootNotification", BOOT201)
        assert await c.result("SignCertificate", {"csr": csr(station_id)}) == {
            "status": "Accepted"}
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2] == "CertificateSigned"
        await c.answer(call[1], {"status": "Accepted"})
        await until(lambda: _accepted(server, station_id), "accepted")
    except BaseException:
        await c.close()
        raise
    return c


async def test_a_station_that_never_answers_holds_no_other_s_renewal(
        csms_server: RunningServer) -> None:
    """Renewal asked the due stations one after the other: a station that never answers
    the trigger held every station due after it for the call timeout, each round (with
    many such stations, honest ones were asked hours late, past their certificate's end).
    Each is asked on its own now."""
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, cert_days=1, cert_renew_days=2)
    await csms_server.start()
    clients: dict[str, RawClient] = {}
    try:
        for station_id in ("CP-SILENT", "CP-OK"):  # the silent one's certificate ends first
            clients[station_id] = await _certified(csms_server, station_id)
        certs = csms_server.app.service.certificates
        assert [r["station_id"] for r in await certs.due_for_renewal()] == [
            "CP-SILENT", "CP-OK"]
        started = asyncio.get_running_loop().time()
        round_ = asyncio.create_task(renew_due(csms_server.central, certs))
        silent = await asyncio.wait_for(clients["CP-SILENT"].calls.get(), 5)
        assert silent[2] == "TriggerMessage"  # and never answered
        call = await asyncio.wait_for(clients["CP-OK"].calls.get(), 10)
        waited = asyncio.get_running_loop().time() - started
        assert call[2] == "TriggerMessage"
        assert waited < 2.0, f"CP-OK was asked {waited:.1f} s into the round"
        await clients["CP-OK"].answer(call[1], {"status": "Accepted"})
        assert await round_ == ["CP-OK"]
    finally:
        for c in clients.values():
            await c.close()


async def test_renewal_asks_at_most_its_bound_of_stations_at_once(
        csms_server: RunningServer) -> None:
    """Renewal asked every due station at once: 10,000 stations due together were 10,000
    CALLs in flight, each with its task, its timeout and its answer's wait. At most
    ``concurrency`` are asked at once now, the next as soon as one is answered; a station
    that does not answer holds one of them, never the others."""
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, cert_days=1, cert_renew_days=2,
                                   call_timeout=60)
    await csms_server.start()
    order = ["CP-SILENT", "CP-1", "CP-2", "CP-3", "CP-4"]  # as their certificates end
    clients: dict[str, RawClient] = {}
    try:
        for station_id in order:
            clients[station_id] = await _certified(csms_server, station_id)
        certs = csms_server.app.service.certificates
        assert [r["station_id"] for r in await certs.due_for_renewal()] == order

        async def asked(station_id: str) -> str:
            call = await asyncio.wait_for(clients[station_id].calls.get(), 10)
            assert call[2] == "TriggerMessage", call
            return str(call[1])

        async def none_asked(station_ids: list[str]) -> None:
            # a CALL sent to a station before the answer to its Heartbeat is read before
            # it (one connection, in order): an empty queue then means none was sent
            for station_id in station_ids:
                c = clients[station_id]
                await c.result("Heartbeat", {})
                assert c.calls.empty(), f"{station_id} asked beyond the bound of 2"

        round_ = asyncio.create_task(renew_due(csms_server.central, certs, concurrency=2))
        silent = await asked("CP-SILENT")  # answered only once every other one was
        previous = await asked("CP-1")
        await none_asked(order[2:])
        for k, station_id in enumerate(order[2:], start=2):
            await clients[order[k - 1]].answer(previous, {"status": "Accepted"})
            previous = await asked(station_id)
            await none_asked(order[k + 1:])
        await clients[order[-1]].answer(previous, {"status": "Accepted"})
        # every other station was asked and answered while the silent one held its slot
        await clients["CP-SILENT"].answer(silent, {"status": "Accepted"})
        assert await asyncio.wait_for(round_, 10) == order
    finally:
        for c in clients.values():
            await c.close()
