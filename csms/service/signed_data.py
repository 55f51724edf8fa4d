"""Signed meter data (OCMF) of a session: each container verified against its meter's key
(the key the operator registered for the session's EVSE, else the station's, pinned on first
use when the operator registered none), the results stored per reading, and the signed
readings reconciled with the station's own."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, NamedTuple

from csms.domain.model import (
    MeterSample,
    Session,
)
from csms.metering import ocmf
from csms.service.core import ChargingCore
from csms.service.ports import Tx

__all__ = ["MeterKey", "SignedDataChecks", "session_meter_key"]

log = logging.getLogger("csms.service")


class MeterKey(NamedTuple):
    """The meter key a session is verified with (:func:`session_meter_key`)."""

    key: str | None  # None: the station has none (not registered, none pinned yet)
    of_evse: bool  # the key the operator registered for the session's EVSE
    per_evse: bool  # the operator registered keys per EVSE for the station


async def session_meter_key(tx: Tx, station_id: str, evse_id: int | None) -> MeterKey:
    """The meter key a session of the station on EVSE ``evse_id`` is verified with: the
    key the operator registered for the EVSE (a wallbox with a calibrated meter per EVSE),
    else the station's (registered, or pinned on first use)."""
    evse_keys = await tx.get_evse_meter_keys(station_id)
    key = evse_keys.get(evse_id) if evse_id is not None else None
    if key is not None:
        return MeterKey(key, True, True)
    station_key, _source = await tx.get_meter_key(station_id)
    return MeterKey(station_key, False, bool(evse_keys))


class SignedDataChecks(ChargingCore):
    """Signed meter data (OCMF) of a session, verified and reconciled with its readings."""

    async def _check_signed(
        self, tx: Tx, session: Session, signed: list[MeterSample],
        start_wh: Decimal | None, stop_wh: Decimal | None,
    ) -> ocmf.Reconciled:
        """Verify the session's signed meter data (OCMF) and reconcile it with the readings.

        The meter key is the one the operator registered for the session's EVSE; else
        the station's: the one registered by the operator, or the first one a message
        carried (then pinned for the station: a different key later is a security event
        and does not replace it; never pinned for an EVSE with a key of its own, whose
        sessions a station cannot have verified with a key it invents, nor for a station
        whose operator registered keys per EVSE: on an EVSE it invents, or naming none, it
        would have a key of its own pinned for the EVSEs without one). Per signed reading
        the result is stored; a signature that fails, data that cannot be read or checked,
        signed import readings that differ from the station's, readings the meter marks as
        faulty and readings that do not belong to the session hold the session back from
        settlement.
        """
        assert session.id is not None
        pinned, of_evse, per_evse = await session_meter_key(tx, session.station_id,
                                                            session.evse_id)
        # a station whose operator registered its meters' keys per EVSE has no key pinned on
        # first use: on an EVSE it invents (or naming none) it would have its own key pinned
        # as the station's, for every EVSE without a key of its own
        pinnable = pinned is None and not per_evse
        rows: list[dict[str, Any]] = []
        readings: list[ocmf.SignedReading] = []
        now = self.clock()
        for number, sample in enumerate(signed):
            assert sample.signed is not None
            checked = ocmf.check_container(sample.signed, pinned)
            if pinned is None and not pinnable and checked.key_used is not None:
                # checked with the key the message carries: no key the operator registered
                checked.status, checked.key_used = ocmf.NO_KEY, None
                checked.detail = (f"no meter key registered for EVSE {session.evse_id} (the"
                                  " station's meters have keys per EVSE) and none pinned")
            elif checked.message_key is not None:
                if pinned is None:
                    pinned = checked.message_key
                    await tx.set_meter_key(session.station_id, pinned, "first_use")
                    await tx.add_station_event(
                        session.station_id, "security",
                        {"type": "MeterKeyPinned", "public_key": pinned}, now)
                    log.info("= %s: meter key pinned on first use", session.station_id)
                elif checked.message_key != pinned:
                    session.flag("meter_key_changed")
                    changed = {"type": "MeterKeyChanged", "pinned": pinned,
                               "received": checked.message_key, "session_id": session.id}
                    if of_evse:
                        changed["evse_id"] = session.evse_id
                    await tx.add_station_event(session.station_id, "security", changed, now)
                    log.warning("! %s sent signed meter data with a different meter key",
                                session.station_id)
            if checked.status == ocmf.NO_KEY:
                session.flag("meter_key_unknown")
            elif checked.status in (ocmf.INVALID, ocmf.MALFORMED):
                session.flag("signature_invalid")
            base = {"container_no": number, "public_key": checked.key_used,
                    "status": checked.status, "detail": checked.detail}
            if not checked.readings:
                rows.append({**base, "tx_code": None, "reading_time": None, "reading_wh": None,
                             "resolution_wh": None, "meter_serial": None, "pagination": None})
            for r in checked.readings:
                rows.append({**base, "tx_code": r.tx, "reading_time": r.time,
                             "reading_wh": str(r.wh), "resolution_wh": str(r.resolution_wh),
                             "meter_serial": r.meter_serial, "pagination": r.pagination,
                             "register_code": r.register, "register_kind": r.kind})
                if checked.status == ocmf.VERIFIED:
                    readings.append(r)
        await tx.add_signed_readings(session.id, session.station_id, rows)
        rec = ocmf.reconcile(readings, start_wh, stop_wh)
        foreign = ocmf.foreign(readings, rec.signed_begin, rec.signed_end,
                               session.started_at, session.stopped_at, session.id_tag)
        foreign += await self._reused(tx, session, rec, pinned)
        if foreign:
            # readings of another meter, session or token, or in the wrong order: the same
            # rule a receipt's verifier applies (settlement/receipts.py)
            rec.flags.append("signed_reading_foreign")
            await tx.add_station_event(
                session.station_id, "billing_mismatch",
                {"session_id": session.id, "foreign": foreign}, now)
        if rec.mismatches:
            await tx.add_station_event(
                session.station_id, "billing_mismatch",
                {"session_id": session.id, "mismatches": rec.mismatches}, now)
        if rec.notes:
            await tx.add_station_event(
                session.station_id, "billing_discrepancy",
                {"session_id": session.id, "notes": rec.notes, "flags": rec.flags}, now)
        return rec

    async def _reused(self, tx: Tx, session: Session, rec: ocmf.Reconciled,
                      pinned: str | None) -> list[str]:
        """Why the session's signed begin or end is another session's (``ocmf.reused``):
        compared with the verified readings of the station's sessions that ran within twice
        the reading margin of it (a reading inside both sessions' windows, or an end of the
        session before later than this one's begin, lies within it), and with the signed
        data of its sessions still charging (checked with ``pinned``, the key this session is
        verified with, its EVSE's or the station's: a reading of its meter is one that key
        verifies): a station that has the later session complete first, with the earlier
        one's begin, does not have it billed before the earlier one's readings are stored."""
        assert session.id is not None
        if rec.signed_begin is None and rec.signed_end is None:
            return []
        margin = 2 * ocmf.READING_MARGIN
        last = session.stopped_at or session.started_at
        try:
            since, until = session.started_at - margin, last + margin
        except OverflowError:  # at the ends of the calendar: no other session is there
            return []
        others: list[tuple[str, bool, ocmf.SignedReading]] = []
        for row in await tx.signed_readings_around(session.station_id, since, until,
                                                   session.id):
            if row["reading_wh"] is None:
                continue
            earlier = (row["started_at"], row["session_id"]) < (session.started_at,
                                                                  session.id)
            others.append((f"session {row['session_id']}", earlier, _signed_reading(row)))
        if pinned is not None:
            # the same reading of the meter in another station's session (a host's other
            # station sending a record its station sent, or a receipt shows): the meter
            # counted that energy once, whichever station sends it (one reading is one
            # meter's, at one time: no station's clock or window is needed to find it)
            times = [r.time for r in (rec.signed_begin, rec.signed_end)
                     if r is not None and r.time is not None]
            for row in await tx.signed_readings_elsewhere(session.station_id, pinned, times):
                if row["reading_wh"] is None:
                    continue
                others.append((f"session {row['session_id']} of station {row['station_id']}",
                               False, _signed_reading(row)))
        for other in await tx.list_sessions(session.station_id, active=True):
            if other.id is None or other.id == session.id or other.started_at > until:
                continue
            earlier = (other.started_at, other.id) < (session.started_at, session.id)
            for sample in await tx.energy_samples(other.id):
                if sample.signed is None:
                    continue
                checked = ocmf.check_container(sample.signed, pinned)
                if checked.status == ocmf.VERIFIED:
                    others.extend((f"session {other.id}", earlier, r) for r in checked.readings)
        return ocmf.reused(rec.signed_begin, rec.signed_end, others)


def _signed_reading(row: dict[str, Any]) -> ocmf.SignedReading:
    """A verified signed reading as stored (``Tx.add_signed_readings``)."""
    return ocmf.SignedReading(
        tx=row["tx_code"], time=row["reading_time"], wh=Decimal(row["reading_wh"]),
        resolution_wh=Decimal(row["resolution_wh"] or 1),
        meter_serial=row["meter_serial"], pagination=row["pagination"],
        register=row["register_code"],
        kind=row["register_kind"] or ocmf.register_kind(row["register_code"]))
