"""Signed meter values (OCMF) through real sockets: verification, key pinning, holds,
operator decisions, with public meter records and with simulated meters of both versions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chargers_sim.station import Station
from csms.service.ports import Tx
from support import RunningServer
from support import csms_cli as csms
from support import is_queued as queued
from support import station_events as events
from support.client import RawClient

# A real meter record and its key (OCMF specification example; S.A.F.E. e.V. transparency
# software test data): begin 0.2596 kWh, end 0.2597 kWh.
from support.ocmf_vectors import KEBA, KEBA_KEY

FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}
T0, T1 = "2019-08-13T10:03:15Z", "2019-08-13T10:03:36Z"




async def signed_session_16(server: RunningServer, container: str, meter_stop: int = 260,
                            station_id: str = "CP1", meter_start: int = 260) -> dict[str, Any]:
    """A 1.6 session whose Transaction.Begin / End readings are one signed OCMF record."""
    async with await RawClient.connect(server.url, station_id, ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "KEBA",
                                            "chargePointModel": "KCP30"})
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": meter_start, "timestamp": T0})
        await c.result("StopTransaction", {
            "transactionId": start["transactionId"], "meterStop": meter_stop, "timestamp": T1,
            "reason": "Local",
            "transactionData": [{"timestamp": T1, "sampledValue": [
                {"value": container, "context": "Transaction.End", "format": "SignedData",
                 "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]})
    [session] = [s for s in await server.sessions(station_id)
                 if s["transaction_id"] == str(start["transactionId"])]
    return session


def show(server: RunningServer, session_id: int) -> dict[str, Any]:
    r = csms(server, "sessions", "show", str(session_id), "--json")
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    return csms_server


async def test_public_meter_record_verifies_and_the_session_settles(
    server: RunningServer,
) -> None:
    r = csms(server, "stations", "set-meter-key", "CP1", KEBA_KEY)
    assert r.returncode == 0, r.stderr
    s = await signed_session_16(server, KEBA)
    assert s["flags"] == [] and s["energy_wh"] == 0
    assert await queued(server, s["id"])
    data = show(server, s["id"])
    assert data["billing"] == "queued"
    assert [(r["tx_code"], r["reading_wh"], r["status"], r["meter_serial"])
            for r in data["signed_readings"]] == [
        ("B", "259.6000", "verified", None), ("E", "259.7000", "verified", None)]
    assert {r["public_key"] for r in data["signed_readings"]} == {KEBA_KEY.lower()}
    table = csms(server, "sessions", "show", str(s["id"]))
    assert "Signed meter readings (OCMF)" in table.stdout and "verified" in table.stdout
    station = json.loads(csms(server, "stations", "show", "CP1", "--json").stdout)
    assert (station["meter_public_key"], station["meter_key_source"]) == (
        KEBA_KEY.lower(), "operator")


async def test_altered_signed_data_is_held_until_an_operator_releases_it(
    server: RunningServer,
) -> None:
    assert csms(server, "stations", "set-meter-key", "CP1", KEBA_KEY).returncode == 0
    s = await signed_session_16(server, KEBA.replace("0.2597", "0.2697"))
    assert "signature_invalid" in s["flags"]
    assert not await queued(server, s["id"])
    data = show(server, s["id"])
    assert data["billing"] == "held"
    assert {r["status"] for r in data["signed_readings"]} == {"invalid"}
    r = csms(server, "sessions", "release", str(s["id"]), "--reason", "meter replaced, checked")
    assert r.returncode == 0, r.stderr
    assert "released for settlement" in r.stdout and "signature_invalid" in r.stdout
    assert await queued(server, s["id"])
    assert show(server, s["id"])["billing"] == "released"

    async def audit(tx: Tx) -> list[dict[str, Any]]:
        return await tx.list_audit()

    [entry] = [a for a in await server.repo.read(audit) if a["action"] == "sessions.release"]
    assert entry["target"] == str(s["id"]) and entry["actor"].startswith("cli")
    again = csms(server, "sessions", "release", str(s["id"]))
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: session {s['id']} is not held for a decision" \
        " (it is released)"


async def test_signed_readings_that_differ_from_the_billed_ones_hold_and_reject(
    server: RunningServer,
) -> None:
    assert csms(server, "stations", "set-meter-key", "CP1", KEBA_KEY).returncode == 0
    s = await signed_session_16(server, KEBA, meter_stop=300)  # billed 40 Wh, signed 0.1 Wh
    assert "signed_energy_mismatch" in s["flags"] and "signature_invalid" not in s["flags"]
    assert not await queued(server, s["id"])
    [mismatch] = await events(server, "CP1", "billing_mismatch")
    assert mismatch["mismatches"] == ["stop: billed 300 Wh, meter signed 259.7000 Wh"]
    r = csms(server, "sessions", "reject", str(s["id"]))
    assert r.returncode == 0, r.stderr
    assert show(server, s["id"])["billing"] == "rejected"
    assert not await queued(server, s["id"])
    assert csms(server, "sessions", "release", str(s["id"])).returncode == 2


async def test_without_a_meter_key_signed_data_holds_the_session(server: RunningServer) -> None:
    s = await signed_session_16(server, KEBA)
    assert "meter_key_unknown" in s["flags"]
    assert not await queued(server, s["id"])
    assert {r["status"] for r in show(server, s["id"])["signed_readings"]} == {"no_key"}


async def test_cli_errors_are_one_line(server: RunningServer) -> None:
    for args, message in [
        (("stations", "set-meter-key", "CP1", "not-a-key"), "a meter key is hex or base64"),
        (("stations", "set-meter-key", "NOPE", KEBA_KEY), "no station 'NOPE'"),
        (("stations", "set-meter-key", "CP1"), "give the key or --file"),
        (("sessions", "release", "999"), "no session 999"),
    ]:
        r = csms(server, *args)
        assert r.returncode == 2, (args, r.stdout)
        assert message in r.stderr and "Traceback" not in r.stderr
    s = await signed_session_16(server, "OCMF|{}|{}")
    assert "signature_invalid" in s["flags"]  # malformed data holds too
    unsigned = await plain_session(server)
    r = csms(server, "sessions", "reject", str(unsigned["id"]))
    assert r.returncode == 2 and "not held for a decision (it is queued)" in r.stderr


async def plain_session(server: RunningServer) -> dict[str, Any]:
    """A 1.6 session on connector 2, at signed_session_16's time (its connector 1's)."""
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        start = await c.result("StartTransaction", {
            "connectorId": 2, "idTag": "T1", "meterStart": 1000, "timestamp": T0})
        await c.result("StopTransaction", {"transactionId": start["transactionId"],
                                           "meterStop": 2000, "timestamp": T1})
    return (await server.sessions("CP1"))[-1]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_simulated_meter_key_is_pinned_on_first_use_and_a_new_key_is_refused(
    server: RunningServer, version: str,
) -> None:
    await server.add_tag("SIMTAG")
    st = Station(server.url, "CP1", version, seed=3, signed=True, **FAST)
    await st.start()
    await st.run_sessions(2, 0.2)
    await st.drain()
    await st.close()
    first, second = await server.sessions("CP1")
    for s in (first, second):
        assert s["flags"] == [] and s["energy_wh"] > 0
        assert await queued(server, s["id"])
        readings = show(server, s["id"])["signed_readings"]
        assert [(r["tx_code"], r["status"]) for r in readings] == [
            ("B", "verified"), ("E", "verified")]
        assert readings[0]["reading_wh"] == f"{s['meter_start_wh']:.3f}"
        assert readings[1]["reading_wh"] == f"{s['meter_stop_wh']:.3f}"
    assert st.signer is not None
    pinned = st.signer.public_key_der.hex()
    station = json.loads(csms(server, "stations", "show", "CP1", "--json").stdout)
    assert (station["meter_public_key"], station["meter_key_source"]) == (pinned, "first_use")
    [event] = [e for e in await events(server, "CP1", "security")
               if e["type"] == "MeterKeyPinned"]
    assert event["public_key"] == pinned
    # the same station id comes back with another meter key: not accepted silently
    other = Station(server.url, "CP1", version, seed=4, signed=True, **FAST)
    await other.start()
    await other.run_sessions(1, 0.2)
    await other.drain()
    await other.close()
    third = (await server.sessions("CP1"))[-1]
    assert {"meter_key_changed", "signature_invalid"} <= set(third["flags"])
    assert not await queued(server, third["id"])
    changed = [e for e in await events(server, "CP1", "security")
               if e["type"] == "MeterKeyChanged"]
    assert changed and changed[0]["pinned"] == pinned
    station = json.loads(csms(server, "stations", "show", "CP1", "--json").stdout)
    assert station["meter_public_key"] == pinned  # still the first key


async def test_a_whole_kwh_signed_reading_does_not_let_a_station_bill_a_kwh_more(
    server: RunningServer,
) -> None:
    # a meter whose JSON writes 12.000 kWh as 12: the station reports up to 0.99 kWh more
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    assert csms(server, "stations", "set-meter-key", "CP1", der.hex()).returncode == 0
    text = ('{"FV":"1.0","GI":"ACME","GS":"CP1","PG":"T7","MS":"SN-1","IS":true,"ID":"T1",'
            '"RD":[{"TM":"2019-08-13T10:03:15,000+0000 S","TX":"B","RV":12,"RI":"1-b:1.8.0",'
            '"RU":"kWh","EF":"","ST":"G"},{"TM":"2019-08-13T10:03:36,000+0000 S","TX":"E",'
            '"RV":12,"RI":"1-b:1.8.0","RU":"kWh","EF":"","ST":"G"}]}')
    sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256())).hex()
    container = f'OCMF|{text}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{sig}"}}'
    s = await signed_session_16(server, container, meter_start=12000, meter_stop=12990)
    assert "signed_energy_mismatch" in s["flags"] and s["energy_wh"] == 990
    assert not await queued(server, s["id"])
    [mismatch] = await events(server, "CP1", "billing_mismatch")
    assert mismatch["mismatches"] == ["stop: billed 12990 Wh, meter signed 12000 Wh"]
    # the same record beside a station's honest readings settles
    await server.add_station("CP2")
    assert csms(server, "stations", "set-meter-key", "CP2", der.hex()).returncode == 0
    s = await signed_session_16(server, container, meter_start=12000, meter_stop=12000,
                                station_id="CP2")
    assert s["flags"] == [] and await queued(server, s["id"])
