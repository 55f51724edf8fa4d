"""ISO 15118 Plug & Charge on a simulated 2.0.1 station against the real central system
over real sockets: the EV's contract certificate (Get15118EVCertificate Install / Update,
M01/M02), its status (GetCertificateStatus, M06) and Authorize with it (C07); its charging
needs (NotifyEVChargingNeeds, K15) and the schedule it chose (NotifyEVChargingSchedule,
K17), chosen again when a charging profile or an external limit changes the cap."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from chargers_sim import Station
from chargers_sim.pnc_v201 import EV_ENERGY_WH, exi_request
from support import RunningServer, station_events, until
from support.admin import api

VERSION = "2.0.1"
EMAID = "DEMA1234567890"
FAST: dict[str, Any] = {"meter_interval": 60, "call_timeout": 5, "retry_interval": 0.1}


@pytest.fixture
async def server(csms_server: RunningServer, tmp_path: Path) -> RunningServer:
    """The central system with the local ISO 15118 provider's EV certificate folder."""
    await csms_server.stop()
    folder = tmp_path / "ev"
    folder.mkdir()
    csms_server.settings = replace(csms_server.settings, ev_cert_dir=str(folder))
    await csms_server.start()
    await csms_server.add_tag(EMAID)
    return csms_server


async def issued_contract(server: RunningServer, days: int = 30
                          ) -> tuple[x509.Certificate, x509.Certificate]:
    """A contract certificate for EMAID that the central system's CA issued (as a mobility
    operator's would be) and the provider knows of, and the CA certificate."""
    certs = server.app.service.certificates
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, EMAID)])).sign(key, hashes.SHA256())
    cert = certs.ca.sign(request, days, dt.datetime.now(dt.UTC))

    async def work(tx: Any) -> None:
        await tx.add_issued_certificate(
            format(cert.serial_number, "x"), "MO", cert.not_valid_before_utc,
            cert.not_valid_after_utc, cert.public_bytes(serialization.Encoding.PEM).decode(),
            dt.datetime.now(dt.UTC), "ContractCertificate")

    await server.repo.unit(work)
    return cert, certs.ca.cert


async def station(server: RunningServer, sid: str, **kw: Any) -> Station:
    await server.add_station(sid)
    st = Station(server.url, sid, VERSION, pnc=True, seed=3, **{**FAST, **kw})
    await st.start()
    return st


def actions(st: Station) -> list[str]:
    return [a for a, _ in st.ev_answers]


def answer(st: Station, action: str, n: int = -1) -> dict[str, Any]:
    return [a for name, a in st.ev_answers if name == action][n]


async def stored(server: RunningServer, sid: str, kind: str,
                 at_least: int = 1) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        found = await station_events(server, sid, kind)
        return found if len(found) >= at_least else None

    return list(await until(check, f"{at_least} {kind} stored"))


async def test_an_ev_with_a_contract_charges_by_plug_and_charge(
        server: RunningServer) -> None:
    st = await station(server, "EV-1", power_kw=11)
    cert, ca = await issued_contract(server, days=365)
    st.ev_contracts[EMAID] = (cert, ca)
    try:
        await st.start_session(1, EMAID)
        # M06: the contract's status, a real OCSP answer of the central system's CA
        status = answer(st, "GetCertificateStatus")
        assert status["status"] == "Accepted"
        response = ocsp.load_der_ocsp_response(base64.b64decode(status["ocspResult"]))
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == cert.serial_number
        # C07: authorized by the eMAID with the certificate's hash data
        assert answer(st, "Authorize") == {"idTokenInfo": {"status": "Accepted"},
                                           "certificateStatus": "Accepted"}
        assert "Get15118EVCertificate" not in actions(st)  # a contract valid for a year
        # K15 / K17: the EV's needs, then its schedule at the station's power
        [needs] = await stored(server, "EV-1", "ev_charging_needs")
        assert needs["evseId"] == 1
        assert needs["chargingNeeds"]["requestedEnergyTransfer"] == "AC_three_phase"
        assert needs["chargingNeeds"]["acChargingParameters"]["energyAmount"] == EV_ENERGY_WH
        departure = dt.datetime.fromisoformat(needs["chargingNeeds"]["departureTime"])
        assert departure > dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
        [first] = await stored(server, "EV-1", "ev_charging_schedule")
        periods = first["chargingSchedule"]["chargingSchedulePeriod"]
        assert periods[0] == {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3}
        # 30 kWh at 11 kW: full after 9818 s, within the 4 h until departure
        assert periods[1] == {"startPeriod": 9818, "limit": 0.0, "numberPhases": 3}
        await until(lambda: _true(actions(st)[-1] == "NotifyEVChargingSchedule"),
                    "the schedule answered")
        assert answer(st, "NotifyEVChargingNeeds") == {"status": "Accepted"}
        assert answer(st, "NotifyEVChargingSchedule") == {"status": "Accepted"}
        # a charging profile lowers the cap: the EV chooses again (renegotiation)
        status_code, body = await api(server, "POST", "/stations/EV-1/commands/set-profile",
                                      {"limit": 7400, "connector": 1})
        assert status_code == 200 and body["status"] == "Accepted", body
        [again, _] = await stored(server, "EV-1", "ev_charging_schedule", 2)
        assert again["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 7400.0
        # and so does an external limit
        await st.set_external_limit(5000, "EMS")
        [third, _, _] = await stored(server, "EV-1", "ev_charging_schedule", 3)
        assert third["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 5000.0
        await st.stop_session(1)
        await st.drain()
        [session] = await server.sessions("EV-1")
        assert session["id_tag"] == EMAID and session["status"] == "completed"
    finally:
        await st.close()


async def test_an_ev_without_a_contract_asks_for_one(server: RunningServer) -> None:
    st = await station(server, "EV-2", ev_contract_days=0)
    try:
        # M01: no answer prepared for its request: Failed, the EV stays without a contract
        await st.start_session(1, EMAID)
        failed = answer(st, "Get15118EVCertificate")
        assert failed["status"] == "Failed" and failed["exiResponse"] == ""
        assert EMAID not in st.ev_contracts
        assert "GetCertificateStatus" not in actions(st)  # nothing to ask about
        # the eMAID alone decides (a known tag)
        assert answer(st, "Authorize") == {"idTokenInfo": {"status": "Accepted"}}
        await st.stop_session(1)
        # the contract certificate pool's answer, put in the provider's folder
        exi = exi_request("Install", EMAID)
        reply = base64.b64encode(b"certificate installation response").decode()
        folder = Path(server.settings.ev_cert_dir)
        (folder / (hashlib.sha256(exi.encode()).hexdigest() + ".exi")).write_text(reply)
        await st.start_session(1, EMAID)
        assert answer(st, "Get15118EVCertificate") == {"status": "Accepted",
                                                       "exiResponse": reply}
        assert EMAID in st.ev_contracts
        # the new contract is not of the central system's CA: no OCSP answer for it, so
        # the station sends the chain itself, and the central system refuses it
        failed_status = answer(st, "GetCertificateStatus")
        assert failed_status["status"] == "Failed"
        assert "not issued" in failed_status["statusInfo"]["additionalInfo"]
        assert answer(st, "Authorize") == {"idTokenInfo": {"status": "Invalid"},
                                           "certificateStatus": "CertChainError"}
        await st.stop_session(1)
        await st.drain()
    finally:
        await st.close()


async def test_an_ev_whose_contract_ends_soon_asks_for_an_update(
        server: RunningServer) -> None:
    st = await station(server, "EV-3")
    cert, ca = await issued_contract(server, days=10)
    st.ev_contracts[EMAID] = (cert, ca)
    try:
        await st.start_session(1, EMAID)
        assert actions(st)[:3] == ["Get15118EVCertificate", "GetCertificateStatus",
                                   "Authorize"]
        assert answer(st, "Get15118EVCertificate")["status"] == "Failed"
        # M02 failed: it keeps its contract, still good for ten days
        assert st.ev_contracts[EMAID][0] is cert
        assert answer(st, "Authorize")["certificateStatus"] == "Accepted"
        await st.stop_session(1)
        await st.drain()
    finally:
        await st.close()


async def test_a_remote_start_is_no_plug_and_charge(server: RunningServer) -> None:
    st = await station(server, "EV-4")
    try:
        status, body = await api(server, "POST", "/stations/EV-4/commands/start",
                                 {"tag": EMAID, "connector": 1})
        assert status == 200 and body["status"] == "Accepted", body
        await until(lambda: _true(bool(st._sessions)), "the remote start")
        assert st.ev_answers == []
    finally:
        await st.close()


async def _true(value: bool) -> bool:
    return value


async def test_the_evs_notifications_beyond_the_quota_are_rejected_and_it_still_charges(
        server: RunningServer) -> None:
    await server.stop()
    server.settings = replace(server.settings, quota_notifications=1, storage_reserve=0)
    await server.start()
    st = await station(server, "EV-5")
    cert, ca = await issued_contract(server, days=365)
    st.ev_contracts[EMAID] = (cert, ca)
    try:
        await st.start_session(1, EMAID)
        await until(lambda: _true(actions(st)[-1:] == ["NotifyEVChargingSchedule"]),
                    "the schedule answered")
        for action in ("NotifyEVChargingNeeds", "NotifyEVChargingSchedule"):
            rejected = answer(st, action)
            assert rejected["status"] == "Rejected", (action, rejected)
            assert rejected["statusInfo"]["reasonCode"] == "QuotaExceeded"
        assert await station_events(server, "EV-5", "ev_charging_needs") == []
        await st.stop_session(1)
        await st.drain()
        [session] = await server.sessions("EV-5")  # transactions are never metered
        assert session["status"] == "completed" and session["id_tag"] == EMAID
    finally:
        await st.close()


async def test_the_command_line_runs_plug_and_charge_sessions(server: RunningServer) -> None:
    await server.add_station("SIM00001")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chargers_sim", "run", "--url", server.url, "--ocpp", VERSION,
        "--pnc", "--ev-contract-days", "0", "--id-tag", EMAID, "--sessions", "1",
        "--session-seconds", "0.5", "--no-startup-event", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["sessions"] == 1
    [needs] = await station_events(server, "SIM00001", "ev_charging_needs")
    assert needs["chargingNeeds"]["acChargingParameters"]["energyAmount"] == EV_ENERGY_WH
    assert await station_events(server, "SIM00001", "ev_charging_schedule")
    [session] = await server.sessions("SIM00001")
    assert session["id_tag"] == EMAID
    assert await station_events(server, "SIM00001", "security") == []  # --no-startup-event
