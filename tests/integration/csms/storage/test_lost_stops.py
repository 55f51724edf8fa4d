"""A session whose stop was lost, on SQLite and PostgreSQL: closed in the unit of the new
session's start on its EVSE (at its last reading, held ``stop_lost``), its later readings
kept apart, its real stop completing it (queued); a 2.0.1 one the same; an operator's close,
release and the late stop that then changes nothing (csms.service.sessions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.model import MeterSample, Session, SessionStatus
from csms.service.billing import billing_state
from csms.service.charging import ChargingService, new_station
from csms.service.holds import decide
from csms.service.messages import StopInfo, TransactionEventIn
from csms.service.ports import Repository, Tx

# an hour ago: the station is registered now, its transactions' times are plausible
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
STATION = "CP-LOST"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def wh(minutes: float, value: int, context: str | None = None) -> list[MeterSample]:
    return [MeterSample(timestamp=at(minutes), value=str(value), context=context)]


@pytest.fixture
async def service(repo: Repository) -> AsyncIterator[ChargingService]:
    async def register(tx: Tx) -> None:
        await tx.insert_station(new_station(STATION))

    await repo.unit(register)
    yield ChargingService(repo)


async def session(repo: Repository, sid: int) -> Session:
    found = await repo.read(lambda tx: tx.get_session(sid))
    assert found is not None
    return found


async def queued(repo: Repository, sid: int) -> bool:
    async def work(tx: Tx) -> bool:
        return any(r["session_id"] == sid for r in await tx.queued_for_settlement(100))

    return await repo.read(work)


async def events(repo: Repository, kind: str) -> list[dict[str, Any]]:
    rows = await repo.read(lambda tx: tx.list_station_events(STATION, kind))
    return [r["payload"] for r in reversed(rows)]


async def test_16_a_lost_stop_is_closed_then_completed_by_the_real_one(
    repo: Repository, service: ChargingService,
) -> None:
    first, _, _ = await service.start_transaction(STATION, 1, "T1", Decimal(1000), T0)
    await service.meter_values(STATION, 1, str(first), wh(10, 2000))
    second, _, _ = await service.start_transaction(STATION, 1, "T2", Decimal(2500), at(30))
    closed = await session(repo, first)
    assert (closed.status, closed.stopped_at, closed.energy_wh) == (
        SessionStatus.COMPLETED, at(10), 1000)
    assert "stop_lost" in closed.flags and billing_state(closed) == "held"
    assert not await queued(repo, first)
    [event] = await events(repo, "stop_lost")
    assert (event["session_id"], event["new_session_id"], event["cause"]) == (
        first, second, "new_session")
    # a hostile reading of it afterwards: kept apart, the new session held for it
    await service.meter_values(STATION, 1, str(first), wh(40, 9000))
    assert (await session(repo, first)).energy_wh == 1000
    assert [m.value for m in await repo.read(lambda tx: tx.session_samples(first))] == [
        "2000"]
    assert "overlaps_session" in (await session(repo, second)).flags
    # its real stop, before the new start: completed with it, queued
    await service.stop_transaction(STATION, StopInfo(first, Decimal(2200), at(15)))
    done = await session(repo, first)
    assert (done.stopped_at, done.energy_wh, done.reported_meter_stop_wh) == (
        at(15), 1200, Decimal(2200))
    assert "stop_lost" not in done.flags and billing_state(done) == "queued"
    assert await queued(repo, first)
    assert [e["session_id"] for e in await events(repo, "stop_found")] == [first]


async def test_201_a_lost_ended_event_is_closed_then_completed_by_the_real_one(
    repo: Repository, service: ChargingService,
) -> None:
    def ev(kind: str, txid: str, seq: int, minutes: float, **kw: Any) -> TransactionEventIn:
        return TransactionEventIn(kind, at(minutes), "Authorized", seq, txid, evse_id=1,
                                  connector_id=1, **kw)

    await service.transaction_event(STATION, ev("Started", "TX-1", 0, 0, id_tag="T1",
                                                samples=wh(0, 1000, "Transaction.Begin")))
    await service.transaction_event(STATION, ev("Updated", "TX-1", 1, 10,
                                                samples=wh(10, 2000)))
    await service.transaction_event(STATION, ev("Started", "TX-2", 0, 30, id_tag="T2",
                                                samples=wh(30, 2500, "Transaction.Begin")))
    one = await repo.read(lambda tx: tx.find_session(STATION, "TX-1"))
    assert one is not None and one.id is not None
    assert (one.status, one.stopped_at, one.energy_wh) == (
        SessionStatus.COMPLETED, at(10), 1000)
    assert "stop_lost" in one.flags
    await service.transaction_event(STATION, ev("Ended", "TX-1", 2, 15,
                                                samples=wh(15, 2200, "Transaction.End")))
    done = await session(repo, one.id)
    assert (done.stopped_at, done.energy_wh, billing_state(done)) == (at(15), 1200, "queued")
    assert await queued(repo, one.id)


async def test_an_operators_close_then_release_and_a_late_stop_changes_nothing(
    repo: Repository, service: ChargingService,
) -> None:
    first, _, _ = await service.start_transaction(STATION, 2, "T1", Decimal(1000), T0)
    await service.meter_values(STATION, 2, str(first), wh(10, 2000))
    result = await service.close_session(first, actor="cli:op", reason="stuck since March")
    assert (result["energy_wh"], result["holds"]) == (1000, ["stop_lost"])
    audit = await repo.read(lambda tx: tx.list_audit())
    assert [(a["action"], a["target"]) for a in audit] == [("sessions.close", str(first))]

    async def release(tx: Tx) -> None:
        await decide(tx, first, "released", actor="cli:op", reason=None, now=at(60))

    await repo.unit(release)
    assert await queued(repo, first)
    await service.stop_transaction(STATION, StopInfo(first, Decimal(9000), at(50)))
    after = await session(repo, first)
    assert (after.stopped_at, after.energy_wh, billing_state(after)) == (
        at(10), 1000, "released")
    [late] = await events(repo, "late_data")
    assert (late["session_id"], late["action"]) == (first, "StopTransaction")
