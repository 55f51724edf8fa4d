"""Sessions whose stop was lost (csms.service.sessions: ``stop_lost``): a station that
starts anew on an EVSE whose earlier session has had no data since (a 1.6 StopTransaction
or a 2.0.1 Ended event lost in a reboot) has that session closed at its last reading,
billed from its readings only and held for the operator; the station's real stop, if it
comes while the session is still held, completes it; after an operator's decision it is
kept apart. An operator closes a stuck session the same way (``csms sessions close``).
In-memory storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.model import BILLING_HOLD_FLAGS, MeterSample, SessionStatus
from csms.service.billing import billing_state
from csms.service.charging import ChargingService, StopInfo, TransactionEventIn
from csms.service.holds import HoldError, decide
from csms.service.ports import Tx
from support.memory import MemoryRepository, MemoryState, station_state

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
STOP_LOST = "stop_lost"
OVERLAPS = "overlaps_session"


@pytest.fixture
def state() -> MemoryState:
    return station_state("T1", "T2")


@pytest.fixture
def repo(state: MemoryState) -> MemoryRepository:
    return MemoryRepository(state)


@pytest.fixture
def service(repo: MemoryRepository) -> ChargingService:
    return ChargingService(repo, clock=lambda: NOW)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def wh(minutes: float, value: int, context: str | None = None) -> list[MeterSample]:
    return [MeterSample(timestamp=at(minutes), value=str(value), context=context)]


def events(state: MemoryState, kind: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in state.station_events if e["kind"] == kind]


async def decided(repo: MemoryRepository, session_id: int, decision: str) -> None:
    async def work(tx: Tx) -> None:
        await decide(tx, session_id, decision, actor="op", reason="checked", now=NOW)

    await repo.unit(work)


async def cut_short(service: ChargingService) -> tuple[int, int]:
    """T1's 1.6 session on connector 1 (meterStart 1000, a reading of 2000 at 10:10), then
    T2's started there at 10:30: T1's stop never came."""
    first, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.meter_values("CP1", 1, str(first), wh(10, 2000))
    second, _, _ = await service.start_transaction("CP1", 1, "T2", Decimal(2500), at(30))
    return first, second


def test_stop_lost_is_a_billing_hold() -> None:
    assert STOP_LOST in BILLING_HOLD_FLAGS


async def test_a_new_start_closes_the_earlier_session_at_its_last_reading_and_holds_it(
    service: ChargingService, state: MemoryState,
) -> None:
    """A hostile station starts a session on a driver's connector to cut the driver's
    short: the driver's is closed at its last reading, billed no more than its readings
    show (2000 - 1000), and held; the new session is not held for it."""
    first, second = await cut_short(service)
    closed = state.sessions[first]
    assert closed.status is SessionStatus.COMPLETED
    assert (closed.stopped_at, closed.meter_start_wh, closed.meter_stop_wh,
            closed.energy_wh) == (at(10), 1000, 2000, 1000)
    assert closed.reported_meter_stop_wh is None  # no meterStop: readings only
    assert STOP_LOST in closed.flags and billing_state(closed) == "held"
    assert first not in state.settlement_queue
    assert not BILLING_HOLD_FLAGS.intersection(state.sessions[second].flags)
    assert state.sessions[second].status is SessionStatus.ACTIVE
    [event] = events(state, STOP_LOST)
    assert (event["session_id"], event["transaction_id"], event["new_session_id"],
            event["new_transaction_id"], event["evse_id"], event["cause"]) == (
        first, str(first), second, str(second), 1, "new_session")
    assert (event["stopped_at"], event["energy_wh"]) == (at(10).isoformat(), 1000)
    assert [e["session_id"] for e in events(state, "billing_hold")] == [first]


async def test_readings_sent_for_a_closed_session_are_kept_apart(
    service: ChargingService, state: MemoryState, repo: MemoryRepository,
) -> None:
    """The hostile station then sends readings for the closed session (as if it had gone
    on charging): they are the station's (late path), the session's energy stays; the new
    session, on the connector at those times, is held (never both settled unnoticed)."""
    first, second = await cut_short(service)
    before = await repo.read(lambda tx: tx.session_samples(first))
    await service.meter_values("CP1", 1, str(first), wh(40, 9000))
    await service.transaction_event("CP1", TransactionEventIn(
        "Updated", at(41), "MeterValuePeriodic", 5, str(first), evse_id=1, connector_id=1,
        samples=wh(41, 9500)))
    closed = state.sessions[first]
    assert (closed.energy_wh, closed.stopped_at) == (1000, at(10))
    assert await repo.read(lambda tx: tx.session_samples(first)) == before
    assert [e["session_id"] for e in events(state, "late_data")] == [first, first]
    assert STOP_LOST in closed.flags and first not in state.settlement_queue
    assert OVERLAPS in state.sessions[second].flags
    [event] = events(state, OVERLAPS)
    assert (event["session_id"], event["other_session_id"], event["other_until"]) == (
        second, first, at(40).isoformat())
    await service.stop_transaction("CP1", StopInfo(second, Decimal(5000), at(60)))
    assert second not in state.settlement_queue


async def test_readings_for_a_closed_session_before_its_close_hold_nothing(
    service: ChargingService, state: MemoryState,
) -> None:
    """A reading of the closed session's time that arrives late (a station's queue)
    is kept apart and says nothing of the new session's time."""
    first, second = await cut_short(service)
    await service.meter_values("CP1", 1, str(first), wh(5, 1500))
    assert events(state, OVERLAPS) == []
    await service.stop_transaction("CP1", StopInfo(second, Decimal(5000), at(60)))
    assert second in state.settlement_queue


async def test_a_session_without_readings_is_closed_at_its_start(
    service: ChargingService, state: MemoryState,
) -> None:
    """No reading at all (a 1.6 station that sends no MeterValues): closed at its start,
    nothing billed; its real stop, later, completes it with its meterStop, queued (the
    ``meter_stop_missing`` its close found is lifted with ``stop_lost``)."""
    first, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.start_transaction("CP1", 1, "T2", Decimal(3000), at(30))
    closed = state.sessions[first]
    assert (closed.status, closed.stopped_at, closed.energy_wh) == (
        SessionStatus.COMPLETED, T0, 0)
    assert STOP_LOST in closed.flags and first not in state.settlement_queue
    await service.stop_transaction("CP1", StopInfo(first, Decimal(3000), at(20)))
    done = state.sessions[first]
    assert (done.stopped_at, done.energy_wh) == (at(20), 2000)
    assert not BILLING_HOLD_FLAGS.intersection(done.flags), done.flags
    assert first in state.settlement_queue


async def test_a_late_stop_far_above_the_readings_is_held_by_the_usual_checks(
    service: ChargingService, state: MemoryState,
) -> None:
    first, _ = await cut_short(service)
    await service.stop_transaction("CP1", StopInfo(first, Decimal(10**9), at(15)))
    done = state.sessions[first]
    assert STOP_LOST not in done.flags
    assert "energy_above_max_power" in done.flags
    assert first not in state.settlement_queue and billing_state(done) == "held"


async def test_a_late_stop_after_the_new_start_holds_both_as_overlapping(
    service: ChargingService, state: MemoryState,
) -> None:
    """The closed session's real stop says it charged on after the new session's start
    (10:45 > 10:30): two drivers on one connector at once, both held."""
    first, second = await cut_short(service)
    await service.stop_transaction("CP1", StopInfo(first, Decimal(4000), at(45)))
    assert STOP_LOST not in state.sessions[first].flags
    assert OVERLAPS in state.sessions[first].flags
    assert OVERLAPS in state.sessions[second].flags
    await service.stop_transaction("CP1", StopInfo(second, Decimal(5000), at(60)))
    assert state.settlement_queue == {}
    assert [(e["session_id"], e["other_session_id"]) for e in events(state, OVERLAPS)] == [
        (first, second)]


@pytest.mark.parametrize("decision", ["released", "rejected"])
async def test_a_late_stop_after_the_operators_decision_changes_nothing(
    service: ChargingService, state: MemoryState, repo: MemoryRepository, decision: str,
) -> None:
    first, _ = await cut_short(service)
    await decided(repo, first, decision)
    queued = dict(state.settlement_queue)
    await service.stop_transaction("CP1", StopInfo(
        first, Decimal(4000), at(15), samples=wh(15, 4000, "Transaction.End")))
    after = state.sessions[first]
    assert (after.stopped_at, after.energy_wh, after.reported_meter_stop_wh) == (
        at(10), 1000, None)
    assert STOP_LOST in after.flags and billing_state(after) == decision
    assert state.settlement_queue == queued
    [late] = events(state, "late_data")
    assert (late["session_id"], late["action"], late["readings"]) == (
        first, "StopTransaction", 1)
    assert await repo.read(lambda tx: tx.session_samples(first)) == wh(10, 2000)


async def test_a_retried_late_stop_completes_the_session_once(
    service: ChargingService, state: MemoryState,
) -> None:
    first, _ = await cut_short(service)
    stop = StopInfo(first, Decimal(2200), at(15))
    await service.stop_transaction("CP1", stop)
    completed = [e for e in state.station_events if e["kind"] == "stop_found"]
    await service.stop_transaction("CP1", stop)
    assert [e for e in state.station_events if e["kind"] == "stop_found"] == completed
    assert len(completed) == 1 and state.sessions[first].energy_wh == 1200
    assert events(state, "late_data") == []


async def test_an_active_session_on_another_connector_is_not_closed(
    service: ChargingService, state: MemoryState,
) -> None:
    first, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.start_transaction("CP1", 2, "T2", Decimal(3000), at(30))
    assert state.sessions[first].status is SessionStatus.ACTIVE
    assert events(state, STOP_LOST) == []


def ev(kind: str, txid: str, seq: int, minutes: float, **kw: Any) -> TransactionEventIn:
    return TransactionEventIn(kind, at(minutes), "Authorized", seq, txid, evse_id=1,
                              connector_id=1, **kw)


async def test_201_a_lost_ended_event_closes_and_the_real_one_completes(
    service: ChargingService, state: MemoryState,
) -> None:
    await service.transaction_event("CP1", ev("Started", "TX-1", 0, 0, id_tag="T1",
                                              samples=wh(0, 1000, "Transaction.Begin")))
    await service.transaction_event("CP1", ev("Updated", "TX-1", 1, 10, samples=wh(10, 2000)))
    await service.transaction_event("CP1", ev("Started", "TX-2", 0, 30, id_tag="T2",
                                              samples=wh(30, 2500, "Transaction.Begin")))
    one, two = (next(s for s in state.sessions.values() if s.transaction_id == t)
                for t in ("TX-1", "TX-2"))
    assert one.status is SessionStatus.COMPLETED and STOP_LOST in one.flags
    assert (one.stopped_at, one.energy_wh) == (at(10), 1000)
    assert one.id not in state.settlement_queue
    [event] = events(state, STOP_LOST)
    assert (event["session_id"], event["new_session_id"]) == (one.id, two.id)
    # readings sent for it afterwards: kept apart, its energy stays
    await service.transaction_event("CP1", ev("Updated", "TX-1", 2, 40, samples=wh(40, 9000)))
    assert state.sessions[one.id].energy_wh == 1000  # type: ignore[index]
    # its real Ended event: completed with it, queued
    await service.transaction_event("CP1", ev("Ended", "TX-1", 3, 15, stopped_reason="Local",
                                              samples=wh(15, 2200, "Transaction.End")))
    done = state.sessions[one.id]  # type: ignore[index]
    assert (done.stopped_at, done.energy_wh) == (at(15), 1200)
    assert not BILLING_HOLD_FLAGS.intersection(done.flags), done.flags
    assert one.id in state.settlement_queue and OVERLAPS not in two.flags


async def test_201_an_ended_event_after_a_rejection_is_kept_apart(
    service: ChargingService, state: MemoryState, repo: MemoryRepository,
) -> None:
    await service.transaction_event("CP1", ev("Started", "TX-1", 0, 0, id_tag="T1",
                                              samples=wh(0, 1000, "Transaction.Begin")))
    await service.transaction_event("CP1", ev("Updated", "TX-1", 1, 10, samples=wh(10, 2000)))
    await service.transaction_event("CP1", ev("Started", "TX-2", 0, 30, id_tag="T2"))
    [one] = [s for s in state.sessions.values() if s.transaction_id == "TX-1"]
    assert one.id is not None
    await decided(repo, one.id, "rejected")
    await service.transaction_event("CP1", ev("Ended", "TX-1", 2, 15,
                                              samples=wh(15, 2200, "Transaction.End")))
    after = state.sessions[one.id]
    assert (after.stopped_at, after.energy_wh, billing_state(after)) == (
        at(10), 1000, "rejected")
    assert [e["event_type"] for e in events(state, "late_data")] == ["Ended"]


async def test_the_operator_closes_a_stuck_session_audited(
    service: ChargingService, state: MemoryState, repo: MemoryRepository,
) -> None:
    """``csms sessions close``: an active session closed as a lost stop is (at its last
    reading, held), the reason in the audit log and the station event; it is then released
    or rejected as any held session."""
    first, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    await service.meter_values("CP1", 1, str(first), wh(10, 2000))
    result = await service.close_session(first, actor="cli:op", reason="car left in March")
    assert result == {"session_id": first, "stopped_at": at(10).isoformat(),
                      "energy_wh": 1000, "holds": ["stop_lost"],
                      "reason": "car left in March"}
    closed = state.sessions[first]
    assert closed.status is SessionStatus.COMPLETED and billing_state(closed) == "held"
    [audit] = state.audit
    assert (audit["actor"], audit["action"], audit["target"], audit["request"], audit["ok"]) \
        == ("cli:op", "sessions.close", str(first), {"reason": "car left in March"}, True)
    [event] = events(state, STOP_LOST)
    assert (event["cause"], event["actor"], event["reason"], event["session_id"]) == (
        "operator", "cli:op", "car left in March", first)
    with pytest.raises(HoldError, match=f"session {first} is not active \\(it is held\\)"):
        await service.close_session(first, actor="cli:op", reason=None)
    with pytest.raises(HoldError, match="no session 99"):
        await service.close_session(99, actor="cli:op", reason=None)
    assert len(state.audit) == 1  # refused: not audited
    await decided(repo, first, "released")
    assert first in state.settlement_queue and state.sessions[first].energy_wh == 1000
