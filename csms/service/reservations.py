"""Use cases of reservations (1.6 §5.13 ReserveNow, §5.2 CancelReservation; 2.0.1 H01-H04):
the operator books a connector for a driver's tag until a time, the station's answers and
2.0.1 ReservationStatusUpdate move the reservation along its state table
(:mod:`csms.domain.maintenance`), and a transaction start uses it or is refused by it.

The station enforces a reservation (it refuses other tags on the reserved connector); the
central system checks again when the transaction starts, so a station that started for
another tag anyway gets a refusal in the StartTransaction / TransactionEvent answer and
the session is flagged ``reserved_for_other``. Authorize carries no connector in either
version, so it cannot be refused for a reservation.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from csms.domain.maintenance import Reservation, ReservationState
from csms.domain.model import AuthStatus
from csms.service import defaults
from csms.service.ports import Tx
from csms.service.stations import StationUseCases

__all__ = ["ReservationError", "ReservationUseCases", "reservation_for_start"]


class ReservationError(ValueError):
    """An operator's reservation request that cannot be made (one line)."""


async def reservation_for_start(
    tx: Tx, now: datetime, station_id: str, connector_id: int | None, tag: str | None,
    reservation_id: int | None,
) -> tuple[Reservation | None, bool]:
    """What the live reservations of ``station_id`` say about a transaction starting on
    ``connector_id`` with ``tag``: (the reservation it uses, refused). Accepted
    reservations found past their expiry are written down as expired here.

    A transaction uses a reservation when it names it (1.6 StartTransaction /
    2.0.1 TransactionEvent ``reservationId``) or when it runs on the reserved connector
    (any connector for connector 0) with the reserved tag or one with the same parent;
    it is refused when it runs on a connector reserved for another tag (1.6 §5.13:
    "the connector SHALL only be used for the reserved idTag").
    """
    live: list[Reservation] = []
    for r in await tx.accepted_reservations(station_id):
        if r.live(now):
            live.append(r)
        elif r.move(ReservationState.EXPIRED, now):
            await tx.update_reservation(r)
    if not live:
        return None, False
    record = await tx.get_tag(tag) if tag is not None else None
    parent = record.parent if record is not None else None
    named = [r for r in live if r.id == reservation_id]
    mine = [r for r in named + live if r.holder(tag, parent) and r.covers(connector_id)]
    if mine:
        return mine[0], False
    blocking = [r for r in live if r.connector_id and r.connector_id == connector_id]
    return None, bool(blocking)


class ReservationUseCases(StationUseCases):
    """Reservations as the operator makes them and as the station reports them."""

    max_reservation: timedelta = defaults.MAX_RESERVATION

    async def new_reservation(self, station_id: str, tag: str, connector_id: int,
                              until: datetime) -> Reservation:
        """Record a reservation about to be sent (state requested); its id is the OCPP
        reservationId. Refused: a time past or beyond ``max_reservation``, a tag the
        central system does not accept, a connector already reserved."""
        now = self.clock()
        if until <= now:
            raise ReservationError(
                f"the reservation would end in the past ({until.isoformat()})")
        if until - now > self.max_reservation:
            raise ReservationError(f"a reservation lasts at most {self.max_reservation}")
        if connector_id < 0:
            raise ReservationError("connector must be 0 (any) or more")

        async def work(tx: Tx) -> Reservation:
            if await tx.get_station(station_id) is None:
                raise ReservationError(f"no station {station_id}")
            record = await tx.get_tag(tag)
            if record is None:
                raise ReservationError(f"tag {tag!r} is unknown to this central system")
            status = record.authorize(now)
            if status is not AuthStatus.ACCEPTED:
                raise ReservationError(f"tag {tag!r} may not charge ({status.value})")
            for r in await tx.accepted_reservations(station_id):
                if r.live(now) and (r.connector_id == connector_id or 0 in (
                        r.connector_id, connector_id)):
                    raise ReservationError(
                        f"connector {r.connector_id} of {station_id} is reserved until"
                        f" {r.expires_at.isoformat()} (reservation {r.id})")
            reservation = Reservation(station_id, connector_id, tag, until, now,
                                      parent_tag=record.parent, updated_at=now)
            await tx.insert_reservation(reservation)
            return reservation

        return await self.repo.unit(work)

    async def reservation_answered(self, reservation_id: int, word: str | None) -> None:
        """The station's answer to ReserveNow (None: no answer, or a CALLERROR)."""
        to = ReservationState.FAILED if word is None else (
            ReservationState.ACCEPTED if word == "Accepted" else ReservationState.REFUSED)
        await self._move(reservation_id, to, word)

    async def cancellable(self, station_id: str, reservation_id: int) -> Reservation:
        """The reservation ``reservation_id`` of ``station_id`` that is still live."""
        now = self.clock()

        async def work(tx: Tx) -> Reservation | None:
            return await tx.get_reservation(reservation_id)

        r = await self.repo.read(work)
        if r is None or r.station_id != station_id:
            raise ReservationError(f"no reservation {reservation_id} on {station_id}")
        if not r.live(now):
            raise ReservationError(f"reservation {reservation_id} is {r.state_at(now).value}")
        return r

    async def reservation_cancelled(self, reservation_id: int, word: str | None) -> None:
        """The station's answer to CancelReservation: Accepted ends it."""
        if word == "Accepted":
            await self._move(reservation_id, ReservationState.CANCELLED, None)

    async def reservation_status_update(self, station_id: str, reservation_id: int,
                                        status: str) -> None:
        """2.0.1 H05 ReservationStatusUpdate (Expired | Removed): stored as an event;
        a reservation of another station is not touched."""
        now = self.clock()
        to = {"Expired": ReservationState.EXPIRED,
              "Removed": ReservationState.REMOVED}.get(status)

        async def work(tx: Tx) -> None:
            r = await tx.get_reservation(reservation_id) \
                if 0 < reservation_id < 2**63 else None
            mine = r is not None and r.station_id == station_id
            await self.metered_event(tx, station_id, "reservation_status", {
                "reservationId": reservation_id, "reservationUpdateStatus": status,
                **({} if mine else {"unmatched": True})}, now)
            if r is not None and mine and to is not None and r.move(to, now):
                await tx.update_reservation(r)

        await self.repo.unit(work)

    async def _move(self, reservation_id: int, to: ReservationState,
                    answer: str | None) -> None:
        now = self.clock()

        async def work(tx: Tx) -> None:
            r = await tx.get_reservation(reservation_id)
            if r is None:
                return
            if answer is not None and r.status is ReservationState.REQUESTED:
                r.answer = answer
            if r.move(to, now) or answer is not None:
                await tx.update_reservation(r)

        await self.repo.unit(work)
