"""Real chargers' unsigned frames, played through real sockets against a real server, and
what would be billed for them.

Every 1.6 MeterValues frame here is what a charger sent, copied from a public log (the
source is named beside it); only the transactionId is replaced by the one this central
system assigned (a charger echoes the central system's number), and where the public log
is cut short only its complete sampled values are kept. The 2.0.1 event is EVerest's as a
central system logged it (said where it is); the Iocharger's 2.0.1 events and a
Grizzl-E's kWh frames are scaffolding around the register values their public reports
give (their frames were not published). The StartTransaction/StopTransaction (and 2.0.1
Started/Ended) around a frame are scaffolding - their meterStart/meterStop are the frame's
own register readings where the frame gives them - unless a test says they are the
charger's own (MicroOcpp's, the Wallbox Copper SB's stop). A hostile station's variant of
a frame says so. The energy billed is worked out by hand beside each test.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytest

from csms.domain.model import BILLING_HOLD_FLAGS
from support import RunningServer
from support import is_queued as queued
from support.client import RawClient

TX = -1  # stands for the transactionId this central system assigned


def frame(payload: dict[str, Any], txid: int) -> dict[str, Any]:
    """``payload`` with the assigned transactionId where the charger echoed its own."""
    out = copy.deepcopy(payload)
    if out.get("transactionId") == TX:
        out["transactionId"] = txid
    return out


async def charge16(server: RunningServer, station_id: str, tag: str, meter_start: int,
                   t0: str, frames: list[dict[str, Any]], meter_stop: int | None, t1: str,
                   stop: dict[str, Any] | None = None,
                   ) -> tuple[list[list[Any]], list[dict[str, Any]], dict[str, Any]]:
    """A 1.6 session on connector 1 with the charger's ``frames`` in between: the answer to
    each frame, the session as each frame left it, and the session once stopped (left
    active when ``meter_stop`` is None); ``stop``: more fields of the StopTransaction (the
    rest of a charger's own)."""
    answers: list[list[Any]] = []
    during: list[dict[str, Any]] = []
    async with await RawClient.connect(server.url, station_id, ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        r = await c.call("StartTransaction", {
            "connectorId": 1, "idTag": tag, "meterStart": meter_start, "timestamp": t0})
        assert r[0] == 3, r
        txid = r[2]["transactionId"]
        for payload in frames:
            answers.append(await c.call("MeterValues", frame(payload, txid)))
            during.append(await session(server, station_id, txid))
        if meter_stop is not None:
            r = await c.call("StopTransaction", {
                **(stop or {}), "transactionId": txid, "meterStop": meter_stop,
                "timestamp": t1})
            assert r[0] == 3, r
    return answers, during, await session(server, station_id, txid)


async def session(server: RunningServer, station_id: str, txid: int) -> dict[str, Any]:
    [found] = [s for s in await server.sessions(station_id)
               if s["transaction_id"] == str(txid)]
    return dict(found)


async def station_readings(server: RunningServer, station_id: str) -> list[dict[str, Any]]:
    """The station's stored readings: to which session, transaction and connector each went."""

    async def work(tx: Any) -> list[dict[str, Any]]:
        rows = await tx.fetchrows(
            "SELECT session_id, transaction_id, connector_id FROM meter_readings"
            " WHERE station_id = ? ORDER BY id", station_id)
        return [{"session_id": r[0], "transaction_id": r[1], "connector_id": r[2]}
                for r in rows]

    return list(await server.repo.read(work))


async def billed(server: RunningServer, s: dict[str, Any], energy_wh: int,
                 during: Sequence[dict[str, Any]] = ()) -> None:
    """``s`` is completed with ``energy_wh``, no hold flag, and waits for settlement; nor
    was it held while it ran (``during``: the session as each frame left it)."""
    for running in during:
        assert not BILLING_HOLD_FLAGS.intersection(running["flags"]), running
    assert s["status"] == "completed" and s["energy_wh"] == energy_wh, s
    assert not BILLING_HOLD_FLAGS.intersection(s["flags"]), s["flags"]
    assert await queued(server, s["id"])


# -- a Transaction.Begin reading repeated in every frame, stamped with the frame's time ---
# Growatt THOR 22AS (lbbrhzn/ocpp#1838, station FJN000032319005B): each MeterValues during
# the transaction carries the register twice, Sample.Periodic (now) and Transaction.Begin
# (the register at the start), both under the frame's timestamp, an offset of +10:00. The
# log is cut after the third current; the frame's voltages and power follow there.
GROWATT_22AS: dict[str, Any] = {"connectorId": 1, "transactionId": TX, "meterValue": [{
    "timestamp": "2026-01-05T14:58:38+10:00", "sampledValue": [
        {"value": "163630", "context": "Sample.Periodic", "format": "Raw",
         "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "157440", "context": "Transaction.Begin", "format": "Raw",
         "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "5.84", "context": "Sample.Periodic", "format": "Raw",
         "measurand": "Current.Import", "phase": "L1", "unit": "A"},
        {"value": "5.90", "context": "Sample.Periodic", "format": "Raw",
         "measurand": "Current.Import", "phase": "L2", "unit": "A"},
        {"value": "6.18", "context": "Sample.Periodic", "format": "Raw",
         "measurand": "Current.Import", "phase": "L3", "unit": "A"}]}]}


def growatt_11as(at: str, register: str, power_l1: str) -> dict[str, Any]:
    """Growatt THOR 11A/S (lbbrhzn/ocpp#1709, station CHM00003232208F3), firmware
    THOR_11AS-V5.2.4: a register that starts at 0 each transaction, the Transaction.Begin
    reading (0) beside it in every frame, offset +01:00; cut after the L1 power."""
    return {"connectorId": 1, "transactionId": TX, "meterValue": [{
        "timestamp": at, "sampledValue": [
            {"value": register, "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "0", "context": "Transaction.Begin", "format": "Raw",
             "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "9.46", "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            {"value": "0.0", "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Current.Import", "phase": "L2", "unit": "A"},
            {"value": "0.0", "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Current.Import", "phase": "L3", "unit": "A"},
            {"value": power_l1, "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Power.Active.Import", "phase": "L1", "unit": "W"}]}]}


def project_ev(at: str, register: str, current: str, voltage: str, power: str,
               ) -> dict[str, Any]:
    """Project EV (evcc-io/evcc#15768, station TAG0D1024B), the same firmware family: the
    register from 0 each transaction, Transaction.Begin "0" beside it, a Voltage with phase
    "L1" (not "L1-N"), Temperature in Celsius; a frame asked with TriggerMessage."""
    return {"connectorId": 1, "transactionId": TX, "meterValue": [{
        "timestamp": at, "sampledValue": [
            {"value": register, "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "0", "context": "Transaction.Begin", "format": "Raw",
             "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": current, "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            {"value": voltage, "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Voltage", "phase": "L1", "unit": "V"},
            {"value": power, "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Power.Active.Import", "phase": "L1", "unit": "W"},
            {"value": "30.0", "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Temperature", "unit": "Celsius"}]}]}


async def test_a_growatt_thor_22as_repeating_its_begin_reading_is_billed_and_not_held(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("FJN000032319005B")
    # meterStart is the frame's own Transaction.Begin reading; the stop reads the
    # register as the frame last did: 163,630 - 157,440 = 6,190 Wh (5.84-6.18 A on three
    # phases at ~237 V, ~4.2 kW, for the 1.5 h from 03:28Z to the frame at 04:58:38Z)
    answers, during, s = await charge16(
        csms_server, "FJN000032319005B", "T1", 157440, "2026-01-05T03:28:00Z",
        [GROWATT_22AS], 163630, "2026-01-05T04:59:00Z")
    assert answers == [[3, answers[0][1], {}]]
    assert during[0]["energy_wh"] == 6190  # the periodic reading, not the begin one
    await billed(csms_server, s, 6190, during)


async def test_growatt_and_project_ev_registers_from_zero_are_billed_and_not_held(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("CHM00003232208F3")
    await csms_server.add_station("TAG0D1024B")
    # Growatt THOR 11A/S: 0 -> 18 -> 111 Wh (2.2 kW on L1 for ~3 minutes): 111 Wh
    _, during, s = await charge16(csms_server, "CHM00003232208F3", "T1", 0,
                                  "2025-01-03T15:20:00Z", [
        growatt_11as("2025-01-03T16:20:47+01:00", "18", "2223"),
        growatt_11as("2025-01-03T16:23:18+01:00", "111", "2216")],
        111, "2025-01-03T15:23:30Z")
    assert [d["energy_wh"] for d in during] == [18, 111]
    await billed(csms_server, s, 111, during)
    # Project EV: 0 -> 385 -> 646 Wh (3.9 kW for ~10 minutes): 646 Wh
    _, during, s = await charge16(csms_server, "TAG0D1024B", "T1", 0,
                                  "2025-04-23T16:50:00Z", [
        project_ev("2025-04-23T16:55:53.038Z", "385", "16.33", "237.9", "3908"),
        project_ev("2025-04-23T16:59:52.012Z", "646", "16.40", "236.4", "3901")],
        646, "2025-04-23T17:00:00Z")
    assert [d["energy_wh"] for d in during] == [385, 646]
    await billed(csms_server, s, 646, during)


async def test_a_begin_reading_above_the_later_register_still_holds_the_session(
    csms_server: RunningServer,
) -> None:
    """A hostile station with the same shape: its Transaction.Begin reading is above the
    register it reports afterwards. A register never decreases: held, not billed."""
    await csms_server.add_tag("T1")
    await csms_server.add_station("FJN000032319005B")
    hostile = copy.deepcopy(GROWATT_22AS)
    hostile["meterValue"][0]["sampledValue"][1]["value"] = "170000"
    _, _, s = await charge16(csms_server, "FJN000032319005B", "T1", 157440,
                             "2026-01-05T03:28:00Z", [hostile], 163630,
                             "2026-01-05T04:59:00Z")
    assert "meter_went_backwards" in s["flags"]
    assert not await queued(csms_server, s["id"])


def growatt_22as(begin: str, **where: str) -> dict[str, Any]:
    """A hostile station's variant of the Growatt THOR 22AS frame: its Transaction.Begin
    reading is ``begin`` (in another unit or at a location when given)."""
    out = copy.deepcopy(GROWATT_22AS)
    out["meterValue"][0]["sampledValue"][1].update(value=begin, **where)
    return out


@pytest.mark.parametrize(("frames", "held"), [
    # the charger's own frame twice: one begin value repeated, 163,630 - 157,440 Wh billed
    ([GROWATT_22AS, GROWATT_22AS], False),
    # the same value in kWh is the same begin reading
    ([GROWATT_22AS, growatt_22as("157.44", unit="kWh")], False),
    # a begin reading a tenth of a Wh above the first one, in the next frame
    ([GROWATT_22AS, growatt_22as("157440.1")], True),
    # a begin reading of 0 after the first one, or before it, beside the meterStart the
    # other one repeats: a value the charger had not read, no second start (billed from
    # meterStart; a register counting from 0 would show in the readings after it)
    ([GROWATT_22AS, growatt_22as("0")], False),
    ([growatt_22as("0"), GROWATT_22AS], False),
    # a begin reading at the inlet beside the outlet's (the frame's, without a location):
    # the inlet's register is not billed, its start is not the session's
    ([GROWATT_22AS, growatt_22as("160000", location="Inlet")], False),
], ids=["repeated", "in-kwh", "a-tenth-of-a-wh-apart", "zero-later", "zero-first",
        "the-inlets"])
async def test_begin_readings_that_differ_hold_the_session(
    csms_server: RunningServer, frames: list[dict[str, Any]], held: bool,
) -> None:
    """A charger that repeats its Transaction.Begin reading (Growatt THOR 22AS above)
    repeats one value; two values are two starts, and the reported meterStart (one of
    them) is no reason to believe either: held for an operator, not billed - and shown
    held from the frame that brings the second value, while the session runs."""
    await csms_server.add_tag("T1")
    await csms_server.add_station("FJN000032319005B")
    # meterStart 157,440 and meterStop 163,630 (scaffolding: the frame's readings)
    _, during, s = await charge16(csms_server, "FJN000032319005B", "T1", 157440,
                                  "2026-01-05T03:28:00Z", frames, 163630,
                                  "2026-01-05T04:59:00Z")
    if held:
        assert during[-1]["status"] == "active", during
        assert "begin_readings_differ" in during[-1]["flags"], during
        assert s["status"] == "completed" and "begin_readings_differ" in s["flags"], s
        assert not await queued(csms_server, s["id"])
    else:
        await billed(csms_server, s, 6190, during)


@pytest.mark.parametrize(("meter_start", "frame", "held", "running_wh", "energy_wh"), [
    # a hostile station: meterStart 1,000 Wh below its own begin reading, to bill 1,000 Wh
    # it never delivered: held, counted from the begin reading (163,630 - 157,440)
    (156440, GROWATT_22AS, True, 6190, 6190),
    # meterStart 1,000 Wh above it: held as well, counted from meterStart
    (158440, GROWATT_22AS, True, 5190, 5190),
    # the begin reading in kWh to 10 Wh, meterStart to the Wh within it: one start,
    # meterStart's (billed 163,630 - 157,443); the running energy is counted from the begin
    # reading, which the charger repeats (then its frames are read no further)
    (157443, growatt_22as("157.44", unit="kWh"), False, 6190, 6187),
    # the inlet's begin reading is not the billed register's start
    (157440, growatt_22as("157000", location="Inlet"), False, 6190, 6190),
], ids=["meter-start-below", "meter-start-above", "within-kwh-resolution", "the-inlets"])
async def test_a_meter_start_that_differs_from_the_begin_reading_holds_the_session(
    csms_server: RunningServer, meter_start: int, frame: dict[str, Any], held: bool,
    running_wh: int, energy_wh: int,
) -> None:
    """The Growatt THOR 22AS frame after a StartTransaction whose meterStart is not its
    Transaction.Begin reading: two starts, held from that frame on (the console shows it,
    the running energy is never counted from the lower one) and once stopped."""
    await csms_server.add_tag("T1")
    await csms_server.add_station("FJN000032319005B")
    _, during, s = await charge16(csms_server, "FJN000032319005B", "T1", meter_start,
                                  "2026-01-05T03:28:00Z", [frame], 163630,
                                  "2026-01-05T04:59:00Z")
    assert during[0]["energy_wh"] == running_wh
    if not held:
        await billed(csms_server, s, energy_wh, during)
        return
    assert during[0]["status"] == "active"
    assert "begin_readings_differ" in during[0]["flags"], during
    assert s["status"] == "completed" and "begin_readings_differ" in s["flags"], s
    assert s["energy_wh"] == energy_wh and not await queued(csms_server, s["id"])


# -- decimals, kWh, locations, measurands beside the register ------------------------------
# Alfen (lbbrhzn/ocpp#609, station "CHHome-1"; the reporter's charger in lbbrhzn/ocpp#19 is
# an Alfen): the register with three decimals at the Outlet, a Power.Factor without a
# unit; the log is cut after the third current.
ALFEN: dict[str, Any] = {"connectorId": 1, "transactionId": TX, "meterValue": [{
    "timestamp": "2022-09-04T18:39:12Z", "sampledValue": [
        {"value": "3058620.000", "context": "Sample.Periodic",
         "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
        {"value": "0.000", "context": "Sample.Periodic", "measurand": "Power.Active.Import",
         "location": "Outlet", "unit": "W"},
        {"value": "0.000", "context": "Sample.Periodic", "measurand": "Power.Active.Import",
         "location": "Outlet", "unit": "W", "phase": "L1"},
        {"value": "0.000", "context": "Sample.Periodic", "measurand": "Power.Active.Import",
         "location": "Outlet", "unit": "W", "phase": "L2"},
        {"value": "0.000", "context": "Sample.Periodic", "measurand": "Power.Active.Import",
         "location": "Outlet", "unit": "W", "phase": "L3"},
        {"value": "0.000", "context": "Sample.Periodic", "measurand": "Power.Factor",
         "location": "Outlet"},
        {"value": "0.000", "context": "Sample.Periodic", "measurand": "Current.Import",
         "location": "Outlet", "unit": "A", "phase": "L1"},
        {"value": "0.000", "context": "Sample.Periodic", "measurand": "Current.Import",
         "location": "Outlet", "unit": "A", "phase": "L2"},
        {"value": "0.000", "context": "Sample.Periodic", "measurand": "Current.Import",
         "location": "Outlet", "unit": "A", "phase": "L3"}]}]}


def wallbox(at: str, context: str, register: str, power: str) -> dict[str, Any]:
    """Wallbox Pulsar Pro (evcc-io/evcc#22087): the register with one decimal ("598772.0"),
    every value at the Outlet, the frame asked with TriggerMessage marked Trigger; cut
    after the L1 current. (Its transactionId follows meterValue: evcc-io/evcc#15492.)"""
    return {"meterValue": [{"timestamp": at, "sampledValue": [
        {"format": "Raw", "location": "Outlet", "context": context,
         "measurand": "Power.Active.Import", "unit": "W", "value": power},
        {"format": "Raw", "location": "Outlet", "context": context,
         "measurand": "Energy.Active.Import.Register", "unit": "Wh", "value": register},
        {"format": "Raw", "location": "Outlet", "context": context, "phase": "L1",
         "measurand": "Current.Import", "unit": "A",
         "value": "9.0" if context == "Sample.Periodic" else "0.0"}]}],
        "connectorId": 1, "transactionId": TX}


# Wallbox Pulsar Plus (evcc-io/evcc#15492, station g001): 11 kW, the register with a
# decimal that is not zero; cut after the L1 current.
WALLBOX_PULSAR_PLUS: dict[str, Any] = {"meterValue": [{
    "timestamp": "2024-08-19T09:17:13Z", "sampledValue": [
    {"format": "Raw", "location": "Outlet", "context": "Sample.Periodic",
     "measurand": "Energy.Active.Import.Register", "unit": "Wh", "value": "532363.9"},
    {"format": "Raw", "location": "Outlet", "context": "Sample.Periodic",
     "measurand": "Power.Active.Import", "unit": "W", "value": "11027.4"},
    {"format": "Raw", "location": "Outlet", "context": "Sample.Periodic",
     "measurand": "Current.Offered", "unit": "A", "value": "16"},
    {"format": "Raw", "location": "Outlet", "context": "Sample.Periodic",
     "measurand": "Power.Offered", "unit": "W", "value": "11085"},
    {"format": "Raw", "location": "Outlet", "context": "Sample.Periodic", "phase": "L1",
     "measurand": "Current.Import", "unit": "A", "value": "15.5"}]}],
    "connectorId": 1, "transactionId": TX}


def elecq(at: str, context: str, values: tuple[str, str, str, str, str, str]
          ) -> dict[str, Any]:
    """Elecq (evcc-io/evcc#16966, station JVH223002421WE): the register at the Body, power
    in kW, current and power with phase "L1-N"; cut after the third voltage."""
    v1, i1, p1, register, v2, v3 = values
    return {"connectorId": 1, "transactionId": TX, "meterValue": [{
        "timestamp": at, "sampledValue": [
            {"value": v1, "context": context, "format": "Raw",
             "measurand": "Voltage", "phase": "L1-N", "location": "Body", "unit": "V"},
            {"value": i1, "context": context, "format": "Raw", "measurand": "Current.Import",
             "phase": "L1-N", "location": "Body", "unit": "A"},
            {"value": p1, "context": context, "format": "Raw",
             "measurand": "Power.Active.Import", "phase": "L1-N", "location": "Body",
             "unit": "kW"},
            {"value": register, "context": context, "format": "Raw",
             "measurand": "Energy.Active.Import.Register", "location": "Body", "unit": "Wh"},
            {"value": "16.00", "context": context, "format": "Raw",
             "measurand": "Current.Offered", "location": "Body", "unit": "A"},
            {"value": v2, "context": context, "format": "Raw",
             "measurand": "Voltage", "phase": "L2-N", "location": "Body", "unit": "V"},
            {"value": v3, "context": context, "format": "Raw",
             "measurand": "Voltage", "phase": "L3-N", "location": "Body", "unit": "V"}]}]}


# Injet Sonic (lbbrhzn/ocpp#1311, station 72380662347719), the whole frame: no context, no
# format, power in kW, a current of phase "N".
INJET: dict[str, Any] = {"connectorId": 1, "transactionId": TX, "meterValue": [{
    "timestamp": "2024-09-05T21:41:59.333Z", "sampledValue": [
        {"measurand": "Energy.Active.Import.Register", "unit": "Wh", "value": "254780"},
        {"measurand": "Power.Active.Import", "unit": "kW", "value": "3.5"},
        {"measurand": "Temperature", "unit": "Celsius", "value": "35"},
        {"measurand": "Voltage", "phase": "L1-N", "unit": "V", "value": "231.1"},
        {"measurand": "Current.Import", "phase": "N", "unit": "A", "value": "15.6"}]}]}

# Teison (lbbrhzn/ocpp#1617, station 0312209102324480672, model TeisonMe@7KW), the whole
# frame: a voltage alone, no energy at all.
TEISON: dict[str, Any] = {"connectorId": 1, "transactionId": TX, "meterValue": [{
    "timestamp": "2025-04-18T04:08:41.000Z", "sampledValue": [
        {"value": "246.76", "context": "Sample.Periodic", "measurand": "Voltage",
         "location": "Outlet", "unit": "V"}]}]}


async def test_decimal_registers_at_any_location_are_billed_exactly(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("T1")
    for station in ("CHHome-1", "g001", "Wallbox", "JVH223002421WE", "72380662347719"):
        await csms_server.add_station(station)
    # Alfen: meterStart 3,058,000 (scaffolding); "3058620.000" Wh is 620 Wh on
    answers, during, s = await charge16(csms_server, "CHHome-1", "T1", 3058000,
                                        "2022-09-04T18:30:00Z", [ALFEN], 3058620,
                                        "2022-09-04T18:40:00Z")
    assert answers[0][0] == 3 and during[0]["energy_wh"] == 620
    await billed(csms_server, s, 620, during)
    # Wallbox Pulsar Plus: 532,000 -> "532363.9" (running: whole Wh so far, 363); the
    # stop's meterStop is an integer (1.6 §6.45): 532,364 - 532,000 = 364 Wh
    _, during, s = await charge16(csms_server, "g001", "T1", 532000, "2024-08-19T09:15:00Z",
                                  [WALLBOX_PULSAR_PLUS], 532364, "2024-08-19T09:17:20Z")
    assert during[0]["energy_wh"] == 363
    await billed(csms_server, s, 364, during)
    # Wallbox Pulsar Pro: "598772.0" (periodic) -> "600007.0" (asked): 1,235 Wh
    _, during, s = await charge16(csms_server, "Wallbox", "T1", 598772,
                                  "2025-06-28T09:40:00Z", [
        wallbox("2025-06-28T09:45:25Z", "Sample.Periodic", "598772.0", "6330.6"),
        wallbox("2025-06-28T10:02:56Z", "Trigger", "600007.0", "0.0")],
        600007, "2025-06-28T10:03:00Z")
    assert [d["energy_wh"] for d in during] == [0, 1235]
    await billed(csms_server, s, 1235, during)
    # Elecq, at the Body (its only register, so the billed one), a periodic frame and one
    # asked 40 s later: 2,331,816 -> 2,331,855 (3.45 kW for 40 s: 38 Wh); from 2,330,000
    # (scaffolding) 1,855 Wh
    _, during, s = await charge16(csms_server, "JVH223002421WE", "T1", 2330000,
                                  "2024-10-29T20:20:00Z", [
        elecq("2024-10-29T20:50:03Z", "Sample.Periodic",
              ("222.30", "15.52", "3.43", "2331816", "231.60", "230.60")),
        elecq("2024-10-29T20:50:43Z", "Trigger",
              ("222.50", "15.58", "3.45", "2331855", "231.80", "230.50"))],
        2331855, "2024-10-29T20:51:00Z")
    assert [d["energy_wh"] for d in during] == [1816, 1855]
    await billed(csms_server, s, 1855, during)
    # Injet: no measurand context; 254,780 - 254,000 = 780 Wh at 3.5 kW
    _, during, s = await charge16(csms_server, "72380662347719", "T1", 254000,
                                  "2024-09-05T21:28:00Z", [INJET], 254780,
                                  "2024-09-05T21:42:00Z")
    assert during[0]["energy_wh"] == 780
    await billed(csms_server, s, 780, during)


async def test_a_frame_without_energy_changes_nothing_billed(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("0312209102324480672")
    # meterStart 1,000, meterStop 1,400 (scaffolding): the voltage is no reading
    answers, during, s = await charge16(csms_server, "0312209102324480672", "T1", 1000,
                                        "2025-04-18T04:00:00Z", [TEISON], 1400,
                                        "2025-04-18T04:10:00Z")
    assert answers[0][0] == 3 and during[0]["flags"] == [] and not during[0]["energy_wh"]
    await billed(csms_server, s, 400, during)


# -- frames that are no reading of the session ---------------------------------------------
# Each sent while a transaction ran on the charger, yet naming no transaction (or the main
# meter): kept as the station's readings, never the session's, whatever register they carry.

# A charger logged in sap-labs-france/ev-dashboard#1817 during its transaction 795105678:
# transactionId 0, the register in kWh ("5.146" kWh); cut after the voltage.
TX_ZERO_KWH: dict[str, Any] = {"connectorId": 1, "transactionId": 0, "meterValue": [{
    "timestamp": "2020-07-09T12:09:11.940Z", "sampledValue": [
        {"value": "5.146", "context": "Sample.Periodic", "format": "Raw",
         "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
        {"value": "222.5", "context": "Sample.Periodic", "format": "Raw",
         "measurand": "Voltage", "unit": "V"}]}]}

# evcc-io/evcc#27686 (station HKW.WB07): transactionId 0, and each sampled value in a
# meterValue of its own under one timestamp; cut after the L1 voltage.
HKW_WB07: dict[str, Any] = {"connectorId": 1, "transactionId": 0, "meterValue": [
    {"timestamp": "2026-02-25T09:13:00.458Z", "sampledValue": [sv]} for sv in (
        {"value": "0", "measurand": "Power.Active.Import", "phase": "L1", "unit": "W"},
        {"value": "0", "measurand": "Power.Active.Import", "phase": "L2", "unit": "W"},
        {"value": "0", "measurand": "Power.Active.Import", "phase": "L3", "unit": "W"},
        {"value": "0", "measurand": "Power.Active.Import", "unit": "W"},
        {"value": "506121", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "0", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
        {"value": "0", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
        {"value": "0", "measurand": "Current.Import", "phase": "L3", "unit": "A"},
        {"value": "232.519", "measurand": "Voltage", "phase": "L1", "unit": "V"})]}

# ABB Terra AC (evcc-io/evcc#6817, station TACW****), the whole frame: the main meter
# (connector 0), asked with TriggerMessage, no transactionId.
ABB_CONNECTOR_0: dict[str, Any] = {"connectorId": 0, "meterValue": [{
    "timestamp": "2023-03-19T12:27:41.000Z", "sampledValue": [
        {"value": "0", "context": "Trigger", "format": "Raw",
         "measurand": "Power.Active.Import", "phase": "L1", "unit": "W"},
        {"value": "0", "context": "Trigger", "format": "Raw",
         "measurand": "Power.Active.Import", "phase": "L2", "unit": "W"},
        {"value": "0", "context": "Trigger", "format": "Raw",
         "measurand": "Power.Active.Import", "phase": "L3", "unit": "W"},
        {"value": "139", "context": "Trigger", "format": "Raw",
         "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "0.0", "context": "Trigger", "format": "Raw",
         "measurand": "Current.Import", "unit": "A"},
        {"value": "0", "context": "Trigger", "format": "Raw",
         "measurand": "Power.Active.Import", "unit": "W"}]}]}


async def test_frames_of_no_transaction_are_the_stations_not_the_sessions(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("CP1")
    # a session 1,000 -> 1,500 Wh (scaffolding) with the three frames in between: the
    # 5,146 Wh, 506,121 Wh and 139 Wh registers are no reading of it, 500 Wh is billed
    answers, during, s = await charge16(
        csms_server, "CP1", "T1", 1000, "2026-02-25T09:00:00Z",
        [TX_ZERO_KWH, HKW_WB07, ABB_CONNECTOR_0], 1500, "2026-02-25T09:20:00Z")
    assert [a[0] for a in answers] == [3, 3, 3]
    assert [d["energy_wh"] for d in during] == [None, None, None]
    await billed(csms_server, s, 500, during)
    assert [(r["session_id"], r["transaction_id"], r["connector_id"])
            for r in await station_readings(csms_server, "CP1")] == [
        (None, "0", 1), (None, "0", 1), (None, None, 0)]


# Huawei (lbbrhzn/ocpp#1144): meterValue as one object, not an array of them.
HUAWEI: dict[str, Any] = {"connectorId": 1, "transactionId": TX, "meterValue": {
    "timestamp": "2024-04-16T17:28:55.000Z", "sampledValue": [
        {"value": "0.00", "context": "Transaction.Begin",
         "measurand": "Energy.Active.Import.Register", "unit": "kWh"}]}}

# An ESP32 charger on MicroOcpp (matth-x/MicroOcpp#128), the whole frame: a measurand
# "Current.import" and a unit "Hz", neither in the schema's enums (the register twice).
MICROOCPP: dict[str, Any] = {"connectorId": 1, "transactionId": TX, "meterValue": [{
    "timestamp": "2023-03-17T04:55:19.000Z", "sampledValue": [
        {"value": "0", "context": "Sample.Periodic",
         "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "230", "context": "Sample.Periodic", "measurand": "Voltage",
         "phase": "L1", "unit": "V"},
        {"value": "124", "context": "Sample.Periodic", "measurand": "Current.import",
         "unit": "A"},
        {"value": "1244", "context": "Sample.Periodic",
         "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "50", "context": "Sample.Periodic", "measurand": "Frequency",
         "unit": "Hz"}]}]}


@pytest.mark.parametrize(("payload", "fault", "where"), [
    # MeterValues.json: meterValue is of type array (OCPP-J 1.6 §4.2.3: a field of
    # another type is a TypeConstraintViolation)
    (HUAWEI, "TypeConstraintViolation", "meterValue"),
    # MeterValues.json: measurand and unit are enums (a value outside one is a
    # PropertyConstraintViolation)
    (MICROOCPP, "PropertyConstraintViolation", "sampledValue"),
], ids=["huawei-meter-value-object", "microocpp-measurand-and-unit"])
async def test_a_frame_the_schema_refuses_is_answered_so_and_changes_nothing(
    csms_server: RunningServer, payload: dict[str, Any], fault: str, where: str,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("CP1")
    # meterStart 0, meterStop 2,000 (scaffolding): 2,000 Wh, the refused frame aside
    answers, during, s = await charge16(csms_server, "CP1", "T1", 0,
                                        "2024-04-16T17:28:00Z", [payload], 2000,
                                        "2024-04-16T17:48:00Z")
    assert answers[0][0] == 4 and answers[0][2] == fault, answers
    assert where in answers[0][3]
    assert during[0]["energy_wh"] is None and during[0]["flags"] == []
    await billed(csms_server, s, 2000, during)
    assert await station_readings(csms_server, "CP1") == []


# -- per-phase registers beside the total, and other energies -------------------------------
# EVerest's AC wallbox (EVerest/EVerest#1835, OCPP 2.0.1, libocpp), the Updated event as
# the reporter's central system logged it: the total register and, despite
# RegisterValuesWithoutPhases, each phase's beside it. The log shows the parsed message
# (its nulls are the central system's, dropped here; the meterValue's time is cut, the
# event's is used) and is cut after the L1 register.
EVEREST_TX = "57da73c2-49ee-4abc-be95-cb12f783cc91"
EVEREST_UPDATED: dict[str, Any] = {
    "eventType": "Updated", "timestamp": "2026-02-17T07:14:25.138Z",
    "triggerReason": "MeterValuePeriodic", "seqNo": 1, "offline": False,
    "transactionInfo": {"transactionId": EVEREST_TX, "chargingState": "Charging"},
    "meterValue": [{"timestamp": "2026-02-17T07:14:25.138Z", "sampledValue": [
        {"value": 171.0, "context": "Sample.Periodic",
         "measurand": "Energy.Active.Import.Register", "location": "Outlet",
         "unitOfMeasure": {"unit": "Wh", "multiplier": 0}},
        {"value": 57.0, "context": "Sample.Periodic",
         "measurand": "Energy.Active.Import.Register", "phase": "L1", "location": "Outlet",
         "unitOfMeasure": {"unit": "Wh", "multiplier": 0}}]}]}


def event201(kind: str, seq_no: int, at: str, context: str, wh: float) -> dict[str, Any]:
    """Scaffolding: a Started or Ended event of the EVerest transaction with one reading."""
    return {"eventType": kind, "timestamp": at, "seqNo": seq_no,
            "triggerReason": "Authorized" if kind == "Started" else "EVCommunicationLost",
            "transactionInfo": {"transactionId": EVEREST_TX,
                                **({"stoppedReason": "EVDisconnected"}
                                   if kind == "Ended" else {})},
            **({"evse": {"id": 1, "connectorId": 1},
                "idToken": {"idToken": "T1", "type": "ISO14443"}}
               if kind == "Started" else {}),
            "meterValue": [{"timestamp": at, "sampledValue": [
                {"value": wh, "context": context,
                 "measurand": "Energy.Active.Import.Register", "location": "Outlet",
                 "unitOfMeasure": {"unit": "Wh", "multiplier": 0}}]}]}


async def charge201(server: RunningServer, updated: dict[str, Any],
                    running: list[dict[str, Any]] | None = None,
                    ) -> tuple[list[Any], dict[str, Any]]:
    """Started at 0 Wh, the Updated event, Ended at 171 Wh (11 kW for ~65 s); the session
    as the Updated event left it is added to ``running`` when given."""
    async with await RawClient.connect(server.url, "EVEREST1", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {
            "reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}})
        r = await c.call("TransactionEvent", event201(
            "Started", 0, "2026-02-17T07:13:20.000Z", "Transaction.Begin", 0.0))
        assert r[0] == 3, r
        answer = await c.call("TransactionEvent", updated)
        if running is not None:
            [s] = await server.sessions("EVEREST1")
            running.append(dict(s))
        r = await c.call("TransactionEvent", event201(
            "Ended", 2, "2026-02-17T07:14:30.000Z", "Transaction.End", 171.0))
        assert r[0] == 3, r
    [s] = await server.sessions("EVEREST1")
    return answer, s


async def test_per_phase_registers_beside_the_total_are_never_added(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("EVEREST1")
    # 171 - 0 Wh from the total register; the L1 register (57 Wh) is a part of it
    answer, s = await charge201(csms_server, EVEREST_UPDATED)
    assert answer[0] == 3
    await billed(csms_server, s, 171)


async def test_a_hostile_stations_other_energies_are_never_billed(
    csms_server: RunningServer,
) -> None:
    """The same event from a hostile station: a phase register far above the total, an
    interval energy, the EV's own register, and an export register - none is the total
    import register of the outlet, none is billed or holds the session."""
    await csms_server.add_tag("T1")
    await csms_server.add_station("EVEREST1")
    hostile = copy.deepcopy(EVEREST_UPDATED)
    extra = [("Energy.Active.Import.Register", {"phase": "L2"}, 9_000_000.0),
             ("Energy.Active.Import.Interval", {}, 50_000.0),
             ("Energy.Active.Import.Register", {"location": "EV"}, 900_000.0),
             ("Energy.Active.Export.Register", {}, 400_000.0)]
    hostile["meterValue"][0]["sampledValue"] += [
        {"value": wh, "context": "Sample.Periodic", "measurand": measurand,
         "unitOfMeasure": {"unit": "Wh"}, **where} for measurand, where, wh in extra]
    answer, s = await charge201(csms_server, hostile)
    assert answer[0] == 3
    await billed(csms_server, s, 171)


@pytest.mark.parametrize(("begin", "held"), [
    ({"value": 0.0}, False),  # the Started event's begin reading repeated
    ({"value": 57.0}, True),  # another start, in a later event than the Started one
    ({"value": 0.057, "unitOfMeasure": {"unit": "kWh", "multiplier": 0}}, True),
    ({"value": 57.0, "location": "Inlet"}, False),  # the inlet's: not the billed register
], ids=["repeated", "differs", "differs-in-kwh", "the-inlets"])
async def test_a_201_begin_reading_that_differs_from_the_started_ones_holds_the_session(
    csms_server: RunningServer, begin: dict[str, Any], held: bool,
) -> None:
    """A hostile station's variant of the EVerest Updated event: a Transaction.Begin
    reading of the outlet's total register beside the periodic one. 2.0.1 has no
    meterStart: the start is the begin reading, and two of them leave it unknown - held
    from the Updated event that brings the second, while the session runs."""
    await csms_server.add_tag("T1")
    await csms_server.add_station("EVEREST1")
    hostile = copy.deepcopy(EVEREST_UPDATED)
    hostile["meterValue"][0]["sampledValue"].append({
        "context": "Transaction.Begin", "measurand": "Energy.Active.Import.Register",
        "location": "Outlet", "unitOfMeasure": {"unit": "Wh", "multiplier": 0}, **begin})
    running: list[dict[str, Any]] = []
    answer, s = await charge201(csms_server, hostile, running)
    assert answer[0] == 3
    if held:
        assert running[0]["status"] == "active", running
        assert "begin_readings_differ" in running[0]["flags"], running
        # counted from the higher start, 57 Wh: 171 - 57
        assert running[0]["energy_wh"] == 114, running
        assert s["status"] == "completed" and "begin_readings_differ" in s["flags"], s
        assert not await queued(csms_server, s["id"])
    else:
        await billed(csms_server, s, 171, running)  # 171 - 0 Wh


# -- 2.0.1: a begin reading of 0 beside a lifetime register ---------------------------------
# An Iocharger AC station (model IOCAW12-22TE-CRW4, firmware 25101501) that starts a
# transaction while offline - rebooted with the cable plugged in - cannot read its register
# yet and reports Transaction.Begin 0; once online it reads its lifetime register (909,948
# Wh), and the transaction ends at 910,031 Wh (citrineos/citrineos-core#1060, which gives
# these values, not the frames). The events below are scaffolding around those values: the
# times (three hours plugged in), seqNos and the idToken are this test's.
IOCHARGER_TX = "IOC-1"


def iocharger(kind: str, seq_no: int, at: str, context: str, wh: float,
              **extra: Any) -> dict[str, Any]:
    """Scaffolding: an event of the Iocharger transaction with one register reading."""
    started = kind == "Started"
    return {"eventType": kind, "timestamp": at, "seqNo": seq_no,
            "triggerReason": {"Started": "CablePluggedIn", "Updated": "MeterValuePeriodic",
                              "Ended": "EVCommunicationLost"}[kind],
            "transactionInfo": {"transactionId": IOCHARGER_TX,
                                **({"stoppedReason": "EVDisconnected"}
                                   if kind == "Ended" else {})},
            **({"evse": {"id": 1, "connectorId": 1}, "offline": True,
                "idToken": {"idToken": "T1", "type": "ISO14443"}} if started else {}),
            "meterValue": [{"timestamp": at, "sampledValue": [
                {"value": wh, "context": context,
                 "measurand": "Energy.Active.Import.Register",
                 "unitOfMeasure": {"unit": "Wh"}}]}], **extra}


async def play201(server: RunningServer, station_id: str, events: list[dict[str, Any]],
                  ) -> tuple[list[list[Any]], list[dict[str, Any] | None], dict[str, Any] | None]:
    """A 2.0.1 station's ``events`` over one connection: the answer to each, the session
    as each left it (None while there is none), and the session at the end."""
    answers: list[list[Any]] = []
    during: list[dict[str, Any] | None] = []
    async with await RawClient.connect(server.url, station_id, ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {
            "reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}})
        for event in events:
            answers.append(await c.call("TransactionEvent", event))
            found = await server.sessions(station_id)
            during.append(dict(found[0]) if found else None)
    return answers, during, during[-1]


async def test_a_201_begin_reading_of_0_beside_a_lifetime_register_is_a_placeholder(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("IOCAW12")
    answers, during, s = await play201(csms_server, "IOCAW12", [
        iocharger("Started", 0, "2026-09-10T05:58:00Z", "Transaction.Begin", 0),
        iocharger("Updated", 1, "2026-09-10T05:59:00Z", "Sample.Periodic", 909948),
        iocharger("Ended", 2, "2026-09-10T08:58:00Z", "Transaction.End", 910031)])
    assert [a[0] for a in answers] == [3, 3, 3]
    # the lifetime register a minute after the start is no 909,948 Wh delivered (no
    # charger delivers that in a minute): the session starts there, nothing so far; the
    # driver's limit and running cost see 0, not 909,948 Wh
    assert during[1] is not None and during[1]["energy_wh"] == 0
    # 910,031 - 909,948 = 83 Wh, not 910,031 (which 350 kW, the default maximum power,
    # could deliver in three hours: not held, billed)
    assert s is not None and s["meter_start_wh"] == 909948
    assert "meter_start_placeholder" in s["flags"]
    await billed(csms_server, s, 83)


async def test_a_201_begin_reading_read_again_once_online_holds_the_session(
    csms_server: RunningServer,
) -> None:
    """A variant: once online the station reports its register at the start again, as a
    second Transaction.Begin reading beside the periodic one - two starts, 0 and 909,948
    Wh: held for an operator, not billed, from the Updated event on (its running energy
    counted from the lifetime register, not 909,948 Wh)."""
    await csms_server.add_tag("T1")
    await csms_server.add_station("IOCAW12")
    updated = iocharger("Updated", 1, "2026-09-10T05:59:00Z", "Sample.Periodic", 909948)
    updated["meterValue"][0]["sampledValue"].append({
        "value": 909948, "context": "Transaction.Begin",
        "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}})
    _, during, s = await play201(csms_server, "IOCAW12", [
        iocharger("Started", 0, "2026-09-10T05:58:00Z", "Transaction.Begin", 0), updated,
        iocharger("Ended", 2, "2026-09-10T08:58:00Z", "Transaction.End", 910031)])
    running = during[1]
    assert running is not None and running["status"] == "active"
    assert "begin_readings_differ" in running["flags"] and running["energy_wh"] == 0
    assert s is not None and s["status"] == "completed"
    assert "begin_readings_differ" in s["flags"] and not await queued(csms_server, s["id"])


# -- 2.0.1: the EVerest event, its register written as other stations write it ------------
# Variants of EVEREST_UPDATED above (each says what it changes), between its scaffolding
# Started (0 Wh) and Ended (171 Wh): what the running energy reads after the Updated event
# (the driver's limit and running cost) and what is billed.
def everest_updated(reading: dict[str, Any] | None = None, *more: dict[str, Any],
                    **event: Any) -> dict[str, Any]:
    """EVerest's Updated event with its total register replaced by ``reading`` (kept when
    None), ``more`` meterValues after its own and the event's fields ``event`` changed."""
    out = copy.deepcopy(EVEREST_UPDATED)
    if reading is not None:
        out["meterValue"][0]["sampledValue"][0] = {
            "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
            "location": "Outlet", **reading}
    out["meterValue"] += list(more)
    out.update(event)
    return out


def everest_session(*updated: dict[str, Any], started: dict[str, Any] | None = None,
                    ) -> list[dict[str, Any]]:
    """Started (scaffolding, 0 Wh), the ``updated`` events, Ended (171 Wh) numbered after
    them."""
    return [started or event201("Started", 0, "2026-02-17T07:13:20.000Z",
                                "Transaction.Begin", 0.0), *updated,
            event201("Ended", max(u["seqNo"] for u in updated) + 1,
                     "2026-02-17T07:14:30.000Z", "Transaction.End", 171.0)]


@pytest.mark.parametrize("reading", [
    None,  # EVerest's own: 171.0 Wh, multiplier 0
    {"value": 0.171, "unitOfMeasure": {"unit": "kWh", "multiplier": 0}},  # 0.171 kWh
    {"value": 0.171, "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},  # 0.171 x 10^3 Wh
    {"value": 171, "unitOfMeasure": {"unit": "Wh"}},  # an integer, multiplier omitted
    {"value": 0.1714},  # no unit: Wh (§2.56); 0.1714 Wh is no 171 Wh
], ids=["everest", "kwh", "wh-multiplier-3", "integer", "no-unit"])
async def test_a_201_register_in_any_unit_and_multiplier_is_read_as_wh(
    csms_server: RunningServer, reading: dict[str, Any] | None,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("EVEREST1")
    answers, during, s = await play201(
        csms_server, "EVEREST1", everest_session(everest_updated(reading)))
    assert [a[0] for a in answers] == [3, 3, 3]
    # running: 171 Wh after the event, 0 for the variant without a unit (0.1714 Wh, under
    # a whole Wh); billed: the Ended event's 171 - 0 Wh either way
    assert during[1] is not None
    assert during[1]["energy_wh"] == (0 if reading == {"value": 0.1714} else 171)
    assert s is not None
    await billed(csms_server, s, 171)


async def test_201_clock_aligned_readings_offline_events_and_seqno_gaps_are_billed(
    csms_server: RunningServer,
) -> None:
    """Variants: a clock-aligned reading (Sample.Clock, 07:14:00) before the periodic one
    in the event; then an event queued while offline (offline true, seqNo 5 after 1: the
    events between never came) whose reading is older than the one before it."""
    await csms_server.add_tag("T1")
    await csms_server.add_station("EVEREST1")
    clock = {"timestamp": "2026-02-17T07:14:00.000Z", "sampledValue": [
        {"value": 102.0, "context": "Sample.Clock",
         "measurand": "Energy.Active.Import.Register", "location": "Outlet",
         "unitOfMeasure": {"unit": "Wh", "multiplier": 0}}]}
    with_clock = everest_updated(None, clock)
    offline = everest_updated(
        {"value": 150.0, "unitOfMeasure": {"unit": "Wh", "multiplier": 0}},
        seqNo=5, offline=True, timestamp="2026-02-17T07:14:20.000Z")
    offline["meterValue"][0]["timestamp"] = "2026-02-17T07:14:20.000Z"
    answers, during, s = await play201(
        csms_server, "EVEREST1", everest_session(with_clock, offline))
    assert [a[0] for a in answers] == [3, 3, 3, 3]
    # running: the latest reading by time is EVerest's 171 Wh (07:14:25); the offline
    # event's 150 Wh (07:14:20) lowers nothing
    assert [d["energy_wh"] if d else None for d in during[1:3]] == [171, 171]
    assert s is not None
    # 102 -> 150 -> 171 Wh in time order: no register went back; billed 171 - 0 Wh
    await billed(csms_server, s, 171)


async def test_a_201_token_presented_in_an_updated_event_is_the_sessions(
    csms_server: RunningServer,
) -> None:
    """E02/E03, the cable plugged in first: Started without an idToken, then an Updated
    event (triggerReason Authorized, chargingState Charging, no meterValue) with the
    token - scaffolding around EVerest's Updated event, which then comes as seqNo 2."""
    await csms_server.add_tag("T1")
    await csms_server.add_station("EVEREST1")
    started = event201("Started", 0, "2026-02-17T07:13:20.000Z", "Transaction.Begin", 0.0)
    del started["idToken"]
    started["triggerReason"] = "CablePluggedIn"
    authorized = {"eventType": "Updated", "timestamp": "2026-02-17T07:13:24.000Z",
                  "triggerReason": "Authorized", "seqNo": 1,
                  "transactionInfo": {"transactionId": EVEREST_TX,
                                      "chargingState": "Charging"},
                  "idToken": {"idToken": "T1", "type": "ISO14443"}}
    answers, during, s = await play201(csms_server, "EVEREST1", everest_session(
        authorized, everest_updated(seqNo=2), started=started))
    assert [a[0] for a in answers] == [3, 3, 3, 3]
    assert answers[1][2]["idTokenInfo"]["status"] == "Accepted"
    assert during[0] is not None and during[0]["id_tag"] is None
    assert during[1] is not None and during[1]["id_tag"] == "T1"
    assert s is not None and s["id_tag"] == "T1"
    await billed(csms_server, s, 171)  # 171 - 0 Wh


@pytest.mark.parametrize(("change", "fault"), [
    # SampledValueType.value is a number: a string is a TypeConstraintViolation
    ({"value": "171.0"}, "TypeConstraintViolation"),
    # UnitOfMeasureType.multiplier is an integer
    ({"value": 171.0, "unitOfMeasure": {"unit": "Wh", "multiplier": 0.5}},
     "TypeConstraintViolation"),
    # LocationEnumType has no Upstream (2.1 added it): PropertyConstraintViolation
    ({"value": 171.0, "location": "Upstream"}, "PropertyConstraintViolation"),
], ids=["value-as-string", "multiplier-not-integer", "location-of-2.1"])
async def test_a_201_event_the_schema_refuses_is_answered_so_and_bills_nothing(
    csms_server: RunningServer, change: dict[str, Any], fault: str,
) -> None:
    """A hostile station's variants of EVerest's Updated event, one field each outside the
    2.0.1 TransactionEventRequest schema: a CALLERROR naming the field, and its reading
    neither stored nor in the running energy; the session is billed from the rest."""
    await csms_server.add_tag("T1")
    await csms_server.add_station("EVEREST1")
    answers, during, s = await play201(
        csms_server, "EVEREST1", everest_session(everest_updated(change)))
    assert answers[1][0] == 4 and answers[1][2] == fault, answers[1]
    assert "sampledValue[0]" in answers[1][3]
    assert during[0] is not None and during[1] == during[0]
    assert s is not None
    await billed(csms_server, s, 171)  # 171 - 0 Wh from the Started and Ended events


# -- a register per phase only, session registers beside lifetime start/stop values ---------
def grizzl_e(at: str) -> dict[str, Any]:
    """Grizzl-E Smart, firmware 5.62x (lbbrhzn/ocpp#442, the reporter's log at 20:05:57 and
    20:07:57 local): every value at the Body and of phase "L1-N", the register too - the
    only one the frame has - and the transactionId after the meterValue. Both frames of the
    log carry the same values, two minutes apart."""
    return {"connectorId": 1, "meterValue": [{"timestamp": at, "sampledValue": [
        {"context": "Sample.Periodic", "format": "Raw", "location": "Body", "phase": "L1-N",
         "measurand": "Current.Import", "unit": "A", "value": "32.21"},
        {"context": "Sample.Periodic", "format": "Raw", "location": "Body", "phase": "L1-N",
         "measurand": "Power.Active.Import", "unit": "W", "value": "7483.98"},
        {"context": "Sample.Periodic", "format": "Raw", "location": "Body", "phase": "L1-N",
         "measurand": "Energy.Active.Import.Register", "unit": "Wh", "value": "15174.00"}]}],
        "transactionId": TX}


async def test_a_grizzl_e_register_of_one_phase_only_is_its_running_energy(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("GRIZZLE1")
    # the start at the time the log's transactionId (1675529363, the central system's
    # clock) names, meterStart 0 and meterStop the frame's own register (scaffolding):
    # 15,174 Wh. The L1-N register is the frames' only one: while the session runs it is
    # the running energy (15,174 - 0, what the driver's limit is checked against), nothing
    # held, the stop's value billed
    answers, during, s = await charge16(
        csms_server, "GRIZZLE1", "T1", 0, "2023-02-04T16:49:23Z",
        [grizzl_e("2023-02-05T01:05:56.001Z"), grizzl_e("2023-02-05T01:07:56.001Z")],
        15174, "2023-02-05T01:08:30Z")
    assert [a[0] for a in answers] == [3, 3]
    assert [d["energy_wh"] for d in during] == [15174 - 0, 15174 - 0]
    await billed(csms_server, s, 15174, during)


def grizzl_e_kwh(at: str, kwh: str) -> dict[str, Any]:
    """Scaffolding around the values a Grizzl-E's report gives (lbbrhzn/ocpp#2093, its
    frames not published): the register in kWh, counted from 0 for the session
    ("0.104, 0.228, 0.353 ..."), while its StartTransaction/StopTransaction carry the
    lifetime register."""
    return {"connectorId": 1, "transactionId": TX, "meterValue": [{
        "timestamp": at, "sampledValue": [
            {"value": kwh, "context": "Sample.Periodic",
             "measurand": "Energy.Active.Import.Register", "unit": "kWh"}]}]}


async def test_a_grizzl_e_session_register_beside_a_lifetime_meter_start_is_billed(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("GRIZZLE2")
    # meterStart 4,076,447 Wh: lbbrhzn/ocpp#2115 (the same reporter's fix) read a session
    # of 0.113 kWh as -4,076.334 kWh, 0.113 less its lifetime meterStart. The readings come
    # a minute apart (~7.5 kW); meterStop is the lifetime register once the session's
    # 353 Wh are on it (scaffolding): 4,076,800 - 4,076,447 = 353 Wh
    answers, during, s = await charge16(
        csms_server, "GRIZZLE2", "T1", 4076447, "2026-08-28T10:00:00Z",
        [grizzl_e_kwh("2026-08-28T10:00:50Z", "0.104"),
         grizzl_e_kwh("2026-08-28T10:01:50Z", "0.228"),
         grizzl_e_kwh("2026-08-28T10:02:50Z", "0.353")],
        4076800, "2026-08-28T10:02:55Z")
    assert [a[0] for a in answers] == [3, 3, 3]
    # while it runs, its readings from 0 are its energy (its driver's limit is checked
    # against them); billed from meterStop all the same
    assert [d["energy_wh"] for d in during] == [104, 228, 353]
    await billed(csms_server, s, 353, during)


# -- a value with a leading space, a stop of the charger's own -------------------------------
# MicroOcpp on an ESP32 board without a meter (matth-x/MicroOcpp#193), the whole frame: the
# register and the power written with a leading space (" 0.0"), the temperature at the
# Cable, the SoC at the EV (the log broke one line inside "Sample.Periodic": taken out).
MICROOCPP_SPACES: dict[str, Any] = {"connectorId": 1, "transactionId": TX, "meterValue": [{
    "timestamp": "2023-09-27T10:30:12.815Z", "sampledValue": [
        {"value": " 0.0", "context": "Sample.Periodic",
         "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
        {"value": " 0.0", "context": "Sample.Periodic", "measurand": "Power.Active.Import",
         "location": "Outlet", "unit": "W"},
        {"value": "230.0", "context": "Sample.Periodic", "measurand": "Voltage",
         "phase": "L1-N", "location": "Outlet", "unit": "V"},
        {"value": "232.0", "context": "Sample.Periodic", "measurand": "Voltage",
         "phase": "L2-N", "location": "Outlet", "unit": "V"},
        {"value": "229.0", "context": "Sample.Periodic", "measurand": "Voltage",
         "phase": "L3-N", "location": "Outlet", "unit": "V"},
        {"value": "16.0", "context": "Sample.Periodic", "measurand": "Current.Import",
         "phase": "L1", "location": "Outlet", "unit": "A"},
        {"value": "15.0", "context": "Sample.Periodic", "measurand": "Current.Import",
         "phase": "L2", "location": "Outlet", "unit": "A"},
        {"value": "17.0", "context": "Sample.Periodic", "measurand": "Current.Import",
         "phase": "L3", "location": "Outlet", "unit": "A"},
        {"value": "37.0", "context": "Sample.Periodic", "measurand": "Temperature",
         "location": "Cable", "unit": "Celsius"},
        {"value": "25.0", "context": "Sample.Periodic", "measurand": "SoC",
         "location": "EV", "unit": "Percent"}]}]}


async def test_a_microocpp_register_with_a_leading_space_and_its_own_stop_are_read(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("T1")
    await csms_server.add_station("MOCPP1")
    # meterStart 0 (scaffolding); the StopTransaction is the charger's own (meterStop 0,
    # reason Remote, milliseconds in its time): " 0.0" is the register at 0 Wh, a reading
    # that agrees with both; 0 Wh delivered, nothing held
    answers, during, s = await charge16(
        csms_server, "MOCPP1", "T1", 0, "2023-09-27T10:29:00.000Z", [MICROOCPP_SPACES],
        0, "2023-09-27T10:34:04.014Z", stop={"reason": "Remote"})
    assert answers[0][0] == 3 and during[0]["energy_wh"] == 0
    await billed(csms_server, s, 0, during)


async def test_a_wallbox_copper_sb_stop_with_empty_transaction_data_is_billed(
    csms_server: RunningServer,
) -> None:
    """Wallbox Copper SB (lbbrhzn/ocpp#1069): its StopTransaction as logged - an idTag (the
    reporter's mask, "XXXXXX"), reason Local and ``transactionData`` an empty array. The
    start is scaffolding: two hours before, 2,250,000 Wh."""
    await csms_server.add_tag("XXXXXX")
    await csms_server.add_station("COPPERSB")
    _, _, s = await charge16(
        csms_server, "COPPERSB", "XXXXXX", 2250000, "2024-01-30T12:29:16Z", [],
        2259988, "2024-01-30T14:29:16Z",
        stop={"idTag": "XXXXXX", "transactionData": [], "reason": "Local"})
    # 2,259,988 - 2,250,000 = 9,988 Wh (~5 kW for two hours)
    await billed(csms_server, s, 9988)


async def test_a_microocpp_tag_written_with_spaces_is_the_tag_as_sent(
    csms_server: RunningServer,
) -> None:
    """A MicroOcpp charger (matth-x/MicroOcpp#73), both frames its own: StartTransaction
    with the card's UID written as spaced hex after a leading space (" F6 CA 0C C5", 12
    characters, within idTag's 20), then StopTransaction two seconds later without an
    idTag, meterStart and meterStop both 0 (its board had no meter wired)."""
    tag = " F6 CA 0C C5"
    await csms_server.add_tag(tag)
    await csms_server.add_station("MOCPP2")
    async with await RawClient.connect(csms_server.url, "MOCPP2", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        started = await c.result("StartTransaction", {
            "connectorId": 1, "meterStart": 0, "timestamp": "2022-07-26T21:34:10.000Z",
            "idTag": tag})
        assert started["idTagInfo"]["status"] == "Accepted", started
        txid = started["transactionId"]
        assert await c.result("StopTransaction", {
            "meterStop": 0, "timestamp": "2022-07-26T21:34:12.000Z",
            "transactionId": txid}) == {}
    s = await session(csms_server, "MOCPP2", txid)
    # the tag as the charger wrote it, its spaces kept; 0 - 0 Wh in two seconds
    assert s["id_tag"] == tag
    await billed(csms_server, s, 0)


async def test_a_huawei_stop_a_wh_below_its_start_holds_the_session(
    csms_server: RunningServer,
) -> None:
    """Huawei SCharger-22KT-S0 (lbbrhzn/ocpp#1810): the reporter's comment gives what the
    charger sends in every aborted session - meterStart 269,456 Wh, meterStop 269,455 Wh,
    and between them MeterValues with the register in kWh to two decimals, 269.46 kWh (its
    frames were not published: these are scaffolding around those values, the times this
    test's). A register never decreases: the stop a Wh below the start is the station's
    data contradicting itself, held for an operator, nothing billed - not refused (the
    station would retry it) and not billed as 0 Wh without a word."""
    await csms_server.add_tag("T1")
    await csms_server.add_station("SCHARGER1")
    reading = {"connectorId": 1, "transactionId": TX, "meterValue": [{
        "timestamp": "2026-05-28T22:20:10Z", "sampledValue": [
            {"value": "269.46", "context": "Sample.Periodic",
             "measurand": "Energy.Active.Import.Register", "unit": "kWh"}]}]}
    answers, during, s = await charge16(
        csms_server, "SCHARGER1", "T1", 269456, "2026-05-28T22:20:00Z", [reading],
        269455, "2026-05-28T22:20:30Z")
    assert answers[0][0] == 3
    # running: 269,460 (the kWh reading, to 10 Wh) - 269,456 = 4 Wh, nothing held yet
    assert during[0]["energy_wh"] == 4
    assert not BILLING_HOLD_FLAGS.intersection(during[0]["flags"]), during
    assert s["status"] == "completed" and s["energy_wh"] == 0, s
    assert "meter_went_backwards" in s["flags"], s["flags"]
    assert not await queued(csms_server, s["id"])


# -- a time without a UTC offset ------------------------------------------------------------
# Growatt THOR, an older firmware (evcc-io/evcc#10399), the whole StartTransaction: its
# time in local time without an offset ("2023-10-19T15:28:07": evcc logged the frame at
# 15:03:59Z, and the charger had been retrying it since the central system refused it),
# and a reservationId of 0, no reservation of this central system's.
GROWATT_LOCAL_START: dict[str, Any] = {"connectorId": 1, "idTag": "evcc", "meterStart": 0,
                                       "reservationId": 0, "timestamp": "2023-10-19T15:28:07"}


async def test_a_growatt_start_in_local_time_without_an_offset_is_answered_and_billed(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_tag("evcc")
    await csms_server.add_station("THOR1")
    async with await RawClient.connect(csms_server.url, "THOR1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        started = await c.result("StartTransaction", GROWATT_LOCAL_START)
        assert started["idTagInfo"]["status"] == "Accepted", started
        txid = started["transactionId"]
        # scaffolding: a stop two hours on, in the same local time, 14,800 Wh (7.4 kW)
        assert await c.result("StopTransaction", {
            "transactionId": txid, "meterStop": 14800,
            "timestamp": "2023-10-19T17:28:07"}) == {}
    s = await session(csms_server, "THOR1", txid)
    # the times read as UTC, and noted so (no hold: both ends shift alike, the energy is
    # the register's); the reservationId of 0 reserves nothing. 14,800 - 0 Wh
    assert s["started_at"] == "2023-10-19T15:28:07+00:00"
    assert "time_offset_assumed" in s["flags"], s["flags"]
    await billed(csms_server, s, 14800)
