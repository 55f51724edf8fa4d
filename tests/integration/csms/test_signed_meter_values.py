"""Signed meter values (OCMF) through real sockets: verification, key pinning, holds,
operator decisions, with public meter records and with simulated meters of both versions."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
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

# Real meter records and their keys (S.A.F.E. e.V. transparency software test data): the
# KEBA's (the OCMF specification example) begins at 0.2596 kWh and ends at 0.2597 kWh.
from support.ocmf_vectors import ISKRA, ISKRA_KEY, KEBA, KEBA_KEY

FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}
T0, T1 = "2019-08-13T10:03:15Z", "2019-08-13T10:03:36Z"




async def signed_session_16(server: RunningServer, container: str, meter_stop: int = 260,
                            station_id: str = "CP1", meter_start: int = 260, connector: int = 1,
                            id_tag: str = "T1", times: tuple[str, str] = (T0, T1),
                            ) -> dict[str, Any]:
    """A 1.6 session whose Transaction.Begin / End readings are one signed OCMF record (or
    its OCA JSON object)."""
    async with await RawClient.connect(server.url, station_id, ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "KEBA",
                                            "chargePointModel": "KCP30"})
        start = await c.result("StartTransaction", {
            "connectorId": connector, "idTag": id_tag, "meterStart": meter_start,
            "timestamp": times[0]})
        await c.result("StopTransaction", {
            "transactionId": start["transactionId"], "meterStop": meter_stop,
            "timestamp": times[1], "reason": "Local",
            "transactionData": [{"timestamp": times[1], "sampledValue": [
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
        # the meter's kWh as it wrote them, in Wh (1998.12 kWh: "1998120.00")
        assert Decimal(readings[0]["reading_wh"]) == s["meter_start_wh"]
        assert Decimal(readings[1]["reading_wh"]) == s["meter_stop_wh"]
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
    # such a record beside a station's honest readings settles (a record of its own: the
    # same record again is one reading billed twice, held)
    await server.add_station("CP2")
    assert csms(server, "stations", "set-meter-key", "CP2", der.hex()).returncode == 0
    text = text.replace("10:03:15,", "10:04:15,").replace("10:03:36,", "10:04:36,")
    sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256())).hex()
    container = f'OCMF|{text}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{sig}"}}'
    s = await signed_session_16(server, container, meter_start=12000, meter_stop=12000,
                                station_id="CP2")
    assert s["flags"] == [] and await queued(server, s["id"])


# -- a meter per EVSE ------------------------------------------------------------------
# A dual-EVSE Eichrecht wallbox has one calibrated meter per EVSE, each with its own key
# printed on it. Here EVSE 1's meter is the KEBA record's, EVSE 2's the Iskra record's
# (support.ocmf_vectors: two real meters' records and keys).
# the storage backends, as tests/conftest.py runs its BOTH_BACKENDS modules
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
ISKRA_TAG = "0480423a4b5880"  # the token the Iskra meter signed its record for
ISKRA_TIMES = ("2023-04-14T11:51:06Z", "2023-04-14T11:54:43Z")


async def iskra_session(server: RunningServer, container: str = ISKRA) -> dict[str, Any]:
    """A 1.6 session on connector (EVSE) 2 with the Iskra record's readings: 80.77 kWh to
    80.97 kWh, its token and times."""
    return await signed_session_16(server, container, connector=2, meter_start=80770,
                                   meter_stop=80970, id_tag=ISKRA_TAG, times=ISKRA_TIMES)


def meter() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A meter key of a test's own, and its public key as hex DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, der.hex()


def signed_by(key: ec.EllipticCurvePrivateKey, readings: list[tuple[str, str, str]],
              serial: str, ident: str) -> str:
    """An OCA JSON signed value of ``readings`` (TX, kWh, OCMF time) in one OCMF record
    signed with ``key``, the public key in the message as a station that sends its meter's
    key does."""
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    text = json.dumps({
        "FV": "1.0", "GI": "ACME", "GS": "CP1", "PG": f"T{readings[0][1]}", "MS": serial,
        "IS": True, "IT": "CENTRAL", "ID": ident,
        "RD": [{"TM": f"{at},000+0000 S", "TX": tx, "RV": float(kwh), "RI": "1-b:1.8.0",
                "RU": "kWh", "EF": "", "ST": "G"} for tx, kwh, at in readings]},
        separators=(",", ":"))
    sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256())).hex()
    container = f'OCMF|{text}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{sig}"}}'
    return json.dumps({
        "signedMeterData": base64.b64encode(container.encode()).decode(),
        "encodingMethod": "OCMF", "signingMethod": "ECDSA-secp256r1-SHA256",
        "publicKey": base64.b64encode(der).decode()})


def station_json(server: RunningServer) -> dict[str, Any]:
    r = csms(server, "stations", "show", "CP1", "--json")
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


async def meter_key_events(server: RunningServer, kind: str) -> list[dict[str, Any]]:
    return [e for e in await events(server, "CP1", "security") if e["type"] == kind]


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
@pytest.mark.parametrize("evse1", ["station", "evse"])
async def test_a_meter_per_evse_each_with_its_own_key_bills_both_evses(
    server: RunningServer, evse1: str,
) -> None:
    """EVSE 1's key registered as the station's (as before) or for its EVSE, EVSE 2's for
    EVSE 2: each EVSE's sessions are verified with its meter's key and billed. (With one
    key per station, EVSE 2's sessions were held for ever: its host paid for half.)"""
    await server.add_tag(ISKRA_TAG)
    first = ("--evse", "1") if evse1 == "evse" else ()
    r = csms(server, "stations", "set-meter-key", "CP1", KEBA_KEY, *first)
    assert r.returncode == 0, r.stderr
    r = csms(server, "stations", "set-meter-key", "CP1", ISKRA_KEY, "--evse", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("meter key of CP1 EVSE 2 set")
    one = await signed_session_16(server, KEBA)
    two = await iskra_session(server)
    for s, key in ((one, KEBA_KEY), (two, ISKRA_KEY)):
        assert s["flags"] == [], s
        assert await queued(server, s["id"])
        readings = show(server, s["id"])["signed_readings"]
        assert {(r["status"], r["public_key"]) for r in readings} == {
            ("verified", key.lower())}
    assert two["energy_wh"] == 200
    station = station_json(server)
    keys = [{"evse_id": 2, "public_key": ISKRA_KEY.lower()}]
    if evse1 == "evse":
        keys.insert(0, {"evse_id": 1, "public_key": KEBA_KEY.lower()})
        assert (station["meter_public_key"], station["meter_key_source"]) == (None, None)
    else:
        assert (station["meter_public_key"], station["meter_key_source"]) == (
            KEBA_KEY.lower(), "operator")
    assert station["evse_meter_keys"] == keys
    table = csms(server, "stations", "show", "CP1").stdout
    assert "Meter keys per EVSE" in table and ISKRA_KEY.lower()[-16:] in table

    async def audit(tx: Tx) -> list[dict[str, Any]]:
        return await tx.list_audit()

    entries = [a for a in await server.repo.read(audit)
               if a["action"] == "stations.set-meter-key"]
    assert {(a["request"].get("evse_id"), a["request"]["public_key"]) for a in entries} == {
        (1 if evse1 == "evse" else None, KEBA_KEY.lower()), (2, ISKRA_KEY.lower())}
    changed = await meter_key_events(server, "MeterKeyChanged")
    if evse1 == "station":  # EVSE 2 was verified with the station's key until then
        assert [(e["evse_id"], e["pinned"], e["received"], e["by"]) for e in changed] == [
            (2, KEBA_KEY.lower(), ISKRA_KEY.lower(), "operator")]
    else:
        assert changed == []


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
async def test_a_key_of_the_stations_own_on_an_evse_with_a_registered_key_is_refused(
    server: RunningServer,
) -> None:
    """A hostile station signs what EVSE 2's meter would have signed with a key of its own
    and sends that key: EVSE 2's registered key stays the key, the session is held
    (meter_key_changed, signature_invalid) with a security event naming the EVSE, and the
    key it sent is not pinned as the station's either."""
    await server.add_tag(ISKRA_TAG)
    assert csms(server, "stations", "set-meter-key", "CP1", ISKRA_KEY, "--evse", "2"
                ).returncode == 0
    own, forged_key = meter()
    # the meter's serial and the driver's token, before the Iskra record's session
    forged = signed_by(
        own, [("B", "80.57", "2023-04-14T11:40:06"), ("E", "80.77", "2023-04-14T11:45:43")],
        "W4155775", ISKRA_TAG)
    s = await signed_session_16(server, forged, connector=2, meter_start=80570,
                                meter_stop=80770, id_tag=ISKRA_TAG,
                                times=("2023-04-14T11:40:00Z", "2023-04-14T11:46:00Z"))
    assert {"meter_key_changed", "signature_invalid"} <= set(s["flags"]), s
    assert not await queued(server, s["id"])
    [changed] = await meter_key_events(server, "MeterKeyChanged")
    assert (changed["pinned"], changed["received"], changed["evse_id"],
            changed["session_id"]) == (ISKRA_KEY.lower(), forged_key, 2, s["id"])
    assert await meter_key_events(server, "MeterKeyPinned") == []
    station = station_json(server)
    assert (station["meter_public_key"], station["meter_key_source"]) == (None, None)
    assert station["evse_meter_keys"] == [{"evse_id": 2, "public_key": ISKRA_KEY.lower()}]
    # the Iskra meter's own record on EVSE 2 is still billed
    honest = await iskra_session(server)
    assert honest["flags"] == [] and await queued(server, honest["id"])


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
async def test_without_a_key_per_evse_the_stations_key_pinned_on_first_use_holds(
    server: RunningServer,
) -> None:
    """No key registered per EVSE: as before, the first key a message carries is the
    station's, for every EVSE; another meter's key on EVSE 2 holds its session. Once the
    operator registers EVSE 2's key, EVSE 2 is verified with it and EVSE 1 still with the
    pinned key."""
    (a, key_a), (b, key_b) = meter(), meter()
    t0, t1 = "2019-08-13T10:03:15", "2019-08-13T10:03:36"
    s1 = await signed_session_16(
        server, signed_by(a, [("B", "1.000", t0), ("E", "2.000", t1)], "SN-A", "T1"),
        meter_start=1000, meter_stop=2000)
    assert s1["flags"] == [] and await queued(server, s1["id"])
    station = station_json(server)
    assert (station["meter_public_key"], station["meter_key_source"]) == (key_a, "first_use")
    assert station["evse_meter_keys"] == []
    s2 = await signed_session_16(
        server, signed_by(b, [("B", "5.000", t0), ("E", "6.000", t1)], "SN-B", "T1"),
        meter_start=5000, meter_stop=6000, connector=2)
    assert {"meter_key_changed", "signature_invalid"} <= set(s2["flags"])
    assert not await queued(server, s2["id"])
    [changed] = await meter_key_events(server, "MeterKeyChanged")
    assert (changed["pinned"], changed["received"]) == (key_a, key_b)
    assert "evse_id" not in changed  # the station's key, not an EVSE's
    assert station_json(server)["meter_public_key"] == key_a
    # the operator registers EVSE 2's meter key (printed on the meter)
    assert csms(server, "stations", "set-meter-key", "CP1", key_b, "--evse", "2"
                ).returncode == 0
    later = ("2019-08-13T11:00:00Z", "2019-08-13T11:05:00Z")
    t0, t1 = "2019-08-13T11:00:10", "2019-08-13T11:04:50"
    s3 = await signed_session_16(
        server, signed_by(b, [("B", "6.000", t0), ("E", "7.000", t1)], "SN-B", "T1"),
        meter_start=6000, meter_stop=7000, connector=2, times=later)
    s4 = await signed_session_16(
        server, signed_by(a, [("B", "2.000", t0), ("E", "3.000", t1)], "SN-A", "T1"),
        meter_start=2000, meter_stop=3000, times=later)
    for s in (s3, s4):
        assert s["flags"] == [] and await queued(server, s["id"]), s
    station = station_json(server)
    assert (station["meter_public_key"], station["meter_key_source"]) == (key_a, "first_use")
    assert station["evse_meter_keys"] == [{"evse_id": 2, "public_key": key_b}]


async def test_meter_keys_per_evse_cli_errors_and_removal(server: RunningServer) -> None:
    big = str(2**63)  # beyond the database's bigint
    for args, message in [
        (("set-meter-key", "CP1", KEBA_KEY, "--evse", "0"), "--evse"),
        (("set-meter-key", "CP1", KEBA_KEY, "--evse", "-1"), "--evse"),
        (("set-meter-key", "CP1", KEBA_KEY, "--evse", "two"), "--evse"),
        (("set-meter-key", "CP1", KEBA_KEY, "--evse", big), "--evse"),
        (("set-meter-key", "NOPE", KEBA_KEY, "--evse", "1"), "no station 'NOPE'"),
        (("remove-meter-key", "CP1"), "--evse"),
        (("remove-meter-key", "CP1", "--evse", "0"), "--evse"),
        (("remove-meter-key", "CP1", "--evse", "2"), "no meter key registered for EVSE 2"),
        (("remove-meter-key", "NOPE", "--evse", "2"), "no station 'NOPE'"),
    ]:
        r = csms(server, "stations", *args)
        assert r.returncode == 2, (args, r.stdout)
        assert message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    assert station_json(server)["evse_meter_keys"] == []
    # removed, EVSE 2's sessions are verified with the station's key again
    await server.add_tag(ISKRA_TAG)
    assert csms(server, "stations", "set-meter-key", "CP1", KEBA_KEY).returncode == 0
    assert csms(server, "stations", "set-meter-key", "CP1", ISKRA_KEY, "--evse", "2"
                ).returncode == 0
    r = csms(server, "stations", "remove-meter-key", "CP1", "--evse", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("meter key of CP1 EVSE 2 removed")
    assert station_json(server)["evse_meter_keys"] == []
    s = await iskra_session(server)
    assert "signature_invalid" in s["flags"] and not await queued(server, s["id"])

    async def audit(tx: Tx) -> list[dict[str, Any]]:
        return await tx.list_audit()

    [entry] = [a for a in await server.repo.read(audit)
               if a["action"] == "stations.remove-meter-key"]
    assert (entry["target"], entry["request"], entry["result"]) == (
        "CP1", {"evse_id": 2}, {"previous": ISKRA_KEY.lower()})
    changed = await meter_key_events(server, "MeterKeyChanged")
    assert [(e["evse_id"], e["pinned"], e["received"]) for e in changed] == [  # newest first
        (2, ISKRA_KEY.lower(), KEBA_KEY.lower()), (2, KEBA_KEY.lower(), ISKRA_KEY.lower())]


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
@pytest.mark.parametrize("connector", [3, 0])
async def test_a_station_with_keys_per_evse_pins_no_key_of_its_own_on_an_evse_it_invents(
    server: RunningServer, connector: int,
) -> None:
    """Both EVSEs' meter keys registered, none for the station: a hostile station charges on
    an EVSE it invents (3) or on none (1.6 connector 0) with readings signed by a key of its
    own. The key is not pinned as the station's (it would verify that session, and later
    ones on any EVSE without a key, with a key the station controls): the session is held
    (meter_key_unknown), its readings unverified."""
    await server.add_tag(ISKRA_TAG)
    for key, evse in ((KEBA_KEY, "1"), (ISKRA_KEY, "2")):
        assert csms(server, "stations", "set-meter-key", "CP1", key, "--evse", evse
                    ).returncode == 0
    own, _forged_key = meter()
    t0, t1 = "2019-08-13T10:03:15", "2019-08-13T10:03:36"
    s = await signed_session_16(
        server, signed_by(own, [("B", "1.000", t0), ("E", "2.000", t1)], "SN-X", "T1"),
        meter_start=1000, meter_stop=2000, connector=connector)
    assert "meter_key_unknown" in s["flags"], s
    assert not await queued(server, s["id"])
    assert {r["status"] for r in show(server, s["id"])["signed_readings"]} == {"no_key"}
    assert await meter_key_events(server, "MeterKeyPinned") == []
    station = station_json(server)
    assert (station["meter_public_key"], station["meter_key_source"]) == (None, None)
    # later sessions on an EVSE without a key of its own are not verified with it either
    later = ("2019-08-13T11:00:00Z", "2019-08-13T11:05:00Z")
    t0, t1 = "2019-08-13T11:00:10", "2019-08-13T11:04:50"
    s2 = await signed_session_16(
        server, signed_by(own, [("B", "2.000", t0), ("E", "3.000", t1)], "SN-X", "T1"),
        meter_start=2000, meter_stop=3000, connector=4, times=later)
    assert "meter_key_unknown" in s2["flags"] and not await queued(server, s2["id"]), s2
    # the registered meters' own sessions are still billed
    honest = await iskra_session(server)
    assert honest["flags"] == [] and await queued(server, honest["id"])


# -- one meter reading, two stations ----------------------------------------------------
# A host with two stations has the meter's record of one station's session (its station
# sent it, a receipt shows it) sent again by the other, for the same token: the meter
# counted that energy once. Another session of the same station with the record is held
# (ocmf.reused); the record at another station is held the same way.


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
async def test_a_signed_record_replayed_by_another_station_is_held_not_billed_twice(
    server: RunningServer,
) -> None:
    await server.add_station("CP2")
    key, _ = meter()
    record = signed_by(key, [("B", "10.000", "2019-08-13T10:03:15"),
                             ("E", "20.000", "2019-08-13T10:33:15")], "SN-9", "T1")
    times = ("2019-08-13T10:03:15Z", "2019-08-13T10:33:15Z")
    # the key pinned on first use at each station (a host's meter key, as sent)
    first = await signed_session_16(server, record, meter_start=10000, meter_stop=20000,
                                    times=times)
    assert first["flags"] == [] and first["energy_wh"] == 10000
    assert await queued(server, first["id"])
    again = await signed_session_16(server, record, meter_start=10000, meter_stop=20000,
                                    station_id="CP2", times=times)
    assert "signed_reading_foreign" in again["flags"], again
    assert not await queued(server, again["id"])
    [mismatch] = [e for e in await events(server, "CP2", "billing_mismatch")
                  if "foreign" in e]
    assert mismatch["session_id"] == again["id"]
    assert any(f"session {first['id']}" in p for p in mismatch["foreign"]), mismatch
    # the first session stays billed as it was
    assert await queued(server, first["id"])
    # a record of the same meter of its own (another time, value and page) is billed
    own = signed_by(key, [("B", "20.000", "2019-08-13T11:00:00"),
                          ("E", "25.000", "2019-08-13T11:30:00")], "SN-9", "T1")
    later = await signed_session_16(server, own, meter_start=20000, meter_stop=25000,
                                    station_id="CP2",
                                    times=("2019-08-13T11:00:00Z", "2019-08-13T11:30:00Z"))
    assert later["flags"] == [] and await queued(server, later["id"]), later
