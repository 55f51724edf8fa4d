"""Alfen's signed meter data (``AP;...``) through real sockets: an Alfen charger's 1.6
session with the real begin and end records is verified, pinned and billed, not held; an
altered record or another meter's key holds it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from csms.metering.ocmf import normalize_key
from support import RunningServer
from support import csms_cli as csms
from support import is_queued as queued
from support import station_events as events

# The EVBox station simulator's Alfen begin/end pair (github.com/evbox/station-simulator):
# 111,133 Wh at 09:37:16Z and 111,271 Wh at 09:40:35Z on 2020-01-02, card 045D596A313480.
from support.alfen_vectors import (
    REFERENCE_BEGIN,
    SIM_BEGIN,
    SIM_END,
    SIM_KEY,
    SIM_UID,
    signed_record,
)
from support.client import RawClient

from .test_signed_meter_values import show

T0, T1 = "2020-01-02T09:37:15Z", "2020-01-02T09:40:36Z"


async def alfen_session(server: RunningServer, begin: str, end: str,
                        meter_start: int = 111133, meter_stop: int = 111271,
                        station_id: str = "ALFEN1", started: str = T0) -> dict[str, Any]:
    """A 1.6 session as an Alfen Eve reports it: both signed records in the
    StopTransaction's transactionData, format SignedData."""
    async with await RawClient.connect(server.url, station_id, ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "Alfen BV",
                                            "chargePointModel": "NG910-60023"})
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": SIM_UID, "meterStart": meter_start, "timestamp": started})
        await c.result("StopTransaction", {
            "transactionId": start["transactionId"], "meterStop": meter_stop, "timestamp": T1,
            "idTag": SIM_UID, "reason": "EVDisconnected",
            "transactionData": [
                {"timestamp": T0, "sampledValue": [
                    {"value": begin, "context": "Transaction.Begin", "format": "SignedData",
                     "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]},
                {"timestamp": T1, "sampledValue": [
                    {"value": end, "context": "Transaction.End", "format": "SignedData",
                     "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]})
    [session] = [s for s in await server.sessions(station_id)
                 if s["transaction_id"] == str(start["transactionId"])]
    return session


def altered(record: str, at: int) -> str:
    """The record with one byte of its signed dataset changed."""
    fields = record.split(";")
    raw = bytearray(base64.b32decode(fields[4]))
    raw[at] ^= 0x01
    fields[4] = base64.b32encode(bytes(raw)).decode()
    return ";".join(fields)


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    await csms_server.add_station("ALFEN1")
    await csms_server.add_tag(SIM_UID)
    return csms_server


async def test_an_alfen_session_is_verified_pinned_and_billed_not_held(
    server: RunningServer,
) -> None:
    s = await alfen_session(server, SIM_BEGIN, SIM_END)
    assert s["flags"] == [] and s["energy_wh"] == 138
    assert await queued(server, s["id"])
    data = show(server, s["id"])
    assert data["billing"] == "queued"
    assert [(r["tx_code"], r["reading_wh"], r["status"], r["meter_serial"], r["pagination"])
            for r in data["signed_readings"]] == [
        ("B", "111133", "verified", "0A01445A470033009347", "171"),
        ("E", "111271", "verified", "0A01445A470033009347", "172")]
    pinned = normalize_key(SIM_KEY)
    station = json.loads(csms(server, "stations", "show", "ALFEN1", "--json").stdout)
    assert (station["meter_public_key"], station["meter_key_source"]) == (pinned, "first_use")


async def test_a_session_without_station_readings_is_billed_from_the_signed_ones(
    server: RunningServer,
) -> None:
    # the key as printed on the charger, in base32, registered by the operator
    r = csms(server, "stations", "set-meter-key", "ALFEN1", SIM_KEY)
    assert r.returncode == 0, r.stderr
    # a station that reports kWh where OCPP 1.6 says Wh: the meter's Wh are billed
    s = await alfen_session(server, SIM_BEGIN, SIM_END, meter_start=111, meter_stop=111)
    assert "unit_discrepancy" in s["flags"] and "signature_invalid" not in s["flags"]
    assert (s["meter_start_wh"], s["meter_stop_wh"], s["energy_wh"]) == (111133, 111271, 138)
    assert await queued(server, s["id"])


async def test_an_altered_alfen_record_holds_the_session(server: RunningServer) -> None:
    s = await alfen_session(server, SIM_BEGIN, altered(SIM_END, 46))  # the end's value
    assert "signature_invalid" in s["flags"]
    assert not await queued(server, s["id"])
    data = show(server, s["id"])
    assert data["billing"] == "held"
    assert [r["status"] for r in data["signed_readings"]] == ["verified", "invalid"]


async def test_a_record_of_another_meter_key_is_a_changed_key_and_holds(
    server: RunningServer,
) -> None:
    first = await alfen_session(server, SIM_BEGIN, SIM_END)
    assert first["flags"] == []
    # the next session's begin record comes with another meter's key
    s = await alfen_session(server, REFERENCE_BEGIN, SIM_END, started="2020-01-02T09:37:14Z")
    assert {"meter_key_changed", "signature_invalid"} <= set(s["flags"])
    assert not await queued(server, s["id"])
    changed = [e for e in await events(server, "ALFEN1", "security")
               if e["type"] == "MeterKeyChanged"]
    assert changed and changed[0]["pinned"] == normalize_key(SIM_KEY)


async def test_a_record_the_adapter_marks_as_a_meter_reading_mismatch_holds(
    server: RunningServer,
) -> None:
    """The adapter sets status bit 26 ("meter reading mismatch": the meter's register at the
    start is not what the adapter kept from the session before, energy counted outside any
    session) in the begin record; the S.A.F.E. transparency software reports it as an error.
    Found: only bits 1, 2, 16, 30 and 31 were read as errors, and the session was billed
    and queued. The records are in Alfen's layout, signed with a test key (no public record
    has the bit set); the status word is inside the signed dataset."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP192R1())
    begin = signed_record(key, "0", 111133, 1577957836, 171, status=0x10000000 | 1 << 26)
    end = signed_record(key, "1", 111271, 1577958035, 172, status=0x20000000)
    s = await alfen_session(server, begin, end)
    assert "signed_reading_faulty" in s["flags"], s["flags"]
    assert not await queued(server, s["id"])
    assert show(server, s["id"])["billing"] == "held"


@pytest.mark.parametrize("value", [
    # an EDL40 / SML signature as hex (the start of an SML file), and an XML signed value
    "1B1B1B1B010101017605", '<?xml version="1.0"?><values><value context="Transaction.End"/>'
    "</values>",
])
async def test_signed_data_in_a_format_not_read_is_held_not_billed_unchecked(
    server: RunningServer, value: str,
) -> None:
    # the receipt of such a session would carry signed data no verifier can check (both say
    # INVALID): the operator decides (sessions release / reject), as for malformed OCMF
    s = await alfen_session(server, value, value)
    assert "signature_invalid" in s["flags"]
    assert not await queued(server, s["id"])
    assert {r["status"] for r in show(server, s["id"])["signed_readings"]} == {"malformed"}
