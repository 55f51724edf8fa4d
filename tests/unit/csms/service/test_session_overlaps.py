"""Sessions whose times overlap on one EVSE (a 1.6 connector) of one station
(csms.service.sessions: ``overlaps_session``): a hostile station that bills two drivers
for the same time is held, wherever the overlap shows - at the later session's start, at
either's completion; an honest station that lost a StopTransaction (a reboot) and starts
anew on the connector is not. In-memory storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.model import BILLING_HOLD_FLAGS, MeterSample, SessionStatus
from csms.service.charging import ChargingService, StopInfo, TransactionEventIn
from support.memory import MemoryRepository, MemoryState, station_state

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
OVERLAPS = "overlaps_session"


@pytest.fixture
def state() -> MemoryState:
    return station_state("T1", "T2")


@pytest.fixture
def service(state: MemoryState) -> ChargingService:
    return ChargingService(MemoryRepository(state), clock=lambda: NOW)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def wh(minutes: float, value: int) -> list[MeterSample]:
    return [MeterSample(timestamp=at(minutes), value=str(value))]


def overlaps(state: MemoryState) -> list[dict[str, Any]]:
    return [e["payload"] for e in state.station_events if e["kind"] == OVERLAPS]


async def test_a_second_start_on_a_connector_still_charging_holds_both(
    service: ChargingService, state: MemoryState,
) -> None:
    """A hostile 1.6 station starts a transaction for T2's card on connector 1 while T1's
    is still charging there (its readings go on after T2's start): neither is settled
    unnoticed, whichever completes first. T1's looked stopped at 10 (its last reading):
    closed there as T2's starts (``stop_lost``, held); its reading at 30, kept apart, holds
    T2's, and its stop at 60 completes it, held for T2's time."""
    first, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.meter_values("CP1", 1, str(first), wh(10, 2000))
    second, _, _ = await service.start_transaction("CP1", 1, "T2", Decimal(2500), at(20))
    assert OVERLAPS not in state.sessions[second].flags  # T1's looked stopped at 10
    assert "stop_lost" in state.sessions[first].flags
    await service.meter_values("CP1", 1, str(first), wh(30, 4000))
    await service.stop_transaction("CP1", StopInfo(second, Decimal(5000), at(40)))
    assert OVERLAPS in state.sessions[second].flags
    assert second not in state.settlement_queue
    await service.stop_transaction("CP1", StopInfo(first, Decimal(6000), at(60)))
    assert OVERLAPS in state.sessions[first].flags
    assert first not in state.settlement_queue
    assert state.sessions[first].status is SessionStatus.COMPLETED
    assert [(e["session_id"], e["other_session_id"], e["evse_id"], e["other_until"])
            for e in overlaps(state)] == [
        (second, first, 1, at(30).isoformat()), (first, second, 1, at(40).isoformat())]


async def test_a_start_while_the_connectors_session_sends_readings_is_held_at_once(
    service: ChargingService, state: MemoryState,
) -> None:
    first, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.meter_values("CP1", 1, str(first), wh(25, 2000))
    second, _, _ = await service.start_transaction("CP1", 1, "T2", Decimal(2500), at(20))
    assert OVERLAPS in state.sessions[second].flags
    assert OVERLAPS in state.sessions[first].flags


async def test_a_session_within_a_completed_ones_time_is_held(
    service: ChargingService, state: MemoryState,
) -> None:
    """T1's session on connector 1 completed (10:00-11:00, queued); the station then
    reports T2's on the same connector from 10:30: T2's is held, T1's stays as completed."""
    first, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.stop_transaction("CP1", StopInfo(first, Decimal(5000), at(60)))
    assert first in state.settlement_queue
    second, _, _ = await service.start_transaction("CP1", 1, "T2", Decimal(5000), at(30))
    await service.stop_transaction("CP1", StopInfo(second, Decimal(7000), at(90)))
    assert OVERLAPS in state.sessions[second].flags
    assert second not in state.settlement_queue
    assert OVERLAPS not in state.sessions[first].flags and first in state.settlement_queue
    assert [e["other_session_id"] for e in overlaps(state)] == [first]


async def test_a_session_back_dated_around_a_completed_one_is_held_as_it_completes(
    service: ChargingService, state: MemoryState,
) -> None:
    first, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), at(30))
    await service.stop_transaction("CP1", StopInfo(first, Decimal(2000), at(60)))
    second, _, _ = await service.start_transaction("CP1", 1, "T2", Decimal(2000), T0)
    assert OVERLAPS not in state.sessions[second].flags  # nothing on the connector before
    await service.stop_transaction("CP1", StopInfo(second, Decimal(4000), at(90)))
    assert OVERLAPS in state.sessions[second].flags
    assert second not in state.settlement_queue


async def test_an_honest_restart_after_a_lost_stop_is_billed(
    service: ChargingService, state: MemoryState,
) -> None:
    """A 1.6 station reboots and loses T1's StopTransaction (its last reading at 10:10):
    T2's session started on the connector at 10:30 is the connector's only one since, and
    is billed. T1's is closed as T2's starts (never left active), at its last reading,
    billed from its readings and held (``stop_lost``) for the operator; its stop,
    delivered later with the time the charge really ended (10:15), completes it with the
    station's own data, queued, and holds nothing."""
    first, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.meter_values("CP1", 1, str(first), wh(10, 2000))
    second, _, _ = await service.start_transaction("CP1", 1, "T2", Decimal(2500), at(30))
    closed = state.sessions[first]
    assert closed.status is SessionStatus.COMPLETED
    assert (closed.stopped_at, closed.energy_wh) == (at(10), 1000)
    assert "stop_lost" in closed.flags and first not in state.settlement_queue
    await service.meter_values("CP1", 1, str(second), wh(40, 3000))
    await service.stop_transaction("CP1", StopInfo(second, Decimal(4000), at(60)))
    assert not BILLING_HOLD_FLAGS.intersection(state.sessions[second].flags)
    assert second in state.settlement_queue
    assert OVERLAPS not in state.sessions[first].flags
    await service.stop_transaction("CP1", StopInfo(first, Decimal(2200), at(15)))
    done = state.sessions[first]
    assert not BILLING_HOLD_FLAGS.intersection(done.flags), done.flags
    assert (done.stopped_at, done.energy_wh, done.stop_reason) == (at(15), 1200, "Local")
    assert first in state.settlement_queue
    assert overlaps(state) == []


async def test_another_connector_is_another_session_at_the_same_time(
    service: ChargingService, state: MemoryState,
) -> None:
    first, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.meter_values("CP1", 1, str(first), wh(25, 2000))
    second, _, _ = await service.start_transaction("CP1", 2, "T2", Decimal(500), at(20))
    await service.stop_transaction("CP1", StopInfo(second, Decimal(1500), at(40)))
    await service.stop_transaction("CP1", StopInfo(first, Decimal(3000), at(60)))
    assert {first, second} <= set(state.settlement_queue) and overlaps(state) == []


def ev(kind: str, txid: str, seq: int, minutes: float, **kw: Any) -> TransactionEventIn:
    return TransactionEventIn(kind, at(minutes), "Authorized", seq, txid, evse_id=1,
                              connector_id=1, **kw)


async def test_201_two_transactions_on_one_evse_at_once_are_held(
    service: ChargingService, state: MemoryState,
) -> None:
    await service.transaction_event("CP1", ev("Started", "TX-1", 0, 0, id_tag="T1",
                                              samples=wh(0, 1000)))
    await service.transaction_event("CP1", ev("Updated", "TX-1", 1, 10, samples=wh(10, 2000)))
    await service.transaction_event("CP1", ev("Started", "TX-2", 0, 5, id_tag="T2",
                                              samples=wh(5, 1500)))
    await service.transaction_event("CP1", ev("Ended", "TX-2", 1, 30, samples=wh(30, 3000)))
    await service.transaction_event("CP1", ev("Ended", "TX-1", 2, 60, samples=wh(60, 4000)))
    [one, two] = state.sessions.values()
    assert OVERLAPS in one.flags and OVERLAPS in two.flags
    assert state.settlement_queue == {}


async def test_a_session_on_no_evse_is_held_it_cannot_be_compared(
    service: ChargingService, state: MemoryState,
) -> None:
    """Two drivers at once on 1.6 connector 0 (the whole station), or on a 2.0.1
    transaction that never names its EVSE, escaped the comparison of times: both were
    billed. A session completed on no EVSE is held (evse_unknown); one on connector 1
    is compared as before."""
    a, _, _ = await service.start_transaction("CP1", 0, "T1", Decimal(1000), T0)
    b, _, _ = await service.start_transaction("CP1", 0, "T1", Decimal(1000), at(5))
    for txid in (a, b):
        await service.stop_transaction("CP1", StopInfo(txid, Decimal(5000), at(60)))
        assert "evse_unknown" in state.sessions[txid].flags
        assert txid not in state.settlement_queue
    for n, tx in enumerate(("TX-A", "TX-B")):
        await service.transaction_event("CP1", TransactionEventIn(
            "Started", at(n), "Authorized", 0, tx, id_tag="T1", evse_id=None,
            connector_id=None, samples=wh(n, 1000)))
    for tx in ("TX-A", "TX-B"):
        await service.transaction_event("CP1", TransactionEventIn(
            "Ended", at(60), "EVDeparted", 1, tx, evse_id=None, connector_id=None,
            samples=[MeterSample(timestamp=at(60), value="5000",
                                 context="Transaction.End")]))
    ended = [s for s in state.sessions.values() if s.transaction_id in ("TX-A", "TX-B")]
    assert len(ended) == 2
    assert all("evse_unknown" in s.flags and s.id not in state.settlement_queue
               for s in ended)
    one, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.stop_transaction("CP1", StopInfo(one, Decimal(5000), at(60)))
    assert "evse_unknown" not in state.sessions[one].flags and one in state.settlement_queue
