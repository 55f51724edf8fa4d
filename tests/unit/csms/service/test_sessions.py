"""A session's start in dispute (csms.service.sessions, csms.domain.energy): a 1.6
meterStart that a Transaction.Begin reading of the billed register contradicts, or begin
readings that are not one value, hold the session - from the message that brings the
contradiction, while it runs, not only once it completes - and its running energy (what the
driver is shown, what their limit is checked against) is counted from the highest start
claimed. In-memory storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.model import BILLING_HOLD_FLAGS, MeterSample, SessionStatus
from csms.domain.tariff import Tariff
from csms.service.charging import ChargingService, StopInfo, TransactionEventIn
from support.memory import MemoryRepository, MemoryState, MemoryTx, station_state

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
HOLD = "begin_readings_differ"


@pytest.fixture
def state() -> MemoryState:
    return station_state("T1")


@pytest.fixture
def service(state: MemoryState) -> ChargingService:
    return ChargingService(MemoryRepository(state), clock=lambda: NOW)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def wh(minutes: float, value: str, **kw: Any) -> MeterSample:
    return MeterSample(timestamp=at(minutes), value=value, **kw)


def begin(minutes: float, value: str, **kw: Any) -> MeterSample:
    return wh(minutes, value, context="Transaction.Begin", **kw)


def holds(flags: list[str]) -> set[str]:
    return set(BILLING_HOLD_FLAGS.intersection(flags))


async def test_a_meter_start_below_its_begin_reading_holds_the_session_while_it_runs(
    service: ChargingService, state: MemoryState,
) -> None:
    """A hostile 1.6 station reports meterStart 1,000 Wh below its Transaction.Begin
    reading, to bill the driver 1,000 Wh never delivered: held from the frame that carries
    the begin reading, its running energy counted from the begin reading (lowered, though
    an earlier frame counted it from meterStart), and held once stopped."""
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(156440), T0)
    await service.meter_values("CP1", 1, str(txid), [wh(30, "160000")])
    session = state.sessions[txid]
    assert session.energy_wh == 3560 and not holds(session.flags)  # nothing known yet
    await service.meter_values("CP1", 1, str(txid), [begin(60, "157440"), wh(60, "163630")])
    session = state.sessions[txid]
    assert session.status is SessionStatus.ACTIVE and HOLD in session.flags
    assert (session.meter_start_wh, session.energy_wh) == (157440, 6190)
    await service.meter_values("CP1", 1, str(txid), [wh(70, "164630")])
    assert state.sessions[txid].energy_wh == 7190  # from 157,440 Wh on
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(164630), at(80)))
    session = state.sessions[txid]
    assert session.status is SessionStatus.COMPLETED and HOLD in session.flags
    assert (session.meter_start_wh, session.energy_wh) == (157440, 7190)
    assert txid not in state.settlement_queue
    [hold] = [e["payload"] for e in state.station_events if e["kind"] == "billing_hold"]
    assert hold["session_id"] == txid


async def test_a_begin_reading_only_in_the_stop_holds_the_session(
    service: ChargingService, state: MemoryState,
) -> None:
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(156440), T0)
    await service.stop_transaction("CP1", StopInfo(
        txid, Decimal(163630), at(80), samples=[begin(0, "157440"),
                                               wh(80, "163630", context="Transaction.End")]))
    session = state.sessions[txid]
    assert HOLD in session.flags and txid not in state.settlement_queue
    assert session.energy_wh == 6190


@pytest.mark.parametrize(("first", "second"), [("157440", "157440.5"),
                                                ("157440.5", "157440"),
                                                ("157.4405", "157440")])
async def test_begin_readings_that_differ_across_frames_hold_the_session_while_it_runs(
    service: ChargingService, state: MemoryState, first: str, second: str,
) -> None:
    """Each begin reading agrees with meterStart to the Wh, the two not with each other,
    whichever comes first."""
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(157440), T0)
    unit = "kWh" if "." in first and len(first.split(".")[1]) == 4 else "Wh"
    await service.meter_values("CP1", 1, str(txid), [begin(30, first, unit=unit),
                                                     wh(30, "160000")])
    assert not holds(state.sessions[txid].flags)
    await service.meter_values("CP1", 1, str(txid), [begin(60, second), wh(60, "161000")])
    session = state.sessions[txid]
    assert session.status is SessionStatus.ACTIVE and HOLD in session.flags
    assert session.energy_wh == 3559  # from the higher begin reading, 157,440.5 Wh


@pytest.mark.parametrize(("meter_start", "frames"), [
    # a charger that repeats its begin reading, meterStart that same reading (Growatt)
    (157440, [[begin(30, "157440"), wh(30, "160000")],
              [begin(60, "157440"), wh(60, "163630")]]),
    # a begin reading in kWh to 10 Wh, meterStart to the Wh within it
    (1234563, [[begin(1, "1234.56", unit="kWh")], [wh(60, "1240.00", unit="kWh")]]),
    # an inlet's begin reading beside the outlet's (the billed register)
    (1000, [[begin(1, "1000", location="Outlet"), begin(1, "1200", location="Inlet")],
            [wh(60, "11000", location="Outlet"), wh(60, "12700", location="Inlet")]]),
], ids=["repeated", "kwh-resolution", "the-inlets"])
async def test_a_begin_reading_that_agrees_with_meter_start_holds_nothing(
    service: ChargingService, state: MemoryState, meter_start: int,
    frames: list[list[MeterSample]],
) -> None:
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(meter_start), T0)
    for samples in frames:
        await service.meter_values("CP1", 1, str(txid), samples)
        assert not holds(state.sessions[txid].flags)
    last = state.sessions[txid].energy_wh
    stop = frames[-1][0]
    await service.stop_transaction("CP1", StopInfo(
        txid, Decimal(meter_start) + Decimal(last or 0), stop.timestamp))
    session = state.sessions[txid]
    assert not holds(session.flags) and txid in state.settlement_queue
    assert session.meter_start_wh == meter_start and session.energy_wh == last


def ev(kind: str, seq: int, minutes: float, samples: list[MeterSample],
       **kw: Any) -> TransactionEventIn:
    return TransactionEventIn(kind, at(minutes), "Authorized", seq, "TX-1", evse_id=1,
                              connector_id=1, samples=samples, **kw)


async def test_a_201_begin_reading_that_differs_holds_the_session_while_it_runs(
    service: ChargingService, state: MemoryState,
) -> None:
    await service.transaction_event("CP1", ev("Started", 0, 0, [begin(0, "1000")],
                                              id_tag="T1"))
    await service.transaction_event("CP1", ev("Updated", 1, 30, [wh(30, "2000")]))
    [session] = state.sessions.values()
    assert session.energy_wh == 1000 and not holds(session.flags)
    await service.transaction_event("CP1", ev("Updated", 2, 60, [begin(60, "1500"),
                                                                 wh(60, "3000")]))
    [session] = state.sessions.values()
    assert session.status is SessionStatus.ACTIVE and HOLD in session.flags
    assert (session.meter_start_wh, session.energy_wh) == (1500, 1500)
    await service.transaction_event("CP1", ev("Ended", 3, 70, [
        wh(70, "3500", context="Transaction.End")]))
    [session] = state.sessions.values()
    assert HOLD in session.flags and session.id not in state.settlement_queue
    assert (session.meter_start_wh, session.energy_wh) == (1500, 2000)


async def test_a_201_begin_reading_read_again_once_online_holds_the_session_while_it_runs(
    service: ChargingService, state: MemoryState,
) -> None:
    """An Iocharger that starts offline reports Transaction.Begin 0, then its lifetime
    register as a second begin reading beside the periodic one: two starts, held from that
    event on, counted from the lifetime register (not 909,948 Wh of energy)."""
    await service.transaction_event("CP1", ev("Started", 0, 0, [begin(0, "0")], id_tag="T1"))
    await service.transaction_event("CP1", ev("Updated", 1, 1, [begin(1, "909948"),
                                                                wh(1, "909948")]))
    [session] = state.sessions.values()
    assert session.status is SessionStatus.ACTIVE and HOLD in session.flags
    assert (session.meter_start_wh, session.energy_wh) == (909948, 0)
    await service.transaction_event("CP1", ev("Ended", 2, 180, [
        wh(180, "910031", context="Transaction.End")]))
    [session] = state.sessions.values()
    assert HOLD in session.flags and session.id not in state.settlement_queue
    assert session.energy_wh == 83


async def test_begin_readings_of_the_running_start_are_read_no_further(
    service: ChargingService, state: MemoryState, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check costs no read of the session's stored readings for a begin reading that
    is the running start: a charger that repeats meterStart's in every frame, a 2.0.1
    Started event's; one read for one that is not, after which its repeats cost none."""
    reads: list[int] = []
    energy_samples = MemoryTx.energy_samples

    async def counted(self: MemoryTx, session_id: int) -> list[MeterSample]:
        reads.append(session_id)
        return await energy_samples(self, session_id)

    monkeypatch.setattr(MemoryTx, "energy_samples", counted)
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(157440), T0)
    for minutes in (10, 20, 30):
        await service.meter_values("CP1", 1, str(txid), [
            begin(minutes, "157440"), wh(minutes, str(157440 + 100 * minutes))])
    await service.transaction_event("CP1", ev("Started", 0, 0, [begin(0, "1000")],
                                              id_tag="T1"))
    await service.transaction_event("CP1", ev("Updated", 1, 5, [begin(5, "1000"),
                                                                wh(5, "1300")]))
    assert reads == []
    # a begin reading in kWh, within meterStart's resolution: read once, then no more
    other, _, _ = await service.start_transaction("CP1", 2, "T1", Decimal(1234563), T0)
    for minutes in (10, 20, 30):
        await service.meter_values("CP1", 2, str(other), [
            begin(minutes, "1234.56", unit="kWh"), wh(minutes, str(1234563 + 100 * minutes))])
    assert reads == [other]
    assert not holds(state.sessions[other].flags)
    assert [s.energy_wh for s in state.sessions.values()] == [3000, 300, 3003]
    # a begin reading of 0 beside meterStart, repeated in every frame: no start, no read
    zero, _, _ = await service.start_transaction("CP1", 3, "T1", Decimal(2000000), T0)
    for minutes in (10, 20, 30):
        await service.meter_values("CP1", 3, str(zero), [
            begin(minutes, "0"), wh(minutes, str(2000000 + 100 * minutes))])
    assert reads == [other]
    assert not holds(state.sessions[zero].flags)
    assert state.sessions[zero].energy_wh == 3000


@pytest.mark.parametrize(("meter_start", "stopped"), [(156440, False), (157440, False),
                                                      (155440, True)],
                         ids=["1000-wh-low", "the-begin-reading", "control-2000-wh-more"])
async def test_the_drivers_limit_is_checked_against_the_energy_from_the_higher_start(
    service: ChargingService, state: MemoryState, meter_start: int, stopped: bool,
) -> None:
    """1.00 EUR a kWh, a driver who pays at most 13.00 EUR: the frame brings the register
    at the start (157,440 Wh) and now (163,630 Wh); 6,190 Wh and as much again ahead (the
    next interval's) is 12.38 EUR. A meterStart 1,000 Wh below the begin reading would
    make it 14.38 EUR and stop the driver's charge: the limit is checked from the begin
    reading. A session that truly delivered more (the control: 2,000 Wh below, where the
    begin reading says so too) is stopped."""
    state.tariffs.append(Tariff("*", Decimal(1), "EUR", 2, valid_from=T0 - timedelta(days=1)))
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(meter_start), T0)
    state.sessions[txid].limit_minor = 1300
    begins = str(meter_start if stopped else 157440)
    reached = await service.meter_values("CP1", 1, str(txid), [begin(60, begins),
                                                               wh(60, "163630")])
    assert (reached is not None) is stopped
    assert ("limit_reached" in state.sessions[txid].flags) is stopped


async def test_a_16_begin_reading_of_0_beside_meter_start_is_a_placeholder_while_it_runs(
    service: ChargingService, state: MemoryState,
) -> None:
    """A 1.6 begin reading of 0 beside meterStart (a value the charger had not read) is no
    second start: nothing held, and the running energy stays counted from meterStart (not
    from 0: the meter's lifetime register)."""
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1234563), T0)
    await service.meter_values("CP1", 1, str(txid), [begin(0, "0"), wh(30, "1235563")])
    session = state.sessions[txid]
    assert not holds(session.flags)
    assert (session.meter_start_wh, session.energy_wh) == (1234563, 1000)
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(1236563), at(60)))
    session = state.sessions[txid]
    assert not holds(session.flags), session.flags
    assert (session.meter_start_wh, session.energy_wh) == (1234563, 2000)


# -- a 1.6 stop below the readings it had ---------------------------------------------------
async def test_a_16_meter_stop_below_an_earlier_reading_holds_the_session(
    service: ChargingService, state: MemoryState,
) -> None:
    """A hostile 1.6 station: meterStart 1,000, a periodic reading of the register at
    5,000, meterStop 3,000. Billing 2,000 Wh would take one of two contradicting readings
    on trust: held (``meter_went_backwards``), as the same data is in 2.0.1."""
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.meter_values("CP1", 1, str(txid), [wh(30, "5000")])
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(3000), at(60)))
    session = state.sessions[txid]
    assert "meter_went_backwards" in session.flags
    assert session.id not in state.settlement_queue
    # the control: a stop above the reading is billed
    other, _, _ = await service.start_transaction("CP1", 2, "T1", Decimal(1000), T0)
    await service.meter_values("CP1", 2, str(other), [wh(30, "5000")])
    await service.stop_transaction("CP1", StopInfo(other, Decimal(6000), at(60)))
    assert not holds(state.sessions[other].flags) and other in state.settlement_queue


async def test_a_16_meter_stop_above_the_stations_end_reading_is_held_and_counted_to_it(
    service: ChargingService, state: MemoryState,
) -> None:
    """meterStop 10,000 and the StopTransaction's own Transaction.End reading 8,000: the
    driver is not billed the 2,000 Wh the station's reading says it did not deliver, and
    the session waits for the operator."""
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.stop_transaction("CP1", StopInfo(
        txid, Decimal(10_000), at(60), samples=[wh(60, "8000", context="Transaction.End")]))
    session = state.sessions[txid]
    assert "end_readings_differ" in session.flags and txid not in state.settlement_queue
    assert (session.meter_stop_wh, session.energy_wh) == (8000, 7000)
