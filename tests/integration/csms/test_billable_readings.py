"""Review: what is billed for real chargers' readings that a spec-conformant or buggy station
sends, through real sockets against a real server (each test fails while the defect it names
is there)."""

from __future__ import annotations

from typing import Any

import pytest

from csms.domain.model import BILLING_HOLD_FLAGS
from support import RunningServer, station_events
from support import csms_cli as csms
from support import is_queued as queued
from support.client import RawClient


def one(sessions: list[dict[str, Any]], txid: str) -> dict[str, Any]:
    [s] = [s for s in sessions if s["transaction_id"] == txid]
    return s


def register(at: str, wh: str, **extra: str) -> dict[str, Any]:
    """One 1.6 MeterValue with the total import register, in Wh, and nothing else."""
    return {"timestamp": at, "sampledValue": [
        {"value": wh, "measurand": "Energy.Active.Import.Register", "unit": "Wh", **extra}]}


async def test_a_16_stop_with_its_sampled_data_without_a_context_is_billed_meter_stop(
    csms_server: RunningServer,
) -> None:
    """1.6 §9.1 StopTxnSampledData: the measurands a charge point puts in a
    StopTransaction's transactionData "every MeterValueSampleInterval seconds from the start
    of the transaction" - the session's periodic readings, not its end. 1.6 §7.45: a
    SampledValue's context defaults to Sample.Periodic. An honest station sends meterStart
    10,000, readings 11,000 / 13,000 / 15,000 Wh over the hour without a context, and
    meterStop 15,000: 5,000 Wh, consistent in every figure.

    Found: the 1.6 translator gives every reading of transactionData without a context
    the context Transaction.End, so the three periodic readings are three stops that
    "differ" (end_readings_differ); the stop is counted to the lowest (11,000), which is
    then below the 15,000 reading (meter_went_backwards): held with 1,000 Wh recorded. An
    honest host is not paid, and a release bills a fifth of what was delivered."""
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        r = await c.call("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 10000,
            "timestamp": "2026-03-01T10:00:00Z"})
        assert r[0] == 3, r
        txid = r[2]["transactionId"]
        r = await c.call("StopTransaction", {
            "transactionId": txid, "meterStop": 15000, "timestamp": "2026-03-01T11:00:00Z",
            "transactionData": [register("2026-03-01T10:20:00Z", "11000"),
                                register("2026-03-01T10:40:00Z", "13000"),
                                register("2026-03-01T11:00:00Z", "15000")]})
        assert r[0] == 3, r
    s = one(await csms_server.sessions("CP1"), str(txid))
    assert s["status"] == "completed"
    assert not BILLING_HOLD_FLAGS.intersection(s["flags"]), s["flags"]
    assert s["energy_wh"] == 5000, s
    assert await queued(csms_server, s["id"])


async def test_a_begin_reading_of_0_then_a_lifetime_register_never_bills_the_lifetime(
    csms_server: RunningServer,
) -> None:
    """DESIGN.md: "A missing meterStart/placeholder must never bill the meter's lifetime
    reading". A 2.0.1 station that starts offline (the Iocharger behaviour the energy
    module names) reports Transaction.Begin 0, its register unread, then its lifetime
    register: 300,000 Wh ten minutes after the start, 310,000 Wh at the end of the hour.
    The station registered no maximum power (none reported either).

    300 kWh ten minutes after the start is 1.8 MW, five times the 350 kW the central
    system itself assumes of a station whose power it does not know: the reading is a
    lifetime register, the 0 a placeholder. Found: the placeholder check bounds the first
    reading by 4 MW (the MCS ceiling) x its time since the start plus 1 kWh (667 kWh at ten
    minutes), so the lifetime register passes as energy; the session-wide power check
    (350 kW for the hour, 354 kWh) lets 310 kWh through as well: 310,000 Wh queued for
    settlement, no flag (EUR 120.90 at 39 c/kWh) for 10 kWh charged."""
    await csms_server.add_station("IOC1")
    await csms_server.add_tag("T1")
    t0, t1 = "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"
    async with await RawClient.connect(csms_server.url, "IOC1", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {"reason": "PowerUp",
                                            "chargingStation": {"vendorName": "V",
                                                                "model": "M"}})
        for n, (kind, at, ctx, wh) in enumerate([
                ("Started", t0, "Transaction.Begin", 0),
                ("Updated", "2026-03-01T10:10:00Z", "Sample.Periodic", 300000),
                ("Ended", t1, "Transaction.End", 310000)]):
            r = await c.call("TransactionEvent", {
                "eventType": kind, "timestamp": at,
                "triggerReason": {"Started": "Authorized", "Updated": "MeterValuePeriodic",
                                  "Ended": "StopAuthorized"}[kind],
                "seqNo": n, "transactionInfo": {"transactionId": "TX-IOC"},
                **({"evse": {"id": 1, "connectorId": 1},
                    "idToken": {"idToken": "T1", "type": "ISO14443"}}
                   if kind == "Started" else {}),
                "meterValue": [{"timestamp": at, "sampledValue": [
                    {"value": wh, "context": ctx,
                     "measurand": "Energy.Active.Import.Register",
                     "unitOfMeasure": {"unit": "Wh"}}]}]})
            assert r[0] == 3, r
    s = one(await csms_server.sessions("IOC1"), "TX-IOC")
    assert s["status"] == "completed"
    # billed from the register, not its lifetime (10,000 Wh), or held: never 310,000 Wh
    billed = await queued(csms_server, s["id"])
    assert not (billed and s["energy_wh"] > 10000), (s["energy_wh"], s["flags"])


def event201(n: int, kind: str, at: str, ctx: str, wh: int) -> dict[str, Any]:
    """A 2.0.1 TransactionEvent of transaction TX-IOC with one register reading."""
    return {
        "eventType": kind, "timestamp": at,
        "triggerReason": {"Started": "Authorized", "Updated": "MeterValuePeriodic",
                          "Ended": "StopAuthorized"}[kind],
        "seqNo": n, "transactionInfo": {"transactionId": "TX-IOC"},
        **({"evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": "T1", "type": "ISO14443"}} if kind == "Started" else {}),
        "meterValue": [{"timestamp": at, "sampledValue": [
            {"value": wh, "context": ctx, "measurand": "Energy.Active.Import.Register",
             "unitOfMeasure": {"unit": "Wh"}}]}]}


async def play201(server: RunningServer, station_id: str, readings: list[tuple[str, int]],
                  report_w: int | None = None) -> list[dict[str, Any]]:
    """A 2.0.1 session of ``readings`` (time, Wh): a begin reading, periodic ones, an end
    reading; ``report_w``: the EVSE power the station reports first (NotifyReport). The
    session as each event left it."""
    await server.add_tag("T1")
    during: list[dict[str, Any]] = []
    async with await RawClient.connect(server.url, station_id, ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {"reason": "PowerUp",
                                            "chargingStation": {"vendorName": "V",
                                                                "model": "M"}})
        if report_w is not None:
            await c.result("NotifyReport", {
                "requestId": 1, "generatedAt": readings[0][0], "seqNo": 0, "reportData": [
                    {"component": {"name": "EVSE", "evse": {"id": 1}},
                     "variable": {"name": "Power"},
                     "variableAttribute": [{"value": str(report_w)}],
                     "variableCharacteristics": {"unit": "W", "dataType": "decimal",
                                                 "maxLimit": report_w,
                                                 "supportsMonitoring": False}}]})
        last = len(readings) - 1
        for n, (at, wh) in enumerate(readings):
            kind, ctx = ("Started", "Transaction.Begin") if n == 0 else \
                ("Ended", "Transaction.End") if n == last else ("Updated", "Sample.Periodic")
            r = await c.call("TransactionEvent", event201(n, kind, at, ctx, wh))
            assert r[0] == 3, r
            during.append(one(await server.sessions(station_id), "TX-IOC"))
    return during


async def test_a_plausible_reading_before_the_lifetime_register_does_not_bill_it(
    csms_server: RunningServer,
) -> None:
    """A hostile station puts a plausible reading (100 Wh a minute after its begin reading of
    0) before its lifetime register (300,000 Wh at ten minutes), so that its first reading
    passes the placeholder check and 310 kWh, within 350 kW over the hour, is billed. No
    station jumps 299.9 kWh in nine minutes: held (energy_above_max_power) and counted from
    the jump, never from 0; nor does the driver see the lifetime register while it runs."""
    await csms_server.add_station("IOC1")
    during = await play201(csms_server, "IOC1", [
        ("2026-03-01T10:00:00Z", 0), ("2026-03-01T10:01:00Z", 100),
        ("2026-03-01T10:10:00Z", 300000), ("2026-03-01T11:00:00Z", 310000)])
    assert [s["energy_wh"] for s in during[:3]] == [0, 100, 100]
    s = during[-1]
    assert s["status"] == "completed"
    assert "energy_above_max_power" in s["flags"], s["flags"]
    assert (s["meter_start_wh"], s["energy_wh"]) == (300000, 10000)
    assert not await queued(csms_server, s["id"])


async def test_a_reported_power_of_4_mw_does_not_make_the_lifetime_register_energy(
    csms_server: RunningServer,
) -> None:
    """The station reports its EVSE's power as 4 MW (NotifyReport, the most taken of a
    report) before the begin reading of 0 and its lifetime register ten minutes later: a
    power it reports lifts no placeholder bound (the registered one, else the default 350
    kW): billed from the register, 10,000 Wh."""
    await csms_server.add_station("IOC1")
    *_, s = await play201(csms_server, "IOC1", [
        ("2026-03-01T10:00:00Z", 0), ("2026-03-01T10:10:00Z", 300000),
        ("2026-03-01T11:00:00Z", 310000)], report_w=4_000_000)
    assert (s["status"], s["meter_start_wh"], s["energy_wh"]) == ("completed", 300000, 10000)
    assert "meter_start_placeholder" in s["flags"]
    assert not BILLING_HOLD_FLAGS.intersection(s["flags"]), s["flags"]
    assert await queued(csms_server, s["id"])


@pytest.mark.parametrize("max_power_kw", [None, "11"], ids=["unknown", "11 kW"])
async def test_a_new_meter_from_0_is_billed_from_0(
    csms_server: RunningServer, max_power_kw: str | None,
) -> None:
    """An honest station whose register is new: begin 0, 2,000 Wh at ten minutes, 7,000 Wh
    an hour after the start. No placeholder at 350 kW, nor at an 11 kW registered power:
    billed 7,000 Wh."""
    await csms_server.add_station("NEW1")
    if max_power_kw is not None:
        r = csms(csms_server, "stations", "set-max-power", "NEW1", max_power_kw)
        assert r.returncode == 0, r.stderr
    *_, s = await play201(csms_server, "NEW1", [
        ("2026-03-01T10:00:00Z", 0), ("2026-03-01T10:10:00Z", 2000),
        ("2026-03-01T11:00:00Z", 7000)])
    assert (s["status"], s["meter_start_wh"], s["energy_wh"]) == ("completed", 0, 7000)
    assert "meter_start_placeholder" not in s["flags"]
    assert not BILLING_HOLD_FLAGS.intersection(s["flags"]), s["flags"]
    assert await queued(csms_server, s["id"])


async def test_a_16_meter_stop_above_its_own_reading_at_the_stop_is_held(
    csms_server: RunningServer,
) -> None:
    """A hostile 1.6 station reports meterStop 20,000 beside its own reading of the register
    at the stop's time, 15,000 Wh, without a context: a reading at the stop is the register
    at the stop, whatever its context (the periodic ones before it are not). Two stops:
    held (end_readings_differ), counted to the lower, 5,000 Wh."""
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        r = await c.call("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 10000,
            "timestamp": "2026-03-01T10:00:00Z"})
        txid = r[2]["transactionId"]
        r = await c.call("StopTransaction", {
            "transactionId": txid, "meterStop": 20000, "timestamp": "2026-03-01T11:00:00Z",
            "transactionData": [register("2026-03-01T10:30:00Z", "12000"),
                                register("2026-03-01T11:00:00Z", "15000")]})
        assert r[0] == 3, r
    s = one(await csms_server.sessions("CP1"), str(txid))
    assert "end_readings_differ" in s["flags"], s["flags"]
    assert s["energy_wh"] == 5000
    assert not await queued(csms_server, s["id"])


async def test_one_register_labelled_by_turns_going_backwards_is_held(
    csms_server: RunningServer,
) -> None:
    """2.0.1 §2.56: a sampledValue's location defaults to Outlet, so a reading without one
    and a reading labelled Outlet are readings of one register, and the session is billed
    from the first to the last of them. A hostile station labels by turns: Begin 10,000 Wh,
    Outlet 50,000, 12,000, Outlet End 52,000 over 40 minutes: each label's series delivers
    2 kWh, the register as billed goes backwards from 50 to 12 kWh.

    Found: a decrease was looked for under each label apart, so the session was billed
    42,000 Wh (10,000 to 52,000: one series' start, the other's stop), queued, where the same
    readings under one label are held (``meter_went_backwards``)."""
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    frames = [(0, "Started", "2026-03-01T10:00:00Z", "Transaction.Begin", 10000, None),
              (1, "Updated", "2026-03-01T10:10:00Z", "Sample.Periodic", 50000, "Outlet"),
              (2, "Updated", "2026-03-01T10:20:00Z", "Sample.Periodic", 12000, None),
              (3, "Ended", "2026-03-01T10:40:00Z", "Transaction.End", 52000, "Outlet")]
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {"reason": "PowerUp",
                                            "chargingStation": {"vendorName": "V",
                                                                "model": "M"}})
        for n, kind, at, ctx, wh, location in frames:
            event = event201(n, kind, at, ctx, wh)
            if location is not None:
                event["meterValue"][0]["sampledValue"][0]["location"] = location
            r = await c.call("TransactionEvent", event)
            assert r[0] == 3, r
    s = one(await csms_server.sessions("CP1"), "TX-IOC")
    assert s["status"] == "completed"
    assert "meter_went_backwards" in s["flags"], s
    assert not await queued(csms_server, s["id"])
    [hold] = [e for e in await station_events(csms_server, "CP1", "billing_hold")]
    assert hold["session_id"] == s["id"] and "meter_went_backwards" in hold["flags"]
