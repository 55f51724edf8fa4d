"""Reservations on the in-memory storage fake: the operator's checks, a start that uses a
reservation or is refused by it (both versions), expiry racing a start, and status
updates naming other stations' reservations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from csms.domain.maintenance import ReservationState
from csms.domain.model import AuthStatus, IdTag
from csms.service.charging import ChargingService, TransactionEventIn, new_station
from csms.service.ports import Tx
from csms.service.reservations import ReservationError
from support.memory import MemoryRepository

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def svc() -> ChargingService:
    repo = MemoryRepository()
    service = ChargingService(repo, clock=Clock())

    async def setup(tx: Tx) -> None:
        for sid in ("CP1", "CP2"):
            station = new_station(sid)
            station.created_at = NOW - timedelta(days=1)
            await tx.insert_station(station)
        for tag in ("TAG", "OTHER", "SIBLING"):
            await tx.put_tag(IdTag(tag, parent="GROUP" if tag != "OTHER" else None))
        await tx.put_tag(IdTag("BLOCKED", "blocked"))

    await repo.unit(setup)
    return service


async def accepted(svc: ChargingService, connector: int = 1, hours: float = 1,
                   station: str = "CP1") -> int:
    r = await svc.new_reservation(station, "TAG", connector, NOW + timedelta(hours=hours))
    assert r.id is not None and r.status is ReservationState.REQUESTED
    await svc.reservation_answered(r.id, "Accepted")
    return r.id


async def state(svc: ChargingService, rid: int) -> ReservationState:
    async def work(tx: Tx) -> ReservationState:
        r = await tx.get_reservation(rid)
        assert r is not None
        return r.state_at(svc.clock())

    return await svc.repo.read(work)


@pytest.mark.parametrize(("station", "tag", "connector", "until", "error"), [
    ("CP1", "STRANGER", 1, timedelta(hours=1), "unknown"),
    ("CP1", "BLOCKED", 1, timedelta(hours=1), "Blocked"),
    ("CP1", "TAG", 1, timedelta(hours=-1), "past"),
    ("CP1", "TAG", 1, timedelta(days=8), "at most"),
    ("CP1", "TAG", -1, timedelta(hours=1), "connector"),
    ("NOPE", "TAG", 1, timedelta(hours=1), "no station"),
])
async def test_refused_requests(svc: ChargingService, station: str, tag: str,
                                connector: int, until: timedelta, error: str) -> None:
    with pytest.raises(ReservationError, match=error):
        await svc.new_reservation(station, tag, connector, NOW + until)


async def test_a_reserved_connector_and_any_connector(svc: ChargingService) -> None:
    await accepted(svc, 1)
    with pytest.raises(ReservationError, match="reserved"):
        await svc.new_reservation("CP1", "OTHER", 1, NOW + timedelta(hours=1))
    with pytest.raises(ReservationError, match="reserved"):
        await svc.new_reservation("CP1", "OTHER", 0, NOW + timedelta(hours=1))
    await svc.new_reservation("CP1", "OTHER", 2, NOW + timedelta(hours=1))
    await svc.new_reservation("CP2", "OTHER", 1, NOW + timedelta(hours=1))


@pytest.mark.parametrize("word", ["Occupied", "Rejected", "Faulted", "Unavailable", None])
async def test_a_refused_or_unanswered_reservation_holds_nothing(
        svc: ChargingService, word: str | None) -> None:
    r = await svc.new_reservation("CP1", "TAG", 1, NOW + timedelta(hours=1))
    assert r.id is not None
    await svc.reservation_answered(r.id, word)
    assert await state(svc, r.id) is (ReservationState.FAILED if word is None
                                      else ReservationState.REFUSED)
    _, status, _ = await svc.start_transaction("CP1", 1, "OTHER", Decimal(0), NOW)
    assert status is AuthStatus.ACCEPTED


async def test_1_6_start_uses_or_is_refused(svc: ChargingService) -> None:
    rid = await accepted(svc, 1)
    _, status, _ = await svc.start_transaction("CP1", 1, "OTHER", Decimal(0), NOW)
    assert status is AuthStatus.NOT_AT_THIS_TIME
    _, status, _ = await svc.start_transaction("CP1", 2, "OTHER", Decimal(0), NOW)
    assert status is AuthStatus.ACCEPTED
    assert await state(svc, rid) is ReservationState.ACCEPTED
    # a tag with the same parent may use it (1.6 §5.13 parentIdTag)
    _, status, _ = await svc.start_transaction("CP1", 1, "SIBLING", Decimal(0), NOW,
                                                  reservation_id=rid)
    assert status is AuthStatus.ACCEPTED
    assert await state(svc, rid) is ReservationState.USED
    # used: the connector is free for anyone again
    _, status, _ = await svc.start_transaction("CP1", 1, "OTHER", Decimal(5), NOW)
    assert status is AuthStatus.ACCEPTED


async def test_naming_another_stations_reservation_uses_nothing(
        svc: ChargingService) -> None:
    rid = await accepted(svc, 1, station="CP2")
    for reservation_id in (rid, 2**70, -1):
        _, status, _ = await svc.start_transaction("CP1", 1, "TAG", Decimal(reservation_id
                                                                           % 7), NOW,
                                                   reservation_id=reservation_id)
        assert status is AuthStatus.ACCEPTED
    assert await state(svc, rid) is ReservationState.ACCEPTED


async def test_expiry_racing_a_start(svc: ChargingService) -> None:
    """A start that arrives after the expiry neither uses the reservation nor is refused
    by it; the reservation is written down as expired and can no longer be cancelled."""
    rid = await accepted(svc, 1, hours=1)
    clock = svc.clock
    assert isinstance(clock, Clock)
    clock.now = NOW + timedelta(hours=1)  # exactly at the expiry
    _, status, _ = await svc.start_transaction("CP1", 1, "OTHER", Decimal(0), clock.now)
    assert status is AuthStatus.ACCEPTED
    _, status, _ = await svc.start_transaction("CP1", 1, "TAG", Decimal(1), clock.now,
                                               reservation_id=rid)
    assert status is AuthStatus.ACCEPTED

    async def stored(tx: Tx) -> ReservationState:
        r = await tx.get_reservation(rid)
        assert r is not None
        return r.status

    assert await svc.repo.read(stored) is ReservationState.EXPIRED
    with pytest.raises(ReservationError, match="expired"):
        await svc.cancellable("CP1", rid)


async def test_2_0_1_transaction_event(svc: ChargingService) -> None:
    rid = await accepted(svc, 2)

    def started(txid: str, tag: str, evse: int, reservation: int | None = None
                ) -> TransactionEventIn:
        return TransactionEventIn("Started", NOW, "Authorized", 0, txid, evse_id=evse,
                                  connector_id=1, id_tag=tag, reservation_id=reservation)

    assert await svc.transaction_event("CP1", started("A", "OTHER", 2)) \
        is AuthStatus.NOT_AT_THIS_TIME
    assert await svc.transaction_event("CP1", started("B", "TAG", 2, rid)) \
        is AuthStatus.ACCEPTED
    assert await state(svc, rid) is ReservationState.USED


async def test_status_updates(svc: ChargingService) -> None:
    rid = await accepted(svc, 1)
    await svc.reservation_status_update("CP2", rid, "Removed")
    await svc.reservation_status_update("CP1", 2**70, "Removed")
    await svc.reservation_status_update("CP1", rid, "Bogus")
    assert await state(svc, rid) is ReservationState.ACCEPTED
    await svc.reservation_status_update("CP1", rid, "Expired")
    assert await state(svc, rid) is ReservationState.EXPIRED
    await svc.reservation_status_update("CP1", rid, "Removed")  # an end stays an end
    assert await state(svc, rid) is ReservationState.EXPIRED
